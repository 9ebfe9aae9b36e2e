"""Does post-training help? The acceptance chain for SFT, DPO, the ORM and the PRM, in one run.

    python benchmarks/bench_posttrain.py --out /tmp/posttrain [--device cuda] [--json]

1. pre-train A: `scalinglab pretrain --task arithmetic --depth 2 --steps 1500 --seed 0`;
2. SFT on rejection-sampled data (the model's own verified samples) and, for reference,
   on the task's worked solutions; greedy accuracy on 200 held-out problems (seed 777)
   before and after;
3. DPO on (verified, failed) pairs of the model's samples; same evaluation;
4. ORM (BCE on verifier labels, and Bradley–Terry on pairs) and PRM (Math-Shepherd soft
   labels): AUC of correct vs wrong held-out answers (PRM: min and last aggregation);
5. the same SFT / ORM / PRM from a weaker model (`--weak-steps` of pre-training), whose
   accuracy leaves room to improve (A itself reaches 96–100 % greedy).

Prints one JSON object with every number and the seconds each stage took. `--small`
shrinks every stage to check the script itself in a minute on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for the runs (must not hold them already)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--pretrain-steps", type=int, default=1500)
    ap.add_argument("--model", default="", help="skip pre-training and start from this run/model")
    ap.add_argument(
        "--weak-steps",
        type=int,
        default=400,
        help="also pre-train a weaker model this long and repeat SFT/ORM/PRM on it (0 = skip)",
    )
    ap.add_argument("--small", action="store_true", help="tiny settings to smoke-test the script")
    args = ap.parse_args()

    from scalinglab.config import override
    from scalinglab.train.dpo import DPOConfig, dpo
    from scalinglab.train.pretrain import PretrainConfig, pretrain
    from scalinglab.train.reward_trainer import RewardModelConfig, train_reward_model
    from scalinglab.train.sft import SFTConfig, sft

    out = Path(args.out)
    dev = {"device": args.device}
    small = dict(steps=3, eval_problems=10, num_problems=16) if args.small else {}
    res: dict = {"device": args.device}

    def stage(name, fn):
        t = time.perf_counter()
        s = fn()
        s["stage_seconds"] = time.perf_counter() - t
        res[name] = s
        print(
            f"{name}: {json.dumps({k: v for k, v in s.items() if isinstance(v, (int, float))})}",
            file=sys.stderr,
            flush=True,
        )
        return s

    model = args.model
    if not model:
        pcfg = PretrainConfig(
            task="arithmetic", depth=2, steps=3 if args.small else args.pretrain_steps, seed=0, eval_problems=200, **dev
        )
        stage("pretrain", lambda: pretrain(pcfg, str(out / "A")))
        model = str(out / "A")
    stage(
        "sft_rejection",
        lambda: sft(override(SFTConfig(source="samples", steps=100, **dev), small), model, str(out / "sft_rs")),
    )
    stage(
        "sft_solutions",
        lambda: sft(override(SFTConfig(source="solutions", steps=100, **dev), small), model, str(out / "sft_sol")),
    )
    stage("dpo", lambda: dpo(override(DPOConfig(steps=50, **dev), small), model, str(out / "dpo")))
    stage(
        "dpo_rpo", lambda: dpo(override(DPOConfig(steps=50, nll_weight=1.0, **dev), small), model, str(out / "dpo_rpo"))
    )
    rm_small = {**small, "eval_problems": 10} if small else {}
    stage(
        "orm_bce",
        lambda: train_reward_model(
            override(RewardModelConfig(kind="orm", objective="bce", steps=200, **dev), rm_small),
            model,
            str(out / "orm"),
        ),
    )
    stage(
        "orm_bt",
        lambda: train_reward_model(
            override(RewardModelConfig(kind="orm", objective="bt", num_problems=2048, steps=200, **dev), rm_small),
            model,
            str(out / "orm_bt"),
        ),
    )
    stage(
        "prm",
        lambda: train_reward_model(
            override(RewardModelConfig(kind="prm", num_problems=128, steps=200, **dev), rm_small),
            model,
            str(out / "prm"),
        ),
    )
    if args.weak_steps and not args.model:
        wcfg = PretrainConfig(
            task="arithmetic", depth=2, steps=3 if args.small else args.weak_steps, seed=0, eval_problems=200, **dev
        )
        stage("pretrain_weak", lambda: pretrain(wcfg, str(out / "W")))
        weak = str(out / "W")
        stage(
            "sft_rejection_weak",
            lambda: sft(override(SFTConfig(source="samples", steps=100, **dev), small), weak, str(out / "sft_rs_w")),
        )
        stage(
            "orm_bce_weak",
            lambda: train_reward_model(
                override(RewardModelConfig(kind="orm", steps=200, **dev), rm_small), weak, str(out / "orm_w")
            ),
        )
        stage(
            "prm_weak",
            lambda: train_reward_model(
                override(RewardModelConfig(kind="prm", num_problems=128, steps=200, **dev), rm_small),
                weak,
                str(out / "prm_w"),
            ),
        )
    print(json.dumps(res, default=str))


if __name__ == "__main__":
    main()
