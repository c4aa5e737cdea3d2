#!/usr/bin/env bash
# On a machine with a CUDA GPU: build mfruntime with its CUDA kernels and run benchmarks/gpu.py
# (kernel checks, every backend against eager, the speed table for tiny and small).
#   benchmarks/gpu.sh [--presets tiny,small] [--chunks 30]
# Needs nvcc (the CUDA toolkit) and a CUDA build of PyTorch in .venv (on Linux, `pip install torch==2.13.0`
# from PyPI is one). For the tensorrt backend also: .venv/bin/pip install torch-tensorrt (matching torch).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvcc >/dev/null 2>&1 || { echo "gpu.sh: nvcc not found (install the CUDA toolkit)"; exit 2; }
make setup
.venv/bin/python -m pip install --quiet -e '.[dev]' -Ccmake.define.MFR_CUDA=ON  # adds the CUDA kernels
.venv/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu.sh: this PyTorch sees no CUDA GPU')"
exec .venv/bin/python -m benchmarks.gpu "$@"
