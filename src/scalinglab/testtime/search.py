"""Step-level search: beam search over reasoning steps, scored by a process reward model or
by Monte Carlo roll-outs (Snell et al. 2024, "Scaling LLM Test-Time Compute Optimally…",
§5 beam search; Wang et al. 2024, "Math-Shepherd", for roll-out values).

A step is one line (every built-in task writes one reasoning step per line). With budget n
and expansion width M (`expand`), the search keeps k = max(1, n // M) beams and samples
n // k next steps from each, so each round proposes about n candidate steps:

1. each live beam (prompt + partial solution) gets n // k sampled next lines, in one
   engine call for all problems (the n // k share one prefill of that beam);
2. every candidate is scored: `prm` — the PRM's step scores aggregated (default `last`, as
   in Snell et al.); `orm` — the ORM on the partial text; `rollout` — the fraction of
   `rollouts` sampled continuations that end correct under the task's checker (an oracle
   value, it uses the reference answer; Math-Shepherd's hard estimate averaged);
3. the top k candidates of each problem survive; a survivor that has answered (or hit
   EOS/limits) is finished. The search ends when a problem has no live beam; the answer is
   the best-scored finished candidate.

Cost: every round re-prefills prompt + partial solution (no KV reuse across engine calls);
roll-outs are counted too, from the engine's own totals. The PRM/ORM scores every candidate
with one forward over prompt + partial solution; those tokens and FLOPs (the RM's own size)
are added as `reward_tokens` / `reward_flops`, part of the strategy's `flops`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

from scalinglab.engine import Engine, SamplingParams
from scalinglab.errors import UserError
from scalinglab.tasks.base import Problem
from scalinglab.testtime.base import Cost, Solution, SolveResult
from scalinglab.testtime.best_of_n import AGGREGATIONS, last_costs, prm_score_cost


def rollout_values(
    engine: Engine, task, items: Sequence[tuple[Problem, str]], rollouts: int, params: SamplingParams
) -> tuple[list[float], Cost]:
    """Monte Carlo value of each partial solution: the fraction of `rollouts` continuations
    of prompt + partial that the task's checker accepts."""
    if not items:
        return [], Cost()
    res = engine.generate([p.prompt + part for p, part in items], replace(params, n=rollouts, stop=tuple(task.stop)))
    vals = [
        sum(bool(task.check(p, part + c.text).correct) for c in g.completions) / rollouts
        for (p, part), g in zip(items, res.generations)
    ]
    return vals, Cost.of(res)


def _rm_cost(costs: list[tuple[int, float]]) -> Cost:
    return Cost(reward_tokens=sum(t for t, _ in costs), reward_flops=sum(f for _, f in costs))


@dataclass
class BeamSearch:
    """`solve(problems, n)`: step-level beam search proposing about n steps per round."""

    engine: Engine
    task: object
    scorer: str = "prm"  # prm, orm or rollout
    reward_model: object = None
    aggregation: str = "last"  # PRM step-score aggregation
    expand: int = 4  # M: next steps sampled per beam (beams kept = n // M)
    rollouts: int = 4  # continuations per candidate for the roll-out scorer
    max_steps: int = 16  # rounds before the search stops
    step_tokens: int = 32  # token limit of one step
    rollout_tokens: int = 128  # token limit of one roll-out
    params: SamplingParams = field(default_factory=SamplingParams)
    name: str = "beam"

    def __post_init__(self):
        if self.scorer not in ("prm", "orm", "rollout"):
            raise UserError(f"unknown beam-search scorer {self.scorer!r} (known: prm, orm, rollout)")
        if self.scorer != "rollout" and self.reward_model is None:
            raise UserError(f"beam search with a {self.scorer} needs a reward model (--reward-model)")
        if self.aggregation not in AGGREGATIONS:
            raise UserError(f"unknown PRM aggregation {self.aggregation!r}")

    def _done(self, text: str, reason: str, last: bool) -> bool:
        return (
            last
            or reason in ("eos", "length")
            or self.task.extract_answer(text) is not None
            or any(text.endswith(s) for s in self.task.stop)
        )

    def _score(self, cands: list[tuple[int, str, bool]], problems, cost: Cost) -> tuple[list[float], Cost]:
        task = self.task
        rm = self.reward_model
        if self.scorer == "prm":
            scored = [prm_score_cost(rm, task, problems[i].prompt, t, self.aggregation) for i, t, _ in cands]
            return [s for s, _ in scored], cost + _rm_cost([c for _, c in scored])
        if self.scorer == "orm":
            scores = [
                float(x) for x in rm.score_outcomes([problems[i].prompt for i, _, _ in cands], [t for _, t, _ in cands])
            ]
            return scores, cost + _rm_cost(last_costs(rm, len(cands)))
        scores = [float(task.check(problems[i], t).correct) if done else 0.0 for i, t, done in cands]
        open_ = [j for j, (_, _, done) in enumerate(cands) if not done]
        vals, c = rollout_values(
            self.engine,
            task,
            [(problems[cands[j][0]], cands[j][1]) for j in open_],
            self.rollouts,
            replace(self.params, max_new_tokens=self.rollout_tokens, seed=self.params.seed + 7919),
        )
        for j, v in zip(open_, vals):
            scores[j] = v
        return scores, cost + c

    def solve(self, problems: Sequence[Problem], n: int) -> SolveResult:
        keep = max(1, n // self.expand)
        per_beam = max(1, n // keep)
        active: list[list[str]] = [[""] for _ in problems]
        finished: list[list[tuple[float, str]]] = [[] for _ in problems]
        cost = Cost()
        for step in range(self.max_steps):
            jobs = [(i, part) for i, parts in enumerate(active) for part in parts]
            if not jobs:
                break
            res = self.engine.generate(
                [problems[i].prompt + part for i, part in jobs],
                replace(
                    self.params,
                    n=per_beam,
                    max_new_tokens=self.step_tokens,
                    stop=("\n",) + tuple(self.task.stop),
                    seed=self.params.seed + step,
                ),
            )
            cost += Cost.of(res)
            last = step == self.max_steps - 1
            cands = [
                (i, part + c.text, self._done(part + c.text, c.finish_reason, last))
                for (i, part), g in zip(jobs, res.generations)
                for c in g.completions
            ]
            scores, cost = self._score(cands, problems, cost)
            active = [[] for _ in problems]
            for i in range(len(problems)):
                mine = sorted((j for j, c in enumerate(cands) if c[0] == i), key=lambda j: -scores[j])[:keep]
                for j in mine:
                    if cands[j][2]:
                        finished[i].append((scores[j], cands[j][1]))
                    else:
                        active[i].append(cands[j][1])
        sols = []
        for i, p in enumerate(problems):
            pool = finished[i] or [(0.0, t) for t in active[i]]
            if not pool:
                sols.append(Solution(p.id, None, 0.0))
                continue
            best = max(range(len(pool)), key=lambda j: (pool[j][0], -j))
            checks = [bool(self.task.check(p, t).correct) for _, t in pool]
            sols.append(
                Solution(p.id, self.task.extract_answer(pool[best][1]), float(checks[best]), len(pool), sum(checks))
            )
        return SolveResult(sols, cost)
