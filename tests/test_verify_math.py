"""Math verifier: a hand-checked equivalence table, extraction, hard timeouts, pool recovery."""

from __future__ import annotations

import os
import time

import pytest

from scalinglab.verify.answer import extract_answer
from scalinglab.verify.math import TIMEOUT_PREFIX, verify_batch
from scalinglab.verify.pool import WorkerPool

# (candidate, reference, equivalent?) -- each checked by hand.
TABLE = [
    # integers, decimals, fractions
    ("42", "42", True),
    ("42.0", "42", True),
    ("-7", "-7.00", True),
    ("1,000", "1000", True),
    ("0.5", "\\frac{1}{2}", True),
    ("1/2", "\\frac12", True),
    ("\\dfrac{3}{4}", "0.75", True),
    ("-3/4", "-\\frac{3}{4}", True),
    ("\\frac{-3}{4}", "-0.75", True),
    ("6/8", "3/4", True),
    ("41", "42", False),
    ("0.5", "0.25", False),
    ("1/3", "0.3", False),
    ("-2", "2", False),
    ("3/4", "4/3", False),
    ("\\$18", "18", True),
    ("10\\%", "0.1", True),
    # radicals and symbolic expressions
    ("\\sqrt{8}", "2\\sqrt{2}", True),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),
    ("sqrt(2)/2", "\\frac{\\sqrt2}{2}", True),
    ("\\sqrt{12}", "3\\sqrt{2}", False),
    ("2\\sqrt{3}", "\\sqrt{12}", True),
    ("\\sqrt{2}", "1.414", False),
    ("2x+1", "1+2x", True),
    ("x^2-1", "(x-1)(x+1)", True),
    ("x^2+1", "(x+1)^2", False),
    ("2\\pi", "\\pi*2", True),
    ("\\pi", "3.14", False),
    ("x=3", "3", True),
    ("x=4", "3", False),
    # sets: order-free
    ("\\{1,2\\}", "\\{2,1\\}", True),
    ("\\{1,2,3\\}", "\\{1,2\\}", False),
    ("\\{-1, 1\\}", "\\{1,-1\\}", True),
    ("\\{1,2\\}", "(1,2)", False),
    # tuples: ordered
    ("(1,2,3)", "(1,2,3)", True),
    ("(1, 2, 3)", "(1,2,3)", True),
    ("(3,2,1)", "(1,2,3)", False),
    ("(\\frac{1}{2}, 3)", "(0.5, 3)", True),
    # intervals: the ends matter
    ("[0,1)", "[0, 1)", True),
    ("(0,1)", "[0,1]", False),
    ("(-\\infty, 2]", "(-\\infty,2]", True),
    ("(-oo, 2]", "(-\\infty,2]", True),
    ("[2,\\infty)", "(2,\\infty)", False),
    ("(0,1)\\cup(2,3)", "(2,3)\\cup(0,1)", True),
    # answers inside full solutions
    ("so the result is \\boxed{\\frac{1}{2}}.", "0.5", True),
    ("7+5=12\nA: 12", "12", True),
    ("She has 18 apples left.", "18", True),
    ("The answer is 5.", "5", True),
    ("work...\n#### 72", "72", True),
    ("\\boxed{3} wait, actually \\boxed{4}", "4", True),
    ("no idea", "4", False),
]


def test_table_has_forty_pairs_both_ways():
    assert len(TABLE) >= 40
    assert sum(e for *_, e in TABLE) >= 15 and sum(not e for *_, e in TABLE) >= 15


def test_equivalence_table():
    verdicts = verify_batch([(c, r) for c, r, _ in TABLE], timeout_s=20)
    bad = [(c, r, e, v.reason) for (c, r, e), v in zip(TABLE, verdicts) if v.correct != e or v.error]
    assert not bad
    assert all(v.reward == (1.0 if v.correct else 0.0) for v in verdicts)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("blah \\boxed{\\frac{1}{2}} and \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("nested \\boxed{\\frac{\\sqrt{3}}{2}}.", "\\frac{\\sqrt{3}}{2}"),
        ("\\boxed 7", "7"),
        ("step\nA: -3/4\n", "-3/4"),
        ("Answer: $\\dfrac{2}{3}$.", "\\frac{2}{3}"),
        ("Final answer: 12\nA: 13", "13"),
        ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72"),
        ("So the answer is (1, 2).", "(1, 2)"),
        ("\\frac{1}{2}", "\\frac{1}{2}"),
        ("(-oo, 2]", "(-oo, 2]"),
        ("He paid 1,250 dollars then 3.5 more", "3.5"),
        ("nothing numeric here", None),
        ("", None),
    ],
)
def test_extraction(text, expected):
    assert extract_answer(text) == expected


def test_unparseable_reference_is_an_error_not_a_wrong_answer():
    (v,) = verify_batch([("5", "")], timeout_s=10)
    assert v.error and not v.correct


def test_pathological_input_times_out_hard_and_pool_recovers():
    # SymPy computes 1000000! exactly: far longer than the 1 s budget, and it runs in C
    # (no signal could interrupt it on a thread). The worker is killed and replaced.
    t0 = time.monotonic()
    v = verify_batch([("1000000!", "1000001!"), ("1/2", "0.5")], timeout_s=1.0)
    assert time.monotonic() - t0 < 6
    assert v[0].error and not v[0].correct and v[0].reason.startswith(TIMEOUT_PREFIX)
    assert v[1].correct and not v[1].error
    again = verify_batch([("\\sqrt{8}", "2\\sqrt{2}")], timeout_s=10)
    assert again[0].correct


def test_injected_slow_function_is_killed_and_replaced():
    with WorkerPool(time.sleep, workers=2) as pool:
        t0 = time.monotonic()
        out = pool.map([(0.05,), (60,), (0.05,), (60,), (0.05,)], timeout_s=0.5)
        assert time.monotonic() - t0 < 5  # not 120 s: the sleeps were cut off
        assert [o.kind for o in out] == ["ok", "timeout", "ok", "timeout", "ok"]
        assert pool.replaced == 2
        assert all(o.kind == "ok" for o in pool.map([(0.01,)] * 4, timeout_s=2))


def test_crash_and_exception_are_reported_per_call():
    with WorkerPool(os._exit, workers=1) as pool:
        out = pool.map([(3,), (4,)], timeout_s=5)
        assert [o.kind for o in out] == ["crash", "crash"]
        assert "exit code 3" in out[0].error
    with WorkerPool(int, workers=1) as pool:
        out = pool.map([("7",), ("x",)], timeout_s=5)
        assert out[0].kind == "ok" and out[0].value == 7
        assert out[1].kind == "exception" and "ValueError" in out[1].error


def test_verify_math_command_json(tmp_path):
    import json

    import typer
    from typer.testing import CliRunner

    from scalinglab.commands import common, verify_math  # noqa: F401  (registers the command)

    app = typer.Typer()
    app.add_typer(common.verify_app, name="verify")
    f = tmp_path / "in.jsonl"
    f.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "a", "candidate": "so \\boxed{\\frac{1}{2}}", "reference": "0.5"},
                {"id": "b", "candidate": "3", "reference": "4"},
                {"id": "c", "candidate": "1000000!", "reference": "1000001!"},
            ]
        )
        + "\n"
    )
    res = CliRunner().invoke(app, ["verify", "math", "--input", str(f), "--timeout", "1", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [(r["id"], r["correct"], r["error"]) for r in out["results"]] == [
        ("a", True, False),
        ("b", False, False),
        ("c", False, True),
    ]
    assert (out["n"], out["correct"], out["wrong"], out["errors"], out["timeouts"]) == (3, 1, 1, 1, 1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "candidate": "3"}\n')
    res = CliRunner().invoke(app, ["verify", "math", "--input", str(bad), "--json"])
    assert res.exit_code != 0 and "reference" in str(res.exception)
