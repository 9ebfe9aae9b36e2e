"""Countdown: safe evaluation, number accounting, the solver, and seeded generation."""

from fractions import Fraction

import pytest

from scalinglab.tasks import Problem, get_task
from scalinglab.tasks.countdown import Countdown, evaluate, solve


def _problem(numbers, target, use_all=False):
    return Problem("p", "countdown", "", "", meta={"numbers": numbers, "target": target, "use_all": use_all})


def test_docstring_example_is_exact():
    p = Countdown().make([25, 3, 7, 50], 182)
    assert p.prompt + p.solution == "25 3 7 50>182\n50*3=150\n25+7=32\n150+32=182\nA: 50*3+25+7\n"
    assert p.answer == "50*3+25+7"


def test_evaluate_is_exact_and_counts_literals():
    assert evaluate("8/(3-8/3)") == (Fraction(24), [8, 3, 8, 3])
    assert evaluate("(1+2)*3") == (Fraction(9), [1, 2, 3])
    assert evaluate("7/2") == (Fraction(7, 2), [7, 2])


@pytest.mark.parametrize(
    "expr", ["__import__('os')", "2**10", "abs(3)", "x+1", "-3+5", "1.5*2", "3//2", "'a'*3", "1;2", "(1).real"]
)
def test_evaluate_rejects_anything_but_arithmetic(expr):
    with pytest.raises(ValueError):
        evaluate(expr)


def test_check_rules():
    t = Countdown()
    p = _problem([25, 3, 7, 50], 182)
    assert t.check(p, "A: 50*3+25+7").correct
    assert t.check(p, "A: (25+7)+3*50=182").correct  # `expr=target` is judged on expr
    assert t.check(p, "A: 50*3+25+7+0").reason.startswith("uses numbers not available")
    assert not t.check(p, "A: 50*3+25+7+7").correct  # 7 given once, used twice
    assert not t.check(p, "A: 50*3+25+6").correct  # 6 not given
    assert not t.check(p, "A: 50*3+25").correct  # wrong value (175)
    assert not t.check(p, "A: 50/(3-3)").correct  # 3 twice, and divides by zero
    assert not t.check(p, "no answer").correct
    assert not t.check(p, "A: __import__('os').system('true')").correct
    assert t.check(_problem([3, 3, 8, 8], 24), "A: 8/(3-8/3)").correct  # rational intermediates
    q = _problem([2, 3, 4], 10, use_all=True)
    assert t.check(q, "A: 2*3+4").correct


def test_use_all_demands_every_number():
    t = Countdown(use_all=True)
    q = _problem([2, 3, 4, 1], 10, use_all=True)
    assert t.check(q, "A: 2*3+4*1").correct
    assert t.check(q, "A: 2*3+4").reason.startswith("must use every number exactly once")


def test_solver_finds_fewest_steps():
    assert solve((5, 7), 5) == 5  # already given: zero steps (at-most-once rule)
    tree = solve((1, 2, 3, 10), 13)
    assert tree is not None and tree[0] == 13 and tree[1] == "+"  # one step: 10+3
    assert solve((3, 3, 8, 8), 24, True)[0] == 24  # needs rationals: 8/(3-8/3)
    assert solve((1, 1), 7) is None


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_generated_solutions_check_and_perturbations_fail(k):
    t = get_task("countdown")
    probs = t.generate(12, seed=3, difficulty=k)
    assert probs == t.generate(12, seed=3, difficulty=k)  # deterministic
    assert probs != t.generate(12, seed=4, difficulty=k)
    for p in probs:
        assert len(p.meta["numbers"]) == k and p.prompt.endswith(f">{p.meta['target']}\n")
        assert t.check(p, p.solution).correct, p.solution
        assert t.check(p, f"A: {p.answer}+1").correct is False
        assert t.check(p, f"A: ({p.answer})*2").correct is False
        assert "".join(t.split_steps(p.solution)) == p.solution
        assert Problem.from_json(p.to_json()) == p


def test_countdown_all_solutions_use_every_number():
    t = get_task("countdown-all")
    for p in t.generate(8, seed=0, difficulty=4):
        assert t.check(p, p.solution).correct
        assert sorted(evaluate(p.answer)[1]) == sorted(p.meta["numbers"])


def test_equivalent_is_same_value_from_same_numbers():
    t = Countdown()
    assert t.equivalent("3*4+2", "2+4*3")
    assert not t.equivalent("3*4+2", "7*2")
