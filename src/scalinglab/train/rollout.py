"""Rollouts: sample responses with the engine, score them with the verifier, pad and mask
them for training; the per-step sample metrics; trainer-side log-probs.

Sequence layout (RL_CHECKLIST items 1-3). A rollout row is `<bos> prompt response <pad>…`,
right-padded with `tok.pad_id` (never the EOS id). Position t of every (B, T-1) tensor
scores the *target* token `ids[:, t+1]`, so the response tokens of a row with prompt
length P and response length L sit at t = P-1 … P+L-2; `mask` is 1 exactly there. The
engine also gives each sequence positions 0, 1, … from its own first token, so right
padding here reproduces the sampler's positions and causal masks exactly. The response
ends at its first EOS (kept, so the policy learns to stop) and the scalar score lives on
that last valid token (trl #3750). Padded log-probs hold `INVALID_LOGPROB` and are masked.

`rollout` = generate (`engine.generate`) + verify (`task.check`) + `build_rollout`. The seam
is `build_rollout(problems, generations, verdicts, ...)`: whoever produced the generations and
verdicts (the Ray pool in `distributed/rollouts.py` does both on actors) gets the same
`Rollout` the local engine path gives.

Verifier errors (a timeout or sandbox fault, `Verdict.error`) are not wrong answers: a
rollout marks them (`Rollout.errored`), and `rollout_record` takes reward and accuracy over
the answered samples and counts the errors as `verifier_errors`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from scalinglab.engine import Engine, SamplingParams
from scalinglab.tasks.seeds import RL_SEED_BASE
from scalinglab.tasks.split import draw
from scalinglab.train.common import entropy_from_logits, token_logprobs

INVALID_LOGPROB = 1.0  # sentinel in padded log-prob slots (trl); always masked out


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


def prompt_batch(task, seed: int, step: int, n_prompts: int, difficulty: int | None):
    """The train-split problems of RL step `step`: a pure function of (seed, step), so resume is exact."""
    return draw(task, n_prompts, rollout_seed(seed, step), difficulty, split="train")


def sampling_params(task, n: int, max_new_tokens: int, temperature: float, seed: int) -> SamplingParams:
    """`n` samples per prompt from the full distribution (top_k=0, top_p=1; item 7), stopping at the task's stops."""
    return SamplingParams(n=n, max_new_tokens=max_new_tokens, temperature=temperature, stop=tuple(task.stop), seed=seed)


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

    A response without EOS loses `missing_eos_penalty` from its reward (item 1).
    """
    params = sampling_params(task, n, max_new_tokens, temperature, seed)
    t0 = time.perf_counter()
    res = engine.generate([p.prompt for p in problems], params)
    t_gen = time.perf_counter() - t0
    verdicts = [[task.check(p, c.text) for c in g.completions] for p, g in zip(problems, res.generations)]
    return build_rollout(
        problems,
        res,
        verdicts,
        engine.tok.pad_id,
        engine.device,
        missing_eos_penalty,
        started=t0,
        generate_seconds=t_gen,
    )


def build_rollout(
    problems: Sequence,
    result: Any,
    verdicts: Sequence[Sequence[Any]],
    pad_id: int,
    device,
    missing_eos_penalty: float = 0.0,
    started: float | None = None,
    generate_seconds: float = 0.0,
) -> Rollout:
    """The padded, masked `Rollout` of generations and their verdicts (see the module docstring).

    `result` is an `engine.GenerationResult` over `problems` (in order); `verdicts[i][j]` judges
    completion j of problem i. `started` (a `time.perf_counter()` value) is when the rollout began.
    """
    t0 = time.perf_counter() if started is None else started
    seqs, resp_lens, plens, lps, rewards, correct, trunc, group, texts, prompts = [], [], [], [], [], [], [], [], [], []
    errored = []
    for gi, (p, g, vs) in enumerate(zip(problems, result.generations, verdicts)):
        for c, v in zip(g.completions, vs):
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
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros(B, T - 1)
    elp = torch.full((B, T - 1), INVALID_LOGPROB)
    for i, (s, P, L, lp) in enumerate(zip(seqs, plens, resp_lens, lps)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, P - 1 : P - 1 + L] = 1.0
        elp[i, P - 1 : P - 1 + L] = torch.tensor(lp, dtype=torch.float32)
    last = torch.tensor([P - 2 + L for P, L in zip(plens, resp_lens)])
    dev = torch.device(device)
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
        result.generated_tokens,
        time.perf_counter() - t0,
        sum(errored),
        generate_seconds=generate_seconds,
        errored=torch.tensor(errored, device=dev),
    )


# -- trainer-side forward passes over a rollout ------------------------------------------


def row_slices(B: int, size: int) -> list[slice]:
    """Slices of at most `size` rows over B rows: the micro-batches of a forward pass."""
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
        for sl in row_slices(B, micro_batch):
            x, m = trim(ids[sl], mask=mask[sl])
            logits = model(x[:, :-1])  # (b, t, V)
            lp = token_logprobs(logits, x[:, 1:], temperature)  # (b, t)
            t = m.shape[1]
            out[sl, :t] = torch.where(m > 0, lp, torch.full_like(lp, INVALID_LOGPROB))
            if ent is not None:
                ent[sl, :t] = entropy_from_logits(logits, temperature) * m
    return out, ent


# -- the per-step record of a rollout ---------------------------------------------------


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
