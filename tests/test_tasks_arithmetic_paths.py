"""arithmetic-paths: every route is a correct running sum, routes really vary, seeded, checkable."""

import subprocess
import sys
from collections import Counter

import pytest

from scalinglab.tasks import get_task
from scalinglab.tasks.arithmetic_paths import ArithmeticPaths, route_steps


def test_docstring_example_is_exact():
    p = ArithmeticPaths(terms=3).make((47, 85, 23), route=(1, 2, 0))
    assert p.prompt + p.solution == "47+85+23=?\n85+23=108\n108+47=155\nA: 155\n"
    assert p.answer == "155" and p.steps == ("85+23=108\n", "108+47=155\n", "A: 155\n")


def test_every_route_of_a_problem_reaches_the_same_checked_answer():
    t = ArithmeticPaths(terms=3)
    sols = {r: t.make((47, 85, 23), route=r) for r in t.routes()}
    assert len(sols) == 6 and len({p.solution for p in sols.values()}) == 6  # 3! different texts
    # the first lines compute the three different pair sums
    assert {p.steps[0].split("=")[1] for p in sols.values()} == {"132\n", "70\n", "108\n"}
    for p in sols.values():
        assert p.answer == "155" and t.check(p, p.solution).correct
    with pytest.raises(ValueError):
        t.make((1, 2, 3), route=(0, 0, 1))


def test_route_steps_hand_values():
    assert route_steps((3, 9, 8, 5), (2, 0, 3, 1)) == ["8+3=11", "11+5=16", "16+9=25"]
    assert route_steps((12, 7), (1, 0)) == ["7+12=19"]


@pytest.mark.parametrize("terms,digits", [(3, 2), (4, 1), (5, 1)])
def test_generated_problems_are_correct_seeded_and_take_several_routes(terms, digits):
    t = ArithmeticPaths(terms=terms)
    probs = t.generate(300, seed=3, difficulty=digits)
    assert probs == t.generate(300, seed=3, difficulty=digits)
    assert probs != t.generate(300, seed=4, difficulty=digits)
    for p in probs:
        nums = p.meta["terms"]
        assert len(nums) == terms and all(len(str(x)) == digits for x in nums if x)
        assert int(p.answer) == sum(nums)
        assert t.check(p, p.solution).correct
        # each line adds one more term to the previous total, correctly
        total = None
        for line in p.steps[:-1]:
            lhs, rhs = line.strip().split("=")
            x, y = map(int, lhs.split("+"))
            assert x + y == int(rhs) and (total is None or x == total)
            total = int(rhs)
        assert total == sum(nums)
    firsts = Counter(t.first_pair(p, p.solution) for p in probs)
    assert None not in firsts
    # all ordered first pairs occur, none dominates (uniform over terms·(terms−1) pairs)
    assert len(firsts) == terms * (terms - 1)
    assert max(firsts.values()) < 3 * 300 / (terms * (terms - 1))


def test_answer_extraction_and_equivalence():
    t = get_task("arithmetic-paths")
    p = t.make((47, 85, 23))
    assert t.check(p, "47+85=132\n132+23=155\nA: 155\n").correct
    assert t.check(p, "A: 0155").correct  # compared as integers
    assert not t.check(p, "47+85=132\n132+23=156\nA: 156\n").correct
    assert not t.check(p, "47+85=132\n132+23=155\n").correct  # no answer line
    assert t.equivalent("155", "0155") and not t.equivalent("155", "156")
    assert t.first_pair(p, "85+47=132\n") == (1, 0) and t.first_pair(p, "99+47=1\n") is None


def test_module_is_torch_free():
    code = "import sys, scalinglab.tasks.arithmetic_paths; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_defaults_and_the_one_route_control_pose_the_same_problems():
    t, ctl = get_task("arithmetic-paths"), ArithmeticPaths(one_route=True)
    assert (t.terms, t.default_difficulty) == (4, 1)
    p = t.make((7, 1, 6, 2), route=(0, 2, 1, 3))
    assert p.prompt + p.solution == "7+1+6+2=?\n7+6=13\n13+1=14\n14+2=16\nA: 16\n"  # the docstring example
    multi, single = t.generate(100, seed=9), ctl.generate(100, seed=9)
    assert [(a.prompt, a.answer) for a in multi] == [(b.prompt, b.answer) for b in single]
    assert {tuple(b.meta["route"]) for b in single} == {(0, 1, 2, 3)}
    assert len({tuple(a.meta["route"]) for a in multi}) > 20  # most of the 24 routes in 100 draws
