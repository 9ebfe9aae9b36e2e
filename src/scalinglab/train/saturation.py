"""Saturated benchmarks: one ladder, one task, three difficulties.

    scalinglab sweep saturation --task arithmetic --difficulties 1,2,3 --depths 1,2 --tokens 1e5,3e5,1e6 --out runs/sat --json

A benchmark stops measuring progress once a model family solves it: its accuracy sits at the
ceiling while the loss keeps falling and harder problems of the same kind keep improving.
This study shows it on one ladder:
1. every rung (each depth of `--depths` at each budget of `--tokens`) pre-trains on an even mix
   of the task's difficulties (`PretrainConfig.difficulty_mix`, e.g. 1-, 2- and 3-digit
   `arithmetic`), so every difficulty is in the training distribution and the ladder is the same
   ladder for all three. Rungs are ordinary pre-training runs (`DIR/rung-d{depth}-t{tokens}`),
   trained and reused as `sweep pretrain` does;
2. each rung is then evaluated at every difficulty, on held-out problems only
   (`tasks.split.draw(..., split="eval")`, `--eval-problems` per difficulty, or the whole
   evaluation split when it is smaller: 1-digit `arithmetic` has 40 distinct evaluation problems):
   greedy accuracy with a 95% Wilson interval, and the validation loss on that difficulty's
   held-out solutions. The result is cached in the rung as `saturation.json`;
3. the summary describes, per difficulty, how the accuracy moves over the top half of the
   compute range (compute C = 6ND), next to the mixture's validation loss: a difficulty is
   `saturated` when its accuracy is at least `CEILING` at the largest compute and rose by less
   than `FLAT` across the top half of the rungs (ordered by compute), and `improving` when it
   rose by more than that. These are descriptions of the measurement, not targets.

Writes `DIR/saturation.csv`, `DIR/saturation.png` (accuracy per difficulty and loss against
compute) and `DIR/summary.json`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from scalinglab.config import override
from scalinglab.errors import UserError
from scalinglab.runs.store import atomic_write_json, atomic_write_text, read_json
from scalinglab.tasks.seeds import EVAL_SEED
from scalinglab.train.pretrain import PretrainConfig

KEYS = ("task", "depth", "tokens", "seed", "difficulty", "difficulty_mix", "eval_problems")  # set by the sweep itself
CEILING = 0.9  # accuracy at the largest compute at or above which a flat difficulty counts as saturated
FLAT = 0.05  # accuracy gain across the top half of the compute range below which a difficulty is flat
CSV_COLUMNS = (
    "depth",
    "tokens_budget",
    "N",
    "D",
    "C",
    "loss",
    "difficulty",
    "accuracy",
    "ci_lo",
    "ci_hi",
    "n",
    "difficulty_loss",
    "run",
)


@dataclass(frozen=True)
class SaturationConfig:
    task: str = "arithmetic"  # a generated task with a difficulty knob
    difficulties: tuple[int, ...] = (1, 2, 3)  # trained as an even mix, evaluated one by one (easy to hard)
    depths: tuple[int, ...] = (1, 2)  # model sizes (width 64·depth)
    tokens: tuple[int, ...] = (100_000, 300_000, 1_000_000)  # token budgets per size
    eval_problems: int = 200  # held-out problems per difficulty (capped at the split's size)
    eval_seed: int = EVAL_SEED
    val_tokens: int = 8192  # held-out tokens for each difficulty's validation loss
    seed: int = 0
    threads: int = 1  # torch threads per rung and per evaluation
    workers: int = 0  # local backend: rungs trained at once, each in its own process (0 = CPUs // threads)
    gpus: float = 0.0
    retries: int = 3
    overrides: tuple[str, ...] = ()  # other PretrainConfig fields for every rung (batch_size, lr, ...)


def rung_name(depth: int, tokens: int) -> str:
    return f"rung-d{depth}-t{tokens}"


def rung_config(cfg: SaturationConfig, depth: int, tokens: int) -> PretrainConfig:
    for item in cfg.overrides:
        key = item.split("=", 1)[0].strip()
        if key in KEYS:
            raise UserError(
                f"--set {item}: the saturation sweep sets {key} itself "
                "(use --task, --difficulties, --depths, --tokens, --seed, --eval-problems)"
            )
    base = PretrainConfig(
        task=cfg.task,
        depth=depth,
        tokens=tokens,
        seed=cfg.seed,
        difficulty_mix=tuple(cfg.difficulties),
        eval_problems=0,
    )
    return override(base, list(cfg.overrides))


def check(cfg: SaturationConfig, backend: str) -> None:
    from scalinglab.tasks import get_task
    from scalinglab.tasks.corpus import is_corpus
    from scalinglab.train.ladder import check_executor

    if is_corpus(cfg.task):
        raise UserError(
            f"--task {cfg.task!r}: a text corpus has no difficulty levels; use a generated task (arithmetic)"
        )
    if len(set(cfg.difficulties)) < 2 or min(cfg.difficulties) < 1:
        raise UserError("--difficulties: at least two distinct positive levels, easy to hard (e.g. 1,2,3)")
    if not cfg.depths or not cfg.tokens or min(cfg.depths) < 1 or min(cfg.tokens) < 1:
        raise UserError("--depths and --tokens: positive integers")
    if len(set(cfg.depths)) * len(set(cfg.tokens)) < 2:
        raise UserError("--depths x --tokens: at least two rungs (a ladder)")
    if cfg.eval_problems < 1 or cfg.val_tokens < 1:
        raise UserError("--eval-problems and val_tokens must be >= 1")
    check_executor(backend, cfg.threads, cfg.workers)
    task = get_task(cfg.task)
    for d in cfg.difficulties:
        try:
            task.generate(1, seed=0, difficulty=d)
        except (ValueError, UserError) as e:
            raise UserError(f"--difficulties: task {cfg.task!r} has no difficulty {d} ({e})") from None


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of k successes in n trials."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def eval_problems(task, n: int, seed: int, difficulty: int) -> list:
    """`n` held-out problems at `difficulty`, or every distinct one when the evaluation split is smaller."""
    from scalinglab.tasks.split import canonical, draw, only

    try:
        return draw(task, n, seed, difficulty, split="eval")
    except UserError:  # a small problem space (1-digit arithmetic): take the whole evaluation split
        seen, out = set(), []
        for p in only(task.generate(20_000, seed=seed, difficulty=difficulty), "eval"):
            if canonical(p) not in seen:
                seen.add(canonical(p))
                out.append(p)
        return out[:n]


def evaluate_rung(run_dir: str, cfg: SaturationConfig) -> dict:
    """Greedy accuracy and validation loss of one trained rung at every difficulty (cached in the rung)."""
    key = {
        "task": cfg.task,
        "difficulties": list(cfg.difficulties),
        "eval_problems": cfg.eval_problems,
        "eval_seed": cfg.eval_seed,
        "val_tokens": cfg.val_tokens,
    }
    cache = Path(run_dir) / "saturation.json"
    if cache.exists():
        have = read_json(cache)
        if have.get("key") == key:
            return have
    import torch

    from scalinglab.model.hf import load_model
    from scalinglab.runs import Run
    from scalinglab.tasks import get_task
    from scalinglab.tasks.seeds import VAL_SEED_BASE
    from scalinglab.testtime.greedy import greedy_accuracy
    from scalinglab.train.pretrain import PackedStream, validation_loss

    old = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        pc = PretrainConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in Run(run_dir).config.items()})
        model, tok = load_model(Path(run_dir) / "model")
        model.eval()
        task = get_task(cfg.task)
        per = []
        for d in cfg.difficulties:
            problems = eval_problems(task, cfg.eval_problems, cfg.eval_seed, d)
            res = greedy_accuracy(model, tok, task, problems)
            k = sum(res["correct"])
            stream = PackedStream(task, tok, d, chunk_seed=lambda c: VAL_SEED_BASE + c, split="eval")
            rows = stream.next_rows(max(1, cfg.val_tokens // (pc.seq_len + 1)), pc.seq_len + 1)
            per.append(
                {
                    "difficulty": d,
                    "n": len(problems),
                    "correct": k,
                    "accuracy": k / max(1, len(problems)),
                    "ci95": list(wilson(k, len(problems))),
                    "loss": validation_loss(model, rows, pc.batch_size, torch.device("cpu")),
                }
            )
    finally:
        torch.set_num_threads(old)
    out = {"key": key, "difficulties": per}
    atomic_write_json(cache, out)
    return out


def describe(rows: list[dict], difficulties) -> dict:
    """Per difficulty: accuracy at the smallest and largest compute, the gain over the top half of the rungs, and a label."""
    by_c = sorted({(r["C"], r["run"]) for r in rows})
    runs = [name for _, name in by_c]
    half = (
        runs[len(runs) // 2 - (1 if len(runs) % 2 == 0 else 0)] if len(runs) > 1 else runs[0]
    )  # the median-compute rung
    out = {}
    for d in difficulties:
        acc = {r["run"]: r for r in rows if r["difficulty"] == d}
        first, mid, last = acc[runs[0]], acc[half], acc[runs[-1]]
        gain = last["accuracy"] - mid["accuracy"]
        label = (
            "saturated"
            if last["accuracy"] >= CEILING and gain < FLAT
            else "improving"
            if gain >= FLAT
            else "flat below the ceiling"
        )
        out[str(d)] = {
            "accuracy_smallest": first["accuracy"],
            "accuracy_median_compute": mid["accuracy"],
            "accuracy_largest": last["accuracy"],
            "accuracy_largest_ci95": [last["ci_lo"], last["ci_hi"]],
            "gain_top_half": gain,
            "loss_median_compute": mid["difficulty_loss"],
            "loss_largest": last["difficulty_loss"],
            "label": label,
        }
    mixture = {r["run"]: r["loss"] for r in rows}
    out["loss"] = {
        "smallest": mixture[runs[0]],
        "median_compute": mixture[half],
        "largest": mixture[runs[-1]],
        "fall_top_half": mixture[half] - mixture[runs[-1]],
    }
    out["rule"] = (
        f"saturated: accuracy >= {CEILING} at the largest compute and a gain < {FLAT} from the median-compute "
        f"rung to the largest; improving: a gain >= {FLAT}"
    )
    return out


def run_saturation(
    cfg: SaturationConfig,
    out: str,
    backend: str = "local",
    address: str | None = None,
    progress: Callable[..., None] | None = None,
    figures: bool = True,
) -> dict:
    """Train the ladder (reusing finished rungs), evaluate every rung at every difficulty, write csv, figure, summary."""
    from scalinglab.train.ladder import train_rungs

    check(cfg, backend)
    t0 = time.perf_counter()
    root = Path(out)
    rungs = [(d, t) for d in sorted(set(cfg.depths)) for t in sorted(set(cfg.tokens))]
    configs = {rung_name(*rt): rung_config(cfg, *rt) for rt in rungs}
    root.mkdir(parents=True, exist_ok=True)
    total = 2 * len(rungs)  # training, then evaluation
    summaries, reused = train_rungs(
        root,
        configs,
        cfg.threads,
        cfg.gpus,
        cfg.retries,
        backend,
        address,
        progress,
        total,
        workers=cfg.workers,
    )
    rows = []
    for i, (d, t) in enumerate(rungs):
        name = rung_name(d, t)
        s = summaries[name]
        ev = evaluate_rung(str(root / name), cfg)
        N, D = float(s["params"]), float(s["tokens"])
        for e in ev["difficulties"]:
            rows.append(
                {
                    "depth": d,
                    "tokens_budget": t,
                    "N": N,
                    "D": D,
                    "C": 6.0 * N * D,
                    "loss": s["val_loss"],
                    "difficulty": e["difficulty"],
                    "accuracy": e["accuracy"],
                    "ci_lo": e["ci95"][0],
                    "ci_hi": e["ci95"][1],
                    "n": e["n"],
                    "difficulty_loss": e["loss"],
                    "run": name,
                }
            )
        if progress:
            progress(len(rungs) + i + 1, total, rung=name, evaluated="yes")
    _write_csv(root / "saturation.csv", rows)
    summary = {
        "kind": "saturation",
        "task": cfg.task,
        "backend": backend,
        "out": str(root),
        "config": asdict(cfg),
        "rows": rows,
        "shape": describe(rows, cfg.difficulties),
        "trained": len(rungs) - reused,
        "reused": reused,
        "saturation_csv": str(root / "saturation.csv"),
        "seconds": time.perf_counter() - t0,
    }
    summary["figures"] = [plot_saturation(root / "saturation.png", rows, cfg.difficulties, cfg.task)] if figures else []
    atomic_write_json(root / "summary.json", summary)
    return summary


def _write_csv(path: Path, rows: list[dict]) -> None:
    import csv
    from io import StringIO

    buf = StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def plot_saturation(path: Path, rows: list[dict], difficulties, task: str) -> str:
    """Left: greedy accuracy per difficulty against compute (95% Wilson bars). Right: validation loss against compute."""
    import numpy as np

    from scalinglab.report.figures import new_figure, save_fig

    fig, (ax, bx) = new_figure(1, 2)
    depths = sorted({r["depth"] for r in rows})
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D", "v"]
    for j, d in enumerate(difficulties):
        color = f"C{j}"
        for k, dep in enumerate(depths):
            rs = sorted((r for r in rows if r["difficulty"] == d and r["depth"] == dep), key=lambda r: r["C"])
            y = np.array([r["accuracy"] for r in rs])
            err = np.clip(np.stack([y - [r["ci_lo"] for r in rs], np.array([r["ci_hi"] for r in rs]) - y]), 0, None)
            ax.errorbar(
                [r["C"] for r in rs],
                y,
                yerr=err,
                fmt=markers[k % 5] + styles[k % 4],
                color=color,
                capsize=2,
                lw=1,
                label=f"difficulty {d} (n={rs[0]['n']})" if k == 0 else None,
            )
            bx.plot(
                [r["C"] for r in rs],
                [r["difficulty_loss"] for r in rs],
                markers[k % 5] + styles[k % 4],
                color=color,
                lw=1,
                label=f"difficulty {d}" if k == 0 else None,
            )
    for k, dep in enumerate(depths):
        rs = sorted({(r["C"], r["loss"]) for r in rows if r["depth"] == dep})
        bx.plot(
            [c for c, _ in rs],
            [v for _, v in rs],
            markers[k % 5] + styles[k % 4],
            color="black",
            lw=1.5,
            label=f"the mix, depth {dep}",
        )
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("training compute C = 6ND (FLOP)")
    ax.set_ylabel("greedy accuracy, held-out problems")
    ax.set_title(f"{task}: accuracy per difficulty (line style = depth)", fontsize=9)
    ax.legend(fontsize=7)
    bx.set_xscale("log")
    bx.set_xlabel("training compute C = 6ND (FLOP)")
    bx.set_ylabel("validation loss (nats/char, held-out)")
    bx.set_title("The loss keeps falling", fontsize=9)
    bx.legend(fontsize=7)
    return str(save_fig(fig, path))
