"""Save, restore and resume: the one mechanism every recipe's loop uses.

    run = Run.create(out, kind, config, resume)       # locks DIR (runs/store.py)
    with guard(run):                                  # true status, one-line disk-full, no half-start
        start, extra = restore(run, model, opt, modules)   # 0, {} for a fresh run
        for step in range(start, total):
            ...
            if due(step + 1, every, total): save(run, step + 1, model, tok, opt, extra={...})
        run.finish(summary)

`save` writes `checkpoints/step-N/` atomically: the model in Hugging Face layout plus
`train_state.pt` (optimizer, RNG streams, extra modules, whatever the loop puts in `extra`:
its data position, wall time, the per-step records its summary averages over). A save
that fails (disk full, Ctrl-C) leaves no temp directory.

`restore` is what `--resume` does, for every recipe the same way: load the newest intact
checkpoint (a truncated or unreadable one is named on stderr, moved aside to
`checkpoints/corrupt-step-N`, and the one before it is used), then trim `metrics.jsonl` to
the restored step (step 0 when the run was killed before its first checkpoint), so every
step appears exactly once, and remove temp directories a killed save left.

`guard` records how the run ended in `runs.sqlite`: failed (with the error), interrupted
(Ctrl-C or SIGTERM, which it turns into KeyboardInterrupt), a full disk as one line
naming the run; a new run that fails before logging a step (or is interrupted before it
wrote anything but its bookkeeping) is removed again, so the corrected command is not
refused. A SIGKILL cannot be recorded: the index then says
`running` while the lock is free, and `list_runs` reports it as interrupted.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
import threading
from pathlib import Path
from typing import Iterator

from scalinglab.errors import UserError
from scalinglab.runs.store import Run, disk_full

TRAIN_STATE = "train_state.pt"
WEIGHTS = Path("model") / "model.safetensors"


def rng_state() -> dict:
    """Every random stream a training step draws from: Python, NumPy, torch (and CUDA)."""
    import random

    import numpy as np
    import torch

    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    import random

    import numpy as np
    import torch

    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save(
    run: Run,
    step: int,
    model,
    tokenizer,
    optimizer=None,
    extra: dict | None = None,
    modules: dict | None = None,
    keep: int = 2,
) -> Path:
    """Write checkpoints/step-`step` atomically (temp directory + rename); returns its path."""
    import torch

    from scalinglab.model.hf import save_model

    tmp = run.new_checkpoint_tmp(step)
    try:
        save_model(model, tokenizer, tmp / "model")
        state = {
            "step": step,
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "rng": rng_state(),
            "extra": extra or {},
            "modules": {k: m.state_dict() for k, m in (modules or {}).items()},
        }
        torch.save(state, tmp / TRAIN_STATE)
        return run.commit_checkpoint(tmp, step, keep=keep)
    except BaseException as e:
        import shutil

        # torch's writer reports a full disk only as "file write failed": look at the disk itself
        full = isinstance(e, Exception) and not disk_full(e) and shutil.disk_usage(run.checkpoint_dir).free < 1 << 20
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise OSError(errno.ENOSPC, f"No space left on device (writing checkpoint step-{step})") from e
        raise


def due(step: int, every: int, total: int) -> bool:
    """Whether a loop saves after `step` (1-based) of `total` steps: every `every` steps (0 =
    never), but not after the last one (the finished run saves its final model instead)."""
    return bool(every) and step % every == 0 and step < total


def load_state(ckpt: Path) -> dict:
    """The train_state.pt of checkpoint `ckpt`; a missing or torn file is a UserError naming it."""
    import torch

    p = Path(ckpt) / TRAIN_STATE
    if not p.exists():
        raise UserError(f"{p}: missing")
    try:
        return torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # a torn or corrupt file
        raise UserError(
            f"{p}: unreadable ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
        ) from None


def _load_weights(ckpt: Path) -> dict:
    from safetensors.torch import load_file

    p = Path(ckpt) / WEIGHTS
    if not p.exists():
        raise UserError(f"{p}: missing")
    try:
        return load_file(str(p))
    except Exception as e:
        raise UserError(
            f"{p}: unreadable ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
        ) from None


def restore(run: Run, model, optimizer=None, modules: dict | None = None) -> tuple[int, dict]:
    """Load the newest intact checkpoint of `run` into model/optimizer/modules and set the RNG.

    Returns (step, extra): the step to continue from and the loop's saved `extra` (0 and {}
    when there is no usable checkpoint: the run starts over). Trims metrics.jsonl to that
    step and clears partial checkpoint directories.
    """
    run.clear_partial_checkpoints()
    for step, ckpt in reversed(list(run.checkpoints())):
        try:
            st, sd = load_state(ckpt), _load_weights(ckpt)
        except UserError as e:
            bad = ckpt.with_name(f"corrupt-{ckpt.name}")
            ckpt.rename(bad)
            print(f"warning: {e}; checkpoint moved to {bad.name}, falling back to the one before", file=sys.stderr)
            continue
        try:
            model.load_state_dict(sd, strict=False)
            for name, m in (modules or {}).items():
                m.load_state_dict(st["modules"][name])
            if optimizer is not None:
                optimizer.load_state_dict(st["optimizer"])
        except (RuntimeError, KeyError, ValueError) as e:  # shapes of another model: refuse, do not fall back
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise UserError(f"{ckpt}: does not fit this run's model ({first})") from None
        set_rng_state(st["rng"])
        run.trim_metrics(st["step"])
        return st["step"], st.get("extra") or {}
    run.trim_metrics(0)  # killed before its first checkpoint: start over, forget its logged steps
    return 0, {}


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (plain `kill`) raises KeyboardInterrupt like Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    try:
        prev = signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):  # not settable here (an embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, prev)


BOOKKEEPING = {"config.json", "command.txt", ".lock", "metrics.jsonl", "tb", "checkpoints"}


def _started(run: Run, strict: bool) -> bool:
    """Whether the run has work worth keeping: a logged step or a checkpoint (with `strict`
    False, also any file a recipe wrote before its first step, e.g. sampled data)."""
    if run.metrics() or any(True for _ in run.checkpoints()):
        return True
    return not strict and run.path.exists() and any(p.name not in BOOKKEEPING for p in run.path.iterdir())


@contextlib.contextmanager
def guard(run: Run, release: bool = True) -> Iterator[Run]:
    """Record how the block ends in the run index; see the module docstring.

    `release=False` keeps the lock when the block ends normally (a start whose loop follows
    in another `guard`); it is always dropped when the block raises.
    """
    try:
        with sigterm_as_interrupt():
            yield run
    except KeyboardInterrupt as e:
        run.interrupt("interrupted (SIGTERM)" if str(e) == "SIGTERM" else "interrupted (Ctrl-C)")
        run.clear_partial_checkpoints()
        if not _started(run, strict=False):
            run.discard()
        run.release()
        raise
    except BaseException as e:
        full = disk_full(e)
        reason = "disk full" if full else (str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}")
        run.fail(reason.splitlines()[0] if reason.strip() else type(e).__name__)
        run.clear_partial_checkpoints()
        if not _started(run, strict=True):
            run.discard()
        run.release()
        if full:
            last = run.latest_checkpoint()
            raise UserError(
                f"{run.path}: disk full (no space left on device); "
                + (
                    f"the last checkpoint {last.name} is kept: free space and --resume"
                    if last
                    else "nothing was checkpointed yet: free space and run again"
                )
            ) from None
        raise
    else:
        if release:
            run.release()
