"""The main job, `scalinglab run`: o1 in miniature, end to end, then the report.

    scalinglab run --preset smoke|cpu|gpu --out DIR [--resume]

Stages run in order (`stages.py`), each a library call a user could also make alone:
the pre-training law (an IsoFLOP ladder on text, predict-then-train) and the task's models →
rejection-sampled synthetic data → SFT → GRPO and
PPO → ORM and PRM on the RL policy's samples → test-time strategies → the training vs
test-time trade-off → tokenomics → `DIR/report.html`. A finished stage leaves `DIR/<stage>/stage.json`; `--resume` skips those,
and Ctrl-C or a crash never touches them; an unfinished stage restarts from scratch (the
ladders keep their finished rungs). A stage that fails stops the run there. `DIR/summary.json` holds every headline number, each
stage's model path and the run's `status`: running, finished (with the `finished` time),
failed or interrupted (Ctrl-C or SIGTERM; no `finished` time). One process at a time
works in DIR (`DIR/.lock`).

Each stage returns a `StageResult` (`results.py`); `_summary` writes them to summary.json, whose
fields docs/report.md describes.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

from scalinglab.errors import UserError
from scalinglab.pipeline import stages
from scalinglab.pipeline.presets import Preset, configure
from scalinglab.pipeline.results import StageResult
from scalinglab.runs.checkpoint import sigterm_as_interrupt
from scalinglab.runs.store import DirLock, atomic_write_json, atomic_write_text, dumps

STAGES: list[tuple[str, Callable]] = [
    ("pretrain", stages.pretrain),
    ("synth", stages.synth),
    ("sft", stages.sft),
    ("rl", stages.rl),
    ("reward_models", stages.reward_models),
    ("testtime", stages.testtime),
    ("tradeoff", stages.tradeoff),
    ("tokenomics", stages.tokenomics),
]


def stages_for(p: Preset) -> list[tuple[str, Callable]]:
    """The stages of a preset: from a pretrained model (`p.model`, pipeline/real.py) or from the ladder."""
    if p.model:
        from scalinglab.pipeline import real

        return real.STAGES
    return STAGES


def get_preset(name: str, sets: Sequence[str] = ()) -> Preset:
    """Preset `name` with `run --set` overrides (presets.configure), its device resolved."""
    p = configure(name, sets)
    if p.device == "auto":
        from dataclasses import replace

        import torch

        p = replace(p, device="cuda" if torch.cuda.is_available() else "cpu")
    return p


def _summary(
    preset: Preset,
    records: dict[str, StageResult],
    failed: dict[str, str],
    t0: float,
    started: str,
    status: str = "running",
) -> dict:
    """summary.json: the finished stages' results, the failed or interrupted one, every fitted law."""
    st = {name: r.summary_entry() for name, r in records.items()}
    st.update(
        {
            name: {"status": "interrupted" if err == "interrupted" else "failed", "error": err}
            for name, err in failed.items()
        }
    )
    laws = {r.law.name: r.law.to_dict() for r in records.values() if r.law}
    return {
        "preset": preset.name,
        "task": preset.task,
        "status": status,
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S") if status == "finished" else None,
        "seconds": time.time() - t0,
        "machine": f"{os.cpu_count()}-core {platform.machine()}",
        "stages": st,
        "laws": laws,
        "models": {name: r.model for name, r in records.items()},
        "heldout_overlap": stages.heldout_overlap(records),
    }  # evaluation problems seen in training, all stages (0)


def results_markdown(summary: dict) -> str:
    """The run's headline numbers as a Markdown table (what the README shows)."""

    def fmt(v) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) >= 1e4 or abs(v) < 1e-2 else f"{v:.3f}"
        return str(v)

    lines = [
        f"Preset `{summary['preset']}`, task `{summary['task']}`, {summary['machine']}, "
        f"{summary['seconds'] / 60:.1f} min, finished {summary['finished']}.",
        "",
        "| stage | result |",
        "|---|---|",
    ]
    for name, st in summary["stages"].items():
        if st.get("status") == "failed":
            lines.append(f"| {name} | failed: {st.get('error')} |")
            continue
        items = "; ".join(f"{k}: {fmt(v)}" for k, v in (st.get("headline") or {}).items())
        lines.append(f"| {st.get('title', name)} | {items} |")
    return "\n".join(lines) + "\n"


def run_pipeline(
    preset: str = "cpu",
    out: str = "runs/main",
    resume: bool = False,
    progress: Callable[[str], Callable[..., None]] | None = None,
    sets: Sequence[str] = (),
) -> dict:
    """Run every stage (or resume the unfinished ones); returns the summary written to OUT/summary.json.

    `sets` are `run --set` overrides (`FIELD=VALUE` of the preset, `RECIPE.FIELD=VALUE` of a stage's
    config); a resumed run must be given the same ones."""
    p = get_preset(preset, sets)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise UserError(f"--out {root}: is a file, not a directory")
    if root.exists() and any(f.name != ".lock" for f in root.iterdir()) and not resume:
        raise UserError(f"{root}: not empty (use --resume to continue that run, or another --out)")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {root}: cannot create the run directory ({e.strerror or e})") from None
    lock = DirLock(root)  # one `scalinglab run` per directory; a second one is told who holds it
    try:
        with sigterm_as_interrupt():  # a plain `kill` is recorded as an interruption, like Ctrl-C
            return _run(p, root, resume, progress)
    finally:
        lock.release()


def _run(p: Preset, root: Path, resume: bool, progress) -> dict:
    cfg_path = root / "preset.json"
    if cfg_path.exists():
        saved, now = json.loads(cfg_path.read_text()), json.loads(dumps(p.__dict__))
        if saved.get("name") != p.name:
            raise UserError(f"{root}: was started with preset {saved.get('name')!r}, not {p.name!r}")
        changed = [k for k in now if k in saved and saved[k] != now[k]]
        if changed:
            k = changed[0]
            raise UserError(
                f"{root}: was started with {k}={saved[k]!r}, not {now[k]!r} "
                "(resume with the --set overrides it was started with)"
            )
    atomic_write_json(cfg_path, p.__dict__)
    ctx = stages.Context(out=root, preset=p, progress=progress or (lambda name: lambda *a, **k: None))
    t0, started = time.time(), time.strftime("%Y-%m-%dT%H:%M:%S")
    if (root / "summary.json").exists():  # a resumed run: its time so far and its start carry over
        before = json.loads((root / "summary.json").read_text())
        t0, started = t0 - float(before.get("seconds", 0.0)), before.get("started", started)
    failed: dict[str, str] = {}
    for name, fn in stages_for(p):
        marker = root / name / "stage.json"
        if marker.exists():
            ctx.records[name] = StageResult.from_record(json.loads(marker.read_text()))
            continue
        if (
            name != "pretrain" and (root / name).exists()
        ):  # an unfinished stage restarts (the ladder reuses finished rungs)
            shutil.rmtree(root / name)
        try:
            result = fn(ctx)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: finished stages are kept, the run says it was interrupted
            failed[name] = "interrupted"
            atomic_write_json(
                root / "summary.json", _summary(p, ctx.records, failed, t0, started, status="interrupted")
            )
            raise
        except UserError as e:
            failed[name] = str(e)
            atomic_write_json(root / "summary.json", _summary(p, ctx.records, failed, t0, started, status="failed"))
            raise
        # any other error is recorded in summary.json, then the run stops: no later stage runs (--resume retries it)
        except Exception as e:
            failed[name] = f"{type(e).__name__}: {e}"
            atomic_write_json(root / "summary.json", _summary(p, ctx.records, failed, t0, started, status="failed"))
            raise
        atomic_write_json(marker, json.loads(dumps(result.to_record())))
        ctx.records[name] = result
        atomic_write_json(root / "summary.json", _summary(p, ctx.records, failed, t0, started))
    summary = _summary(p, ctx.records, failed, t0, started, status="finished")
    atomic_write_json(root / "summary.json", summary)
    atomic_write_text(root / "results.md", results_markdown(summary))
    try:
        from scalinglab.report import build_report
    except ImportError:
        summary["report"] = None
    else:
        summary["report"] = str(build_report(root))
    atomic_write_json(root / "summary.json", summary)
    return summary
