"""Math-Shepherd hard/soft labels with a scripted completer whose outcomes are known by hand."""

import pytest
from test_synth_rejection import scripted_sampler

from scalinglab.errors import UserError
from scalinglab.synth.annotate import AnnotateConfig, annotate, labels
from scalinglab.tasks.arithmetic import Arithmetic
from scalinglab.verify.verdict import Verdict


class ErrTask(Arithmetic):
    def check(self, problem, completion):
        if "ERR" in completion:
            return Verdict.failed("verifier crashed")
        return super().check(problem, completion)


ROW = {"id": "r1", "prompt": "12+34=?\n", "answer": "46", "completion": "2+4+0=6\n1+3+0=4\nA: 46\n"}
BAD = {"id": "r2", "prompt": "12+34=?\n", "answer": "46", "completion": "2+4+0=6\n1+3+0=5\nA: 56\n"}


def test_labels_by_hand():
    task = ErrTask(name="addition")
    script = {
        # after step 1: prefix+completion correct for 1st and 3rd -> hard 1, soft 2/4
        "12+34=?\n2+4+0=6\n": ["1+3+0=4\nA: 46\n", "A: 45\n", "A: 46\n", "zz"],
        # after step 2 of ROW: every completion wrong -> hard 0, soft 0
        "12+34=?\n2+4+0=6\n1+3+0=4\n": ["A: 0\n"],
        # after step 2 of BAD: one verifier error (left out), one right of the 3 valid -> 1, 1/3
        "12+34=?\n2+4+0=6\n1+3+0=5\n": ["ERR", "A: 46\n", "A: 56\n", "A: 1\n"],
    }
    calls = []
    rows, s = annotate(task, [ROW, BAD], scripted_sampler(script, calls), AnnotateConfig(m=4, max_new_tokens=8))
    assert len(calls) == 1 and calls[0][1].n == 4
    # 2 non-final prefixes per row; the shared first prefix appears once per row
    assert calls[0][0] == [
        "12+34=?\n2+4+0=6\n",
        "12+34=?\n2+4+0=6\n1+3+0=4\n",
        "12+34=?\n2+4+0=6\n",
        "12+34=?\n2+4+0=6\n1+3+0=5\n",
    ]
    r1, r2 = rows
    assert r1["steps"] == ["2+4+0=6\n", "1+3+0=4\n", "A: 46\n"]
    assert (r1["hard"], r1["soft"], r1["completion_correct"]) == ([1, 0, 1], [0.5, 0.0, 1.0], True)
    assert (r2["hard"], r2["soft"], r2["completion_correct"]) == ([1, 1, 0], [0.5, 1 / 3, 0.0], False)
    assert r1["meta"] == {"m": 4, "rollouts_correct": [2, 0, None], "rollout_errors": [0, 0, 0]}
    assert r2["meta"]["rollout_errors"] == [0, 1, 0]
    assert s["rollouts"] == 16 and s["verifier_errors"] == 1 and s["steps"] == 6 and s["completions_correct"] == 1
    assert s["hard_positive_rate"] == 4 / 6
    assert s["mean_soft"] == pytest.approx((0.5 + 0 + 1 + 0.5 + 1 / 3 + 0) / 6)


def test_all_errors_give_null_labels_and_steps_from_row():
    task = ErrTask(name="addition")
    row = {"id": "r", "prompt": "1+1=?\n", "answer": "2", "solution": "ignored", "steps": ["1+1+0=2\n", "A: 2\n"]}
    rows, _ = annotate(
        task, [row], scripted_sampler({"1+1=?\n1+1+0=2\n": ["ERR"]}, []), AnnotateConfig(m=3, max_new_tokens=4)
    )
    assert rows[0]["hard"] == [None, 1] and rows[0]["soft"] == [None, 1.0]
    assert rows[0]["meta"]["rollout_errors"] == [3, 0]


def test_single_step_solution_needs_no_rollouts():
    calls = []
    rows, s = annotate(
        Arithmetic(),
        [{"prompt": "1+1=?\n", "answer": "2", "completion": "A: 2\n"}],
        scripted_sampler({}, calls),
        AnnotateConfig(m=4),
    )
    assert calls == [] and rows[0]["hard"] == [1] and s["rollouts"] == 0


def test_labels_helper_and_bad_rows():
    assert labels([0, 3, 1], [4, 4, 0]) == ([0, 1, None], [0.0, 0.75, None])
    with pytest.raises(UserError, match="'x'"):
        annotate(Arithmetic(), [{"id": "x", "prompt": "1+1=?\n"}], scripted_sampler({}, []))
