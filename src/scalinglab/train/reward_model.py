"""Reward models: an outcome RM (ORM) and a process RM (PRM) on the transformer backbone.

    scalinglab train reward-model --model A --task arithmetic --set kind=orm --steps 200 --out RM
    scalinglab train reward-model --model A --task arithmetic --set kind=prm --data labels.jsonl --steps 200 --out PRM

The model is the policy's transformer with a scalar head `score` (Linear d -> 1) on the
final-normed hidden states, as Hugging Face's `LlamaForSequenceClassification`.

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

def bce_soft_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, normaliser: float | None = None) -> torch.Tensor:
    """Σ_mask BCE(σ(z), t) / normaliser, for targets t ∈ [0, 1] (hard labels are 0/1).

    `normaliser` defaults to the number of labelled positions here; pass the count over
    the whole optimizer step so gradient accumulation is exact.
    """
    per = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    m = mask.float()
    return (per * m).sum() / (normaliser if normaliser is not None else m.sum().clamp_min(1))


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, normaliser: float | None = None) -> torch.Tensor:
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
    """Backbone transformer + scalar head. `forward(ids) -> (B, T)` head logits per position."""

    def __init__(self, backbone, tokenizer, kind: str = "orm", meta: dict | None = None):
        super().__init__()
        if kind not in ("orm", "prm"):
            raise UserError(f"reward model kind {kind!r} is not 'orm' or 'prm'")
        self.backbone, self.tok, self.kind = backbone, tokenizer, kind
        d = backbone.config.hidden_size
        self.score = nn.Linear(d, 1)
        nn.init.normal_(self.score.weight, std=1 / (d + 1) ** 0.5)  # as TRL's reward head
        nn.init.zeros_(self.score.bias)
        self.score.to(backbone.lm_head.weight.device)
        self.meta = {"kind": kind, "aggregate": "min", **(meta or {})}
        self.max_batch = 64
        self._splitter = None

    @property
    def device(self) -> torch.device:
        return self.score.weight.device

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.backbone.hidden_states(ids)  # (B, T, d)
        return self.score(h.to(self.score.weight.dtype))[..., 0]  # (B, T)

    def _fit(self, ids: list[int]) -> tuple[list[int], int]:
        """Left-truncate to the context window; returns (ids, tokens dropped)."""
        cap = self.backbone.config.max_position_embeddings
        return (ids[-cap:], len(ids) - cap) if len(ids) > cap else (ids, 0)

    @torch.no_grad()
    def _scores_at(self, seqs: list[list[int]], positions: list[list[int]], logits: bool) -> list[list[float]]:
        out: list[list[float]] = [[] for _ in seqs]
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # similar lengths batch together
        for b in range(0, len(order), self.max_batch):
            idx = order[b: b + self.max_batch]
            fitted = [self._fit(seqs[i]) for i in idx]
            z = self(pad_right([f[0] for f in fitted], self.tok.pad_id, self.device)).float()  # (B, T)
            if not logits:
                z = torch.sigmoid(z)
            z = z.cpu()
            for row, i, (_, drop) in zip(range(len(idx)), idx, fitted):
                out[i] = [float(z[row, max(0, p - drop)]) for p in positions[i]]
        return out

    def score_outcomes(self, prompts: Sequence[str], completions: Sequence[str], aggregate: str | None = None,
                       logits: bool = False) -> list[float]:
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
            return [AGGREGATES[agg](s) if s else (float("-inf") if logits else 0.0) for s in per]  # no step: worst score
        seqs = [outcome_ids(self.tok, p, c) for p, c in zip(prompts, completions)]
        return [s[0] for s in self._scores_at(seqs, [[len(s) - 1] for s in seqs], logits)]

    def score_steps(self, prompt: str, steps: Sequence[str], logits: bool = False) -> list[float]:
        """One score per step: σ(head) at the step's last token (the prefix up to it)."""
        return self.score_steps_batch([prompt], [steps], logits=logits)[0]

    def score_steps_batch(self, prompts: Sequence[str], steps: Sequence[Sequence[str]], logits: bool = False) -> list[list[float]]:
        if len(prompts) != len(steps):
            raise UserError(f"score_steps_batch: {len(prompts)} prompts but {len(steps)} step lists")
        built = [step_ids(self.tok, p, s) for p, s in zip(prompts, steps)]
        return self._scores_at([b[0] for b in built], [b[1] for b in built], logits)

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
        head = {f"score.{k}": v.detach().to("cpu", torch.float32).contiguous() for k, v in rm.score.state_dict().items()}
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
        raise UserError(f"{path}: not a reward model (no {HEAD_FILE} next to the model; train one with `scalinglab train reward-model`)")
    return d


def load_reward_model(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> RewardModel:
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
    sd = {k[len("score."):]: v for k, v in load_file(str(d / HEAD_FILE)).items() if k.startswith("score.")}
    try:
        rm.score.load_state_dict(sd)
    except RuntimeError as e:
        raise UserError(f"{d / HEAD_FILE}: head does not match the backbone ({str(e).splitlines()[0]})") from None
    rm.score.to(device=device, dtype=dtype)
    return rm.eval()
