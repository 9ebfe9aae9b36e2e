"""Strategies on a tiny random model: accounting equals the engine's outputs, prefix sharing,
beam search and budget forcing (scripted engine), the evaluate sweep and its figure."""

import pytest

from scalinglab.engine import Engine, SamplingParams, sequence_flops
from scalinglab.engine.engine import Completion, Generation, GenerationResult
from scalinglab.tasks import get_task
from scalinglab.tasks.base import Problem
from scalinglab.testtime.base import Cost
from scalinglab.testtime.budget import BudgetStrategy
from scalinglab.testtime.evaluate import EvalConfig, evaluate, plot
from scalinglab.testtime.sampling import SampledStrategy, draw, select
from scalinglab.testtime.search import BeamSearch

ARITH = get_task("arithmetic")


class Recording:
    """An Engine wrapper that keeps every GenerationResult it returns."""

    def __init__(self, engine):
        self.engine, self.results, self.calls = engine, [], []

    @property
    def cfg(self):
        return self.engine.cfg

    def generate(self, prompts, params, progress=None):
        res = self.engine.generate(prompts, params, progress=progress)
        self.results.append(res)
        self.calls.append((list(prompts), params))
        return res


def _engine_totals(results):
    """Totals recomputed from the engine's per-completion outputs, independently of Cost."""
    gen = sum(len(c.token_ids) for r in results for g in r.generations for c in g.completions)
    prompt = sum(len(g.prompt_ids) for r in results for g in r.generations)
    return prompt, gen


def _assert_cost_is_engine_sum(cost: Cost, rec: Recording):
    prompt, gen = _engine_totals(rec.results)
    assert (cost.prompt_tokens, cost.generated_tokens) == (prompt, gen)
    assert cost.prefills == sum(r.prefills for r in rec.results) == sum(len(r.generations) for r in rec.results)
    assert cost.flops == pytest.approx(sum(r.flops for r in rec.results), rel=1e-12)


def test_draw_accounting_equals_engine_outputs(tiny_model):
    model, tok = tiny_model
    rec = Recording(Engine(model, tok, max_batch=16))
    problems = ARITH.generate(3, seed=1)
    attempts, cost = draw(rec, ARITH, problems, 6, SamplingParams(max_new_tokens=8, seed=3))
    _assert_cost_is_engine_sum(cost, rec)
    full = select(attempts, 6, "majority", ARITH).cost
    assert (full.prompt_tokens, full.generated_tokens, full.prefills) == (cost.prompt_tokens, cost.generated_tokens, 3)
    assert full.prompt_flops == pytest.approx(cost.prompt_flops) and full.generated_flops == pytest.approx(
        cost.generated_flops
    )
    # a smaller n is the same prompts plus the decodes of the first n samples, by hand
    res = rec.results[0]
    want = sum(
        sequence_flops(model.config, len(g.prompt_ids), len(c.token_ids))
        for g in res.generations
        for c in g.completions[:3]
    )
    three = select(attempts, 3, "majority", ARITH).cost
    assert three.generated_flops == pytest.approx(want)
    assert three.generated_tokens == sum(len(c.token_ids) for g in res.generations for c in g.completions[:3])
    assert three.prompt_tokens == cost.prompt_tokens


def test_prefix_shared_across_64_samples_at_strategy_level(tiny_model):
    model, tok = tiny_model
    p = Problem(id="long", task="arithmetic", prompt="x" * 511, answer="1")  # 512 tokens with BOS
    strat = SampledStrategy(
        Engine(model, tok, max_batch=64), ARITH, "majority", SamplingParams(max_new_tokens=2, ignore_eos=True)
    )
    r = strat.solve([p], 64)
    cfg = model.config
    assert r.cost.prefills == 1 and r.cost.prompt_tokens == 512
    assert (
        r.cost.prefix_kv_bytes == 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * 512 * 4
    )  # one fp32 copy
    assert r.cost.generated_tokens == 128 and r.solutions[0].candidates == 64
    assert r.cost.prompt_flops == pytest.approx(cfg.prefill_flops(512))


class StubPRM:
    def score_steps(self, prompt, steps):
        return [1.0 / (1 + len(s)) for s in steps]  # prefers short steps

    def score_outcomes(self, prompts, completions):
        return [float(len(c) % 3) for c in completions]


@pytest.mark.parametrize("scorer", ["prm", "orm", "rollout"])
def test_beam_search_accounting_and_shape(tiny_model, scorer):
    model, tok = tiny_model
    rec = Recording(Engine(model, tok, max_batch=32))
    problems = ARITH.generate(2, seed=2)
    bs = BeamSearch(
        rec,
        ARITH,
        scorer,
        StubPRM(),
        expand=2,
        rollouts=2,
        max_steps=2,
        step_tokens=5,
        rollout_tokens=6,
        params=SamplingParams(seed=1),
    )
    r = bs.solve(problems, 4)  # keep 2 beams, 2 steps each
    _assert_cost_is_engine_sum(r.cost, rec)
    assert len(r.solutions) == 2 and all(s.candidates >= 1 for s in r.solutions)
    step_calls = [params for _, params in rec.calls if "\n" in params.stop]
    assert step_calls[0].n == 2 and len(rec.calls[0][0]) == 2  # first round: one empty beam per problem
    if scorer == "rollout":
        assert any(params.n == 2 and "\n" not in params.stop for _, params in rec.calls)


class Scripted:
    """An engine double that answers each call from a script and does exact bookkeeping."""

    def __init__(self, cfg, replies):
        self.cfg, self.replies, self.prompts = cfg, list(replies), []

    def generate(self, prompts, params, progress=None):
        texts = self.replies.pop(0)
        self.prompts.append(list(prompts))
        res = GenerationResult(generations=[])
        for p, t in zip(prompts, texts):
            ids = list(range(len(p) + 1))
            comp = Completion(
                t, list(range(len(t))), [0.0] * len(t), "length" if len(t) >= params.max_new_tokens else "stop"
            )
            res.generations.append(Generation(p, ids, [comp]))
            res.prompt_tokens += len(ids)
            res.generated_tokens += len(t)
            res.prefills += 1
        return res


def test_budget_forces_the_answer_after_the_last_complete_line(tiny_model):
    model, _ = tiny_model
    probs = [ARITH.make(47, "+", 85), ARITH.make(2, "+", 3)]
    think = ["7+5+0=12\n4+8+1=", "2+3+0=5\nA: 5\n"]  # first hits the 15-token budget mid-line; second answered
    eng = Scripted(model.config, [think, ["132\n"]])
    r = BudgetStrategy(eng, ARITH).solve(probs, 15)
    assert eng.prompts[1] == ["47+85=?\n7+5+0=12\nA: "]  # only the unanswered one is forced
    assert [s.answer for s in r.solutions] == ["132", "5"] and r.accuracy == 1.0
    assert r.cost.generated_tokens == 15 + 13 + 4 and r.cost.prefills == 3
    assert r.cost.prompt_tokens == (9 + 7) + (len("47+85=?\n7+5+0=12\nA: ") + 1)


def test_budget_zero_answers_directly(tiny_model):
    model, _ = tiny_model
    eng = Scripted(model.config, [["131\n"]])
    r = BudgetStrategy(eng, ARITH).solve([ARITH.make(47, "+", 85)], 0)
    assert eng.prompts == [["47+85=?\nA: "]] and r.solutions[0].answer == "131" and r.accuracy == 0.0


def test_evaluate_sweep_points_and_figure(tiny_model, tmp_path):
    model, tok = tiny_model
    problems = ARITH.generate(3, seed=5)
    s = evaluate(model, tok, ARITH, problems, EvalConfig(strategy="best-of-n", ns=(4, 1, 2), max_new_tokens=8))
    assert [p["n"] for p in s["points"]] == [1, 2, 4]
    assert [p["prompt_tokens"] for p in s["points"]] == [sum(len(p.prompt) + 1 for p in problems)] * 3
    gen = [p["generated_tokens"] for p in s["points"]]
    assert gen[0] < gen[1] < gen[2] and gen[2] <= 3 * 4 * 8
    assert len(s["per_problem"]) == 3 and all(r["samples"] == 4 for r in s["per_problem"])
    top = s["points"][-1]  # functional best-of-N is coverage on the same N samples
    assert top["accuracy"] == pytest.approx(top["pass_at_k"])
    g = evaluate(model, tok, ARITH, problems, EvalConfig(strategy="greedy", ns=(1, 8), max_new_tokens=8))
    assert [p["n"] for p in g["points"]] == [1] and g["points"][0]["accuracy"] == g["points"][0]["pass_at_k"]
    png = plot(s, tmp_path / "fig.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
