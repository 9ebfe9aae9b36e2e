"""Training the outcome and process reward models of `train/reward_model.py`.

    scalinglab train reward-model --model A --task arithmetic --steps 200 --out RM                 # ORM, BCE
    scalinglab train reward-model --model A --task arithmetic --set objective=bt --out RM          # ORM, Bradley–Terry
    scalinglab train reward-model --model A --task arithmetic --data pairs.jsonl --set objective=bt --out RM  # RLAIF pairs
    scalinglab train reward-model --model A --task arithmetic --set kind=prm --data steps.jsonl --out PRM

Data (written to `OUT/data.jsonl`, re-read on `--resume`):
- ORM + bce: labelled samples — `--data` rows `prompt, completion|solution, correct?` (no
  `correct`: judged by the task), or k samples per problem from the starting model,
  verified by the task (Cobbe et al. 2021).
- ORM + bt: pairs — `--data` rows `prompt, chosen, rejected` (a judge's preferences, RLAIF),
  or pairs built from verified vs failed samples.
- PRM: per-step labels — `--data` rows from `scalinglab annotate` (`prompt, steps,
  soft, hard`), or the same Math-Shepherd annotation (`synth/annotate.py`) run here on
  the model's own samples.

The backbone starts from `--model` (the policy). The head and the confidence gain (see
`reward_model.py`) start from a linear probe: logistic regression on the frozen features
of the training data (`fit_probe`), then everything is fine-tuned (LP-FT, Kumar et al.
2022; `--set probe=false` starts the head from a small random init instead,
`--set confidence=false` drops the confidence feature). Losses: BCE (soft targets allowed) averaged over every labelled position of the step;
Bradley–Terry averaged over the step's pairs. After training, the RM scores fresh samples
of held-out problems (seed 777) and the summary reports the AUC of correct vs wrong (for
the PRM with min and last aggregation of the step scores) with a 95 % bootstrap CI that
resamples problems.

Verifier errors (timeouts, sandbox faults: `verifier_error: true`) are not labels: such
samples are dropped from the ORM's training labels, from pairs (never chosen or rejected),
from the PRM's annotation and from the held-out AUCs, and counted (`verifier_errors` for
the training data, `eval_verifier_errors` for the held-out samples).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Literal

import torch

from scalinglab.config import check_choices
from scalinglab.errors import UserError
from scalinglab.runs import checkpoint
from scalinglab.runs.store import read_jsonl, write_jsonl
from scalinglab.tasks.seeds import EVAL_SEED, POSTTRAIN_SEED_BASE, RM_OFFSET
from scalinglab.tasks.split import draw, overlap, refuse_test
from scalinglab.train.common import check_update, lr_at, make_optimizer, set_lr
from scalinglab.train.data import (
    ShuffledBatches,
    build_pairs,
    drop_verifier_errors,
    label_rows,
    pairs_from_rows,
    sample_and_verify,
    step_label_rows,
)
from scalinglab.train.posttrain import StepResult, log_step, micro_batches, open_run, tail_mean
from scalinglab.train.reward_model import (
    RewardModel,
    auc,
    auc_bootstrap_ci,
    bce_soft_loss,
    bradley_terry_loss,
    outcome_ids,
    pad_right,
    save_reward_model,
    step_ids,
)


@dataclass(frozen=True)
class RewardModelConfig:
    kind: Literal["orm", "prm"] = "orm"  # outcome RM (one score per answer) or process RM (one per step)
    objective: Literal["bce", "bt"] = "bce"  # ORM: verifier labels (BCE) or preference pairs (Bradley–Terry); PRM: bce
    label: Literal["soft", "hard"] = (
        "soft"  # PRM: Math-Shepherd soft (fraction of rollouts correct) or hard (any correct)
    )
    task: str = "arithmetic"  # task: generates problems, verifies samples
    difficulty: int = 0
    chat: Literal["auto", "on", "off"] = (
        "auto"  # the tokenizer's chat template (auto: when it has one); else the task's few-shot prompt
    )
    system: str = ""  # system prompt for the chat template ("" = none)
    data: str = ""  # JSONL (see the module docstring); "" = sample and label here
    num_problems: int = 256  # problems sampled for training data (without --data)
    samples_per_problem: int = 8  # completions per problem
    sample_temperature: float = (
        1.0  # sampling temperature of training and held-out samples (1.5 ranked worse in one run: docs/posttrain.md)
    )
    rollouts: int = 4  # PRM without --data: rollouts per step for Math-Shepherd labels
    rollout_temperature: float = 1.0  # PRM without --data: the completer's temperature
    max_pairs_per_problem: int = 4  # bt without --data: pairs kept per prompt
    steps: int = 200  # optimizer steps
    batch_size: int = 32  # sequences (bce) or pairs (bt) per optimizer step
    micro_batch_size: int = 0  # per forward/backward (0 = batch_size); exact accumulation
    lr: float = 1e-4  # fine-tuning after the probe: 3e-4 ranked worse (ORM on the SFT model: AUC 0.919 vs 0.932)
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    stop_grad_norm: float = 1e4
    seed: int = 0
    log_every: int = 1
    checkpoint_every: int = 0
    confidence: bool = True  # the head also reads the backbone's running-min token log-prob (reward_model.py)
    probe: bool = True  # fit head (+ confidence gain) as a linear probe on frozen features before fine-tuning (LP-FT)
    eval_problems: int = 100  # held-out problems whose samples measure the AUC (0 = skip)
    eval_samples: int = 8  # samples per held-out problem
    eval_seed: int = EVAL_SEED
    device: str = "auto"

    def __post_init__(self) -> None:
        check_choices(self)


# -- data -----------------------------------------------------------------------------


def _items(cfg: RewardModelConfig, task, model, tok, run, resume: bool) -> tuple[list[dict], dict]:
    """Training rows: labelled samples (orm/bce), pairs (orm/bt) or step-labelled rows (prm)."""

    cache = run.path / "data.jsonl"
    if resume and cache.exists():
        return read_jsonl(cache), {}
    info: dict = {}
    if cfg.data:
        rows = read_jsonl(cfg.data)
        refuse_test(rows, cfg.data)
        if cfg.kind == "prm":
            items = step_label_rows(
                rows, task, cfg.label, cfg.data
            )  # a null label (its rollouts errored) carries no loss
        else:
            if not (cfg.objective == "bt" and rows and all("chosen" in r and "rejected" in r for r in rows)):
                rows = label_rows(rows, task, cfg.data)  # judged once here, so its verifier errors are counted
            info["verifier_errors"] = drop_verifier_errors(rows)[1]
            if cfg.objective == "bt":
                items = pairs_from_rows(rows, task, cfg.seed, cfg.max_pairs_per_problem, cfg.data)
            else:
                items = drop_verifier_errors(rows)[0]
    else:
        problems = draw(
            task, cfg.num_problems, POSTTRAIN_SEED_BASE + RM_OFFSET + cfg.seed, cfg.difficulty or None, split="train"
        )
        drawn = sample_and_verify(model, tok, task, problems, cfg.samples_per_problem, cfg.sample_temperature, cfg.seed)
        samples, errors = drop_verifier_errors(drawn)  # an errored verdict is no label
        info = {
            "samples": len(drawn),
            "verifier_errors": errors,
            "sample_accuracy": sum(r["correct"] for r in samples) / max(1, len(samples)),
        }
        if cfg.kind == "prm":
            from scalinglab.engine import Engine
            from scalinglab.synth.annotate import AnnotateConfig, annotate
            from scalinglab.synth.sampler import engine_sampler

            model.eval()
            labelled, ann = annotate(
                task,
                samples,
                engine_sampler(Engine(model, tok)),
                AnnotateConfig(m=cfg.rollouts, temperature=cfg.rollout_temperature, seed=cfg.seed + 1),
            )
            info["annotation_rollouts"] = ann.get("rollouts")
            info["verifier_errors"] += ann.get("verifier_errors", 0)  # rollouts left out of the step labels
            items = step_label_rows(labelled, task, cfg.label, "math-shepherd labels")
        elif cfg.objective == "bt":
            items = build_pairs(samples, cfg.seed, cfg.max_pairs_per_problem)
        else:
            items = samples
    if not items:
        raise UserError("reward-model: no training examples (for bt: no prompt had both a correct and a wrong sample)")
    if cfg.kind == "orm" and cfg.objective == "bce" and len({bool(r["correct"]) for r in items}) < 2:
        raise UserError(
            "reward-model: every training sample has the same label; an ORM needs both correct and wrong answers"
        )
    write_jsonl(cache, items)
    return items, info


def _encode(cfg: RewardModelConfig, tok, item: dict):
    """(ids, positions, targets, start) for bce; (chosen ids, rejected ids, start) for bt.

    `start` is the first completion token (the prompt's length with BOS): where the RM's
    confidence feature starts counting.
    """
    start = len(tok.encode(item["prompt"], bos=True))
    if cfg.kind == "prm":
        ids, ends = step_ids(tok, item["prompt"], item["steps"])
        kept = [(e, y) for e, y in zip(ends, item["labels"]) if y is not None]  # null label: no loss there
        return ids, [e for e, _ in kept], [y for _, y in kept], start
    if cfg.objective == "bt":
        return (
            outcome_ids(tok, item["prompt"], item["chosen"]),
            outcome_ids(tok, item["prompt"], item["rejected"]),
            start,
        )
    ids = outcome_ids(tok, item["prompt"], item["completion"])
    return ids, [len(ids) - 1], [1.0 if item["correct"] else 0.0], start


def fit_probe(
    rm: RewardModel, cfg: RewardModelConfig, encoded: list, device, l2: float = 1e-3, iters: int = 200
) -> dict:
    """Linear probe before fine-tuning (LP-FT, Kumar et al. 2022): fit the head and the
    confidence gain by L2-regularised logistic regression on the frozen features.

    A random head on top of fine-tuning first distorts the backbone's features with its
    random gradients; and the confidence gain is one scalar that AdamW at the backbone's
    lr (~3e-4 per step) could not move to its useful size (~1) in a few hundred steps.
    bce: features at the labelled positions against the (soft) targets; bt: the chosen
    minus the rejected features, every pair labelled 1, no bias (it cancels).
    Returns the probe's training loss and accuracy.
    """
    bt = cfg.kind == "orm" and cfg.objective == "bt"
    xs, ys = [], []
    was = rm.training
    rm.eval()
    with torch.no_grad():
        for b in range(0, len(encoded), 64):
            chunk = encoded[b : b + 64]
            if bt:
                seqs = [e[0] for e in chunk] + [e[1] for e in chunk]
                st = torch.tensor([e[2] for e in chunk] * 2, device=device)
                h, conf = rm.features(pad_right(seqs, rm.tok.pad_id, device), st)
                last = torch.tensor([len(q) - 1 for q in seqs], device=device)
                x = torch.cat(
                    [
                        h[torch.arange(len(seqs), device=device), last],
                        conf[torch.arange(len(seqs), device=device), last, None],
                    ],
                    1,
                )
                xs.append(x[: len(chunk)] - x[len(chunk) :])
            else:
                h, conf = rm.features(
                    pad_right([e[0] for e in chunk], rm.tok.pad_id, device),
                    torch.tensor([e[3] for e in chunk], device=device),
                )
                rows = torch.tensor([r for r, e in enumerate(chunk) for _ in e[1]], device=device)
                cols = torch.tensor([p for e in chunk for p in e[1]], device=device)
                xs.append(torch.cat([h[rows, cols], conf[rows, cols, None]], 1))
                ys.extend(t for e in chunk for t in e[2])
    rm.train(was)
    x = torch.cat(xs).float()
    if not cfg.confidence:
        x[:, -1] = 0.0  # no gradient reaches the gain, which stays 0
    y = torch.ones(len(x), device=device) if bt else torch.tensor(ys, dtype=torch.float32, device=device)
    w = torch.zeros(x.shape[1], device=device, requires_grad=True)
    bias = torch.zeros((), device=device, requires_grad=not bt)
    opt = torch.optim.LBFGS([w, bias] if not bt else [w], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + bias, y) + l2 * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        z = x @ w + bias
        rm.score.weight.copy_(w[:-1][None].to(rm.score.weight.dtype))
        rm.score.bias.fill_(float(bias))
        rm.confidence.weight.fill_(float(w[-1]))
        return {
            "probe_loss": float(torch.nn.functional.binary_cross_entropy_with_logits(z, y)),
            "probe_accuracy": float(((z > 0) == (y > 0.5)).float().mean()),
            "confidence_gain": float(w[-1]),
        }


def bce_backward(rm: RewardModel, encoded: list, idx: list[int], cfg: RewardModelConfig, device) -> StepResult:
    """BCE over the labelled positions of the step's sequences `idx`, forward and backward
    micro-batch by micro-batch; divided by the labelled positions of the whole step."""
    pad = rm.tok.pad_id
    norm = float(max(1, sum(len(encoded[i][1]) for i in idx)))  # labelled positions in the whole step
    loss_sum, hits, toks = 0.0, 0.0, 0
    for mb in micro_batches(idx, cfg.micro_batch_size):
        ids = pad_right([encoded[i][0] for i in mb], pad, device)
        z = rm(ids, torch.tensor([encoded[i][3] for i in mb], device=device))  # (b, T)
        rows = torch.tensor([r for r, i in enumerate(mb) for _ in encoded[i][1]], device=device)
        cols = torch.tensor([p for i in mb for p in encoded[i][1]], device=device)
        tgt = torch.tensor([t for i in mb for t in encoded[i][2]], device=device)
        logit = z[rows, cols]  # (positions,)
        loss = bce_soft_loss(logit, tgt, torch.ones_like(tgt), normaliser=norm)
        loss.backward()
        loss_sum += loss.item()
        hits += float(((logit.detach() > 0) == (tgt > 0.5)).sum())
        toks += sum(len(encoded[i][0]) for i in mb)
    return StepResult(loss_sum, toks, {"accuracy": hits / max(norm, 1)})


def bt_backward(rm: RewardModel, encoded: list, idx: list[int], cfg: RewardModelConfig, device) -> StepResult:
    """Bradley–Terry over the step's pairs `idx`, forward and backward micro-batch by
    micro-batch; divided by the pairs of the whole step."""
    pad = rm.tok.pad_id
    n = len(idx)
    loss_sum, hits, margin, toks = 0.0, 0.0, 0.0, 0
    for mb in micro_batches(idx, cfg.micro_batch_size):
        seqs = [encoded[i][0] for i in mb] + [encoded[i][1] for i in mb]
        starts = torch.tensor([encoded[i][2] for i in mb] * 2, device=device)
        z = rm(pad_right(seqs, pad, device), starts)  # (2b, T)
        last = torch.tensor([len(s) - 1 for s in seqs], device=device)
        r = z[torch.arange(len(seqs), device=device), last]
        rc, rr = r[: len(mb)], r[len(mb) :]
        loss = bradley_terry_loss(rc, rr, normaliser=n)
        loss.backward()
        loss_sum += loss.item()
        hits += float((rc > rr).sum())
        margin += float((rc - rr).detach().sum())
        toks += sum(len(s) for s in seqs)
    return StepResult(loss_sum, toks, {"accuracy": hits / n, "reward_margin": margin / n})


def rm_backward(rm: RewardModel, encoded: list, idx: list[int], cfg: RewardModelConfig, device) -> StepResult:
    """The step's forward/backward for `cfg`: Bradley–Terry for an ORM on pairs, else BCE."""
    bt = cfg.kind == "orm" and cfg.objective == "bt"
    return (bt_backward if bt else bce_backward)(rm, encoded, idx, cfg, device)


# -- evaluation -------------------------------------------------------------------------


def heldout_samples(cfg: RewardModelConfig, task, model, tok) -> list[dict]:
    if not cfg.eval_problems:
        return []
    problems = draw(task, cfg.eval_problems, cfg.eval_seed, cfg.difficulty or None, split="eval")
    return sample_and_verify(model, tok, task, problems, cfg.eval_samples, cfg.sample_temperature, cfg.eval_seed)


def ranking_auc(rm: RewardModel, samples: list[dict], scores_path=None) -> dict:
    """AUC of the RM's outcome scores, correct vs wrong answers (PRM: min and last), with a
    95 % bootstrap CI over the held-out problems for the headline `auc`. With `scores_path`, the
    scores behind the headline AUC are written there as JSONL rows {problem, correct, score}
    (the report's ROC curve is drawn from them)."""
    if not samples:
        return {}
    samples, errors = drop_verifier_errors(samples)  # neither positive nor negative: out of the AUC
    if not samples:
        return {"eval_samples": 0, "eval_verifier_errors": errors, "auc": float("nan"), "auc_ci95": [float("nan")] * 2}
    labels = [bool(s["correct"]) for s in samples]
    prompts, comps = [s["prompt"] for s in samples], [s["completion"] for s in samples]
    out = {
        "eval_samples": len(samples),
        "eval_verifier_errors": errors,
        "eval_negatives": len(labels) - sum(labels),
        "eval_positive_rate": sum(labels) / len(labels),
    }
    groups = [s.get("problem_id", s["prompt"]) for s in samples]
    if rm.kind == "prm":
        for agg in ("min", "last"):
            scores = rm.score_outcomes(prompts, comps, aggregate=agg)
            out[f"auc_{agg}"] = auc(scores, labels)
            if agg == "min":
                main = scores
        out["auc"] = out["auc_min"]
    else:
        main = rm.score_outcomes(prompts, comps)
        out["auc"] = auc(main, labels)
    out["auc_ci95"] = list(auc_bootstrap_ci(main, labels, groups))  # problems resampled: held-out noise
    if scores_path is not None:
        write_jsonl(scores_path, [{"problem": g, "correct": y, "score": s} for g, y, s in zip(groups, labels, main)])
    return out


# -- the trainer ------------------------------------------------------------------------


def train_reward_model(
    cfg: RewardModelConfig, model_path: str, out: str, resume: bool = False, progress: Callable[..., None] | None = None
) -> dict:
    """Train an ORM or PRM on `model_path`'s backbone; returns the summary (OUT/summary.json)."""

    if cfg.kind == "prm" and cfg.objective != "bce":
        raise UserError("reward-model: a PRM trains with objective=bce (per-step labels); bt is for the ORM")
    st = open_run("reward-model", cfg, model_path, out, resume)
    if st.finished is not None:
        return st.finished
    with checkpoint.guard(st.run):
        task, device, backbone, tok, run = st.task, st.device, st.model, st.tok, st.run
        t0 = time.perf_counter()
        heldout = heldout_samples(cfg, task, backbone, tok)  # sampled by the policy before its weights become the RM's
        items, info = _items(cfg, task, backbone, tok, run, resume)
        rm = RewardModel(
            backbone, tok, kind=cfg.kind, meta={"task": cfg.task, "objective": cfg.objective, "label": cfg.label}
        )
        encoded = [_encode(cfg, tok, it) for it in items]
        if not cfg.confidence:
            rm.confidence.weight.requires_grad_(False)  # stays 0: the plain scalar head
        probe = fit_probe(rm, cfg, encoded, device) if cfg.probe else {}
        opt = make_optimizer(rm, cfg.lr, cfg.weight_decay)
        data = ShuffledBatches(len(encoded), cfg.batch_size, cfg.seed)
        heads = {"head": rm.score, "confidence": rm.confidence}  # checkpointed next to the backbone

        start, extra = checkpoint.restore(run, backbone, opt, heads) if resume else (0, {})
        if start:
            data.load(extra["data"])
        records = list(extra.get("records", []))  # every step's record, across resumes (the summary's tail)
        t_run = time.perf_counter() - extra.get("elapsed", 0.0)
        warmup = min(cfg.warmup_steps, max(1, cfg.steps // 10))
        params = [p for p in rm.parameters() if p.requires_grad]
        backbone.train()
        for step in range(start, cfg.steps):
            t_step = time.perf_counter()
            lr = set_lr(opt, lr_at(step, cfg.steps, cfg.lr, warmup, cfg.min_lr_ratio))
            idx = data.next_batch()
            opt.zero_grad(set_to_none=True)
            res = rm_backward(rm, encoded, idx, cfg, device)
            gn = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf))
            check_update(step + 1, res.loss, gn, cfg.stop_grad_norm, "stop_grad_norm")  # before the update
            opt.step()
            done = step + 1
            now = log_step(run, records, cfg, done, res, gn, lr, t_step, t_run, progress)
            if checkpoint.due(done, cfg.checkpoint_every, cfg.steps):
                checkpoint.save(
                    run,
                    done,
                    backbone,
                    tok,
                    opt,
                    extra={"data": data.state(), "elapsed": now - t_run, "records": records},
                    modules=heads,
                )
        backbone.eval()
        rm.eval()
        save_reward_model(rm, run.path / "model", extra={"task": cfg.task, "reward_model": cfg.kind})
        summary = {
            "kind": "reward-model",
            "rm_kind": cfg.kind,
            "objective": cfg.objective,
            "task": cfg.task,
            "steps": cfg.steps,
            "examples": len(items),
            **info,
            **probe,
            "confidence_gain_final": float(rm.confidence.weight.detach()),
            "train_loss": tail_mean(records, "loss"),
            "train_accuracy": tail_mean(records, "accuracy"),
            **ranking_auc(rm, heldout, scores_path=run.path / "heldout_scores.jsonl"),
            "heldout_overlap": overlap(items, {s["prompt"] for s in heldout}) if heldout else None,
            "seconds": time.perf_counter() - t0,
            "model": str(run.path / "model"),
        }
        run.finish(summary)
        return summary
