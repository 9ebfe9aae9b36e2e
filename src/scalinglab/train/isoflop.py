"""An IsoFLOP ladder on real text that pins its law, and predicts before it trains.

    scalinglab sweep isoflop --task pystdlib --budgets 1e11,2e11,4e11,8e11 --sizes 8,16,24,32,40,48,56 --out runs/iso --json

Design (Hoffmann et al. 2022; the OLMo and Llama 3 ladders):
1. every compute budget C of `--budgets` trains each size of the dial for D = C / 6N tokens (N
   counts every parameter, embeddings once: they are tied). The dial is `width` (the default:
   `--sizes` are widths of a `depth`-layer model) or `depth` (nanochat's: `--sizes` are depths of
   width aspect·depth). At CPU budgets the compute-optimal models have 15k-80k parameters, where
   the depth dial's sizes are 3x apart (N grows as depth^3) and a 5-size profile runs from
   a model trained for 19 steps to one trained for 2 epochs; widths 16-48 at depth 2 are
   1.3-2x apart. `--window K` (default 5 of the 7 widths 8-56) trains K consecutive sizes per
   budget, sliding up the dial with the budget; `--lr-width L` (default 0.168) sets every rung's
   peak lr to L/width (docs/scaling.md measures both: together they pin Approach 2's exponent).
   `--workers` trains that many rungs at once in their own processes. Rungs are ordinary pre-training runs
   (`DIR/rung-{w|d}{size}-c{C}`), trained and reused exactly as `sweep pretrain` does;
2. Approach 2: one parabola per budget in log N, its vertex N_opt(C), then N_opt ∝ C^a;
   Approach 3: the parametric law L(N, D) = E + A/N^α + B/D^β on every rung, a = β/(α+β);
   both with bootstrap intervals, and whether they agree (`scaling/isoflop.py`);
3. predict, then train: Approach 2's line (on every budget above) names the compute-optimal
   dial size at the held-out budget `--predict` (default: four times the largest), the frontier
   L_opt = G·C^-γ through the profile minima predicts its loss with a 95% prediction interval
   (the parametric law predicts the same model's beside it, `approach3`), both are written to
   `prediction.json`, and only then is that model trained; the record
   `prediction: {method, predicted, interval95, measured, relative_error, inside, approach3}` is in the summary;
4. loss to accuracy: a sigmoid from validation loss to the text task's accuracy (the next
   `text_k` tokens of held-out files exactly), fitted on the ladder's rungs, predicts the
   held-out rung's accuracy from its predicted loss; the measured accuracy is set beside it.

Writes `DIR/ladder.csv` (the rungs; `scalinglab fit chinchilla` reads it), `DIR/isoflop.png`,
`DIR/nopt.png`, `DIR/loss_to_accuracy.png` and `DIR/summary.json`.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

from scalinglab.config import check_choices, override
from scalinglab.errors import UserError
from scalinglab.runs.store import atomic_write_json
from scalinglab.train.ladder import check_executor, fit_ladder, train_rungs, write_csv
from scalinglab.train.pretrain import PretrainConfig

KEYS = ("task", "depth", "width", "tokens", "seed")  # set by the ladder itself


@dataclass(frozen=True)
class IsoFlopConfig:
    task: str = "pystdlib"  # a text corpus (or a task, whose loss may saturate)
    budgets: tuple[float, ...] = (1e11, 2e11, 4e11, 8e11)  # compute budgets C = 6ND of the profiles
    sizes: tuple[int, ...] = (8, 16, 24, 32, 40, 48, 56)  # the dial's sizes (every budget trains `window` of them)
    window: int = 5  # at most this many sizes per budget, a window sliding up the dial with the budget (0 = every size)
    dial: Literal["width", "depth"] = (
        "width"  # "width": sizes are widths of a `depth`-layer model; "depth": sizes are depths (width aspect·depth)
    )
    depth: int = 2  # the layers of the width dial
    lr_width: float = 0.168  # width dial: every rung's peak lr = lr_width / width (Adam's 1/fan-in rule); 0 or the depth dial = each model's default
    predict: float = 0.0  # the held-out budget of predict-then-train (0 = four times the largest; -1 = skip)
    seed: int = 0
    seeds: int = 2  # runs of every rung, seeds seed, seed+1, ...: each is a point of the fits (1 = one run)
    eval_problems: int = 1000  # held-out contexts for each rung's accuracy (0 = skip the loss-to-accuracy step)
    threads: int = 1  # torch threads per rung (equal threads -> equal numbers on both backends)
    workers: int = 0  # local backend: rungs trained at once, each in its own process (0 = CPUs // threads)
    gpus: float = 0.0
    retries: int = 3
    bootstrap: int = 1000
    grid: Literal["hoffmann", "small"] = "hoffmann"  # Approach 3 fit starts: hoffmann (4,500) or small (243)
    # every rung's PretrainConfig fields (the narrow dial, batch, the BPE and validation sizes)
    # a 512-token BPE (its embedding is a third of a 40k-parameter model), rows of 8 x 128 tokens
    overrides: tuple[str, ...] = ("vocab_size=512", "batch_size=8", "seq_len=128", "val_tokens=65536")

    def __post_init__(self) -> None:
        check_choices(self)


def budget_sizes(cfg: "IsoFlopConfig") -> dict[float, list[int]]:
    """budget -> the dial sizes it trains: all of them, or a `window` that slides up the dial.

    The smallest budget trains the `window` smallest sizes, the largest the `window` largest, the
    budgets between them windows spaced evenly (rounded down) along the dial. Each profile then
    sits around its own optimum, as Hoffmann et al. chose their sizes per budget, and no rung is a
    100-step run of a model far too big for its budget (the regime the parametric law does not
    describe), while the ladder as a whole spans more sizes than one profile could afford.
    """
    dial, budgets = sorted(set(cfg.sizes)), sorted(set(cfg.budgets))
    k = min(cfg.window or len(dial), len(dial))
    slack = len(dial) - k
    return {C: dial[(i * slack) // max(1, len(budgets) - 1) :][:k] for i, C in enumerate(budgets)}


def rung_name(cfg: "IsoFlopConfig", size: int, C: float, seed: int | None = None) -> str:
    """`rung-w24-c4e11` for the ladder's --seed, `rung-w24-c4e11-s1` for a replicate run at seed 1."""
    rep = "" if seed is None or seed == cfg.seed else f"-s{seed}"
    return f"rung-{cfg.dial[0]}{size}-c{C:.3g}{rep}".replace("+", "")


def run_seeds(cfg: "IsoFlopConfig") -> list[int]:
    return [cfg.seed + k for k in range(cfg.seeds)]


def _base(cfg: IsoFlopConfig) -> PretrainConfig:
    for item in cfg.overrides:
        key = item.split("=", 1)[0].strip()
        if key in KEYS:
            raise UserError(
                f"--set {item}: the IsoFLOP ladder sets {key} itself (use --task, --sizes, --dial, --depth, --budgets, --seed)"
            )
    return override(PretrainConfig(task=cfg.task, seed=cfg.seed, eval_problems=cfg.eval_problems), list(cfg.overrides))


def _shape(cfg: IsoFlopConfig, size: int) -> list[str]:
    return [f"depth={cfg.depth}", f"width={size}"] if cfg.dial == "width" else [f"depth={size}", "width=0"]


def dial_sizes(cfg: IsoFlopConfig, sizes) -> dict[int, int]:
    """size -> N (all parameters) of the dial under this ladder's settings."""
    from scalinglab.train.pretrain import data_source, model_config

    base = _base(cfg)
    source = data_source(base)  # the tokenizer fixes the embedding's size
    return {s: model_config(override(base, _shape(cfg, s)), source).num_params for s in sizes}


def rung_config(cfg: IsoFlopConfig, size: int, N: int, C: float, seed: int | None = None) -> PretrainConfig:
    tokens = max(1, round(C / (6.0 * N)))
    lr = [f"lr={cfg.lr_width / size:.6g}"] if cfg.lr_width and cfg.dial == "width" else []
    seed_ = [f"seed={seed}"] if seed is not None else []
    return override(_base(cfg), [*_shape(cfg, size), f"tokens={tokens}", *lr, *seed_])


def _row(name: str, C: float, size: int, seed: int, s: dict) -> dict:
    N, D = float(s["params"]), float(s["tokens"])
    return {
        "N": N,
        "D": D,
        "C": 6.0 * N * D,
        "budget": C,
        "loss": s["val_loss"],
        "size": size,
        "depth": s["depth"],
        "tokens_budget": round(D),
        "non_embedding_params": s.get("non_embedding_params"),
        "train_loss": s.get("train_loss"),
        "accuracy": s.get("accuracy"),
        "epochs": s.get("epochs"),
        "seed": seed,
        "run": name,
    }


def _check(cfg: IsoFlopConfig, backend: str) -> None:
    if len(set(cfg.budgets)) < 2 or any(not (c > 0 and math.isfinite(c)) for c in cfg.budgets):
        raise UserError("--budgets: at least two distinct positive compute budgets (FLOPs), e.g. 2.5e11,5e11,1e12,2e12")
    if len(set(cfg.sizes)) < 3 or any(d < 1 for d in cfg.sizes):
        raise UserError("--sizes: at least three distinct positive sizes (a parabola per budget needs 3)")
    if cfg.lr_width < 0 or not math.isfinite(cfg.lr_width):
        raise UserError(f"--lr-width {cfg.lr_width:g}: a positive number (peak lr = lr_width / width), or 0")
    if cfg.seeds < 1:
        raise UserError(f"--seeds {cfg.seeds}: runs per rung, at least 1")
    if cfg.window in (1, 2) or cfg.window < 0:
        raise UserError(f"--window {cfg.window}: at least 3 sizes per budget (a parabola needs 3); 0 = every size")
    if cfg.dial == "width" and any(w % 8 for w in cfg.sizes):
        raise UserError(
            f"--sizes {','.join(map(str, cfg.sizes))}: widths must be multiples of 8 (heads of 8, 16 or 32)"
        )
    if cfg.predict and cfg.predict != -1 and not (cfg.predict > max(cfg.budgets) and math.isfinite(cfg.predict)):
        raise UserError(
            f"--predict {cfg.predict:g}: the held-out budget must exceed the largest fitted one "
            f"({max(cfg.budgets):g}); 0 = four times it, -1 = skip"
        )
    check_executor(backend, cfg.threads, cfg.workers)


def run_isoflop(
    cfg: IsoFlopConfig,
    out: str,
    backend: str = "local",
    address: str | None = None,
    progress: Callable[..., None] | None = None,
    figures: bool = True,
) -> dict:
    """Train the profiles, fit Approaches 2 and 3, predict and train the held-out optimum; write the summary."""
    import numpy as np

    from scalinglab.scaling import isoflop as iso

    _check(cfg, backend)
    t0 = time.perf_counter()
    root = Path(out)
    dial, plan_sizes = sorted(set(cfg.sizes)), budget_sizes(cfg)
    sizes = dial_sizes(cfg, dial)
    seeds = run_seeds(cfg)
    labels = {rung_name(cfg, d, C, k): (C, d, k) for C, ds in plan_sizes.items() for d in ds for k in seeds}
    jobs = {name: rung_config(cfg, d, sizes[d], C, k) for name, (C, d, k) in labels.items()}
    predict_C = 0.0 if cfg.predict == -1 else (cfg.predict or 4.0 * max(cfg.budgets))
    total = len(jobs) + (len(seeds) if predict_C else 0)
    root.mkdir(parents=True, exist_ok=True)
    summaries, reused = train_rungs(
        root, jobs, cfg.threads, cfg.gpus, cfg.retries, backend, address, progress, total, workers=cfg.workers
    )
    rows = [_row(n, *labels[n], summaries[n]) for n in jobs]  # every seed's run is a point of the fits
    write_csv(root / "ladder.csv", rows)

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        a2 = iso.isoflop_fit(
            [r["budget"] for r in rows],
            [r["N"] for r in rows],
            [r["loss"] for r in rows],
            bootstrap=cfg.bootstrap,
            seed=cfg.seed,
        )
    fit3, plan, fobj = fit_ladder(rows, cfg.bootstrap, cfg.seed, cfg.grid)
    summary = {
        "kind": "isoflop",
        "task": cfg.task,
        "backend": backend,
        "out": str(root),
        "config": asdict(cfg),
        "dial": cfg.dial,
        "sizes": {str(d): n for d, n in sizes.items()},
        "budget_sizes": {f"{C:g}": ds for C, ds in plan_sizes.items()},
        "rungs": rows,
        "approach2": a2.to_dict(),
        "fit": fit3,
        "compute_optimal": plan,
    }
    if fit3["success"]:
        summary["exponents"] = iso.compare_exponents((a2.a, a2.a_ci), iso.approach3_exponent(fobj))
    prediction = acc = None
    step = 8 if cfg.dial == "width" else 1
    all_sizes = dial_sizes(cfg, range(step, max(dial) + 4 * step, step)) if predict_C else {}
    pred = (
        iso.predict_heldout(a2, fobj, predict_C, all_sizes, bootstrap=cfg.bootstrap, seed=cfg.seed)
        if predict_C
        else None
    )
    if pred:
        pred["dial"] = cfg.dial
        # written before the model is trained: the prediction cannot be tuned to the outcome
        atomic_write_json(root / "prediction.json", pred)
        size, N_held = pred["size"], all_sizes[pred["size"]]
        held_jobs = {rung_name(cfg, size, predict_C, k): rung_config(cfg, size, N_held, predict_C, k) for k in seeds}
        held, r2 = train_rungs(
            root,
            held_jobs,
            cfg.threads,
            cfg.gpus,
            cfg.retries,
            backend,
            address,
            progress,
            total,
            len(jobs),
            workers=cfg.workers,
        )
        reused += r2
        runs = [held[n] for n in held_jobs]
        # with several seeds the measured loss is their mean (the interval is for one run, so a little wide for a mean)
        measured = sum(r["val_loss"] for r in runs) / len(runs)
        prediction = iso.score_prediction(pred, measured)
        prediction.update(run=next(iter(held_jobs)), runs=list(held_jobs), measured_runs=[r["val_loss"] for r in runs])
        summary["prediction"] = prediction
        held_row = _row(next(iter(held_jobs)), predict_C, size, cfg.seed, runs[0])
        held_accs = [r.get("accuracy") for r in runs]
        held_acc = None if None in held_accs else sum(held_accs) / len(held_accs)
        held_row.update(loss=measured, accuracy=held_acc, runs=list(held_jobs))
        summary["heldout_rung"] = held_row
        if cfg.eval_problems and all(r["accuracy"] is not None for r in rows):
            chance = 0.0
            acc = iso.fit_loss_to_accuracy([r["loss"] for r in rows], [r["accuracy"] for r in rows], floor=chance)
            summary["loss_to_accuracy"] = {
                **acc,
                "predicted_from_predicted_loss": iso.predict_accuracy(acc, pred["predicted"]),
                "predicted_from_measured_loss": iso.predict_accuracy(acc, measured),
                "measured": held_acc,
                "task": runs[0].get("accuracy_task"),
            }
    warns = list(a2.warnings) + list(fit3.get("warnings") or [])
    summary.update(
        warnings=warns,
        well_determined=not warns and fit3["success"],
        trained=total - reused,
        reused=reused,
        ladder_csv=str(root / "ladder.csv"),
        seconds=time.perf_counter() - t0,
    )
    summary["figures"] = (
        plot_isoflop(root, rows, a2, fit3, prediction, summary.get("loss_to_accuracy"), summary.get("heldout_rung"))
        if figures
        else []
    )
    atomic_write_json(root / "summary.json", summary)
    return summary


def plot_isoflop(
    root: Path, rows, a2, fit3: dict, prediction: dict | None, acc: dict | None, held: dict | None
) -> list[str]:
    import matplotlib.pyplot as plt
    import numpy as np

    from scalinglab.report.figures import new_figure, save_fig

    paths = []
    budgets = sorted({r["budget"] for r in rows})
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(budgets) + 1))
    fig, ax = new_figure()
    for C, c, prof in zip(budgets, colors, a2.profiles):
        rs = sorted((r for r in rows if r["budget"] == C), key=lambda r: r["N"])
        ax.plot([r["N"] for r in rs], [r["loss"] for r in rs], "o", color=c, label=f"C = {C:.2g}")
        xs = np.geomspace(rs[0]["N"] / 1.3, rs[-1]["N"] * 1.3, 80)
        ax.plot(xs, np.polyval(prof.coef, np.log(xs)), "-", color=c, lw=1)
        if math.isfinite(prof.N_opt):
            ax.plot([prof.N_opt], [prof.loss_opt], "v", color=c, ms=8)
    if prediction:
        lo, hi = prediction["interval95"]
        ax.errorbar(
            [prediction["N"]],
            [prediction["predicted"]],
            yerr=[[prediction["predicted"] - lo], [hi - prediction["predicted"]]],
            fmt="s",
            color=colors[-1],
            mfc="none",
            capsize=4,
            label=f"predicted at C = {prediction['C']:.2g}",
        )
        ax.plot(
            [prediction["N"]],
            [prediction["measured"]],
            "*",
            color="crimson",
            ms=12,
            label=f"measured (the prediction was {prediction['relative_error']:+.1%} off)",
        )
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("validation loss (nats/token, held-out files)")
    ax.set_title("IsoFLOP profiles: parabola per budget, vertex = compute-optimal N", fontsize=9)
    ax.legend(fontsize=7)
    paths.append(str(save_fig(fig, root / "isoflop.png")))

    fig, ax = new_figure()
    good = [p for p in a2.profiles if p.inside]
    if good:
        ax.plot([p.C for p in good], [p.N_opt for p in good], "o", label="Approach 2: profile vertices")
    Cs = np.geomspace(min(budgets) / 2, max(budgets) * 8, 50)
    if math.isfinite(a2.a):
        ax.plot(Cs, np.exp(a2.a * np.log(Cs) + a2.k), "-", label=f"Approach 2: N_opt ∝ C^{a2.a:.3f}")
    if fit3.get("success") and min(fit3["params"].values()) > 0:  # else the law has no optimum
        from scalinglab.scaling.planning import optimal_allocation

        a3 = fit3["params"]["beta"] / (fit3["params"]["alpha"] + fit3["params"]["beta"])
        ax.plot(Cs, optimal_allocation(Cs, **fit3["params"])[0], "--", label=f"Approach 3: N_opt ∝ C^{a3:.3f}")
    if prediction:
        ax.plot([prediction["C"]], [prediction["N"]], "s", mfc="none", label="held-out rung (nearest dial size)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute C (FLOP)")
    ax.set_ylabel("compute-optimal N")
    ax.set_title("Compute-optimal size against compute, two ways", fontsize=9)
    ax.legend(fontsize=7)
    paths.append(str(save_fig(fig, root / "nopt.png")))

    if acc:
        from scalinglab.scaling.isoflop import predict_accuracy

        fig, ax = new_figure()
        ax.plot([r["loss"] for r in rows], [r["accuracy"] for r in rows], "o", label="ladder rungs (fitted)")
        Ls = np.linspace(min(r["loss"] for r in rows) - 0.3, max(r["loss"] for r in rows) + 0.1, 100)
        ax.plot(Ls, [predict_accuracy(acc, v) for v in Ls], "-", label="sigmoid fit")
        if held and held.get("accuracy") is not None:
            ax.plot([held["loss"]], [held["accuracy"]], "*", color="crimson", ms=12, label="held-out rung, measured")
            ax.plot(
                [prediction["predicted"]],
                [acc["predicted_from_predicted_loss"]],
                "s",
                mfc="none",
                label="held-out rung, predicted",
            )
        ax.set_xlabel("validation loss (nats/token)")
        ax.set_ylabel(acc.get("task") or "accuracy")
        ax.set_title("Loss to accuracy (the ladder's second step)", fontsize=9)
        ax.legend(fontsize=7)
        paths.append(str(save_fig(fig, root / "loss_to_accuracy.png")))
    return paths
