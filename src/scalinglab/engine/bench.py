"""Engine benchmark: scalinglab's engine vs `transformers` `generate`, same model, same prompts.

Both sides load the same exported Hugging Face directory, get the same prompts (one per
sequence, arithmetic problems of varying length; transformers pads them on the left),
sample with temperature 1 and no truncation, and generate exactly `new_tokens` tokens
per sequence (EOS ignored). Each side runs `repeats` times after a warm-up; the best
time counts. Reported: generated tokens/s of each and their ratio.

The `ragged` case (on by default) is the workload continuous batching is for: 256 prompts,
at most 64 sequences at a time, up to 256 new tokens, stopping at EOS. The random model
emits EOS about once in 128 tokens, so answer lengths vary widely. `transformers` gets the
prompts in batches of 64, as a user would pass them, and each batch runs until its longest
answer ends; the engine refills a slot as soon as its answer ends. Both count the tokens of
the answers (EOS included), not padding, so tokens/s is useful tokens per second. The two
sample different tokens from the same distribution, so their token counts differ a little.
"""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path

import torch


def _model_dir(model: Path | None, depth: int, tmp: Path) -> Path:
    from scalinglab.model import ModelConfig, Transformer
    from scalinglab.model.hf import resolve_model_dir, save_model
    from scalinglab.model.tokenizer import CharTokenizer

    if model is not None:
        return resolve_model_dir(model)
    torch.manual_seed(0)
    m = Transformer(ModelConfig.from_depth(depth, vocab_size=128))
    return save_model(m, CharTokenizer(), tmp / "model")


def run_benchmark(model: Path | None = None, sequences: int = 64, new_tokens: int = 64, device: str = "cpu",
                  repeats: int = 3, depth: int = 2, ragged: bool = True) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from scalinglab.engine import Engine, SamplingParams
    from scalinglab.model.hf import load_model
    from scalinglab.tasks import get_task

    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    with tempfile.TemporaryDirectory() as td:
        d = _model_dir(model, depth, Path(td))
        prompts = [p.prompt for p in get_task("arithmetic").generate(sequences, seed=12345, difficulty=3)]

        ours, tok = load_model(d, device=dev, dtype=dtype)
        engine = Engine(ours, tok, max_batch=sequences)
        compiled = Engine(ours, tok, max_batch=sequences, compile=True)
        params = SamplingParams(n=1, max_new_tokens=new_tokens, temperature=1.0, ignore_eos=True, seed=0)

        hf = AutoModelForCausalLM.from_pretrained(d, dtype=dtype).to(dev).eval()
        hf_tok = AutoTokenizer.from_pretrained(d)
        hf_tok.padding_side = "left"
        enc = hf_tok(prompts, return_tensors="pt", padding=True).to(dev)

        def run_ours() -> int:
            return engine.generate(prompts, params).generated_tokens

        def run_compiled() -> int:
            return compiled.generate(prompts, params).generated_tokens

        def run_hf() -> int:
            with torch.no_grad():
                out = hf.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=new_tokens,
                                  min_new_tokens=new_tokens, pad_token_id=hf_tok.pad_token_id)
            return int((out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0])

        def best(fn) -> tuple[float, int]:
            fn()  # warm-up
            times, count = [], 0
            for _ in range(repeats):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                count = fn()
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            return min(times), count

        t_compile = time.perf_counter()
        run_compiled()  # compiles (or loads the compiled code from the on-disk cache)
        t_compile = time.perf_counter() - t_compile
        path = engine.generate(prompts[:1], params).decode_path  # what the default path is on this machine
        t_ours, n_ours = best(run_ours)
        t_comp, n_comp = best(run_compiled)
        t_hf, n_hf = best(run_hf)
        rag = _ragged(engine.model, tok, hf, hf_tok, sequences, best) if ragged else None
    ours_tps, comp_tps, hf_tps = n_ours / t_ours, n_comp / t_comp, n_hf / t_hf
    return {
        "benchmark": "engine", "device": str(dev), "threads": torch.get_num_threads(), "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(), "sequences": sequences, "new_tokens": new_tokens,
        "model_params": sum(p.numel() for p in ours.parameters()), "scalinglab_tokens": n_ours, "transformers_tokens": n_hf,
        "scalinglab_seconds": t_ours, "transformers_seconds": t_hf, "scalinglab_tokens_per_s": ours_tps,
        "transformers_tokens_per_s": hf_tps, "speedup": ours_tps / hf_tps,
        "compiled_seconds": t_comp, "compiled_tokens_per_s": comp_tps, "compiled_speedup": comp_tps / hf_tps,
        "compile_seconds": t_compile, "torch": torch.__version__, "scalinglab_decode_path": path,
        **({"ragged": rag} if rag else {}),
    }


def answer_lengths(new: torch.Tensor, eos: int) -> torch.Tensor:
    """Tokens of each generated row (B, T) up to and including its first EOS (T where it has none); the rest is padding."""
    ended = new == eos
    return torch.where(ended.any(1), ended.int().argmax(1) + 1, torch.full((new.shape[0],), new.shape[1], dtype=torch.long))


def _ragged(model, tok, hf, hf_tok, batch: int, best, prompts: int = 256, new_tokens: int = 256) -> dict:
    """The continuous-batching case of the module docstring: useful tokens/s of each side."""
    from scalinglab.engine import Engine, SamplingParams
    from scalinglab.tasks import get_task

    texts = [p.prompt for p in get_task("arithmetic").generate(prompts, seed=54321, difficulty=3)]
    engine = Engine(model, tok, max_batch=batch)
    params = SamplingParams(n=1, max_new_tokens=new_tokens, temperature=1.0, seed=0)
    dev = next(hf.parameters()).device

    def run_ours() -> int:
        return engine.generate(texts, params).generated_tokens

    def run_hf() -> int:
        count = 0
        for i in range(0, prompts, batch):
            enc = hf_tok(texts[i:i + batch], return_tensors="pt", padding=True).to(dev)
            with torch.no_grad():
                out = hf.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=new_tokens,
                                  pad_token_id=hf_tok.pad_token_id, eos_token_id=tok.eos_id)
            count += int(answer_lengths(out[:, enc["input_ids"].shape[1]:], tok.eos_id).sum())
        return count

    t_ours, n_ours = best(run_ours)
    t_hf, n_hf = best(run_hf)
    return {"prompts": prompts, "max_batch": batch, "max_new_tokens": new_tokens, "scalinglab_tokens": n_ours,
            "transformers_tokens": n_hf, "scalinglab_seconds": t_ours, "transformers_seconds": t_hf,
            "scalinglab_tokens_per_s": n_ours / t_ours, "transformers_tokens_per_s": n_hf / t_hf,
            "speedup": (n_ours / t_ours) / (n_hf / t_hf)}
