#!/usr/bin/env bash
# Create the peer environment for side-by-side benchmarks: a separate venv with mosaicml-streaming 0.13.0.
#
# It is never a dependency of astreaming: the peer scripts in benchmarks/peers/ run under its python,
# the astreaming side runs under the project's own environment.
#
#   bash benchmarks/setup_peer.sh              # venv at $PEER_VENV or /work/peer-venv
#   PEER_VENV=/tmp/pv bash benchmarks/setup_peer.sh
#   bash benchmarks/setup_peer.sh /tmp/pv      # same, as an argument
#
# Idempotent: a venv that already imports `streaming` 0.13.0 is left as it is.
set -euo pipefail

VENV="${1:-${PEER_VENV:-/work/peer-venv}}"
PYTHON="${PEER_BASE_PYTHON:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STUBS="$HERE/peers/stubs"

# The pins matter: an unpinned torch (or a torchvision that pulls one) brings a multi-GB CUDA build;
# mosaic itself pins numpy<2.2.
PINS=("mosaicml-streaming==0.13.0" "torch==2.13.0" "torchvision==0.28.0")

check() {
  # mosaic imports two torchvision names whose real import fails with a CPU torch (torchvision::nms):
  # the stand-in in peers/stubs must come first on sys.path, exactly as the peer scripts do it.
  PYTHONPATH="$STUBS" "$VENV/bin/python" - <<'PY' 2>/dev/null
import streaming, torch
assert streaming.__version__ == "0.13.0", streaming.__version__
assert torch.__version__.split("+")[0] == "2.13.0", torch.__version__
PY
}

if [ -x "$VENV/bin/python" ] && check; then
  echo "peer venv ready: $VENV"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# This machine's pip config lists local indexes that lack most packages: hide pip's "is ignored" noise.
quiet_pip() { "$VENV/bin/python" -m pip install --quiet "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
quiet_pip --upgrade pip
quiet_pip "${PINS[@]}"

if ! check; then
  echo "peer venv at $VENV does not import streaming 0.13.0 with torch 2.13.0" >&2
  PYTHONPATH="$STUBS" "$VENV/bin/python" -c "import streaming" >&2 || true
  exit 1
fi
echo "peer venv ready: $VENV"
