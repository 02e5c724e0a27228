#!/usr/bin/env bash
# One-command set-up on a fresh machine: a virtual environment in .venv with
# metaplastic installed in editable mode and the test tools.
#
#   bash scripts/setup.sh
#   INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/setup.sh   # CPU-only wheel elsewhere
#   TORCH_SPEC="torch==2.9.1" bash scripts/setup.sh                         # another release
#
# PyTorch is installed first, pinned (TORCH_SPEC, default torch==2.13.0), and
# only when the venv has none: a build already there (say the CUDA build of
# your choice) is kept, and the package's own requirement (torch>=2.2) then
# installs nothing more.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if [ -n "${INDEX_URL:-}" ]; then
    .venv/bin/python -m pip install -q "$TORCH_SPEC" --index-url "$INDEX_URL"
  else
    .venv/bin/python -m pip install -q "$TORCH_SPEC"
  fi
fi
.venv/bin/python -m pip install -q -e ".[dev,dask]"
.venv/bin/python -c "import metaplastic, torch; print('metaplastic', metaplastic.__version__, 'torch', torch.__version__)"
