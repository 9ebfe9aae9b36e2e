"""PPO for language models (actor-critic), as in Ouyang et al. 2022 / "The N+ implementation
details of RLHF with PPO" (Huang et al. 2024), with rewards from a verifier or a reward model.

    scalinglab train ppo --model runs/A --task arithmetic --steps 200 --seed 0 --checkpoint-every 20 --out runs/C

Per step: `prompts_per_step` problems × `samples_per_prompt` samples from the engine (the
samples of a prompt share one prefill; PPO itself uses no groups), then:

1. Old log-probs (policy), reference log-probs (the frozen initial policy) and values (the
   critic) are recomputed by the training-side models, micro-batch by micro-batch as in
   the update, at the sampling temperature. The sampler-vs-trainer gap is logged.
2. Per-token reward: −kl_coef·(log π_old − log π_ref) (k1, RL_CHECKLIST 14) on every
   response token, plus the score on the last valid token (the EOS; the last token when a
   response was cut at the length limit): the verifier's reward (default), an ORM's score
   (`reward=orm`), or for a PRM (`reward=prm`) per-step rewards on each step's last token,
   shaped from the step scores by `prm_shaping` (below). Scores are clipped to ±reward_clip.
3. GAE with γ=1, λ=0.95 (trl), advantages whitened over the batch; returns = A + V.
4. `epochs` × `minibatches` optimizer steps of the clipped surrogate (ε=0.2) plus the
   clipped value loss ½·max((V−R)², (V_old + clip(V−V_old, ±0.2) − R)²), both as token
   sums over the whole optimizer step divided once by its token count (every
   gradient-accumulation micro-batch included).

PRM reward shaping (`PRM_SHAPINGS`). Summing the step scores as rewards (`sum`) pays for
every extra step a PRM likes, so a policy can raise its return by repeating correct but
unnecessary steps (Gao et al. 2024, "On Designing Effective RL Reward at Training Time for
LLM Reasoning"). The default, `min`, is PURE's min-form credit assignment (Cheng et al.
2025, "Stop Summation"): the return from step k is the minimum of the remaining step
scores, m_k = min_{j>=k} s_j, delivered exactly under GAE with γ=1 by the telescoping
rewards r_k = m_k − m_{k+1} (m_{K+1} = 0) on each step's last token; an added step can only
lower the min. `clip` is Gao et al.'s clip form, r_k = min(s_k − prm_clip_eta, 0): no step
earns a positive reward, so an added step never raises the return either. `sum` is kept
for comparison only (it is gameable).

Verifier errors: with `reward=verifier`, samples whose verification errored (timeouts,
sandbox faults) carry no reward signal and are left out of the update (no advantage, no
loss weight, not in the whitening); with an ORM/PRM the reward does not come from the
verifier, so they are trained on. Either way each step logs `verifier_errors`.

Deviations: the critic is a separate copy of the policy's transformer with a zero-init
scalar head (or the reward model's backbone and head with `critic_init=rm`, N+ detail);
the model has no dropout, so nothing needs disabling; no adaptive KL controller; no
importance correction for the sampler mismatch (same fp32 weights; the metric is logged).
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn as nn

from scalinglab.config import check_choices
from scalinglab.errors import UserError
from scalinglab.runs import checkpoint
from scalinglab.tasks.seeds import EVAL_SEED
from scalinglab.train.advantages import gae, whiten
from scalinglab.train.common import (
    check_update,
    entropy_from_logits,
    lr_at,
    make_optimizer,
    masked_mean,
    set_lr,
    token_logprobs,
)
from scalinglab.train.kl import LOG_RATIO_CLAMP, kl_k1, mismatch_stats
from scalinglab.train.rl_run import RLRun, load_policy, open_rl_run
from scalinglab.train.rollout import (
    Rollout,
    prompt_batch,
    rollout,
    rollout_record,
    rollout_seed,
    row_slices,
    sequence_logprobs,
    trim,
)


def ppo_loss(logp, old_logp, adv, values, old_values, returns, mask, cfg, num_tokens=None) -> tuple[torch.Tensor, dict]:
    """Clipped surrogate + vf_coef · clipped value loss, token sums / `num_tokens`.

    All tensors (B, T) fp32. `num_tokens` is the normaliser of the whole optimizer step
    (defaults to this batch's token count); stats use it too, so they sum over micro-batches.
    """
    mask = mask.float()
    n = mask.sum().clamp_min(1) if num_tokens is None else num_tokens
    ratio = (logp - old_logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP).exp()
    pg = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - cfg.clip, 1 + cfg.clip))
    v_clip = old_values + (values - old_values).clamp(-cfg.value_clip, cfg.value_clip)
    vf = 0.5 * torch.maximum((values - returns) ** 2, (v_clip - returns) ** 2)
    loss = ((pg + cfg.vf_coef * vf) * mask).sum() / n

    def mean(x):
        return float((x.float() * mask).sum() / n)

    with torch.no_grad():
        stats = {
            "pg_loss": mean(pg),
            "vf_loss": mean(vf),
            "clip_frac": mean((ratio - 1).abs() > cfg.clip),
            "vf_clip_frac": mean((values - old_values).abs() > cfg.value_clip),
            "ppo_kl": mean(old_logp - logp),
        }
    return loss, stats


class ValueModel(nn.Module):
    """Critic: a transformer trunk and a scalar head on its final-normed hidden states."""

    def __init__(self, trunk, head: nn.Linear | None = None):
        super().__init__()
        self.trunk = trunk
        self.head = head if head is not None else nn.Linear(trunk.config.hidden_size, 1)
        if head is None:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk.hidden_states(ids))[..., 0]  # (B, T)


@dataclass(frozen=True)
class PPOConfig:
    task: str = "arithmetic"  # task whose verifier scores (and judges accuracy)
    difficulty: int = 0  # task difficulty knob (0 = the task's default)
    chat: Literal["auto", "on", "off"] = (
        "auto"  # the tokenizer's chat template (auto: when it has one); else the task's few-shot prompt
    )
    system: str = ""  # system prompt for the chat template ("" = none)
    steps: int = 200  # RL steps (one rollout batch each)
    prompts_per_step: int = 32  # problems per step
    samples_per_prompt: int = 4  # samples per problem (they share a prefill; no grouping in the loss)
    max_new_tokens: int = 0  # response length limit (0 = the task's longest worked solution × 1.5 + 16)
    temperature: float = 1.0  # sampling temperature, also applied to every training-side forward
    reward: Literal["verifier", "orm", "prm"] = "verifier"  # the verifier, an outcome RM or a process RM
    reward_model: str = ""  # directory of the ORM/PRM (`scalinglab train reward-model`)
    reward_clip: float = 10.0  # scores clipped to ±this
    prm_shaping: Literal["min", "clip", "sum"] = (
        "min"  # reward=prm: min (PURE min-form, default), clip (Gao et al.) or sum (gameable; for comparison)
    )
    prm_clip_eta: float = (
        0.5  # prm_shaping=clip: the step score that earns 0 (higher scores earn 0 too, lower ones lose)
    )
    missing_eos_penalty: float = 0.0  # subtracted from the score of a response without EOS
    kl_coef: float = 0.01  # β of the per-token k1 KL penalty in the reward
    gamma: float = 1.0
    lam: float = 0.95
    clip: float = 0.2  # policy ratio clip ε
    value_clip: float = 0.2  # value clip around the rollout-time values
    vf_coef: float = 0.5  # weight of the value loss
    epochs: int = 1  # passes over each rollout batch
    minibatches: int = 2  # optimizer steps per pass
    micro_batch: int = 64  # sequences per forward/backward (gradients accumulate across them)
    lr: float = 1e-4  # policy AdamW learning rate
    critic_lr: float = 3e-4  # critic AdamW learning rate
    critic_init: Literal["policy", "rm"] = (
        "policy"  # policy (copy of the policy trunk, zero head) or rm (the reward model)
    )
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global gradient norm (policy and critic each)
    abort_grad_norm: float = 1e4  # stop if a pre-clip gradient norm exceeds this (0 = never)
    seed: int = 0
    checkpoint_every: int = 0
    eval_problems: int = 200  # held-out problems for greedy accuracy before and after (0 = skip)
    eval_seed: int = EVAL_SEED
    device: str = "auto"

    def __post_init__(self) -> None:
        check_choices(self)


def step_end_tokens(tok, token_ids: list[int], text: str, steps: list[str]) -> list[int]:
    """Index (within the response) of the last token of each step of `text` (the PRM reads
    its step score there, as `reward_model.step_ids` does)."""
    ends, pos = [], 0
    for s in steps:
        k, n = text.find(s, pos), len(s)
        if k < 0:  # the splitter normalised the step's whitespace
            core = s.strip()
            k, n = text.find(core, pos), len(core)
        pos = k + n if k >= 0 else pos
        ends.append(pos)
    out, j, n = [], 0, len(token_ids)
    for e in ends:  # first token whose decoded prefix covers the step's last character
        while j < n - 1 and len(tok.decode(token_ids[: j + 1])) < e:
            j += 1
        out.append(j)
    return out


def shape_min(scores: list[float], cfg: PPOConfig) -> list[float]:
    """PURE min-form: r_k = m_k − m_{k+1}, m_k = min_{j>=k} s_j, m_{K+1} = 0, so Σ_{j>=k} r_j = m_k."""
    suffix, m = [], float("inf")
    for x in reversed(scores):
        m = min(m, float(x))
        suffix.append(m)
    suffix = suffix[::-1] + [0.0]
    return [suffix[k] - suffix[k + 1] for k in range(len(scores))]


def shape_clip(scores: list[float], cfg: PPOConfig) -> list[float]:
    """Gao et al. 2024 clip: r_k = min(s_k − η, 0); the return is bounded above by 0."""
    return [min(float(x) - cfg.prm_clip_eta, 0.0) for x in scores]


def shape_sum(scores: list[float], cfg: PPOConfig) -> list[float]:
    """Each step's score as its reward: the return grows with every step the PRM likes (gameable)."""
    return [float(x) for x in scores]


PRM_SHAPINGS: dict[str, Callable[[list[float], PPOConfig], list[float]]] = {
    "min": shape_min,
    "clip": shape_clip,
    "sum": shape_sum,
}


def token_rewards(ro: Rollout, cfg: PPOConfig, rm, tok, task) -> torch.Tensor:
    """(B, T-1) per-token scores: the outcome score on the last valid token, or PRM step scores."""
    scores = torch.zeros_like(ro.engine_logp)
    rows = torch.arange(len(ro.texts), device=scores.device)
    penalty = ro.truncated.float() * cfg.missing_eos_penalty
    if cfg.reward == "prm":
        steps = [task.split_steps(t) for t in ro.texts]
        per = rm.score_steps_batch(ro.prompts, steps)
        start = ro.last - ro.lengths.long() + 1  # first response index in T-1 coordinates
        for i, (st, sc) in enumerate(zip(steps, per)):
            ids = ro.ids[i, int(start[i]) + 1 : int(ro.last[i]) + 2].tolist()
            for j, s in zip(step_end_tokens(tok, ids, ro.texts[i], st), PRM_SHAPINGS[cfg.prm_shaping](sc, cfg)):
                scores[i, int(start[i]) + j] += s
        scores[rows, ro.last] -= penalty
    else:
        score = (
            ro.rewards
            if cfg.reward == "verifier"
            else torch.tensor(rm.score_outcomes(ro.prompts, ro.texts), device=scores.device) - penalty
        )
        scores[rows, ro.last] = score.float()
    return scores.clamp(-cfg.reward_clip, cfg.reward_clip)


def ppo_step(
    policy, critic, opt, critic_opt, ro: Rollout, scores: torch.Tensor, ref_model, cfg: PPOConfig, step: int
) -> dict:
    """Advantages and returns for one rollout batch, then the clipped updates; returns stats."""
    B, mb = ro.ids.shape[0], cfg.micro_batch
    old, _ = sequence_logprobs(policy, ro.ids, ro.mask, cfg.temperature, mb)
    ref, _ = sequence_logprobs(ref_model, ro.ids, ro.mask, cfg.temperature, mb)
    old_v = torch.zeros_like(ro.mask)
    with torch.no_grad():
        for sl in row_slices(B, mb):
            x, m = trim(ro.ids[sl], mask=ro.mask[sl])
            old_v[sl, : m.shape[1]] = critic(x[:, :-1]) * m  # (b, t): value of the state before each target
    kl = kl_k1(old, ref) * ro.mask  # (B, T-1)
    rewards = scores - cfg.kl_coef * kl
    adv, returns = gae(rewards, old_v, ro.mask, cfg.gamma, cfg.lam)
    adv = whiten(adv, ro.mask)
    acc, n_opt = defaultdict(float), 0
    gen = torch.Generator().manual_seed(rollout_seed(cfg.seed, step))
    for epoch in range(cfg.epochs):
        order = (
            torch.randperm(B, generator=gen).to(ro.ids.device)
            if cfg.minibatches > 1
            else torch.arange(B, device=ro.ids.device)
        )
        for rows_mb in order.chunk(cfg.minibatches):
            norm = ro.mask[rows_mb].sum().clamp_min(1)  # once per optimizer step (RL_CHECKLIST 12)
            opt.zero_grad(set_to_none=True)
            critic_opt.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for sl in row_slices(len(rows_mb), mb):
                rows = rows_mb[sl]
                x, o, a, ov, ret, m = trim(
                    ro.ids[rows], old[rows], adv[rows], old_v[rows], returns[rows], mask=ro.mask[rows]
                )
                logits = policy(x[:, :-1])  # (b, t, V)
                logp = token_logprobs(logits, x[:, 1:], cfg.temperature)
                values = critic(x[:, :-1])  # (b, t)
                loss, st = ppo_loss(logp, o, a, values, ov, ret, m, cfg, num_tokens=norm)
                loss.backward()
                loss_sum += float(loss.detach())
                for k, v in st.items():
                    acc[k] += v
                with torch.no_grad():
                    acc["entropy"] += float((entropy_from_logits(logits, cfg.temperature) * m).sum() / norm)
            gn = float(torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip))
            gn_v = float(torch.nn.utils.clip_grad_norm_(critic.parameters(), cfg.grad_clip))
            check_update(step + 1, loss_sum, max(gn, gn_v), cfg.abort_grad_norm)
            opt.step()
            critic_opt.step()
            acc["loss"] += loss_sum
            acc["grad_norm"] += gn
            acc["critic_grad_norm"] += gn_v
            n_opt += 1
    out = {k: v / n_opt for k, v in acc.items()}
    n = ro.mask.sum().clamp_min(1)
    out.update(
        kl=float(kl.sum() / n),
        score=float(scores.sum() / len(scores)),
        value_mean=float(masked_mean(old_v, ro.mask)),
        return_mean=float(masked_mean(returns, ro.mask)),
        optimizer_steps=n_opt,
        **mismatch_stats(ro.engine_logp, old, ro.mask),
    )
    return out


def ppo_train_rows(ro: Rollout, cfg: PPOConfig) -> Rollout:
    """The samples PPO trains on: with verifier rewards, those the verifier answered (an
    errored verdict's reward is no signal); with an ORM/PRM, all of them."""
    if cfg.reward != "verifier" or bool(ro.answered.all()):
        return ro
    return ro.select(ro.answered.nonzero()[:, 0])


def _load_rm(cfg: PPOConfig, device):
    if cfg.reward == "verifier":
        return None
    if not cfg.reward_model:
        raise UserError(f"reward={cfg.reward} needs reward_model=DIR (a model from `scalinglab train reward-model`)")
    try:
        from scalinglab.train.reward_model import load_reward_model
    except ImportError as e:
        raise UserError(f"reward={cfg.reward}: reward models are not available in this build ({e})") from None
    rm = load_reward_model(cfg.reward_model, device)
    if rm.kind != cfg.reward:
        raise UserError(f"reward={cfg.reward} but {cfg.reward_model} is a {rm.kind.upper()}")
    return rm


def make_critic(cfg: PPOConfig, policy, rm) -> ValueModel:
    """The value model: the reward model's backbone and head (`critic_init=rm`) or a copy of
    the policy's transformer with a zero-init head, in training mode."""
    if cfg.critic_init == "rm":
        return ValueModel(copy.deepcopy(rm.backbone), copy.deepcopy(rm.score)).train()
    return ValueModel(copy.deepcopy(policy)).to(policy.lm_head.weight.device).train()


def train_ppo(
    cfg: PPOConfig, model_path: str, out: str, resume: bool = False, progress: Callable[..., None] | None = None
) -> dict:
    """Run PPO from the model at `model_path`; returns the summary (also OUT/summary.json)."""
    if cfg.critic_init == "rm" and cfg.reward == "verifier":
        raise UserError(f"critic_init {cfg.critic_init!r}: use 'policy', or 'rm' together with reward=orm|prm")
    o = open_rl_run("ppo", cfg, model_path, out, resume)
    if o.finished is not None:  # --resume of a finished run
        return o.finished
    with checkpoint.guard(o.run):  # failed / interrupted / disk full recorded in runs.sqlite
        policy, tok, task, ref = load_policy(o, need_ref=True)
        opt = make_optimizer(policy, cfg.lr, cfg.weight_decay)
        rm = _load_rm(cfg, policy.lm_head.weight.device)
        critic = make_critic(cfg, policy, rm)
        critic_opt = make_optimizer(critic, cfg.critic_lr, cfg.weight_decay)
        rl = RLRun(
            o, task, policy, tok, opt, ref=ref, modules={"critic": critic, "critic_opt": critic_opt}, resume=resume
        )
        for step in range(rl.first_step, cfg.steps):
            t0 = time.perf_counter()
            lr = set_lr(opt, lr_at(step, cfg.steps, cfg.lr, cfg.warmup_steps, 1.0))
            problems = prompt_batch(task, cfg.seed, step, cfg.prompts_per_step, rl.difficulty)
            ro = rollout(
                rl.engine,
                task,
                problems,
                cfg.samples_per_prompt,
                rl.max_new_tokens,
                cfg.temperature,
                seed=rollout_seed(cfg.seed, step),
                missing_eos_penalty=cfg.missing_eos_penalty,
            )
            t_score = time.perf_counter()
            train_ro = ppo_train_rows(ro, cfg)
            stats: dict = {}  # empty when every sample's verification errored (no update)
            if len(train_ro.texts):
                scores = token_rewards(train_ro, cfg, rm, tok, task)
            t_train = time.perf_counter()
            if len(train_ro.texts):
                policy.train()
                stats = ppo_step(policy, critic, opt, critic_opt, train_ro, scores, ref, cfg, step)
                policy.eval()
            rec = {
                "step": step + 1,
                **rollout_record(ro),
                **stats,
                "lr": lr,
                "train_seconds": time.perf_counter() - t_train,
            }
            rec["score_seconds"] += (
                t_train - t_score
            )  # token rewards (the reward model, when one is used) are scoring too
            rl.end_step(step, rec, t0, tokens=ro.generated_tokens + int(train_ro.mask.sum()))
            if progress:
                progress(step + 1, cfg.steps, reward=rec["reward"], acc=rec["accuracy"])
        return rl.finish()
