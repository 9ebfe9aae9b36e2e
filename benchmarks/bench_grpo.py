"""GRPO step time and accuracy: scalinglab `train grpo` vs TRL's `GRPOTrainer`, side by side.

    .venv/bin/python benchmarks/bench_grpo.py --model runs/A --steps 40 --json

Both start from the same model, exported as a Hugging Face directory (`scalinglab
export-hf`), and run the same recipe: the same prompts in the same order, `prompts`
problems × `group` samples per step, the same max completion length, temperature 1
(full distribution), learning rate, AdamW betas, gradient clipping, β = 0, clip-higher
(0.2 / 0.28), z-score group advantages and the DAPO token-mean loss (TRL's defaults
`loss_type="dapo"`, `scale_rewards="group"`), one optimizer step per generation. TRL's
gradient checkpointing (on by default, a memory saving) is turned off: it only costs time
on a model this small. The
reward is the same verifier. Reported: median seconds per step (after the first), total
wall time, and greedy accuracy on held-out problems (seed 777) before and after; for ours
also the step's median generate / score / train seconds.
TRL runs on CPU with `use_cpu=True` and generates with `transformers.generate`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def export(model: str, out: Path) -> Path:
    from scalinglab.model.hf import load_model, save_model

    m, tok = load_model(model)
    save_model(m, tok, out)
    return out


def accuracy(model, tok, task, n: int, seed: int, max_new_tokens: int) -> float:
    from scalinglab.testtime.greedy import greedy_accuracy

    return greedy_accuracy(model, tok, task, task.generate(n, seed=seed), max_new_tokens=max_new_tokens)["accuracy"]


def run_ours(hf_dir: Path, args, work: Path) -> dict:
    from scalinglab.runs import Run
    from scalinglab.train.grpo import GRPOConfig, train_grpo

    cfg = GRPOConfig(
        task=args.task,
        steps=args.steps,
        prompts_per_step=args.prompts,
        group_size=args.group,
        max_new_tokens=args.max_new_tokens,
        lr=args.lr,
        seed=args.seed,
        eval_problems=args.eval_problems,
        device="cpu",
    )
    t0 = time.perf_counter()
    s = train_grpo(cfg, str(hf_dir), str(work / "ours"))
    wall = time.perf_counter() - t0
    recs = Run(work / "ours").metrics()
    med = {
        k: statistics.median([r[k] for r in recs[1:] or recs])  # after the first step, like TRL's side
        for k in ("step_seconds", "generate_seconds", "score_seconds", "train_seconds")
    }
    return {
        **med,
        "wall_seconds": wall,
        "accuracy_before": s["accuracy_before"],
        "accuracy": s["accuracy"],
        "reward_last10": s["reward_last10"],
    }


def run_trl(hf_dir: Path, args, work: Path) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig as TRLConfig
    from trl import GRPOTrainer

    from scalinglab.model.hf import load_model
    from scalinglab.tasks import get_task
    from scalinglab.train.rollout import prompt_batch

    task = get_task(args.task)
    problems = [p for s in range(args.steps) for p in prompt_batch(task, args.seed, s, args.prompts, None)]
    by_prompt = {p.prompt: p for p in problems}
    ds = Dataset.from_list([{"prompt": p.prompt} for p in problems])

    def verifier_reward(prompts, completions, **_):
        return [task.check(by_prompt[p], c).reward for p, c in zip(prompts, completions)]

    times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t)

    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    cfg = TRLConfig(
        output_dir=str(work / "trl"),
        per_device_train_batch_size=args.prompts * args.group,
        num_generations=args.group,
        gradient_accumulation_steps=1,
        max_completion_length=args.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.95,
        adam_epsilon=1e-8,
        max_grad_norm=1.0,
        beta=0.0,
        epsilon=0.2,
        epsilon_high=0.28,
        loss_type="dapo",
        scale_rewards="group",
        max_steps=args.steps,
        shuffle_dataset=False,
        use_cpu=True,
        bf16=False,
        logging_steps=1,
        save_strategy="no",
        gradient_checkpointing=False,
        report_to="none",
        seed=args.seed,
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=model, reward_funcs=verifier_reward, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[Timer()]
    )
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # TRL prints its logs; keep stdout for --json
        trainer.train()
    wall = time.perf_counter() - t0
    ours, our_tok = load_model(hf_dir)
    ours.load_state_dict({k: v.float() for k, v in trainer.model.state_dict().items()}, strict=False)
    acc = accuracy(ours.eval(), our_tok, task, args.eval_problems, 777, args.max_new_tokens)
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    return {
        "step_seconds": statistics.median(times[1:] or times),
        "wall_seconds": wall,
        "accuracy": acc,
        "reward_last10": sum(rewards[-10:]) / max(1, len(rewards[-10:])),
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", required=True, help="scalinglab run or model directory (e.g. from `scalinglab pretrain`)"
    )
    ap.add_argument("--task", default="arithmetic")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--prompts", type=int, default=16, help="problems per step")
    ap.add_argument("--group", type=int, default=8, help="samples per problem")
    ap.add_argument("--max-new-tokens", type=int, default=0, help="0 = the task default used by `train grpo`")
    ap.add_argument("--lr", type=float, default=0.0, help="0 = GRPOConfig's default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-problems", type=int, default=200)
    ap.add_argument("--only", choices=["both", "ours", "trl"], default="both")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import torch

    from scalinglab.tasks import get_task
    from scalinglab.tasks.seeds import RL_SEED_BASE
    from scalinglab.testtime.greedy import default_max_new_tokens
    from scalinglab.train.grpo import GRPOConfig

    task = get_task(args.task)
    args.max_new_tokens = args.max_new_tokens or default_max_new_tokens(task, task.generate(64, seed=RL_SEED_BASE - 1))
    args.lr = args.lr or GRPOConfig().lr
    work = Path(tempfile.mkdtemp(prefix="bench_grpo_"))
    hf_dir = export(args.model, work / "hf")
    res = {
        "task": args.task,
        "steps": args.steps,
        "prompts": args.prompts,
        "group": args.group,
        "max_new_tokens": args.max_new_tokens,
        "lr": args.lr,
        "threads": torch.get_num_threads(),
        "cpus": len(os.sched_getaffinity(0)),
    }
    if args.only in ("both", "ours"):
        res["scalinglab"] = run_ours(hf_dir, args, work)
    if args.only in ("both", "trl"):
        res["trl"] = run_trl(hf_dir, args, work)
    if args.only == "both":
        res["speedup"] = res["trl"]["step_seconds"] / res["scalinglab"]["step_seconds"]
        res["accuracy_delta"] = res["scalinglab"]["accuracy"] - res["trl"]["accuracy"]
    if args.json:
        print(json.dumps(res))
    else:
        for side in ("scalinglab", "trl"):
            if side in res:
                r = res[side]
                print(
                    f"{side:>10}: {r['step_seconds']:.3f} s/step, wall {r['wall_seconds']:.1f}s, greedy accuracy {r['accuracy']:.3f}"
                )
        if "speedup" in res:
            print(f"speedup {res['speedup']:.2f}x, accuracy delta {res['accuracy_delta']:+.3f}")
    return res


if __name__ == "__main__":
    sys.exit(main() and 0)
