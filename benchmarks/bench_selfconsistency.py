"""Does self-consistency beat greedy? Majority@n against greedy on a small model trained here.

    python benchmarks/bench_selfconsistency.py [--task arithmetic-paths] [--steps 1500] [--seed 0]
        [--model DIR] [--temperatures 0.7,1.0] [--n 1,4,16] [--problems 200] [--out DIR]

1. pre-train `scalinglab pretrain --task T --depth 2 --steps S --seed SEED` (or load --model);
2. greedy accuracy on P held-out problems (generator seed 777);
3. for each temperature, 16 samples per problem (one draw serves every n) and majority@n;
4. the paired bootstrap 95 % CI of majority@max(n) − greedy over problems (10,000 resamples).

Prints ONE JSON object: {"task", "model", "steps", "seed", "problems", "greedy",
"temperatures": [{"temperature", "majority": {n: acc}, "pass_at_k": {n: p}, "delta",
"ci95": [lo, hi]}], "seconds": {...}}. Run it with `--task arithmetic` to see the
single-path baseline (no gain) next to `arithmetic-paths` (several routes per problem: gain),
and `--one-route` for the control: the same problems, every solution left to right.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from scalinglab.testtime.stats import majority_correct, paired_bootstrap


def run(
    task_name: str,
    model_dir: str,
    problems_n: int,
    temperatures: list[float],
    ns: list[int],
    sample_seed: int = 1,
    eval_seed: int = 777,
) -> dict:
    from scalinglab.model.hf import load_model
    from scalinglab.tasks import get_task
    from scalinglab.testtime.evaluate import EvalConfig, evaluate

    task = get_task(task_name)
    problems = task.generate(problems_n, seed=eval_seed)
    model, tok = load_model(model_dir, device="cpu")
    t0 = time.perf_counter()
    g = evaluate(model, tok, task, problems, EvalConfig(strategy="greedy"))
    greedy = [int(r["correct_samples"] > 0) for r in g["per_problem"]]
    secs = {"greedy": round(time.perf_counter() - t0, 1)}
    temps = []
    for t in temperatures:
        t0 = time.perf_counter()
        m = evaluate(
            model, tok, task, problems, EvalConfig(strategy="majority", ns=tuple(ns), temperature=t, seed=sample_seed)
        )
        secs[f"majority_T{t}"] = round(time.perf_counter() - t0, 1)
        top = majority_correct(m, max(ns), task, problems)
        lo, hi = paired_bootstrap(top, greedy)
        temps.append(
            {
                "temperature": t,
                "majority": {str(p["n"]): p["accuracy"] for p in m["points"]},
                "pass_at_k": {str(p["n"]): round(p["pass_at_k"], 4) for p in m["points"]},
                "delta": round((sum(top) - sum(greedy)) / len(top), 4),
                "ci95": [round(lo, 4), round(hi, 4)],
            }
        )
    return {
        "task": task_name,
        "model": str(model_dir),
        "problems": problems_n,
        "eval_seed": eval_seed,
        "greedy": sum(greedy) / len(greedy),
        "temperatures": temps,
        "seconds": secs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="arithmetic-paths")
    ap.add_argument("--model", default="", help="evaluate this run directory instead of pre-training one")
    ap.add_argument("--steps", type=int, default=1500, help="pre-training steps (depth 2)")
    ap.add_argument("--seed", type=int, default=0, help="pre-training seed")
    ap.add_argument("--temperatures", default="0.7,1.0")
    ap.add_argument("--n", default="1,4,16")
    ap.add_argument("--problems", type=int, default=200)
    ap.add_argument(
        "--one-route",
        action="store_true",
        help="the control: arithmetic-paths with every solution left to right (one path per problem)",
    )
    ap.add_argument("--out", default="", help="where the pre-trained run goes (default: a temporary directory)")
    args = ap.parse_args()

    if args.one_route:
        # same name, so the same problems and training stream; only the solutions' route changes
        from scalinglab.tasks import extra
        from scalinglab.tasks.arithmetic_paths import ArithmeticPaths

        if args.task != "arithmetic-paths":
            raise SystemExit("--one-route applies to --task arithmetic-paths")
        extra.TASKS["arithmetic-paths"] = lambda: ArithmeticPaths(one_route=True)
    t0 = time.perf_counter()
    model, train_s = args.model, 0.0
    if not model:
        from scalinglab.train.pretrain import PretrainConfig, pretrain

        out = args.out or str(Path(tempfile.mkdtemp(prefix="selfcons-")) / "model")
        print(f"pre-training {args.task} depth 2, {args.steps} steps, seed {args.seed} -> {out}", file=sys.stderr)
        pretrain(PretrainConfig(task=args.task, depth=2, steps=args.steps, seed=args.seed, eval_problems=0), out)
        model, train_s = out, time.perf_counter() - t0
    res = run(
        args.task,
        model,
        args.problems,
        [float(t) for t in args.temperatures.split(",")],
        sorted(int(n) for n in args.n.split(",")),
    )
    res = {
        **res,
        "one_route": args.one_route,
        "steps": args.steps if not args.model else None,
        "seed": args.seed if not args.model else None,
    }
    res["seconds"] = {"pretrain": round(train_s, 1), **res["seconds"], "total": round(time.perf_counter() - t0, 1)}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
