"""How the model generates: KV cache, sampling, shared-prefix prefill, continuous batching,
per-token log-probs and exact token/FLOP accounting."""

from scalinglab.engine.engine import (
    Completion,
    Engine,
    Generation,
    GenerationResult,
    SamplingParams,
    sample_tokens,
    sequence_flops,
)

__all__ = [
    "Engine",
    "SamplingParams",
    "Completion",
    "Generation",
    "GenerationResult",
    "sample_tokens",
    "sequence_flops",
]
