"""The optimisation loop SFT, DPO and reward-model training share.

Per optimizer step: set the LR (linear warmup, cosine decay), zero the gradients, let the
algorithm's `step_fn` run forward/backward over its micro-batches (each micro-batch loss is
already divided by the normaliser of the *whole* step, so accumulation is exact and never
divided by the micro-batch count again), clip, check that loss and gradient norm are
finite (and the norm below `stop_grad_norm`) *before* the update, step, log one metrics
record, and checkpoint atomically every `checkpoint_every` steps. `--resume` reloads model,
head, optimizer, RNG and data position from the newest intact checkpoint and trims metrics
past it (to step 0 when killed before the first one), so every step appears exactly once;
the records the summary averages travel in the checkpoint, so a resumed summary is the
uninterrupted one. The mechanism is `runs/checkpoint.py`, shared with pretrain and RL.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from scalinglab.errors import UserError
from scalinglab.runs import checkpoint
from scalinglab.train.common import NonFiniteError, check_finite, lr_at


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
    loss: float  # the step's loss (sum over micro-batches of the globally normalised losses)
    tokens: int  # tokens processed (for tokens/s)
    stats: dict[str, float] = field(default_factory=dict)  # accuracy, margins, ...


def restore(run, model, opt, data, modules: dict | None = None) -> tuple[int, float, dict]:
    """Load the last intact checkpoint of `run` into model/opt/data/modules (runs/checkpoint.py,
    which also trims metrics.jsonl to it); (step, elapsed, extra), (0, 0.0, {}) for none."""
    step, extra = checkpoint.restore(run, model, opt, modules)
    if step:
        data.load(extra["data"])
    return step, extra.get("elapsed", 0.0), extra


def train_steps(
    run,
    cfg,
    model,
    tok,
    opt,
    data,
    step_fn: Callable[[Any], StepResult],
    params,
    modules: dict | None = None,
    progress: Callable[..., None] | None = None,
    kind: str = "train",
) -> list[dict]:
    """Run steps [start, cfg.steps) (resuming if the run has a checkpoint); returns the records.

    `data.next_batch()` gives one optimizer step's batch; `data.state()/load()` its position.
    """
    start, elapsed0, extra = restore(run, model, opt, data, modules)
    total, peak = cfg.steps, cfg.lr
    warmup = min(cfg.warmup_steps, max(1, total // 10))
    params = [p for p in params if p.requires_grad]
    records = list(extra.get("records", []))  # every step's record, across resumes (what the summary averages)
    t0 = time.perf_counter() - elapsed0
    model.train()
    for step in range(start, total):
        t_step = time.perf_counter()
        lr = lr_at(step, total, peak, warmup, cfg.min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = data.next_batch()
        opt.zero_grad(set_to_none=True)
        res = step_fn(batch)
        gn = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf))
        try:
            check_finite(step + 1, loss=res.loss, grad_norm=gn)
            if gn > cfg.stop_grad_norm:
                raise NonFiniteError(
                    f"step {step + 1}: gradient norm {gn:.3g} > stop_grad_norm={cfg.stop_grad_norm:g} (exploding); stopped, last good checkpoint kept"
                )
        except NonFiniteError as e:  # the update is not applied; the last checkpoint stays the newest
            last = run.latest_checkpoint()
            raise UserError(
                f"{kind}: {e} ({last if last else 'no checkpoint yet; lower lr or set checkpoint_every'})"
            ) from None
        opt.step()
        done = step + 1
        now = time.perf_counter()
        rec = {
            "step": done,
            "loss": res.loss,
            **res.stats,
            "grad_norm": gn,
            "lr": lr,
            "tokens": res.tokens,
            "tokens_per_s": res.tokens / max(now - t_step, 1e-9),
            "wall_time": now - t0,
        }
        records.append(rec)
        if done % cfg.log_every == 0 or done == total:
            run.log(rec)
        if progress:
            progress(done, total, loss=res.loss)
        if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < total:
            checkpoint.save(
                run,
                done,
                model,
                tok,
                opt,
                extra={"data": data.state(), "elapsed": now - t0, "records": records},
                modules=modules,
            )
    model.eval()
    return records


def tail_mean(records: list[dict], key: str, frac: float = 0.1) -> float | None:
    vals = [r[key] for r in records if r.get(key) is not None]
    if not vals:
        return None
    tail = vals[-max(1, int(len(vals) * frac)) :]
    return sum(tail) / len(tail)


def micro_batches(items: list, micro: int) -> list[list]:
    """Split one step's items into micro-batches of at most `micro` (0 = one batch)."""
    micro = micro or len(items)
    return [items[i : i + micro] for i in range(0, len(items), micro)]
