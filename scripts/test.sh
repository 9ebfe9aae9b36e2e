#!/usr/bin/env bash
# Set up (with test extras) and run the whole test suite.
#
#   bash scripts/test.sh              default suite, plus the slow "it learns" tests when CI=true
#   bash scripts/test.sh -k engine    extra arguments go to pytest
#
# The default suite runs in a few minutes on 2 CPU cores. Slow tests (marked `slow`) train
# models end to end; set SLOW=1 to run them locally, SLOW=0 to skip them in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
export TOKENIZERS_PARALLELISM=false
SLOW=${SLOW:-$([ "${CI:-}" = "true" ] && echo 1 || echo 0)}
marker="not slow"
[ "$SLOW" = 1 ] && marker=""
status=0
.venv/bin/python -m pytest -m "$marker" -p no:cacheprovider --timeout 900 "$@" || status=$?
if [ "$status" = 5 ]; then
    echo "test: no tests were collected (pytest exit 5)" >&2
    exit 1
fi
exit "$status"
