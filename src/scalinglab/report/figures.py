"""Shared matplotlib helpers so every stage's figures look like one report.

    from scalinglab.report.figures import new_figure, save_fig, PALETTE
    fig, ax = new_figure()
    ax.plot(x, y, color=PALETTE[0], label="GRPO")
    save_fig(fig, run_dir / "rl" / "accuracy_vs_compute.png")

`new_figure` applies `STYLE` (a small rcParams set: no top/right spines, light grid, a
colour-blind-safe palette, readable font sizes at the size the HTML report shows them) to
matplotlib's global rcParams, because titles, lines and legends read rcParams when they are
drawn, not when the axes are made; a pipeline process then draws every figure alike.
Importing the module only selects the Agg backend. `save_fig` writes a PNG (or SVG/PDF) atomically (temp file + rename, so an interrupted run
never leaves a half-written figure) at `DPI`, then closes the figure to free its memory.

Torch-free (stages in scaling/ and tokenomics/ may use it).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402

# Okabe-Ito colours (colour-blind safe), black last; the report cycles through them in order.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]

# 6.4 x 4.0 in at 150 dpi = 960 x 600 px: sharp in a ~600 px wide report column on a
# 2x (retina) laptop screen, and ~60-120 kB per line plot.
FIGSIZE = (6.4, 4.0)
DPI = 150

STYLE: dict[str, Any] = {
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "axes.edgecolor": "#444444",
    "axes.linewidth": 0.8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.which": "both",
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "grid.alpha": 0.8,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.axisbelow": True,  # grid lines behind bars and markers
    "axes.labelsize": 10,
    "axes.labelcolor": "#222222",
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "xtick.color": "#444444",
    "ytick.color": "#444444",
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "lines.markersize": 5,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "savefig.facecolor": "white",
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.08,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
}


def new_figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] | None = None, **kw: Any):
    """`plt.subplots` in the report style; a wider default for side-by-side panels."""
    use_style()
    if figsize is None:
        figsize = (FIGSIZE[0] * (1.55 if ncols > 1 else 1.0), FIGSIZE[1] * (0.85 * nrows if nrows > 1 else 1.0))
    return plt.subplots(nrows, ncols, figsize=figsize, **kw)


def use_style() -> None:
    """Apply `STYLE` to matplotlib's rcParams (idempotent)."""
    plt.rcParams.update(STYLE)


# metadata that would differ between runs (version, timestamps), dropped per format
_NO_STAMP = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}


def save_fig(fig: Any, path: str | os.PathLike, dpi: int = DPI) -> Path:
    """Write `fig` to `path` (PNG, SVG or PDF, by suffix; PNG otherwise) atomically, close it, return the path.

    Creates parent directories. The file has no timestamp metadata, so the same figure gives
    the same bytes (run directories diff cleanly).
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    fmt = fmt if fmt in _NO_STAMP else "png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".{fmt}")
    os.close(fd)
    try:
        fig.savefig(
            tmp, format=fmt, dpi=dpi, facecolor="white", bbox_inches="tight", pad_inches=0.08, metadata=_NO_STAMP[fmt]
        )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
    return path
