"""`scalinglab run`: the whole pipeline, then the report."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from scalinglab.commands.common import JSON_OPT, emit, progress_group


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)


def run_cmd(
    preset: str = typer.Option(
        "cpu",
        help="smoke (a few minutes; what the tests run), cpu (default: models that clearly learn, "
        "about 30 min on 2 cores), gpu (bigger; uses CUDA when present) or real (SmolLM2-135M-Instruct: no ladder; "
        "base eval on a reasoning-gym task and GSM8K, rejection-sampled SFT, GRPO, test-time, tokenomics).",
    ),
    out: Path = typer.Option(
        Path("runs/main"), help="Run directory: one sub-directory per stage, summary.json, report.html."
    ),
    resume: bool = typer.Option(False, help="Continue a stopped run: finished stages are skipped."),
    set_: Optional[List[str]] = typer.Option(
        None,
        "--set",
        help="Change the preset, repeatable: FIELD=VALUE sets a preset field (--set grpo_steps=50; every field: "
        "`scalinglab config show run --preset cpu`), RECIPE.FIELD=VALUE a field of a stage's config "
        "(--set grpo.lr=3e-4 --set eval.top_p=0.95; RECIPE is synth, sft, grpo, ppo, reward-model or eval; "
        "fields: `scalinglab config show RECIPE`). Checked before any work; --resume needs the same ones.",
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """o1 in miniature: pre-training ladder, synthetic data, SFT, GRPO and PPO, reward models on
    the RL policy's samples, test-time compute, the compute trade-off and tokenomics, then DIR/report.html.

    With --preset real the job starts from a pretrained model instead: its base accuracy on two real
    task families, rejection-sampled SFT, GRPO, held-out gains with 95% intervals, test-time curves and
    tokenomics of that model.

    Example: scalinglab run --preset smoke --out runs/smoke
    Example: scalinglab run --set grpo_steps=50 --set grpo.advantage=center --out runs/center
    """
    from scalinglab.pipeline import run_pipeline

    with progress_group() as progress:  # one live display; each piece of work adds its own bar
        summary = run_pipeline(preset, str(out), resume=resume, progress=progress, sets=set_ or ())
    lines = [
        f"[bold]{s.get('title', name)}[/bold]: "
        + ", ".join(
            f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}" for k, v in (s.get("headline") or {}).items()
        )
        for name, s in summary["stages"].items()
    ]
    emit(summary, as_json, human="\n".join(lines) + f"\n\nreport: {summary.get('report')}")
