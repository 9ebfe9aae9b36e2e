"""GSM8K-style user files as a task, judged by the math verifier."""

import json

import pytest

from scalinglab.errors import UserError
from scalinglab.tasks import get_task
from scalinglab.tasks.extra import math_file
from scalinglab.tasks.math_file import MathFile


def _write(tmp_path, rows):
    f = tmp_path / "gsm.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def test_gsm8k_file_round_trip(tmp_path):
    f = _write(
        tmp_path,
        [
            {
                "question_id": 1,
                "prompt": "Natalia sold clips to 48 friends in April and half as many in May. Total?\n",
                "answer": "In May she sold 48/2 = 24.\nIn total 48+24 = 72.\n#### 72",
            },
            {"id": "h", "prompt": "Half of 1?\n", "answer": "\\frac{1}{2}", "meta": {"level": 2}},
            {"id": "k", "prompt": "Thousand?\n", "answer": "1,000"},
        ],
    )
    t = math_file(f)
    probs = t.generate(3, seed=0)
    assert probs == t.generate(3, seed=0)
    by_id = {p.id: p for p in probs}
    gsm = by_id["0"]
    assert gsm.answer == "72" and gsm.solution == "In May she sold 48/2 = 24.\nIn total 48+24 = 72.\nA: 72\n"
    verdicts = t.check_batch(
        [gsm, by_id["h"], by_id["h"], by_id["k"], gsm, gsm],
        [gsm.solution, "A: 0.5", "so \\boxed{\\dfrac{2}{4}}", "1000", "A: 73", "I give up"],
    )
    assert [v.correct for v in verdicts] == [True, True, True, True, False, False]
    assert not any(v.error for v in verdicts)
    assert [p.id for p in t.generate(1, seed=0, difficulty=2)] == ["h"]
    with pytest.raises(UserError, match="asked for 4"):
        t.generate(4, seed=0)


def test_math_task_without_file_judges_but_cannot_generate():
    t = get_task("math")
    assert isinstance(t, MathFile)
    with pytest.raises(UserError, match="JSONL"):
        t.generate(1, seed=0)
    assert t.extract_answer("so 2+2 = \\boxed{4}") == "4"
    assert t.equivalent("1/2", "0.5") and not t.equivalent("1/2", "0.6")
