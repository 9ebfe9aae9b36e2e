"""The figures of the post-training stages, drawn from what the stages wrote or kept.

    synth_acceptance(rows, summary, path)   problems with an accepted sample against samples per problem
    training_loss(metrics_jsonl, path)       SFT: training loss against steps
    rl_curves({"GRPO": metrics_jsonl}, path) RL: reward, KL, response length and loss against steps
    roc(scores, labels, path)                reward models: ROC curves on the held-out samples
    coverage_curve(points, path)             majority vote and pass@k against samples per problem

Each returns the path it saved (a PNG, `report.figures.save_fig`); the stages pair it with a
caption. Every function reads numbers and draws them: none changes a number the stage reports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from matplotlib.ticker import MaxNLocator

from scalinglab.report.figures import new_figure, save_fig

SFT_CAPTION = "SFT training loss (mean cross-entropy per answer token) against optimizer steps."
RL_CAPTION = (
    "RL training curves against steps: mean reward of the sampled responses, KL to the reference "
    "policy, mean response length and the training loss. Gaps are steps with no update (every "
    "group's rewards were equal, so no advantage)."
)
COVERAGE_CAPTION = (
    "Majority-vote accuracy and pass@k (a problem counts when any of its k samples is right) of the "
    "{model} on held-out {task} problems, against samples per problem."
)
RL_PANELS = (("reward", "reward"), ("kl", "KL to reference"), ("response_length", "response length (tokens)"))


def read_metrics(path: str | Path) -> list[dict]:
    """The rows of a run's metrics.jsonl (one per logged step)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of one metric; a missing or null value is NaN (a gap in the line)."""
    xs = [r.get("step", i + 1) for i, r in enumerate(rows)]
    ys = [float("nan") if r.get(key) is None else float(r[key]) for r in rows]
    return xs, ys


def synth_acceptance(rows: list[dict], summary: dict, path: Path) -> Path:
    """Fraction of problems with an accepted sample among their first k samples, k = 1..K.

    Exact from the kept rows: deduplication keeps each problem's first correct sample, so its
    `sample_index` is where that problem was first accepted (retries, attempt 2, are left out).
    """
    k_max, n = summary["k"], summary["problems"]
    first: dict[str, int] = {}
    for r in rows:
        meta = r["meta"]
        if meta.get("attempt", 1) == 1:
            first[meta["problem_id"]] = min(first.get(meta["problem_id"], k_max), meta["sample_index"])
    ks = list(range(1, k_max + 1))
    covered = [sum(j < k for j in first.values()) / n for k in ks]
    fig, ax = new_figure()
    ax.plot(ks, covered, "o-", label="problems with ≥1 accepted sample")
    ax.axhline(summary["acceptance_rate"], color="C1", ls="--", label="all samples accepted (of k)")
    ax.set_xlabel("samples per problem k")
    ax.set_ylabel("fraction")
    ax.set_ylim(0, max(1e-3, *covered, summary["acceptance_rate"]) * 1.1)
    ax.set_xticks(ks)
    ax.legend()
    return save_fig(fig, path)


def training_loss(metrics: Path, path: Path) -> Path:
    xs, ys = _series(read_metrics(metrics), "loss")
    fig, ax = new_figure()
    ax.plot(xs, ys, "o-", ms=3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    return save_fig(fig, path)


def rl_curves(runs: dict[str, Path], path: Path) -> Path:
    """Reward, KL, response length and loss against steps, one line per algorithm, 2×2 panels."""
    fig, axes = new_figure(2, 2)
    panels = RL_PANELS + (("loss", "training loss"),)
    for name, metrics in runs.items():
        rows = read_metrics(metrics)
        for ax, (key, _) in zip(axes.flat, panels):
            ax.plot(*_series(rows, key), "o-", ms=3, label=name)
    for ax, (_, ylabel) in zip(axes.flat, panels):
        ax.set_ylabel(ylabel)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.flat[0].legend()
    return save_fig(fig, path)


def roc_curve(scores: Sequence[float], labels: Sequence[bool]) -> tuple[list[float], list[float]]:
    """(false positive rates, true positive rates) as the threshold falls through the scores.

    Tied scores move both rates at once (one diagonal segment), so the area under the points is
    the AUC with ties counted as half. Empty lists when either class is absent.
    """
    pos = sum(bool(y) for y in labels)
    neg = len(labels) - pos
    if not pos or not neg:
        return [], []
    pairs = sorted(zip(scores, labels), key=lambda t: -t[0])
    fpr, tpr, tp, fp = [0.0], [0.0], 0, 0
    for i, (s, y) in enumerate(pairs):
        tp, fp = tp + bool(y), fp + (not y)
        if i + 1 == len(pairs) or pairs[i + 1][0] != s:
            fpr.append(fp / neg)
            tpr.append(tp / pos)
    return fpr, tpr


def roc(scores: dict[str, list[float]], labels: list[bool], path: Path) -> Path:
    fig, ax = new_figure()
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    for name, s in scores.items():
        fpr, tpr = roc_curve(s, labels)
        if fpr:
            area = sum((x1 - x0) * (y0 + y1) / 2 for x0, x1, y0, y1 in zip(fpr, fpr[1:], tpr, tpr[1:]))
            ax.plot(fpr, tpr, "-", label=f"{name} (AUC {area:.3f})")
    if not any(roc_curve(s, labels)[0] for s in scores.values()):
        pos = sum(labels)
        ax.text(0.5, 0.5, f"no ROC: {pos} correct and {len(labels) - pos} wrong held-out samples", ha="center")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positive rate (wrong answers scored above the threshold)")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    return save_fig(fig, path)


def roc_caption(labels: list[bool]) -> str:
    pos = sum(labels)
    text = (
        f"ROC curves of the outcome (ORM) and process (PRM, min over steps) reward models on {len(labels)} "
        f"held-out samples of the RL policy ({pos} correct): how well each score separates right answers "
        "from wrong ones; the dotted diagonal is chance."
    )
    if not pos or pos == len(labels):
        text += " Here one class is empty, so there is no curve (the AUC is undefined)."
    return text


def coverage_curve(points: list[dict], path: Path) -> Path:
    fig, ax = new_figure()
    ns = [q["n"] for q in points]
    ax.plot(ns, [q["accuracy"] for q in points], "o-", label="majority vote")
    ax.plot(ns, [q["pass_at_k"] for q in points], "k--", lw=1, label="pass@k (coverage)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("samples per problem")
    ax.set_ylabel("accuracy")
    ax.legend()
    return save_fig(fig, path)
