"""Issue 10's measurements in one prepared run: everything a lent GPU session has to measure.

    PYTHONPATH=src python benchmarks/gpu_check.py --out $OUT/gpu_check.json   # on the GPU (H200)
    python benchmarks/gpu_check.py --small --device cpu                       # the same logic, tiny shapes, on a CPU

Random-initialised models in the shapes of real ones, no downloads. Each part is guarded:
a part that fails records its error and the others still run, and the JSON is rewritten
after every part, so a run cut short by the device's time limit keeps what it measured.

1. `copy`: device-to-device copy bandwidth of a large buffer (bytes read + written / s).
2. `case_a`: Qwen2.5-0.5B shape, 256 sequences, 128-token prompts, 256 new tokens,
   sampling: tokens/s of the engine (eager and compiled) and of `transformers` `generate`.
3. `case_b`: Llama-3.1-8B shape decode steps at (batch, context) = (1, 1024), (32, 4096),
   (128, 4096), (256, 2048): step time, tokens/s, achieved bandwidth (weight + KV bytes per
   step / step time) as a fraction of `copy`, and the tokenomics roofline's prediction (H200
   catalog entry; and the pure roofline at the measured copy bandwidth).
Targets (issue 10): case a ≥ 20× transformers; case b ≥ 75% of copy bandwidth at every
point; predictions within 15%.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

QWEN_05B = dict(
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    head_dim=64,
    rope_theta=1e6,
    max_position_embeddings=32768,
    tie_word_embeddings=True,
    attention_bias=True,
    arch="qwen2",
)
LLAMA_8B = dict(
    vocab_size=128256,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    rope_theta=5e5,
    max_position_embeddings=131072,
    tie_word_embeddings=False,
)
TINY = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=32,
    max_position_embeddings=4096,
)


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def random_model(shape: dict, dev: torch.device, dtype: torch.dtype):
    """A random-initialised Transformer built directly on `dev` in `dtype` (an 8B model never exists in fp32)."""
    from scalinglab.model import ModelConfig, Transformer

    old = torch.get_default_dtype()
    torch.manual_seed(0)
    try:
        torch.set_default_dtype(dtype)
        with torch.device(dev):
            model = Transformer(ModelConfig(**shape))
    finally:
        torch.set_default_dtype(old)
    return model.eval()


def copy_bandwidth(dev: torch.device, gib: float) -> dict:
    n = int(gib * 2**30) // 4
    src, dst = (
        torch.empty(n, dtype=torch.float32, device=dev).normal_(),
        torch.empty(n, dtype=torch.float32, device=dev),
    )
    best = float("inf")
    for _ in range(5):
        sync(dev)
        t = time.perf_counter()
        dst.copy_(src)
        sync(dev)
        best = min(best, time.perf_counter() - t)
    return {"bytes": 4 * n, "seconds": best, "bytes_per_s": 2 * 4 * n / best}  # read + write


def case_a(dev, dtype, small: bool) -> dict:
    from transformers import AutoModelForCausalLM

    from scalinglab.engine import Engine, SamplingParams
    from scalinglab.model.hf import save_model
    from scalinglab.model.tokenizer import CharTokenizer

    seqs, plen, new = (8, 16, 16) if small else (256, 128, 256)
    model = random_model(TINY if small else QWEN_05B, dev, dtype)
    prompts = torch.randint(4, model.config.vocab_size, (seqs, plen), generator=torch.Generator().manual_seed(1))
    params = SamplingParams(max_new_tokens=new, temperature=1.0, ignore_eos=True, seed=0)
    out = {"sequences": seqs, "prompt_tokens": plen, "new_tokens": new, "params": model.config.num_params}

    def timed(fn) -> float:
        fn()  # warm-up (and compilation)
        sync(dev)
        t = time.perf_counter()
        fn()
        sync(dev)
        return time.perf_counter() - t

    for name, compile_ in (("scalinglab", False), ("scalinglab_compiled", True)):
        eng = Engine(model, CharTokenizer(), max_batch=seqs, compile=compile_)
        s = timed(lambda: eng.generate(prompts.tolist(), params))
        out[name] = {"seconds": s, "tokens_per_s": seqs * new / s}
    with tempfile.TemporaryDirectory() as td:
        save_model(model.float() if dev.type == "cpu" else model, CharTokenizer(), Path(td) / "m")
        del model
        hf = AutoModelForCausalLM.from_pretrained(Path(td) / "m", dtype=dtype).to(dev).eval()
    ids = prompts.to(dev)

    def run_hf():
        with torch.no_grad():
            return hf.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=new,
                min_new_tokens=new,
                pad_token_id=0,
            )

    s = timed(run_hf)
    out["transformers"] = {"seconds": s, "tokens_per_s": seqs * new / s}
    for name in ("scalinglab", "scalinglab_compiled"):
        out[name]["speedup"] = out[name]["tokens_per_s"] / out["transformers"]["tokens_per_s"]
    return out


def case_b(dev, dtype, small: bool, copy_bps: float | None) -> dict:
    from scalinglab.engine import Engine
    from scalinglab.engine.measure import decode_step_seconds
    from scalinglab.model.tokenizer import CharTokenizer
    from scalinglab.tokenomics.catalog import get_hardware
    from scalinglab.tokenomics.hf_config import from_hf_config
    from scalinglab.tokenomics.memory import ServeConfig
    from scalinglab.tokenomics.roofline import StepModel

    points = ((1, 64), (4, 256)) if small else ((1, 1024), (32, 4096), (128, 4096), (256, 2048))
    model = random_model(TINY if small else LLAMA_8B, dev, dtype)
    cfg = model.config
    eng = Engine(model, CharTokenizer(), max_batch=max(b for b, _ in points))
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    kv_per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * torch.finfo(dtype).bits // 8
    spec = from_hf_config(TINY if small else LLAMA_8B, name="tiny" if small else "Llama-3.1-8B shape")
    h200 = StepModel(spec, get_hardware("H200"), ServeConfig(weights_dtype="bf16", kv_dtype="bf16"))
    roof = (
        StepModel(
            spec,
            get_hardware("H200").with_(hbm_tbps=copy_bps / 1e12, mbu=1.0, mfu=1.0),
            ServeConfig(weights_dtype="bf16", kv_dtype="bf16"),
        )
        if copy_bps
        else None
    )
    rows = []
    for b, c in points:
        row = {"batch": b, "context": c}
        for name, compiled in (("eager", False), ("compiled", True)):
            try:
                t = decode_step_seconds(eng, b, c, compiled=compiled)
                moved = weight_bytes + b * c * kv_per_token
                row[name] = {
                    "step_ms": t * 1e3,
                    "tokens_per_s": b / t,
                    "bytes_per_s": moved / t,
                    "fraction_of_copy": moved / t / copy_bps if copy_bps else None,
                }
            except Exception as e:  # noqa: BLE001 - e.g. out of memory at one point: record it, go on
                row[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        best = min((row[k]["step_ms"] for k in ("eager", "compiled") if "step_ms" in row[k]), default=None)
        if best:
            row["predicted_ms_h200_catalog"] = h200.decode(b, c).seconds * 1e3
            row["error_h200_catalog"] = row["predicted_ms_h200_catalog"] / best - 1
            if roof:
                row["predicted_ms_roofline_at_copy_bw"] = roof.decode(b, c).seconds * 1e3
                row["error_roofline_at_copy_bw"] = row["predicted_ms_roofline_at_copy_bw"] / best - 1
        rows.append(row)
    return {"weight_bytes": weight_bytes, "kv_bytes_per_token": kv_per_token, "points": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="tiny shapes: check the logic on any machine")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here (rewritten after every part)")
    ap.add_argument("--parts", default="copy,case_a,case_b")
    a = ap.parse_args()
    dev = torch.device(a.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    res: dict = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "small": a.small,
        "dtype": str(dtype),
    }

    def save() -> None:
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(res, indent=1))

    parts = a.parts.split(",")
    for part in parts:
        t0 = time.perf_counter()
        try:
            if part == "copy":
                res["copy"] = copy_bandwidth(dev, 0.0625 if a.small else 4.0)
            elif part == "case_a":
                res["case_a"] = case_a(dev, dtype, a.small)
            elif part == "case_b":
                res["case_b"] = case_b(dev, dtype, a.small, res.get("copy", {}).get("bytes_per_s"))
            else:
                raise ValueError(f"unknown part {part!r}")
        except Exception as e:  # noqa: BLE001 - keep the other parts
            res[part] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
        res.setdefault("part_seconds", {})[part] = time.perf_counter() - t0
        save()
        print(f"{part}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
