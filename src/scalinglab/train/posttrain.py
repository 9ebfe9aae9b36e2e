"""What SFT, DPO and reward-model training share, apart from their loops (each recipe's
loop is written out in its own file: sft.py, dpo.py, reward_trainer.py).

- `open_run`: check every input, load the starting model, format the task for its
  tokenizer (chat template or few-shot), create (or reopen) the run directory, seed.
- `check_ranges`: refuse numbers that would train nothing or nonsense, naming the key.
- `StepResult`: what one optimizer step's forward/backward passes return to the loop.
- `micro_batches`: a step's items split for gradient accumulation; every micro-batch loss is
  already divided by the normaliser of the *whole* step, so accumulation is exact.
- `heldout_accuracy`, `tail_mean`: the summaries' held-out accuracy and train-loss tail.

The loop of each recipe: set the LR (linear warmup, cosine decay), zero the gradients, run
the step's micro-batches forward and backward, clip, `common.check_update` (loss and gradient
norm finite, norm below `stop_grad_norm`) *before* the update, step, keep one record (logged
every `log_every`), checkpoint every `checkpoint_every` steps. `--resume` reloads model, head,
optimizer, RNG and data position from the newest intact checkpoint and trims metrics past it
(`runs/checkpoint.py`); the records the summary averages travel in the checkpoint, so a
resumed summary is the uninterrupted one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Opened:
    """What a post-training run starts from (see `open_run`)."""

    task: Any
    device: torch.device
    model: Any
    tok: Any
    run: Any
    finished: dict | None  # the saved summary when `--resume` found the run already finished


def open_run(kind: str, cfg, model_path: str, out: str, resume: bool) -> Opened:
    """Check inputs, load the starting model, create (or reopen) the run directory, seed.

    Every input is validated before the run directory is created, so bad input leaves nothing.
    """
    from dataclasses import asdict

    from scalinglab.device import pick_device
    from scalinglab.model.hf import load_model
    from scalinglab.model.prompting import PromptFormat, formatted
    from scalinglab.runs import Run
    from scalinglab.runs.store import read_text
    from scalinglab.tasks import get_task
    from scalinglab.train.common import seed_everything
    from scalinglab.train.data import check_data_file

    task = get_task(cfg.task)
    check_ranges(cfg)
    if cfg.data:
        read_text(cfg.data, "--data")  # a directory, a binary or non-UTF-8 file: one line, before anything is made
    check_data_file(cfg.data)
    device = pick_device(cfg.device)
    model, tok = load_model(model_path, device=device)
    task = formatted(
        task, PromptFormat(tok, getattr(cfg, "chat", "auto"), getattr(cfg, "system", "") or None)
    )  # chat template / few-shot
    run = Run.create(out, kind=kind, config={**asdict(cfg), "model": str(model_path)}, resume=resume)
    if resume and run.finished:
        return Opened(task, device, model, tok, run, run.summary)
    seed_everything(cfg.seed)
    return Opened(task, device, model, tok, run, None)


POSITIVE = (
    "steps",
    "batch_size",
    "seq_len",
    "lr",
    "log_every",
    "num_problems",
    "samples_per_problem",
    "beta",
    "max_pairs_per_problem",
    "rollouts",
)
NON_NEGATIVE = (
    "checkpoint_every",
    "eval_problems",
    "warmup_steps",
    "micro_batch_size",
    "weight_decay",
    "grad_clip",
    "min_lr_ratio",
    "sample_temperature",
    "rollout_temperature",
    "difficulty",
    "stop_grad_norm",
    "nll_weight",
    "eval_samples",
)


def check_ranges(cfg) -> None:
    """Refuse (naming the key) numbers that would train nothing or nonsense: steps <= 0,
    batch_size = 0, lr = -1 or NaN, ... for whichever of these fields `cfg` has."""
    from scalinglab.train.common import check_fields

    have = {f for f in vars(type(cfg)).get("__dataclass_fields__", {})}
    check_fields(
        cfg, positive=tuple(k for k in POSITIVE if k in have), non_negative=tuple(k for k in NON_NEGATIVE if k in have)
    )


@dataclass
class StepResult:
    """What one optimizer step's forward/backward passes (`sft_backward`, ...) give the loop."""

    loss: float  # the step's loss (sum over micro-batches of the globally normalised losses)
    tokens: int  # tokens processed (for tokens/s)
    stats: dict[str, float] = field(default_factory=dict)  # accuracy, margins, ...


def log_step(
    run,
    records: list[dict],
    cfg,
    done: int,
    res: StepResult,
    grad_norm: float,
    lr: float,
    t_step: float,
    t_run: float,
    progress,
) -> float:
    """Record optimizer step `done`: its metrics record goes to `records` (the summary's tail and the
    checkpoint carry them) and, every `cfg.log_every` steps and at the last, to metrics.jsonl; the
    progress bar moves. Returns the time it was recorded (the checkpoint's `elapsed` starts there)."""
    now = time.perf_counter()
    rec = {
        "step": done,
        "loss": res.loss,
        **res.stats,
        "grad_norm": grad_norm,
        "lr": lr,
        "tokens": res.tokens,
        "tokens_per_s": res.tokens / max(now - t_step, 1e-9),
        "wall_time": now - t_run,
    }
    records.append(rec)
    if done % cfg.log_every == 0 or done == cfg.steps:
        run.log(rec)
    if progress:
        progress(done, cfg.steps, loss=res.loss)
    return now


def tail_mean(records: list[dict], key: str, frac: float = 0.1) -> float | None:
    """Mean of `key` over the last `frac` of the records that have it (None when none do)."""
    vals = [r[key] for r in records if r.get(key) is not None]
    if not vals:
        return None
    tail = vals[-max(1, int(len(vals) * frac)) :]
    return sum(tail) / len(tail)


def micro_batches(items: list, micro: int) -> list[list]:
    """Split one step's items into micro-batches of at most `micro` (0 = one batch)."""
    micro = micro or len(items)
    return [items[i : i + micro] for i in range(0, len(items), micro)]


def heldout_accuracy(model, tok, task, problems) -> tuple[float | None, list[int]]:
    """Greedy accuracy on `problems` and 1/0 per problem ((None, []) without problems)."""
    if not problems:
        return None, []
    from scalinglab.testtime.greedy import greedy_accuracy

    g = greedy_accuracy(model, tok, task, problems)
    return g["accuracy"], [int(c) for c in g["correct"]]
