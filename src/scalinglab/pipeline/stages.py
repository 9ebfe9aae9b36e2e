"""The stages of `scalinglab run`. Each is a function `stage(ctx) -> StageResult` that calls the
library (the same functions the individual commands call), writes its runs and figures under
`DIR/<stage>/`, and returns what the report shows (`pipeline/results.py`): a title, headline
numbers, the model, figures with captions, a table, notes, a fitted law; and in `outputs` what
later stages read (`ctx.records[stage].outputs`). Every stage draws at least one figure.

Compute is counted in FLOPs throughout. Pre-training uses C = 6·N·D. Post-training compute
is estimated from what the trainers log: sampled tokens cost 2·N FLOPs each (forward), trained
tokens 6·N (forward + backward), and RL recomputes old log-probs (another 2·N per token).

Every training stream draws the task's train split and every evaluation its eval split
(`tasks/split.py`). Each training stage's result carries `heldout_overlap`, the evaluation
problems (seed `EVAL_SEED`) found among its training problems, computed from what it drew;
their sum is the test-time headline and `summary.json`'s `heldout_overlap` (0).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from scalinglab.pipeline import figures as figs
from scalinglab.pipeline.presets import Preset
from scalinglab.pipeline.results import Figure, StageResult, law_record
from scalinglab.report.figures import new_figure, save_fig
from scalinglab.tasks.seeds import EVAL_SEED


@dataclass
class Context:
    out: Path
    preset: Preset
    progress: Callable[[str], Callable[..., None]]  # stage name -> progress callback
    records: dict[str, StageResult] = field(default_factory=dict)  # finished stages, by name

    def dir(self, stage: str) -> Path:
        d = self.out / stage
        d.mkdir(parents=True, exist_ok=True)
        return d

    def rel(self, path: str | Path) -> str:
        return str(Path(path).resolve().relative_to(self.out.resolve()))

    def model_of(self, stage: str) -> str:
        return self.records[stage].model

    def figure(self, path: Path, caption: str) -> Figure:
        return Figure(self.rel(path), caption)


def _fig(ctx: Context, stage: str, name: str):
    """A figure in the report style and the path it will be saved to (with `save_fig`)."""
    fig, ax = new_figure()
    return fig, ax, ctx.dir(stage) / f"{name}.png"


def _heldout(ctx: Context):
    from scalinglab.tasks import get_task
    from scalinglab.tasks.split import draw

    task = get_task(ctx.preset.task)
    return task, draw(task, ctx.preset.eval_problems, EVAL_SEED, split="eval")


def _total(values) -> int | None:
    """The sum of per-run held-out overlaps (None when a run did not record one)."""
    values = list(values)
    return None if any(v is None for v in values) else int(sum(values))


def heldout_overlap(records: dict[str, StageResult]) -> int | None:
    """Evaluation problems found among the training problems of every stage, summed (0 by construction);
    None when no stage recorded one (nothing was computed, so nothing is claimed)."""
    found = [r.heldout_overlap for r in records.values() if r.trains]
    return _total(found) if found else None


# -- 1. pre-training: the law on real text, and the task's models ---------------------------------


def pretrain(ctx: Context) -> StageResult:
    """The IsoFLOP ladder on text (the law, predict-then-train), then the task's small ladder (the base model)."""
    from scalinglab.train.ladder import LadderConfig, run_ladder

    p = ctx.preset
    record = _text_law(ctx) if p.text_budgets else {"headline": {}, "figures": [], "notes": None, "law": None}
    # The task's models: its loss saturates (one canonical solution per problem), so no law is fitted to
    # them; they give post-training its base model and the trade-off its pre-trained-only options.
    cfg = LadderConfig(
        task=p.task,
        depths=p.depths,
        tokens=p.tokens,
        seed=0,
        eval_problems=p.eval_problems,
        bootstrap=p.bootstrap,
        grid="small",
        fit=False,
        overrides=p.pretrain_overrides + (f"device={p.device}",),
    )
    s = run_ladder(
        cfg, str(ctx.dir("pretrain") / "ladder"), progress=ctx.progress("pretrain task ladder"), figures=False
    )
    rungs = s["rungs"]
    base = max((r for r in rungs if r["depth"] == p.base_depth), key=lambda r: r["tokens_budget"])
    base_path = str(ctx.dir("pretrain") / "ladder" / base["run"] / "model")
    headline = {
        **record["headline"],
        "task models": len(rungs),
        "base model": f"depth {base['depth']}, {base['N']:.3g} params, {base['D']:.3g} tokens",
        "base accuracy (greedy)": base.get("accuracy"),
        "pre-training FLOPs (all rungs)": sum(r["C"] for r in rungs) + record.get("flops", 0.0),
    }
    table = [
        {
            "depth": r["depth"],
            "N": r["N"],
            "D": r["D"],
            "C": r["C"],
            "val loss": r["loss"],
            "accuracy": r.get("accuracy"),
        }
        for r in rungs
    ]
    return StageResult(
        title="Pre-training: the law on real text, and the task's models",
        headline=headline,
        model=base_path,
        figures=record["figures"],
        table=table,
        notes=record["notes"],
        law=record["law"],
        prediction=record.get("prediction"),
        trains=True,
        heldout_overlap=_total(r.get("heldout_overlap") for r in rungs),
        outputs={
            "compute_optimal": record.get("compute_optimal"),
            "base_flops": base["C"],
            "base_params": base["N"],
            "base_accuracy": base.get("accuracy"),
            "rungs": rungs,
            "text_rungs": record.get("rungs"),
        },
    )


def _text_law(ctx: Context) -> dict:
    """The IsoFLOP ladder on the text corpus: Approaches 2 and 3, the prediction, loss to accuracy."""
    from scalinglab.train.isoflop import IsoFlopConfig, run_isoflop

    p = ctx.preset
    cfg = IsoFlopConfig(
        task=p.text_corpus,
        budgets=p.text_budgets,
        sizes=p.text_sizes,
        window=p.text_window,
        lr_width=p.text_lr_width,
        workers=p.text_workers,
        seeds=p.text_seeds,
        dial=p.text_dial,
        predict=p.text_predict,
        seed=0,
        eval_problems=p.text_eval_contexts,
        bootstrap=p.bootstrap,
        grid="small",
        overrides=p.text_overrides + (f"device={p.device}",),
    )
    s = run_isoflop(cfg, str(ctx.dir("pretrain") / "isoflop"), progress=ctx.progress("pretrain IsoFLOP ladder"))
    fit, a2, ex, pred = s["fit"], s["approach2"], s.get("exponents"), s.get("prediction")
    h = {
        "text ladder": f"{p.text_corpus}: {len(s['rungs'])} rungs, {len(set(p.text_budgets))} budgets × "
        + f"{max(map(len, s['budget_sizes'].values()))} of {len(set(p.text_sizes))} {p.text_dial}s × {p.text_seeds} seeds"
    }
    if math.isfinite(a2["a"]):
        h["N_opt ∝ C^a, Approach 2"] = f"{a2['a']:.3f} [{a2['a_ci95'][0]:.3f}, {a2['a_ci95'][1]:.3f}]"
    if ex:
        a3 = ex["approach3"]
        h["N_opt ∝ C^a, Approach 3"] = f"{a3['a']:.3f} [{a3['ci95'][0]:.3f}, {a3['ci95'][1]:.3f}]"
        h["approaches agree"] = "yes" if ex["agree"] else "no"
    if fit.get("success"):
        h["Chinchilla α, β"] = f"{fit['params']['alpha']:.3f}, {fit['params']['beta']:.3f}"
    h["fit"] = "well-determined" if s["well_determined"] else "ill-determined (see notes)"
    if pred:
        how = "frontier through the profile minima" if pred.get("method") == "frontier" else "parametric law"
        h[f"predicted loss (held-out budget; {how})"] = (
            f"{pred['predicted']:.4f} [{pred['interval95'][0]:.4f}, {pred['interval95'][1]:.4f}]"
        )
        h["measured loss"] = (
            f"{pred['measured']:.4f} ({pred['relative_error']:+.2%}, {'inside' if pred['inside'] else 'outside'} the interval)"
        )
        a3p = pred.get("approach3")
        if a3p:
            h["parametric law's prediction (same model)"] = (
                f"{a3p['predicted']:.4f} [{a3p['interval95'][0]:.4f}, {a3p['interval95'][1]:.4f}] ({a3p['relative_error']:+.2%})"
            )
    la = s.get("loss_to_accuracy")
    if la:
        h["predicted accuracy (next 4 tokens)"] = (
            f"{la['predicted_from_predicted_loss']:.3f} (measured {la['measured']:.3f})"
        )
    captions = {
        "isoflop": "IsoFLOP profiles on held-out text: at each compute budget, loss against model size with its "
        "parabola; the vertex is that budget's compute-optimal size. The open square is the predicted loss "
        "(95% prediction interval) of the held-out budget's optimum, made before it was trained; the star is "
        "what training it measured.",
        "nopt": "Compute-optimal model size against compute: the profile vertices and their line (Approach 2) "
        "beside the parametric law's N_opt(C) (Approach 3).",
        "loss_to_accuracy": "Loss to accuracy: each rung's held-out accuracy (the next 4 tokens of held-out files, "
        "exactly) against its loss, the sigmoid fitted to the rungs, and the held-out rung.",
    }
    figures = [ctx.figure(f, captions.get(Path(f).stem, Path(f).stem)) for f in s.get("figures", [])]
    notes = "; ".join(s["warnings"]) or None
    return {
        "headline": h,
        "figures": figures,
        "notes": notes,
        "law": law_record("chinchilla", fit),
        "prediction": pred,
        "compute_optimal": s.get("compute_optimal"),
        "rungs": s["rungs"],
        "flops": sum(r["C"] for r in s["rungs"]) + (s["heldout_rung"]["C"] if s.get("heldout_rung") else 0.0),
    }


# -- 2. synthetic data + SFT --------------------------------------------------------------------


def synth(ctx: Context) -> StageResult:
    from scalinglab.synth.rejection import SynthConfig, rejection_sample, write_synth
    from scalinglab.synth.sampler import local_sampler
    from scalinglab.tasks import get_task
    from scalinglab.tasks.split import draw, overlap

    p = ctx.preset
    task = get_task(p.task)
    problems = draw(task, p.synth_problems, 31_337, split="train")
    sampler = local_sampler(ctx.model_of("pretrain"), device=p.device, progress=ctx.progress("rejection sampling"))
    rows, summary = rejection_sample(task, problems, sampler, p.with_sets("synth", SynthConfig(k=p.synth_k, seed=0)))
    out = ctx.dir("synth") / "data.jsonl"
    write_synth(rows, summary, str(out))
    headline = {
        k: summary.get(k)
        for k in ("acceptance_rate", "kept", "problems_with_kept", "tokens_per_kept_sample")
        if k in summary
    }
    path = figs.synth_acceptance(rows, summary, ctx.dir("synth") / "acceptance.png")
    caption = (
        "Rejection sampling: the fraction of problems with at least one accepted sample among their first k "
        f"samples, against k (up to the {summary['k']} drawn per problem; retries not counted), beside the "
        "fraction of all samples accepted."
    )
    return StageResult(
        title="Synthetic data by rejection sampling",
        headline=headline,
        figures=[ctx.figure(path, caption)],
        trains=True,
        heldout_overlap=overlap(problems, _heldout(ctx)[1]),
        outputs={"data": str(out), "summary": summary},
    )


def sft(ctx: Context) -> StageResult:
    from scalinglab.train.sft import SFTConfig
    from scalinglab.train.sft import sft as run_sft

    p = ctx.preset
    kept = ctx.records["synth"].outputs["summary"].get("kept", 0)
    data = (
        ctx.records["synth"].outputs["data"] if kept else ""
    )  # nothing kept: fall back to the task's worked solutions
    cfg = p.with_sets(
        "sft",
        SFTConfig(
            task=p.task,
            data=data,
            steps=p.sft_steps,
            eval_problems=p.eval_problems,
            eval_seed=EVAL_SEED,
            device=p.device,
        ),
    )
    s = run_sft(cfg, ctx.model_of("pretrain"), str(ctx.dir("sft") / "run"), progress=ctx.progress("sft"))
    n = ctx.records["pretrain"].outputs["base_params"]
    flops = 6.0 * n * p.sft_steps * cfg.batch_size * cfg.seq_len  # packed rows: every position is processed
    path = figs.training_loss(ctx.dir("sft") / "run" / "metrics.jsonl", ctx.dir("sft") / "loss.png")
    return StageResult(
        title="Supervised fine-tuning on the kept samples",
        model=s["model"],
        figures=[ctx.figure(path, figs.SFT_CAPTION)],
        notes=None if kept else "rejection sampling kept nothing, so SFT used the task's worked solutions",
        headline={
            "accuracy after": s.get("accuracy"),
            "accuracy before": s.get("base_accuracy"),
            "steps": p.sft_steps,
            "training FLOPs (est.)": flops,
        },
        trains=True,
        heldout_overlap=s.get("heldout_overlap"),
        outputs={"accuracy": s.get("accuracy"), "flops": flops},
    )


# -- 3. RL -----------------------------------------------------------------------------------------


def _rl_curve(run_dir: Path, n_params: float, train_mult: float) -> tuple[list[float], list[float]]:
    """Cumulative estimated RL FLOPs and the rollout accuracy at each logged step."""
    flops, xs, ys = 0.0, [], []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        flops += (
            (2.0 + train_mult) * n_params * r.get("generated_tokens", 0)
        )  # prompts' share is left out: a lower bound
        xs.append(flops)
        ys.append(r.get("accuracy", float("nan")))
    return xs, ys


def rl(ctx: Context) -> StageResult:
    import numpy as np

    from scalinglab.scaling import fit_sigmoid
    from scalinglab.train.grpo import GRPOConfig, train_grpo
    from scalinglab.train.ppo import PPOConfig, train_ppo

    p = ctx.preset
    start = ctx.model_of("sft")
    # GRPO and PPO share every setting but their steps (equal in every preset: they see equal prompts)
    rl_fields = dict(
        task=p.task,
        prompts_per_step=p.rl_prompts_per_step,
        eval_problems=p.eval_problems,
        eval_seed=EVAL_SEED,
        device=p.device,
    )
    g = train_grpo(
        p.with_sets("grpo", GRPOConfig(steps=p.grpo_steps, **rl_fields)),
        start,
        str(ctx.dir("rl") / "grpo"),
        progress=ctx.progress("grpo"),
    )
    q = train_ppo(
        p.with_sets("ppo", PPOConfig(steps=p.ppo_steps, **rl_fields)),
        start,
        str(ctx.dir("rl") / "ppo"),
        progress=ctx.progress("ppo"),
    )
    n = ctx.records["pretrain"].outputs["base_params"]
    fig, ax, path = _fig(ctx, "rl", "accuracy_vs_rl_compute")
    law, curves = None, {}
    for name, run in (("GRPO", "grpo"), ("PPO", "ppo")):
        xs, ys = _rl_curve(ctx.dir("rl") / run, n, 8.0)  # old-logp recompute (2N) + forward/backward (6N) per token
        curves[name] = (xs, ys)
        ax.plot(xs, ys, ".", alpha=0.5, label=f"{name} rollout accuracy")
    xs, ys = curves["GRPO"]
    ok = [(x, y) for x, y in zip(xs, ys) if x > 0 and math.isfinite(y)]
    if len(ok) >= 5:
        fit = fit_sigmoid([x for x, _ in ok], [y for _, y in ok], bootstrap=200)
        law = law_record("rl_sigmoid", fit)
        if fit.success:
            grid = np.geomspace(min(x for x, _ in ok), max(x for x, _ in ok), 100)
            ax.plot(grid, fit.predict(grid), "-", color="C0", label="sigmoid fit (GRPO)")
    ax.set_xscale("log")
    ax.set_xlabel("RL compute (FLOPs, estimated)")
    ax.set_ylabel("accuracy of sampled rollouts")
    ax.legend()
    save_fig(fig, path)  # atomic write; closes the figure
    rl_flops = {name: (c[0][-1] if c[0] else 0.0) for name, c in curves.items()}
    best = max((("grpo", g), ("ppo", q)), key=lambda t: t[1].get("accuracy") or 0)
    curves_path = figs.rl_curves(
        {"GRPO": ctx.dir("rl") / "grpo" / "metrics.jsonl", "PPO": ctx.dir("rl") / "ppo" / "metrics.jsonl"},
        ctx.dir("rl") / "training_curves.png",
    )
    return StageResult(
        title="Reinforcement learning against the verifier",
        model=best[1]["model"],
        headline={
            "GRPO accuracy": _change(g.get("accuracy_before"), g.get("accuracy")),
            "PPO accuracy": _change(q.get("accuracy_before"), q.get("accuracy")),
            "GRPO FLOPs (est.)": rl_flops["GRPO"],
            "PPO FLOPs (est.)": rl_flops["PPO"],
            "prompts seen, GRPO / PPO": f"{g.get('prompts_seen')} / {q.get('prompts_seen')}",
        },
        figures=[
            ctx.figure(
                path,
                "Accuracy of sampled rollouts against cumulative RL compute, "
                "with the sigmoidal compute–performance fit R(C) = R0 + (A − R0)/(1 + (C_mid/C)^B).",
            ),
            ctx.figure(curves_path, figs.RL_CAPTION),
        ],
        law=law,
        trains=True,
        heldout_overlap=_total((g.get("heldout_overlap"), q.get("heldout_overlap"))),
        outputs={
            "grpo": g,
            "ppo": q,
            "grpo_model": g["model"],
            "ppo_model": q["model"],
            "grpo_flops": rl_flops["GRPO"],
            "ppo_flops": rl_flops["PPO"],
        },
    )


def _change(before, after) -> str:
    fmt = lambda v: "?" if v is None else f"{v:.3f}"  # noqa: E731
    return f"{fmt(before)} → {fmt(after)}"


# -- 4. reward models (after RL: on the policy's samples) -------------------------------------


def reward_models(ctx: Context) -> StageResult:
    """An ORM and a PRM on the RL policy's own samples: the policy the test-time stage samples from.

    Trained on the SFT model's samples instead, they scored the RL model's answers out of
    distribution: best-of-16 with the ORM fell to 0.76, below greedy (0.885); trained here,
    0.86 (cpu preset; docs/results.md).
    """
    from scalinglab.train.reward_trainer import RewardModelConfig, train_reward_model

    p = ctx.preset
    out = {}
    for kind in ("orm", "prm"):
        # all eval_problems held-out problems (8 samples each): sampling them is cheap, and a
        # quarter of them left the AUC's 95 % CI about ±0.04 wide
        cfg = p.with_sets(
            "reward-model",
            RewardModelConfig(
                kind=kind,
                task=p.task,
                steps=p.rm_steps,
                num_problems=p.rm_problems,
                eval_problems=p.eval_problems,
                eval_seed=EVAL_SEED,
                device=p.device,
            ),
        )
        out[kind] = train_reward_model(
            cfg, ctx.model_of("rl"), str(ctx.dir("reward_models") / kind), progress=ctx.progress(kind)
        )
    headline = {}
    for kind, s in out.items():
        for k, v in s.items():
            if "auc" in k.lower() and isinstance(v, (int, float)):
                headline[f"{kind.upper()} {k}"] = v
        if s.get("auc_ci95"):
            headline[f"{kind.upper()} auc 95% CI"] = "[{:.3f}, {:.3f}]".format(*s["auc_ci95"])
    scores, labels = _heldout_scores(out)
    path = figs.roc(scores, labels, ctx.dir("reward_models") / "roc.png")
    return StageResult(
        title="Outcome and process reward models",
        headline=headline,
        model=out["orm"]["model"],
        figures=[ctx.figure(path, figs.roc_caption(labels))],
        trains=True,
        heldout_overlap=_total(s.get("heldout_overlap") for s in out.values()),
        outputs={"orm": out["orm"]["model"], "prm": out["prm"]["model"]},
    )


def _heldout_scores(out: dict) -> tuple[dict[str, list[float]], list[bool]]:
    """Each reward model's scores of the held-out samples its AUC was measured on (the PRM's: min over
    steps, its headline AUC), as its trainer wrote them (`heldout_scores.jsonl`), and whether each
    sample is correct. Both models were measured on the same seeded samples of the RL policy."""
    from scalinglab.runs.store import read_jsonl

    rows = {kind.upper(): read_jsonl(Path(s["model"]).parent / "heldout_scores.jsonl") for kind, s in out.items()}
    labels = {kind: [bool(r["correct"]) for r in rs] for kind, rs in rows.items()}
    first = next(iter(labels.values()))
    if any(v != first for v in labels.values()):
        raise RuntimeError("the reward models were measured on different held-out samples")
    return {kind: [float(r["score"]) for r in rs] for kind, rs in rows.items()}, first


# -- 5. test-time compute ------------------------------------------------------------------------


def testtime(ctx: Context) -> StageResult:
    from matplotlib.ticker import NullFormatter

    from scalinglab.model.hf import load_model
    from scalinglab.scaling import fit_coverage
    from scalinglab.testtime.evaluate import EvalConfig, evaluate
    from scalinglab.train.reward_model import load_reward_model

    p = ctx.preset
    task, problems = _heldout(ctx)
    model_path = ctx.model_of("rl")
    model, tok = load_model(model_path)
    rms = {
        "orm": load_reward_model(ctx.records["reward_models"].outputs["orm"]),
        "prm": load_reward_model(ctx.records["reward_models"].outputs["prm"]),
    }
    runs = [
        ("greedy", "functional"),
        ("sample", "functional"),
        ("majority", "functional"),
        ("best-of-n", "functional"),
        ("best-of-n", "orm"),
        ("best-of-n", "prm"),
        ("weighted", "orm"),
        ("budget", "functional"),
    ]
    results = {}
    for strategy, verifier in runs:
        label = strategy if verifier == "functional" else f"{strategy} ({verifier.upper()})"
        ns = (1,) if strategy == "greedy" else ((8, 16, 32, 48) if strategy == "budget" else p.ns)
        cfg = ctx.preset.with_sets("eval", EvalConfig(strategy=strategy, ns=ns, verifier=verifier, seed=0))
        results[label] = evaluate(
            model, tok, task, problems, cfg, reward_model=rms.get(verifier), progress=ctx.progress(label)
        )
    fig, ax, path = _fig(ctx, "testtime", "accuracy_vs_flops")
    for label, r in results.items():
        pts = r["points"]
        style = (
            {"marker": "*", "ms": 11, "ls": "", "zorder": 5} if label == "greedy" else {"marker": "o", "ms": 4}
        )  # one point
        ax.plot([q["flops"] for q in pts], [q["accuracy"] for q in pts], label=label, **style)
    sample = results["sample"]["points"]
    cov = fit_coverage([q["n"] for q in sample], [max(q["pass_at_k"], 1e-6) for q in sample], bootstrap=200)
    ax.plot([q["flops"] for q in sample], [q["pass_at_k"] for q in sample], "k--", lw=1, label="pass@k (coverage)")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # less than a decade wide: minor labels would overlap
    ax.set_xlabel("inference FLOPs for the whole eval set")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, ncol=2)
    save_fig(fig, path)  # atomic write; closes the figure
    table = [
        {
            "strategy": label,
            "n": q["n"],
            "accuracy": q["accuracy"],
            "pass@k": q.get("pass_at_k"),
            "generated tokens": q["generated_tokens"],
            "FLOPs": q["flops"],
        }
        for label, r in results.items()
        for q in r["points"]
    ]
    best = max(table, key=lambda r: r["accuracy"])
    greedy = results["greedy"]["points"][0]["accuracy"]
    maj = results["majority"]["points"][-1]
    return StageResult(
        title="Test-time compute",
        model=model_path,
        headline={
            "greedy": greedy,
            f"majority@{maj['n']}": maj["accuracy"],
            f"pass@{sample[-1]['n']}": sample[-1]["pass_at_k"],
            "best": f"{best['strategy']} n={best['n']}: {best['accuracy']:.3f}",
            "held-out problems seen in training": heldout_overlap(ctx.records),
        },
        figures=[
            ctx.figure(
                path,
                "Accuracy against inference compute for each strategy on held-out problems "
                "(one model, the RL-trained one); the dashed line is pass@k, what a perfect verifier could pick.",
            )
        ],
        table=table,
        law=law_record("coverage", cov),
        outputs={"results": {k: v["points"] for k, v in results.items()}},
    )


# -- 6. trade-off --------------------------------------------------------------------------------


def tradeoff(ctx: Context) -> StageResult:
    """Which measured mix of training and test-time compute reaches a target accuracy cheapest."""
    p = ctx.preset
    pre = ctx.records["pretrain"].outputs
    sft_flops = ctx.records["sft"].outputs["flops"]
    rl = ctx.records["rl"].outputs
    n_eval = p.eval_problems
    options = []
    # pre-trained rungs, greedy
    for r in pre["rungs"]:
        if r.get("accuracy") is not None:
            infer = 2.0 * r["N"] * 40 * p.queries  # ~40 tokens per answer, greedy
            options.append(
                {
                    "option": f"pretrain d{r['depth']} {r['D']:.2g} tok, greedy",
                    "train_flops": r["C"],
                    "test_flops": infer,
                    "accuracy": r["accuracy"],
                }
            )
    train_rl = pre["base_flops"] + sft_flops + rl["grpo_flops"]
    results = ctx.records["testtime"].outputs["results"]
    for q in results.get("majority", []):
        per_query = q["flops"] / n_eval
        options.append(
            {
                "option": f"pretrain + SFT + GRPO, majority@{q['n']}",
                "train_flops": train_rl,
                "test_flops": per_query * p.queries,
                "accuracy": q["accuracy"],
            }
        )
    for q in results.get("best-of-n", []):
        per_query = q["flops"] / n_eval
        options.append(
            {
                "option": f"pretrain + SFT + GRPO, best-of-{q['n']} (verifier)",
                "train_flops": train_rl,
                "test_flops": per_query * p.queries,
                "accuracy": q["accuracy"],
            }
        )
    for o in options:
        o["total_flops"] = o["train_flops"] + o["test_flops"]
    best_acc = max(o["accuracy"] for o in options)
    target = p.target_accuracy or max(0.0, best_acc - 0.02)
    feasible = [o for o in options if o["accuracy"] >= target]
    cheapest = min(feasible, key=lambda o: o["total_flops"])
    fig, ax, path = _fig(ctx, "tradeoff", "frontier")
    for o in options:
        ax.scatter(o["total_flops"], o["accuracy"], s=18, color="C1" if "GRPO" in o["option"] else "C0")
    frontier, best = [], -1.0
    for o in sorted(options, key=lambda o: o["total_flops"]):
        if o["accuracy"] > best:
            frontier.append(o)
            best = o["accuracy"]
    ax.plot([o["total_flops"] for o in frontier], [o["accuracy"] for o in frontier], "k-", lw=1, label="frontier")
    ax.axhline(target, color="grey", ls=":", label=f"target {target:.2f}")
    ax.scatter(
        [cheapest["total_flops"]],
        [cheapest["accuracy"]],
        s=80,
        facecolors="none",
        edgecolors="red",
        label="cheapest at target",
    )
    ax.set_xscale("log")
    ax.set_xlabel(f"training + serving FLOPs ({p.queries:.0e} queries)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    save_fig(fig, path)  # atomic write; closes the figure
    return StageResult(
        title="Where compute is best spent",
        headline={
            "cheapest option": cheapest["option"],
            "target accuracy": target,
            "its total FLOPs": cheapest["total_flops"],
            "its accuracy": cheapest["accuracy"],
        },
        figures=[
            ctx.figure(
                path,
                f"Every measured configuration (blue: pre-trained only, greedy; orange: "
                f"post-trained with test-time strategies) by total compute to train it and serve {p.queries:.0e} queries. "
                "The red circle is the cheapest one that reaches the target.",
            )
        ],
        table=sorted(options, key=lambda o: o["total_flops"]),
    )


# -- 7. tokenomics --------------------------------------------------------------------------------


def tokenomics(ctx: Context) -> StageResult:
    from scalinglab.engine.measure import engine_measure
    from scalinglab.tokenomics.calibrate import calibrate
    from scalinglab.tokenomics.catalog import get_hardware, get_model
    from scalinglab.tokenomics.cost import answer_cost
    from scalinglab.tokenomics.memory import Parallel, ServeConfig
    from scalinglab.tokenomics.roofline import StepModel

    d = ctx.dir("tokenomics")
    # (a) this lab's own model on this CPU: measured decode steps against the calibrated roofline; the held-out
    # points are timed in the same interleaved rounds as the fitted ones (fastest sample of each: load only adds time)
    measure, spec = engine_measure(ctx.model_of("rl"))
    cal_path = d / "calibration.json"
    points = ((1, 64), (4, 128), (16, 128), (16, 512), (64, 128), (64, 256))
    held = ((2, 96), (8, 192), (32, 384), (48, 200))  # held out of the fit
    cal = calibrate(measure, spec, points=points, holdout=held, path=cal_path, quick=True)
    rows = [
        {
            "batch": p["batch"],
            "context": p["context"],
            "measured_ms": p["measured_s"] * 1e3,
            "predicted_ms": p["predicted_s"] * 1e3,
            "error": p["rel_error"],
            "measured_median_ms": p["spread_s"]["median"] * 1e3,
            "measured_max_ms": p["spread_s"]["max"] * 1e3,
        }
        for p in cal["holdout"]
    ]
    # (b) frontier configurations: $ per answer against chain-of-thought length, and N-sample votes
    fig, ax, path = _fig(ctx, "tokenomics", "cost_per_answer")
    configs = [
        ("Llama-3.1-405B", "H100", 8, "fp8"),
        ("Llama-3.1-405B", "H200", 8, "fp8"),
        ("Llama-3.1-405B", "B200", 8, "fp8"),
        ("DeepSeek-V3", "H200", 8, "fp8"),
        ("DeepSeek-V3", "GB200-NVL72", 8, "fp8"),
    ]
    cots = [1_000, 2_000, 4_000, 8_000, 16_000, 32_000]
    frontier = []
    for model_name, hw_name, n_gpu, wdt in configs:
        try:
            st = StepModel(
                get_model(model_name), get_hardware(hw_name), ServeConfig(weights_dtype=wdt, par=Parallel(tp=n_gpu))
            )
            costs = [answer_cost(st, 1_000, L)["usd_per_answer"] for L in cots]
        except Exception as e:  # a configuration that does not fit is reported, not fatal
            frontier.append({"config": f"{model_name} on {n_gpu}×{hw_name}", "error": str(e)})
            continue
        ax.plot(cots, costs, "o-", ms=3, label=f"{model_name} {n_gpu}×{hw_name} {wdt}")
        vote = answer_cost(st, 1_000, 8_000, n_samples=8)["usd_per_answer"]
        frontier.append(
            {
                "config": f"{model_name} on {n_gpu}×{hw_name}",
                "$ per answer (8k CoT)": costs[3],
                "$ per 8-vote (8k CoT)": vote,
            }
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("chain-of-thought length (tokens)")
    ax.set_ylabel("$ per answer")
    ax.legend(fontsize=7)
    save_fig(fig, path)  # atomic write; closes the figure
    med = cal["holdout_median_abs_error"]
    return StageResult(
        title="Tokenomics: what answers cost",
        headline={
            "CPU decode: median abs error of calibrated prediction": med,
            "matmul GFLOP/s (this CPU)": cal["matmul_flops"] / 1e9,
            "bandwidth GB/s (this CPU)": cal["bandwidth_bytes_per_s"] / 1e9,
            "calibration rounds": cal["rounds"],
            "load average": cal["load_average"]["start"],
        },
        figures=[
            ctx.figure(
                path,
                "Rental cost of one answer against the length of its chain of thought "
                "(1k-token prompt), from the roofline model on the catalogued hardware: long reasoning shrinks the batch "
                "that fits in HBM, so cost grows faster than linearly.",
            )
        ],
        table=rows + frontier,
    )
