#!/usr/bin/env bash
# Create a virtual environment with rag-prompts and its development tools installed.
set -euo pipefail
venv="${1:-.venv}"
python="${PYTHON:-python3}"
"$python" -c 'import sys; assert sys.version_info >= (3, 11), "rag-prompts needs Python 3.11+"'
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
# Prefer a CPU-only torch when this machine carries one (no GPU here; the CUDA build is several GB).
if ls /opt/wheels/torch-*+cpu-*.whl >/dev/null 2>&1; then
    "$venv/bin/python" -m pip install --quiet "torch==$(ls /opt/wheels/torch-*+cpu-*.whl | head -n1 | sed -E 's/.*torch-([0-9.]+)\+cpu.*/\1/')"
fi
"$venv/bin/python" -m pip install --quiet -e ".[dev,onnx]"
echo "set up $venv"
