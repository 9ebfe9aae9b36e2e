"""Rejection sampling: sample K solutions per problem, keep the ones a verifier accepts.

    scalinglab synth --task addition --model runs/A --n 200 --k 8 --out data/addition.jsonl --retry

This is the data step of STaR (Zelikman et al. 2022) and of rejection-sampling fine-tuning
(RFT, Yuan et al. 2023): the model's own samples, filtered by a functional verifier (the
task's `check`), become its next SFT set. K samples of a problem share one prefill of its
prompt. Correct samples of a problem are deduplicated on normalised text (whitespace runs
collapsed), as RFT does, so a confident model does not flood the set with copies.

Output: one JSONL row per kept sample (written atomically),

    {"id": "addition-s0-3/5", "task": "addition", "prompt": "47+85=?\\n", "answer": "132",
     "completion": "7+5+0=12\\n4+8+1=13\\nA: 132\\n", "steps": ["7+5+0=12\\n", ...],
     "correct": true, "meta": {"problem_id": "addition-s0-3", "sample_index": 5, "tokens": 28,
                               "attempt": 1, "finish_reason": "eos"}}

and a summary (returned, and written to FILE + ".summary.json"): acceptance rate (correct
samples / samples, before deduplication), kept, duplicates, problems with at least one kept
sample, verifier errors (`Verdict.error`: counted apart from wrong answers and never kept),
prompt and generated tokens and FLOPs (the engine's exact accounting) and the compute cost
of the data: tokens and FLOPs per kept sample.

Retry on failure (`retry=True`), a deviation from STaR: STaR's "rationalization" shows the
model the right answer; here the model sees its failed attempt and the verifier's reason
with the reference answer masked (so a retry cannot just copy it), then the prompt again:

    47+85=?
    7+5+0=12
    4+8+1=12
    A: 122
    # wrong: answered 122, expected ?
    47+85=?

Because the retry prompt *ends with the original prompt*, a small model trained only on the
task format still continues it with a fresh solution (and `# ...` is a comment for the code
task). Each wrong first attempt gets one retry; the summary reports how often it succeeds.
A kept retry row stores the original prompt (what SFT should train on) with meta.attempt 2.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

from scalinglab.engine import GenerationResult, SamplingParams
from scalinglab.errors import UserError
from scalinglab.runs.store import atomic_write_json, write_jsonl
from scalinglab.synth.sampler import Sampler
from scalinglab.tasks.base import Problem
from scalinglab.verify.verdict import Verdict

MASK = "?"  # what the reference answer is replaced by in a retry's reason


@dataclass(frozen=True)
class SynthConfig:
    k: int = 8  # samples per problem (they share one prefill)
    max_new_tokens: int = 0  # per sample; 0 = room for the task's longest worked solution
    temperature: float = 1.0  # sampling temperature (diversity is the point here)
    top_k: int = 0  # 0 = full vocabulary
    top_p: float = 1.0  # 1 = no nucleus truncation
    retry: bool = False  # re-prompt every wrong sample once with its failure and the reason
    dedup: bool = True  # drop correct samples whose normalised text repeats within a problem
    seed: int = 0  # sampling seed (the retry pass uses seed + 1)


def normalise(text: str) -> str:
    """The deduplication key: whitespace runs collapsed, ends stripped."""
    return " ".join(text.split())


def check_all(task, problems: Sequence[Problem], completions: Sequence[str]) -> list[Verdict]:
    """Verdicts for (problem, completion) pairs, batched when the task can (math pool)."""
    if hasattr(task, "check_batch"):
        return list(task.check_batch(list(problems), list(completions)))
    return [task.check(p, c) for p, c in zip(problems, completions)]


def retry_prompt(problem: Problem, completion: str, reason: str) -> str:
    """The failed attempt, the verifier's reason (reference masked), then the prompt again."""
    if problem.answer and problem.answer.strip():
        reason = reason.replace(problem.answer.strip(), MASK)
    reason = " ".join(reason.split())  # one line
    attempt = completion if completion.endswith("\n") else completion + "\n"
    return f"{problem.prompt}{attempt}# wrong: {reason}\n{problem.prompt}"


def _params(cfg: SynthConfig, task, problems: Sequence[Problem], n: int, seed: int) -> SamplingParams:
    if cfg.max_new_tokens:
        max_new = cfg.max_new_tokens
    else:
        from scalinglab.testtime.greedy import default_max_new_tokens

        max_new = default_max_new_tokens(task, problems)
    return SamplingParams(
        n=n,
        max_new_tokens=max_new,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        stop=tuple(task.stop),
        seed=seed,
    )


def _cost(results: Sequence[GenerationResult]) -> dict:
    keys = ("prompt_tokens", "generated_tokens", "prompt_flops", "generated_flops", "seconds")
    tot = {k: sum(getattr(r, k) for r in results) for k in keys}
    tot["tokens"] = tot["prompt_tokens"] + tot["generated_tokens"]
    tot["flops"] = tot["prompt_flops"] + tot["generated_flops"]
    return tot


def rejection_sample(
    task,
    problems: Sequence[Problem],
    sampler: Sampler,
    cfg: SynthConfig = SynthConfig(),
    progress: Callable[..., None] | None = None,
) -> tuple[list[dict], dict]:
    """Sample, verify, deduplicate; returns (kept rows, summary). See the module docstring."""
    if cfg.k < 1:
        raise UserError(f"k must be >= 1, got {cfg.k}")
    if not problems:
        raise UserError("no problems to sample")
    t0 = time.perf_counter()
    res = sampler([p.prompt for p in problems], _params(cfg, task, problems, cfg.k, cfg.seed))
    flat = [(pi, j, c) for pi, g in enumerate(res.generations) for j, c in enumerate(g.completions)]
    verdicts = check_all(task, [problems[pi] for pi, _, _ in flat], [c.text for _, _, c in flat])
    # (problem index, sample index, completion, attempt) of every correct sample, in order
    accepted = [(pi, j, c, 1) for (pi, j, c), v in zip(flat, verdicts) if v.correct]
    stats = {"correct": len(accepted), "errors": sum(v.error for v in verdicts)}
    stats["wrong"] = len(flat) - stats["correct"] - stats["errors"]
    results = [res]
    retry_stats: dict = {}
    if cfg.retry:
        failed = [(pi, j, c, v) for (pi, j, c), v in zip(flat, verdicts) if not v.correct and not v.error]
        retry_stats = {"retries": len(failed), "retry_correct": 0, "retry_errors": 0, "retry_success_rate": None}
        if failed:
            prompts = [retry_prompt(problems[pi], c.text, v.reason) for pi, _, c, v in failed]
            res2 = sampler(prompts, _params(cfg, task, problems, 1, cfg.seed + 1))
            results.append(res2)
            second = [g.completions[0] for g in res2.generations]
            v2 = check_all(task, [problems[pi] for pi, _, _, _ in failed], [c.text for c in second])
            accepted += [(pi, j, c, 2) for (pi, j, _, _), c, v in zip(failed, second, v2) if v.correct]
            retry_stats.update(
                retry_correct=sum(v.correct for v in v2),
                retry_errors=sum(v.error for v in v2),
                retry_success_rate=sum(v.correct for v in v2) / len(failed),
            )
    if progress:
        progress(len(problems), len(problems), **retry_stats)

    rows, seen = [], set()
    for pi, j, c, attempt in accepted:
        p = problems[pi]
        key = (pi, normalise(c.text))
        if cfg.dedup and key in seen:
            continue
        seen.add(key)
        rows.append(
            {
                "id": f"{p.id}/{j}" + ("r" if attempt == 2 else ""),
                "task": p.task,
                "prompt": p.prompt,
                "answer": p.answer,
                "completion": c.text,
                "steps": list(task.split_steps(c.text)),
                "correct": True,
                "meta": {
                    "problem_id": p.id,
                    "sample_index": j,
                    "tokens": len(c.token_ids),
                    "attempt": attempt,
                    "finish_reason": c.finish_reason,
                },
            }
        )
    cost = _cost(results)
    kept = len(rows)
    summary = {
        "task": getattr(task, "name", "?"),
        "problems": len(problems),
        "k": cfg.k,
        "samples": len(flat),
        **stats,
        "verifier_errors": stats["errors"] + retry_stats.get("retry_errors", 0),
        "acceptance_rate": stats["correct"] / len(flat),
        "verifier_error_rate": stats["errors"] / len(flat),
        "kept": kept,
        "duplicates": stats["correct"] + retry_stats.get("retry_correct", 0) - kept,
        "problems_with_kept": len({r["meta"]["problem_id"] for r in rows}),
        "problem_coverage": len({r["meta"]["problem_id"] for r in rows}) / len(problems),
        **{
            k: cost[k]
            for k in ("prompt_tokens", "generated_tokens", "tokens", "prompt_flops", "generated_flops", "flops")
        },
        "tokens_per_kept": cost["tokens"] / kept if kept else None,
        "generated_tokens_per_kept": cost["generated_tokens"] / kept if kept else None,
        "flops_per_kept": cost["flops"] / kept if kept else None,
        "generation_seconds": cost["seconds"],
        "seconds": time.perf_counter() - t0,
        **retry_stats,
    }
    return rows, summary


def write_synth(rows: Sequence[dict], summary: dict, out: str) -> dict:
    """Write the rows (JSONL) and OUT.summary.json, both atomically; returns the summary."""
    write_jsonl(out, rows)
    summary = {**summary, "out": str(out), "summary_file": f"{out}.summary.json"}
    atomic_write_json(f"{out}.summary.json", summary)
    return summary


def load_task_problems(
    task_name: str, n: int, seed: int, difficulty: int | None = None, problems_file: str | None = None
):
    """(task, problems): `n` seeded train-split problems from the task's generator (a math file:
    its train split), or the first n of a file (refused when it declares a test split)."""
    from scalinglab.tasks import get_task, load_problems
    from scalinglab.tasks.extra import math_file
    from scalinglab.tasks.split import draw, refuse_test

    if n < 1:
        raise UserError(f"--n must be >= 1, got {n}")
    if task_name == "math" and problems_file:
        task = math_file(problems_file)
        return task, draw(task, n, seed, difficulty, split="train")
    task = get_task(task_name)
    if problems_file:
        problems = load_problems(problems_file, default_task=task_name)
        refuse_test(problems[:n], problems_file)
        return task, problems[:n]
    return task, draw(task, n, seed, difficulty, split="train")
