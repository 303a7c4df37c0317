#!/usr/bin/env bash
# Set-up for a fresh machine with Python >= 3.10: a virtualenv (or the active one), the CPU
# build of PyTorch when no torch is installed (a user's own GPU build is kept), then the
# project with its Ray, test, media and tracking extras. Re-running it is cheap: it reinstalls
# only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${VIRTUAL_ENV:-}" ]; then
  venv="$VIRTUAL_ENV"
else
  venv=.venv
  [ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
fi
py="$venv/bin/python"
if ! "$py" -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing PyTorch ${TORCH_SPEC:-torch==2.13.0} (CPU build where one is available)"
  "$py" -m pip install -q --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}"
fi
stamp="$venv/.mmbalance-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ] \
    || ! "$py" -c "import mmbalance" >/dev/null 2>&1; then
  # media (PyAV, safetensors) too: the real-dataset tests read videos and safetensors files,
  # and a test that CI skips protects nothing
  # tracking (mlflow-skinny, a few seconds): the MLflow tests run in CI too
  echo "setup: installing mmbalance with extras [ray,dev,media,tracking]"
  "$py" -m pip install -q --disable-pip-version-check -e ".[ray,dev,media,tracking]" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  "$py" -c "import mmbalance, torch, ray, pytest, av, safetensors, mlflow, tensorboardX" # fail loudly if it did not take
  touch "$stamp"
fi
