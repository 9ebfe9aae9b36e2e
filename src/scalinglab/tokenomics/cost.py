"""What tokens and answers cost: $/M input and output tokens, $ per reasoning answer, and the
N-sample majority vote ("o1-pro" mode) with the prompt prefilled once and shared.

Pricing is rental time: chips x $/chip-hour x seconds, divided over the tokens a step makes.
  - output tokens: one decode step of batch B at context C costs n_chips x price x step(B, C) and
    yields B tokens; B defaults to the largest batch whose KV fits at that context;
  - input tokens: a full prefill chunk (`max_num_batched_tokens` of prompt) per step;
  - an answer with a chain of thought of L tokens after a P-token prompt decodes from context P
    to P + L at the batch that still fits at P + L (the KV cap of the longest point), so its
    decode cost is n_chips x price x (sum of step times) / B, integrated over the growing context
    with the trapezoid rule on 33 points;
  - a vote of N samples prefills the prompt once (prefix caching / parallel sampling) and holds
    its KV once per group: a group needs KV(P + L) + (N - 1) x [KV(P + L) - KV(P)].
Attention kernels still read the shared prompt KV once per sample (no cascade attention).
"""

from __future__ import annotations

import math

import numpy as np

from scalinglab.errors import UserError
from scalinglab.tokenomics.memory import MemoryPlan, memory_plan
from scalinglab.tokenomics.roofline import StepModel


def usd_per_second(step: StepModel) -> float:
    return step.n_gpus * step.hw.usd_per_hour / 3600.0


def token_prices(step: StepModel, context: int = 2048, batch: int | None = None, input_len: int = 2048) -> dict:
    """$/M output tokens (decode at `context`, `batch` or the max that fits) and $/M input tokens."""
    plan = memory_plan(step.model, step.hw, step.cfg)
    b = batch or plan.max_batch(context)
    if b < 1:
        raise UserError(f"no sequence of {context} tokens fits in KV memory on {step.n_gpus} x {step.hw.name}")
    dec = step.decode(b, context)
    per_prompt_batch = max(1, step.cfg.max_num_batched_tokens // input_len)
    pre = step.prefill(per_prompt_batch, input_len)
    out_tps, in_tps = b / dec.seconds, per_prompt_batch * input_len / pre.seconds
    return {
        "model": step.model.name,
        "hardware": step.hw.name,
        "n_gpus": step.n_gpus,
        "usd_per_gpu_hour": step.hw.usd_per_hour,
        "decode_batch": b,
        "context": context,
        "output_tokens_per_s": out_tps,
        "input_tokens_per_s": in_tps,
        "usd_per_m_output": usd_per_second(step) / out_tps * 1e6,
        "usd_per_m_input": usd_per_second(step) / in_tps * 1e6,
        "decode_bound": dec.bound,
    }


def vote_batch(plan: MemoryPlan, prompt_len: int, cot_len: int, n_samples: int, shared: bool = True) -> int:
    """Sequences that fit when groups of `n_samples` share a `prompt_len` prefix and each grows `cot_len`."""
    full = plan.seq_bytes_per_gpu(prompt_len + cot_len)
    extra = full - plan.seq_bytes_per_gpu(prompt_len) if shared else full
    group = full + (n_samples - 1) * extra
    groups = math.floor(max(plan.kv_free_bytes, 0.0) * plan.cfg.par.attn_groups / group)
    return min(groups * n_samples, plan.cfg.max_num_seqs * plan.cfg.par.attn_groups)


def answer_cost(
    step: StepModel,
    prompt_len: int,
    cot_len: int,
    n_samples: int = 1,
    shared_prefix: bool = True,
    batch: int | None = None,
) -> dict:
    """$ and seconds for one answer (or one N-sample vote) with a `cot_len`-token chain of thought."""
    if prompt_len < 1 or cot_len < 1 or n_samples < 1:
        raise UserError("--prompt-len, --cot-len and --samples must be >= 1")
    plan = memory_plan(step.model, step.hw, step.cfg)
    fits = vote_batch(plan, prompt_len, cot_len, n_samples, shared_prefix)
    if batch and batch > fits:
        raise UserError(f"--batch {batch}: only {fits} sequences of {prompt_len}+{cot_len} tokens fit")
    b = batch or fits
    if b < 1:
        raise UserError(f"a {prompt_len}+{cot_len}-token sequence does not fit on {step.n_gpus} x {step.hw.name}")
    ctx = np.linspace(prompt_len, prompt_len + cot_len, 33)
    steps = np.array([step.decode(b, c).seconds for c in ctx])
    decode_s = float(np.trapezoid(steps, ctx))  # sum over cot_len steps of the step time
    pb = max(1, step.cfg.max_num_batched_tokens // prompt_len)
    prefill_s_per_prompt = step.prefill(pb, prompt_len).seconds / pb
    prefills = 1 if shared_prefix else n_samples
    rate = usd_per_second(step)
    prefill_usd = prefills * prefill_s_per_prompt * rate
    decode_usd = n_samples * decode_s / b * rate
    return {
        "model": step.model.name,
        "hardware": step.hw.name,
        "n_gpus": step.n_gpus,
        "prompt_len": prompt_len,
        "cot_len": cot_len,
        "n_samples": n_samples,
        "shared_prefix": shared_prefix,
        "decode_batch": b,
        "prefill_usd": prefill_usd,
        "decode_usd": decode_usd,
        "usd_per_answer": prefill_usd + decode_usd,
        "usd_per_sample": (prefill_usd + decode_usd) / n_samples,
        "latency_s": prefill_s_per_prompt + decode_s,
        "mean_tokens_per_s_per_user": cot_len / decode_s,
        "usd_per_m_output": decode_usd / (n_samples * cot_len) * 1e6,
    }


def cost_curve(
    step: StepModel, prompt_len: int, cot_lengths: list[int], n_samples: int = 1, batch: int | None = None
) -> list[dict]:
    """`answer_cost` across chain-of-thought lengths (batch re-fitted at each length unless given)."""
    return [answer_cost(step, prompt_len, L, n_samples, batch=batch) for L in cot_lengths]


def plot_cost_curve(curves: dict[str, list[dict]], path: str) -> None:
    """$ per answer vs chain-of-thought length, one line per label, written to `path` (PNG/SVG/PDF)."""
    from scalinglab.report.figures import new_figure, save_fig

    fig, ax = new_figure(1, 2)
    for label, rows in curves.items():
        L = [r["cot_len"] for r in rows]
        ax[0].plot(L, [r["usd_per_answer"] for r in rows], marker="o", label=label)
        ax[1].plot(L, [r["decode_batch"] for r in rows], marker="o", label=label)
    for a, yl in zip(ax, ["$ per answer", "sequences in the batch"]):
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("chain-of-thought tokens")
        a.set_ylabel(yl)
    ax[0].legend()
    fig.suptitle("Serving cost of long chains of thought (roofline + KV capacity)")
    fig.tight_layout()
    save_fig(fig, path)
