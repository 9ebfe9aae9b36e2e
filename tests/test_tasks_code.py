"""Code task: generated programs meet their own hidden cases; the sandbox judges candidates."""

import pytest

from scalinglab.tasks import Problem, get_task
from scalinglab.tasks.code import Code, extract_program


def _run_trusted(program: str, cases: list[dict]) -> bool:
    # Our own generated reference programs only: trusted, so plain exec is fine here.
    ns: dict = {}
    exec(program, ns)
    return all(ns["f"](*c["input"]) == c["output"] for c in cases)


def test_docstring_example_is_exact():
    p = Code().make([("add", 3), ("mul", 2), ("mod", 7)])
    assert (
        p.prompt + p.solution == "# add 3, times 2, mod 7\ndef f(x):\n    x=x+3\n    x=x*2\n    x=x%7\n    return x\n"
    )
    # f(-3) = ((-3+3)*2)%7 = 0; f(4) = (7*2)%7 = 0; f(1) = 8%7 = 1
    cases = {c["input"][0]: c["output"] for c in p.meta["cases"]}
    assert (cases[-3], cases[4], cases[1]) == (0, 0, 1)


@pytest.mark.parametrize("k", [1, 3])
def test_generated_references_pass_their_cases(k):
    t = get_task("code")
    probs = t.generate(15, seed=0, difficulty=k)
    assert probs == t.generate(15, seed=0, difficulty=k)
    assert probs != t.generate(15, seed=1, difficulty=k)
    for p in probs:
        assert len(p.meta["ops"]) == k and len(p.meta["cases"]) == 8
        assert 0 in [c["input"][0] for c in p.meta["cases"]]
        assert _run_trusted(t.extract_answer(p.solution), p.meta["cases"])
        assert Problem.from_json(p.to_json()) == p


def test_extract_program():
    assert extract_program("def f(x):\n    return x\nThat is all.") == "def f(x):\n    return x\n"
    assert extract_program("Sure:\n```python\ndef g(a):\n    return a\n```\nDone") == "def g(a):\n    return a\n"
    assert (
        extract_program("import math\ndef f(x):\n\n    return math.floor(x)\n")
        == "import math\ndef f(x):\n\n    return math.floor(x)\n"
    )
    assert extract_program("no code here") is None


def test_problem_without_cases_is_a_verifier_error():
    v = Code().check(Problem("p", "code", "# ?\n", ""), "def f(x):\n    return x\n")
    assert v.error and not v.correct


def test_sandbox_judges_solutions_and_perturbations():
    pytest.importorskip("scalinglab.verify.code")
    t = get_task("code")
    for p in t.generate(3, seed=2, difficulty=2):
        assert t.check(p, p.solution).correct
        off_by_one = p.solution.replace("return x", "return x+1")
        v = t.check(p, off_by_one)
        assert not v.correct and not v.error
        assert not t.check(p, "I do not know").correct
