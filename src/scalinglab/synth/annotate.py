"""Automatic process annotation: Math-Shepherd step labels from Monte-Carlo completions.

    scalinglab annotate --task addition --model runs/A --data data/addition.jsonl --m 8 --out data/prm.jsonl

Math-Shepherd (Wang et al. 2023, "Math-Shepherd: Verify and Reinforce LLMs Step-by-step
without Human Annotations"): a step is good if the solution can still be finished
correctly from it. For a solution cut into steps s_1..s_T (`task.split_steps`) and each
prefix `prompt + s_1 + ... + s_i`, sample M completions (the "completer"; the M samples of
one prefix share one prefill) and judge `s_1..s_i + completion` with the task's verifier:

    hard_i = 1 if any of the M completions reaches the right answer else 0   (HE)
    soft_i = (number that do) / M                                           (SE)

Deviations: (1) the last step is labelled by the verdict on the whole solution, not by
rollouts (there is nothing left to complete), so it costs no samples; (2) a rollout whose
verification failed (`Verdict.error`) is left out of the denominator, and a step whose M
rollouts all errored gets `null` labels rather than a silent 0; (3) the completer is the
model passed in (Math-Shepherd used a separate, stronger completer).

Input rows (JSONL): `prompt`, `answer`, and the solution in `completion` (rows written by
`scalinglab synth`) or `solution`; `steps` are used when present, otherwise the solution
is split with the task's `split_steps`; `meta` is passed to the verifier (e.g. the code
task's test cases). Output rows — exactly what the process reward model trains on, one
label per step, label i scoring the prefix that ends with step i:

    {"id": "addition-s0-3/5", "task": "addition", "prompt": "47+85=?\\n", "answer": "132",
     "steps": ["7+5+0=12\\n", "4+8+1=13\\n", "A: 132\\n"],
     "hard": [1, 1, 1], "soft": [0.75, 0.875, 1.0], "completion_correct": true,
     "meta": {"m": 8, "rollouts_correct": [6, 7, null], "rollout_errors": [0, 0, 0]}}

`hard` holds 0/1 ints, `soft` floats in [0, 1]; both may hold `null` (deviation 2).
`rollouts_correct[i]` is null for the last step (deviation 1), and its `rollout_errors`
entry is 1 when the verdict on the whole solution errored (its labels are then null). The
summary's `verifier_errors` counts every errored verdict: rollouts and whole solutions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

from scalinglab.engine import SamplingParams
from scalinglab.errors import UserError
from scalinglab.synth.rejection import check_all
from scalinglab.synth.sampler import Sampler
from scalinglab.tasks.base import Problem


@dataclass(frozen=True)
class AnnotateConfig:
    m: int = 8  # completions per step prefix (share one prefill)
    max_new_tokens: int = 0  # per completion; 0 = room for the task's longest worked solution
    temperature: float = 1.0  # the completer samples; greedy would make soft labels 0/1
    seed: int = 0


def rows_to_items(task, rows: Sequence[dict]) -> list[tuple[Problem, list[str]]]:
    """(problem, steps) per input row; a row without a solution is a UserError naming it."""
    items = []
    for i, r in enumerate(rows):
        rid = str(r.get("id", i))
        text = r.get("completion", r.get("solution"))
        if "prompt" not in r or "answer" not in r or text is None:
            raise UserError(f"data row {rid!r}: needs 'prompt', 'answer' and 'completion' (or 'solution')")
        steps = [str(s) for s in r["steps"]] if r.get("steps") else list(task.split_steps(str(text)))
        if not steps:
            raise UserError(f"data row {rid!r}: the solution has no steps")
        p = Problem(
            id=rid,
            task=str(r.get("task", getattr(task, "name", "custom"))),
            prompt=str(r["prompt"]),
            answer=str(r["answer"]),
            solution="".join(steps),
            steps=tuple(steps),
            meta=dict(r.get("meta") or {}),
        )
        items.append((p, steps))
    return items


def labels(correct: Sequence[int], valid: Sequence[int]) -> tuple[list[int | None], list[float | None]]:
    """Hard and soft estimates from per-step counts of correct and valid (non-error) rollouts."""
    hard = [None if v == 0 else int(c > 0) for c, v in zip(correct, valid)]
    soft = [None if v == 0 else c / v for c, v in zip(correct, valid)]
    return hard, soft


def annotate(
    task,
    rows: Sequence[dict],
    sampler: Sampler,
    cfg: AnnotateConfig = AnnotateConfig(),
    progress: Callable[..., None] | None = None,
) -> tuple[list[dict], dict]:
    """Label every step of every row; returns (output rows, summary). See the module docstring."""
    if cfg.m < 1:
        raise UserError(f"m must be >= 1, got {cfg.m}")
    t0 = time.perf_counter()
    items = rows_to_items(task, rows)
    # one prompt per non-final step prefix of every solution
    prefixes = [(ri, i) for ri, (_, steps) in enumerate(items) for i in range(1, len(steps))]
    prompts = [items[ri][0].prompt + "".join(items[ri][1][:i]) for ri, i in prefixes]
    final = check_all(task, [p for p, _ in items], ["".join(s) for _, s in items])
    cost = {"prompt_tokens": 0, "generated_tokens": 0, "prompt_flops": 0.0, "generated_flops": 0.0}
    counts: dict[tuple[int, int], tuple[int, int]] = {}
    errors = 0
    if prompts:
        if cfg.max_new_tokens:
            max_new = cfg.max_new_tokens
        else:
            from scalinglab.testtime.greedy import default_max_new_tokens

            max_new = default_max_new_tokens(task, [p for p, _ in items])
        params = SamplingParams(
            n=cfg.m, max_new_tokens=max_new, temperature=cfg.temperature, stop=tuple(task.stop), seed=cfg.seed
        )
        res = sampler(prompts, params)
        for k in cost:
            cost[k] = getattr(res, k)
        flat = [(pi, c) for pi, g in enumerate(res.generations) for c in g.completions]
        verdicts = check_all(
            task,
            [items[prefixes[pi][0]][0] for pi, _ in flat],
            ["".join(items[prefixes[pi][0]][1][: prefixes[pi][1]]) + c.text for pi, c in flat],
        )
        for (pi, _), v in zip(flat, verdicts):
            c, n = counts.get(prefixes[pi], (0, 0))
            counts[prefixes[pi]] = (c + v.correct, n + (not v.error))
            errors += v.error
        if progress:
            progress(len(items), len(items))
    out = []
    for ri, (p, steps) in enumerate(items):
        T = len(steps)
        corr = [counts.get((ri, i), (0, 0))[0] for i in range(1, T)]
        valid = [counts.get((ri, i), (0, 0))[1] for i in range(1, T)]
        f = final[ri]
        corr.append(int(f.correct))
        valid.append(0 if f.error else 1)
        hard, soft = labels(corr, valid)
        out.append(
            {
                "id": p.id,
                "task": p.task,
                "prompt": p.prompt,
                "answer": p.answer,
                "steps": steps,
                "hard": hard,
                "soft": soft,
                "completion_correct": bool(f.correct),
                "meta": {
                    "m": cfg.m,
                    "rollouts_correct": corr[:-1] + [None],
                    "rollout_errors": [cfg.m - v for v in valid[:-1]] + [int(f.error)],
                },
            }
        )
    labelled = [x for r in out for x in r["soft"] if x is not None]
    hard_all = [x for r in out for x in r["hard"] if x is not None]
    summary = {
        "task": getattr(task, "name", "?"),
        "rows": len(out),
        "steps": sum(len(r["steps"]) for r in out),
        "rollouts": len(prompts) * cfg.m,
        "m": cfg.m,
        "verifier_errors": errors + sum(f.error for f in final),
        "completions_correct": sum(r["completion_correct"] for r in out),
        "mean_soft": sum(labelled) / len(labelled) if labelled else None,
        "hard_positive_rate": sum(hard_all) / len(hard_all) if hard_all else None,
        **cost,
        "tokens": cost["prompt_tokens"] + cost["generated_tokens"],
        "flops": cost["prompt_flops"] + cost["generated_flops"],
        "seconds": time.perf_counter() - t0,
    }
    return out, summary
