"""CTranslate2 as a contender in the engine benchmark (the `bench` extra installs it).

The benchmark's Hugging Face folder is converted once per compute type (`ct2_convert`, in a child
process: the converter imports torch and transformers, and CTranslate2 stays out of the parent),
then every timed call (`ct2_call`) runs in a fresh child (`bench.child`) that imports only
`ctranslate2` and `tokenizers`: it loads the converted model, runs the case once untimed, then
once timed. Prompts are tokenized from the folder's `tokenizer.json` with its special tokens (what
the fast `transformers` tokenizer gives). Sampling is temperature 1 over the full vocabulary
(`sampling_topk=0`), greedy is `sampling_topk=1`; exactly `new_tokens` tokens per sequence, EOS
ignored; with n > 1 samples each prompt is prefilled once (`num_hypotheses=n`). Torch-free.
"""

from __future__ import annotations

import time
from pathlib import Path

from scalinglab.bench.child import run_in_child

CT2_TYPES = {"ctranslate2_fp32": "float32", "ctranslate2_int8": "int8", "ctranslate2_bf16": "bfloat16"}


def _convert(model_dir: str, out: str, quant: str) -> bool:
    """Child process: False where this CPU lacks `quant` (CTranslate2's bf16 needs AVX512-BF16), else convert."""
    import ctranslate2

    if quant not in ctranslate2.get_supported_compute_types("cpu"):
        return False
    if not (Path(out) / "model.bin").exists():
        ctranslate2.converters.TransformersConverter(model_dir).convert(out, quantization=quant, force=True)
    return True


def ct2_convert(model_dir: Path, tmp: Path, name: str) -> Path | None:
    """The folder of `name` (a key of CT2_TYPES) converted under tmp (once), or None where this CPU lacks its type."""
    out = tmp / CT2_TYPES[name]
    ok = run_in_child(_convert, str(model_dir), str(out), CT2_TYPES[name], what="CTranslate2 conversion")
    return out if ok else None


def _run(path: str, tokenizer_json: str, threads: int, quant: str, spec: tuple, new_tokens: int) -> tuple[int, float]:
    """Child process: load, one untimed run, one timed run; (generated tokens, seconds)."""
    import ctranslate2
    from tokenizers import Tokenizer

    prompts, n, greedy = spec
    gen = ctranslate2.Generator(path, device="cpu", compute_type=quant, intra_threads=threads)
    tok = Tokenizer.from_file(tokenizer_json)
    toks = [tok.encode(p).tokens for p in prompts]
    kw = {"sampling_topk": 1} if greedy else {"sampling_topk": 0, "sampling_temperature": 1.0, "num_hypotheses": n}

    def run() -> int:
        res = gen.generate_batch(
            toks, max_length=new_tokens, min_length=new_tokens, include_prompt_in_result=False, **kw
        )
        return sum(len(seq) for r in res for seq in r.sequences_ids)

    run()
    t = time.perf_counter()
    count = run()
    return count, time.perf_counter() - t


def ct2_call(converted: Path, model_dir: Path, threads: int, name: str, spec: tuple, new_tokens: int):
    """One timed CTranslate2 run of case spec = (prompts, n, greedy) in a fresh child: (tokens, seconds)."""
    args = (str(converted), str(Path(model_dir) / "tokenizer.json"), threads, CT2_TYPES[name], spec, new_tokens)
    return run_in_child(_run, *args, what="CTranslate2")
