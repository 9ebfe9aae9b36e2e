"""GRPO against a verifier, in the DAPO / Dr. GRPO form (not the original 1/|o| GRPO).

    scalinglab train grpo --model runs/A --task arithmetic --steps 200 --seed 0 --checkpoint-every 20 --out runs/B

Per step: `prompts_per_step` problems, `group_size` samples each from the engine (one
shared prefill per prompt, temperature `temperature`, full distribution), rewards from
the task's verifier, group-relative advantages, then one clipped policy-gradient update.

Variant, and where it departs from GRPO as published (Shao et al. 2024, DeepSeekMath):

1. Advantages: `advantage=zscore` (GRPO), `center` (Dr. GRPO, no std division) or `rloo`
   (leave-one-out), separate functions in `advantages.ADVANTAGES`; one scalar per sequence.
2. Loss aggregation: token sum over the whole optimizer step divided ONCE by its total
   response-token count, across every gradient-accumulation micro-batch (DAPO token mean;
   `loss_norm=constant` divides by sequences × max_new_tokens instead, as Dr. GRPO).
   Never the per-sequence 1/|o| mean (length bias), never a second division by the
   accumulation count (RL_CHECKLIST 11-12).
3. Clip-higher: ratio clipped to [1 − 0.2, 1 + 0.28] (DAPO), plus dual-clip c=3 for
   negative advantages (verl). Ratio = exp(clamp(logp − old_logp, ±20)) in fp32.
4. KL: k3 to the initial model in the loss with coefficient `beta` (clamped as verl);
   the default beta=0 loads no reference model (DAPO, Open-Reasoner-Zero, trl default).
5. Dynamic filtering: groups whose rewards are all equal have zero advantage and are
   dropped from the update; their share is logged as `frac_reward_zero_std`. Unlike DAPO
   we do not resample to refill the batch (on a CPU we would rather take the next step).
6. Old log-probs come from the training model (never the sampler), with the same
   micro-batches as the update. With one optimizer step per rollout (`epochs=1,
   minibatches=1`, the default) they are the update forward's own log-probs, detached:
   the same numbers a separate no-grad pass gives, one forward cheaper (trl does this
   too), and the ratio is exactly 1. The sampler-vs-trainer gap is logged as
   `mismatch_abs`, `mismatch_kl`, `mismatch_prob_ratio`; no importance correction is
   applied (both run the same fp32 weights here; the metric says when that stops holding).
7. Responses end at EOS; a response without EOS may lose `missing_eos_penalty`.
8. Verifier errors (timeouts, sandbox faults) are not wrong answers: a group's advantages are
   computed over its answered samples only, an errored sample gets advantage 0 and no loss
   weight (it is left out of the update and of the token normaliser), and each step logs
   `verifier_errors` (the summary totals them).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Literal

import torch

from scalinglab.config import check_choices
from scalinglab.runs import checkpoint
from scalinglab.tasks.seeds import EVAL_SEED
from scalinglab.train.advantages import group_advantages, zero_std_groups
from scalinglab.train.common import check_update, lr_at, make_optimizer, set_lr
from scalinglab.train.kl import LOG_RATIO_CLAMP, kl_k3, mismatch_stats
from scalinglab.train.prefix import policy_logprobs
from scalinglab.train.rl_run import RLRun, load_policy, open_rl_run
from scalinglab.train.rollout import (
    INVALID_LOGPROB,
    Rollout,
    last_position,
    prompt_batch,
    rollout,
    rollout_record,
    rollout_seed,
    row_slices,
    sequence_logprobs,
    trim,
)


def grpo_loss(logp, old_logp, adv, mask, cfg, ref_logp=None, num_tokens=None) -> tuple[torch.Tensor, dict]:
    """Clipped token-level policy-gradient loss (+ β·k3) summed over tokens / `num_tokens`.

    logp, old_logp, ref_logp, mask: (B, T) fp32; adv: (B,) per sequence or (B, T) per
    token. `num_tokens` is the normaliser of the whole optimizer step (all accumulation
    micro-batches); it defaults to this batch's token count. Stats are token sums over
    the same normaliser, so summing them over micro-batches gives step means.
    """
    mask = mask.float()
    n = mask.sum().clamp_min(1) if num_tokens is None else num_tokens
    a = adv[:, None] if adv.dim() == 1 else adv  # (B, 1) or (B, T)
    ratio = (logp - old_logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP).exp()  # (B, T)
    clipped = ratio.clamp(1 - cfg.clip_low, 1 + cfg.clip_high)
    pg = torch.maximum(-a * ratio, -a * clipped)  # pessimistic bound (PPO)
    if cfg.dual_clip > 1:  # cap the loss of a negative advantage with a huge ratio (verl clip_ratio_c)
        pg = torch.where(a < 0, torch.minimum(pg, -a * cfg.dual_clip), pg)
    kl = kl_k3(logp, ref_logp) if ref_logp is not None and cfg.beta > 0 else torch.zeros_like(logp)
    loss = ((pg + cfg.beta * kl) * mask).sum() / n

    def frac(x):
        return float((x.float() * mask).sum() / n)

    with torch.no_grad():
        stats = {
            "clip_frac_low": frac((ratio < 1 - cfg.clip_low) & (a < 0)),
            "clip_frac_high": frac((ratio > 1 + cfg.clip_high) & (a > 0)),
            "kl": frac(kl),
            "ppo_kl": frac(old_logp - logp),
            "pg_loss": frac(pg),
        }
    return loss, stats


STEP_STATS = (
    "loss",
    "pg_loss",
    "entropy",
    "kl",
    "ppo_kl",
    "clip_frac",
    "clip_frac_low",
    "clip_frac_high",
    "grad_norm",
    "mismatch_abs",
    "mismatch_kl",
    "mismatch_prob_ratio",
    "optimizer_steps",
)


@dataclass(frozen=True)
class GRPOConfig:
    task: str = "arithmetic"  # task whose verifier gives the reward
    difficulty: int = 0  # task difficulty knob (0 = the task's default)
    chat: Literal["auto", "on", "off"] = (
        "auto"  # the tokenizer's chat template (auto: when it has one); else the task's few-shot prompt
    )
    system: str = ""  # system prompt for the chat template ("" = none)
    steps: int = 200  # RL steps (one rollout batch each)
    prompts_per_step: int = 16  # problems per step
    group_size: int = 8  # samples per problem, sharing one prefill
    max_new_tokens: int = 0  # response length limit (0 = the task's longest worked solution × 1.5 + 16)
    temperature: float = 1.0  # sampling temperature, also applied to every training-side forward
    advantage: Literal["zscore", "center", "rloo"] = (
        "zscore"  # zscore (GRPO), center (Dr. GRPO) or rloo (leave-one-out)
    )
    loss_norm: Literal["token", "constant"] = (
        "token"  # token: / response tokens of the step (DAPO); constant: / (sequences·max_new_tokens) (Dr. GRPO)
    )
    clip_low: float = 0.2  # ε_low
    clip_high: float = 0.28  # ε_high (clip-higher, DAPO)
    dual_clip: float = 3.0  # c of dual-clip for negative advantages (<= 1 disables)
    beta: float = 0.0  # k3 KL coefficient in the loss (0 = no reference model)
    filter_zero_std: bool = True  # drop groups with equal rewards from the update
    missing_eos_penalty: float = 0.0  # subtracted from the reward of a response without EOS
    epochs: int = 1  # passes over each rollout batch
    minibatches: int = 1  # optimizer steps per pass
    micro_batch: int = 64  # sequences per forward/backward (gradients accumulate across them)
    share_prefix: bool = False  # run each prompt once per group in the update forward (train/prefix.py): exact, much cheaper for long prompts
    lr: float = 1e-4  # AdamW learning rate (constant after warmup)
    warmup_steps: int = 0  # linear LR warmup
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm
    abort_grad_norm: float = 1e4  # stop the run if the pre-clip gradient norm exceeds this (0 = never)
    seed: int = 0  # sampling and data seed
    checkpoint_every: int = 0  # steps between checkpoints (0 = only the final model)
    eval_problems: int = 200  # held-out problems for greedy accuracy before and after (0 = skip)
    eval_seed: int = EVAL_SEED  # generator seed of the held-out problems (never used in training)
    device: str = "auto"  # auto, cpu or cuda
    backend: Literal["local", "ray"] = (
        "local"  # local (one engine in this process) or ray (generation + verifier actors)
    )
    ray_address: str = ""  # Ray cluster to join ("" = a private local instance)
    ray_generators: int = 2  # generation actors on the ray backend

    def __post_init__(self) -> None:
        check_choices(self)


def grpo_advantages(ro: Rollout, cfg: GRPOConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(advantages (B,), rows to train on (B,) bool, zero-signal groups (G,) bool) of one rollout.

    Group statistics use the answered samples only; a verifier error has advantage 0 and is
    never trained on; with `filter_zero_std`, groups without signal are dropped too."""
    r = ro.rewards.view(-1, cfg.group_size)  # (G, n)
    valid = ro.answered.view(-1, cfg.group_size)  # (G, n)
    zero = zero_std_groups(r, valid)  # (G,)
    adv = group_advantages(r, valid, cfg.advantage).reshape(-1)  # (B,)
    keep = valid.reshape(-1)
    if cfg.filter_zero_std:
        keep = keep & (~zero).repeat_interleave(cfg.group_size)
    return adv, keep, zero


def _normaliser(mask: torch.Tensor, cfg: GRPOConfig, max_new_tokens: int) -> torch.Tensor:
    """Once per optimizer step, over all of its micro-batches (RL_CHECKLIST 12)."""
    if cfg.loss_norm == "constant":
        return torch.tensor(float(mask.shape[0] * max_new_tokens), device=mask.device)
    return mask.sum().clamp_min(1)


def grpo_step(
    model, opt, ro: Rollout, adv: torch.Tensor, cfg: GRPOConfig, step: int, max_new_tokens: int, ref_model=None
) -> dict:
    """Policy update(s) on one rollout batch; returns the step's training stats."""
    B = ro.ids.shape[0]
    reuse = cfg.epochs * cfg.minibatches == 1  # old log-probs = the update forward's own, detached
    old = None if reuse else sequence_logprobs(model, ro.ids, ro.mask, cfg.temperature, cfg.micro_batch)[0]
    ref = sequence_logprobs(ref_model, ro.ids, ro.mask, cfg.temperature, cfg.micro_batch)[0] if cfg.beta > 0 else None
    train_logp = old if old is not None else torch.full_like(ro.engine_logp, INVALID_LOGPROB)
    acc, n_opt = defaultdict(float), 0
    gen = torch.Generator().manual_seed(rollout_seed(cfg.seed, step))
    for epoch in range(cfg.epochs):
        order = (
            torch.randperm(B, generator=gen).to(ro.ids.device)
            if cfg.minibatches > 1
            else torch.arange(B, device=ro.ids.device)
        )
        for rows_mb in order.chunk(cfg.minibatches):
            if (
                reuse and not cfg.share_prefix
            ):  # similar lengths pad less (shared prefixes keep groups together instead)
                rows_mb = rows_mb[last_position(ro.mask[rows_mb]).argsort(stable=True)]
            norm = _normaliser(ro.mask[rows_mb], cfg, max_new_tokens)
            opt.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for sl in row_slices(len(rows_mb), cfg.micro_batch):
                rows = rows_mb[sl]
                per_tok = [x[rows] for x in ((old, ref) if old is not None else (ref,)) if x is not None]
                x, *rest, m = trim(ro.ids[rows], *per_tok, mask=ro.mask[rows])
                logp, ent = policy_logprobs(
                    model, x, m, cfg.temperature, cfg.share_prefix
                )  # (b, t) fp32; entropy detached
                old_mb = logp.detach() if reuse else rest.pop(0)
                ref_mb = rest.pop(0) if ref is not None else None
                loss, st = grpo_loss(logp, old_mb, adv[rows], m, cfg, ref_logp=ref_mb, num_tokens=norm)
                loss.backward()
                loss_sum += float(loss.detach())
                for k, v in st.items():
                    acc[k] += v
                acc["entropy"] += float((ent * m).sum() / norm)
                if reuse:
                    train_logp[rows, : m.shape[1]] = torch.where(
                        m > 0, logp.detach(), torch.full_like(logp, INVALID_LOGPROB)
                    )
            gn = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
            check_update(step + 1, loss_sum, gn, cfg.abort_grad_norm)
            opt.step()
            acc["loss"] += loss_sum
            acc["grad_norm"] += gn
            n_opt += 1
    out = {k: v / n_opt for k, v in acc.items()}
    if cfg.loss_norm == "constant":  # stats above were normalised by the constant; report token means
        scale = float(_normaliser(ro.mask, cfg, max_new_tokens) / ro.mask.sum().clamp_min(1))
        out.update({k: out[k] * scale for k in ("clip_frac_low", "clip_frac_high", "kl", "ppo_kl", "entropy")})
    out["clip_frac"] = out["clip_frac_low"] + out["clip_frac_high"]
    out.update(mismatch_stats(ro.engine_logp, train_logp, ro.mask))
    out["optimizer_steps"] = n_opt
    return out


def train_grpo(
    cfg: GRPOConfig, model_path: str, out: str, resume: bool = False, progress: Callable[..., None] | None = None
) -> dict:
    """Run GRPO from the model at `model_path`; returns the summary (also OUT/summary.json)."""

    o = open_rl_run("grpo", cfg, model_path, out, resume)
    if o.finished is not None:  # --resume of a finished run
        return o.finished
    with checkpoint.guard(o.run):  # failed / interrupted / disk full recorded in runs.sqlite
        model, tok, task, ref = load_policy(o, need_ref=cfg.beta > 0)
        opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
        rl = RLRun(o, task, model, tok, opt, ref=ref, resume=resume)
        pool = _ray_pool(cfg, model_path, model, rl.first_step) if cfg.backend == "ray" else None
        try:
            for step in range(rl.first_step, cfg.steps):
                t0 = time.perf_counter()
                lr = set_lr(opt, lr_at(step, cfg.steps, cfg.lr, cfg.warmup_steps, 1.0))
                problems = prompt_batch(task, cfg.seed, step, cfg.prompts_per_step, cfg.difficulty or None)
                if pool is None:
                    ro = rollout(
                        rl.engine,
                        task,
                        problems,
                        cfg.group_size,
                        rl.max_new_tokens,
                        cfg.temperature,
                        seed=rollout_seed(cfg.seed, step),
                        missing_eos_penalty=cfg.missing_eos_penalty,
                    )
                else:  # the same rollout on Ray actors holding weight version `step`
                    ro = pool.rollout(
                        task,
                        problems,
                        cfg.group_size,
                        rl.max_new_tokens,
                        cfg.temperature,
                        seed=rollout_seed(cfg.seed, step),
                        missing_eos_penalty=cfg.missing_eos_penalty,
                        tokenizer=tok,
                        device=rl.device,
                        version=step,
                    )
                adv, keep, zero = grpo_advantages(ro, cfg)  # (B,), (B,), (G,)
                rows = keep.nonzero()[:, 0]
                stats = dict.fromkeys(STEP_STATS)  # null when every group had equal rewards (no update)
                t_train = time.perf_counter()
                if len(rows):
                    model.train()
                    stats = grpo_step(model, opt, ro.select(rows), adv[rows], cfg, step, rl.max_new_tokens, ref)
                    model.eval()
                rec = {
                    "step": step + 1,
                    **rollout_record(ro),
                    "train_seconds": time.perf_counter() - t_train,
                    "frac_reward_zero_std": float(zero.float().mean()),
                    **stats,
                    "advantage_abs": float(adv[rows].abs().mean()) if len(rows) else 0.0,
                    "lr": lr,
                }
                if pool is not None:
                    pool.update_weights(model, version=step + 1)
                    rec.update(getattr(ro, "extra", None) or {})
                rl.end_step(
                    step,
                    rec,
                    t0,
                    tokens=ro.generated_tokens + int(ro.mask[rows].sum()) if len(rows) else ro.generated_tokens,
                )
                if progress:
                    progress(step + 1, cfg.steps, reward=rec["reward"], acc=rec["accuracy"])
        finally:
            if pool is not None:
                pool.close()
        return rl.finish()


def _ray_pool(cfg: GRPOConfig, model_path: str, model, version: int):
    """Generation and verifier actors on Ray, holding the current weights as `version`."""
    from scalinglab.distributed.rollouts import RayRolloutPool, RolloutPoolConfig
    from scalinglab.model.hf import resolve_model_dir

    pool = RayRolloutPool(
        str(resolve_model_dir(model_path)),
        RolloutPoolConfig(generators=cfg.ray_generators),
        address=cfg.ray_address or None,
    )
    pool.update_weights(model, version=version)  # a resumed run starts from its checkpoint's weights
    return pool
