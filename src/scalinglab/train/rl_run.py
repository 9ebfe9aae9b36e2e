"""The parts of a GRPO or PPO run that are not the algorithm.

    o = open_rl_run("grpo", cfg, model_path, out, resume)    # checks, run directory (locked)
    if o.finished is not None:
        return o.finished                                      # --resume of a finished run
    with checkpoint.guard(o.run):                              # how the run ended, in runs.sqlite
        model, tok, task, ref = load_policy(o, need_ref=cfg.beta > 0)
        opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
        rl = RLRun(o, task, model, tok, opt, ref=ref, resume=resume)   # engine, resume, baseline
        for step in range(rl.first_step, cfg.steps):
            ...                                                # the recipe's own loop
            rl.end_step(step, rec, t0, tokens)                 # log, checkpoint when due
        return rl.finish()                                     # final model, held-out eval, summary

`RLRun` is fully built by its constructor: the engine over the policy, the response length
limit, `--resume` (the newest intact checkpoint: model, optimizer, RNG, extra modules, wall
time; the data position is the step, since prompts are a pure function of (seed, step)),
held-out greedy accuracy before training, and the TensorBoard writer when one is installed.
Every checkpoint goes through `runs/checkpoint.py`. The summary totals, from the run's own
step records, `prompts_seen`, `samples_seen` (compare GRPO and PPO at equal prompts seen) and
`verifier_errors`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from scalinglab.engine import Engine
from scalinglab.runs import checkpoint
from scalinglab.tasks.seeds import RL_SEED_BASE
from scalinglab.tasks.split import draw, overlap
from scalinglab.train.rollout import prompt_batch

RL_POSITIVE = (
    "steps",
    "prompts_per_step",
    "group_size",
    "samples_per_prompt",
    "temperature",
    "lr",
    "critic_lr",
    "epochs",
    "minibatches",
    "micro_batch",
    "ray_generators",
)
RL_NON_NEGATIVE = (
    "difficulty",
    "max_new_tokens",
    "clip_low",
    "clip_high",
    "clip",
    "value_clip",
    "vf_coef",
    "beta",
    "kl_coef",
    "missing_eos_penalty",
    "reward_clip",
    "warmup_steps",
    "weight_decay",
    "grad_clip",
    "abort_grad_norm",
    "checkpoint_every",
    "eval_problems",
    "gamma",
    "lam",
)


def check_rl_config(cfg) -> None:
    """Refuse (naming the key) numbers an RL run cannot use: steps 0, group_size 0, lr NaN, ..."""
    from scalinglab.errors import UserError
    from scalinglab.train.common import check_fields

    have = set(getattr(type(cfg), "__dataclass_fields__", {}))
    check_fields(
        cfg,
        positive=tuple(k for k in RL_POSITIVE if k in have),
        non_negative=tuple(k for k in RL_NON_NEGATIVE if k in have),
        at_most={k: 1.0 for k in ("gamma", "lam") if k in have},
    )
    if "group_size" in have and cfg.group_size < 2:
        raise UserError(
            f"config key 'group_size': must be >= 2 (advantages are relative to the group), got {cfg.group_size}"
        )


@dataclass(frozen=True)
class Opened:
    """An RL run's checked inputs and its (locked) run directory; see `open_rl_run`."""

    kind: str
    cfg: Any
    run: Any  # runs.Run
    task: Any  # the task as registered (`load_policy` formats it for the policy's tokenizer)
    device: torch.device
    model_dir: Path
    finished: dict | None  # the saved summary when `--resume` found the run already finished


def open_rl_run(kind: str, cfg, model_path: str, out: str, resume: bool) -> Opened:
    """Check the config, task, device and model path, then create (or reopen) the run directory."""
    from scalinglab.device import pick_device
    from scalinglab.model.hf import resolve_model_dir
    from scalinglab.runs import Run
    from scalinglab.tasks import get_task

    task = get_task(cfg.task)
    check_rl_config(cfg)
    device = pick_device(cfg.device)
    model_dir = resolve_model_dir(model_path)
    run = Run.create(out, kind=kind, config={**asdict(cfg), "model": str(model_dir)}, resume=resume)
    return Opened(kind, cfg, run, task, device, model_dir, run.summary if resume and run.finished else None)


def load_policy(o: Opened, need_ref: bool = False):
    """Seed, load the policy in fp32 (and, with `need_ref`, a frozen copy as the reference),
    and format the task for its tokenizer; returns (model, tok, task, ref or None)."""
    from scalinglab.model.hf import load_model
    from scalinglab.model.prompting import PromptFormat, formatted
    from scalinglab.train.common import seed_everything

    cfg = o.cfg
    seed_everything(cfg.seed)
    model, tok = load_model(o.model_dir, device=o.device, dtype=torch.float32)
    task = formatted(o.task, PromptFormat(tok, getattr(cfg, "chat", "auto"), getattr(cfg, "system", "") or None))
    model.eval()
    ref = None
    if need_ref:
        ref = load_model(o.model_dir, device=o.device, dtype=torch.float32)[0].eval().requires_grad_(False)
    return model, tok, task, ref


class RLRun:
    """Engine, resume, per-step logging and checkpoints, held-out evaluation and the summary of
    one RL run (see the module docstring); the recipe's loop runs from `first_step`."""

    def __init__(self, o: Opened, task, model, tok, opt, ref=None, modules: dict | None = None, resume: bool = False):
        from scalinglab.testtime.greedy import default_max_new_tokens

        cfg = self.cfg = o.cfg
        self.kind, self.run, self.device = o.kind, o.run, o.device
        self.task, self.model, self.tok, self.opt, self.ref = task, model, tok, opt, ref
        self.modules = modules or {}
        self.difficulty = cfg.difficulty or None
        self.max_new_tokens = cfg.max_new_tokens or default_max_new_tokens(
            task, draw(task, 64, RL_SEED_BASE - 1, self.difficulty, split="train"), tok
        )
        per_step = getattr(cfg, "prompts_per_step", 16) * max(
            getattr(cfg, "group_size", 1), getattr(cfg, "samples_per_prompt", 1)
        )
        self.engine = Engine(model, tok, max_batch=max(64, per_step))
        self.first_step, self.elapsed0, self.baseline, self.baseline_correct = 0, 0.0, None, None
        if resume:  # the newest intact checkpoint, or step 0 (metrics trimmed either way)
            self.first_step, extra = checkpoint.restore(self.run, model, opt, self.modules)
            self.elapsed0, self.baseline = extra.get("elapsed", 0.0), extra.get("baseline")
            self.baseline_correct = extra.get("baseline_correct")
        if not self.first_step and cfg.eval_problems:
            self.baseline, self.baseline_correct = self.evaluate()
        self.tb = _tensorboard(self.run.path / "tb")
        self.t_start = time.perf_counter()

    def evaluate(self) -> tuple[float, list[int]]:
        """Greedy accuracy on the held-out problems, and 1/0 per problem (for the paired gain interval)."""
        from scalinglab.testtime.greedy import greedy_accuracy

        problems = draw(self.task, self.cfg.eval_problems, self.cfg.eval_seed, self.difficulty, split="eval")
        g = greedy_accuracy(self.model, self.tok, self.task, problems, max_new_tokens=self.max_new_tokens)
        return g["accuracy"], [int(c) for c in g["correct"]]

    def heldout_overlap(self) -> int:
        """Evaluation problems among every step's prompts (regenerated: a pure function of seed and step)."""
        n = getattr(self.cfg, "prompts_per_step", 16)
        steps = (
            p for s in range(self.cfg.steps) for p in prompt_batch(self.task, self.cfg.seed, s, n, self.difficulty)
        )
        return overlap(
            steps, draw(self.task, self.cfg.eval_problems, self.cfg.eval_seed, self.difficulty, split="eval")
        )

    def wall(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t_start

    def end_step(self, step: int, rec: dict, t0: float, tokens: int) -> None:
        """Log step `step` (0-based) and checkpoint when due."""
        dt = time.perf_counter() - t0
        rec.update(step_seconds=dt, tokens_per_s=tokens / max(dt, 1e-9), wall_time=self.wall())
        self.run.log(rec)
        if self.tb is not None:
            for k, v in rec.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(f"{self.kind}/{k}", v, step + 1)
        done = step + 1
        if checkpoint.due(done, self.cfg.checkpoint_every, self.cfg.steps):
            checkpoint.save(
                self.run,
                done,
                self.model,
                self.tok,
                self.opt,
                extra={"elapsed": self.wall(), "baseline": self.baseline, "baseline_correct": self.baseline_correct},
                modules=self.modules,
            )

    def finish(self, extra: dict | None = None) -> dict:
        if self.tb is not None:
            self.tb.close()
        from scalinglab.model.hf import save_model

        save_model(
            self.model,
            self.tok,
            self.run.path / "model",
            extra={"task": self.cfg.task, "difficulty": self.cfg.difficulty},
        )
        recs = self.run.metrics()
        tail = recs[-10:]
        per_prompt = max(getattr(self.cfg, "group_size", 1), getattr(self.cfg, "samples_per_prompt", 1))
        summary = {
            "kind": self.kind,
            "task": self.cfg.task,
            "steps": self.cfg.steps,
            "model": str(self.run.path / "model"),
            "reward_last10": sum(r["reward"] for r in tail) / max(1, len(tail)),
            "train_accuracy_last10": sum(r["accuracy"] for r in tail) / max(1, len(tail)),
            # what the run trained on, from its own step records: compare GRPO and PPO at equal prompts_seen
            "prompts_seen": sum(r.get("prompts", self.cfg.prompts_per_step) for r in recs),
            "samples_seen": sum(r.get("samples", self.cfg.prompts_per_step * per_prompt) for r in recs),
            "verifier_errors": sum(r.get("verifier_errors", 0) for r in recs),
            "seconds": self.wall(),
            **(extra or {}),
        }
        if self.cfg.eval_problems:
            from scalinglab.testtime.stats import heldout_gain

            acc, correct = self.evaluate()
            summary.update(
                accuracy_before=self.baseline,
                accuracy=acc,
                eval_seed=self.cfg.eval_seed,
                eval_problems=self.cfg.eval_problems,
                heldout_overlap=self.heldout_overlap(),
                **(
                    heldout_gain(self.baseline_correct, correct)
                    if self.baseline_correct is not None
                    else {"gain": None if self.baseline is None else acc - self.baseline, "gain_ci95": None}
                ),
            )
        self.run.finish(summary)
        return summary


def _tensorboard(path):
    """A TensorBoard writer when the `tensorboard` package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path))
