"""What GRPO and PPO share: rollouts through the engine, padding and masks, advantages,
GAE, whitening, KL estimators, the sampler-vs-trainer mismatch, and the run plumbing.

Sequence layout (RL_CHECKLIST items 1-3). A rollout row is `<bos> prompt response <pad>…`,
right-padded with `tok.pad_id` (never the EOS id). Position t of every (B, T-1) tensor
scores the *target* token `ids[:, t+1]`, so the response tokens of a row with prompt
length P and response length L sit at t = P-1 … P+L-2; `mask` is 1 exactly there. The
engine also gives each sequence positions 0, 1, … from its own first token, so right
padding here reproduces the sampler's positions and causal masks exactly. The response
ends at its first EOS (kept, so the policy learns to stop) and the scalar score lives on
that last valid token (trl #3750). Padded log-probs hold `INVALID_LOGPROB` and are masked.

Advantage variants are separate small functions chosen from `ADVANTAGES` (STYLE.md 8):
`group_zscore` (GRPO, Shao et al. 2024), `group_center` (Dr. GRPO, Liu et al. 2025: no
division by the group std, which biases towards easy/hard questions), `leave_one_out`
(RLOO, Ahmadian et al. 2024).

Verifier errors (a timeout or sandbox fault, `Verdict.error`) are not wrong answers: a
rollout marks them (`Rollout.errored`); GRPO computes each group's advantages over its
answered samples only (`group_advantages`) and gives errored samples zero advantage and no
loss weight; PPO with verifier rewards trains on the answered samples only. Every step
logs `verifier_errors`, and the run summary totals them, next to `prompts_seen` and
`samples_seen` (so GRPO and PPO can be compared at equal prompts seen).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from scalinglab.engine import Engine, SamplingParams
from scalinglab.runs import checkpoint
from scalinglab.tasks.split import draw, overlap
from scalinglab.train.common import entropy_from_logits, token_logprobs

INVALID_LOGPROB = 1.0  # sentinel in padded log-prob slots (trl); always masked out
RL_SEED_BASE = 5_000_000  # RL prompts use generator seeds >= this (pretraining uses 1e6.., eval < 9e5)
LOG_RATIO_CLAMP = 20.0  # exp(clamp(Δ, ±20)) keeps ratios finite in fp32 (item 5)


# -- advantages (each (G, n) group rewards -> (G, n) advantages) -----------------------


def group_zscore(r: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """GRPO: (r − mean_g) / (std_g + eps), std with Bessel's correction (as trl)."""
    return (r - r.mean(-1, keepdim=True)) / (r.std(-1, keepdim=True) + eps)


def group_center(r: torch.Tensor) -> torch.Tensor:
    """Dr. GRPO: r − mean_g (no std: it weights low-variance groups up)."""
    return r - r.mean(-1, keepdim=True)


def leave_one_out(r: torch.Tensor) -> torch.Tensor:
    """RLOO: r_i − mean_{j≠i} r_j = n/(n−1)·(r_i − mean_g)."""
    n = r.shape[-1]
    return (r - (r.sum(-1, keepdim=True) - r) / max(n - 1, 1)) if n > 1 else torch.zeros_like(r)


ADVANTAGES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "zscore": group_zscore,
    "center": group_center,
    "rloo": leave_one_out,
}


def zero_std_groups(r: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """(G,) bool: groups whose rewards are all equal (no learning signal; DAPO filters them).

    With `valid` (G, n) bool, only those samples count, and a group with fewer than two is
    without signal too."""
    if valid is None:
        return (r.max(-1).values - r.min(-1).values).abs() < 1e-8
    hi = torch.where(valid, r, torch.full_like(r, -math.inf)).max(-1).values
    lo = torch.where(valid, r, torch.full_like(r, math.inf)).min(-1).values
    return (valid.sum(-1) < 2) | ((hi - lo).abs() < 1e-8)


def group_advantages(r: torch.Tensor, valid: torch.Tensor, how: str) -> torch.Tensor:
    """`ADVANTAGES[how]` of each group computed over its `valid` samples only (G, n);
    invalid samples (verifier errors) get advantage 0, and so does a group with < 2 valid."""
    adv = ADVANTAGES[how](r)
    if bool(valid.all()):
        return adv
    adv = adv.clone()
    for g in (~valid).any(-1).nonzero()[:, 0].tolist():
        v = valid[g]
        adv[g] = 0.0
        if int(v.sum()) >= 2:
            adv[g, v] = ADVANTAGES[how](r[g, v][None])[0]
    return adv


# -- PPO pieces -------------------------------------------------------------------------


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens (Schulman et al. 2016).

    rewards, values, mask: (B, T); mask marks one contiguous block per row. Reverse loop
    δ_t = r_t + γ·V_{t+1} − V_t, A_t = δ_t + γλ·A_{t+1}, with V and A zero past the block.
    Returns (advantages, returns = A + V), both zero outside the mask.
    """
    m = mask.float()
    B, T = rewards.shape
    adv = torch.zeros_like(rewards, dtype=torch.float32)
    last = torch.zeros(B, dtype=torch.float32, device=rewards.device)
    for t in reversed(range(T)):
        nxt = m[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        next_v = values[:, t + 1] * nxt if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        last = delta + gamma * lam * nxt * last
        adv[:, t] = last
    adv = adv * m
    return adv, (adv + values) * m


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean)/std over masked entries (unbiased variance); shift_mean=False keeps the mean."""
    m = mask.float()
    n = m.sum().clamp_min(1)
    mean = (x * m).sum() / n
    var = (((x - mean) ** 2) * m).sum() / (n - 1).clamp_min(1)
    out = (x - mean) * torch.rsqrt(var + eps)
    return (out if shift_mean else out + mean) * m


# -- KL estimators of KL(π ‖ π_ref) from samples of π (Schulman, "Approximating KL") ----


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 = log π − log π_ref: unbiased, high variance, can be negative."""
    return logp - ref_logp


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k2 = ½ (log π − log π_ref)²: biased value, but its gradient is the KL's."""
    return 0.5 * (logp - ref_logp) ** 2


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 = e^{−d} − 1 + d with d = log π − log π_ref; ≥ 0, unbiased. Clamped as verl:
    log-ratio to [−20, 20], value to [−10, 10]."""
    d = (ref_logp - logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return (d.exp() - d - 1).clamp(-10.0, 10.0)


KL_ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def mismatch_stats(engine_logp: torch.Tensor, train_logp: torch.Tensor, mask: torch.Tensor) -> dict:
    """How far the sampler's log-probs are from the trainer's on the sampled tokens (item 6).

    mismatch_abs = mean |Δ|; mismatch_kl = mean k3 estimate of KL(π_sampler ‖ π_train)
    (prime-rl alerts above 0.01); mismatch_prob_ratio = mean e^{|Δ|} (NeMo's
    token_mult_prob_error, alert above 1.1).
    """
    m = mask.float()
    n = m.sum().clamp_min(1)
    d = (train_logp - engine_logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP) * m
    return {
        "mismatch_abs": float(d.abs().sum() / n),
        "mismatch_kl": float(((d.exp() - 1 - d) * m).sum() / n),
        "mismatch_prob_ratio": float((d.abs().exp() * m).sum() / n),
    }


# -- rollouts -----------------------------------------------------------------------------


@dataclass
class Rollout:
    """A batch of sampled responses, padded and masked for training (see module docstring)."""

    ids: torch.Tensor  # (B, T) long: <bos> prompt response, right-padded with pad_id
    mask: torch.Tensor  # (B, T-1) float: 1 where the target ids[:, t+1] is a response token
    engine_logp: torch.Tensor  # (B, T-1) fp32 sampler log-probs, INVALID_LOGPROB off-mask
    last: torch.Tensor  # (B,) long: index (in T-1) of the last valid response token
    rewards: torch.Tensor  # (B,) fp32 scalar reward of each response
    correct: torch.Tensor  # (B,) bool verifier verdicts
    truncated: torch.Tensor  # (B,) bool: ended on the length limit without EOS
    group: torch.Tensor  # (B,) long: index of the prompt the response answers
    texts: list[str]
    prompts: list[str]
    generated_tokens: int
    seconds: float  # the whole rollout: generation, then scoring (verifier) and padding
    verifier_errors: int = 0
    extra: dict = field(default_factory=dict)
    generate_seconds: float = 0.0  # of which the engine's generate call
    errored: torch.Tensor | None = None  # (B,) bool: the verifier failed (timeout, sandbox fault); None = none did

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(-1)

    @property
    def answered(self) -> torch.Tensor:
        """(B,) bool: samples with a verdict (not a verifier error)."""
        return ~self.errored if self.errored is not None else torch.ones_like(self.correct, dtype=torch.bool)

    def select(self, rows: torch.Tensor) -> "Rollout":
        """The rows `rows` of every per-sequence field (keeps lists in step)."""
        idx = rows.tolist()
        return Rollout(
            self.ids[rows],
            self.mask[rows],
            self.engine_logp[rows],
            self.last[rows],
            self.rewards[rows],
            self.correct[rows],
            self.truncated[rows],
            self.group[rows],
            [self.texts[i] for i in idx],
            [self.prompts[i] for i in idx],
            self.generated_tokens,
            self.seconds,
            self.verifier_errors,
            self.extra,
            self.generate_seconds,
            None if self.errored is None else self.errored[rows],
        )


def rollout_seed(seed: int, step: int) -> int:
    return RL_SEED_BASE + seed * 100_000 + step


def rollout(
    engine: Engine,
    task,
    problems: Sequence,
    n: int,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    missing_eos_penalty: float = 0.0,
) -> Rollout:
    """Sample `n` responses per problem (one shared prefill each) and score them with the verifier.

    Sampling uses the full distribution (top_k=0, top_p=1; item 7). A response without
    EOS loses `missing_eos_penalty` from its reward (item 1).
    """
    tok = engine.tok
    params = SamplingParams(
        n=n, max_new_tokens=max_new_tokens, temperature=temperature, stop=tuple(task.stop), seed=seed
    )
    t0 = time.perf_counter()
    res = engine.generate([p.prompt for p in problems], params)
    t_gen = time.perf_counter() - t0
    seqs, resp_lens, plens, lps, rewards, correct, trunc, group, texts, prompts = [], [], [], [], [], [], [], [], [], []
    errored = []
    for gi, (p, g) in enumerate(zip(problems, res.generations)):
        for c in g.completions:
            v = task.check(p, c.text)
            errored.append(bool(v.error))
            no_eos = c.finish_reason == "length"
            seqs.append(g.prompt_ids + c.token_ids)
            plens.append(len(g.prompt_ids))
            resp_lens.append(len(c.token_ids))
            lps.append(c.logprobs)
            rewards.append(v.reward - (missing_eos_penalty if no_eos else 0.0))
            correct.append(v.correct)
            trunc.append(no_eos)
            group.append(gi)
            texts.append(c.text)
            prompts.append(p.prompt)
    B, T = len(seqs), max(len(s) for s in seqs)
    ids = torch.full((B, T), tok.pad_id, dtype=torch.long)
    mask = torch.zeros(B, T - 1)
    elp = torch.full((B, T - 1), INVALID_LOGPROB)
    for i, (s, P, L, lp) in enumerate(zip(seqs, plens, resp_lens, lps)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, P - 1 : P - 1 + L] = 1.0
        elp[i, P - 1 : P - 1 + L] = torch.tensor(lp, dtype=torch.float32)
    last = torch.tensor([P - 2 + L for P, L in zip(plens, resp_lens)])
    dev = engine.device
    return Rollout(
        ids.to(dev),
        mask.to(dev),
        elp.to(dev),
        last.to(dev),
        torch.tensor(rewards, device=dev),
        torch.tensor(correct, device=dev),
        torch.tensor(trunc, device=dev),
        torch.tensor(group, device=dev),
        texts,
        prompts,
        res.generated_tokens,
        time.perf_counter() - t0,
        sum(errored),
        generate_seconds=t_gen,
        errored=torch.tensor(errored, device=dev),
    )


def micro_batches(B: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, B)) for i in range(0, B, size)]


def last_position(mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last response token (B,), -1 for an empty row."""
    cols = torch.arange(mask.shape[1], device=mask.device)
    return torch.where(mask > 0, cols, -1).amax(1)


def trim(ids: torch.Tensor, *per_token: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Cut columns past the last response token of the slice (right padding; causal model)."""
    used = mask.any(0).nonzero()
    T1 = int(used.max()) + 1 if len(used) else 1
    return (ids[:, : T1 + 1],) + tuple(x[:, :T1] for x in per_token) + (mask[:, :T1],)


def sequence_logprobs(
    model, ids: torch.Tensor, mask: torch.Tensor, temperature: float, micro_batch: int, entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Trainer-side log-probs (B, T-1) of the targets ids[:, 1:] at `temperature`, fp32.

    Computed micro-batch by micro-batch with the same slicing as the update (item 5), so
    recomputed old log-probs match the first update's exactly. Off-mask slots hold
    INVALID_LOGPROB. With `entropy`, also the masked per-token entropy (B, T-1).
    """
    B, T1 = mask.shape
    out = torch.full((B, T1), INVALID_LOGPROB, device=ids.device)
    ent = torch.zeros(B, T1, device=ids.device) if entropy else None
    with torch.no_grad():
        for sl in micro_batches(B, micro_batch):
            x, m = trim(ids[sl], mask=mask[sl])
            logits = model(x[:, :-1])  # (b, t, V)
            lp = token_logprobs(logits, x[:, 1:], temperature)  # (b, t)
            t = m.shape[1]
            out[sl, :t] = torch.where(m > 0, lp, torch.full_like(lp, INVALID_LOGPROB))
            if ent is not None:
                ent[sl, :t] = entropy_from_logits(logits, temperature) * m
    return out, ent


# -- per-step record and problem stream ----------------------------------------------------


def prompt_batch(task, seed: int, step: int, n_prompts: int, difficulty: int | None):
    """The train-split problems of RL step `step`: a pure function of (seed, step), so resume is exact."""
    return draw(task, n_prompts, rollout_seed(seed, step), difficulty, split="train")


def rollout_record(ro: Rollout) -> dict:
    """Step metrics every RL trainer logs about its samples; reward and accuracy are over the
    answered samples (a verifier error is neither right nor wrong; `verifier_errors` counts them)."""
    m, ok = ro.mask, ro.answered
    n_ok = max(1, int(ok.sum()))
    return {
        "reward": float(ro.rewards[ok].sum()) / n_ok,
        "accuracy": float(ro.correct[ok].float().sum()) / n_ok,
        "prompts": len(set(ro.group.tolist())),
        "samples": len(ro.texts),
        "response_length": float(ro.lengths.mean()),
        "response_length_max": float(ro.lengths.max()),
        "truncated_frac": float(ro.truncated.float().mean()),
        "verifier_errors": ro.verifier_errors,
        "generated_tokens": ro.generated_tokens,
        "rollout_seconds": ro.seconds,
        "response_tokens": int(m.sum()),
        # where the step's time goes (with the trainer's train_seconds); on Ray, verification overlaps generation
        "generate_seconds": ro.generate_seconds,
        "score_seconds": ro.seconds - ro.generate_seconds,
    }


def check_step(step: int, loss: float, grad_norm: float, max_grad_norm: float) -> None:
    """Stop on a non-finite loss/gradient or an exploding gradient (before the optimizer step)."""
    from scalinglab.train.common import NonFiniteError, check_finite

    check_finite(step, loss=loss, grad_norm=grad_norm)
    if max_grad_norm > 0 and grad_norm > max_grad_norm:
        raise NonFiniteError(
            f"step {step}: gradient norm {grad_norm:.3g} exceeds abort_grad_norm={max_grad_norm:g} (exploding); "
            "stopped, last good checkpoint kept"
        )


RL_POSITIVE = (
    "steps",
    "prompts_per_step",
    "group_size",
    "samples_per_prompt",
    "temperature",
    "lr",
    "critic_lr",
    "epochs",
    "minibatches",
    "micro_batch",
    "ray_generators",
)
RL_NON_NEGATIVE = (
    "difficulty",
    "max_new_tokens",
    "clip_low",
    "clip_high",
    "clip",
    "value_clip",
    "vf_coef",
    "beta",
    "kl_coef",
    "missing_eos_penalty",
    "reward_clip",
    "warmup_steps",
    "weight_decay",
    "grad_clip",
    "abort_grad_norm",
    "checkpoint_every",
    "eval_problems",
    "gamma",
    "lam",
)


def check_rl_config(cfg) -> None:
    """Refuse (naming the key) numbers an RL run cannot use: steps 0, group_size 0, lr NaN, ..."""
    from scalinglab.errors import UserError
    from scalinglab.train.common import check_fields

    have = set(getattr(type(cfg), "__dataclass_fields__", {}))
    check_fields(
        cfg,
        positive=tuple(k for k in RL_POSITIVE if k in have),
        non_negative=tuple(k for k in RL_NON_NEGATIVE if k in have),
        at_most={k: 1.0 for k in ("gamma", "lam") if k in have},
    )
    if "group_size" in have and cfg.group_size < 2:
        raise UserError(
            f"config key 'group_size': must be >= 2 (advantages are relative to the group), got {cfg.group_size}"
        )


def finite_or_nan(x: float) -> float:
    return x if math.isfinite(x) else float("nan")


# -- run plumbing: load, resume, log, checkpoint, finish ----------------------------------


class RLRun:
    """The parts of an RL run that are not the algorithm: the policy and its optimizer, the
    engine, an optional frozen reference, held-out greedy accuracy before and after,
    per-step metrics, atomic checkpoints (model, optimizer, RNG, extra modules, wall time;
    the data position is the step, since prompts are a pure function of (seed, step)) and
    exact `--resume`, all through `runs/checkpoint.py`; the recipe's loop runs inside
    `checkpoint.guard(rl.run)` so the run index records how it ended."""

    @classmethod
    def start(
        cls,
        kind: str,
        cfg,
        model_path: str,
        out: str,
        resume: bool,
        need_ref: bool = False,
        make_modules: Callable | None = None,
    ) -> "RLRun":
        from dataclasses import asdict

        from scalinglab.device import pick_device
        from scalinglab.model.hf import resolve_model_dir
        from scalinglab.runs import Run
        from scalinglab.tasks import get_task

        self = cls()
        self.cfg, self.kind, self.task = cfg, kind, get_task(cfg.task)
        check_rl_config(cfg)
        self.device = pick_device(cfg.device)
        model_dir = resolve_model_dir(model_path)
        self.run = Run.create(out, kind=kind, config={**asdict(cfg), "model": str(model_dir)}, resume=resume)
        self.done = resume and self.run.finished
        if self.done:
            self.summary = self.run.summary
            return self
        with checkpoint.guard(self.run, release=False):  # the loop that follows holds the lock in its own guard
            self._open(model_dir, resume, need_ref, make_modules)
        return self

    def _open(self, model_dir, resume: bool, need_ref: bool, make_modules: Callable | None) -> None:
        from scalinglab.model.hf import load_model
        from scalinglab.model.prompting import PromptFormat, formatted
        from scalinglab.testtime.greedy import default_max_new_tokens
        from scalinglab.train.common import make_optimizer, seed_everything

        cfg = self.cfg
        seed_everything(cfg.seed)
        self.model, self.tok = load_model(model_dir, device=self.device, dtype=torch.float32)
        self.task = formatted(
            self.task, PromptFormat(self.tok, getattr(cfg, "chat", "auto"), getattr(cfg, "system", "") or None)
        )
        self.model.eval()
        self.ref = None
        if need_ref:
            self.ref = load_model(model_dir, device=self.device, dtype=torch.float32)[0].eval().requires_grad_(False)
        self.opt = make_optimizer(self.model, cfg.lr, cfg.weight_decay)
        self.modules = make_modules(self.model) if make_modules else {}
        self.difficulty = cfg.difficulty or None
        self.max_new_tokens = cfg.max_new_tokens or default_max_new_tokens(
            self.task, draw(self.task, 64, RL_SEED_BASE - 1, self.difficulty, split="train"), self.tok
        )
        per_step = getattr(cfg, "prompts_per_step", 16) * max(
            getattr(cfg, "group_size", 1), getattr(cfg, "samples_per_prompt", 1)
        )
        self.engine = Engine(self.model, self.tok, max_batch=max(64, per_step))
        self.start, self.elapsed0, self.baseline, self.baseline_correct = 0, 0.0, None, None
        if resume:  # the newest intact checkpoint, or step 0 (metrics trimmed either way)
            self.start, extra = checkpoint.restore(self.run, self.model, self.opt, self.modules)
            self.elapsed0, self.baseline = extra.get("elapsed", 0.0), extra.get("baseline")
            self.baseline_correct = extra.get("baseline_correct")
        if not self.start and cfg.eval_problems:
            self.baseline, self.baseline_correct = self.evaluate()
        self.tb = _tensorboard(self.run.path / "tb")
        self.t_start = time.perf_counter()

    def evaluate(self) -> tuple[float, list[int]]:
        """Greedy accuracy on the held-out problems, and 1/0 per problem (for the paired gain interval)."""
        from scalinglab.testtime.greedy import greedy_accuracy

        problems = draw(self.task, self.cfg.eval_problems, self.cfg.eval_seed, self.difficulty, split="eval")
        g = greedy_accuracy(self.model, self.tok, self.task, problems, max_new_tokens=self.max_new_tokens)
        return g["accuracy"], [int(c) for c in g["correct"]]

    def heldout_overlap(self) -> int:
        """Evaluation problems among every step's prompts (regenerated: a pure function of seed and step)."""
        n = getattr(self.cfg, "prompts_per_step", 16)
        steps = (
            p for s in range(self.cfg.steps) for p in prompt_batch(self.task, self.cfg.seed, s, n, self.difficulty)
        )
        return overlap(
            steps, draw(self.task, self.cfg.eval_problems, self.cfg.eval_seed, self.difficulty, split="eval")
        )

    def wall(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t_start

    def end_step(self, step: int, rec: dict, t0: float, tokens: int) -> None:
        """Log step `step` (0-based) and checkpoint when due."""
        dt = time.perf_counter() - t0
        rec.update(step_seconds=dt, tokens_per_s=tokens / max(dt, 1e-9), wall_time=self.wall())
        self.run.log(rec)
        if self.tb is not None:
            for k, v in rec.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(f"{self.kind}/{k}", v, step + 1)
        done = step + 1
        every = self.cfg.checkpoint_every
        if every and done % every == 0 and done < self.cfg.steps:
            checkpoint.save(
                self.run,
                done,
                self.model,
                self.tok,
                self.opt,
                extra={"elapsed": self.wall(), "baseline": self.baseline, "baseline_correct": self.baseline_correct},
                modules=self.modules,
            )

    def fail(self, e: Exception) -> None:
        self.run.fail(str(e)[:200])

    def finish(self, extra: dict | None = None) -> dict:
        if self.tb is not None:
            self.tb.close()
        from scalinglab.model.hf import save_model

        save_model(
            self.model,
            self.tok,
            self.run.path / "model",
            extra={"task": self.cfg.task, "difficulty": self.cfg.difficulty},
        )
        recs = self.run.metrics()
        tail = recs[-10:]
        per_prompt = max(getattr(self.cfg, "group_size", 1), getattr(self.cfg, "samples_per_prompt", 1))
        summary = {
            "kind": self.kind,
            "task": self.cfg.task,
            "steps": self.cfg.steps,
            "model": str(self.run.path / "model"),
            "reward_last10": sum(r["reward"] for r in tail) / max(1, len(tail)),
            "train_accuracy_last10": sum(r["accuracy"] for r in tail) / max(1, len(tail)),
            # what the run trained on, from its own step records: compare GRPO and PPO at equal prompts_seen
            "prompts_seen": sum(r.get("prompts", self.cfg.prompts_per_step) for r in recs),
            "samples_seen": sum(r.get("samples", self.cfg.prompts_per_step * per_prompt) for r in recs),
            "verifier_errors": sum(r.get("verifier_errors", 0) for r in recs),
            "seconds": self.wall(),
            **(extra or {}),
        }
        if self.cfg.eval_problems:
            from scalinglab.testtime.stats import heldout_gain

            acc, correct = self.evaluate()
            summary.update(
                accuracy_before=self.baseline,
                accuracy=acc,
                eval_seed=self.cfg.eval_seed,
                eval_problems=self.cfg.eval_problems,
                heldout_overlap=self.heldout_overlap(),
                **(
                    heldout_gain(self.baseline_correct, correct)
                    if self.baseline_correct is not None
                    else {"gain": None if self.baseline is None else acc - self.baseline, "gain_ci95": None}
                ),
            )
        self.run.finish(summary)
        return summary


def _tensorboard(path):
    """A TensorBoard writer when the `tensorboard` package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path))
