"""What a stage of `scalinglab run` returns, and how it is written down.

    StageResult(title, headline, model, figures=[Figure(path, caption)], table, notes, law, prediction, ...)

A stage returns one `StageResult`. The pipeline writes it twice:

- `DIR/<stage>/stage.json` = `to_record()`: every field, with `outputs` (what later stages read:
  paths, FLOPs, per-strategy points) flattened in at the top level; `--resume` reads it back
  with `from_record`;
- `DIR/summary.json` = `summary_entry()` under `stages.<name>` (what the report shows: title,
  headline, model, figures, table, notes, prediction; fields that are None are left out), and the
  law, if any, under `laws.<law.name>` (`LawRecord.to_dict()`).

Every fitted law is recorded by `law_record(name, fit)`, whether the fit is a `FitResult` or the
dict a ladder wrote (`FitResult.to_dict()`); docs/report.md describes the JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SUMMARY_FIELDS = ("title", "headline", "model", "figures", "table", "notes", "prediction")


@dataclass(frozen=True)
class Figure:
    path: str  # relative to the run directory, a PNG
    caption: str  # what the figure shows, in a sentence or two

    def to_dict(self) -> dict:
        return {"path": self.path, "caption": self.caption}


@dataclass(frozen=True)
class LawRecord:
    """A fitted law as summary.json's `laws` holds it."""

    name: str  # chinchilla, coverage, rl_sigmoid
    params: dict | None
    ci95: dict | None  # {param: [lo, hi]}, 95% bootstrap percentiles (None/NaN without a bootstrap)
    success: bool | None
    message: str | None
    warnings: list[str] | None = None  # why the fit is ill-determined (the report's badge); None = not checked
    n_points: int | None = None

    def to_dict(self) -> dict:
        """summary.json's `laws.<name>`: the fields that are set, `name` aside."""
        fields = ("params", "ci95", "success", "message", "warnings", "n_points")
        return {k: getattr(self, k) for k in fields if getattr(self, k) is not None}


def law_record(name: str, fit: Any) -> LawRecord:
    """The one place a law record is built: from a `FitResult` or from its `to_dict()` form."""
    d = fit if isinstance(fit, dict) else {**vars(fit), "ci95": fit.ci}
    return LawRecord(
        name=name,
        params=d.get("params"),
        ci95=d.get("ci95"),
        success=d.get("success"),
        message=d.get("message"),
        warnings=d.get("warnings"),
        n_points=d.get("n_points"),
    )


@dataclass
class StageResult:
    title: str
    headline: dict  # the stage's numbers, in order: the first one is its tile in the report
    model: str | None = None  # the model this stage produced (or evaluated)
    figures: list[Figure] = field(default_factory=list)
    table: list[dict] | None = None  # rows of the stage's data table in the report
    notes: str | None = None  # paragraphs separated by blank lines
    law: LawRecord | None = None
    prediction: dict | None = None  # the pre-training law's prediction of a held-out budget
    trains: bool = False  # a training stage: `heldout_overlap` counts for the run's total
    heldout_overlap: int | None = None  # evaluation problems among its training problems (None: not recorded)
    outputs: dict = field(default_factory=dict)  # what later stages read (stage.json's other keys)

    def summary_entry(self) -> dict:
        """summary.json's `stages.<name>`."""
        out = {k: getattr(self, k) for k in SUMMARY_FIELDS}
        out["figures"] = [f.to_dict() for f in self.figures]
        return {k: v for k, v in out.items() if v is not None}

    def to_record(self) -> dict:
        """stage.json: every field, `outputs` flattened in."""
        rec: dict[str, Any] = {k: getattr(self, k) for k in SUMMARY_FIELDS}
        rec["figures"] = [f.to_dict() for f in self.figures]
        rec["law"] = None if self.law is None else {"name": self.law.name, **self.law.to_dict()}
        if self.trains:
            rec["heldout_overlap"] = self.heldout_overlap
        return {**rec, **self.outputs}

    @classmethod
    def from_record(cls, rec: dict) -> StageResult:
        """A finished stage read back from its stage.json (`--resume`)."""
        known = set(SUMMARY_FIELDS) | {"law", "heldout_overlap"}
        law = rec.get("law")
        return cls(
            title=rec.get("title", ""),
            headline=rec.get("headline") or {},
            model=rec.get("model"),
            figures=[Figure(f["path"], f.get("caption", "")) for f in rec.get("figures") or []],
            table=rec.get("table"),
            notes=rec.get("notes"),
            law=None if not law else LawRecord(**law),
            prediction=rec.get("prediction"),
            trains="heldout_overlap" in rec,
            heldout_overlap=rec.get("heldout_overlap"),
            outputs={k: v for k, v in rec.items() if k not in known},
        )
