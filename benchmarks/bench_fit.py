"""Benchmark: the Chinchilla fit (4,500-start grid + 4,000 bootstraps), ours vs plain SciPy, side by side.

    .venv/bin/python benchmarks/bench_fit.py [--full]        # same as `scalinglab bench fit --json`

Without --full the SciPy side runs 450 of the 4,500 starts and 400 of the 4,000 resamples and
its time is scaled up linearly (the output says so); --full runs it all (~10+ minutes on 2 cores).
The procedure and the comparison live in `scalinglab.bench.fit`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scalinglab.bench import fit as benchmark
from scalinglab.runs.store import dumps

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "reference" / benchmark.EPOCH_CSV
    )
    ap.add_argument("--bootstrap", type=int, default=4000)
    ap.add_argument("--full", action="store_true", help="run every SciPy start and resample (slow)")
    a = ap.parse_args()
    N, D, L = benchmark.load_epoch(a.data)
    res = benchmark.run(
        N,
        D,
        L,
        bootstrap=a.bootstrap,
        naive_starts=None if a.full else 450,
        naive_resamples=None if a.full else 400,
        progress=lambda i, n, **kw: print(f"[{i}/{n}] {kw}", file=sys.stderr),
    )
    print(dumps(res, indent=1))
