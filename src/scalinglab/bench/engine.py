"""Engine benchmark: scalinglab's engine vs `transformers` `generate`, same model, same prompts.

Both sides load the same exported Hugging Face directory, get the same prompts (one per
sequence, arithmetic problems of varying length; transformers pads them on the left),
sample with temperature 1 and no truncation, and generate exactly `new_tokens` tokens
per sequence (EOS ignored). Each side runs `repeats` times after a warm-up; the best
time counts. Reported: generated tokens/s of each and their ratio.

With a real model (`--model DIR_OR_NAME`, on a CPU) the benchmark is `real_model_benchmark`
instead: batch 64 (8 prompts x 8 samples), batch 8 (sampling) and batch 1 (greedy), each
contender timed once per round, the rounds interleaved, the median and the spread reported:
scalinglab fp32 and with bf16 weights, `transformers` fp32 and bf16, and CTranslate2 and
llama.cpp when installed (they are not in the default environment: skipped with a note).

The `ragged` case (on by default) is the workload continuous batching is for: 256 prompts,
at most 64 sequences at a time, up to 256 new tokens, stopping at EOS. The random model
emits EOS about once in 128 tokens, so answer lengths vary widely. `transformers` gets the
prompts in batches of 64, as a user would pass them, and each batch runs until its longest
answer ends; the engine refills a slot as soon as its answer ends. Both count the tokens of
the answers (EOS included), not padding, so tokens/s is useful tokens per second. The two
sample different tokens from the same distribution, so their token counts differ a little.
"""

from __future__ import annotations

import functools
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


def run_benchmark(
    model: Path | None = None,
    sequences: int = 64,
    new_tokens: int = 64,
    device: str = "cpu",
    repeats: int = 3,
    depth: int = 2,
    ragged: bool = True,
    shape: str | None = None,
    layers: int | None = None,
    extras: bool = True,
) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from scalinglab.engine import Engine, SamplingParams
    from scalinglab.model.hf import load_model
    from scalinglab.tasks import get_task

    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    if shape is not None:  # a random model in a real shape, then the grid of contenders on it
        with tempfile.TemporaryDirectory(prefix="scalinglab-shape-") as td:
            d = shape_model_dir(shape, Path(td), layers)
            res = real_model_benchmark(d, new_tokens=new_tokens, rounds=repeats, extras=extras)
        return {**res, "model": shape + (f" cut to {layers} layers" if layers else ""), "model_dir": None}
    if (
        model is not None and dev.type == "cpu"
    ):  # a real model: the issue-16 grid of contenders instead of the toy cases
        return real_model_benchmark(model, new_tokens=new_tokens, rounds=repeats, extras=extras)
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
                out = hf.generate(
                    **enc,
                    do_sample=True,
                    temperature=1.0,
                    top_k=0,
                    top_p=1.0,
                    max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens,
                    pad_token_id=hf_tok.pad_token_id,
                )
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
        "benchmark": "engine",
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "sequences": sequences,
        "new_tokens": new_tokens,
        "model_params": sum(p.numel() for p in ours.parameters()),
        "scalinglab_tokens": n_ours,
        "transformers_tokens": n_hf,
        "scalinglab_seconds": t_ours,
        "transformers_seconds": t_hf,
        "scalinglab_tokens_per_s": ours_tps,
        "transformers_tokens_per_s": hf_tps,
        "speedup": ours_tps / hf_tps,
        "compiled_seconds": t_comp,
        "compiled_tokens_per_s": comp_tps,
        "compiled_speedup": comp_tps / hf_tps,
        "compile_seconds": t_compile,
        "torch": torch.__version__,
        "scalinglab_decode_path": path,
        **({"ragged": rag} if rag else {}),
    }


def answer_lengths(new: torch.Tensor, eos: int) -> torch.Tensor:
    """Tokens of each generated row (B, T) up to and including its first EOS (T where it has none); the rest is padding."""
    ended = new == eos
    return torch.where(
        ended.any(1), ended.int().argmax(1) + 1, torch.full((new.shape[0],), new.shape[1], dtype=torch.long)
    )


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
            enc = hf_tok(texts[i : i + batch], return_tensors="pt", padding=True).to(dev)
            with torch.no_grad():
                out = hf.generate(
                    **enc,
                    do_sample=True,
                    temperature=1.0,
                    top_k=0,
                    top_p=1.0,
                    max_new_tokens=new_tokens,
                    pad_token_id=hf_tok.pad_token_id,
                    eos_token_id=tok.eos_id,
                )
            count += int(answer_lengths(out[:, enc["input_ids"].shape[1] :], tok.eos_id).sum())
        return count

    t_ours, n_ours = best(run_ours)
    t_hf, n_hf = best(run_hf)
    return {
        "prompts": prompts,
        "max_batch": batch,
        "max_new_tokens": new_tokens,
        "scalinglab_tokens": n_ours,
        "transformers_tokens": n_hf,
        "scalinglab_seconds": t_ours,
        "transformers_seconds": t_hf,
        "scalinglab_tokens_per_s": n_ours / t_ours,
        "transformers_tokens_per_s": n_hf / t_hf,
        "speedup": (n_ours / t_ours) / (n_hf / t_hf),
    }


# optional contenders: (name, module, distribution, how to get it)
OPTIONAL = (
    ("ctranslate2", "ctranslate2", "ctranslate2", "the `bench` extra installs it: scripts/setup.sh --dev"),
    (
        "llama.cpp",
        "llama_cpp",
        "llama-cpp-python",
        "the `llama` extra builds it from source (10-20 minutes on 2 cores): scripts/setup.sh --dev",
    ),
)


def _versions(skipped: dict) -> dict:
    from importlib.metadata import version

    return {name: version(dist) for name, _, dist, _ in OPTIONAL if name not in skipped}


def _timed(fn):
    def run() -> tuple[int, float]:
        t = time.perf_counter()
        count = fn()
        return count, time.perf_counter() - t

    return run


# random-weight models in real shapes (`bench engine --shape`): name -> its entry in the tokenomics
# catalog, the config.json fields checked against the Hugging Face hub (24 layers, width 896, 14/2
# heads, vocabulary 151,936, tied head, q/k/v biases for Qwen2.5-0.5B)
SHAPES = {"qwen2.5-0.5b": "Qwen2.5-0.5B"}


def shape_model_dir(shape: str, tmp: Path, layers: int | None = None) -> Path:
    """A random model in a real shape of `SHAPES` (optionally cut to `layers`), saved as a Hugging Face
    folder under tmp that both engines load. Prompts go through a character tokenizer (ids < 128):
    the speed of a step does not depend on which token ids it reads."""
    import dataclasses

    from scalinglab.errors import UserError
    from scalinglab.model import Transformer
    from scalinglab.model.hf import config_from_hf, save_model
    from scalinglab.model.tokenizer import CharTokenizer
    from scalinglab.tokenomics.catalog import MODEL_CONFIGS

    if shape not in SHAPES:
        raise UserError(f"--shape {shape!r}: not one of {', '.join(SHAPES)}")
    cfg = config_from_hf(MODEL_CONFIGS[SHAPES[shape]])
    if layers:
        cfg = dataclasses.replace(cfg, num_hidden_layers=layers)
    torch.manual_seed(0)
    model = Transformer(cfg)
    return save_model(model, CharTokenizer(), tmp / shape)


def step_weights(cfg) -> int:
    """The weights a decode step streams: every matrix once and the LM head (the embedding row lookup aside)."""
    return cfg.non_embedding_params + cfg.vocab_size * cfg.hidden_size


def read_gb_s(repeats: int = 1) -> float:
    """GB/s of reading 1 GiB of float32 (a sum over it), the best of `repeats` reads."""
    big = torch.ones(1 << 28)
    return (1 << 30) / min(_timed(lambda: int(big.sum()))()[1] for _ in range(repeats)) / 1e9


def machine_bounds(cfg, rows: int = 64, repeats: int = 5) -> dict:
    """What this CPU allows the model, measured now with this process's threads: the GFLOP/s of
    `torch.matmul` on the step's own shapes (rows x each weight matrix, counted as often as the
    model holds it) and the GB/s of reading 1 GiB. The batch-64 bound is the GEMM rate over the FLOPs
    of a token; the batch-1 bound is the read rate over the bytes of the weights (fp32 and bf16)."""
    d, H, Hkv, D, inter, V = (
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
        cfg.intermediate_size,
        cfg.vocab_size,
    )
    L = cfg.num_hidden_layers
    shapes = [((H + 2 * Hkv) * D, d, L), (d, H * D, L), (2 * inter, d, L), (d, inter, L), (V, d, 1)]
    seconds, flops = 0.0, 0.0
    for n, k, count in shapes:
        x, w = torch.randn(rows, k), torch.randn(k, n)
        best = min(_timed(lambda: torch.matmul(x, w).shape[0])()[1] for _ in range(repeats))
        seconds, flops = seconds + best * count, flops + 2.0 * rows * n * k * count
    gflops, gbs = flops / seconds / 1e9, read_gb_s(3)
    weights = step_weights(cfg)
    per_token = cfg.flops_per_token(0)
    return {
        "gemm_gflops_fp32": gflops,
        "read_gb_s": gbs,
        "flops_per_token": per_token,
        "weight_bytes_fp32": 4 * weights,
        "batch64_tokens_per_s_fp32": gflops * 1e9 / per_token,
        "batch1_tokens_per_s_fp32": gbs * 1e9 / (4 * weights),
        "batch1_tokens_per_s_bf16": gbs * 1e9 / (2 * weights),
    }


def startup_run(model: str, prompts: list[str], tmp: Path, n: int = 8, new_tokens: int = 8) -> dict:
    """`scalinglab generate` as a user runs it (a fresh process, len(prompts) x n sequences, EOS
    ignored): its wall time, and the part outside decoding = wall - (engine seconds - pack seconds),
    i.e. interpreter, imports, model load, packing the weights, output and exit. Beside it, the floor
    every torch program pays: `python -c "import torch"`."""
    import json
    import subprocess
    import sys

    f = tmp / "startup-prompts.txt"
    f.write_text("\n".join(p.replace("\n", "\\n") for p in prompts) + "\n")
    cmd = [sys.executable, "-m", "scalinglab.cli", "generate", "--model", model, "--prompts", str(f), "--n", str(n)]
    cmd += ["--max-new-tokens", str(new_tokens), "--ignore-eos", "--chat", "off", "--json"]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    torch_import = time.perf_counter() - t
    res = json.loads(out.stdout)
    return {
        "wall_seconds": wall,
        "engine_seconds": res["seconds"],
        "pack_seconds": res["pack_seconds"],
        "outside_decode_seconds": wall - res["seconds"] + res["pack_seconds"],
        "import_torch_seconds": torch_import,
    }


def context_prompts(tok, length: int, count: int = 8) -> list[list[int]]:
    """`count` token-id prompts of exactly `length` tokens (windows of a long arithmetic text)."""
    from scalinglab.tasks import get_task

    text = " ".join(p.prompt for p in get_task("arithmetic").generate(200, seed=777, difficulty=3))
    ids = tok.encode(text)
    assert len(ids) >= length + 7 * count, "context_prompts: the text is too short"
    return [ids[7 * i : 7 * i + length] for i in range(count)]


def step_seconds(engine, prompts: list[list[int]], n: int, short: int = 8, long: int = 40) -> float:
    """Seconds of one decode step after these prompts: the difference of two generations (`long` and
    `short` new tokens, EOS ignored, the faster of two runs each) over their difference in steps, so
    prefill and set-up cancel. On a toy model the difference is within the noise (it can even be negative)."""
    from scalinglab.engine import SamplingParams

    def run(tokens: int) -> float:
        params = SamplingParams(n=n, max_new_tokens=tokens, ignore_eos=True, seed=0)
        return min(engine.generate(prompts, params).seconds for _ in range(2))

    return (run(long) - run(short)) / (long - short)


def real_model_benchmark(model, new_tokens: int = 64, rounds: int = 3, extras: bool = True) -> dict:
    """The contenders of issue 16 on a real model (see the module docstring): tokens/s per (case, contender).

    Every round times each (case, contender) once, in the same order, so load from other
    processes hits all of them alike; the load average is recorded before each round.
    Sampling at temperature 1 with EOS ignored (batch 64 and 8), greedy at batch 1. scalinglab
    prefills each of the 8 prompts once at batch 64; `transformers` prefills all 64 copies.

    extras (on by default), also once per round: the machine's bounds (`machine_bounds`, so each
    result is also a fraction of what this CPU allowed that minute), the start-up of `scalinglab
    generate` in a fresh process (`startup_run`), and scalinglab's fp32 decode step at batch 64
    after prompts of 20 and of 200 tokens (`step_seconds`); and after each of scalinglab's batch-1
    calls a 1 GiB read, so its streamed bytes are also a fraction of that moment's bandwidth.
    """
    import importlib.util
    import os
    import statistics

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from scalinglab.engine import Engine, SamplingParams
    from scalinglab.model.hf import load_model, resolve_model_dir
    from scalinglab.tasks import get_task

    d = resolve_model_dir(model)
    prompts = [p.prompt for p in get_task("arithmetic").generate(8, seed=12345, difficulty=3)]
    ours, tok = load_model(d, dtype=torch.float32)
    engines = {
        "scalinglab_fp32": Engine(ours, tok, max_batch=64),
        "scalinglab_bf16": Engine(ours, tok, max_batch=64, weight_dtype=torch.bfloat16),
    }
    hf32 = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    hf16 = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16).eval()
    hf_tok = AutoTokenizer.from_pretrained(d)
    hf_tok.padding_side = "left"
    if hf_tok.pad_token_id is None:
        hf_tok.pad_token = hf_tok.eos_token
    cases = {"batch64": (prompts, 8, False), "batch8": (prompts, 1, False), "batch1_greedy": (prompts[:1], 1, True)}

    def ours_fn(eng, ps, n, greedy):
        params = SamplingParams(n=n, max_new_tokens=new_tokens, temperature=1.0, greedy=greedy, ignore_eos=True, seed=0)
        return lambda: eng.generate(ps, params).generated_tokens

    def hf_fn(hf, ps, n, greedy):
        enc = hf_tok(ps, return_tensors="pt", padding=True)

        def run() -> int:
            with torch.no_grad():
                out = hf.generate(
                    **enc,
                    do_sample=not greedy,
                    temperature=1.0 if not greedy else None,
                    top_k=0 if not greedy else None,
                    top_p=1.0 if not greedy else None,
                    num_return_sequences=n,
                    max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens,
                    pad_token_id=hf_tok.pad_token_id,
                )
            return int((out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0])

        return run

    notes = {
        name: f"{pkg} is not installed: skipped ({how})"
        for name, pkg, _, how in OPTIONAL
        if importlib.util.find_spec(pkg) is None
    }
    tmp = tempfile.TemporaryDirectory(prefix="scalinglab-bench-")
    threads = torch.get_num_threads()
    ct2 = {}  # name -> its converted folder, for the types this CPU runs
    if "ctranslate2" not in notes:
        from scalinglab.bench.ct2 import CT2_TYPES, ct2_call, ct2_convert

        ct2 = {k: v for k in CT2_TYPES if (v := ct2_convert(d, Path(tmp.name), k)) is not None}
        for k in CT2_TYPES.keys() - ct2.keys():
            notes[k] = f"CTranslate2 offers no {CT2_TYPES[k]} compute type on this CPU"
    llama = {}  # name -> GGUF file: the packaged quantisation, and F32 and BF16 of the same weights
    if "llama.cpp" not in notes:
        from scalinglab.bench.llamacpp import gguf_variants, llama_call

        llama = gguf_variants(model, Path(tmp.name))
        if not llama:
            notes["llama.cpp"] = (
                "needs a GGUF source for its weights and tokenizer: give a packaged name or a .gguf file"
            )
    runs = {}
    for case, (ps, n, greedy) in cases.items():
        runs[(case, "scalinglab_fp32")] = _timed(ours_fn(engines["scalinglab_fp32"], ps, n, greedy))
        runs[(case, "scalinglab_bf16")] = _timed(ours_fn(engines["scalinglab_bf16"], ps, n, greedy))
        runs[(case, "transformers_fp32")] = _timed(hf_fn(hf32, ps, n, greedy))
        runs[(case, "transformers_bf16")] = _timed(hf_fn(hf16, ps, n, greedy))
        for name, converted in ct2.items():
            runs[(case, name)] = functools.partial(ct2_call, converted, d, threads, name, (ps, n, greedy), new_tokens)
        for name, gguf in llama.items():
            runs[(case, name)] = functools.partial(llama_call, gguf, threads, (ps, n, greedy), new_tokens)
    in_child = set(ct2) | set(llama)  # they warm up in their own child process
    for k, fn in runs.items():  # warm-up: packing, first-call allocations
        if k[1] not in in_child:
            fn()
    times: dict = {k: [] for k in runs}
    loads, bounds, startups, steps = [], [], [], []
    # scalinglab's batch-1 calls, each followed at once by 1 GiB read three times (the best counts): the
    # weights' bytes it streamed over what the memory gave that moment (a VM's bandwidth swings 2x
    # between minutes, and a single read also varies from one second to the next)
    streamed: dict = {"batch1_greedy_fp32": [], "batch1_greedy_bf16": []}
    weight_bytes = 4 * step_weights(ours.config)
    long_ctx = {L: context_prompts(tok, L) for L in (20, 200)}
    for _ in range(rounds):
        loads.append(os.getloadavg()[0])
        for k, fn in runs.items():
            count, seconds = fn()
            times[k].append(count / seconds)
            if extras and k[0] == "batch1_greedy" and k[1].startswith("scalinglab_"):
                dtype = k[1].removeprefix("scalinglab_")
                stream = count / seconds * weight_bytes / (2 if dtype == "bf16" else 1) / 1e9
                streamed[f"batch1_greedy_{dtype}"].append(stream / read_gb_s(3))
        if extras:
            bounds.append(machine_bounds(ours.config))
            startups.append(startup_run(str(model), prompts, Path(tmp.name)))
            steps.append({L: step_seconds(engines["scalinglab_fp32"], ps, 8) for L, ps in long_ctx.items()})
    table: dict = {}
    for (case, who), tps in times.items():
        table.setdefault(case, {})[who] = {"tokens_per_s": statistics.median(tps), "min": min(tps), "max": max(tps)}
    for case, row in table.items():
        base = row["transformers_fp32"]["tokens_per_s"]
        for who in row:
            row[who]["vs_transformers_fp32"] = row[who]["tokens_per_s"] / base
    import transformers

    from scalinglab.engine.steps import cpu_bf16_dot_products, cpu_flags

    flags = cpu_flags()
    b64 = table["batch64"]
    tmp.cleanup()
    extra = _extras(table, bounds, startups, steps) if extras else {}
    if extras:
        extra["fraction_of_read_same_moment"] = {k: _spread(v) for k, v in streamed.items()}
    return {
        "benchmark": "engine",
        "model": str(model),
        "model_dir": str(d),
        "model_params": sum(p.numel() for p in ours.parameters()),
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_bf16_dot_products": cpu_bf16_dot_products(),
        "cpu_avx512": "avx512f" in flags,
        "new_tokens": new_tokens,
        "rounds": rounds,
        "load_average_per_round": loads,
        "cases": table,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, **_versions(notes)},
        "skipped": notes,
        "scalinglab_decode_path": engines["scalinglab_fp32"]
        .generate(prompts[:1], SamplingParams(max_new_tokens=1))
        .decode_path,
        "scalinglab_bf16_matmul": engines["scalinglab_bf16"].matmul_kind(),
        # the command's one-line summary: batch 64, fp32
        "scalinglab_tokens_per_s": b64["scalinglab_fp32"]["tokens_per_s"],
        "transformers_tokens_per_s": b64["transformers_fp32"]["tokens_per_s"],
        "speedup": b64["scalinglab_fp32"]["vs_transformers_fp32"],
        "compiled_tokens_per_s": float("nan"),
        "compiled_speedup": float("nan"),
        "compile_seconds": float("nan"),
        "note": "real model: the compiled path and the ragged case are not run (toy-model cases; see docs/engine.md)",
        **extra,
    }


def _spread(xs: list[float]) -> dict:
    import statistics

    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def _extras(table: dict, bounds: list[dict], startups: list[dict], steps: list[dict]) -> dict:
    """The per-round extras as medians with their spread; scalinglab's speeds as fractions of the bounds."""
    b = {k: _spread([r[k] for r in bounds]) for k in bounds[0]}
    frac = {
        "batch64_fp32": ("batch64", "scalinglab_fp32", "batch64_tokens_per_s_fp32"),
        "batch1_greedy_fp32": ("batch1_greedy", "scalinglab_fp32", "batch1_tokens_per_s_fp32"),
        "batch1_greedy_bf16": ("batch1_greedy", "scalinglab_bf16", "batch1_tokens_per_s_bf16"),
    }
    ratio = [r[200] / r[20] for r in steps]
    return {
        "bounds": b,
        "fraction_of_bound": {
            k: table[case][who]["tokens_per_s"] / b[bound]["median"] for k, (case, who, bound) in frac.items()
        },
        "startup": {k: _spread([r[k] for r in startups]) for k in startups[0]},
        "context": {
            "batch": "8 prompts x 8 samples, fp32, sampling",
            "step_ms_after_20": _spread([1e3 * r[20] for r in steps]),
            "step_ms_after_200": _spread([1e3 * r[200] for r in steps]),
            "ratio_200_to_20": _spread(ratio),
        },
    }


def summary(res: dict) -> str:
    """The human-readable lines of `bench engine` (the JSON has everything)."""
    if "cases" not in res:  # the toy-model cases
        out = (
            f"scalinglab {res['scalinglab_tokens_per_s']:.0f} tok/s ({res['speedup']:.2f}x), --compile "
            f"{res['compiled_tokens_per_s']:.0f} tok/s ({res['compiled_speedup']:.2f}x, compiled in "
            f"{res['compile_seconds']:.0f} s), transformers {res['transformers_tokens_per_s']:.0f} tok/s"
        )
        if "ragged" in res:
            r = res["ragged"]
            out += (
                f"\nragged (EOS, 256 prompts, 64 at a time): scalinglab {r['scalinglab_tokens_per_s']:.0f} tok/s, "
                f"transformers {r['transformers_tokens_per_s']:.0f} tok/s ({r['speedup']:.2f}x)"
            )
        return out
    lines = [
        f"{res['model']}: tokens/s, median (min-max) of {res['rounds']} interleaved rounds, {res['threads']} threads"
    ]
    for case, row in res["cases"].items():
        cells = [f"{who} {r['tokens_per_s']:.0f} ({r['min']:.0f}-{r['max']:.0f})" for who, r in row.items()]
        lines.append(f"{case}: " + ", ".join(cells))
    if "bounds" in res:
        b, f = res["bounds"], res["fraction_of_bound"]
        lines.append(
            f"bounds: fp32 GEMM {b['gemm_gflops_fp32']['median']:.0f} GFLOP/s -> batch 64 "
            f"{b['batch64_tokens_per_s_fp32']['median']:.0f} tok/s (scalinglab at {f['batch64_fp32']:.0%}); read "
            f"{b['read_gb_s']['median']:.0f} GB/s -> batch 1 {b['batch1_tokens_per_s_fp32']['median']:.0f} fp32 "
            f"({f['batch1_greedy_fp32']:.0%}), {b['batch1_tokens_per_s_bf16']['median']:.0f} bf16 ({f['batch1_greedy_bf16']:.0%})"
        )
        if "fraction_of_read_same_moment" in res:
            m = res["fraction_of_read_same_moment"]
            lines.append(
                "batch 1 against a 1 GiB read right after each call: "
                + ", ".join(
                    f"{k.removeprefix('batch1_greedy_')} {v['median']:.0%} ({v['min']:.0%}-{v['max']:.0%})"
                    for k, v in m.items()
                )
            )
        st, c = res["startup"], res["context"]
        lines.append(
            f"start-up of generate: {st['outside_decode_seconds']['median']:.2f} s outside decoding "
            f"(import torch alone {st['import_torch_seconds']['median']:.2f} s); decode step after 200-token "
            f"prompts {c['ratio_200_to_20']['median']:.2f}x the step after 20"
        )
    for name, note in res.get("skipped", {}).items():
        lines.append(f"skipped {name}: {note}")
    return "\n".join(lines)
