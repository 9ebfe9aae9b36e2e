"""Greedy decoding accuracy: the baseline every other strategy is compared against."""

from __future__ import annotations

from scalinglab.engine import Engine, SamplingParams


def default_max_new_tokens(task, problems, tokenizer=None) -> int:
    """The task's own answer room (`task.max_new_tokens`, e.g. GSM8K's 256 as in lm-eval-harness),
    else room for the longest worked solution among `problems` (or a task sample), plus slack:
    1.5 × its length in `tokenizer`'s tokens (characters without one; the same for the
    character-level tokenizer) + 16."""
    if getattr(task, "max_new_tokens", 0):
        return int(task.max_new_tokens)
    from scalinglab.tasks.split import draw, split_of

    # no worked solution among them: a sample of the same split (HumanEval has only its test split)
    sols = [p.solution for p in problems if p.solution] or [
        p.solution for p in draw(task, 64, 0, split=split_of(problems[0]) if problems else "train") if p.solution
    ]
    longest = max((len(tokenizer.encode(s, bos=False)) if tokenizer is not None else len(s) for s in sols), default=48)
    return int(longest * 1.5) + 16


def greedy_accuracy(
    model, tokenizer, task, problems, max_new_tokens: int | None = None, max_batch: int = 128, progress=None
) -> dict:
    """Greedy completions of `problems`, judged by the task's checker."""
    engine = Engine(model, tokenizer, max_batch=max_batch)
    params = SamplingParams(
        greedy=True,
        max_new_tokens=max_new_tokens or default_max_new_tokens(task, problems, tokenizer),
        stop=tuple(task.stop),
    )
    res = engine.generate([p.prompt for p in problems], params, progress=progress)
    verdicts = [task.check(p, g.completions[0].text) for p, g in zip(problems, res.generations)]
    correct = [v.correct for v in verdicts]
    return {
        "accuracy": sum(correct) / max(1, len(correct)),
        "correct": correct,
        "completions": [g.completions[0].text for g in res.generations],
        **res.accounting(),
    }
