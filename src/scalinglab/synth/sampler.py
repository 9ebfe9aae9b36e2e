"""Where synthetic data's samples come from: one small, swappable function.

A `Sampler` is any callable `(prompts, SamplingParams) -> GenerationResult` (the engine's
types). Rejection sampling, process annotation and the model judge only call a sampler, so
a distributed backend would replace `local_sampler` and nothing else. Today samples come from
one process (`scalinglab.engine.Engine`); there is no `--backend` flag until a second backend exists.
"""

from __future__ import annotations

from typing import Callable, Sequence

from scalinglab.engine import Engine, GenerationResult, SamplingParams

Sampler = Callable[[Sequence[str], SamplingParams], GenerationResult]


def engine_sampler(engine: Engine, progress: Callable[..., None] | None = None) -> Sampler:
    """A sampler over an already-built engine (n samples of a prompt share one prefill)."""

    def sample(prompts: Sequence[str], params: SamplingParams) -> GenerationResult:
        return engine.generate(list(prompts), params, progress=progress)

    return sample


def local_sampler(
    model: str, device: str = "auto", max_batch: int = 64, progress: Callable[..., None] | None = None
) -> Sampler:
    """Load a run or Hugging Face model directory and sample from it in this process."""
    import torch

    from scalinglab.device import pick_device
    from scalinglab.model.hf import load_model

    dev = pick_device(device)
    m, tok = load_model(model, device=dev, dtype=torch.bfloat16 if dev.type == "cuda" else torch.float32)
    return engine_sampler(Engine(m, tok, max_batch=max_batch), progress)
