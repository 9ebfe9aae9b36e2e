"""Reward models: an outcome RM (ORM) and a process RM (PRM) on the transformer backbone.

    scalinglab train reward-model --model A --task arithmetic --set kind=orm --steps 200 --out RM
    scalinglab train reward-model --model A --task arithmetic --set kind=prm --data labels.jsonl --steps 200 --out PRM

The model is the policy's transformer with a scalar head `score` (Linear d -> 1) on the
final-normed hidden states, as Hugging Face's `LlamaForSequenceClassification`, plus one
learnt gain `confidence` on the backbone's own *confidence* at that position: the running
minimum, over the completion's tokens so far, of log p(token | prefix) under the backbone's
LM head. The head logit at position t is

    z_t = score(h_t) + confidence · min_{start <= s <= t} log p(x_s | x_<s)

Why the extra feature: a small policy's token log-probs already rank its correct samples
above its wrong ones (arithmetic, SFT model: AUC 0.93), but a head reading one hidden state
cannot see whether an earlier written digit was the one the model predicted there, and
from ~1k labelled samples fine-tuning did not learn it (AUC 0.73; docs/posttrain.md).
The gain is fitted with the head (a linear probe on frozen features, then fine-tuning
end to end: LP-FT, Kumar et al. 2022); a saved RM without it loads with gain 0.

- **ORM** reads the head at the last token of `<bos> prompt completion <eos>` (the EOS,
  so the score sees the whole answer). Trained either (a) on verifier labels of sampled
  answers with binary cross-entropy (Cobbe et al. 2021, "verifiers"), or (b) on preference
  pairs with the Bradley–Terry loss −log σ(r_chosen − r_rejected) (Ouyang et al. 2022;
  RLAIF when a judge labelled the pairs, Bai et al. 2022 / Lee et al. 2023).
- **PRM** reads the head at the last token of every step of `<bos> prompt step1 step2 …`
  and is trained with BCE against hard or soft per-step labels (Lightman et al. 2023;
  Math-Shepherd soft labels = fraction of rollouts from the step that reach the answer,
  Wang et al. 2023). BCE with a soft target t is −t·log σ(z) − (1−t)·log(1−σ(z)).

A saved RM is a directory: the backbone in Hugging Face layout (it still loads with
`load_model`), plus `reward_head.safetensors` (`score.weight`, `score.bias`) and
`reward_model.json` (kind, objective, task, aggregation). `load_reward_model(path)`
returns a `RewardModel` whose `score_outcomes` / `score_steps` / `score_steps_batch`
return σ(head) ∈ (0, 1): the predicted probability of being correct for BCE-trained
models, a monotone transform of the Bradley–Terry reward for pair-trained ones.
Every scoring call records its compute: `last_cost` holds (tokens, FLOPs) per scored text
of the last call (one forward over prompt + completion, `forward_flops`), and
`tokens_scored` / `flops_spent` the running totals; test-time strategies add it to their cost.
The trainer lives in `train/reward_trainer.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from scalinglab.errors import UserError

HEAD_FILE = "reward_head.safetensors"
META_FILE = "reward_model.json"


# -- losses (pure functions) ------------------------------------------------------------


def bce_soft_loss(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, normaliser: float | None = None
) -> torch.Tensor:
    """Σ_mask BCE(σ(z), t) / normaliser, for targets t ∈ [0, 1] (hard labels are 0/1).

    `normaliser` defaults to the number of labelled positions here; pass the count over
    the whole optimizer step so gradient accumulation is exact.
    """
    per = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    m = mask.float()
    return (per * m).sum() / (normaliser if normaliser is not None else m.sum().clamp_min(1))


def bradley_terry_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, normaliser: float | None = None
) -> torch.Tensor:
    """Σ −log σ(r_c − r_r) / normaliser (pairs in the step by default)."""
    per = F.softplus(r_rejected.float() - r_chosen.float())  # = −log σ(r_c − r_r), stable
    return per.sum() / (normaliser if normaliser is not None else max(1, per.numel()))


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve: P(score of a random positive > a random negative), ties ½.

    NaN when one class is absent.
    """
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return float("nan")
    # rank-sum (Mann–Whitney U) with average ranks for ties: O(n log n)
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    r_pos = sum(r for r, y in zip(ranks, labels) if y)
    return (r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def auc_bootstrap_ci(
    scores: Sequence[float],
    labels: Sequence[bool],
    groups: Sequence,
    resamples: int = 400,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap CI of `auc`, resampling whole groups (the problems).

    Samples of one problem are correlated (same prompt, often the same answer), so
    resampling single samples would understate the spread. Resamples with one class
    missing are skipped; (nan, nan) when none is left.
    """
    import random

    by: dict = {}
    for i, g in enumerate(groups):
        by.setdefault(g, []).append(i)
    keys, rng, vals = list(by), random.Random(seed), []
    for _ in range(resamples):
        idx = [i for k in (rng.choice(keys) for _ in keys) for i in by[k]]
        a = auc([scores[i] for i in idx], [labels[i] for i in idx])
        if a == a:
            vals.append(a)
    if not vals:
        return float("nan"), float("nan")
    vals.sort()
    lo = vals[int((1 - level) / 2 * len(vals))]
    hi = vals[min(len(vals) - 1, int((1 + level) / 2 * len(vals)))]
    return lo, hi


# -- sequence layout shared by training and scoring --------------------------------------


def outcome_ids(tok, prompt: str, completion: str) -> list[int]:
    """`<bos> prompt completion <eos>`; the ORM reads the score at the final EOS."""
    return tok.encode(prompt, bos=True) + tok.encode(completion, bos=False) + [tok.eos_id]


def step_ids(tok, prompt: str, steps: Sequence[str]) -> tuple[list[int], list[int]]:
    """`<bos> prompt step1 step2 …` and the index of each step's last token.

    Steps are encoded one by one so training and scoring cut tokens identically; an
    empty step shares the position of the token before it.
    """
    ids = tok.encode(prompt, bos=True)
    ends = []
    for s in steps:
        ids = ids + tok.encode(s, bos=False)
        ends.append(len(ids) - 1)
    return ids, ends


def running_min_logprob(logits: torch.Tensor, ids: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """(B, T): min over positions start..t of log p(ids[s] | ids[<s]) (0 before `start`).

    `logits[:, s-1]` predicts `ids[:, s]`; a position before the completion's first token
    contributes 0 (the maximum), so prompts never lower the score. Right padding only
    follows a sequence, and a running minimum never looks back from it.
    """
    lp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, ids[:, 1:, None])[..., 0]  # (B, T-1)
    lp = F.pad(lp, (1, 0))  # position 0 (BOS) predicts nothing
    before = torch.arange(ids.shape[1], device=ids.device)[None, :] < starts[:, None]
    return torch.cummin(lp.masked_fill(before, 0.0), dim=1).values


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int, device=None) -> torch.Tensor:
    """Right-padded (B, T) ids; causal attention makes right padding harmless."""
    T = max(len(s) for s in seqs)
    out = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
    return out.to(device) if device is not None else out


# -- the model ---------------------------------------------------------------------------

AGGREGATES = {
    "min": min,  # a chain is as good as its weakest step (Lightman et al.)
    "last": lambda xs: xs[-1],
    "mean": lambda xs: sum(xs) / len(xs),
    "prod": lambda xs: float(torch.tensor(xs, dtype=torch.float64).prod()),
}


class RewardModel(nn.Module):
    """Backbone + scalar head + confidence gain. `forward(ids, starts) -> (B, T)` head logits.

    `starts[b]` is the index of the first completion token of row b (the prompt's length
    with its BOS); the confidence feature only counts tokens from there on.
    """

    def __init__(self, backbone, tokenizer, kind: str = "orm", meta: dict | None = None):
        super().__init__()
        if kind not in ("orm", "prm"):
            raise UserError(f"reward model kind {kind!r} is not 'orm' or 'prm'")
        self.backbone, self.tok, self.kind = backbone, tokenizer, kind
        d = backbone.config.hidden_size
        self.score = nn.Linear(d, 1)
        nn.init.normal_(self.score.weight, std=1 / (d + 1) ** 0.5)  # as TRL's reward head
        nn.init.zeros_(self.score.bias)
        self.confidence = nn.Linear(1, 1, bias=False)  # gain on the running-min token log-prob
        nn.init.zeros_(self.confidence.weight)  # 0: the plain head until fitted (fit_probe) or trained
        self.score.to(backbone.lm_head.weight.device)
        self.confidence.to(backbone.lm_head.weight.device)
        self.meta = {"kind": kind, "aggregate": "min", **(meta or {})}
        self.max_batch = 64
        self._splitter = None
        # compute accounting (test-time strategies add it to their FLOPs): what the last scoring
        # call read and spent per scored text, in input order, and running totals
        self.last_cost: list[tuple[int, float]] = []
        self.tokens_scored, self.flops_spent = 0, 0.0

    @property
    def device(self) -> torch.device:
        return self.score.weight.device

    def features(self, ids: torch.Tensor, starts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden states (B, T, d), confidence feature (B, T)); starts default 1 (after BOS)."""
        if starts is None:
            starts = torch.ones(ids.shape[0], dtype=torch.long, device=ids.device)
        h = self.backbone.hidden_states(ids)  # (B, T, d)
        conf = running_min_logprob(self.backbone.lm_head(h), ids, starts.to(ids.device))
        return h.to(self.score.weight.dtype), conf.to(self.score.weight.dtype)

    def forward(self, ids: torch.Tensor, starts: torch.Tensor | None = None) -> torch.Tensor:
        h, conf = self.features(ids, starts)
        return self.score(h)[..., 0] + self.confidence(conf[..., None])[..., 0]  # (B, T)

    def forward_flops(self, n_tokens: int) -> float:
        """FLOPs of one scoring forward over `n_tokens`: the backbone with its LM head at every
        position (the confidence feature reads every token's log-prob) plus the scalar head."""
        cfg = self.backbone.config
        return cfg.forward_flops(0, n_tokens) + (2.0 * cfg.hidden_size + 3.0) * n_tokens  # score(h) + bias, gain · conf

    def _fit(self, ids: list[int]) -> tuple[list[int], int]:
        """Left-truncate to the context window; returns (ids, tokens dropped)."""
        cap = self.backbone.config.max_position_embeddings
        return (ids[-cap:], len(ids) - cap) if len(ids) > cap else (ids, 0)

    @torch.no_grad()
    def _scores_at(
        self, seqs: list[list[int]], starts: list[int], positions: list[list[int]], logits: bool
    ) -> list[list[float]]:
        out: list[list[float]] = [[] for _ in seqs]
        cost: list[tuple[int, float]] = [(0, 0.0)] * len(seqs)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # similar lengths batch together
        for b in range(0, len(order), self.max_batch):
            idx = order[b : b + self.max_batch]
            fitted = [self._fit(seqs[i]) for i in idx]
            st = torch.tensor([max(1, starts[i] - f[1]) for i, f in zip(idx, fitted)], device=self.device)
            z = self(pad_right([f[0] for f in fitted], self.tok.pad_id, self.device), st).float()  # (B, T)
            if not logits:
                z = torch.sigmoid(z)
            z = z.cpu()
            for row, i, (kept, drop) in zip(range(len(idx)), idx, fitted):
                out[i] = [float(z[row, max(0, p - drop)]) for p in positions[i]]
                cost[i] = (len(kept), self.forward_flops(len(kept)))  # the padding it was batched with is not counted
        self.last_cost = cost
        self.tokens_scored += sum(t for t, _ in cost)
        self.flops_spent += sum(f for _, f in cost)
        return out

    def score_outcomes(
        self, prompts: Sequence[str], completions: Sequence[str], aggregate: str | None = None, logits: bool = False
    ) -> list[float]:
        """One score per (prompt, completion), batched.

        ORM: σ(head) at the final EOS. PRM: the step scores of the completion (cut by the
        task's `split_steps`) aggregated by `aggregate` (default from the metadata: min).
        """
        if len(prompts) != len(completions):
            raise UserError(f"score_outcomes: {len(prompts)} prompts but {len(completions)} completions")
        if not prompts:
            return []
        if self.kind == "prm":
            agg = aggregate or self.meta.get("aggregate", "min")
            if agg not in AGGREGATES:
                raise UserError(f"unknown aggregate {agg!r} (choose from {', '.join(AGGREGATES)})")
            per = self.score_steps_batch(prompts, [self.split_steps(c) for c in completions], logits=logits)
            return [
                AGGREGATES[agg](s) if s else (float("-inf") if logits else 0.0) for s in per
            ]  # no step: worst score
        seqs = [outcome_ids(self.tok, p, c) for p, c in zip(prompts, completions)]
        starts = [len(self.tok.encode(p, bos=True)) for p in prompts]
        return [s[0] for s in self._scores_at(seqs, starts, [[len(s) - 1] for s in seqs], logits)]

    def score_steps(self, prompt: str, steps: Sequence[str], logits: bool = False) -> list[float]:
        """One score per step: σ(head) at the step's last token (the prefix up to it)."""
        return self.score_steps_batch([prompt], [steps], logits=logits)[0]

    def score_steps_batch(
        self, prompts: Sequence[str], steps: Sequence[Sequence[str]], logits: bool = False
    ) -> list[list[float]]:
        if len(prompts) != len(steps):
            raise UserError(f"score_steps_batch: {len(prompts)} prompts but {len(steps)} step lists")
        built = [step_ids(self.tok, p, s) for p, s in zip(prompts, steps)]
        starts = [len(self.tok.encode(p, bos=True)) for p in prompts]
        return self._scores_at([b[0] for b in built], starts, [b[1] for b in built], logits)

    def split_steps(self, completion: str) -> list[str]:
        """The task's step splitter when the task is known, else one step per non-empty line."""
        if self._splitter is None:
            self._splitter = _line_steps
            task = self.meta.get("task")
            if task:
                try:
                    from scalinglab.tasks import get_task

                    self._splitter = get_task(task).split_steps
                except UserError:
                    pass
        return self._splitter(completion)


def _line_steps(text: str) -> list[str]:
    return [line + "\n" for line in text.split("\n") if line.strip()]


# -- saving and loading -----------------------------------------------------------------


def save_reward_model(rm: RewardModel, directory: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write the backbone (HF layout) + head + metadata into `directory`, atomically."""
    from safetensors.torch import save_file

    from scalinglab.model.hf import save_model
    from scalinglab.runs.store import atomic_write_json

    final = Path(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.rm-"))
    try:
        save_model(rm.backbone, rm.tok, stage / "m", extra=extra)
        head = {
            f"{name}.{k}": v.detach().to("cpu", torch.float32).contiguous()
            for name in ("score", "confidence")
            for k, v in getattr(rm, name).state_dict().items()
        }
        save_file(head, str(stage / "m" / HEAD_FILE), metadata={"format": "pt"})
        atomic_write_json(stage / "m" / META_FILE, rm.meta)
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(stage / "m", final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage / "m", final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return final


def reward_model_dir(path: str | os.PathLike) -> Path:
    """The directory holding the RM meant by `path` (an RM directory or a reward-model run)."""
    from scalinglab.model.hf import resolve_model_dir

    d = resolve_model_dir(path)
    if not (d / HEAD_FILE).exists():
        raise UserError(
            f"{path}: not a reward model (no {HEAD_FILE} next to the model; train one with `scalinglab train reward-model`)"
        )
    return d


def load_reward_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> RewardModel:
    """Load a saved RM (a run directory or the model directory itself), in eval mode."""
    from safetensors.torch import load_file

    from scalinglab.model.hf import load_model

    d = reward_model_dir(path)
    backbone, tok = load_model(d, device=device, dtype=dtype)
    try:
        meta = json.loads((d / META_FILE).read_text()) if (d / META_FILE).exists() else {"kind": "orm"}
    except json.JSONDecodeError as e:
        raise UserError(f"{d / META_FILE}: not valid JSON ({e.msg})") from None
    rm = RewardModel(backbone, tok, kind=meta.get("kind", "orm"), meta=meta)
    saved = load_file(str(d / HEAD_FILE))
    sd = {k[len("score.") :]: v for k, v in saved.items() if k.startswith("score.")}
    try:
        rm.score.load_state_dict(sd)
        if "confidence.weight" in saved:  # older RMs have no confidence gain: it stays 0
            rm.confidence.load_state_dict({"weight": saved["confidence.weight"]})
    except RuntimeError as e:
        raise UserError(f"{d / HEAD_FILE}: head does not match the backbone ({str(e).splitlines()[0]})") from None
    rm.score.to(device=device, dtype=dtype)
    rm.confidence.to(device=device, dtype=dtype)
    return rm.eval()
