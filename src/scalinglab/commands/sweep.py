"""`scalinglab sweep pretrain` (sizes x token budgets) and `sweep isoflop` (sizes x compute budgets, predict-then-train)."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import List, Optional

import typer

from scalinglab.commands import common
from scalinglab.errors import UserError

WORKERS_OPT = typer.Option(
    0,
    help="Local backend: rungs trained at once, each in its own process (0 = this machine's CPUs // --threads; "
    "1 = one after another in this process).",
)

sweep_app = typer.Typer(
    help="Sweeps over the model-size dial: scaling ladders that fit their own laws.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(sweep_app, name="sweep")


@sweep_app.command("pretrain")
def sweep_pretrain_cmd(
    task: str = typer.Option("arithmetic", help="Task whose worked solutions form the corpus."),
    depths: str = typer.Option("1,2,3", help="Model sizes, comma-separated depths (width 64·depth)."),
    tokens: str = typer.Option("2e5,4e5,8e5", help="Token budgets D, comma-separated (2e5 notation is fine)."),
    seed: int = typer.Option(0, help="Seed of every rung (init and data order)."),
    out: Path = typer.Option(..., help="Ladder directory; finished rungs already in it are reused."),
    backend: str = typer.Option("local", help="local (sequential, in this process) or ray (one Ray task per rung)."),
    address: Optional[str] = typer.Option(
        None, help="Ray cluster to join (HEAD:6379, or 'auto'); default: a local Ray instance."
    ),
    threads: int = typer.Option(
        1, help="Torch threads per rung (and Ray CPUs per rung); equal threads give equal numbers on both backends."
    ),
    gpus: float = typer.Option(0.0, help="GPUs per rung on Ray (e.g. 1, or 0.5 to share a device)."),
    retries: int = typer.Option(3, help="Ray re-executions of a rung whose worker process died."),
    eval_problems: int = typer.Option(0, help="Held-out problems for each rung's greedy accuracy (0 = skip)."),
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples for the fit's 95% intervals."),
    grid: str = typer.Option("hoffmann", help="Fit starts: hoffmann (4,500, as published) or small (243, quick)."),
    set_: Optional[List[str]] = typer.Option(
        None,
        "--set",
        help="Any other PretrainConfig field for every rung: --set batch_size=16 --set lr=3e-3 "
        "(every field: `scalinglab config show pretrain`).",
    ),
    as_json: bool = common.JSON_OPT,
) -> None:
    """Train a scaling ladder (every depth x every token budget), fit L(N, D) = E + A/N^a + B/D^b, plan N*(C), D*(C).

    Writes OUT/rung-d{depth}-t{tokens}/ (one pre-training run each), OUT/ladder.csv (N, D, C, loss), OUT/loss_vs_compute.png, OUT/fit.png and OUT/summary.json (rungs, fit with 95% CIs and warnings, compute-optimal plan).

    Rerunning reuses finished rungs; a rung killed half-way is trained again. A ladder of a few tiny sizes rarely pins five parameters: read fit.warnings.

    \b
    Example (about 2 minutes on 2 CPU cores):
      scalinglab sweep pretrain --task arithmetic --depths 1,2,3 --tokens 2e4,4e4,8e4 --out runs/ladder
    On a Ray cluster (see docs/distributed.md):
      scalinglab sweep pretrain ... --backend ray --address HEAD:6379
    """
    from scalinglab.train.ladder import LadderConfig, parse_list, run_ladder

    cfg = LadderConfig(
        task=task,
        depths=parse_list(depths, "--depths"),
        tokens=parse_list(tokens, "--tokens"),
        seed=seed,
        eval_problems=eval_problems,
        threads=threads,
        gpus=gpus,
        retries=retries,
        bootstrap=bootstrap,
        grid=grid,
        overrides=tuple(set_ or ()),
    )
    n = len(set(cfg.depths)) * len(set(cfg.tokens))
    with _ladder_dir(out):
        with common.progress_bar(f"ladder ({n} rungs, {backend})") as bar:
            summary = run_ladder(cfg, str(out), backend=backend, address=address, progress=bar)
    common.emit(summary, as_json, human=_human(summary))


@sweep_app.command("isoflop")
def sweep_isoflop_cmd(
    task: str = typer.Option(
        "pystdlib", help="A text corpus (pystdlib: the Python standard library's sources, split by file) or a task."
    ),
    budgets: str = typer.Option(
        "1e11,2e11,4e11,8e11", help="Compute budgets C = 6ND of the IsoFLOP profiles, comma-separated."
    ),
    sizes: str = typer.Option(
        "8,16,24,32,40,48,56",
        help="The dial's sizes: widths (--dial width) or depths (--dial depth); every budget trains --window of them.",
    ),
    window: int = typer.Option(
        5,
        help="Sizes per budget (at most): a window of consecutive --sizes that slides up the dial as the budget grows "
        "(the smallest budget trains the smallest sizes), so every profile sits around its optimum. 0 = every size at every budget.",
    ),
    dial: str = typer.Option(
        "width",
        help="width: --sizes are widths of a --depth-layer model; depth: --sizes are depths of width aspect·depth (nanochat's dial).",
    ),
    depth: int = typer.Option(2, help="Layers of every model on the width dial."),
    lr_width: Optional[float] = typer.Option(
        None,
        help="Width dial: every rung's peak learning rate is LR_WIDTH / width (Adam's 1/fan-in rule; the default 0.168 "
        "puts width 24 at 7e-3, tuned in docs/scaling.md). 0 = each model's default, 3e-3·sqrt(128/width). Not on the depth dial.",
    ),
    predict: float = typer.Option(
        0.0,
        help="Held-out budget: predict its compute-optimal model's loss, then train it (0 = four times the largest; -1 = skip).",
    ),
    seed: int = typer.Option(0, help="Seed of every rung (init and data order)."),
    seeds: int = typer.Option(
        2,
        help="Runs of every rung, at seeds SEED, SEED+1, ... (OUT/rung-...-s1/); every run is a point of the fits, and the held-out loss is their mean. "
        "One run's loss scatters by about 1.7% from seed to seed (docs/scaling.md): one seed leaves alpha unpinned.",
    ),
    out: Path = typer.Option(..., help="Ladder directory; finished rungs already in it are reused."),
    backend: str = typer.Option("local", help="local (this machine) or ray (one Ray task per rung)."),
    address: Optional[str] = typer.Option(
        None, help="Ray cluster to join (HEAD:6379, or 'auto'); default: a local Ray instance."
    ),
    threads: int = typer.Option(1, help="Torch threads per rung (and Ray CPUs per rung)."),
    workers: int = WORKERS_OPT,
    eval_problems: int = typer.Option(
        1000, help="Held-out contexts for each rung's accuracy (0 = skip loss-to-accuracy)."
    ),
    bootstrap: int = typer.Option(
        1000, help="Bootstrap resamples for the 95% intervals (both approaches and the prediction)."
    ),
    grid: str = typer.Option("hoffmann", help="Approach 3 fit starts: hoffmann (4,500) or small (243)."),
    set_: Optional[List[str]] = typer.Option(
        None,
        "--set",
        help="PretrainConfig fields for every rung, replacing the defaults "
        "vocab_size=512 batch_size=8 seq_len=128 val_tokens=65536 when any is given (repeat them; "
        "every field: `scalinglab config show pretrain`).",
    ),
    as_json: bool = common.JSON_OPT,
) -> None:
    """An IsoFLOP ladder: a window of sizes at every compute budget; Approach 2 and 3 fits with intervals; predict, then train.

    Per budget, a parabola in log N gives the compute-optimal size (Approach 2: N_opt ∝ C^a); the parametric law L(N, D) = E + A/N^α + B/D^β (Approach 3) gives a = β/(α+β); the summary says whether they agree. Then Approach 2 names the compute-optimal dial size at the held-out budget --predict, the line through the profile minima (L_opt ∝ C^-γ) predicts its loss with a 95% prediction interval (the parametric law's prediction of the same model beside it), both are written to OUT/prediction.json, and only then is it trained: summary.prediction = {method, predicted, interval95, measured, relative_error, inside, approach3}. A sigmoid from loss to accuracy (next tokens of held-out files) predicts that rung's accuracy too.

    Writes OUT/rung-{w|d}{size}-c{C}/, OUT/ladder.csv, OUT/isoflop.png, OUT/nopt.png, OUT/loss_to_accuracy.png, OUT/summary.json.

    \b
    Example (the default run's ladder: 40 rungs, 2 seeds each, then the held-out rung at both; measured 19 minutes on 2 CPU cores, 2 workers):
      scalinglab sweep isoflop --out runs/iso
    """
    from scalinglab.train.isoflop import IsoFlopConfig, budget_sizes, run_isoflop
    from scalinglab.train.ladder import parse_list

    kw = {"overrides": tuple(set_)} if set_ else {}
    if lr_width is not None:
        if dial != "width":
            raise UserError(
                f"--lr-width {lr_width:g}: the width dial only (a depth dial's rungs keep their default lr)"
            )
        kw["lr_width"] = lr_width
    cfg = IsoFlopConfig(
        task=task,
        budgets=_floats(budgets, "--budgets"),
        sizes=parse_list(sizes, "--sizes"),
        window=window,
        dial=dial,
        depth=depth,
        predict=predict,
        seed=seed,
        seeds=seeds,
        eval_problems=eval_problems,
        threads=threads,
        workers=workers,
        bootstrap=bootstrap,
        grid=grid,
        **kw,
    )
    with _ladder_dir(out):
        n = (sum(map(len, budget_sizes(cfg).values())) + (cfg.predict != -1)) * cfg.seeds
        with common.progress_bar(f"IsoFLOP ladder ({n} rungs, {backend})") as bar:
            summary = run_isoflop(cfg, str(out), backend=backend, address=address, progress=bar)
    common.emit(summary, as_json, human=_human_isoflop(summary))


def _floats(text: str, what: str) -> tuple[float, ...]:

    out = []
    for item in (s.strip() for s in text.split(",")):
        try:
            v = float(item)
        except ValueError:
            raise UserError(f"{what} {text!r}: {item!r} is not a number") from None
        if not (v > 0 and math.isfinite(v)):
            raise UserError(f"{what} {text!r}: {item!r} is not a positive number")
        out.append(v)
    return tuple(out)


def _human_isoflop(s: dict) -> str:
    lines = [
        f"{s['trained']} rungs trained, {s['reused']} reused ({s['backend']}), {s['seconds']:.1f}s",
        f"{'C':>9} {s['dial']:>5} {'N':>9} {'D':>9} {'loss':>7} {'acc':>6}",
    ]
    lines += [
        f"{r['budget']:>9.3g} {r['size']:>5} {r['N']:>9.4g} {r['D']:>9.4g} {r['loss']:>7.4f} "
        f"{'' if r['accuracy'] is None else format(r['accuracy'], '.3f'):>6}"
        for r in s["rungs"]
    ]
    a2 = s["approach2"]
    lines.append(f"Approach 2: N_opt ∝ C^{a2['a']:.3f} [{a2['a_ci95'][0]:.3f}, {a2['a_ci95'][1]:.3f}]")
    ex = s.get("exponents")
    if ex:
        a3 = ex["approach3"]
        lines.append(
            f"Approach 3: N_opt ∝ C^{a3['a']:.3f} [{a3['ci95'][0]:.3f}, {a3['ci95'][1]:.3f}]; "
            f"the two {'agree' if ex['agree'] else 'DISAGREE'} within their 95% intervals"
        )
    p = s.get("prediction")
    if p:
        how = f"frontier L_opt ∝ C^-{p['gamma']:.3f}" if p.get("method") == "frontier" else "parametric law"
        lines.append(
            f"prediction at C={p['C']:.3g} ({s['dial']} {p['size']}, N={p['N']:.4g}, D={p['D']:.4g}; {how}): "
            f"{p['predicted']:.4f} [{p['interval95'][0]:.4f}, {p['interval95'][1]:.4f}], measured {p['measured']:.4f} "
            f"({p['relative_error']:+.2%}, {'inside' if p['inside'] else 'OUTSIDE'} the interval)"
        )
        a3 = p.get("approach3")
        if a3:
            lines.append(
                f"the parametric law's prediction of the same model: {a3['predicted']:.4f} "
                f"[{a3['interval95'][0]:.4f}, {a3['interval95'][1]:.4f}] ({a3['relative_error']:+.2%}, "
                f"{'inside' if a3['inside'] else 'OUTSIDE'} the interval)"
            )
    la = s.get("loss_to_accuracy")
    if la:
        lines.append(
            f"loss to accuracy: predicted {la['predicted_from_predicted_loss']:.3f}, measured {la['measured']:.3f}"
        )
    lines += [f"warning: {w}" for w in s["warnings"]]
    lines += [f"wrote {p}" for p in [s["ladder_csv"], *s["figures"]]]
    return "\n".join(lines)


@contextlib.contextmanager
def _ladder_dir(out: Path):
    """Hold OUT's lock while a sweep runs (a second sweep there would retrain the first one's rungs);
    a start that failed before writing anything leaves no directory behind."""
    made = not out.exists()
    lock = _lock(out)
    try:
        yield
    finally:
        lock.release()
        if made and out.is_dir() and [p.name for p in out.iterdir()] in ([], [".lock"]):
            import shutil

            shutil.rmtree(out, ignore_errors=True)


def _lock(out: Path):
    from scalinglab.runs.store import DirLock

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a ladder directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create the ladder directory ({e.strerror or e})") from None
    return DirLock(out)


def _human(s: dict) -> str:
    lines = [
        f"{s['trained']} rungs trained, {s['reused']} reused ({s['backend']}), {s['seconds']:.1f}s",
        f"{'depth':>5} {'N':>10} {'D':>10} {'C':>10} {'loss':>8}",
    ]
    lines += [f"{r['depth']:>5} {r['N']:>10.4g} {r['D']:>10.4g} {r['C']:>10.4g} {r['loss']:>8.4f}" for r in s["rungs"]]
    f = s["fit"]
    if f["success"]:
        p = f["params"]
        lines.append(f"fit: L = {p['E']:.4g} + {p['A']:.4g}/N^{p['alpha']:.4g} + {p['B']:.4g}/D^{p['beta']:.4g}")
    lines.append(f"fit message: {f['message']}")
    plan = s.get("compute_optimal")
    if plan:
        lines += [f"C={c:.3g}: N*={n:.3g} D*={d:.3g}" for c, n, d in zip(plan["C"], plan["N"], plan["D"])]
    lines += [f"wrote {p}" for p in [s["ladder_csv"], *s["figures"]]]
    return "\n".join(lines)


# --- the data wall (issue 17 section 3) -------------------------------------------------------
# A separate command rather than `sweep pretrain --unique-tokens --epochs`: its rungs are named by
# epochs, not token budgets (--tokens would mean nothing), it trains fresh-data references beside
# the repeated ones, and it fits a different law (R_D*), with its own figure and summary.


@sweep_app.command("datawall")
def sweep_datawall_cmd(
    unique_tokens: float = typer.Option(
        3e5,
        "--unique-tokens",
        help="U: distinct tokens every repeated rung trains on (3e5 notation is fine; 16 epochs of 3e5 are 4.8M of pystdlib's 5.4M training tokens).",
    ),
    epochs: str = typer.Option(
        "1,2,4,8,16", help="Epoch counts over U, comma-separated; each rung trains D = epochs·U tokens."
    ),
    depths: str = typer.Option(
        "2", help="Model sizes, comma-separated depths (width = aspect·depth; aspect via --set)."
    ),
    task: str = typer.Option(
        "pystdlib", help="A text corpus (pystdlib: the Python standard library's sources, split by file)."
    ),
    fresh: bool = typer.Option(
        True, "--fresh/--no-fresh", help="Train the fresh-data references (U = D) at every D; the fit needs them."
    ),
    seed: int = typer.Option(
        0, help="Seed of every rung (init and data order; the U tokens are the same for every seed)."
    ),
    seeds: int = typer.Option(
        3,
        help="Runs of every rung, at seeds SEED, SEED+1, ... (OUT/rep-...-s1/): every run is a point of the fit, the table "
        "compares the seeds' mean losses and gives each gap a 95% interval from their scatter. One run's loss scatters by "
        "up to 15% in the short rungs (docs/scaling.md), more than repetition costs: one seed does not pin R_D*.",
    ),
    out: Path = typer.Option(..., help="Sweep directory; finished rungs already in it are reused."),
    backend: str = typer.Option("local", help="local (this machine) or ray (one Ray task per rung)."),
    address: Optional[str] = typer.Option(
        None, help="Ray cluster to join (HEAD:6379, or 'auto'); default: a local Ray instance."
    ),
    threads: int = typer.Option(1, help="Torch threads per rung (and Ray CPUs per rung)."),
    workers: int = WORKERS_OPT,
    bootstrap: int = typer.Option(
        1000, help="Wild-bootstrap resamples for R_D*'s 95% interval (each rung keeps its own residual, random sign)."
    ),
    set_: Optional[List[str]] = typer.Option(
        None,
        "--set",
        help="PretrainConfig fields for every rung, replacing the defaults "
        "aspect=24 lr=0.0035 vocab_size=512 batch_size=8 seq_len=128 val_tokens=65536 eval_problems=0 when any is given "
        "(every field: `scalinglab config show pretrain`).",
    ),
    as_json: bool = common.JSON_OPT,
) -> None:
    """The data wall: train on U distinct tokens for 1, 2, 4, ... epochs, beside fresh data at the same D; fit R_D*.

    Muennighoff et al. 2023: repeated data is worth D' = U + U·R_D*·(1 − exp(−R_D/R_D*)) fresh tokens (R_D = epochs − 1), so the first few epochs are worth nearly as much as fresh data and later ones less and less. Each size of --depths trains on the same U tokens at every epoch count (OUT/rep-d{depth}-u{U}-e{epochs}/) and on fresh data at the same D (OUT/fresh-d{depth}-t{D}/); L = E_N + B/D'^β is fitted with a 95% interval on R_D*. The summary sets, per epoch count, the repeated loss beside the fresh one and what a repeated token was worth (measured and fitted).

    Writes OUT/datawall.csv, OUT/datawall.png and OUT/summary.json. Rerunning reuses finished rungs.

    \b
    Example (the default: 30 rungs, 3 seeds each of 5 repeated and 5 fresh, 56M tokens; measured about 18 minutes on 2 CPU cores, 2 workers; R_D* = 17.1 [10.4, 33.1]):
      scalinglab sweep datawall --unique-tokens 3e5 --epochs 1,2,4,8,16 --seeds 3 --out runs/wall
    A quick look (one seed, 80 s measured; R_D* is not pinned, repetition even looks better than fresh data):
      scalinglab sweep datawall --unique-tokens 5e4 --seeds 1 --out runs/wall-quick
    """
    from scalinglab.train.datawall import DataWallConfig, run_datawall
    from scalinglab.train.ladder import parse_list

    if not (unique_tokens >= 1 and float(unique_tokens).is_integer()):
        raise UserError(f"--unique-tokens {unique_tokens:g}: must be a positive whole number of tokens")
    kw = {"overrides": tuple(set_)} if set_ else {}
    cfg = DataWallConfig(
        task=task,
        depths=parse_list(depths, "--depths"),
        unique_tokens=int(unique_tokens),
        epochs=parse_list(epochs, "--epochs"),
        fresh=fresh,
        seed=seed,
        seeds=seeds,
        threads=threads,
        workers=workers,
        bootstrap=bootstrap,
        **kw,
    )
    with _ladder_dir(out):
        n = len(set(cfg.depths)) * len(set(cfg.epochs)) * (2 if cfg.fresh else 1) * max(1, cfg.seeds)
        with common.progress_bar(f"data wall ({n} rungs, {backend})") as bar:
            summary = run_datawall(cfg, str(out), backend=backend, address=address, progress=bar)
    common.emit(summary, as_json, human=_human_datawall(summary))


def _human_datawall(s: dict) -> str:
    def f(v, spec):
        return "" if v is None else format(v, spec)

    lines = [
        f"{s['trained']} rungs trained, {s['reused']} reused ({s['backend']}), {s['seconds']:.1f}s; U = {s['unique_tokens']:,}",
        f"{'depth':>5} {'epochs':>6} {'D':>9} {'repeated':>9} {'fresh':>8} {'gap':>7} {'gap 95% CI':>17} {'worth':>6} {'95% CI':>13} {'fitted':>6} {'paper':>6}",
    ]
    for t in s["comparison"]:
        ci, g = t.get("worth_measured_ci95"), t.get("loss_gap_ci95")
        lines.append(
            f"{t['depth']:>5} {t['epochs']:>6.3g} {t['D']:>9.4g} {t['loss_repeated']:>9.4f} {f(t['loss_fresh'], '.4f'):>8} "
            f"{f(t['loss_gap'], '+.2%'):>7} {'' if not g else f'[{g[0]:+.1%}, {g[1]:+.1%}]':>17} "
            f"{f(t.get('worth_measured'), '.3f'):>6} "
            f"{'' if not ci else f'[{ci[0]:.2f}, {ci[1]:.2f}]':>13} {f(t.get('worth_fitted'), '.3f'):>6} {t['worth_published']:>6.3f}"
        )
    r = s.get("R_D*")
    if r:
        lines.append(
            f"R_D* = {r['estimate']:.3g} [{r['ci95'][0]:.3g}, {r['ci95'][1]:.3g}] (Muennighoff et al.: {r['published']})"
        )
    elif s.get("fit"):
        lines.append(f"fit: {s['fit']['message']}")
    if s.get("shape"):
        lines.append(f"shape: {s['shape']['verdict']}")
    lines += [f"warning: {w}" for w in s["warnings"]]
    lines += [f"wrote {p}" for p in [s["datawall_csv"], *s["figures"]]]
    return "\n".join(lines)


# --- saturated benchmarks (issue 17 section 4) ---------------------------------------------------


@sweep_app.command("saturation")
def sweep_saturation_cmd(
    task: str = typer.Option(
        "arithmetic", help="A generated task with a difficulty knob (arithmetic: digits per operand)."
    ),
    difficulties: str = typer.Option(
        "1,2,3", help="Difficulty levels, easy to hard: trained as an even mix, evaluated one by one."
    ),
    depths: str = typer.Option("1,2", help="Model sizes, comma-separated depths (width 64·depth)."),
    tokens: str = typer.Option("1e5,3e5,1e6", help="Token budgets per size, comma-separated (1e5 notation is fine)."),
    eval_problems: int = typer.Option(
        200, help="Held-out problems per difficulty (the whole evaluation split when it is smaller)."
    ),
    seed: int = typer.Option(0, help="Seed of every rung (init and data order)."),
    out: Path = typer.Option(
        ..., help="Sweep directory; finished rungs (and their evaluations) already in it are reused."
    ),
    backend: str = typer.Option("local", help="local (this machine) or ray (one Ray task per rung)."),
    address: Optional[str] = typer.Option(
        None, help="Ray cluster to join (HEAD:6379, or 'auto'); default: a local Ray instance."
    ),
    threads: int = typer.Option(1, help="Torch threads per rung and per evaluation."),
    workers: int = WORKERS_OPT,
    set_: Optional[List[str]] = typer.Option(
        None,
        "--set",
        help="Any other PretrainConfig field for every rung: --set batch_size=8 (every field: `scalinglab config show pretrain`).",
    ),
    as_json: bool = common.JSON_OPT,
) -> None:
    """Saturated benchmarks: one ladder evaluated at three difficulties of one task, against compute.

    Every rung (each depth x each token budget) pre-trains on an even mix of the difficulties, then is evaluated at each one on held-out problems: greedy accuracy with a 95% Wilson interval, and that difficulty's validation loss. The summary's `shape` says, per difficulty, how much the accuracy still rose over the top half of the compute range ("saturated" at the ceiling, or "improving"), beside the falling loss.

    Writes OUT/rung-d{depth}-t{tokens}/ (with saturation.json, its evaluation), OUT/saturation.csv, OUT/saturation.png and OUT/summary.json. Rerunning reuses finished rungs and evaluations.

    \b
    Example (the default: 6 rungs, 2.8M tokens in all; measured 9 minutes on 2 shared CPU cores one rung at a time, before --workers):
      scalinglab sweep saturation --out runs/sat
    A quick look (about 1 minute):
      scalinglab sweep saturation --depths 1,2 --tokens 3e4,1e5 --eval-problems 50 --out runs/sat-small
    """
    from scalinglab.train.ladder import parse_list
    from scalinglab.train.saturation import SaturationConfig, run_saturation

    cfg = SaturationConfig(
        task=task,
        difficulties=parse_list(difficulties, "--difficulties"),
        depths=parse_list(depths, "--depths"),
        tokens=parse_list(tokens, "--tokens"),
        eval_problems=eval_problems,
        seed=seed,
        threads=threads,
        workers=workers,
        overrides=tuple(set_ or ()),
    )
    with _ladder_dir(out):
        n = len(set(cfg.depths)) * len(set(cfg.tokens))
        with common.progress_bar(f"saturation ({n} rungs: train, then evaluate; {backend})") as bar:
            summary = run_saturation(cfg, str(out), backend=backend, address=address, progress=bar)
    common.emit(summary, as_json, human=_human_saturation(summary))


def _human_saturation(s: dict) -> str:
    diffs = s["config"]["difficulties"]
    lines = [
        f"{s['trained']} rungs trained, {s['reused']} reused ({s['backend']}), {s['seconds']:.1f}s",
        f"{'depth':>5} {'D':>9} {'C':>9} {'loss':>7} " + " ".join(f"{'acc d' + str(d):>17}" for d in diffs),
    ]
    runs = sorted({(r["C"], r["run"]) for r in s["rows"]})
    for _, name in runs:
        rs = {r["difficulty"]: r for r in s["rows"] if r["run"] == name}
        r0 = next(iter(rs.values()))
        accs = " ".join(f"{rs[d]['accuracy']:>5.3f} [{rs[d]['ci_lo']:.2f},{rs[d]['ci_hi']:.2f}]" for d in diffs)
        lines.append(f"{r0['depth']:>5} {r0['D']:>9.4g} {r0['C']:>9.3g} {r0['loss']:>7.4f} {accs}")
    sh = s["shape"]
    for d in diffs:
        x = sh[str(d)]
        lines.append(
            f"difficulty {d}: {x['accuracy_median_compute']:.3f} -> {x['accuracy_largest']:.3f} over the top half "
            f"of compute ({x['gain_top_half']:+.3f}): {x['label']}"
        )
    lo = sh["loss"]
    lines.append(f"loss (the mix): {lo['median_compute']:.4f} -> {lo['largest']:.4f} over the top half of compute")
    lines += [f"wrote {p}" for p in [s["saturation_csv"], *s["figures"]]]
    return "\n".join(lines)
