"""Sandboxed code verification throughput vs a naive subprocess loop (same as `scalinglab bench sandbox`).

    .venv/bin/python benchmarks/bench_sandbox.py [N] [WORKERS]

Prints one JSON object: programs/second for `judge_many` (bwrap sandbox, warm pool) and for
`subprocess.run([python, file])` per program without isolation, their ratio, and the machine.
"""

import json
import sys

from scalinglab.bench.sandbox import bench_sandbox

if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else None
    print(json.dumps(bench_sandbox(n=n, workers=workers)))
