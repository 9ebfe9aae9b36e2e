"""The data wall: a data-constrained ladder on real text, with fresh-data references.

    scalinglab sweep datawall --unique-tokens 3e5 --epochs 1,2,4,8,16 --depths 2 --seeds 3 --out runs/wall --json

Design (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models", arXiv:2305.16264):
1. repeated rungs: each dial size of `--depths` trains on the same U = `--unique-tokens` distinct
   tokens of the corpus (the first U tokens' worth of `TextStream`'s fixed pool of windows, the
   same text for every size and seed), for D = epochs · U tokens at every count of `--epochs`
   (`DIR/rep-d{depth}-u{U}-e{epochs}`);
2. fresh references: the same sizes and the same D, on D distinct tokens, each seen once: the
   first D tokens' worth of the same fixed pool (`fresh_pool`), so a fresh reference's data
   contain the repeated rungs' U tokens and the 1-epoch pair trains on the same windows (in
   another order). "Worth nearly as much as fresh data" is measured, not assumed
   (`DIR/fresh-d{depth}-t{D}`). A D beyond the corpus's training tokens would repeat; it is
   refused. (Until 2026-12-02 the fresh rungs drew D tokens from the whole corpus; docs/scaling.md
   compares the two designs);
3. the fit (`scaling/datawall.py`): L = E_N + B/D'^β with the effective data
   D' = U + U·R_D*·(1 − exp(−R_D/R_D*)), R_D = epochs − 1; R_D* with a 95% wild-bootstrap
   interval. Per epoch count the summary sets the repeated loss beside the fresh one, the
   fresh-equivalent tokens of the repeated rung (the fitted fresh curve inverted: what fraction of
   a fresh token a repeated one was worth, measured) and the fitted worth D'/D, next to the value
   the paper's R_D* = 15.4 gives.

Every rung is an ordinary pre-training run, trained and reused as `sweep pretrain` does
(`ladder.train_rung`: a finished rung with the same config is reused, a killed one retrained).
Writes `DIR/datawall.csv`, `DIR/datawall.png` (loss against epochs, repeated vs fresh; the
effective-data curve) and `DIR/summary.json`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean
from typing import Callable

from scalinglab.config import override
from scalinglab.errors import UserError
from scalinglab.runs.store import atomic_write_json, atomic_write_text
from scalinglab.train.ladder import check_executor, train_rungs
from scalinglab.train.pretrain import PretrainConfig

KEYS = ("task", "depth", "tokens", "unique_tokens", "seed")  # set by the sweep itself
CSV_COLUMNS = ("kind", "depth", "N", "D", "U", "epochs", "seed", "loss", "train_loss", "run")


@dataclass(frozen=True)
class DataWallConfig:
    task: str = "pystdlib"  # a text corpus (repetition needs a fixed pool of real text)
    depths: tuple[int, ...] = (2,)  # dial sizes (width aspect·depth: 48, the IsoFLOP ladder's tuned width-48 model)
    unique_tokens: int = 300_000  # U: distinct tokens of every repeated rung (16 epochs: 4.8M of 5.4M)
    epochs: tuple[int, ...] = (1, 2, 4, 8, 16)  # passes over U; D = epochs·U
    fresh: bool = True  # train the fresh-data references (U = D) that the fit and the comparison need
    seed: int = 0
    seeds: int = 3  # runs of every rung at seeds seed, seed+1, ... (init and order; the U tokens stay the same)
    threads: int = 1  # torch threads per rung (equal threads -> equal numbers)
    workers: int = 0  # local backend: rungs trained at once, each in its own process (0 = CPUs // threads)
    gpus: float = 0.0
    retries: int = 3
    bootstrap: int = 1000  # wild-bootstrap resamples of the R_D* fit (each residual on its own rung)
    # every rung's PretrainConfig fields: the narrow dial at the ladder's lr rule (0.168 / width 48),
    # a small BPE, a fixed validation set
    overrides: tuple[str, ...] = (
        "aspect=24",
        "lr=0.0035",
        "vocab_size=512",
        "batch_size=8",
        "seq_len=128",
        "val_tokens=65536",
        "eval_problems=0",
    )


def _base(cfg: DataWallConfig) -> PretrainConfig:
    for item in cfg.overrides:
        key = item.split("=", 1)[0].strip()
        if key in KEYS:
            raise UserError(
                f"--set {item}: the data-wall sweep sets {key} itself "
                "(use --task, --depths, --unique-tokens, --epochs, --seed)"
            )
    return override(PretrainConfig(task=cfg.task, seed=cfg.seed), list(cfg.overrides))


def run_seeds(cfg: DataWallConfig) -> list[int]:
    return [cfg.seed + k for k in range(cfg.seeds)]


def jobs(cfg: DataWallConfig) -> dict[str, tuple[str, int, int, int, PretrainConfig]]:
    """name -> (kind, depth, epochs, seed, config) for every rung: repeated at each epoch count, fresh at the same D.

    A replicate at another seed than --seed is the same rung with `-s{seed}` appended
    (`rep-d2-u300000-e4-s1`): the same U tokens, another init and data order."""
    base, U = _base(cfg), cfg.unique_tokens
    out = {}
    for d in sorted(set(cfg.depths)):
        for e in sorted(set(cfg.epochs)):
            for k in run_seeds(cfg):
                tag = "" if k == cfg.seed else f"-s{k}"
                pc = override(base, {"depth": d, "tokens": e * U, "seed": k})
                out[f"rep-d{d}-u{U}-e{e}{tag}"] = ("repeated", d, e, k, override(pc, {"unique_tokens": U}))
                if cfg.fresh:
                    out[f"fresh-d{d}-t{e * U}{tag}"] = (
                        "fresh",
                        d,
                        e,
                        k,
                        override(pc, {"unique_tokens": fresh_pool(pc)}),
                    )
    return out


def fresh_pool(pc: PretrainConfig) -> int:
    """unique_tokens for a fresh reference: exactly the windows its steps serve, once each.

    The pool is a prefix of `TextStream`'s fixed order, so it contains every smaller pool: the
    repeated rungs' U tokens are the first part of every fresh reference's data."""
    return pc.total_steps * pc.batch_size * (pc.seq_len + 1)


def check(cfg: DataWallConfig, backend: str) -> None:
    from scalinglab.tasks.corpus import CORPORA, is_corpus

    if not is_corpus(cfg.task):
        raise UserError(
            f"--task {cfg.task!r}: the data wall needs a text corpus ({', '.join(CORPORA)}); "
            "a generated task has no fixed pool of distinct tokens to repeat"
        )
    if not cfg.depths or any(d < 1 for d in cfg.depths):
        raise UserError("--depths: at least one positive depth")
    if cfg.seeds < 1:
        raise UserError(f"--seeds {cfg.seeds}: runs per rung, at least 1")
    if cfg.unique_tokens < 1:
        raise UserError(f"--unique-tokens {cfg.unique_tokens}: must be a positive number of tokens")
    if not cfg.epochs or any(e < 1 for e in cfg.epochs) or max(cfg.epochs) < 2:
        raise UserError("--epochs: positive integers with at least one count above 1 (e.g. 1,2,4,8,16)")
    if cfg.fresh and len(set(cfg.epochs)) < 2:
        raise UserError("--epochs: at least two counts, so that the fresh references pin the fresh-data curve")
    check_executor(backend, cfg.threads, cfg.workers)
    base = _base(cfg)
    if cfg.unique_tokens < base.seq_len + 1:
        raise UserError(
            f"--unique-tokens {cfg.unique_tokens}: less than one window of seq_len + 1 = {base.seq_len + 1} tokens"
        )
    from scalinglab.tasks.corpus import get_corpus
    from scalinglab.train.text import text_data

    have = int(text_data(get_corpus(cfg.task), base.vocab_size).train.size)
    need = (
        fresh_pool(override(base, {"tokens": max(cfg.epochs) * cfg.unique_tokens})) if cfg.fresh else cfg.unique_tokens
    )
    if need > have:
        raise UserError(
            f"--unique-tokens {cfg.unique_tokens} x --epochs {max(cfg.epochs)}: the fresh reference needs "
            f"{need:,} distinct tokens and {cfg.task} has {have:,} training tokens "
            f"(at vocab_size={base.vocab_size}); lower --unique-tokens or the largest epoch count"
        )


def _row(name: str, kind: str, depth: int, seed: int, s: dict) -> dict:
    D, ep = float(s["tokens"]), float(s["epochs"])
    if kind == "fresh" and ep > 1.0 + 1e-9:
        raise UserError(f"{name}: the fresh reference repeated its data ({ep:.2f} epochs over the corpus)")
    # U in the units of D (tokens trained per pass over the pool): D / epochs; fresh data is U = D
    U = D / ep if kind == "repeated" else D
    return {
        "kind": kind,
        "depth": depth,
        "N": float(s["params"]),
        "D": D,
        "U": U,
        "epochs": ep if kind == "repeated" else 1.0,
        "passes": ep,
        "seed": seed,
        "loss": s["val_loss"],
        "train_loss": s.get("train_loss"),
        "run": name,
    }


def write_rows(path: Path, rows: list[dict]) -> None:
    import csv
    from io import StringIO

    buf = StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def gap_interval(rep: list[float], fresh: list[float]) -> list[float] | None:
    """95% interval of the relative gap mean(rep)/mean(fresh) − 1 from the seeds' scatter (Welch's t on log loss).

    None with fewer than two runs on either side: one run's scatter is unknown."""
    import numpy as np
    from scipy import stats

    if len(rep) < 2 or len(fresh) < 2:
        return None
    a, b = np.log(rep), np.log(fresh)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return None
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    mid = math.log(fmean(rep) / fmean(fresh))
    h = float(stats.t.ppf(0.975, df)) * se
    return [math.expm1(mid - h), math.expm1(mid + h)]


def compare(rows: list[dict], fit) -> list[dict]:
    """Per size and epoch count: repeated vs fresh loss (means over seeds), the measured worth, the fitted and published worth."""
    from scalinglab.scaling.datawall import PUBLISHED_R_D, effective_data, fresh_equivalent, worth

    def losses(kind: str, depth: int, D: float) -> list[float]:
        return [x["loss"] for x in rows if x["kind"] == kind and x["depth"] == depth and abs(x["D"] - D) < 1]

    out = []
    reps = {(r["depth"], r["D"]): r for r in rows if r["kind"] == "repeated"}
    for (depth, D), r in sorted(reps.items()):
        rep, fresh = losses("repeated", depth, D), losses("fresh", depth, D)
        e, lr = r["epochs"], fmean(rep)
        lf = fmean(fresh) if fresh else None
        item = {
            "depth": depth,
            "N": r["N"],
            "epochs": e,
            "D": D,
            "U": r["U"],
            "seeds": len(rep),
            "loss_repeated": lr,
            "loss_fresh": lf,
            "loss_repeated_runs": rep,
            "loss_fresh_runs": fresh,
            "loss_gap": (lr / lf - 1.0) if fresh else None,  # relative excess loss of repeating
            "loss_gap_ci95": gap_interval(rep, fresh),
            "worth_published": float(effective_data(e, 1.0, PUBLISHED_R_D) / e),
        }
        if fit is not None and fit.success:
            eq = fresh_equivalent(fit, r["N"], lr)
            w = worth(fit, [e])
            item.update(
                fresh_equivalent_tokens=eq["tokens"],
                worth_measured=eq["tokens"] / D,
                worth_measured_ci95=[v / D for v in eq.get("ci95", [math.nan, math.nan])],
                worth_fitted=w["worth"][0],
                worth_fitted_ci95=w.get("ci95", [[math.nan, math.nan]])[0],
            )
        out.append(item)
    return out


NEAR_FRESH = 0.02  # "worth nearly as much as fresh data": a loss gap of at most 2% (worth about 0.9 on these slopes)


def published_shape(table: list[dict], fit) -> dict:
    """Does the ladder show Muennighoff et al.'s shape? Three checks, each True, False or None (not measurable).

    - near_fresh: at every repeated count up to 4 epochs the gap's 95% interval reaches down to
      +2% or less (repetition is not shown to cost more than that);
    - late_cost: at the largest epoch count the gap's interval lies above 0 (repetition costs);
    - R_D*_pinned: the fit's R_D* interval stays inside its search box.
    The gaps' intervals come from the seeds' scatter, so one seed measures neither gap check."""
    near, late = None, None
    ts = sorted((t for t in table if t.get("loss_gap_ci95")), key=lambda t: t["epochs"])
    if ts:
        early = [t for t in ts if 1 < t["epochs"] <= 4]
        near = all(t["loss_gap_ci95"][0] <= NEAR_FRESH for t in early) if early else None
        last = ts[-1]
        late = bool(last["loss_gap_ci95"][0] > 0) if last["epochs"] > 4 else None
    pinned = None
    if fit is not None and fit.success:
        from scalinglab.scaling.datawall import is_r_star_warning

        pinned = not any(map(is_r_star_warning, fit.warnings))
    checks = {"near_fresh_to_4_epochs": near, "late_cost": late, "R_D*_pinned": pinned}
    missing = [k for k, v in checks.items() if not v]
    verdict = (
        "the published shape"
        if not missing
        else "not shown: " + ", ".join(f"{k} {'unmeasured' if checks[k] is None else 'fails'}" for k in missing)
    )
    return {**checks, "verdict": verdict}


def run_datawall(
    cfg: DataWallConfig,
    out: str,
    backend: str = "local",
    address: str | None = None,
    progress: Callable[..., None] | None = None,
    figures: bool = True,
) -> dict:
    """Train the repeated and fresh rungs (reusing finished ones), fit R_D*, write csv, figure and summary."""
    import numpy as np

    from scalinglab.scaling.datawall import PUBLISHED_R_D, fit_datawall

    check(cfg, backend)
    t0 = time.perf_counter()
    root = Path(out)
    plan = jobs(cfg)
    root.mkdir(parents=True, exist_ok=True)
    summaries, reused = train_rungs(
        root,
        {n: j[4] for n, j in plan.items()},
        cfg.threads,
        cfg.gpus,
        cfg.retries,
        backend,
        address,
        progress,
        workers=cfg.workers,
    )
    rows = [
        _row(n, kind, d, k, summaries[n]) for n, (kind, d, _, k, _) in plan.items()
    ]  # every seed a point of the fit
    write_rows(root / "datawall.csv", rows)
    fit = None
    if cfg.fresh:
        fit = fit_datawall(
            [r["N"] for r in rows],
            [r["D"] for r in rows],
            [r["U"] for r in rows],
            [r["loss"] for r in rows],
            bootstrap=cfg.bootstrap,
            seed=cfg.seed,
        )
    table = compare(rows, fit)
    summary = {
        "kind": "datawall",
        "task": cfg.task,
        "backend": backend,
        "out": str(root),
        "config": asdict(cfg),
        "unique_tokens": cfg.unique_tokens,
        "rungs": rows,
        "comparison": table,
        "fit": fit.to_dict() if fit is not None else None,
        "R_D*": (
            {"estimate": fit.params["R_D*"], "ci95": list(fit.ci["R_D*"]), "published": PUBLISHED_R_D}
            if fit is not None and fit.success
            else None
        ),
        "shape": published_shape(table, fit),
        "warnings": list(fit.warnings) if fit is not None else ["no fresh references (--no-fresh): no fit"],
        "trained": len(plan) - reused,
        "reused": reused,
        "datawall_csv": str(root / "datawall.csv"),
    }
    if fit is not None and fit.success and np.isfinite(fit.params["R_D*"]):
        summary["max_effective_data"] = {
            "tokens": cfg.unique_tokens * (1 + fit.params["R_D*"]),
            "note": "U·(1 + R_D*): what infinitely many epochs of U are worth",
        }
    summary["seconds"] = time.perf_counter() - t0
    summary["figures"] = [plot_datawall(root / "datawall.png", rows, fit, table)] if figures else []
    atomic_write_json(root / "summary.json", summary)
    return summary


def plot_datawall(path: Path, rows: list[dict], fit, table: list[dict]) -> str:
    """Left: loss against epochs, repeated vs fresh (same D), fitted curves. Right: effective data D' against D."""
    import matplotlib.pyplot as plt
    import numpy as np

    from scalinglab.report.figures import new_figure, save_fig
    from scalinglab.scaling.datawall import PUBLISHED_R_D, effective_data

    fig, (ax, bx) = new_figure(1, 2)
    depths = sorted({r["depth"] for r in rows})
    colors = plt.cm.viridis(np.linspace(0, 0.75, len(depths)))
    ok = fit is not None and fit.success
    for d, c in zip(depths, colors):
        rep = sorted((r for r in rows if r["depth"] == d and r["kind"] == "repeated"), key=lambda r: r["D"])
        fr = sorted((r for r in rows if r["depth"] == d and r["kind"] == "fresh"), key=lambda r: r["D"])
        U = rep[0]["U"]
        runs = len({r["seed"] for r in rep})
        lbl = (f" (depth {d})" if len(depths) > 1 else "") + (f", {runs} seeds" if runs > 1 else "")
        ax.plot([r["D"] / U for r in rep], [r["loss"] for r in rep], "o", color=c, label=f"repeated U = {U:,.0f}{lbl}")
        if fr:
            ax.plot(
                [r["D"] / U for r in fr], [r["loss"] for r in fr], "s", mfc="none", color=c, label=f"fresh (U = D){lbl}"
            )
        if ok:
            e = np.geomspace(1, max(r["D"] for r in rep) / U * 1.3, 80)
            N = np.full_like(e, rep[0]["N"])
            ax.plot(e, fit.predict(N, e * U, np.full_like(e, U)), "-", color=c, lw=1)
            ax.plot(e, fit.predict(N, e * U, e * U), "--", color=c, lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tokens trained D, in epochs of U")
    ax.set_ylabel("validation loss (nats/token, held-out files)")
    ax.set_title("Repeated vs fresh data at the same D (lines: fit)", fontsize=9)
    ax.legend(fontsize=7)

    emax = max(r["epochs"] for r in rows if r["kind"] == "repeated") * 1.5
    e = np.geomspace(1, max(emax, 40), 100)
    bx.plot(e, e, ":", color="gray", lw=1, label="fresh data (D' = D)")
    bx.plot(
        e,
        effective_data(e, 1.0, PUBLISHED_R_D),
        "-.",
        color="gray",
        lw=1,
        label=f"Muennighoff et al.: R_D* = {PUBLISHED_R_D}",
    )
    if ok:
        r_star = fit.params["R_D*"]
        lo, hi = fit.ci["R_D*"]
        bx.plot(
            e, effective_data(e, 1.0, r_star), "-", color="C0", label=f"fit: R_D* = {r_star:.3g} [{lo:.3g}, {hi:.3g}]"
        )
        if np.isfinite(lo) and np.isfinite(hi):
            bx.fill_between(e, effective_data(e, 1.0, lo), effective_data(e, 1.0, hi), color="C0", alpha=0.15, lw=0)
        pts = [t for t in table if t.get("worth_measured") is not None and math.isfinite(t["fresh_equivalent_tokens"])]
        for d, c in zip(depths, colors):
            ps = [t for t in pts if t["depth"] == d]
            if ps:
                y = np.array([t["fresh_equivalent_tokens"] / t["U"] for t in ps])
                ci = np.array([[v * t["D"] / t["U"] for v in t["worth_measured_ci95"]] for t in ps])
                err = np.clip(np.stack([y - ci[:, 0], ci[:, 1] - y]), 0, None)
                bx.errorbar(
                    [t["epochs"] for t in ps],
                    y,
                    yerr=err,
                    fmt="o",
                    color=c,
                    capsize=3,
                    label="measured: fresh-equivalent tokens" + (f" (depth {d})" if len(depths) > 1 else ""),
                )
    bx.set_xscale("log", base=2)
    bx.set_yscale("log", base=2)
    bx.set_xlabel("epochs over U (D / U)")
    bx.set_ylabel("effective data D' / U")
    bx.set_title("What repeated tokens are worth", fontsize=9)
    bx.legend(fontsize=7)
    return str(save_fig(fig, path))
