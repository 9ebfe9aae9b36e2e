"""llama.cpp (through `llama_cpp`, llama-cpp-python's low-level bindings) as a contender in the engine benchmark.

What is measured: generated tokens per second of llama.cpp's own batched decoding, on a CPU, with the
same prompts and the same sampling as the other contenders of `bench.engine.real_model_benchmark`:
temperature 1 over the full vocabulary (llama.cpp's `dist` sampler alone: no top-k, top-p or
penalties) or greedy, exactly `new_tokens` new tokens per sequence, EOS ignored. `llama_call` runs in
a fresh "spawn" child process (`bench.child`, like `bench.ct2.ct2_call`, so nothing of llama.cpp, its OpenMP
threads included, stays beside the other contenders), loads the model, runs the case once untimed
(warm-up), clears the KV cache, then runs it once timed. Only the generation is timed: prefill,
decoding and sampling (tokenization, model load and context set-up are not).

How it is driven: the `len(prompts) * n` sequences decode together, one token each per
`llama_decode` call (one batch of `len(prompts) * n` tokens per step), each sampled by its own
sampler chain (`llama_sampler_chain_init` + `llama_sampler_init_dist(seed)` or
`llama_sampler_init_greedy()`, seed = the sequence's index, so runs are reproducible). Prompts are
tokenized by llama.cpp's tokenizer with `add_special=True`, which adds BOS only where the model's
metadata asks for it (SmolLM2's says no), and special tokens in the text are parsed as such.

Prefill sharing, as in scalinglab's engine: each prompt is prefilled once (all prompts in one
`llama_decode` call), and with `n > 1` its KV cache is copied to its other `n - 1` sequences with
`llama_memory_seq_cp`; the first token of all `n` sequences is sampled from that one prefill's
logits. The context keeps llama.cpp's default `kv_unified=False`: every sequence has its own KV
stream of `n_ctx / n_seq_max` cells, and attends only over its own tokens; the copy between streams
is a buffer copy (no recompute) done at the next `llama_decode`. `transformers` `generate`, by
contrast, prefills all `len(prompts) * n` copies.

`gguf_variants` gives the files to run: the GGUF as packaged (e.g. Q4_1 weights) plus F32 and BF16
GGUFs of the same (de-quantised) weights, made by llama.cpp's own quantizer
(`llama_model_quantize`), so the F32 and BF16 variants match scalinglab's fp32 and bf16 contenders,
which load the same Q4_1 file de-quantised. KV cache in F16 and flash attention on "auto"
(llama.cpp's defaults) in every variant.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import sys
import time
from pathlib import Path

from scalinglab.bench.child import run_in_child

# the variants made from any GGUF: name suffix -> llama_ftype (llama.h)
_MADE = {"f32": 0, "bf16": 32}  # LLAMA_FTYPE_ALL_F32, LLAMA_FTYPE_MOSTLY_BF16
# ggml.h's levels: DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continues the previous message). Not those of
# llama_cpp/_logger.py (INFO 1 ... ERROR 3, an older enum): its set_verbose(False) shows warnings, hides errors
_ERROR = 4
_log_cb = None  # the quiet log callback, kept alive for as long as llama.cpp may call it
_last_level = [0]


def _quiet_callback():
    """A llama.cpp log callback that lets errors through (to stderr) and drops info, warnings and debug."""
    global _log_cb
    if _log_cb is None:
        import llama_cpp

        @llama_cpp.llama_log_callback
        def cb(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
            if level != 5:
                _last_level[0] = level
            if _last_level[0] == _ERROR:
                sys.stderr.write(text.decode("utf-8", "replace"))

        _log_cb = cb
    return _log_cb


@contextlib.contextmanager
def _quiet_logs():
    """llama.cpp's (and ggml's) console logging reduced to errors, and put back as it was afterwards."""
    import llama_cpp

    old_cb, old_data = llama_cpp.llama_log_callback(), ctypes.c_void_p()
    llama_cpp.llama_log_get(ctypes.byref(old_cb), ctypes.byref(old_data))
    llama_cpp.llama_log_set(_quiet_callback(), ctypes.c_void_p(0))
    try:
        yield
    finally:
        llama_cpp.llama_log_set(old_cb, old_data)


def _source_gguf(model) -> Path | None:
    """The GGUF file `model` (a packaged short name or a path) stands for; None for anything else (an HF directory)."""
    from scalinglab.model.gguf import is_gguf
    from scalinglab.model.registry import is_short_name, packaged_model_file

    path = packaged_model_file(str(model)) if is_short_name(str(model)) else Path(model)
    if not is_gguf(path):
        return None
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file {path}")
    return path


def gguf_weight_type(path: Path) -> str:
    """The file's weight type, lower-case, as llama.cpp names its file types: "q4_1", "f32", "bf16", ...

    `general.file_type` (a llama_ftype) as llama.cpp reads it (a vocabulary-only load, 0.1 s; the
    `gguf` package's GGUFReader takes 2 s on SmolLM2, parsing its vocabulary in Python); where that
    key is absent, the type of most 2-D tensors, by GGUFReader."""
    import llama_cpp

    with _quiet_logs():
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            raise RuntimeError(f"llama.cpp could not read {path}")
        try:
            buf = ctypes.create_string_buffer(32)
            got = llama_cpp.llama_model_meta_val_str(model, b"general.file_type", buf, len(buf))
        finally:
            llama_cpp.llama_model_free(model)
    names = {v: k for k, v in vars(llama_cpp).items() if k.startswith("LLAMA_FTYPE_") and isinstance(v, int)}
    name = names.get(int(buf.value)) if got > 0 and buf.value.isdigit() else None
    if name is not None and name != "LLAMA_FTYPE_GUESSED":
        return name.split("_", 3)[3].lower()  # LLAMA_FTYPE_MOSTLY_Q4_1 -> q4_1, LLAMA_FTYPE_ALL_F32 -> f32
    from collections import Counter

    from gguf import GGUFReader

    types = Counter(t.tensor_type.name for t in GGUFReader(path).tensors if len(t.shape) >= 2)
    return types.most_common(1)[0][0].lower()


def _quantize(src: Path, dst: Path, ftype: int, threads: int) -> None:
    """`src` rewritten by llama.cpp's quantizer with all 2-D tensors in `ftype` (1-D ones stay F32), into `dst`.

    Written under a temporary name beside `dst` and renamed when complete, so a killed run leaves
    nothing that looks finished."""
    import llama_cpp

    part = dst.with_name(f".{dst.name}.{os.getpid()}.partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True  # the source is quantized: de-quantise it
    params.nthread = threads
    try:
        with _quiet_logs():
            rc = llama_cpp.llama_model_quantize(str(src).encode(), str(part).encode(), ctypes.byref(params))
        if rc != 0:
            raise RuntimeError(f"llama_model_quantize({src} -> {dst.name}, ftype {ftype}) failed: {rc}")
        os.replace(part, dst)
    finally:
        part.unlink(missing_ok=True)


def gguf_variants(model, tmp: Path) -> dict[str, Path]:
    """The llama.cpp contenders for `model` (a packaged short name or a .gguf path): name -> GGUF file.

    {"llama.cpp_<type of the file>": the file itself, "llama.cpp_f32": an F32 GGUF of the same
    weights, "llama.cpp_bf16": a BF16 one}, the latter two made under `tmp` by llama.cpp's quantizer
    (2-D tensors converted, 1-D ones F32) and reused when already there (named after the source's
    path, size and mtime). A file that already is F32 or BF16 stands for that variant itself. {} for
    a model that is not a GGUF (a Hugging Face directory): llama.cpp needs a GGUF source."""
    src = _source_gguf(model)
    if src is None:
        return {}
    native = gguf_weight_type(src)
    out = {f"llama.cpp_{native}": src}
    st = src.stat()
    key = hashlib.sha256(repr((str(src.resolve()), st.st_size, st.st_mtime_ns)).encode()).hexdigest()[:12]
    tmp = Path(tmp)
    for name, ftype in _MADE.items():
        if name == native:
            continue
        dst = tmp / f"{src.stem}-{key}.{name}.gguf"
        if not dst.is_file():
            tmp.mkdir(parents=True, exist_ok=True)
            _quantize(src, dst, ftype, threads=min(os.cpu_count() or 1, 8))
        out[f"llama.cpp_{name}"] = dst
    return out


def _tokenize(llama_cpp, vocab, text: str) -> list[int]:
    data = text.encode("utf-8")
    size = len(data) + 8
    while True:
        buf = (llama_cpp.llama_token * size)()
        got = llama_cpp.llama_tokenize(vocab, data, len(data), buf, size, True, True)
        if got >= 0:
            return list(buf[:got])
        size = -got


def _samplers(llama_cpp, n_seq: int, greedy: bool) -> list:
    """One sampler chain per sequence: greedy, or `dist` (temperature 1, full vocabulary) seeded by the sequence's index."""
    chains = []
    for s in range(n_seq):
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        llama_cpp.llama_sampler_chain_add(
            chain, llama_cpp.llama_sampler_init_greedy() if greedy else llama_cpp.llama_sampler_init_dist(s)
        )
        chains.append(chain)
    return chains


def _generate(llama_cpp, ctx, batch, toks: list[list[int]], n: int, samplers: list, new_tokens: int) -> int:
    """Prefill each prompt once (prompt i in sequence i), copy its KV to sequences i + P, i + 2P, ...
    (P prompts), then decode all sequences together for `new_tokens` tokens each. Returns the tokens made."""
    n_prompts, n_seq = len(toks), len(toks) * n
    if new_tokens <= 0:
        return 0
    k = 0
    last = []  # the batch index of each prompt's last token: its logits give every copy's first token
    for i, ids in enumerate(toks):
        for j, tok in enumerate(ids):
            batch.token[k], batch.pos[k], batch.n_seq_id[k] = tok, j, 1
            batch.seq_id[k][0] = i
            batch.logits[k] = j == len(ids) - 1
            k += 1
        last.append(k - 1)
    batch.n_tokens = k
    if (rc := llama_cpp.llama_decode(ctx, batch)) != 0:
        raise RuntimeError(f"llama_decode (prefill of {k} tokens) failed: {rc}")
    mem = llama_cpp.llama_get_memory(ctx)
    for s in range(n_prompts, n_seq):
        llama_cpp.llama_memory_seq_cp(mem, s % n_prompts, s, -1, -1)
    sample = llama_cpp.llama_sampler_sample
    cur = [sample(samplers[s], ctx, last[s % n_prompts]) for s in range(n_seq)]
    count = n_seq
    for step in range(1, new_tokens):
        for s in range(n_seq):
            batch.token[s], batch.pos[s], batch.n_seq_id[s] = cur[s], len(toks[s % n_prompts]) + step - 1, 1
            batch.seq_id[s][0] = s
            batch.logits[s] = 1
        batch.n_tokens = n_seq
        if (rc := llama_cpp.llama_decode(ctx, batch)) != 0:
            raise RuntimeError(f"llama_decode (step {step}, {n_seq} sequences) failed: {rc}")
        cur = [sample(samplers[s], ctx, s) for s in range(n_seq)]
        count += n_seq
    return count


def _run(gguf: str, threads: int, spec: tuple, new_tokens: int, extra_bufts: bool) -> tuple[int, float]:
    """In the child: load, warm up, clear the KV cache, time one run; everything freed afterwards."""
    import llama_cpp

    prompts, n, greedy = spec
    llama_cpp.llama_log_set(_quiet_callback(), ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    mparams = llama_cpp.llama_model_default_params()
    mparams.use_extra_bufts = extra_bufts
    model = llama_cpp.llama_model_load_from_file(gguf.encode(), mparams)
    if not model:
        raise RuntimeError(f"llama.cpp could not load {gguf}")
    ctx = batch = None
    try:
        toks = [_tokenize(llama_cpp, llama_cpp.llama_model_get_vocab(model), p) for p in prompts]
        if not toks or min(map(len, toks)) == 0:
            raise ValueError("llama_call needs at least one prompt, and no empty ones")
        n_seq = len(toks) * n
        if n_seq > llama_cpp.llama_max_parallel_sequences():
            raise ValueError(f"{n_seq} sequences: llama.cpp allows {llama_cpp.llama_max_parallel_sequences()}")
        longest, n_prefill = max(map(len, toks)), sum(map(len, toks))
        params = llama_cpp.llama_context_default_params()
        # every sequence its own KV stream of n_ctx / n_seq_max cells; llama.cpp makes that at least 256
        # (and rounds n_ctx down to a multiple of n_seq_max, with an error message): ask for that size
        params.n_ctx = n_seq * -(-(longest + new_tokens) // 256) * 256
        params.n_seq_max = n_seq
        params.n_batch = params.n_ubatch = max(n_prefill, n_seq)  # the whole prefill in one llama_decode
        params.n_threads = params.n_threads_batch = threads
        ctx = llama_cpp.llama_init_from_model(model, params)
        if not ctx:
            raise RuntimeError(f"llama.cpp could not make a context of {params.n_ctx} for {n_seq} sequences")
        batch = llama_cpp.llama_batch_init(params.n_batch, 0, 1)
        seconds = 0.0
        for timed in (False, True):  # warm-up, then the timed run
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            samplers = _samplers(llama_cpp, n_seq, greedy)
            try:
                t = time.perf_counter()
                count = _generate(llama_cpp, ctx, batch, toks, n, samplers, new_tokens)
                seconds = time.perf_counter() - t
            finally:
                for chain in samplers:
                    llama_cpp.llama_sampler_free(chain)
        return count, seconds
    finally:
        if batch is not None:
            llama_cpp.llama_batch_free(batch)
        if ctx:
            llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)
        llama_cpp.llama_backend_free()


def llama_call(
    gguf: Path, threads: int, spec: tuple, new_tokens: int, *, extra_bufts: bool = False
) -> tuple[int, float]:
    """One timed llama.cpp run of case `spec` = (prompts, n, greedy) in a fresh spawn child process.

    `len(prompts) * n` sequences, `new_tokens` each (EOS ignored), `threads` threads for decoding and
    prefill; each prompt prefilled once and its KV cache copied to its `n` sequences (see the module
    docstring). Returns (generated tokens, seconds) of the timed run, which follows one untimed warm-up
    run in the same child. A failure in the child is raised here as a RuntimeError with its traceback.

    `extra_bufts` is llama.cpp's `use_extra_bufts` (repacked weight layouts for quantized types: AMX,
    CPU repack), off by default: with it, llama.cpp's AMX path crashed the first `llama_decode` of
    the Q4_1 SmolLM2 file (SIGSEGV, llama-cpp-python 0.3.36, AVX512/AMX CPU in a VM, AMX permitted
    by the kernel; 2026-12-02). F32 and BF16 weights never use the extra buffer types, so only
    quantized variants are affected (they run on ggml's plain CPU kernels)."""
    prompts, n, greedy = spec
    args = (str(gguf), threads, (list(prompts), n, greedy), new_tokens, extra_bufts)
    return run_in_child(_run, *args, what="llama.cpp")
