"""A scaling ladder: pre-train every (depth, token budget) pair, then fit Chinchilla's law to it.

    scalinglab sweep pretrain --task arithmetic --depths 1,2,3,4 --tokens 2e5,4e5,8e5 --out runs/ladder --json

Each rung is one `scalinglab.train.pretrain.pretrain` run in `DIR/rung-d{depth}-t{tokens}` (a Run
in the store, indexed in `DIR/runs.sqlite`), trained through an `Executor` (`--backend local`:
one after another in this process; `--backend ray`: one Ray task per rung with its CPUs/GPUs, and
a rung whose worker dies is re-executed). Then:

- `DIR/ladder.csv`: one row per rung with N (all parameters, embeddings included, as Hoffmann et
  al. count them), D (tokens actually trained on: the budget rounded up to whole steps),
  C = 6·N·D and loss (the held-out validation loss), plus depth, train loss and accuracy;
  `scalinglab fit chinchilla DIR/ladder.csv` refits it;
- the Chinchilla fit (`scalinglab.scaling.fit_chinchilla`: Huber in log space, L-BFGS from
  Hoffmann's grid, bootstrap CIs) and, when it succeeded, the compute-optimal N*(C), D*(C) at the
  ladder's largest budget and 10x, 100x beyond it. A ladder of a few tiny sizes rarely pins five
  parameters: the fit's warnings ("ill-determined: ...") are passed on, not hidden;
- `DIR/loss_vs_compute.png` (loss against C, one curve per size, the IsoFLOP-style view) and
  `DIR/fit.png` (loss against D per size, data and fitted law);
- `DIR/summary.json` with all of the above.

Reruns are cheap: a rung whose directory holds `summary.json` (with the same config) is reused,
a rung left half-done by a killed worker is cleared and trained again (or resumed from its last
checkpoint when `checkpoint_every` is set). Same seeds give the same numbers on both backends:
each rung runs with `threads` torch threads (default 1) wherever it runs, and pre-training on a
CPU is deterministic for a fixed thread count.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

from scalinglab.config import check_choices, override
from scalinglab.distributed.executor import BACKENDS, Resources, local_workers, make_executor
from scalinglab.errors import UserError
from scalinglab.runs import Run
from scalinglab.runs.store import atomic_write_json, atomic_write_text, dumps
from scalinglab.train.pretrain import PretrainConfig

# Keys a ladder sets itself; `--set` may change any other PretrainConfig field.
LADDER_KEYS = ("task", "depth", "tokens", "seed")
CSV_COLUMNS = ("N", "D", "C", "loss", "depth", "tokens_budget", "non_embedding_params", "train_loss", "accuracy", "run")


@dataclass(frozen=True)
class LadderConfig:
    task: str = "arithmetic"  # pre-training task (its worked solutions are the corpus)
    depths: tuple[int, ...] = (1, 2, 3)  # model sizes (the depth dial: width 64·depth)
    tokens: tuple[int, ...] = (200_000, 400_000, 800_000)  # token budgets D per size
    seed: int = 0  # same seed for every rung (data order and init)
    eval_problems: int = 0  # held-out problems for each rung's greedy accuracy (0 = skip)
    threads: int = 1  # torch threads per rung, on both backends (equal threads -> equal numbers)
    gpus: float = 0.0  # GPUs per rung (Ray backend; local picks the device from `--set device=`)
    retries: int = 3  # Ray re-executions of a rung whose worker died
    bootstrap: int = 1000  # bootstrap resamples of the Chinchilla fit
    fit: bool = True  # fit the law (False: train and tabulate only, e.g. a task whose loss saturates)
    grid: Literal["hoffmann", "small"] = "hoffmann"  # starting grid of the fit: hoffmann (4,500 starts) or small (243)
    overrides: tuple[str, ...] = ()  # key=value for other PretrainConfig fields (batch_size, seq_len, lr, ...)

    def __post_init__(self) -> None:
        check_choices(self)


def check_executor(backend: str, threads: int, workers: int = 1) -> None:
    """The settings every sweep hands to `train_rungs`, refused before any work."""
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if threads < 1:
        raise UserError("--threads must be >= 1")
    if workers < 0:
        raise UserError(f"--workers {workers}: rungs trained at once (0 = one per --threads of this machine's CPUs)")


def rung_name(depth: int, tokens: int) -> str:
    return f"rung-d{depth}-t{tokens}"


def rung_config(cfg: LadderConfig, depth: int, tokens: int) -> PretrainConfig:
    for item in cfg.overrides:
        key = item.split("=", 1)[0].strip()
        if key in LADDER_KEYS:
            raise UserError(f"--set {item}: the ladder sets {key} itself (use --task, --depths, --tokens, --seed)")
    base = PretrainConfig(task=cfg.task, depth=depth, tokens=tokens, seed=cfg.seed, eval_problems=cfg.eval_problems)
    return override(base, list(cfg.overrides))


def _normalised(d: dict) -> dict:
    return json.loads(dumps(d))


def _config_diff(path: Path, want: dict) -> list[str]:
    """Keys whose values differ; a key missing from an older run's config counts as its default
    (a field added to PretrainConfig later does not make every finished rung foreign)."""
    have = {**_normalised(asdict(PretrainConfig())), **Run(path).config}
    return sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))


def train_rung(
    config: dict, out: str, threads: int = 1, command: list[str] | None = None, pid_file: str | None = None
) -> dict:
    """Train (or reuse) one rung; safe to re-execute after a killed attempt. Runs in a Ray worker too.

    Returns {"summary", "reused", "pid"}. `pid_file` receives this process's id before training
    (so an operator, or a test, can see which worker holds the rung).
    """
    import torch

    from scalinglab.train.pretrain import pretrain

    path, want = Path(out), _normalised(config)
    if (path / "summary.json").exists():
        diff = _config_diff(path, want)
        if diff:
            raise UserError(
                f"{path}: holds a finished run with a different config ({', '.join(diff)}); "
                "use another --out or the same settings"
            )
        return {"summary": Run(path).summary, "reused": True, "pid": os.getpid()}
    if pid_file:
        atomic_write_text(pid_file, f"{os.getpid()}\n")
    resume = False
    if path.exists():  # a killed attempt: resume from its checkpoint if it has one, else start clean
        ok_ckpt = (path / "config.json").exists() and not _config_diff(path, want) and Run(path).latest_checkpoint()
        if ok_ckpt:
            resume = True
        else:
            shutil.rmtree(path)
    old_threads, old_argv = torch.get_num_threads(), sys.argv
    torch.set_num_threads(threads)
    if command:
        sys.argv = list(command)  # command.txt records the sweep command, not a Ray worker's argv
    try:
        summary = pretrain(PretrainConfig(**config), out=str(path), resume=resume)
    finally:
        torch.set_num_threads(old_threads)
        sys.argv = old_argv
    return {"summary": summary, "reused": False, "pid": os.getpid()}


def train_rungs(
    root: Path,
    configs: dict[str, PretrainConfig],
    threads: int,
    gpus: float,
    retries: int,
    backend: str,
    address: str | None,
    progress,
    total: int | None = None,
    done0: int = 0,
    workers: int = 1,
) -> tuple[dict[str, dict], int]:
    """Train (or reuse) every named rung under `root` with `ladder.train_rung`; returns summaries and how many were reused.

    `workers`: rungs the local backend trains at once, each in its own process (1 = in this process;
    0 = one per `threads` of this machine's CPUs, `executor.local_workers`)."""
    total = len(configs) if total is None else total
    summaries, todo = {}, []
    for name, pc in configs.items():
        path = root / name
        if (path / "summary.json").exists():  # reuse without scheduling anything
            diff = _config_diff(path, _normalised(asdict(pc)))
            if diff:
                raise UserError(
                    f"{path}: holds a finished run with a different config ({', '.join(diff)}); "
                    "use another --out or the same settings"
                )
            summaries[name] = Run(path).summary
        else:
            todo.append(name)
    reused, done = len(summaries), done0 + len(summaries)
    if progress:
        progress(done, total)
    if todo:
        root.joinpath(".workers").mkdir(parents=True, exist_ok=True)
        todo.sort(
            key=lambda n: -((configs[n].width or configs[n].depth) ** 2) * configs[n].total_steps
        )  # longest first
        ex = make_executor(backend, address, workers=local_workers(threads, workers))
        try:
            res = Resources(num_cpus=threads, num_gpus=gpus, max_retries=retries)
            handles = [
                ex.submit(
                    train_rung,
                    asdict(configs[n]),
                    str(root / n),
                    threads,
                    list(sys.argv),
                    str(root / ".workers" / f"{n}.pid"),
                    resources=res,
                )
                for n in todo
            ]

            def finished(i: int, r: dict) -> None:
                nonlocal done
                done += 1
                if progress:
                    progress(done, total, rung=todo[i], loss=r["summary"]["val_loss"])

            for n, r in zip(todo, ex.gather(handles, on_result=finished)):
                summaries[n] = r["summary"]
                reused += bool(r["reused"])
        finally:
            ex.close()
    return summaries, reused


def _row(depth: int, budget: int, summary: dict, run: str) -> dict:
    N, D = float(summary["params"]), float(summary["tokens"])
    return {
        "N": N,
        "D": D,
        "C": 6.0 * N * D,
        "loss": summary["val_loss"],
        "depth": depth,
        "tokens_budget": budget,
        "non_embedding_params": summary.get("non_embedding_params"),
        "train_loss": summary.get("train_loss"),
        "accuracy": summary.get("accuracy"),
        "heldout_overlap": summary.get("heldout_overlap"),
        "run": run,
    }


def write_csv(path: Path, rows: list[dict]) -> None:
    from io import StringIO

    buf = StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r[k]) for k in CSV_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def fit_ladder(rows: list[dict], bootstrap: int, seed: int, grid: str = "hoffmann") -> tuple[dict, dict | None, object]:
    """Chinchilla fit of the rows (its JSON form and the FitResult) and, when it succeeded, the compute-optimal plan."""
    import numpy as np

    from scalinglab.scaling import compute_optimal, fit_chinchilla

    N, D, L = (np.array([r[k] for r in rows], float) for k in ("N", "D", "loss"))
    # degenerate bootstrap resamples overflow inside the fit and the plan's bands; they are
    # judged by the warnings below, so NumPy's RuntimeWarnings would only be noise on stderr
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = fit_chinchilla(N, D, L, bootstrap=bootstrap, seed=seed, grid=grid)
        out = fit.to_dict()
        out["ill_determined"] = fit.ill_determined
        plan = None
        if fit.success and all(np.isfinite(v) for v in fit.params.values()) and min(fit.params.values()) > 0:
            C = float(max(r["C"] for r in rows))
            plan = compute_optimal(fit, [C, 10 * C, 100 * C])
            if fit.ill_determined:
                plan["note"] = "the fit is ill-determined (see fit.warnings): read this plan as illustrative only"
    return out, plan, fit


def run_ladder(
    cfg: LadderConfig,
    out: str,
    backend: str = "local",
    address: str | None = None,
    progress: Callable[..., None] | None = None,
    figures: bool = True,
) -> dict:
    """Train the ladder in `out` (reusing finished rungs), fit the law, write csv, figures, summary."""
    if not cfg.depths or not cfg.tokens:
        raise UserError("a ladder needs at least one depth and one token budget")
    if any(d < 1 for d in cfg.depths) or any(t < 1 for t in cfg.tokens):
        raise UserError("--depths and --tokens must be positive integers")
    check_executor(backend, cfg.threads)
    root = Path(out)
    rungs = [(d, t) for d in sorted(set(cfg.depths)) for t in sorted(set(cfg.tokens))]
    configs = {rt: rung_config(cfg, *rt) for rt in rungs}  # validates overrides before any work
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    done, n_reused = train_rungs(
        root,
        {rung_name(*rt): configs[rt] for rt in rungs},
        cfg.threads,
        cfg.gpus,
        cfg.retries,
        backend,
        address,
        progress,
    )
    summaries = {rt: done[rung_name(*rt)] for rt in rungs}
    rows = [_row(d, t, summaries[(d, t)], rung_name(d, t)) for d, t in rungs]
    write_csv(root / "ladder.csv", rows)
    if cfg.fit:
        fit, plan, _ = fit_ladder(rows, cfg.bootstrap, cfg.seed, cfg.grid)
    else:
        fit, plan = {"success": False, "message": "no law fitted (fit=False)", "params": {}, "warnings": []}, None
    figs = plot_ladder(root, rows, fit if fit["success"] else None) if figures else []
    summary = {
        "kind": "ladder",
        "task": cfg.task,
        "backend": backend,
        "out": str(root),
        "config": asdict(cfg),
        "rungs": rows,
        "trained": len(rungs) - n_reused,
        "reused": n_reused,
        "fit": fit,
        "compute_optimal": plan,
        "figures": figs,
        "ladder_csv": str(root / "ladder.csv"),
        "seconds": time.perf_counter() - t0,
    }
    atomic_write_json(root / "summary.json", summary)
    return summary


def plot_ladder(root: Path, rows: list[dict], fit: dict | None) -> list[str]:
    """loss_vs_compute.png (loss against C per size) and fit.png (loss against D, data + law)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from scalinglab.report.figures import new_figure, save_fig
    from scalinglab.scaling.laws import chinchilla

    depths = sorted({r["depth"] for r in rows})
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(depths)))
    p = fit["params"] if fit else None
    paths = []
    for name, xkey, xlabel in (
        ("loss_vs_compute.png", "C", "training compute C = 6ND (FLOP)"),
        ("fit.png", "D", "training tokens D"),
    ):
        fig, ax = new_figure()
        for d, c in zip(depths, colors):
            rs = sorted((r for r in rows if r["depth"] == d), key=lambda r: r["D"])
            N = rs[0]["N"]
            ax.plot(
                [r[xkey] for r in rs],
                [r["loss"] for r in rs],
                "o-" if xkey == "C" else "o",
                color=c,
                label=f"depth {d} (N={N:.3g})",
            )
            if p:
                Ds = np.geomspace(min(r["D"] for r in rows) / 1.5, max(r["D"] for r in rows) * 1.5, 60)
                xs = Ds if xkey == "D" else 6 * N * Ds
                ax.plot(xs, chinchilla(N, Ds, **p), "--", color=c, lw=1, alpha=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation loss (nats/token)")
        if p:
            ax.set_title(
                f"L = {p['E']:.3g} + {p['A']:.3g}/N^{p['alpha']:.3g} + {p['B']:.3g}/D^{p['beta']:.3g}"
                + (" (ill-determined)" if fit.get("ill_determined") else ""),
                fontsize=9,
            )
        else:
            ax.set_title("no Chinchilla fit (see summary.json)", fontsize=9)
        ax.legend()
        paths.append(str(save_fig(fig, root / name)))
    return paths


def parse_list(text: str, what: str) -> tuple[int, ...]:
    """'1,2,4' or '2e5,4e5' -> positive ints; UserError naming `what` otherwise."""
    out = []
    for item in (s.strip() for s in text.split(",")):
        try:
            v = float(item)
        except ValueError:
            raise UserError(f"{what} {text!r}: {item!r} is not a number") from None
        if not v.is_integer() or v < 1:
            raise UserError(f"{what} {text!r}: {item!r} is not a positive integer")
        out.append(int(v))
    return tuple(out)
