"""Test-time compute command: `scalinglab eval` (accuracy against inference compute)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from scalinglab.commands.common import JSON_OPT, emit, progress_bar
from scalinglab.commands.foundation import CHAT_OPT, DTYPE_OPT, MODEL_HELP, SYSTEM_OPT
from scalinglab.errors import UserError
from scalinglab.tasks.seeds import EVAL_SEED


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)


def parse_ns(text: str) -> tuple[int, ...]:
    """`1,2,4,16` -> (1, 2, 4, 16); a bad list is a UserError naming it."""
    try:
        ns = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"--n {text!r}: expected comma-separated integers such as 1,2,4,8") from None
    if not ns or min(ns) < 0:
        raise UserError(f"--n {text!r}: expected non-negative integers such as 1,2,4,8")
    return ns


def eval_cmd(
    model: Path = typer.Option(..., help=MODEL_HELP),
    task: str = typer.Option("arithmetic", help="Task name (see `scalinglab tasks`); judges the answers."),
    problems: Optional[Path] = typer.Option(
        None, help="JSONL of problems (id, prompt, answer); default: generate them."
    ),
    seed: int = typer.Option(EVAL_SEED, help="Generator seed of the problems when --problems is not given."),
    num_problems: Optional[int] = typer.Option(
        None,
        help="Problems to evaluate: without --problems, this many distinct problems of the task's evaluation split (default 100); with --problems, the file's first N (default: all, like lm-eval's --limit).",
    ),
    difficulty: int = typer.Option(0, help="Task difficulty of generated problems (0 = the task's default)."),
    settings: list[str] = typer.Option(
        [],
        "--set",
        help="Task setting KEY=VALUE, repeatable (e.g. --set min_terms=2 for rg:basic_arithmetic; `scalinglab tasks`).",
    ),
    strategy: str = typer.Option("majority", help="greedy | sample | majority | best-of-n | weighted | beam | budget."),
    n: str = typer.Option(
        "1,2,4,8,16", help="Budgets: samples per problem (beam: candidates per step; budget: thinking tokens)."
    ),
    verifier: str = typer.Option(
        "functional", help="functional (task checker, oracle) | orm | prm, for best-of-n, weighted and beam."
    ),
    reward_model: Optional[Path] = typer.Option(
        None, help="Reward model directory (from `scalinglab train reward-model`) for orm/prm."
    ),
    aggregation: str = typer.Option("", help="PRM step aggregation: min | prod | last (default min; last for beam)."),
    temperature: float = typer.Option(1.0, help="Sampling temperature."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling mass."),
    max_new_tokens: int = typer.Option(0, help="Tokens per sample (0 = room for the task's longest worked solution)."),
    sample_seed: int = typer.Option(0, help="Seed of the sampler."),
    max_batch: int = typer.Option(64, help="Sequences decoded together."),
    dtype: str = DTYPE_OPT,
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    out: Optional[Path] = typer.Option(
        None, help="Run directory to write (summary.json, metrics.jsonl, accuracy_vs_flops.png)."
    ),
    chat: str = CHAT_OPT,
    system: Optional[str] = SYSTEM_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Accuracy against test-time compute for one strategy over budgets n.

    Strategies: greedy (the baseline); sample (n samples, accuracy per sample, pass@k = coverage); majority (self-consistency vote over answers); best-of-n (the verifier's pick); weighted (reward-weighted vote); beam (step-level search, PRM-scored, or roll-out-scored with --verifier functional); budget (n = thinking-token cap, then the answer is forced with 'A: ').

    Sampling strategies draw once with the largest n and score each smaller n on the first n samples; each point reports the tokens and FLOPs that n alone costs. The functional verifier uses the reference answer (an oracle).

    Example: scalinglab eval --model runs/A --task arithmetic --strategy majority --n 1,4,16 --json
    """
    from scalinglab.tasks import get_task, load_problems, parse_settings
    from scalinglab.testtime.evaluate import EvalConfig

    cfg = EvalConfig(  # checks --strategy, --verifier, --aggregation and --dtype before any work
        strategy=strategy,
        ns=parse_ns(n),
        verifier=verifier,
        aggregation=aggregation,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        seed=sample_seed,
        max_batch=max_batch,
        dtype=dtype,
    )
    if verifier in ("orm", "prm") and reward_model is None and strategy in ("best-of-n", "weighted", "beam"):
        raise UserError(f"--verifier {verifier} needs --reward-model DIR")
    from scalinglab.engine.sampling import check_sampling
    from scalinglab.model.hf import resolve_model_dir

    check_sampling(
        True,
        temperature=temperature,
        top_p=top_p,
        max_batch=max_batch,
        **({"max_new_tokens": max_new_tokens} if max_new_tokens else {}),
    )
    resolve_model_dir(model)  # a bad --model fails before any work (and a .gguf is converted now, once)
    t = get_task(task, parse_settings(settings))
    from scalinglab.tasks.split import draw

    # without a file: the task's evaluation split only (a file is evaluated as given)
    if num_problems is not None and num_problems < 1:
        raise UserError(f"--num-problems {num_problems}: must be at least 1")
    if problems:
        probs = load_problems(problems, default_task=task, task=t)[:num_problems]
    else:
        probs = draw(t, num_problems or 100, seed, difficulty or None, split="eval")
    summary = run_eval(
        model, t, probs, cfg, reward_model=reward_model, device=device, out=out, chat=chat, system=system
    )
    emit(summary, as_json, human=_human(summary))


def run_eval(
    model: Path,
    task,
    problems,
    cfg,
    reward_model: Path | None = None,
    device: str = "auto",
    out: Path | None = None,
    chat: str = "auto",
    system: str | None = None,
) -> dict:
    """Load the model (and reward model), format the prompts for it (chat template or few-shot),
    evaluate, and with `out` write a run directory."""
    import contextlib
    import dataclasses

    import torch

    from scalinglab.device import pick_device
    from scalinglab.engine.steps import decode_dtypes
    from scalinglab.model.hf import load_model
    from scalinglab.model.prompting import PromptFormat, format_task
    from scalinglab.runs import Run, checkpoint
    from scalinglab.testtime.best_of_n import load_reward_model
    from scalinglab.testtime.evaluate import evaluate, plot

    dev = pick_device(device)
    m, tok = load_model(model, device=dev, dtype=decode_dtypes(cfg.dtype, dev)[0])
    task, problems = format_task(task, problems, tok, chat, system)
    run = (
        Run.create(
            out,
            "eval",
            {
                **dataclasses.asdict(cfg),
                "model": str(model),
                "task": task.name,
                "reward_model": str(reward_model) if reward_model else None,
                "problems": len(problems),
                **PromptFormat(tok, chat, system).describe(),
            },
        )
        if out
        else None
    )
    # with --out, a failure, Ctrl-C or full disk is recorded in runs.sqlite and a run with nothing in it is removed
    with checkpoint.guard(run) if run is not None else contextlib.nullcontext():
        rm = load_reward_model(reward_model, dev) if reward_model and cfg.verifier != "functional" else None
        with torch.no_grad(), progress_bar(f"eval {cfg.strategy}") as bar:
            summary = evaluate(m, tok, task, problems, cfg, reward_model=rm, progress=bar)
        summary["chat"] = PromptFormat(tok, chat, system).chat
        if run is not None:
            for p in summary["points"]:
                run.log(p)
            summary["figure"] = str(plot(summary, run.path / "accuracy_vs_flops.png"))
            run.finish(summary)
    return summary


def _human(s: dict) -> str:
    rows = [
        f"{s['task']} · {s['strategy']} · {s['problems']} problems",
        f"{'n':>5} {'accuracy':>9} {'pass@k':>7} {'prompt tok':>11} {'gen tok':>9} {'FLOPs':>10}",
    ]
    rows += [
        f"{p['n']:>5} {p['accuracy']:>9.3f} {p['pass_at_k']:>7.3f} {p['prompt_tokens']:>11} {p['generated_tokens']:>9} {p['flops']:>10.3g}"
        for p in s["points"]
    ]
    if s.get("decode") and s["decode"].get("tokens_per_s"):
        d = s["decode"]
        rows.append(
            f"decode: {d['generated_tokens']} tokens in {d['seconds']:.1f} s ({d['tokens_per_s']:.0f} tok/s, "
            f"up to {d['max_batch']} sequences at once, {d['max_new_tokens']} new tokens at most)"
        )
    if s.get("figure"):
        rows.append(f"figure: {s['figure']}")
    return "\n".join(rows)
