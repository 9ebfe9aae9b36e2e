"""The typed stage results (pipeline/results.py) and the post-training figures (pipeline/figures.py),
on hand-made inputs: what summary.json and stage.json receive, one law record for every kind of
fit, a stage's warning on the report page, and the ROC by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scalinglab.pipeline import _summary, figures
from scalinglab.pipeline.presets import PRESETS
from scalinglab.pipeline.results import Figure, LawRecord, StageResult, law_record
from scalinglab.runs.store import dumps
from scalinglab.scaling.fit import FitResult

WARN = "the 95% interval of b (0.1, 40) spans a factor 400: the data do not pin it"


def _fit(warnings=()) -> FitResult:
    return FitResult(
        law="coverage",
        params={"a": -1.5, "b": -0.3},
        ci={"a": (-2.0, -1.0), "b": (float("nan"), float("nan"))},
        residuals=np.zeros(4),
        success=True,
        message="converged" + ("; ill-determined: " + "; ".join(warnings) if warnings else ""),
        n_points=4,
        warnings=list(warnings),
    )


def test_law_record_is_the_same_from_a_fit_and_from_its_dict():
    fit = _fit([WARN])
    a, b = law_record("coverage", fit), law_record("coverage", json.loads(dumps(fit.to_dict())))
    assert a.to_dict().keys() == b.to_dict().keys() == {"params", "ci95", "success", "message", "warnings", "n_points"}
    assert a.warnings == b.warnings == [WARN] and a.n_points == b.n_points == 4
    assert json.loads(dumps(a.to_dict())) == b.to_dict()  # NaN bounds become null either way
    assert law_record("x", {"success": False, "message": "failed"}).to_dict() == {"success": False, "message": "failed"}


def test_summary_entry_keeps_todays_layout_and_stage_json_round_trips():
    r = StageResult(
        title="Test-time compute",
        headline={"greedy": 0.5, "pass@4": 0.75},
        model="rl/grpo/model",
        figures=[Figure("testtime/a.png", "Accuracy.")],
        table=[{"n": 1, "accuracy": 0.5}],
        law=law_record("coverage", _fit()),
        trains=True,
        heldout_overlap=0,
        outputs={"results": {"greedy": [{"n": 1, "accuracy": 0.5}]}},
    )
    entry = r.summary_entry()
    assert list(entry) == ["title", "headline", "model", "figures", "table"]  # None fields left out, in this order
    assert entry["figures"] == [{"path": "testtime/a.png", "caption": "Accuracy."}]
    rec = json.loads(dumps(r.to_record()))
    assert rec["results"] == r.outputs["results"] and rec["heldout_overlap"] == 0  # outputs at the top level
    back = StageResult.from_record(rec)
    assert back.summary_entry() == json.loads(dumps(entry))
    assert back.outputs == r.outputs and back.trains and back.law == LawRecord(**rec["law"])
    untrained = StageResult.from_record(json.loads(dumps(StageResult("t", {}).to_record())))
    assert not untrained.trains and "heldout_overlap" not in StageResult("t", {}).to_record()


def test_summary_lists_each_law_once_and_a_failed_stage(tmp_path):
    ok = StageResult("Test-time", {"greedy": 0.5}, law=law_record("coverage", _fit()))
    s = _summary(PRESETS["smoke"], {"testtime": ok}, {"tradeoff": "ValueError: x"}, 0.0, "2026-12-01T00:00:00")
    assert s["laws"] == {"coverage": ok.law.to_dict()}
    assert s["stages"]["tradeoff"] == {"status": "failed", "error": "ValueError: x"}
    assert s["models"] == {"testtime": None}


def test_a_stage_fits_warning_reaches_the_report_page(tmp_path):
    """A FitResult with a warning, recorded by law_record, written by the pipeline's summary, rendered:
    the page shows the warning and the ill-determined badge."""
    from scalinglab.report import build_report

    stage = StageResult("Test-time", {"greedy": 0.5}, law=law_record("coverage", _fit([WARN])))
    summary = _summary(PRESETS["smoke"], {"testtime": stage}, {}, 0.0, "2026-12-01T00:00:00", status="finished")
    (tmp_path / "summary.json").write_text(dumps(summary))
    page = build_report(tmp_path).read_text()
    assert '<span class="badge skipped">ill-determined</span>' in page and "do not pin it" in page


def test_roc_curve_by_hand():
    # scores 0.9(+) 0.8(-) 0.7(+) 0.7(-) 0.1(-): thresholds fall through 0.9, 0.8, 0.7 (a tie), 0.1
    fpr, tpr = figures.roc_curve([0.9, 0.8, 0.7, 0.7, 0.1], [True, False, True, False, False])
    assert fpr == pytest.approx([0, 0, 1 / 3, 2 / 3, 1]) and tpr == pytest.approx([0, 0.5, 0.5, 1, 1])
    area = sum((x1 - x0) * (y0 + y1) / 2 for x0, x1, y0, y1 in zip(fpr, fpr[1:], tpr, tpr[1:]))
    assert area == pytest.approx(4.5 / 6)  # pairs ranked right: (0.9 over 3) + (0.7 over 0.1) + half the tie
    assert figures.roc_curve([0.3, 0.2], [False, False]) == ([], [])


def test_synth_acceptance_counts_each_problems_first_accepted_sample(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(figures, "save_fig", lambda fig, path: seen.update(y=fig.axes[0].lines[0].get_ydata()) or path)
    rows = [
        {"meta": {"problem_id": "p1", "sample_index": 2, "attempt": 1}},
        {"meta": {"problem_id": "p1", "sample_index": 3, "attempt": 1}},
        {"meta": {"problem_id": "p2", "sample_index": 0, "attempt": 1}},
        {"meta": {"problem_id": "p3", "sample_index": 0, "attempt": 2}},  # a retry: not one of the k samples
    ]
    figures.synth_acceptance(rows, {"k": 4, "problems": 4, "acceptance_rate": 0.2}, tmp_path / "a.png")
    assert list(seen["y"]) == [0.25, 0.25, 0.5, 0.5]
