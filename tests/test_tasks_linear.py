"""Linear equations: hand-solved examples, exact rationals, seeded generation."""

from fractions import Fraction

import pytest

from scalinglab.tasks import Problem, get_task
from scalinglab.tasks.linear import Linear, parse_rational


def test_docstring_example_is_exact():
    p = Linear().make(3, 5, -1, 2)
    # 3x+5 = -x+2  =>  4x = -3  =>  x = -3/4
    assert p.prompt + p.solution == "3x+5=-1x+2\n3x+1x=2-5\n4x=-3\nx=-3/4\nA: -3/4\n"
    assert p.answer == "-3/4"


@pytest.mark.parametrize(
    "a,b,c,d,x",
    [
        (2, 0, 1, 5, "5"),  # 2x = x+5
        (1, 1, -1, 1, "0"),  # x+1 = -x+1
        (-6, 4, 2, -4, "1"),  # -6x+4 = 2x-4 => -8x = -8
        (5, -7, 3, 0, "7/2"),
    ],
)
def test_hand_solved(a, b, c, d, x):
    p = Linear().make(a, b, c, d)
    assert p.answer == x
    assert Fraction(a) * Fraction(x) + b == Fraction(c) * Fraction(x) + d


def test_answers_compare_as_rationals():
    t = Linear()
    p = Linear().make(3, 5, -1, 2)
    for ok in ("A: -3/4", "A: -0.75", "A: 6/-8", "A: x=-3/4", "A:  -3/4 "):
        assert t.check(p, ok).correct, ok
    for bad in ("A: 3/4", "A: -4/3", "A: -0.7", "A: -3/0", "A: minus three quarters", "x=-3/4"):
        assert not t.check(p, bad).correct, bad
    assert parse_rational("-3/0") is None
    assert t.equivalent("1/2", "0.5") and not t.equivalent("1/2", "2")


@pytest.mark.parametrize("digits", [1, 2])
def test_generated_solutions_check_and_perturbations_fail(digits):
    t = get_task("linear")
    probs = t.generate(30, seed=7, difficulty=digits)
    assert probs == t.generate(30, seed=7, difficulty=digits)
    assert probs != t.generate(30, seed=8, difficulty=digits)
    for p in probs:
        m = p.meta
        x = Fraction(p.answer)
        assert m["a"] * x + m["b"] == m["c"] * x + m["d"]
        assert max(abs(m[k]) for k in "abcd") < 10**digits
        assert t.check(p, p.solution).correct
        assert not t.check(p, f"A: {x + 1}").correct
        assert not t.check(p, f"A: {x - 1}").correct
        assert x == 0 or not t.check(p, f"A: {-x}").correct
        assert Problem.from_json(p.to_json()) == p
