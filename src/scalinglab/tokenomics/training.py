"""Training cost: pre-training N parameters on D tokens, and RL post-training whose rollouts are
priced with the serving model.

Pre-training FLOPs = 6 N D (forward 2ND + backward 4ND; Kaplan et al. 2020, the Chinchilla
convention; attention FLOPs are left out, as in those papers). Ideal time =
FLOPs / (chips x dense BF16 peak x MFU). Failures follow Young/Daly: with a cluster MTBF
M = (per-chip MTBF) / chips, checkpoint write time d and restart time R, the optimal checkpoint
interval is t = sqrt(2 d M) and the expected fraction of time lost is d/t + (t/2 + R)/M;
wall time = ideal / (1 - lost). The default per-GPU MTBF, 50,700 GPU-hours, is Llama 3's:
419 unexpected interruptions in 54 days on 16,384 H100s (Llama 3 paper, Sec. 3.3.4).
Check: Llama-3.1-405B on 15.6 T tokens is 6 x 405e9 x 15.6e12 = 3.8e25 FLOPs, Meta's figure.

RL post-training (GRPO/PPO-style) per step: generation = `prompts x group` samples priced with
`cost.answer_cost` (a group shares its prompt's prefill and KV), then a policy update of
(6 + 2 x extra forward passes) x N_active FLOPs per token, the extra passes being the old-policy
and reference log-probs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scalinglab.errors import UserError
from scalinglab.tokenomics.cost import answer_cost
from scalinglab.tokenomics.roofline import StepModel
from scalinglab.tokenomics.spec import Hardware

LLAMA3_GPU_MTBF_HOURS = 16384 * 54 * 24 / 419  # = 50,677 GPU-hours per unexpected interruption


@dataclass(frozen=True)
class Cluster:
    hw: Hardware
    n_gpus: int = 1024
    mfu: float = 0.40  # Llama 3 405B reported 38-43% BF16 MFU on 8-16k H100s
    gpu_mtbf_hours: float = LLAMA3_GPU_MTBF_HOURS
    checkpoint_write_s: float = 30.0  # time one checkpoint stalls training (assumed; async checkpointing is faster)
    restart_s: float = 600.0  # detect, reschedule, reload after a failure (assumed 10 minutes)


def failure_overhead(c: Cluster) -> dict:
    """Young/Daly optimal checkpoint interval and the expected fraction of wall time lost."""
    mtbf_s = c.gpu_mtbf_hours * 3600.0 / c.n_gpus
    interval = math.sqrt(2.0 * c.checkpoint_write_s * mtbf_s)
    lost = c.checkpoint_write_s / interval + (interval / 2.0 + c.restart_s) / mtbf_s
    return {
        "cluster_mtbf_hours": mtbf_s / 3600.0,
        "checkpoint_interval_minutes": interval / 60.0,
        "lost_fraction": lost,
    }


def pretrain_cost(n_params: float, tokens: float, c: Cluster) -> dict:
    if (
        not (n_params > 0 and tokens > 0 and math.isfinite(n_params * tokens)) or c.n_gpus < 1 or not 0 < c.mfu <= 1
    ):  # NaN fails too
        raise UserError("--params, --tokens, --gpus must be positive and --mfu in (0, 1]")
    flops = 6.0 * n_params * tokens
    ideal_s = flops / (c.n_gpus * c.hw.peak_flops("bf16") * c.mfu)
    f = failure_overhead(c)
    if f["lost_fraction"] >= 1.0:
        raise UserError(f"{c.n_gpus} GPUs fail faster than they can checkpoint and restart: reduce --gpus")
    wall_s = ideal_s / (1.0 - f["lost_fraction"])
    gpu_hours = c.n_gpus * wall_s / 3600.0
    return {
        "hardware": c.hw.name,
        "n_gpus": c.n_gpus,
        "mfu": c.mfu,
        "params": n_params,
        "tokens": tokens,
        "flops": flops,
        "ideal_days": ideal_s / 86400.0,
        "days": wall_s / 86400.0,
        "gpu_hours": gpu_hours,
        "usd": gpu_hours * c.hw.usd_per_hour,
        "expected_failures": wall_s / 3600.0 / f["cluster_mtbf_hours"],
        **f,
    }


def rl_cost(
    rollout: StepModel,
    trainer: Cluster,
    n_steps: int,
    prompts_per_step: int,
    group_size: int,
    prompt_len: int,
    response_len: int,
    extra_forward_passes: int = 2,
) -> dict:
    """Cost of an RL run: rollouts on the serving setup `rollout`, updates on `trainer`."""
    if min(n_steps, prompts_per_step, group_size, prompt_len, response_len) < 1:
        raise UserError("RL steps, prompts, group size and lengths must all be >= 1")
    gen = answer_cost(rollout, prompt_len, response_len, n_samples=group_size)
    gen_usd = n_steps * prompts_per_step * gen["usd_per_answer"]
    tokens = n_steps * prompts_per_step * group_size * (prompt_len + response_len)
    n_active = rollout.model.active_params
    train_flops = (6.0 + 2.0 * extra_forward_passes) * n_active * tokens
    train_s = train_flops / (trainer.n_gpus * trainer.hw.peak_flops("bf16") * trainer.mfu)
    train_usd = trainer.n_gpus * train_s / 3600.0 * trainer.hw.usd_per_hour
    return {
        "model": rollout.model.name,
        "steps": n_steps,
        "samples": n_steps * prompts_per_step * group_size,
        "tokens": tokens,
        "rollout_usd": gen_usd,
        "train_usd": train_usd,
        "usd": gen_usd + train_usd,
        "rollout_share": gen_usd / (gen_usd + train_usd),
        "train_flops": train_flops,
        "rollout_decode_batch": gen["decode_batch"],
        "train_days": train_s / 86400.0,
    }
