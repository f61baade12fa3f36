#!/usr/bin/env bash
# Install s3rver (an S3 server in Node.js that streams objects from disk, ranges included) for the
# capped-link benchmark: moto copies the whole object on every GET, whatever its range, and that, not
# the link, limits S3 there. Never a dependency of astreaming; `serve_proxy.py --kind s3rver` runs it.
#
#   bash benchmarks/setup_s3rver.sh            # into $S3RVER_DIR or /work/s3rver
set -euo pipefail
DIR="${S3RVER_DIR:-/work/s3rver}"
if [ -x "$DIR/node_modules/.bin/s3rver" ]; then
  echo "s3rver ready: $DIR"
  exit 0
fi
mkdir -p "$DIR"
cd "$DIR"
npm install --silent --no-audit --no-fund s3rver@3.7.1
echo "s3rver ready: $DIR"
