"""Model-backed judges for the chorus of `scalinglab.verify.judge`.

    scalinglab judge --model runs/A --model path/to/Qwen2.5-0.5B --input cands.jsonl --json

`model_judge(model_dir)` turns any local Hugging Face (Llama/Qwen2) or scalinglab model
directory into a `JudgeFn`: a batch of grading prompts in, a batch of greedy replies out
(one engine call, so the batch is decoded together). Greedy, because a grade should not be
a coin flip; diversity comes from the chorus (different models), not from sampling.
The interface, prompt, parsing and vote aggregation live in the torch-free
`scalinglab.verify.judge`; this module only generates text.

A judge prompt longer than the model's context is cut from the front (the candidate's end
and the reply instructions, which come last, are kept) rather than failing the batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from scalinglab.engine import SamplingParams
from scalinglab.errors import UserError
from scalinglab.runs.store import read_jsonl
from scalinglab.verify.judge import DEFAULT_RUBRIC, JudgeFn, judge_candidates, summarise


def sampler_judge(sampler, max_new_tokens: int = 32, context: int | None = None, encode=None) -> JudgeFn:
    """A JudgeFn over a sampler (`synth.sampler.Sampler`): greedy replies, stopped after the SCORE line."""
    params = SamplingParams(n=1, max_new_tokens=max_new_tokens, greedy=True)

    def fit(prompt: str) -> str:
        if context is None or encode is None:
            return prompt
        over = len(encode(prompt)) + max_new_tokens - context
        return prompt if over <= 0 else prompt[over:]  # chars >= tokens, so this is enough

    def judge(prompts: Sequence[str]) -> list[str]:
        res = sampler([fit(p) for p in prompts], params)
        return [g.completions[0].text for g in res.generations]

    return judge


def model_judge(model: str | Path, device: str = "auto", max_new_tokens: int = 32, max_batch: int = 64) -> JudgeFn:
    """A JudgeFn backed by a local model directory (run dir or Hugging Face dir)."""
    import torch

    from scalinglab.device import pick_device
    from scalinglab.engine import Engine
    from scalinglab.model.hf import load_model
    from scalinglab.synth.sampler import engine_sampler

    dev = pick_device(device)
    m, tok = load_model(model, device=dev, dtype=torch.bfloat16 if dev.type == "cuda" else torch.float32)
    engine = Engine(m, tok, max_batch=max_batch)
    return sampler_judge(
        engine_sampler(engine), max_new_tokens, context=m.config.max_position_embeddings, encode=tok.encode
    )


def load_candidates(path: str | Path) -> list[dict]:
    """Rows {id?, question|prompt, candidate|completion, reference|answer?} as judge items."""
    items = []
    for i, r in enumerate(read_jsonl(path)):
        q, c = r.get("question", r.get("prompt")), r.get("candidate", r.get("completion"))
        if q is None or c is None:
            raise UserError(
                f"{path}: row {r.get('id', i)!r} needs 'question' (or 'prompt') and 'candidate' (or 'completion')"
            )
        ref = r.get("reference", r.get("answer"))
        items.append(
            {
                "id": str(r.get("id", i)),
                "question": str(q),
                "candidate": str(c),
                "reference": None if ref is None else str(ref),
            }
        )
    if not items:
        raise UserError(f"{path}: no candidates in file")
    return items


def judge_file(
    models: Sequence[str | Path],
    path: str | Path,
    rubric: str = DEFAULT_RUBRIC,
    rule: str = "majority",
    device: str = "auto",
    max_new_tokens: int = 32,
    use_reference: bool = True,
    progress: Callable[..., None] | None = None,
) -> dict:
    """Grade every candidate of a JSONL file with a chorus of model judges."""
    if not models:
        raise UserError("give at least one --model for the judge chorus")
    items = load_candidates(path)
    if not use_reference:
        items = [{**it, "reference": None} for it in items]
    chorus: dict[str, JudgeFn] = {}
    for i, m in enumerate(models):
        name = f"{i}:{Path(m).name}"
        chorus[name] = model_judge(m, device, max_new_tokens)
        if progress:
            progress(i + 1, len(models))
    results = judge_candidates(chorus, items, rubric, rule)
    return {
        "judges": list(chorus),
        "rule": rule,
        **summarise(results),
        "results": [{"id": it["id"], **r.to_json()} for it, r in zip(items, results)],
    }
