"""Post-training data: answer-only examples, packing with document masks, preference pairs,
sampled-then-verified completions, and seeded shuffled batches of indices (`ShuffledBatches`).

Packing. Examples `<bos> prompt completion <eos>` are laid back to back in rows of
`seq_len` positions (an example never straddles two rows; one longer than a row is cut
at its end). Each position carries a document id and its position *within* its own
example, and `packed_hidden_states` attends only inside the document (block-diagonal
causal mask) with RoPE positions restarting at 0, so a packed row computes exactly the
logits each example would get alone (tested). The loss mask is 1 only where the target is
a completion token (the answer and its EOS), never on the prompt or padding.

Input files (JSONL, one object per line) are read leniently:
- problems: `prompt`, `answer`, `solution` (the worked completion);
- synthetic samples (`scalinglab synth`): `prompt`, `completion`, optional `correct`
  (rows with `correct: false` are not trained on by SFT);
- preference pairs: `prompt`, `chosen`, `rejected`.

Verifier errors (a timeout or sandbox fault: `Verdict.error`, written `verifier_error: true`)
are neither right nor wrong answers: such rows never become a chosen or rejected answer of
a pair, nor an RM label (`drop_verifier_errors`); the trainers count and report them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from scalinglab.errors import UserError


@dataclass(frozen=True)
class Example:
    prompt_ids: list[int]  # <bos> prompt
    completion_ids: list[int]  # completion <eos>: the tokens that carry loss


def encode_example(tok, prompt: str, completion: str) -> Example:
    return Example(tok.encode(prompt, bos=True), tok.encode(completion, bos=False) + [tok.eos_id])


def check_data_file(path: str) -> None:
    """Fail before a run directory is created when `--data` names no file."""
    from pathlib import Path

    if path and not Path(path).is_file():
        raise UserError(f"--data {path}: no such file")


def completion_of(row: dict) -> str | None:
    """The completion text of a synth row (`completion`) or a problem row (`solution`)."""
    c = row.get("completion")
    return c if isinstance(c, str) else (row.get("solution") if isinstance(row.get("solution"), str) else None)


def sft_pairs_from_rows(rows: Sequence[dict], source: str = "data") -> list[tuple[str, str]]:
    """(prompt, completion) for every row with a completion that is not marked incorrect."""
    out = []
    for i, r in enumerate(rows):
        if "prompt" not in r:
            raise UserError(f"{source}: row {i + 1} has no 'prompt'")
        c = completion_of(r)
        if c is None:
            raise UserError(f"{source}: row {i + 1} has neither 'completion' nor 'solution'")
        if r.get("correct", True) is False:
            continue
        out.append((str(r["prompt"]), c))
    if not out:
        raise UserError(f"{source}: no usable (correct) rows to train on")
    return out


# -- packing --------------------------------------------------------------------------


class Packer:
    """Packs examples `source(i)`, i = 0, 1, 2, …, into rows; resumable by `pos`."""

    def __init__(self, source: Callable[[int], Example], seq_len: int, pad_id: int):
        self.source, self.seq_len, self.pad_id = source, seq_len, pad_id
        self.pos = 0  # index of the next example not yet placed in a row
        self.truncated = 0

    def next_rows(self, rows: int) -> dict[str, torch.Tensor]:
        """`rows` packed rows: input ids, targets, loss mask, document ids, positions (rows, T)."""
        T = self.seq_len
        out = {k: torch.zeros(rows, T, dtype=torch.long) for k in ("ids", "targets", "doc", "pos")}
        out["ids"].fill_(self.pad_id)
        out["targets"].fill_(self.pad_id)
        out["doc"].fill_(-1)  # padding forms its own document (attends to padding only)
        out["mask"] = torch.zeros(rows, T)
        for r in range(rows):
            used, doc = 0, 0
            while True:
                ex = self.source(self.pos)
                seq = ex.prompt_ids + ex.completion_ids
                n = len(seq) - 1  # positions it occupies (inputs seq[:-1] predict seq[1:])
                if n > T:
                    if used:  # start the over-long example on a fresh row
                        break
                    seq, n = seq[: T + 1], T
                    self.truncated += 1
                if used + n > T:
                    break
                sl = slice(used, used + n)
                out["ids"][r, sl] = torch.tensor(seq[:-1])
                out["targets"][r, sl] = torch.tensor(seq[1:])
                out["doc"][r, sl] = doc
                out["pos"][r, sl] = torch.arange(n)
                # target j is seq[j+1]: a completion token iff j+1 >= len(prompt)
                first = len(ex.prompt_ids) - 1
                out["mask"][r, used + max(0, first) : used + n] = 1.0
                used, doc, self.pos = used + n, doc + 1, self.pos + 1
                if used == T:
                    break
            out["pos"][r, used:] = torch.arange(T - used)
        return out

    def state(self) -> dict:
        return {"pos": self.pos, "truncated": self.truncated}

    def load(self, st: dict) -> None:
        self.pos, self.truncated = st["pos"], st.get("truncated", 0)


def epoch_source(examples: Sequence[Example], seed: int) -> Callable[[int], Example]:
    """Example i of an endless stream of epochs, each a seeded shuffle of `examples`."""
    cache: dict[int, list[int]] = {}

    def get(i: int) -> Example:
        epoch, k = divmod(i, len(examples))
        if epoch not in cache:
            perm = list(range(len(examples)))
            random.Random(f"{seed}:{epoch}").shuffle(perm)
            cache.clear()
            cache[epoch] = perm
        return examples[cache[epoch][k]]

    return get


def doc_attention_mask(doc: torch.Tensor) -> torch.Tensor:
    """(B, T) document ids -> (B, 1, T, T) bool: attend causally within the same document."""
    T = doc.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=doc.device).tril()
    return ((doc[:, :, None] == doc[:, None, :]) & causal)[:, None]


def packed_hidden_states(model, ids: torch.Tensor, doc: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Final-normed hidden states (B, T, d) of packed rows, documents isolated.

    The same computation as `Transformer.hidden_states` (block by block) but with a
    block-diagonal mask and per-document RoPE positions; `model(ids)` has neither.
    """
    from scalinglab.model.transformer import rope_cos_sin

    B, T = ids.shape
    x = model.model.embed_tokens(ids)
    cos, sin = rope_cos_sin(model.inv_freq, pos, x.dtype)  # (B, T, D)
    cos, sin = cos[:, None], sin[:, None]  # broadcast over heads
    mask = doc_attention_mask(doc)
    for blk in model.model.layers:
        att = blk.self_attn
        q, k, v = att.qkv(blk.input_layernorm(x), cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=att.n_kv != att.n_heads)  # (B, H, T, D)
        x = x + att.o_proj(y.transpose(1, 2).reshape(B, T, -1))
        x = x + blk.mlp(blk.post_attention_layernorm(x))
    return model.model.norm(x)


# -- sampling and verifying -----------------------------------------------------------


def sample_and_verify(
    model,
    tok,
    task,
    problems,
    k: int,
    temperature: float,
    seed: int,
    max_new_tokens: int | None = None,
    max_batch: int = 64,
    progress=None,
) -> list[dict]:
    """k samples per problem from the engine, each judged by `task.check`.

    Rows: id, task, prompt, answer, completion, correct, finish_reason (verifier errors are
    kept with `correct: false, verifier_error: true`).
    """
    from scalinglab.engine import Engine, SamplingParams
    from scalinglab.testtime.greedy import default_max_new_tokens

    was_training = model.training
    model.eval()
    params = SamplingParams(
        n=k,
        temperature=temperature,
        seed=seed,
        stop=tuple(task.stop),
        max_new_tokens=max_new_tokens or default_max_new_tokens(task, problems, tok),
    )
    res = Engine(model, tok, max_batch=max_batch).generate([p.prompt for p in problems], params, progress=progress)
    model.train(was_training)
    rows = []
    for p, g in zip(problems, res.generations):
        for j, c in enumerate(g.completions):
            v = task.check(p, c.text)
            rows.append(
                {
                    "id": f"{p.id}#{j}",
                    "problem_id": p.id,
                    "task": p.task,
                    "prompt": p.prompt,
                    "answer": p.answer,
                    "completion": c.text,
                    "correct": bool(v.correct),
                    "verifier_error": bool(v.error),
                    "finish_reason": c.finish_reason,
                }
            )
    return rows


def label_rows(rows: Sequence[dict], task, source: str = "data") -> list[dict]:
    """Rows with a `correct` label: kept when present, else judged by the task's checker."""
    from scalinglab.tasks.base import Problem

    out = []
    for i, r in enumerate(rows):
        c = completion_of(r)
        if "prompt" not in r or c is None:
            raise UserError(f"{source}: row {i + 1} needs 'prompt' and 'completion' (or 'solution')")
        if "correct" not in r:
            if "answer" not in r:
                raise UserError(f"{source}: row {i + 1} has neither 'correct' nor 'answer' to judge it by")
            v = task.check(Problem.from_json(r, getattr(task, "name", "custom")), c)
            r = {**r, "correct": bool(v.correct), "verifier_error": bool(v.error)}
        out.append({**r, "completion": c, "correct": bool(r["correct"])})
    return out


def is_verifier_error(row: dict) -> bool:
    return bool(row.get("verifier_error", False))


def drop_verifier_errors(rows: Sequence[dict]) -> tuple[list[dict], int]:
    """The rows whose verdict is an answer (right or wrong), and how many verifier errors were dropped."""
    kept = [r for r in rows if not is_verifier_error(r)]
    return kept, len(rows) - len(kept)


# -- preference pairs -----------------------------------------------------------------


def build_pairs(rows: Sequence[dict], seed: int, max_per_prompt: int = 2) -> list[dict]:
    """(prompt, chosen = a verified completion, rejected = a failed one), per prompt.

    Groups labelled rows by prompt; a prompt with both correct and wrong samples gives up to
    `max_per_prompt` pairs, with distinct completions drawn by a seeded shuffle. A verifier
    error is neither verified nor failed: it is never chosen or rejected.
    """
    by_prompt: dict[str, tuple[list[str], list[str]]] = {}
    for r in drop_verifier_errors(rows)[0]:
        good, bad = by_prompt.setdefault(r["prompt"], ([], []))
        lst = good if r["correct"] else bad
        if r["completion"] not in lst:
            lst.append(r["completion"])
    rng = random.Random(seed)
    pairs = []
    for prompt, (good, bad) in by_prompt.items():
        if not good or not bad:
            continue
        rng.shuffle(good)
        rng.shuffle(bad)
        for i in range(min(max_per_prompt, max(len(good), len(bad)))):
            pairs.append({"prompt": prompt, "chosen": good[i % len(good)], "rejected": bad[i % len(bad)]})
    return pairs


def pairs_from_rows(rows: Sequence[dict], task, seed: int, max_per_prompt: int, source: str = "data") -> list[dict]:
    """Preference pairs from a file: explicit `chosen`/`rejected` rows, or labelled samples."""
    if rows and all("chosen" in r and "rejected" in r for r in rows):
        for i, r in enumerate(rows):
            if "prompt" not in r:
                raise UserError(f"{source}: pair {i + 1} has no 'prompt'")
        return [
            {"prompt": str(r["prompt"]), "chosen": str(r["chosen"]), "rejected": str(r["rejected"])}
            for r in drop_verifier_errors(rows)[0]
        ]
    return build_pairs(label_rows(rows, task, source), seed, max_per_prompt)


# -- process labels -----------------------------------------------------------------


def step_label_rows(rows: Sequence[dict], task, label: str, source: str = "data") -> list[dict]:
    """Rows `prompt, steps, labels` for the PRM from an annotation file.

    Accepts per-step labels as `soft` / `hard` (what `scalinglab annotate` writes) or
    `soft_labels` / `hard_labels`, else `labels`; steps as `steps`, or cut from
    `completion` with the task's splitter. A `null` label (the annotator's rollouts all
    failed to verify) leaves that step out of the loss.
    """
    out = []
    for i, r in enumerate(rows):
        steps = r.get("steps")
        if steps is None and completion_of(r) is not None:
            steps = task.split_steps(completion_of(r))
        labels = r.get(label, r.get(f"{label}_labels", r.get("labels")))
        if "prompt" not in r or steps is None or labels is None:
            raise UserError(
                f"{source}: row {i + 1} needs 'prompt', 'steps' (or 'completion') and '{label}_labels' (or 'labels')"
            )
        if len(labels) != len(steps):
            raise UserError(f"{source}: row {i + 1} has {len(steps)} steps but {len(labels)} labels")
        if any(x is not None and not (0.0 <= float(x) <= 1.0) for x in labels):
            raise UserError(f"{source}: row {i + 1} has a label outside [0, 1]")
        out.append(
            {
                "prompt": str(r["prompt"]),
                "steps": [str(s) for s in steps],
                "labels": [None if x is None else float(x) for x in labels],
            }
        )
    if not out:
        raise UserError(f"{source}: no rows")
    return out


class ShuffledBatches:
    """Epochs of seeded shuffles over `n` items (DPO's pairs, the reward model's examples); one
    optimizer step = the next `batch_size` indices; `state()`/`load()` its position for resume."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.bs, self.seed, self.pos = n, batch_size, seed, 0
        self._perm: tuple[int, list[int]] = (-1, [])

    def next_batch(self) -> list[int]:
        out = []
        for i in range(self.pos, self.pos + self.bs):
            epoch, k = divmod(i, self.n)
            if self._perm[0] != epoch:
                perm = list(range(self.n))
                random.Random(f"{self.seed}:{epoch}").shuffle(perm)
                self._perm = (epoch, perm)
            out.append(self._perm[1][k])
        self.pos += self.bs
        return out

    def state(self) -> dict:
        return {"pos": self.pos}

    def load(self, st: dict) -> None:
        self.pos = st["pos"]
