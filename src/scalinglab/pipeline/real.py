"""The main job on a pretrained model: `scalinglab run --preset real` (SmolLM2-135M-Instruct).

No pre-training ladder: the model is `preset.model`. The stages, each a library call:

1. `base`: the model as it comes, on two real task families — the preset's reasoning-gym task
   (few-shot prompt: the instruct model follows the `Answer:` format there, not under its chat
   template) with greedy, majority and pass@k, and GSM8K test problems under the chat template;
2. `sft`: rejection-sampled SFT — the model's own verified samples on train-split problems
   (`SFTConfig(source="samples")`), then greedy accuracy on the held-out split;
3. `rl`: GRPO from the SFT model, each prompt run once per group in the update
   (`share_prefix`, train/prefix.py), then greedy accuracy on the held-out split;
4. `testtime`: sampling, majority vote and coverage (pass@k with Brown et al.'s law) of the RL
   model against inference FLOPs, and the held-out gain of every stage over the base model with a
   paired-bootstrap 95% interval;
5. `tokenomics`: the stage of the default run, on this model: measured decode steps on this CPU
   against the calibrated roofline, and $ per answer on the catalogue GPUs.

Every evaluation draws the task's eval split (`tasks/split.py`); every training stream its
train split; the results carry the overlap (0). Each stage returns a `StageResult` with at least
one figure (base: majority vote and pass@k against samples; sft: its loss; rl: its training curves).
"""

from __future__ import annotations

from dataclasses import replace

from scalinglab.errors import UserError
from scalinglab.pipeline import figures as figs
from scalinglab.pipeline import stages
from scalinglab.pipeline.results import StageResult
from scalinglab.pipeline.stages import Context, _fig
from scalinglab.report.figures import save_fig
from scalinglab.tasks.seeds import EVAL_SEED


def _eval(
    ctx: Context,
    model_path: str,
    task_name: str,
    n_problems: int,
    chat: str,
    strategy: str,
    ns,
    max_new_tokens: int,
    label: str,
) -> dict:
    """`evaluate` on the task's eval split, prompts formatted for the model's own tokenizer."""
    from scalinglab.model.hf import load_model
    from scalinglab.model.prompting import format_task
    from scalinglab.tasks import get_task
    from scalinglab.tasks.split import draw
    from scalinglab.testtime.evaluate import EvalConfig, evaluate

    model, tok = load_model(model_path)
    task = get_task(task_name)
    task, problems = format_task(task, draw(task, n_problems, EVAL_SEED, split="eval"), tok, chat)
    cfg = ctx.preset.with_sets(
        "eval",
        EvalConfig(
            strategy=strategy, ns=tuple(ns), max_new_tokens=max_new_tokens, temperature=ctx.preset.temperature, seed=0
        ),
    )
    s = evaluate(model, tok, task, problems, cfg, progress=ctx.progress(label))
    s["correct"] = [int(q["correct_samples"] > 0) if strategy == "greedy" else None for q in s["per_problem"]]
    return s


def base(ctx: Context) -> StageResult:
    p = ctx.preset
    greedy = _eval(ctx, p.model, p.task, p.eval_problems, "off", "greedy", (1,), p.max_new_tokens, "base greedy")
    sample = _eval(ctx, p.model, p.task, p.eval_problems, "off", "majority", p.ns, p.max_new_tokens, "base majority")
    gsm = _eval(ctx, p.model, "gsm8k", p.gsm8k_problems, "auto", "greedy", (1,), p.gsm8k_max_new_tokens, "base gsm8k")
    last = sample["points"][-1]
    path = figs.coverage_curve(sample["points"], ctx.dir("base") / "accuracy_vs_samples.png")
    return StageResult(
        title=f"The pretrained model as it comes ({p.model})",
        model=p.model,
        figures=[ctx.figure(path, figs.COVERAGE_CAPTION.format(model="base model", task=p.task))],
        headline={
            f"{p.task} greedy": greedy["points"][0]["accuracy"],
            f"majority@{last['n']}": last["accuracy"],
            f"pass@{last['n']}": last["pass_at_k"],
            f"gsm8k greedy ({p.gsm8k_problems} test problems, chat)": gsm["points"][0]["accuracy"],
        },
        table=[
            {
                "task": t,
                "strategy": s["strategy"],
                "n": q["n"],
                "accuracy": q["accuracy"],
                "pass@k": q["pass_at_k"],
                "generated tokens": q["generated_tokens"],
                "FLOPs": q["flops"],
            }
            for t, s in ((p.task, greedy), (p.task, sample), ("gsm8k", gsm))
            for q in s["points"]
        ],
        outputs={"correct": greedy["correct"], "coverage": sample.get("coverage"), "gsm8k": gsm["points"][0]},
    )


def sft(ctx: Context) -> StageResult:
    from scalinglab.train.sft import SFTConfig
    from scalinglab.train.sft import sft as run_sft

    p = ctx.preset
    cfg = SFTConfig(  # `run --set sft.FIELD=VALUE` applies below
        task=p.task,
        chat="off",
        source="samples",
        num_problems=p.synth_problems,
        samples_per_problem=p.synth_k,
        sample_temperature=p.temperature,
        steps=p.sft_steps,
        batch_size=p.sft_batch,
        seq_len=p.sft_seq_len,
        lr=p.sft_lr,
        warmup_steps=2,
        eval_problems=p.eval_problems,
        eval_seed=EVAL_SEED,
        device=p.device,
    )
    cfg = p.with_sets("sft", cfg)
    notes, run_dir = None, ctx.dir("sft") / "run"
    try:
        s = run_sft(cfg, p.model, str(run_dir), progress=ctx.progress("sft"))
    except UserError as e:
        if "none of" not in str(e):
            raise
        # nothing the model sampled was right (a model at the floor): the task's reference answers instead
        notes = f"{e}; SFT used the task's reference solutions instead"
        run_dir = ctx.dir("sft") / "run-solutions"
        s = run_sft(replace(cfg, source="solutions"), p.model, str(run_dir), progress=ctx.progress("sft"))
    path = figs.training_loss(run_dir / "metrics.jsonl", ctx.dir("sft") / "loss.png")
    return StageResult(
        title="Rejection-sampled SFT on the model's own verified answers",
        model=s["model"],
        figures=[ctx.figure(path, figs.SFT_CAPTION)],
        notes=notes,
        headline={
            "accuracy before": s.get("base_accuracy"),
            "accuracy after": s.get("accuracy"),
            "steps": p.sft_steps,
            "examples": s.get("examples"),
        },
        trains=True,
        heldout_overlap=s.get("heldout_overlap"),
        outputs={"accuracy": s.get("accuracy"), "summary": s},
    )


def rl(ctx: Context) -> StageResult:
    from scalinglab.train.grpo import GRPOConfig, train_grpo

    p = ctx.preset
    start = ctx.model_of("sft")
    cfg = GRPOConfig(
        task=p.task,
        chat="off",
        steps=p.grpo_steps,
        prompts_per_step=p.rl_prompts_per_step,
        group_size=p.group_size,
        max_new_tokens=p.max_new_tokens,
        lr=p.grpo_lr,
        temperature=p.temperature,
        share_prefix=True,
        eval_problems=p.eval_problems,
        eval_seed=EVAL_SEED,
        device=p.device,
    )
    cfg = p.with_sets("grpo", cfg)
    g = train_grpo(cfg, start, str(ctx.dir("rl") / "grpo"), progress=ctx.progress("grpo"))
    path = figs.rl_curves({"GRPO": ctx.dir("rl") / "grpo" / "metrics.jsonl"}, ctx.dir("rl") / "training_curves.png")
    return StageResult(
        title="GRPO against the task's own scorer",
        model=g["model"],
        figures=[ctx.figure(path, figs.RL_CAPTION)],
        headline={"accuracy": stages._change(g.get("accuracy_before"), g.get("accuracy")), "steps": p.grpo_steps},
        trains=True,
        heldout_overlap=g.get("heldout_overlap"),
        outputs={"grpo": g},
    )


def testtime(ctx: Context) -> StageResult:
    from scalinglab.testtime.stats import paired_bootstrap

    p = ctx.preset
    runs = {"base": p.model, "sft": ctx.model_of("sft"), "rl": ctx.model_of("rl")}
    greedy = {
        k: _eval(ctx, m, p.task, p.eval_problems, "off", "greedy", (1,), p.max_new_tokens, f"{k} greedy")
        for k, m in runs.items()
        if k != "base"
    }
    base_correct = ctx.records["base"].outputs["correct"]
    greedy["base"] = {"correct": base_correct, "points": [{"accuracy": sum(base_correct) / p.eval_problems}]}
    sample = _eval(ctx, runs["rl"], p.task, p.eval_problems, "off", "majority", p.ns, p.max_new_tokens, "rl majority")
    gains = {}
    for k in ("sft", "rl"):
        lo, hi = paired_bootstrap(greedy[k]["correct"], greedy["base"]["correct"])
        gains[k] = {
            "delta": greedy[k]["points"][0]["accuracy"] - greedy["base"]["points"][0]["accuracy"],
            "ci95": [lo, hi],
        }
    fig, ax, path = _fig(ctx, "testtime", "accuracy_vs_flops")
    pts = sample["points"]
    ax.plot([q["flops"] for q in pts], [q["accuracy"] for q in pts], "o-", label="majority vote (RL model)")
    ax.plot([q["flops"] for q in pts], [q["pass_at_k"] for q in pts], "k--", lw=1, label="pass@k (coverage)")
    ax.set_xscale("log")
    ax.set_xlabel("inference FLOPs for the whole eval set")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    save_fig(fig, path)
    return StageResult(
        title="Held-out gains and test-time compute",
        model=runs["rl"],
        headline={f"greedy {k}": greedy[k]["points"][0]["accuracy"] for k in ("base", "sft", "rl")}
        | {
            f"gain {k} (95% CI)": f"{g['delta']:+.3f} [{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]"
            for k, g in gains.items()
        }
        | {
            f"majority@{pts[-1]['n']}": pts[-1]["accuracy"],
            f"pass@{pts[-1]['n']}": pts[-1]["pass_at_k"],
            "held-out problems seen in training": stages.heldout_overlap(ctx.records),
        },
        figures=[
            ctx.figure(
                path,
                "Majority-vote accuracy and pass@k of the RL model against inference compute on held-out problems.",
            )
        ],
        table=[{"n": q["n"], "majority": q["accuracy"], "pass@k": q["pass_at_k"], "FLOPs": q["flops"]} for q in pts],
        outputs={"gains": gains, "coverage": sample.get("coverage")},
    )


STAGES = [("base", base), ("sft", sft), ("rl", rl), ("testtime", testtime), ("tokenomics", stages.tokenomics)]
