"""Needle: the planted fact is unique, retrievable, and the context grows with difficulty."""

from scalinglab.tasks import Problem, get_task
from scalinglab.tasks.needle import Needle


def test_docstring_example_is_exact():
    p = Needle().make([("qvk", "3071"), ("bmd", "5542"), ("rtz", "0918")], 1)
    assert p.prompt + p.solution == "qvk=3071\nbmd=5542\nrtz=0918\nbmd?\nbmd=5542\nA: 5542\n"
    assert p.meta["depth"] == 0.5 and p.answer == "5542"


def test_context_length_is_the_difficulty():
    t = get_task("needle")
    for chars in (9, 128, 1000, 4000):
        p = t.generate(1, seed=0, difficulty=chars)[0]
        assert p.meta["context_chars"] == (chars // 9) * 9
        assert len(p.prompt) == p.meta["context_chars"] + 5  # plus "key?\n"


def test_generated_problems_are_unique_lookups():
    t = get_task("needle")
    probs = t.generate(20, seed=1, difficulty=300)
    assert probs == t.generate(20, seed=1, difficulty=300)
    assert probs != t.generate(20, seed=2, difficulty=300)
    depths = []
    for p in probs:
        lines = p.prompt.splitlines()
        facts, question = lines[:-1], lines[-1]
        keys = [f.split("=")[0] for f in facts]
        assert len(set(keys)) == len(keys)  # no duplicate key: exactly one right answer
        assert question == p.meta["key"] + "?"
        assert dict(f.split("=") for f in facts)[p.meta["key"]] == p.answer
        assert t.check(p, p.solution).correct
        wrong = f"{(int(p.answer) + 1) % 10000:04d}"
        assert not t.check(p, f"A: {wrong}").correct
        assert not t.check(p, "no idea").correct
        assert Problem.from_json(p.to_json()) == p
        depths.append(p.meta["depth"])
    assert min(depths) < 0.3 and max(depths) > 0.7  # needles land all over the context
