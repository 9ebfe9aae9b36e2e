"""Run a test-time strategy over a list of budgets n and measure accuracy against compute.

Sampling strategies (sample, majority, best-of-n, weighted) draw ONCE with the largest n
and evaluate every smaller n on the first n samples of each problem; a point's compute is
what n alone costs (prompt tokens and FLOPs once per problem + the decodes of the first n
samples). Greedy is one point (n = 1). Beam search and budget control cannot be cut from
a larger run, so they run once per n (for `budget`, n is the thinking-token budget).

Returns `{"task", "strategy", "verifier", "points": [{"n", "accuracy", "pass_at_k",
"prompt_tokens", "generated_tokens", "flops", ...}], "coverage": {"k", "pass_at_k", "ci95",
"law"} | None, "per_problem": [{"id", "correct_samples", "samples", "answers"}]}`. Coverage is
pass@k at k = 1, 2, 4, ... up to the largest n, with a bootstrap-over-problems 95% interval and
the coverage law of Brown et al. 2024 fitted to it (sampled strategies with n >= 2); `plot` draws accuracy (and pass@k) against FLOPs.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Sequence

from scalinglab.config import check_choices
from scalinglab.engine import Engine, SamplingParams
from scalinglab.engine.steps import decode_dtypes
from scalinglab.errors import UserError
from scalinglab.tasks.base import Problem
from scalinglab.testtime.base import SolveResult
from scalinglab.testtime.budget import BudgetStrategy
from scalinglab.testtime.greedy import default_max_new_tokens
from scalinglab.testtime.passk import coverage_curve, mean_pass_at_k
from scalinglab.testtime.sampling import SELECTORS, SampledStrategy, select
from scalinglab.testtime.search import BeamSearch

Strategy = Literal["greedy", "sample", "majority", "best-of-n", "weighted", "beam", "budget"]
STRATEGIES = typing.get_args(Strategy)


@dataclass(frozen=True)
class EvalConfig:
    strategy: Strategy = "majority"  # greedy, sample, majority, best-of-n, weighted, beam or budget
    ns: tuple[int, ...] = (1, 2, 4, 8, 16)  # samples / beam budget / thinking tokens (budget)
    verifier: Literal["functional", "orm", "prm"] = "functional"  # the judge of best-of-n, weighted and beam
    aggregation: Literal["", "min", "prod", "last"] = (
        ""  # PRM step-score aggregation: min, prod or last ("" = min for best-of-n/weighted, last for beam)
    )
    temperature: float = 1.0  # sampling temperature
    top_p: float = 1.0
    max_new_tokens: int = 0  # per sample (0 = room for the task's longest worked solution)
    seed: int = 0  # sampling seed
    max_batch: int = 64  # sequences decoded together
    dtype: Literal["auto", "fp32", "bf16"] = "auto"  # weights the CPU decode loop reads (auto: engine.steps.pick_dtype)

    def __post_init__(self) -> None:
        check_choices(self)


def _point(n: int, r: SolveResult, pass_at_k: float) -> dict:
    return {"n": n, "accuracy": r.accuracy, "pass_at_k": pass_at_k, **r.cost.to_json()}


def evaluate(
    model, tokenizer, task, problems: Sequence[Problem], cfg: EvalConfig, reward_model=None, progress=None
) -> dict:
    """Accuracy and exact compute of `cfg.strategy` at every budget in `cfg.ns`."""
    if not problems:
        raise UserError("no problems to evaluate")
    ns = sorted(set(int(n) for n in cfg.ns))
    if not ns or ns[0] < (0 if cfg.strategy == "budget" else 1):
        raise UserError(f"--n must list positive integers (got {list(cfg.ns)})")
    engine = Engine(
        model,
        tokenizer,
        max_batch=cfg.max_batch,
        weight_dtype=decode_dtypes(cfg.dtype, next(model.parameters()).device)[1],
    )
    params = SamplingParams(
        max_new_tokens=cfg.max_new_tokens or default_max_new_tokens(task, problems, tokenizer),
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        stop=tuple(task.stop),
        seed=cfg.seed,
    )
    points, per_problem, coverage, decode = [], [], None, None
    if cfg.strategy in SELECTORS or cfg.strategy == "greedy":
        greedy = cfg.strategy == "greedy"
        if greedy:
            ns, params = [1], replace(params, greedy=True)
        strat = SampledStrategy(
            engine,
            task,
            "sample" if greedy else cfg.strategy,
            params,
            cfg.verifier,
            reward_model,
            cfg.aggregation or "min",
        )
        attempts, drawn = strat.draw(problems, ns[-1], progress=progress)
        counts = [(len(a.samples), sum(s.correct for s in a.samples)) for a in attempts]
        # the one engine call's own speed (prefill included, judging excluded): compare with `bench engine`
        decode = {
            "seconds": drawn.seconds,
            "generated_tokens": drawn.generated_tokens,
            "prompt_tokens": drawn.prompt_tokens,
            "tokens_per_s": drawn.generated_tokens / drawn.seconds if drawn.seconds > 0 else None,
            "max_batch": cfg.max_batch,
            "max_new_tokens": params.max_new_tokens,
        }
        for n in ns:
            r = select(attempts, n, strat.name, task, drawn.prefix_kv_bytes)
            points.append(_point(n, r, mean_pass_at_k([c[0] for c in counts], [c[1] for c in counts], n)))
        per_problem = [
            {"id": a.problem.id, "correct_samples": c, "samples": s, "answers": [x.answer for x in a.samples]}
            for a, (s, c) in zip(attempts, counts)
        ]
        if not greedy and ns[-1] >= 2:
            coverage = _coverage(counts)
    else:
        if cfg.strategy == "beam":
            scorer = {"functional": "rollout", "prm": "prm", "orm": "orm"}.get(cfg.verifier)
            if scorer is None:
                raise UserError(f"unknown verifier {cfg.verifier!r} (known: functional, orm, prm)")
            strat = BeamSearch(
                engine,
                task,
                scorer,
                reward_model,
                cfg.aggregation or "last",
                params=params,
                rollout_tokens=params.max_new_tokens,
            )
        else:
            strat = BudgetStrategy(engine, task, replace(params, greedy=True))
        for k, n in enumerate(ns):
            r = strat.solve(problems, n)
            points.append(_point(n, r, r.coverage))
            if progress:
                progress(k + 1, len(ns), n=n, accuracy=r.accuracy)
        per_problem = [
            {"id": s.id, "correct_samples": s.correct_candidates, "samples": s.candidates, "answer": s.answer}
            for s in r.solutions
        ]
    return {
        "task": getattr(task, "name", "?"),
        "strategy": cfg.strategy,
        "verifier": cfg.verifier,
        "problems": len(problems),
        "points": points,
        "coverage": coverage,
        "decode": decode,
        "dtype": str(engine.decode_dtype()).removeprefix("torch."),
        "per_problem": per_problem,
    }


def _coverage(counts: list[tuple[int, int]]) -> dict:
    """pass@k to the largest n with bootstrap intervals, and Brown et al.'s law c(k) = exp(a·k^b) fitted to it."""
    from scalinglab.scaling import fit_coverage

    cov = coverage_curve([n for n, _ in counts], [c for _, c in counts])
    # Fit only where the data can say something: at least three k whose interval excludes both 0 and 1
    # (with one correct sample in 800 the law "fits" with a tight but meaningless interval).
    resolved = sum(lo > 0 and hi < 1 for lo, hi in cov["ci95"])
    if resolved >= 3:
        fit = fit_coverage(cov["k"], [max(c, 1e-6) for c in cov["pass_at_k"]], bootstrap=300)
        cov["law"] = {
            "name": "coverage",
            "form": "exp(a*k^b)",
            "params": fit.params,
            "ci95": fit.ci,
            "success": fit.success,
            "message": fit.message,
            "warnings": list(fit.warnings),
        }
    else:
        cov["law"] = None  # fewer than three k values resolved away from 0 and 1: nothing to fit
    return cov


def plot(summary: dict, path: str | Path) -> Path:
    """Accuracy (solid) and pass@k (dashed) against FLOPs, log x, written as a PNG."""
    import matplotlib.ticker

    from scalinglab.report.figures import new_figure, save_fig

    pts = summary["points"]
    x = [p["flops"] for p in pts]
    fig, ax = new_figure()
    ax.plot(x, [p["accuracy"] for p in pts], "o-", label=f"{summary['strategy']} accuracy")
    ax.plot(x, [p["pass_at_k"] for p in pts], "s--", alpha=0.7, label="pass@k (coverage)")
    for p in pts:
        ax.annotate(f"n={p['n']}", (p["flops"], p["accuracy"]), textcoords="offset points", xytext=(3, -10), fontsize=7)
    if len(set(x)) > 1:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # major decades only: readable
    ax.set_xlabel("inference FLOPs (all problems)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{summary['task']}: {summary['strategy']} ({summary.get('problems', '?')} problems)")
    ax.legend(loc="lower right")
    return save_fig(fig, path)
