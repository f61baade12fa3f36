#!/usr/bin/env bash
# Create both peer environments for the side-by-side benchmarks (`python -m benchmarks`):
#
# - the mosaic venv (mosaicml-streaming 0.13.0), by setup_peer.sh: $PEER_VENV or /work/peer-venv;
# - the litdata + webdataset venv: $PEER2_VENV or /work/peer2-venv.
#
# Neither is ever a dependency of astreaming. Idempotent: a venv that already imports the pinned
# versions is left as it is.
#
#   bash benchmarks/setup_peers.sh
#   PEER_VENV=/tmp/pv PEER2_VENV=/tmp/pv2 bash benchmarks/setup_peers.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$HERE/setup_peer.sh"

VENV="${PEER2_VENV:-/work/peer2-venv}"
PYTHON="${PEER_BASE_PYTHON:-python3}"
# torch first, CPU build, then the peers under the same pin: an unpinned torch (or a torchvision that
# pulls one) brings a multi-GB CUDA build. The benchmark figures name the versions they measured.
TORCH="torch==2.13.0"
PEERS=("litdata==${LITDATA_VERSION:-0.2.76}" "webdataset==${WEBDATASET_VERSION:-1.0.2}" "torchvision==0.28.0")

check() {
  "$VENV/bin/python" - <<'PY' 2>/dev/null
import litdata, torch, webdataset  # noqa: F401
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
quiet_pip "$TORCH"
quiet_pip "$TORCH" "${PEERS[@]}"
if ! check; then
  echo "peer venv at $VENV does not import litdata and webdataset with torch 2.13.0" >&2
  exit 1
fi
echo "peer venv ready: $VENV"
