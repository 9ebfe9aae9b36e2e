"""Engine throughput vs transformers generate (same as `scalinglab bench engine --json`).

python benchmarks/bench_engine.py [--device cuda] [--sequences 64] [--new-tokens 64]
python benchmarks/bench_engine.py --model smollm2-135m --new-tokens 64 --repeats 3   # the real-model grid (issue 16)
"""

import argparse
import json

from scalinglab.bench.engine import run_benchmark

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sequences", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats (real model: interleaved rounds)")
    ap.add_argument("--model", default=None, help="a model directory or short name: the real-model grid of contenders")
    a = ap.parse_args()
    print(
        json.dumps(
            run_benchmark(
                model=a.model, sequences=a.sequences, new_tokens=a.new_tokens, device=a.device, repeats=a.repeats
            ),
            indent=2,
        )
    )
