"""Direct Preference Optimization (DPO; Rafailov et al. 2023, arXiv 2305.18290, eq. 7).

    scalinglab train dpo --model A --task arithmetic --steps 50 --seed 0 --out D
    scalinglab train dpo --model A --task arithmetic --data pairs.jsonl --out D

For a pair (prompt x, chosen y_c, rejected y_r), with sequence log-probs summed over the
completion tokens (EOS included) under the policy π and the frozen reference π_ref:

    loss = −log σ(β·[(log π(y_c|x) − log π_ref(y_c|x)) − (log π(y_r|x) − log π_ref(y_r|x))])

averaged over the pairs of the optimizer step (the count is taken over all micro-batches,
so accumulation is exact). Optional deviation: `nll_weight` α > 0 adds α·NLL of the chosen
answer per token (RPO, Pang et al. 2024, arXiv 2404.19733), which stops plain DPO from
lowering the chosen answers' likelihood too — measured to matter on reasoning tasks. Logged: loss, reward accuracy (implicit reward of chosen >
rejected), reward margin, chosen/rejected implicit rewards β·(log π − log π_ref).

Pairs come from `--data` (rows `prompt, chosen, rejected` — e.g. judge-labelled, RLAIF —
or labelled samples `prompt, completion, correct`), or are built on-policy: k samples per
problem from the engine, verified by the task; a prompt with both a correct and a wrong
sample yields up to `max_pairs_per_problem` (chosen = verified, rejected = failed) pairs.
A sample whose verification errored (timeout, sandbox fault) is neither chosen nor rejected;
the summary counts such samples as `verifier_errors`. The reference is the starting model; its log-probs are computed once, before training.
The pairs are written to `OUT/data.jsonl` (re-read on `--resume`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from scalinglab.config import check_choices
from scalinglab.errors import UserError
from scalinglab.runs import checkpoint
from scalinglab.tasks.seeds import DPO_OFFSET, EVAL_SEED, POSTTRAIN_SEED_BASE
from scalinglab.tasks.split import draw, overlap, refuse_test
from scalinglab.testtime.stats import heldout_gain
from scalinglab.train.common import check_update, lr_at, make_optimizer, set_lr, token_logprobs
from scalinglab.train.data import (
    ShuffledBatches,
    build_pairs,
    drop_verifier_errors,
    encode_example,
    label_rows,
    pairs_from_rows,
    sample_and_verify,
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
class DPOConfig:
    task: str = "arithmetic"  # task: generates problems, verifies samples, evaluates
    difficulty: int = 0  # task difficulty (0 = the task's default)
    chat: Literal["auto", "on", "off"] = (
        "auto"  # the tokenizer's chat template (auto: when it has one); else the task's few-shot prompt
    )
    system: str = ""  # system prompt for the chat template ("" = none)
    data: str = ""  # JSONL of pairs (prompt/chosen/rejected) or labelled samples; "" = sample on-policy
    num_problems: int = 1024  # problems sampled to build pairs (without --data)
    samples_per_problem: int = 8  # completions per problem
    sample_temperature: float = 1.0  # sampling temperature for pair building
    max_pairs_per_problem: int = 2  # pairs kept per prompt
    beta: float = 0.1  # DPO β: strength of the implicit KL to the reference
    nll_weight: float = 0.0  # α of RPO (Pang et al. 2024): + α·NLL(chosen)/|chosen|; 0 = plain DPO
    steps: int = 50  # optimizer steps
    batch_size: int = 16  # pairs per optimizer step
    micro_batch_size: int = 0  # pairs per forward/backward (0 = batch_size); exact accumulation
    lr: float = 1e-5  # peak learning rate (DPO overfits few pairs fast; keep it low)
    warmup_steps: int = 5
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max gradient norm (0 = no clipping)
    stop_grad_norm: float = 1e4  # stop when the pre-clip gradient norm exceeds this
    seed: int = 0
    log_every: int = 1
    checkpoint_every: int = 0  # steps between checkpoints (0 = only the final model)
    eval_problems: int = 200  # held-out problems for greedy accuracy before/after (0 = skip)
    eval_seed: int = EVAL_SEED
    device: str = "auto"

    def __post_init__(self) -> None:
        check_choices(self)


def dpo_loss(
    pi_c: torch.Tensor,
    pi_r: torch.Tensor,
    ref_c: torch.Tensor,
    ref_r: torch.Tensor,
    beta: float,
    normaliser: float | None = None,
) -> tuple[torch.Tensor, dict]:
    """Σ −log σ(β[(π_c − ref_c) − (π_r − ref_r)]) / normaliser; inputs are (N,) sequence log-probs."""
    r_c = beta * (pi_c.float() - ref_c.float())  # implicit rewards (N,)
    r_r = beta * (pi_r.float() - ref_r.float())
    per = -F.logsigmoid(r_c - r_r)
    loss = per.sum() / (normaliser if normaliser is not None else max(1, per.numel()))
    d = (r_c - r_r).detach()
    return loss, {
        "correct": float((d > 0).sum()),
        "margin_sum": float(d.sum()),
        "chosen_sum": float(r_c.detach().sum()),
        "rejected_sum": float(r_r.detach().sum()),
    }


def sequence_logprobs(
    model, tok, prompts: list[str], completions: list[str], device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ log p(completion tokens incl. EOS | prompt) per sequence (N,), and the token counts (N,)."""
    exs = [encode_example(tok, p, c) for p, c in zip(prompts, completions)]
    T = max(len(e.prompt_ids) + len(e.completion_ids) for e in exs)
    ids = torch.full((len(exs), T), tok.pad_id, dtype=torch.long)
    mask = torch.zeros(len(exs), T - 1)
    for i, e in enumerate(exs):
        seq = e.prompt_ids + e.completion_ids
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, len(e.prompt_ids) - 1 : len(seq) - 1] = 1.0  # targets that are completion tokens
    ids, mask = ids.to(device), mask.to(device)
    logp = token_logprobs(model(ids[:, :-1]), ids[:, 1:])  # (N, T-1) fp32
    return (logp * mask).sum(-1), mask.sum(-1)


@torch.no_grad()
def reference_logprobs(model, tok, pairs: list[dict], device, batch: int = 64) -> torch.Tensor:
    """(N, 2) reference log-probs of (chosen, rejected), computed once."""
    out = []
    for i in range(0, len(pairs), batch):
        ch = pairs[i : i + batch]
        lp, _ = sequence_logprobs(
            model, tok, [p["prompt"] for p in ch] * 2, [p["chosen"] for p in ch] + [p["rejected"] for p in ch], device
        )
        out.append(torch.stack([lp[: len(ch)], lp[len(ch) :]], -1).cpu())
    return torch.cat(out)


def dpo_backward(
    model, tok, pairs: list[dict], ref: torch.Tensor, idx: list[int], cfg: DPOConfig, device
) -> StepResult:
    """Forward and backward over one optimizer step's pairs `idx`, micro-batch by micro-batch;
    each micro-batch loss is divided by the pairs of the whole step (exact accumulation)."""
    n = len(idx)
    agg = {"correct": 0.0, "margin_sum": 0.0, "chosen_sum": 0.0, "rejected_sum": 0.0}
    loss_sum, toks = 0.0, 0
    for mb in micro_batches(idx, cfg.micro_batch_size):
        ps = [pairs[i] for i in mb]
        lp, t = sequence_logprobs(
            model,
            tok,
            [p["prompt"] for p in ps] * 2,
            [p["chosen"] for p in ps] + [p["rejected"] for p in ps],
            device,
        )
        r = ref[mb].to(device)
        loss, st = dpo_loss(lp[: len(ps)], lp[len(ps) :], r[:, 0], r[:, 1], cfg.beta, normaliser=n)
        if cfg.nll_weight:  # RPO: keep the chosen answers likely, not only relatively likelier
            loss = loss + cfg.nll_weight * (-lp[: len(ps)] / t[: len(ps)]).sum() / n
        loss.backward()
        loss_sum, toks = loss_sum + loss.item(), toks + int(t.sum())
        agg = {k: agg[k] + st[k] for k in agg}
    return StepResult(
        loss_sum,
        toks,
        {
            "accuracy": agg["correct"] / n,
            "reward_margin": agg["margin_sum"] / n,
            "chosen_reward": agg["chosen_sum"] / n,
            "rejected_reward": agg["rejected_sum"] / n,
        },
    )


def training_pairs(cfg: DPOConfig, task, model, tok, run, resume: bool) -> tuple[list[dict], dict]:
    from scalinglab.runs.store import read_jsonl, write_jsonl

    cache = run.path / "data.jsonl"
    if resume and cache.exists():
        return read_jsonl(cache), {}
    info: dict = {}
    if cfg.data:
        rows = read_jsonl(cfg.data)
        refuse_test(rows, cfg.data)
        if not (rows and all("chosen" in r and "rejected" in r for r in rows)):
            rows = label_rows(rows, task, cfg.data)  # judged once here, so its verifier errors are counted
        pairs = pairs_from_rows(rows, task, cfg.seed, cfg.max_pairs_per_problem, cfg.data)
        info = {"verifier_errors": drop_verifier_errors(rows)[1]}
    else:
        problems = draw(
            task, cfg.num_problems, POSTTRAIN_SEED_BASE + DPO_OFFSET + cfg.seed, cfg.difficulty or None, split="train"
        )
        rows = sample_and_verify(model, tok, task, problems, cfg.samples_per_problem, cfg.sample_temperature, cfg.seed)
        pairs = build_pairs(rows, cfg.seed, cfg.max_pairs_per_problem)
        valid, errors = drop_verifier_errors(rows)  # neither chosen nor rejected (build_pairs skips them)
        info = {
            "samples": len(rows),
            "verifier_errors": errors,
            "sample_accuracy": sum(r["correct"] for r in valid) / max(1, len(valid)),
        }
    if not pairs:
        raise UserError(
            "dpo: no preference pairs (no prompt had both a correct and a wrong sample); "
            "raise samples_per_problem or sample_temperature, or pass --data"
        )
    write_jsonl(cache, pairs)
    return pairs, info


def dpo(
    cfg: DPOConfig, model_path: str, out: str, resume: bool = False, progress: Callable[..., None] | None = None
) -> dict:
    """Train the policy on preference pairs; returns the summary (also OUT/summary.json)."""
    from scalinglab.model.hf import save_model

    st = open_run("dpo", cfg, model_path, out, resume)
    if st.finished is not None:
        return st.finished
    with checkpoint.guard(st.run):
        task, device, model, tok, run = st.task, st.device, st.model, st.tok, st.run
        t0 = time.perf_counter()
        evals = draw(task, cfg.eval_problems, cfg.eval_seed, cfg.difficulty or None, split="eval")
        base_acc, base_correct = heldout_accuracy(model, tok, task, evals)
        pairs, info = training_pairs(cfg, task, model, tok, run, resume)
        model.eval()  # no dropout in this model, but keep the reference pass in eval mode on principle
        ref = reference_logprobs(model, tok, pairs, device)  # the starting model is the reference
        opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
        data = ShuffledBatches(len(pairs), cfg.batch_size, cfg.seed)

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
            idx = data.next_batch()
            opt.zero_grad(set_to_none=True)
            res = dpo_backward(model, tok, pairs, ref, idx, cfg, device)
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
            model, tok, run.path / "model", extra={"task": cfg.task, "difficulty": cfg.difficulty, "posttrain": "dpo"}
        )
        acc, correct = heldout_accuracy(model, tok, task, evals)
        summary = {
            "kind": "dpo",
            "task": cfg.task,
            "steps": cfg.steps,
            "pairs": len(pairs),
            **info,
            "beta": cfg.beta,
            "train_loss": tail_mean(records, "loss"),
            "reward_accuracy": tail_mean(records, "accuracy"),
            "reward_margin": tail_mean(records, "reward_margin"),
            "base_accuracy": base_acc,
            "accuracy": acc,
            **heldout_gain(base_correct, correct),
            "eval_seed": cfg.eval_seed if evals else None,
            "heldout_overlap": overlap(pairs, evals) if evals else None,
            "seconds": time.perf_counter() - t0,
            "model": str(run.path / "model"),
        }
        run.finish(summary)
        return summary
