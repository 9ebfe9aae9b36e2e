"""`scalinglab fit LAW DATA` and `scalinglab bench fit`: thin wrappers over `scalinglab.scaling`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from scalinglab.commands import common
from scalinglab.errors import UserError

FIT_HELP = """Fit a scaling law to a CSV (or JSON list of records) and print its parameters with 95% bootstrap intervals.

\b
Laws:
  chinchilla     L = E + A/N^alpha + B/D^beta   (columns N, D, loss; or params, tokens, loss;
                 a FLOP column gives D = FLOP/(6N)). Hoffmann/Epoch method: log-space LSE,
                 Huber delta=1e-3 summed, L-BFGS from a 4,500-start grid, bootstrap (default 4000).
  kaplan         L = [(Nc/N)^(aN/aD) + Dc/D]^aD (same columns).
  power          y = a x^b (log-log least squares), e.g. --x flops --y n_star for N* ~ C^a.
  offset_power   y = a x^b + c.
  coverage       c(k) = exp(a k^b), a<0, b<0 (repeated sampling with a verifier).
  majority_vote  acc(k) = A_inf - (A_inf - A1) k^-b.
  sigmoid        R(C) = R0 + (A - R0)/(1 + (C_mid/C)^B) (RL compute curve).

\b
--json prints {"law","params","ci95","se","success","message","n_points","warnings",...}.
A fit that fails or is ill-determined says so in "success"/"warnings"; it is not an error.

\b
Example (Epoch AI's replication data, 5 highest losses dropped):
  scalinglab fit chinchilla epoch_chinchilla_svg_extracted_data.csv --drop-highest 5 --json
"""


def fit_cmd(
    law: str = typer.Argument(
        ..., help="chinchilla | kaplan | power | offset_power | coverage | majority_vote | sigmoid"
    ),
    data: Path = typer.Argument(..., help="CSV with a header row, or a JSON list of objects."),
    x: Optional[str] = typer.Option(None, "--x", help="x column (1-D laws; for chinchilla/kaplan: the N column)."),
    y: Optional[str] = typer.Option(None, "--y", help="y column (1-D laws; for chinchilla/kaplan: the loss column)."),
    bootstrap: Optional[int] = typer.Option(
        None, "--bootstrap", help="Bootstrap resamples for the 95% intervals (0 = none; default depends on the law)."
    ),
    drop_highest: int = typer.Option(0, "--drop-highest", help="Drop this many highest-y rows first (Epoch drop 5)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the bootstrap resamples."),
    grid: str = typer.Option(
        "hoffmann", "--grid", help="chinchilla starts: hoffmann (4,500, as published) or small (243, quick)."
    ),
    compute: Optional[str] = typer.Option(
        None,
        "--compute",
        help="chinchilla: also plan N*(C), D*(C) with bootstrap bands at these FLOP budgets, e.g. 1e21,5.76e23.",
    ),
    as_json: bool = common.JSON_OPT,
) -> None:
    from scalinglab.scaling import compute_optimal, fit_file

    budgets = _floats(compute, "--compute") if compute else None
    if budgets and law != "chinchilla":
        raise UserError("--compute plans a compute-optimal allocation and needs the chinchilla law")
    res = fit_file(
        law.replace("-", "_"), data, x=x, y=y, bootstrap=bootstrap, seed=seed, drop_highest=drop_highest, grid=grid
    )
    if not res.success and all(v != v for v in res.params.values()):  # nothing was fitted: one line, not a table of NaN
        raise UserError(f"{law} fit of {data}: {res.message}")
    out = res.to_dict()
    human = res.summary()
    if budgets and res.success:
        out["compute_optimal"] = plan = compute_optimal(res, budgets)
        human += "\n" + "\n".join(
            f"C={c:.3g}: N*={n:.3g} D*={d:.3g} ({d / n:.1f} tokens/param)"
            for c, n, d in zip(plan["C"], plan["N"], plan["D"])
        )
    common.emit(out, as_json, human=human)


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} takes comma-separated numbers, got {text!r}") from None


def bench_fit(
    data: Optional[Path] = typer.Option(
        None, "--data", help="Epoch AI's CSV (default: ../shared/reference/ beside the repo)."
    ),
    bootstrap: int = typer.Option(4000, "--bootstrap", help="Bootstrap resamples on both sides."),
    naive_starts: int = typer.Option(
        450, "--naive-starts", help="Grid starts the SciPy side runs (its time is scaled to 4,500); 0 = all."
    ),
    naive_resamples: int = typer.Option(
        400, "--naive-resamples", help="Resamples the SciPy side runs (time scaled to --bootstrap); 0 = all."
    ),
    as_json: bool = common.JSON_OPT,
) -> None:
    """Chinchilla fit (4,500-start grid + 4,000 bootstraps): ours vs one scipy.optimize.minimize per start and resample."""
    from scalinglab.bench import fit as benchmark

    path = data or Path(__file__).resolve().parents[3].parent / "shared" / "reference" / benchmark.EPOCH_CSV
    if not path.is_file():
        raise UserError(f"benchmark data not found: {path} (pass --data PATH to Epoch AI's svg_extracted_data.csv)")
    N, D, L = benchmark.load_epoch(path)
    with common.progress_bar("bench fit", enabled=not as_json) as report:
        res = benchmark.run(
            N,
            D,
            L,
            bootstrap=bootstrap,
            naive_starts=naive_starts or None,
            naive_resamples=naive_resamples or None,
            progress=report,
        )
    human = (
        f"ours {res['ours']['seconds']:.2f} s vs SciPy {res['scipy']['seconds_total']:.1f} s "
        f"({'extrapolated' if res['naive_extrapolated'] else 'measured'}): {res['speedup']:.1f}x faster "
        f"({res['speedup_cpu']:.1f}x in CPU time); "
        f"max relative parameter difference {res['same_answer']['max_rel_diff_params']:.2g}"
    )
    common.emit(res, as_json, human=human)


def register(app: typer.Typer) -> None:
    app.command("fit", help=FIT_HELP)(fit_cmd)
    common.bench_app.command("fit")(bench_fit)
