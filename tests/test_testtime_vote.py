"""Majority and weighted vote, and best-of-N selection, on hand-built samples."""

import math

import pytest

from scalinglab.tasks import get_task
from scalinglab.testtime.base import Attempt, Sample
from scalinglab.testtime.best_of_n import aggregate, best_index, score_attempts
from scalinglab.testtime.sampling import select
from scalinglab.testtime.vote import group_answers, majority_vote, weighted_vote

ARITH = get_task("arithmetic")
EQ = ARITH.equivalent


def test_groups_use_task_equivalence_not_strings():
    assert group_answers(["12", "012", None, "13", "+12"], EQ) == [[0, 1, 4], [3]]


def test_majority_tie_goes_to_first_seen_and_is_reported():
    v = majority_vote(["13", "12", "012", None, "13", None], EQ)
    assert (v.answer, v.index, v.weight, v.tied, v.groups) == ("13", 0, 2.0, ("12",), 2)


def test_majority_ignores_unparseable_answers():
    v = majority_vote([None, None, "7", None], EQ)
    assert (v.answer, v.index, v.weight) == ("7", 2, 1.0)
    none = majority_vote([None, None], EQ)
    assert none.answer is None and none.index is None and none.groups == 0


def test_weighted_vote_can_overturn_the_count():
    answers = ["5", "5", "6"]
    assert majority_vote(answers, EQ).answer == "5"
    v = weighted_vote(answers, EQ, [0.1, 0.2, 0.9])
    assert v.answer == "6" and v.weight == pytest.approx(0.9)


def _attempt(texts):
    p = ARITH.make(47, "+", 85)  # answer 132
    samples = [
        Sample(t, ARITH.extract_answer(t), ARITH.check(p, t).correct, tokens=len(t) + 1, flops=10.0 * (len(t) + 1))
        for t in texts
    ]
    return Attempt(p, len(p.prompt) + 1, 100.0, samples)


class StubRM:
    """The reward-model API (score_outcomes / score_steps), scoring by hand-set rules."""

    def __init__(self, outcome, step):
        self.outcome, self.step = outcome, step

    def score_outcomes(self, prompts, completions):
        return [self.outcome(c) for c in completions]

    def score_steps(self, prompt, steps):
        return [self.step(s) for s in steps]


def test_best_of_n_functional_picks_the_verified_answer():
    a = _attempt(["A: 131\n", "A: 133\n", "x\nA: 132\n", "A: 130\n"])
    score_attempts([a], ARITH, "functional")
    r = select([a], 4, "best-of-n", ARITH)
    assert r.solutions[0].answer == "132" and r.solutions[0].correct == 1.0
    # with only the first two samples nothing is right: it still answers, and is wrong
    r2 = select([a], 2, "best-of-n", ARITH)
    assert r2.solutions[0].answer == "131" and r2.solutions[0].correct == 0.0
    # majority: four distinct answers tie at one vote; the first wins (and is wrong)
    assert select([a], 4, "majority", ARITH).solutions[0].answer == "131"


def test_best_of_n_with_orm_and_prm_stubs():
    texts = ["7+5+0=12\nA: 131\n", "7+5+0=12\n4+8+1=13\nA: 132\n", "bad\nA: 9\n"]
    a = _attempt(texts)
    score_attempts([a], ARITH, "orm", StubRM(lambda c: 0.9 if "132" in c else 0.2, None))
    assert [s.score for s in a.samples] == [0.2, 0.9, 0.2]
    assert select([a], 3, "best-of-n", ARITH).solutions[0].answer == "132"
    step = {"7+5+0=12\n": 0.9, "4+8+1=13\n": 0.8, "A: 131\n": 0.3, "A: 132\n": 0.7, "bad\n": 0.1, "A: 9\n": 1.0}
    for how, want in [("min", [0.3, 0.7, 0.1]), ("prod", [0.27, 0.9 * 0.8 * 0.7, 0.1]), ("last", [0.3, 0.7, 1.0])]:
        score_attempts([a], ARITH, "prm", StubRM(None, step.get), how)
        assert [s.score for s in a.samples] == pytest.approx(want), how
    assert select([a], 3, "best-of-n", ARITH).solutions[0].answer == "9"  # `last` trusts the final step only


def test_weighted_selector_and_sample_selector():
    a = _attempt(["A: 131\n", "A: 131\n", "A: 132\n", "nothing"])
    score_attempts([a], ARITH, "orm", StubRM(lambda c: 0.95 if "132" in c else 0.3, None))
    assert select([a], 4, "weighted", ARITH).solutions[0].answer == "132"  # 0.95 > 0.3 + 0.3
    assert select([a], 4, "majority", ARITH).solutions[0].answer == "131"
    s = select([a], 4, "sample", ARITH).solutions[0]
    assert s.correct == pytest.approx(0.25) and s.correct_candidates == 1 and s.candidates == 4


def test_aggregate_and_best_index():
    assert aggregate([], "min") == -math.inf
    assert best_index([0.5, 0.9, 0.9]) == 1  # earliest on ties
    assert best_index([]) is None


def test_subset_cost_is_prompt_once_plus_first_n_decodes():
    a = _attempt(["A: 1\n", "A: 22\n", "A: 333\n"])
    c = select([a], 2, "majority", ARITH).cost
    assert (c.prompt_tokens, c.generated_tokens, c.prefills) == (len("47+85=?\n") + 1, 6 + 7, 1)
    assert c.flops == pytest.approx(100.0 + 60.0 + 70.0)


def test_majority_with_no_parseable_answer_submits_nothing():
    a = _attempt(["no answer", "A: x\n", "7+5"])
    s = select([a], 3, "majority", ARITH).solutions[0]
    assert s.answer is None and s.correct == 0.0 and s.candidates == 3


def test_paired_bootstrap_by_hand():
    from scalinglab.testtime.stats import paired_bootstrap

    assert paired_bootstrap([1, 0, 1, 1], [1, 0, 1, 1]) == (0.0, 0.0)  # identical pairs: no difference at all
    assert paired_bootstrap([1, 1, 1], [0, 0, 0], resamples=200) == (1.0, 1.0)  # every pair differs by +1
    lo, hi = paired_bootstrap([1] * 30 + [0] * 70, [0] * 100, resamples=2000)
    assert lo < 0.3 < hi and hi - lo < 0.25  # mean difference 0.3, binomial spread ~ ±0.09
    with pytest.raises(ValueError, match="equal"):
        paired_bootstrap([1, 0], [1])


def test_majority_correct_recounts_the_vote():
    from scalinglab.tasks import get_task
    from scalinglab.testtime.stats import majority_correct

    task = get_task("arithmetic")
    problems = task.generate(2, seed=0)
    right = [p.answer for p in problems]
    summary = {"per_problem": [{"answers": [right[0], right[0], "7", None]}, {"answers": ["-1", "-1", right[1], None]}]}
    assert majority_correct(summary, 4, task, problems) == [1, 0]
    assert majority_correct(summary, 1, task, problems) == [1, 0]
