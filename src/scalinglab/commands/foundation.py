"""Foundation commands: pretrain, generate, export-hf, bench engine."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from scalinglab.commands.common import JSON_OPT, bench_app, emit, progress_bar
from scalinglab.config import set_help
from scalinglab.errors import UserError

MODEL_HELP = (
    "Run directory, local Hugging Face model directory, .gguf file (converted once, cached) "
    "or short name of a packaged model (smollm2-135m)."
)
CHAT_OPT = typer.Option(
    "auto",
    help="Chat template: auto (on when the tokenizer has one: instruct models), on, off "
    "(plain prompt, after the task's few-shot examples if it has them).",
)
SYSTEM_OPT = typer.Option(None, help="System message for the chat template (default: the template's own).")
DTYPE_OPT = typer.Option(
    "auto",
    help="Weights the decode loop reads: fp32, bf16, or auto (bf16 on CUDA, fp32 on a CPU, where it gives the "
    "same tokens on every machine and batch size). On a CPU bf16 halves the bytes each step reads: faster at "
    "small batches everywhere, about 2x at every batch with native bf16 dot products (AVX512-BF16/AMX); "
    "greedy tokens may differ from fp32 at near ties.",
)


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain_cmd)
    app.command("generate")(generate_cmd)
    app.command("export-hf")(export_hf_cmd)


def pretrain_cmd(
    task: str = typer.Option(
        "arithmetic", help="Task whose worked solutions form the corpus (see `scalinglab tasks`)."
    ),
    depth: int = typer.Option(2, help="Model size dial: width 64·depth, depth layers, heads and LR follow."),
    steps: int = typer.Option(300, help="Optimizer steps (ignored when --tokens is given)."),
    tokens: int = typer.Option(0, help="Training-token budget D; sets the number of steps."),
    seed: int = typer.Option(0, help="Seed for initialisation and data order."),
    out: Path = typer.Option(..., help="Run directory to create (or to continue with --resume)."),
    resume: bool = typer.Option(False, help="Continue a killed run from its last checkpoint."),
    set_: Optional[List[str]] = typer.Option(
        None, "--set", help=set_help("pretrain", "--set lr=3e-3 --set batch_size=16")
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Pre-train a transformer from scratch on a task's worked solutions.

    Example: scalinglab pretrain --task arithmetic --depth 2 --steps 1500 --seed 0 --out runs/A
    """
    from scalinglab.config import override
    from scalinglab.train.pretrain import PretrainConfig, pretrain

    cfg = override(PretrainConfig(), {"task": task, "depth": depth, "steps": steps, "tokens": tokens, "seed": seed})
    cfg = override(cfg, set_ or [])
    with progress_bar(f"pretrain d{cfg.depth}", enabled=True) as bar:
        summary = pretrain(cfg, str(out), resume=resume, progress=bar)
    emit(summary, as_json, human=_human_summary(summary))


def _human_summary(s: dict) -> str:
    keys = ["params", "tokens", "flops", "train_loss", "val_loss", "accuracy", "seconds", "model"]
    return "\n".join(
        f"{k:>12}: {s[k]:.4g}" if isinstance(s.get(k), float) else f"{k:>12}: {s.get(k)}" for k in keys if k in s
    )


def generate_cmd(
    model: Path = typer.Option(..., help=MODEL_HELP),
    prompts: Path = typer.Option(..., help="Text file, one prompt per line (write \\n for a newline inside a prompt)."),
    n: int = typer.Option(1, help="Samples per prompt; they share one prefill of the prompt."),
    max_new_tokens: int = typer.Option(64, help="Generated-token limit per sample."),
    temperature: float = typer.Option(1.0, help="Sampling temperature."),
    top_k: int = typer.Option(0, help="Keep the k most likely tokens (0 = all)."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling mass (1 = all)."),
    greedy: bool = typer.Option(False, help="Greedy (argmax) decoding."),
    ignore_eos: bool = typer.Option(False, help="Keep generating past EOS (for benchmarks)."),
    stop: Optional[List[str]] = typer.Option(None, help="Stop string (repeatable)."),
    seed: int = typer.Option(0),
    max_batch: int = typer.Option(64, help="Sequences decoded together."),
    dtype: str = DTYPE_OPT,
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    compile: bool = typer.Option(
        False,
        "--compile",
        help="Decode through a torch.compile graph (n=1), compiled once (10-20 s, "
        "cached on disk). For GPUs: on a CPU the default native C++ decode loop is faster.",
    ),
    chat: str = CHAT_OPT,
    system: Optional[str] = SYSTEM_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Sample completions; prints completions, token counts and tokens/s.

    With a chat template (instruct models, --chat auto), each line is one user message and
    generation stops at the end of the assistant's turn.

    Example: scalinglab generate --model smollm2-135m --prompts prompts.txt --greedy --max-new-tokens 32
    """
    from scalinglab.device import pick_device
    from scalinglab.engine import Engine, SamplingParams
    from scalinglab.engine.sampling import check_sampling
    from scalinglab.engine.steps import decode_dtypes
    from scalinglab.model.hf import load_model
    from scalinglab.model.prompting import PromptFormat

    check_sampling(
        True, n=n, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, max_batch=max_batch
    )
    lines = _read_prompts(prompts)
    dev = pick_device(device)
    load_dtype, weight_dtype = decode_dtypes(dtype, dev)
    m, tok = load_model(model, device=dev, dtype=load_dtype)
    fmt = PromptFormat(tok, chat, system)
    lines = [fmt.render(line) for line in lines]
    params = SamplingParams(
        n=n,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        greedy=greedy,
        ignore_eos=ignore_eos,
        stop=tuple(stop or ()),
        seed=seed,
    )
    engine = Engine(m, tok, max_batch=max_batch, compile=compile, weight_dtype=weight_dtype)
    with progress_bar("generate", enabled=True) as bar:
        res = engine.generate(lines, params, progress=bar)
    out = {
        "completions": [[c.text for c in g.completions] for g in res.generations],
        "prompt_tokens": res.prompt_tokens,
        "generated_tokens": res.generated_tokens,
        "seconds": res.seconds,
        "pack_seconds": res.pack_seconds,
        "tokens_per_s": res.tokens_per_s,
        "flops": res.flops,
        "decode_path": res.decode_path,
        "dtype": str(engine.decode_dtype()).removeprefix("torch."),
        "chat": fmt.chat,
        "finish_reasons": [[c.finish_reason for c in g.completions] for g in res.generations],
    }
    emit(
        out,
        as_json,
        human="\n".join(f"[{i}] {c!r}" for i, g in enumerate(out["completions"]) for c in g)
        + f"\n{res.generated_tokens} tokens in {res.seconds:.2f}s ({res.tokens_per_s:.0f} tok/s)"
        + _bf16_hint(engine.matmul_kind(), dev),
    )


def _bf16_hint(matmul_kind: str, dev) -> str:
    """A note after an fp32 run where the native path would multiply bf16 natively (this CPU and build, not
    turned off by $SCALINGLAB_BF16_PRODUCTS=0), so that --dtype bf16 is about twice as fast."""
    from scalinglab.engine import steps

    if dev.type != "cpu" or matmul_kind != "fp32" or not steps.bf16_products():
        return ""
    return "\n(this CPU has bf16 dot products: --dtype bf16 is about 2x faster)"


def _read_prompts(path: Path) -> list[str]:
    from scalinglab.runs.store import read_text

    text = read_text(path, "prompts file")  # missing, a directory, binary: one line naming it
    lines = [line.replace("\\n", "\n") for line in text.splitlines() if line.strip()]
    if not lines:
        raise UserError(f"prompts file {path}: no prompts (it is empty)")
    return lines


def export_hf_cmd(
    run: Path = typer.Argument(..., help="Run directory (or model directory) to export."),
    out: Path = typer.Argument(..., help="Directory to write config.json, model.safetensors and tokenizer files into."),
    as_json: bool = JSON_OPT,
) -> None:
    """Write a checkpoint as a Hugging Face model directory that `transformers` loads."""
    from scalinglab.model.hf import load_model, save_model

    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out}: directory exists and is not empty")
    m, tok = load_model(run)
    save_model(m, tok, out)
    emit({"out": str(out), "files": sorted(p.name for p in out.iterdir())}, as_json, human=f"exported to {out}")


@bench_app.command("engine")
def bench_engine_cmd(
    model: Optional[Path] = typer.Option(
        None, help="Model to benchmark (default: a random-initialised depth-2 model)."
    ),
    sequences: int = typer.Option(64, help="Sequences generated (one prompt each)."),
    new_tokens: int = typer.Option(64, help="New tokens per sequence (EOS ignored)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    repeats: int = typer.Option(3, help="Timed repeats per side; the best is reported."),
    ragged: bool = typer.Option(
        True,
        help="Also the continuous-batching case: 256 prompts, 64 at a time, up to 256 new "
        "tokens, stopping at EOS (useful tokens/s of each side).",
    ),
    shape: Optional[str] = typer.Option(
        None,
        help="Instead of --model: a random-weight model in a real shape, built by the benchmark "
        "(qwen2.5-0.5b: 24 layers, width 896, vocabulary 151,936; about 2 GB in fp32).",
    ),
    layers: Optional[int] = typer.Option(None, help="With --shape: keep only this many layers."),
    extras: bool = typer.Option(
        True,
        help="With --model or --shape, once per round: the CPU's GEMM and memory bounds, the start-up of "
        "`scalinglab generate`, and the decode step after 20- and 200-token prompts.",
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """scalinglab generate (default and --compile) vs transformers generate on the same exported model, side by side.

    Sampling at temperature 1, EOS ignored, one prompt per sequence; the best of --repeats
    timed runs after a warm-up counts (the compiled path's compile time is reported apart).
    """
    from scalinglab.bench.engine import run_benchmark, summary

    if shape is not None and model is not None:
        raise UserError("--shape builds its own model: give --model or --shape, not both")
    if layers is not None and (shape is None or layers < 1):
        raise UserError(f"--layers {layers}: only with --shape, and at least 1")
    res = run_benchmark(
        model=model,
        sequences=sequences,
        new_tokens=new_tokens,
        device=device,
        repeats=repeats,
        ragged=ragged,
        shape=shape,
        layers=layers,
        extras=extras,
    )
    emit(res, as_json, human=summary(res))
