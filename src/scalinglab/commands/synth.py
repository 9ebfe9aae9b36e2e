"""Synthetic-data commands: synth (rejection sampling), annotate (Math-Shepherd), judge."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from scalinglab.commands.common import JSON_OPT, emit, progress_bar
from scalinglab.commands.foundation import CHAT_OPT, SYSTEM_OPT
from scalinglab.config import set_help
from scalinglab.errors import UserError


def register(app: typer.Typer) -> None:
    app.command("synth")(synth_cmd)
    app.command("annotate")(annotate_cmd)
    app.command("judge")(judge_cmd)


def synth_cmd(
    task: str = typer.Option(..., help="Task whose verifier filters the samples (see docs/tasks.md)."),
    model: Path = typer.Option(
        ..., help="Model to sample from: run dir, Hugging Face dir, .gguf file or short name (smollm2-135m)."
    ),
    n: int = typer.Option(
        ..., help="Problems to sample (drawn from the task's generator, or the first N of --problems)."
    ),
    k: int = typer.Option(8, help="Samples per problem; the K samples of a prompt share one prefill."),
    out: Path = typer.Option(..., help="JSONL to write the kept samples to; the summary goes to OUT.summary.json."),
    problems: Optional[Path] = typer.Option(
        None, help="JSONL of problems ({prompt, answer, ...}) instead of the generator."
    ),
    retry: bool = typer.Option(
        False, help="Re-prompt each wrong sample once with its attempt and the verifier's reason."
    ),
    seed: int = typer.Option(0, help="Seed of the problem generator and of sampling."),
    difficulty: Optional[int] = typer.Option(None, help="Task difficulty knob (default: the task's own)."),
    temperature: float = typer.Option(1.0, help="Sampling temperature."),
    max_new_tokens: int = typer.Option(0, help="Tokens per sample (0: room for the task's longest worked solution)."),
    dedup: bool = typer.Option(True, help="Drop correct samples whose normalised text repeats within a problem."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help=set_help("synth", "--set top_p=0.95 --set top_k=50")),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    max_batch: int = typer.Option(64, help="Sequences decoded together."),
    chat: str = CHAT_OPT,
    system: Optional[str] = SYSTEM_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Rejection sampling: sample K solutions per problem, keep the verified ones, deduplicate.

    The summary (also written to OUT.summary.json) reports the acceptance rate, problems with at least one kept sample, verifier errors (apart from wrong answers), and the compute the data cost: prompt and generated tokens, FLOPs, and tokens per kept sample. With --retry, each wrong sample is re-prompted once with its attempt and the verifier's reason (reference answer masked); see docs/synth.md.

    Example: scalinglab synth --task addition --model runs/A --n 200 --k 8 --out data/add.jsonl --retry --json
    """
    from scalinglab.config import override
    from scalinglab.model.hf import resolve_model_dir
    from scalinglab.model.prompting import format_task
    from scalinglab.model.tokenizer import load_tokenizer
    from scalinglab.synth.rejection import SynthConfig, load_task_problems, rejection_sample, write_synth
    from scalinglab.synth.sampler import local_sampler

    if k < 1:
        raise UserError(f"--k must be >= 1, got {k}")
    if temperature < 0:
        raise UserError(f"--temperature must be >= 0, got {temperature}")
    t, probs = load_task_problems(task, n, seed, difficulty, str(problems) if problems else None)
    t, probs = format_task(t, probs, load_tokenizer(resolve_model_dir(model)), chat, system)  # chat template / few-shot
    cfg = override(
        SynthConfig(k=k, max_new_tokens=max_new_tokens, temperature=temperature, retry=retry, dedup=dedup, seed=seed),
        set_ or [],
    )
    with progress_bar(f"synth {task}") as bar:
        sampler = local_sampler(str(model), device, max_batch, progress=bar)
        rows, summary = rejection_sample(t, probs, sampler, cfg)
    summary = write_synth(rows, summary, str(out))
    emit(
        summary,
        as_json,
        human=_human(
            summary,
            [
                "samples",
                "acceptance_rate",
                "kept",
                "problems_with_kept",
                "errors",
                "tokens",
                "tokens_per_kept",
                "flops_per_kept",
                "retry_success_rate",
                "out",
            ],
        ),
    )


def annotate_cmd(
    task: str = typer.Option(..., help="Task whose verifier judges the rollouts."),
    model: Path = typer.Option(..., help="Run directory or Hugging Face model directory used as the completer."),
    data: Path = typer.Option(
        ..., help="JSONL of solutions ({prompt, answer, completion|solution, steps?}), e.g. from synth."
    ),
    out: Path = typer.Option(..., help="JSONL to write {id, prompt, steps, hard, soft, completion_correct} rows to."),
    m: int = typer.Option(8, help="Completions per step prefix (they share one prefill)."),
    seed: int = typer.Option(0, help="Sampling seed."),
    temperature: float = typer.Option(1.0, help="Completer temperature."),
    max_new_tokens: int = typer.Option(
        0, help="Tokens per completion (0: room for the task's longest worked solution)."
    ),
    limit: int = typer.Option(0, help="Annotate only the first LIMIT rows (0: all)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    max_batch: int = typer.Option(64, help="Sequences decoded together."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help=set_help("annotate", "--set m=16")),
    as_json: bool = JSON_OPT,
) -> None:
    """Math-Shepherd process labels: for each step prefix, M completions; hard = any correct, soft = fraction.

    Example: scalinglab annotate --task addition --model runs/A --data data/add.jsonl --m 8 --out data/prm.jsonl
    """
    from scalinglab.config import override
    from scalinglab.runs.store import atomic_write_json, read_jsonl, write_jsonl
    from scalinglab.synth.annotate import AnnotateConfig, annotate
    from scalinglab.synth.sampler import local_sampler
    from scalinglab.tasks import get_task

    if m < 1:
        raise UserError(f"--m must be >= 1, got {m}")
    if limit < 0:
        raise UserError(f"--limit must be >= 0 (0: all rows), got {limit}")
    t = get_task(task)
    rows = read_jsonl(data)
    rows = rows[:limit] if limit > 0 else rows
    if not rows:
        raise UserError(f"{data}: no rows to annotate")
    with progress_bar(f"annotate {task}") as bar:
        sampler = local_sampler(str(model), device, max_batch, progress=bar)
        labelled, summary = annotate(
            t,
            rows,
            sampler,
            override(
                AnnotateConfig(m=m, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed), set_ or []
            ),
        )
    write_jsonl(out, labelled)
    summary = {**summary, "out": str(out), "summary_file": f"{out}.summary.json"}
    atomic_write_json(f"{out}.summary.json", summary)
    emit(
        summary,
        as_json,
        human=_human(
            summary,
            [
                "rows",
                "steps",
                "rollouts",
                "mean_soft",
                "hard_positive_rate",
                "verifier_errors",
                "tokens",
                "seconds",
                "out",
            ],
        ),
    )


def judge_cmd(
    input: Path = typer.Option(
        ..., "--input", "-i", help="JSONL: {id, question|prompt, candidate|completion, reference|answer?}."
    ),
    model: List[Path] = typer.Option(
        ..., "--model", help="A judge model (repeat for a chorus): run dir or Hugging Face dir."
    ),
    rubric: str = typer.Option(
        "", help="Grading rubric text, or @FILE to read it from a file (default: answer must be correct)."
    ),
    rule: str = typer.Option("majority", help="Vote aggregation: majority, mean (mean score >= 0.5) or unanimous."),
    no_reference: bool = typer.Option(False, "--no-reference", help="Hide the reference answer from the judges."),
    max_new_tokens: int = typer.Option(32, help="Tokens per judge reply."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    as_json: bool = JSON_OPT,
) -> None:
    """LLM-as-judge: a chorus of models grades each candidate (VERDICT/SCORE), votes aggregated.

    Each judge replies 'VERDICT: PASS|FAIL' and 'SCORE: 0-10'; replies that cannot be parsed abstain; an undecided candidate (tie, all abstained) is counted apart.

    Example: scalinglab judge -i cands.jsonl --model runs/A --model runs/B --json
    """
    from scalinglab.synth.judge import judge_file
    from scalinglab.verify.judge import AGGREGATORS, DEFAULT_RUBRIC

    if rule not in AGGREGATORS:
        raise UserError(f"--rule {rule!r} unknown (known: {', '.join(AGGREGATORS)})")
    if rubric.startswith("@"):
        p = Path(rubric[1:])
        if not p.exists():
            raise UserError(f"--rubric {rubric}: no such file")
        rubric = p.read_text()
    with progress_bar("loading judges") as bar:
        res = judge_file(
            [str(x) for x in model],
            input,
            rubric or DEFAULT_RUBRIC,
            rule,
            device,
            max_new_tokens,
            use_reference=not no_reference,
            progress=bar,
        )
    emit(
        res,
        as_json,
        human=_human(
            res, ["candidates", "passed", "failed", "undecided", "pass_rate", "abstention_rate", "mean_agreement"]
        ),
    )


def _human(s: dict, keys: list[str]) -> str:
    return "\n".join(
        f"{k:>20}: {s[k]:.4g}" if isinstance(s.get(k), float) else f"{k:>20}: {s.get(k)}" for k in keys if k in s
    )
