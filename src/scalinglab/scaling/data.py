"""Read a table of measurements (CSV or JSON records) and fit a named law to it: `fit_file`.

Column names are matched case-insensitively. Chinchilla/Kaplan read N (or params, n_params,
"Model Size"), D (or tokens, "Training Tokens") and loss; without a token column a FLOP column
(flops, C, "Training FLOP") gives D = FLOP / (6·N). One-dimensional laws read --x/--y, defaulting
to the first two numeric columns.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from scalinglab.errors import UserError
from scalinglab.scaling.fit import FitResult

LAWS = ("chinchilla", "kaplan", "power", "offset_power", "coverage", "majority_vote", "sigmoid")
N_ALIASES = ("n", "params", "n_params", "model size", "parameters")
D_ALIASES = ("d", "tokens", "n_tokens", "training tokens", "data")
C_ALIASES = ("flops", "c", "compute", "training flop", "training flops")
LOSS_ALIASES = ("loss", "l", "final_loss", "val_loss")


def read_table(path: str | Path) -> dict[str, np.ndarray]:
    """Numeric columns of a CSV or a JSON list of records, as float arrays keyed by column name."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{p} is a directory; expected a CSV or JSON file of measurements")
    if not p.is_file():
        raise UserError(f"data file not found: {p}")
    shape = "expected CSV with a header, a JSON list of objects or a JSON object of equal-length column lists"
    try:
        if p.suffix.lower() in (".json", ".jsonl"):
            text = p.read_text()
            rows = (
                [json.loads(line) for line in text.splitlines() if line.strip()]
                if p.suffix.lower() == ".jsonl"
                else json.loads(text)
            )
            if isinstance(rows, dict):  # {"col": [..], ...}
                columns = list(rows.values())
                if not columns or not all(isinstance(c, list) for c in columns) or len({len(c) for c in columns}) != 1:
                    raise UserError(
                        f"{p}: a JSON object must map every column name to a list of the same length ({shape})"
                    )
                rows = [dict(zip(rows, vals)) for vals in zip(*columns)]
        else:
            with p.open(newline="") as f:
                rows = list(csv.DictReader(f))
    except (json.JSONDecodeError, csv.Error, UnicodeDecodeError) as e:
        raise UserError(f"cannot parse {p}: {e}") from None
    except OSError as e:
        raise UserError(f"cannot read {p}: {e.strerror or e}") from None
    if not rows or not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise UserError(f"{p} holds no table rows ({shape})")
    cols: dict[str, np.ndarray] = {}
    for name in rows[0]:
        try:
            cols[name] = np.array([float(r.get(name)) if r.get(name) not in (None, "") else np.nan for r in rows])
        except (TypeError, ValueError):
            continue  # a text column (e.g. a colour or a config name)
    if not cols:
        raise UserError(f"{p} has no numeric columns")
    return cols


def _pick(
    cols: dict[str, np.ndarray], wanted: str | None, aliases: tuple[str, ...], role: str, path
) -> np.ndarray | None:
    lower = {k.lower().strip(): k for k in cols}
    if wanted is not None:
        if wanted.lower() not in lower:
            raise UserError(f"column {wanted!r} ({role}) not in {path}; numeric columns: {', '.join(cols)}")
        return cols[lower[wanted.lower()]]
    for a in aliases:
        if a in lower:
            return cols[lower[a]]
    return None


def fit_file(
    law: str,
    path: str | Path,
    *,
    x: str | None = None,
    y: str | None = None,
    bootstrap: int | None = None,
    seed: int = 0,
    drop_highest: int = 0,
    grid: str = "hoffmann",
) -> FitResult:
    """Fit `law` to the table at `path`; `drop_highest` removes that many highest-y rows first
    (Epoch AI drop the 5 highest-loss Chinchilla points). `grid` (Chinchilla only): "hoffmann"
    (4,500 starts) or "small" (243)."""
    from scalinglab.scaling import chinchilla, kaplan, power, rl, testtime

    if law not in LAWS:
        raise UserError(f"unknown law {law!r}; choose one of {', '.join(LAWS)}")
    if bootstrap is not None and bootstrap < 0:
        raise UserError("--bootstrap must be >= 0")
    cols = read_table(path)
    kw: dict[str, Any] = {"seed": seed} | ({} if bootstrap is None else {"bootstrap": bootstrap})
    if law in ("chinchilla", "kaplan"):
        N = _pick(cols, x, N_ALIASES, "model size N", path)
        L = _pick(cols, y, LOSS_ALIASES, "loss", path)
        D = _pick(cols, None, D_ALIASES, "tokens D", path)
        if D is None and N is not None:
            C = _pick(cols, None, C_ALIASES, "FLOP", path)
            D = None if C is None else C / (6.0 * N)
        if N is None or D is None or L is None:
            raise UserError(
                f"{law} needs columns N, D (or FLOP) and loss in {path}; numeric columns: {', '.join(cols)}"
            )
        keep = _drop(L, drop_highest)
        if law == "kaplan":
            return kaplan.fit_kaplan(N[keep], D[keep], L[keep], **kw)
        if grid not in ("hoffmann", "small"):
            raise UserError(f"--grid must be 'hoffmann' or 'small', got {grid!r}")
        return chinchilla.fit_chinchilla(N[keep], D[keep], L[keep], grid=grid, **kw)
    names = list(cols)
    xv = _pick(cols, x, (), "x", path) if x else cols[names[0]]
    yv = _pick(cols, y, (), "y", path) if y else (cols[names[1]] if len(names) > 1 else None)
    if yv is None:
        raise UserError(f"{path} needs two numeric columns (x and y) for a {law} fit")
    keep = _drop(yv, drop_highest)
    fn = {
        "power": power.fit_power,
        "offset_power": power.fit_offset_power,
        "coverage": testtime.fit_coverage,
        "majority_vote": testtime.fit_majority_vote,
        "sigmoid": rl.fit_sigmoid,
    }[law]
    return fn(xv[keep], yv[keep], **kw)


def _drop(v: np.ndarray, k: int) -> np.ndarray:
    if k < 0:
        raise UserError("--drop-highest must be >= 0")
    order = np.argsort(np.where(np.isfinite(v), v, -np.inf), kind="stable")
    return np.sort(order[: len(v) - k]) if k else np.arange(len(v))
