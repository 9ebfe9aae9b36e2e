"""Did a change to the engine make it faster? Two checkouts of scalinglab, interleaved, on a real model.

    git worktree add /tmp/before <commit>
    python benchmarks/bench_engine_before_after.py --before /tmp/before [--after .] [--rounds 4]

Every (case, side) runs in a fresh process with that checkout's `src` first on the path (each
checkout's C++ kernels are built once, keyed by their sources), before and after alternating
inside each round, so load from other processes falls on both alike. A process loads the model,
generates once untimed, then three times: its tokens/s is the best of the three. Cases as in
`bench engine --model`: batch 64 (8 prompts x 8 samples) and batch 8 sampling, batch 1 greedy,
64 new tokens, EOS ignored, float32 and bf16 weights, 2 threads.
Prints one JSON object: per case both sides' tokens/s per round and after / before (median, min, max
of the per-round ratios).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CASES = [
    ("batch64", "fp32"),
    ("batch64", "bf16"),
    ("batch8", "fp32"),
    ("batch8", "bf16"),
    ("batch1", "fp32"),
    ("batch1", "bf16"),
]

ONE = """
import json, sys, time, torch
import scalinglab
from scalinglab.engine import Engine, SamplingParams
from scalinglab.model.hf import load_model, resolve_model_dir
from scalinglab.tasks import get_task
torch.set_num_threads(2)
model, case, dtype = sys.argv[1:4]
prompts = [p.prompt for p in get_task("arithmetic").generate(8, seed=12345, difficulty=3)]
ours, tok = load_model(resolve_model_dir(model), dtype=torch.float32)
eng = Engine(ours, tok, max_batch=64, **({"weight_dtype": torch.bfloat16} if dtype == "bf16" else {}))
ps, n, greedy = {"batch64": (prompts, 8, False), "batch8": (prompts, 1, False), "batch1": (prompts[:1], 1, True)}[case]
params = SamplingParams(n=n, max_new_tokens=64, temperature=1.0, greedy=greedy, ignore_eos=True, seed=0)
eng.generate(ps, params)
best = 0.0
for _ in range(3):
    t = time.perf_counter()
    r = eng.generate(ps, params)
    best = max(best, r.generated_tokens / (time.perf_counter() - t))
print(json.dumps({"src": scalinglab.__file__, "tokens_per_s": best}))
"""


def run_one(src: Path, model: str, case: str, dtype: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, "-c", ONE, model, case, dtype], env=env, capture_output=True, text=True)
    if out.returncode != 0:  # one line: the child's last line of error
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"bench_engine_before_after: {case} {dtype} from {src} failed: {last}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if not res["src"].startswith(str(src)):  # the checkout asked for, not the installed one
        raise SystemExit(f"bench_engine_before_after: {src} was not imported (got {res['src']})")
    return res["tokens_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="checkout of the code before the change (a git worktree)")
    ap.add_argument("--after", default=".", help="checkout of the code after it (default: this one)")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--rounds", type=int, default=4)
    a = ap.parse_args()
    srcs = {side: (Path(d).resolve() / "src") for side, d in (("before", a.before), ("after", a.after))}
    for side, src in srcs.items():
        if not (src / "scalinglab" / "__init__.py").exists():
            raise SystemExit(f"bench_engine_before_after: --{side} {src.parent} holds no src/scalinglab")
    res = {f"{c}_{d}": {"before": [], "after": []} for c, d in CASES}
    for r in range(a.rounds):
        for case, dtype in CASES:
            for side in ("before", "after"):
                res[f"{case}_{dtype}"][side].append(run_one(srcs[side], a.model, case, dtype))
            print(f"round {r + 1}/{a.rounds} {case} {dtype}: done", file=sys.stderr, flush=True)
    for v in res.values():
        ratios = [b / x for x, b in zip(v["before"], v["after"])]
        v["after_over_before"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    print(
        json.dumps(
            {
                "model": a.model,
                "rounds": a.rounds,
                "before": str(srcs["before"]),
                "after": str(srcs["after"]),
                "cases": res,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
