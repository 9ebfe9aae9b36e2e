"""`scalinglab tokenomics ...`: what long chains of thought cost to serve (and to train).

Thin wrappers over `scalinglab.tokenomics`: parse, call one library function, emit.
"""

from __future__ import annotations

from pathlib import Path

import typer

from scalinglab.commands import common
from scalinglab.errors import UserError

app = typer.Typer(
    help="Serving economics of long chains of thought: KV cache, batch limits, step times, "
    "simulated serving, $ per answer, training cost. Hardware and model catalogs with sources; "
    "any HF config.json works as --model.",
    no_args_is_help=True,
)

MODEL = typer.Option(
    "Llama-3.1-8B",
    "--model",
    "-m",
    help="Catalog model (Llama-3.1-8B/70B/405B, Qwen2.5-0.5B/7B/72B, "
    "Mixtral-8x7B, DeepSeek-V3, DeepSeek-R1, GPT-OSS-120B) or a path to a config.json / model dir.",
)
HW = typer.Option(
    "H100",
    "--hardware",
    "--hw",
    help="H100, H200, B200, GB200, MI300X, MI325X, TPU-v5e, TPU-v5p, "
    "TPU-v6e, Trainium2, H800, or local-cpu (this machine, after `tokenomics calibrate`).",
)
TP = typer.Option(1, "--tp", help="Tensor-parallel degree.")
PP = typer.Option(1, "--pp", help="Pipeline-parallel degree.")
EP = typer.Option(1, "--ep", help="Expert-parallel degree (> --tp: data-parallel attention groups).")
WDT = typer.Option("bf16", "--weights-dtype", help="Block weights: fp32, bf16, fp8, int8, fp4 (NVFP4), mxfp4, int4.")
EDT = typer.Option(None, "--expert-dtype", help="Routed-expert weights when different (GPT-OSS ships mxfp4).")
KVDT = typer.Option("bf16", "--kv-dtype", help="KV cache: fp32, bf16, fp8, int4.")
GMU = typer.Option(0.9, "--gpu-memory-utilization", help="Fraction of HBM the engine may use (vLLM default 0.9).")
MAX_SEQS = typer.Option(1024, "--max-num-seqs", help="Scheduler cap on running sequences per attention group.")
MAX_TOK = typer.Option(8192, "--max-num-batched-tokens", help="Token budget per step (chunked prefill).")
MFU = typer.Option(None, "--mfu", help="Override the hardware's matmul efficiency (achieved/peak FLOP/s).")
MBU = typer.Option(None, "--mbu", help="Override the hardware's memory-bandwidth efficiency.")
PRICE = typer.Option(None, "--usd-per-hour", help="Override the rental price per chip-hour.")


def _hw(name: str, mfu: float | None = None, mbu: float | None = None, price: float | None = None):
    from scalinglab.tokenomics.catalog import get_hardware

    hw = get_hardware(name)
    changes = {k: v for k, v in (("mfu", mfu), ("mbu", mbu), ("usd_per_hour", price)) if v is not None}
    for k, v in changes.items():
        if v <= 0:
            raise UserError(f"--{k.replace('_', '-')} must be positive, got {v}")
    return hw.with_(**changes) if changes else hw


def _step(
    model, hardware, tp, pp, ep, wdt, edt, kvdt, gmu=0.9, max_seqs=1024, max_tok=8192, mfu=None, mbu=None, price=None
):
    from scalinglab.tokenomics.catalog import get_model
    from scalinglab.tokenomics.kv import kv_elem_bytes
    from scalinglab.tokenomics.memory import Parallel, ServeConfig, weight_elem_bytes
    from scalinglab.tokenomics.roofline import StepModel

    weight_elem_bytes(wdt), kv_elem_bytes(kvdt)  # validate names early
    if edt:
        weight_elem_bytes(edt)
    if max_seqs < 1 or max_tok < 1:
        raise UserError("--max-num-seqs and --max-num-batched-tokens must be >= 1")
    cfg = ServeConfig(
        par=Parallel(tp, pp, ep),
        weights_dtype=wdt,
        expert_dtype=edt,
        kv_dtype=kvdt,
        gpu_memory_utilization=gmu,
        max_num_seqs=max_seqs,
        max_num_batched_tokens=max_tok,
    )
    return StepModel(get_model(model), _hw(hardware, mfu, mbu, price), cfg)


def _positive(**kw):
    for k, v in kw.items():
        if v is not None and v < 1:
            raise UserError(f"--{k.replace('_', '-')} must be >= 1, got {v}")


@app.command("kv")
def kv_cmd(
    model: str = MODEL,
    kv_dtype: str = KVDT,
    context: int = typer.Option(None, "--context", help="Also give the bytes one sequence of this length holds."),
    as_json: bool = common.JSON_OPT,
) -> None:
    """KV-cache bytes per token (MHA/GQA/MQA: 2 x kv_heads x head_dim; MLA: kv_lora_rank + rope dim; per layer).

    Sliding-window layers hold at most their window, so hybrid models grow more slowly at long
    context (`kv_bytes_per_token_long_context`).

    Example:  scalinglab tokenomics kv --model Llama-3.1-70B --json   -> 327680 bytes/token
    """
    from scalinglab.tokenomics.catalog import get_model
    from scalinglab.tokenomics.kv import kv_summary

    _positive(context=context)
    r = kv_summary(get_model(model), kv_dtype, context)
    common.emit(r, as_json, f"{r['model']} ({r['attention']}): {r['kv_bytes_per_token']:,.0f} B/token in {kv_dtype}")


@app.command("memory")
def memory_cmd(
    model: str = MODEL,
    hardware: str = HW,
    tp: int = TP,
    pp: int = PP,
    ep: int = EP,
    weights_dtype: str = WDT,
    expert_dtype: str = EDT,
    kv_dtype: str = KVDT,
    gpu_memory_utilization: float = GMU,
    max_num_seqs: int = MAX_SEQS,
    max_num_batched_tokens: int = MAX_TOK,
    context: int = typer.Option(8192, "--context", help="Context length for max_batch."),
    as_json: bool = common.JSON_OPT,
) -> None:
    """Memory plan per chip: weights, activations, KV capacity, and the largest batch at --context.

    Example (the o1-style question):  scalinglab tokenomics memory --model Llama-3.1-405B --hardware H200
    --tp 8 --weights-dtype fp8 --context 20000 --json
    """
    from scalinglab.tokenomics.memory import memory_plan

    _positive(context=context)
    s = _step(
        model,
        hardware,
        tp,
        pp,
        ep,
        weights_dtype,
        expert_dtype,
        kv_dtype,
        gpu_memory_utilization,
        max_num_seqs,
        max_num_batched_tokens,
    )
    r = memory_plan(s.model, s.hw, s.cfg).summary(context)
    common.emit(
        r,
        as_json,
        f"{r['weights_gb_per_gpu']:.1f} GB weights/chip, {r['kv_gb_per_gpu']:.1f} GB KV/chip, "
        f"max batch {r['max_batch']} at {context} tokens",
    )


@app.command("decode")
def decode_cmd(
    model: str = MODEL,
    hardware: str = HW,
    batch: int = typer.Option(1, "--batch", "-b"),
    context: int = typer.Option(2048, "--context", help="Tokens already in each sequence's KV cache."),
    tp: int = TP,
    pp: int = PP,
    ep: int = EP,
    weights_dtype: str = WDT,
    expert_dtype: str = EDT,
    kv_dtype: str = KVDT,
    mfu: float = MFU,
    mbu: float = MBU,
    as_json: bool = common.JSON_OPT,
) -> None:
    """Roofline time of one decode step: weights read once, KV read per sequence, MoE experts touched.

    Example:  scalinglab tokenomics decode --model Llama-3.1-70B --hardware H100 --tp 2 --weights-dtype fp8
    --batch 32 --context 4096 --json   -> step_seconds, tokens_per_s, bound
    """
    from scalinglab.tokenomics.roofline import decode_summary

    _positive(batch=batch, context=context)
    s = _step(model, hardware, tp, pp, ep, weights_dtype, expert_dtype, kv_dtype, mfu=mfu, mbu=mbu)
    r = decode_summary(s, batch, context)
    common.emit(
        r, as_json, f"{r['step_seconds'] * 1e3:.2f} ms/step ({r['bound']}-bound), {r['tokens_per_s']:.0f} tok/s"
    )


@app.command("prefill")
def prefill_cmd(
    model: str = MODEL,
    hardware: str = HW,
    batch: int = typer.Option(1, "--batch", "-b"),
    input_len: int = typer.Option(2048, "--input-len", help="Prompt tokens per sequence."),
    cached: int = typer.Option(0, "--cached", help="Leading prompt tokens already in the prefix cache."),
    tp: int = TP,
    pp: int = PP,
    ep: int = EP,
    weights_dtype: str = WDT,
    expert_dtype: str = EDT,
    kv_dtype: str = KVDT,
    mfu: float = MFU,
    mbu: float = MBU,
    as_json: bool = common.JSON_OPT,
) -> None:
    """Roofline time to prefill --batch prompts of --input-len tokens (causal attention counted).

    Example:  scalinglab tokenomics prefill --model DeepSeek-V3 --hardware H200 --tp 8 --weights-dtype fp8 --json
    """
    from scalinglab.tokenomics.roofline import prefill_summary

    _positive(batch=batch, input_len=input_len)
    if not 0 <= cached < input_len:
        raise UserError(f"--cached {cached}: must be in [0, --input-len)")
    s = _step(model, hardware, tp, pp, ep, weights_dtype, expert_dtype, kv_dtype, mfu=mfu, mbu=mbu)
    r = prefill_summary(s, batch, input_len, cached)
    common.emit(
        r, as_json, f"{r['step_seconds'] * 1e3:.1f} ms ({r['bound']}-bound), {r['tokens_per_s']:.0f} prompt tok/s"
    )


@app.command("serve")
def serve_cmd(
    model: str = MODEL,
    hardware: str = HW,
    tp: int = TP,
    pp: int = PP,
    ep: int = EP,
    weights_dtype: str = WDT,
    expert_dtype: str = EDT,
    kv_dtype: str = KVDT,
    gpu_memory_utilization: float = GMU,
    max_num_seqs: int = MAX_SEQS,
    max_num_batched_tokens: int = MAX_TOK,
    mfu: float = MFU,
    mbu: float = MBU,
    input_len: str = typer.Option("1000", "--input-len", help="N, LO-HI (uniform) or lognormal:MEDIAN:SIGMA."),
    output_len: str = typer.Option("1000", "--output-len", help="Same forms as --input-len."),
    n_requests: int = typer.Option(500, "--n-requests"),
    rate: float = typer.Option(float("inf"), "--rate", help="Requests/s (Poisson); inf: all at t=0 (offline)."),
    concurrency: int = typer.Option(None, "--concurrency", help="Closed loop: this many clients (as AIPerf)."),
    prefix_caching: bool = typer.Option(False, "--prefix-caching/--no-prefix-caching"),
    shared_prefix: int = typer.Option(0, "--shared-prefix", help="Prompt tokens every request shares."),
    group_size: int = typer.Option(1, "--group-size", help="Samples per prompt (vote/GRPO groups)."),
    instances: int = typer.Option(1, "--instances", help="Aggregated instances (round-robin)."),
    disagg: str = typer.Option(None, "--disagg", help="P:D prefill and decode instances (disaggregated)."),
    warmup: int = typer.Option(0, "--warmup", help="First requests left out of the statistics."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = common.JSON_OPT,
) -> None:
    """Simulate serving: arrivals, continuous batching with chunked prefill, KV admission, optional prefix
    caching and prefill/decode disaggregation -> throughput, TTFT and TPOT percentiles.

    Example:  scalinglab tokenomics serve --model Llama-3.1-70B --hardware H100 --tp 2 --weights-dtype fp8
    --kv-dtype fp8 --input-len 5000 --output-len 500 --concurrency 100 --n-requests 800 --warmup 200 --json
    """
    from scalinglab.tokenomics.serve import Workload, simulate

    _positive(n_requests=n_requests, instances=instances, group_size=group_size, concurrency=concurrency)
    if rate <= 0:
        raise UserError(f"--rate must be positive, got {rate}")
    split = None
    if disagg:
        try:
            split = tuple(int(x) for x in disagg.split(":"))
            assert len(split) == 2 and min(split) >= 1
        except (ValueError, AssertionError):
            raise UserError(f"--disagg {disagg!r}: use P:D with positive integers, e.g. 1:3") from None
    s = _step(
        model,
        hardware,
        tp,
        pp,
        ep,
        weights_dtype,
        expert_dtype,
        kv_dtype,
        gpu_memory_utilization,
        max_num_seqs,
        max_num_batched_tokens,
        mfu,
        mbu,
    )
    w = Workload(input_len, output_len, n_requests, rate, concurrency, shared_prefix, group_size, warmup, seed)
    r = simulate(s, w, prefix_caching, instances, split)
    common.emit(
        r,
        as_json,
        f"{r['output_tokens_per_s']:.0f} output tok/s, TTFT p50 {r['ttft_s']['p50']:.3f}s, "
        f"TPOT p50 {(r['tpot_s']['p50'] or 0) * 1e3:.1f} ms",
    )


@app.command("cost")
def cost_cmd(
    model: str = MODEL,
    hardware: str = HW,
    tp: int = TP,
    pp: int = PP,
    ep: int = EP,
    weights_dtype: str = WDT,
    expert_dtype: str = EDT,
    kv_dtype: str = KVDT,
    gpu_memory_utilization: float = GMU,
    max_num_seqs: int = MAX_SEQS,
    mfu: float = MFU,
    mbu: float = MBU,
    usd_per_hour: float = PRICE,
    prompt_len: int = typer.Option(1000, "--prompt-len"),
    cot_len: str = typer.Option(
        "1000,4000,16000,32000", "--cot-len", help="Chain-of-thought lengths, comma-separated."
    ),
    samples: int = typer.Option(1, "--samples", "-n", help="Majority vote over N samples sharing the prompt."),
    batch: int = typer.Option(
        None, "--batch", help="Decode batch (default: the largest that fits, i.e. the cheapest and slowest per user)."
    ),
    plot: Path = typer.Option(None, "--plot", help="Write $ per answer vs CoT length to this image file."),
    as_json: bool = common.JSON_OPT,
) -> None:
    """$/M input and output tokens, and $ per answer as the chain of thought grows (batch shrinks as KV grows).

    Example:  scalinglab tokenomics cost --model Llama-3.1-405B --hardware H200 --tp 8 --weights-dtype fp8
    --cot-len 1000,4000,20000 --samples 8 --plot cost.png --json
    """
    from scalinglab.tokenomics.cost import cost_curve, plot_cost_curve, token_prices

    _positive(prompt_len=prompt_len, samples=samples, batch=batch)
    try:
        lens = [int(x) for x in cot_len.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--cot-len {cot_len!r}: give comma-separated integers") from None
    _positive(cot_len=min(lens) if lens else 0)
    s = _step(
        model,
        hardware,
        tp,
        pp,
        ep,
        weights_dtype,
        expert_dtype,
        kv_dtype,
        gpu_memory_utilization,
        max_num_seqs,
        mfu=mfu,
        mbu=mbu,
        price=usd_per_hour,
    )
    curve = cost_curve(s, prompt_len, lens, samples, batch)
    r = {"prices": token_prices(s, context=prompt_len + max(lens), input_len=prompt_len), "answers": curve}
    if plot:
        label = f"{s.model.name} on {s.n_gpus}x{s.hw.name}" + (f", vote@{samples}" if samples > 1 else "")
        try:
            plot_cost_curve({label: curve}, str(plot))
        except OSError as e:
            raise UserError(f"--plot {plot}: cannot write there ({e.strerror or e})") from None
        r["plot"] = str(plot)
    human = "\n".join(
        f"CoT {a['cot_len']:>6}: ${a['usd_per_answer']:.4f}/answer (batch {a['decode_batch']})" for a in curve
    )
    common.emit(r, as_json, human)


@app.command("train")
def train_cmd(
    params: float = typer.Option(..., "--params", help="Parameters N (e.g. 405e9)."),
    tokens: float = typer.Option(..., "--tokens", help="Training tokens D (e.g. 15.6e12)."),
    hardware: str = HW,
    gpus: int = typer.Option(1024, "--gpus"),
    mfu: float = typer.Option(0.40, "--mfu", help="Model FLOP utilisation (BF16 dense peak)."),
    mtbf: float = typer.Option(
        None, "--gpu-mtbf-hours", help="Per-GPU hours between job-stopping failures (default: Llama 3's 50,677)."
    ),
    usd_per_hour: float = PRICE,
    as_json: bool = common.JSON_OPT,
) -> None:
    """FLOPs (6ND), days, GPU-hours and $ to pre-train N parameters on D tokens, with failures and
    Young/Daly checkpoint-restart overhead.

    Example:  scalinglab tokenomics train --params 405e9 --tokens 15.6e12 --hardware H100 --gpus 16384 --json
    """
    from scalinglab.tokenomics.training import Cluster, pretrain_cost

    _positive(gpus=gpus)
    kw = {"gpu_mtbf_hours": mtbf} if mtbf else {}
    r = pretrain_cost(params, tokens, Cluster(_hw(hardware, price=usd_per_hour), gpus, mfu, **kw))
    common.emit(
        r,
        as_json,
        f"{r['flops']:.3g} FLOPs: {r['days']:.1f} days, {r['gpu_hours'] / 1e6:.2f} M GPU-h, ${r['usd'] / 1e6:.1f} M",
    )


@app.command("rl")
def rl_cmd(
    model: str = MODEL,
    hardware: str = HW,
    tp: int = TP,
    weights_dtype: str = WDT,
    kv_dtype: str = KVDT,
    steps: int = typer.Option(100, "--steps"),
    prompts: int = typer.Option(64, "--prompts", help="Prompts per step."),
    group: int = typer.Option(8, "--group-size", help="Samples per prompt."),
    prompt_len: int = typer.Option(300, "--prompt-len"),
    response_len: int = typer.Option(4000, "--response-len"),
    train_gpus: int = typer.Option(8, "--train-gpus"),
    train_mfu: float = typer.Option(0.4, "--train-mfu"),
    as_json: bool = common.JSON_OPT,
) -> None:
    """Cost of RL post-training (GRPO-style): rollouts priced with the serving model, plus the policy update.

    Example:  scalinglab tokenomics rl --model Qwen2.5-7B --hardware H100 --steps 200 --response-len 8000 --json
    """
    from scalinglab.tokenomics.training import Cluster, rl_cost

    _positive(
        steps=steps,
        prompts=prompts,
        group_size=group,
        prompt_len=prompt_len,
        response_len=response_len,
        train_gpus=train_gpus,
    )
    s = _step(model, hardware, tp, 1, 1, weights_dtype, None, kv_dtype)
    r = rl_cost(s, Cluster(s.hw, train_gpus, train_mfu), steps, prompts, group, prompt_len, response_len)
    common.emit(r, as_json, f"${r['usd']:.2f} total, rollouts {r['rollout_share']:.0%}")


@app.command("calibrate")
def calibrate_cmd(
    quick: bool = typer.Option(False, "--quick", help="Smaller, faster measurements."),
    model: Path = typer.Option(
        None,
        "--model",
        help="Time scalinglab's engine on this run or Hugging Face model "
        "directory and fit MFU/MBU/overhead to its decode steps.",
    ),
    reference_model: str = typer.Option(
        None,
        "--reference-model",
        help="Instead time the NumPy reference decoder on this dense GQA model and fit MFU/MBU/overhead.",
    ),
    path: Path = typer.Option(
        None, "--path", help="Where to store (default $SCALINGLAB_CALIBRATION or ~/.cache/scalinglab/calibration.json)."
    ),
    as_json: bool = common.JSON_OPT,
) -> None:
    """Measure this machine's matmul FLOP/s and memory bandwidth (NumPy) and store them for --hardware local-cpu.

    With --model, the engine's own decode steps are timed at several (batch, context) points and
    the efficiencies fitted, so `--hardware local-cpu` predictions describe this machine running it.
    Points are sampled in interleaved rounds and the fastest sample of each kept, so a busy machine
    does not bias the fit; the JSON gives each point's spread (min, median, max) and the load average.

    Example:  scalinglab tokenomics calibrate --model runs/A --json
    """
    from scalinglab.tokenomics.calibrate import calibrate

    measure, spec = None, None
    if model is not None:
        from scalinglab.engine.measure import engine_measure

        measure, spec = engine_measure(model)
    elif reference_model:
        from scalinglab.tokenomics.catalog import get_model
        from scalinglab.tokenomics.reference_decode import NumpyDecoder

        spec = get_model(reference_model)
        dec = NumpyDecoder(spec)
        measure = dec.measure
    with common.err.status(
        "measuring matmul and memory bandwidth" + (", then decode steps in interleaved rounds" if measure else "")
    ):
        r = calibrate(measure, spec, path=path, quick=quick)
    fit = (
        f"; fit error {r['efficiency']['fit_mean_rel_error']:.1%} over {r['rounds']} rounds of {len(r['points'])} points"
        if r["efficiency"]
        else ""
    )
    common.emit(
        r,
        as_json,
        f"{r['matmul_flops'] / 1e9:.1f} GFLOP/s matmul, {r['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s{fit} "
        f"(load average {r['load_average']['start']}) -> {r['path']}",
    )


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="tokenomics")
