"""The HTML report: built from a synthetic run directory (real PNGs, one failed stage, one
missing stage), self-contained, escaped, and its number formatting by hand."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from scalinglab.errors import UserError
from scalinglab.report import build_report
from scalinglab.report.figures import new_figure, save_fig
from scalinglab.report.html import fmt_duration, fmt_num, fmt_time, resolve_run_dir

EVIL = "<script>alert('x')</script>"


def _plot(path: Path, kind: str) -> None:
    """Small but real-looking figures, one per kind."""
    x = np.geomspace(1e13, 1e16, 12)
    if kind == "ladder":
        fig, ax = new_figure()
        for i, n in enumerate([0.2e6, 0.8e6, 3.1e6]):
            ax.plot(x, 1.2 + 40 / (n**0.3) + 900 / (x / (6 * n)) ** 0.35, "o-", label=f"N={n:.1e}")
        ax.set_xscale("log"), ax.set_xlabel("training compute C (FLOP)"), ax.set_ylabel("validation loss")
        ax.set_title("Loss against compute per model size"), ax.legend()
    elif kind == "panels":
        fig, axes = new_figure(1, 2)
        for j, name in enumerate(["majority vote", "best-of-N (PRM)", "pass@k"]):
            axes[0].plot(x, 1 / (1 + (3e14 / x) ** (0.5 + 0.1 * j)), label=name)
        (
            axes[0].set_xscale("log"),
            axes[0].set_xlabel("inference FLOPs"),
            axes[0].set_ylabel("accuracy"),
            axes[0].legend(),
        )
        axes[1].bar(["greedy", "vote@16", "BoN@16"], [0.41, 0.58, 0.63])
        axes[1].set_ylabel("accuracy")
    else:
        fig, ax = new_figure()
        steps = np.arange(60)
        ax.plot(steps, 0.3 + 0.4 / (1 + np.exp(-(steps - 25) / 6)), label="GRPO")
        ax.plot(steps, 0.3 + 0.33 / (1 + np.exp(-(steps - 30) / 7)), label="PPO")
        ax.set_xlabel("RL step"), ax.set_ylabel("held-out accuracy"), ax.legend()
    save_fig(fig, path)


def make_run(root: Path) -> Path:
    """A run directory as `scalinglab run` writes it: summary.json + PNGs under stage dirs."""
    d = root / "run"
    for rel, kind in [
        ("pretrain/loss_vs_compute.png", "ladder"),
        ("pretrain/fit.png", "ladder"),
        ("rl/accuracy_vs_compute.png", "curve"),
        ("testtime/strategies.png", "panels"),
        ("tokenomics/cost.png", "curve"),
    ]:
        _plot(d / rel, kind)
    summary = {
        "preset": "smoke",
        "started": "2026-11-30T01:00:00+00:00",
        "finished": "2026-11-30T01:02:41+00:00",
        "seconds": 161.2,
        "machine": {"cpu": "x86_64", "cores": 2, "device": "cpu"},
        "stages": {
            "pretrain": {
                "title": "Pre-training ladder (countdown)",
                "headline": {"best_val_loss": 1.234567, "compute_flop": 3.2e15, "n_models": 6, "E": 0.91},
                "model": str(d / "pretrain" / "depth3"),
                "figures": [
                    {"path": "pretrain/loss_vs_compute.png", "caption": "Loss against compute " + EVIL},
                    {"path": "pretrain/fit.png", "caption": "Chinchilla fit with the measured points."},
                ],
                "table": [
                    {"depth": 1, "N": 200000, "D": 1e5, "loss": 2.31},
                    {"depth": 2, "N": 800000, "D": 1e5, "loss": 2.02},
                ]
                + [{"depth": 3, "N": 3100000, "D": 1e5 * k, "loss": 1.9 - 0.01 * k} for k in range(30)],
                "notes": "Six rungs.\n\nThe fit is ill-determined with so few sizes.",
            },
            "synth": {
                "title": "Synthetic data",
                "headline": {"acceptance_rate": 0.4375, "kept": 210},
                "model": None,
                "figures": [],
            },
            "sft": {"title": "SFT", "headline": {"held_out_accuracy": 0.3125}, "model": "sft/model", "figures": []},
            "reward_models": {
                "status": "failed",
                "error": "Traceback (most recent call last):\n  ...\nRuntimeError: PRM labels empty & <broken>",
            },
            "rl": {
                "title": "RL",
                "headline": {"grpo_accuracy": 0.5625, "ppo_accuracy": 0.5},
                "model": "rl/grpo",
                "figures": [
                    {"path": "rl/accuracy_vs_compute.png", "caption": "Accuracy vs RL compute."},
                    {"path": "rl/does_not_exist.png", "caption": "A figure that was never written."},
                ],
            },
            "testtime": {
                "title": "Test-time compute",
                "headline": {"vote@16": 0.58},
                "model": None,
                "figures": [{"path": "testtime/strategies.png", "caption": "Strategies."}],
            },
            # "tradeoff" missing: skipped
            "tokenomics": {
                "title": "Tokenomics",
                "headline": {"usd_per_answer_405b_h200": 0.0123},
                "model": None,
                "figures": [{"path": "tokenomics/cost.png", "caption": "Cost per answer."}],
            },
        },
        "laws": {
            "chinchilla": {
                "params": {"E": 0.91, "A": 12.5, "B": 410.0, "alpha": 0.34, "beta": 0.28},
                "ci95": {
                    "E": [0.85, 0.97],
                    "A": [8.1, 20.2],
                    "B": [300.0, 650.0],
                    "alpha": [0.3, 0.38],
                    "beta": [0.25, 0.31],
                },
                "success": True,
                "message": "converged",
                "n_points": 6,
            },
            "rl_sigmoid": {
                "params": {"A": 0.62, "B": 1.1, "C_mid": 4.5e13},
                "ci95": {"A": [None, None]},
                "success": True,
                "message": "no bootstrap",
            },
            "testtime_power": {"params": {"a": None}, "ci95": {}, "success": False, "message": "too few points"},
        },
    }
    (d / "summary.json").write_text(json.dumps(summary, indent=2))
    return d


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def page(run_dir):
    return build_report(run_dir).read_text()


def test_report_is_self_contained(run_dir, page):
    assert (run_dir / "report.html").is_file()
    # Nothing that a browser would fetch: no http(s) src/href/url(), no scripts, no <link>.
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"url\(", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    srcs = re.findall(r'<img src="([^"]*)"', page)
    assert len(srcs) == 5  # the 5 PNGs that exist; the missing one is a placeholder, not a broken <img>
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    # The embedded bytes are exactly the figure files, in page order.
    order = [
        "pretrain/loss_vs_compute.png",
        "pretrain/fit.png",
        "rl/accuracy_vs_compute.png",
        "testtime/strategies.png",
        "tokenomics/cost.png",
    ]
    for s, rel in zip(srcs, order):
        assert base64.b64decode(s.split(",", 1)[1]) == (run_dir / rel).read_bytes()
    # Size: base64 costs 4/3 of the PNG bytes; the rest (CSS, tables) stays small.
    png_bytes = sum((run_dir / rel).stat().st_size for rel in order)
    assert len(page.encode()) < png_bytes * 4 / 3 + 80_000
    # A CSP that forbids any fetch except data: images, as a second line of defence.
    assert "default-src 'none'; img-src data:" in page


def test_failed_and_skipped_stages_are_shown(page):
    sec = re.search(r'<section class="card" id="stage-reward_models">(.*?)</section>', page, re.S).group(1)
    assert '<span class="badge failed">failed</span>' in sec
    assert "RuntimeError: PRM labels empty &amp; &lt;broken&gt;" in sec
    sec = re.search(r'<section class="card" id="stage-tradeoff">(.*?)</section>', page, re.S).group(1)
    assert '<span class="badge skipped">skipped</span>' in sec and "not run" in sec
    # The summary table lists all 8 stages in pipeline order, with the failed one's last error line.
    ids = re.findall(r'<section class="card" id="stage-(\w+)"', page)
    assert ids == ["pretrain", "synth", "sft", "rl", "reward_models", "testtime", "tradeoff", "tokenomics"]
    assert '<span class="msg">RuntimeError: PRM labels empty &amp; &lt;broken&gt;</span>' in page
    # The missing figure is named in a placeholder.
    assert "figure not found: <code>rl/does_not_exist.png</code>" in page


def test_values_are_escaped(page):
    assert EVIL not in page
    assert "Loss against compute &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page


def test_summary_tiles_laws_and_tables(run_dir, page):
    # First headline entry of each ok stage becomes its tile.
    assert '<div class="value">1.235</div><div class="what">best val loss</div>' in page
    assert '<div class="value">0.4375</div><div class="what">acceptance rate</div>' in page
    # Law rows: estimate and 95% interval, Greek names; null intervals become a dash; failed fit flagged.
    assert '<td>α</td><td class="n">0.34</td><td class="n">[0.3, 0.38]</td>' in page
    assert '<td>B</td><td class="n">410</td><td class="n">[300, 650]</td>' in page
    assert '<td>A</td><td class="n">0.62</td><td class="n">—</td>' in page
    assert '<td>C_mid</td><td class="n">4.5×10<sup>13</sup></td>' in page
    laws = re.search(r'id="laws">(.*?)</section>', page, re.S).group(1)
    assert laws.count("badge failed") == 1 and "too few points" in laws
    # Headline numbers table and model path shown relative to the run directory.
    assert '<tr><th>compute flop</th><td class="n">3.2×10<sup>15</sup></td></tr>' in page
    assert "model <code>pretrain/depth3</code>" in page
    # 32-row stage table: 10 shown, 22 folded.
    assert "<summary>22 more rows</summary>" in page
    # Notes paragraphs.
    assert "<p>Six rungs.</p><p>The fit is ill-determined with so few sizes.</p>" in page
    assert "preset <b>smoke</b>" in page and "took <b>2 min 41 s</b>" in page


@pytest.mark.parametrize(
    "v, want",
    [
        (1234, "1,234"),
        (0.8125, "0.8125"),
        (1.234567, "1.235"),
        (12345.6, "12,346"),
        (0, "0"),
        (3.2e18, "3.2×10<sup>18</sup>"),
        (0.0001234, "1.23×10<sup>-4</sup>"),
        (-2.5e-5, "-2.5×10<sup>-5</sup>"),
        (10**9, "1×10<sup>9</sup>"),
        (True, "yes"),
        (float("nan"), "nan"),
    ],
)
def test_fmt_num(v, want):
    assert fmt_num(v) == want


def test_fmt_duration_and_time():
    assert fmt_duration(161.2) == "2 min 41 s"
    assert fmt_duration(3.4) == "3.4 s"
    assert fmt_duration(3725) == "1 h 02 min"
    assert fmt_duration(None) == "—"
    assert fmt_time(0) == "1970-01-01 00:00 UTC"
    assert fmt_time("2026-11-30T02:30:00+01:00") == "2026-11-30 01:30 UTC"
    assert fmt_time("yesterday") == "yesterday"


def test_resolve_run_dir(tmp_path, run_dir):
    assert resolve_run_dir(run_dir / "summary.json") == run_dir
    with pytest.raises(UserError, match="no such run directory"):
        resolve_run_dir(tmp_path / "nope")
    with pytest.raises(UserError, match="no summary.json"):
        resolve_run_dir(tmp_path)
    (tmp_path / "summary.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="expected a JSON object"):
        build_report(tmp_path)


def test_minimal_summary_renders(tmp_path):
    """A run that failed before any stage: every stage skipped, no laws, still a valid page."""
    (tmp_path / "summary.json").write_text(json.dumps({"preset": "cpu", "stages": {}}))
    page = build_report(tmp_path).read_text()
    assert page.count('<span class="badge skipped">skipped</span>') == 16  # summary table + 8 sections
    assert "No law was fitted in this run." in page and "<img" not in page


def test_a_stage_law_warning_reaches_the_page(tmp_path):
    """The pipeline's summary keeps a law's warnings, and the laws table shows them with the
    ill-determined badge (before, summary.json dropped them and the badge could never appear)."""
    from scalinglab.pipeline import _summary
    from scalinglab.pipeline.presets import PRESETS
    from scalinglab.pipeline.results import StageResult, law_record
    from scalinglab.report.html import render_laws

    law = {
        "name": "chinchilla",
        "params": {"E": 2.9, "A": 1e9, "B": 1e5, "alpha": 2.4, "beta": 0.9},
        "ci95": {"alpha": [0.9, 39.0]},
        "success": True,
        "message": "best of 243 starts",
        "warnings": ["the 95% interval of alpha (0.945, 39) spans a factor 41.3: the data do not pin it"],
    }
    stage = StageResult("Pre-training", {"fit": "ill-determined"}, law=law_record("chinchilla", law))
    summary = _summary(PRESETS["smoke"], {"pretrain": stage}, {}, 0.0, "2026-12-01T00:00:00")
    assert summary["laws"]["chinchilla"]["warnings"] == law["warnings"]
    html = render_laws(summary["laws"])
    assert '<span class="badge skipped">ill-determined</span>' in html and "do not pin it" in html
    clean = render_laws({"chinchilla": {**law, "warnings": []}})
    assert "ill-determined" not in clean and "badge ok" in clean
