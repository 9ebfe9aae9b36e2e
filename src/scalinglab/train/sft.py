"""Supervised fine-tuning (SFT) with the loss on answer tokens only, on packed rows.

    scalinglab train sft --model A --task arithmetic --steps 100 --seed 0 --out S
    scalinglab train sft --model A --task arithmetic --data synth.jsonl --steps 100 --out S
    scalinglab train sft --model A --task arithmetic --set source=samples --out S   # RFT / STaR

Loss: the mean next-token cross-entropy over completion tokens (the answer and its EOS)
of every example in the optimizer step — a token mean over the *whole* step, so one row ×
8 micro-batches equals 8 rows × 1 (the normaliser is counted before the backward passes).
Prompt tokens are context only. Examples are packed into rows with block-diagonal
attention and per-example positions (`train/data.py`), so packing changes speed, never
the loss.

Data, in order of precedence: `--data FILE` (problems with `solution`, or a synthetic
JSONL from `scalinglab synth` with `completion` and optional `correct`); else
`source=solutions`, the task's worked solutions of freshly generated problems; or
`source=samples`, rejection sampling from the model itself (k samples per problem, kept
when the verifier says correct, duplicates dropped) — rejection-sampling fine-tuning
(Yuan et al. 2023) / STaR without rationalisation (Zelikman et al. 2022). The examples
used are written to `OUT/data.jsonl` (re-read on `--resume`). Training problems use
generator seeds disjoint from the evaluation seed (777).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from scalinglab.config import check_choices
from scalinglab.errors import UserError
from scalinglab.runs import checkpoint
from scalinglab.tasks.seeds import EVAL_SEED, POSTTRAIN_SEED_BASE
from scalinglab.tasks.split import draw, overlap, refuse_test
from scalinglab.testtime.stats import heldout_gain
from scalinglab.train.common import check_update, lr_at, make_optimizer, set_lr
from scalinglab.train.data import (
    Packer,
    encode_example,
    epoch_source,
    packed_hidden_states,
    sample_and_verify,
    sft_pairs_from_rows,
)
from scalinglab.train.posttrain import (
    StepResult,
    heldout_accuracy,
    log_step,
    micro_batches,
    open_run,
    tail_mean,
)


@dataclass(frozen=True)
class SFTConfig:
    task: str = "arithmetic"  # task: generates problems, checks answers, evaluates
    difficulty: int = 0  # task difficulty (0 = the task's default)
    chat: Literal["auto", "on", "off"] = (
        "auto"  # the tokenizer's chat template (auto: when it has one); else the task's few-shot prompt
    )
    system: str = ""  # system prompt for the chat template ("" = none)
    data: str = ""  # JSONL to train on (problems with `solution` or synth rows with `completion`); "" = generate
    source: Literal["solutions", "samples"] = (
        "solutions"  # without --data: worked solutions, or the model's own verified samples
    )
    num_problems: int = 2000  # problems generated for the training set (without --data)
    samples_per_problem: int = 4  # source=samples: completions drawn per problem
    sample_temperature: float = 1.0  # source=samples: sampling temperature
    steps: int = 100  # optimizer steps
    batch_size: int = 16  # packed rows per optimizer step
    micro_batch_size: int = 0  # rows per forward/backward (0 = batch_size); gradients accumulate exactly
    seq_len: int = 128  # positions per packed row
    lr: float = 3e-4  # peak learning rate (post-training: well below pre-training's)
    warmup_steps: int = 10  # linear warmup
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of the peak
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max gradient norm (0 = no clipping)
    stop_grad_norm: float = 1e4  # stop the run when the (pre-clip) gradient norm exceeds this
    seed: int = 0
    log_every: int = 1  # steps between metrics records
    checkpoint_every: int = 0  # steps between checkpoints (0 = only the final model)
    eval_problems: int = 200  # held-out problems for greedy accuracy before/after (0 = skip)
    eval_seed: int = EVAL_SEED  # generator seed of the held-out problems
    device: str = "auto"  # auto, cpu or cuda

    def __post_init__(self) -> None:
        check_choices(self)


def sft_loss(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, normaliser: float
) -> tuple[torch.Tensor, dict]:
    """Σ_mask CE(logits, targets) / normaliser; logits (B, T, V), targets/mask (B, T).

    Also returns the answer-token accuracy (argmax == target) on the masked positions.
    """
    ce = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none").view_as(targets)  # (B, T)
    m = mask.to(ce.dtype)
    loss = (ce * m).sum() / normaliser
    hits = ((logits.argmax(-1) == targets).to(ce.dtype) * m).sum()
    return loss, {"correct_tokens": float(hits), "tokens": float(m.sum())}


class PackedData:
    """One optimizer step = `batch_size` packed rows; position saved for resume."""

    def __init__(self, packer: Packer, rows: int):
        self.packer, self.rows = packer, rows

    def next_batch(self) -> dict:
        return self.packer.next_rows(self.rows)

    def state(self) -> dict:
        return self.packer.state()

    def load(self, st: dict) -> None:
        self.packer.load(st)


def sft_backward(model, batch: dict, cfg: SFTConfig, device) -> StepResult:
    """Forward and backward over one optimizer step's packed rows, micro-batch by micro-batch;
    each micro-batch loss is divided by the answer tokens of the whole step (exact accumulation)."""
    use_amp = device.type == "cuda"
    norm = float(batch["mask"].sum().clamp_min(1))  # answer tokens in the whole step
    rows = list(range(batch["ids"].shape[0]))
    loss_sum, hits, toks = 0.0, 0.0, 0.0
    for mb in micro_batches(rows, cfg.micro_batch_size):
        b = {k: v[mb].to(device) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            h = packed_hidden_states(model, b["ids"], b["doc"], b["pos"])
            logits = model.lm_head(h)  # (b, T, V)
        loss, st = sft_loss(logits, b["targets"], b["mask"], norm)
        loss.backward()
        loss_sum += loss.item()
        hits, toks = hits + st["correct_tokens"], toks + st["tokens"]
    return StepResult(
        loss_sum, int((batch["doc"] >= 0).sum()), {"accuracy": hits / max(toks, 1), "answer_tokens": toks}
    )


def training_pairs(
    cfg: SFTConfig, task, model, tok, run_dir: Path, resume: bool, progress=None
) -> list[tuple[str, str]]:
    """The (prompt, completion) pairs to train on; written to / re-read from RUN/data.jsonl."""
    from scalinglab.runs.store import read_jsonl, write_jsonl

    cache = run_dir / "data.jsonl"
    if resume and cache.exists():
        return sft_pairs_from_rows(read_jsonl(cache), str(cache))
    if cfg.data:
        rows = read_jsonl(cfg.data)
        refuse_test(rows, cfg.data)
        pairs = sft_pairs_from_rows(rows, cfg.data)
    else:
        problems = draw(task, cfg.num_problems, POSTTRAIN_SEED_BASE + cfg.seed, cfg.difficulty or None, split="train")
        if cfg.source == "solutions":
            missing = [p.id for p in problems if not p.solution]
            if missing:
                raise UserError(
                    f"task {cfg.task}: problems have no worked solutions (e.g. {missing[0]}); use --data or --set source=samples"
                )
            pairs = [(p.prompt, p.solution) for p in problems]
        else:
            rows = sample_and_verify(
                model, tok, task, problems, cfg.samples_per_problem, cfg.sample_temperature, cfg.seed, progress=progress
            )
            seen, pairs = set(), []
            for r in rows:
                if r["correct"] and (r["prompt"], r["completion"]) not in seen:
                    seen.add((r["prompt"], r["completion"]))
                    pairs.append((r["prompt"], r["completion"]))
            if not pairs:
                raise UserError(f"source=samples: none of {len(rows)} samples was correct; nothing to fine-tune on")
    write_jsonl(cache, [{"prompt": p, "completion": c} for p, c in pairs])
    return pairs


def sft(
    cfg: SFTConfig, model_path: str, out: str, resume: bool = False, progress: Callable[..., None] | None = None
) -> dict:
    """Fine-tune `model_path` on answer tokens; returns the summary (also OUT/summary.json)."""
    from scalinglab.model.hf import save_model

    st = open_run("sft", cfg, model_path, out, resume)
    if st.finished is not None:
        return st.finished
    with checkpoint.guard(st.run):
        task, device, model, tok, run = st.task, st.device, st.model, st.tok, st.run
        t0 = time.perf_counter()
        evals = draw(task, cfg.eval_problems, cfg.eval_seed, cfg.difficulty or None, split="eval")
        base_acc, base_correct = heldout_accuracy(model, tok, task, evals)
        pairs = training_pairs(cfg, task, model, tok, run.path, resume)
        examples = [encode_example(tok, p, c) for p, c in pairs]
        packer = Packer(epoch_source(examples, cfg.seed), cfg.seq_len, tok.pad_id)
        opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
        data = PackedData(packer, cfg.batch_size)

        start, extra = checkpoint.restore(run, model, opt) if resume else (0, {})
        if start:
            data.load(extra["data"])
        records = list(extra.get("records", []))  # every step's record, across resumes (the summary's tail)
        t_run = time.perf_counter() - extra.get("elapsed", 0.0)
        warmup = min(cfg.warmup_steps, max(1, cfg.steps // 10))
        params = [p for p in model.parameters() if p.requires_grad]
        model.train()
        for step in range(start, cfg.steps):
            t_step = time.perf_counter()
            lr = set_lr(opt, lr_at(step, cfg.steps, cfg.lr, warmup, cfg.min_lr_ratio))
            batch = data.next_batch()
            opt.zero_grad(set_to_none=True)
            res = sft_backward(model, batch, cfg, device)
            gn = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf))
            check_update(step + 1, res.loss, gn, cfg.stop_grad_norm, "stop_grad_norm")  # before the update
            opt.step()
            done = step + 1
            now = log_step(run, records, cfg, done, res, gn, lr, t_step, t_run, progress)
            if checkpoint.due(done, cfg.checkpoint_every, cfg.steps):
                checkpoint.save(
                    run, done, model, tok, opt, extra={"data": data.state(), "elapsed": now - t_run, "records": records}
                )
        model.eval()

        save_model(
            model, tok, run.path / "model", extra={"task": cfg.task, "difficulty": cfg.difficulty, "posttrain": "sft"}
        )
        acc, correct = heldout_accuracy(model, tok, task, evals)
        summary = {
            "kind": "sft",
            "task": cfg.task,
            "steps": cfg.steps,
            "examples": len(examples),
            "epochs": packer.pos / len(examples),
            "truncated_examples": packer.truncated,
            "train_loss": tail_mean(records, "loss"),
            "train_token_accuracy": tail_mean(records, "accuracy"),
            "base_accuracy": base_acc,
            "accuracy": acc,
            **heldout_gain(base_correct, correct),
            "eval_seed": cfg.eval_seed if evals else None,
            "heldout_overlap": overlap((p for p, _ in pairs), evals) if evals else None,
            "seconds": time.perf_counter() - t0,
            "model": str(run.path / "model"),
        }
        run.finish(summary)
        return summary
