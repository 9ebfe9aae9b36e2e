"""Is `eval` as fast as the engine's benchmark? GSM8K under the chat template on a real model.

    python benchmarks/bench_eval_vs_engine.py [--model smollm2-135m] [--problems 16] [--rounds 2]

Two contenders, interleaved, `--rounds` times, in one process on the same loaded weights:
- `eval`: `testtime.evaluate` on the first `--problems` GSM8K test problems, 8 samples each at
  temperature 1, stopping at EOS / the stop strings as the command does (its `decode` record:
  generated tokens over the engine call's wall time, prefill included, judging excluded);
- `engine`: the benchmark's fixed-length case at the same batch and lengths: the same prompts, 8
  samples each, EOS ignored, the eval's cap of new tokens (256) for every sample.
Prints one JSON object: tokens/s of both per round, and eval / engine (median, min, max).
"""

import argparse
import json
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "gsm8k" / "test.jsonl"))
    a = ap.parse_args()

    import torch

    from scalinglab.engine import Engine, SamplingParams
    from scalinglab.model.hf import load_model
    from scalinglab.model.prompting import format_task
    from scalinglab.tasks import get_task, load_problems
    from scalinglab.testtime.evaluate import EvalConfig, evaluate

    model, tok = load_model(a.model)
    task = get_task("gsm8k")
    task, probs = format_task(task, load_problems(a.data, default_task="gsm8k", task=task)[: a.problems], tok, "auto")
    cfg = EvalConfig(strategy="sample", ns=(8,), temperature=1.0, seed=0, max_batch=64)
    rounds = []
    for r in range(a.rounds):
        with torch.no_grad():
            s = evaluate(model, tok, task, probs, cfg)
        d = s["decode"]
        longest = d["max_new_tokens"]  # the eval's cap (GSM8K: 256); its samples average fewer
        t0 = time.perf_counter()
        res = Engine(model, tok, max_batch=64).generate(
            [p.prompt for p in probs], SamplingParams(n=8, max_new_tokens=longest, ignore_eos=True, seed=r)
        )
        bench = res.generated_tokens / (time.perf_counter() - t0)
        rounds.append(
            {
                "eval_tokens_per_s": d["tokens_per_s"],
                "eval_generated_tokens": d["generated_tokens"],
                "engine_tokens_per_s": bench,
                "engine_new_tokens": longest,
                "ratio": d["tokens_per_s"] / bench,
            }
        )
        print(json.dumps(rounds[-1]), flush=True)
    ratios = [x["ratio"] for x in rounds]
    print(
        json.dumps(
            {
                "benchmark": "eval_vs_engine",
                "model": a.model,
                "problems": len(probs),
                "samples_per_problem": 8,
                "threads": torch.get_num_threads(),
                "rounds": rounds,
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
