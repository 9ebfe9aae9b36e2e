"""GSM8K as a task: file loading, splits and ids, answer extraction, and every reference judged."""

import json
import time
from pathlib import Path

import pytest

from scalinglab.errors import UserError
from scalinglab.tasks import get_task, load_problems
from scalinglab.tasks.gsm8k import FEW_SHOT, GSM8K, INSTRUCTION

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k"
needs_data = pytest.mark.skipif(not (DATA / "test.jsonl").exists(), reason=f"GSM8K files not found in {DATA}")

ROWS = [
    {
        "question": "Ann has 3 bags of 4 apples. How many apples?",
        "answer": "3 bags of 4 is 3*4=<<3*4=12>>12 apples.\n#### 12",
    },
    {
        "question": "A car costs $1,200 more than a bike of $800. Cost of both?",
        "answer": "The car is 1200+800=<<1200+800=2000>>2000.\nBoth: 2000+800=<<2000+800=2800>>2800.\n#### 2,800",
    },
]


def _file(tmp_path, name, rows=ROWS):
    f = tmp_path / name
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def test_problem_format_ids_and_split(tmp_path):
    t = GSM8K(path=str(_file(tmp_path, "mytest.jsonl")))
    a, b = t.load()
    assert a.id == "gsm8k-test-1" and b.id == "gsm8k-test-2"
    assert a.prompt == f"Question: Ann has 3 bags of 4 apples. How many apples?\n{INSTRUCTION}\n"
    assert a.solution == "3 bags of 4 is 3*4=12 apples.\n#### 12\n"  # calculator annotations removed
    assert b.answer == "2800" and b.meta == {"split": "test", "line": 2, "difficulty": 2}
    assert [p.meta["split"] for p in GSM8K(path=str(_file(tmp_path, "train.jsonl"))).load()] == ["train", "train"]
    assert GSM8K(path=str(_file(tmp_path, "x.jsonl")), split="train").load()[0].id == "gsm8k-train-1"
    assert t.generate(2, seed=3) == t.generate(2, seed=3)
    assert [p.id for p in t.generate(1, seed=0, difficulty=2)] == ["gsm8k-test-2"]
    with pytest.raises(UserError, match="asked for 3"):
        t.generate(3, seed=0)
    # the project's JSONL round trip reads back the same problems
    rt = _file(tmp_path, "rt.jsonl", [p.to_json() for p in t.load()])
    assert GSM8K(path=str(rt)).load() == t.load()
    # `eval --task gsm8k --problems FILE` goes through the task's own reader
    assert load_problems(_file(tmp_path, "test.jsonl"), default_task="gsm8k") == t.load()
    assert FEW_SHOT.count("Question: ") == 3 and FEW_SHOT.count("#### ") == 3 + 3  # 3 instructions + 3 answers
    assert get_task("gsm8k").few_shot == FEW_SHOT


def test_default_folder_env_and_missing(tmp_path, monkeypatch):
    _file(tmp_path, "test.jsonl")
    monkeypatch.setenv("SCALINGLAB_GSM8K_DIR", str(tmp_path))
    assert len(get_task("gsm8k").generate(2, seed=0)) == 2
    with pytest.raises(UserError, match="no train.jsonl"):
        get_task("gsm8k", {"split": "train"}).generate(1, seed=0)
    monkeypatch.delenv("SCALINGLAB_GSM8K_DIR")
    monkeypatch.chdir(tmp_path)  # no ../shared/data/gsm8k from here
    with pytest.raises(UserError, match="--problems"):
        get_task("gsm8k").generate(1, seed=0)
    with pytest.raises(UserError, match="split='dev'"):
        get_task("gsm8k", {"split": "dev"})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "no final line"}\n')
    with pytest.raises(UserError, match="line 1.*####"):
        GSM8K(path=str(bad)).load()


@pytest.mark.parametrize(
    "completion, want",
    [
        ("so she pays $1,000", "1000"),
        ("18.00", "18.00"),
        ("The answer is 18.", "18"),
        ("thus \\boxed{18}", "18"),
        ("#### 18", "18"),
        ("9*2 = 18\n#### 18 dollars", "18"),
        ("Answer: $18 per day", "18"),
        ("A: -5", "-5"),
        ("#### Step 1: total\n3+4 = 7\nThe answer is 7", "7"),  # a markdown heading is not an answer line
        ("The answer is $\\frac{3}{4}$", "\\frac{3}{4}"),
        ("I do not know", None),
    ],
)
def test_extract_answer(completion, want):
    assert GSM8K().extract_answer(completion) == want


def test_check_forms(tmp_path):
    t = GSM8K(path=str(_file(tmp_path, "t.jsonl")))
    _, b = t.load()
    outs = ["#### 2,800", "The answer is $2800.00.", "\\boxed{2800}", "#### 2801", "no idea", "2800"]
    assert [v.correct for v in t.check_batch([b] * len(outs), outs)] == [True, True, True, False, False, True]
    assert t.equivalent("$2,800", "2800.0") and not t.equivalent("2800", "280")


@needs_data
def test_every_test_reference_is_right_and_a_perturbed_one_wrong():
    t = GSM8K(path=str(DATA / "test.jsonl"))
    probs = t.load()
    assert len(probs) == 1319 and {p.meta["split"] for p in probs} == {"test"}
    assert probs[0].id == "gsm8k-test-1" and probs[-1].id == "gsm8k-test-1319"
    t0 = time.perf_counter()
    right = t.check_batch(probs, [p.solution for p in probs])
    perturbed = [p.solution.replace(f"#### {p.answer}", f"#### {int(p.answer) + 1}") for p in probs]
    wrong = t.check_batch(probs, perturbed)
    seconds = time.perf_counter() - t0
    assert sum(v.correct for v in right) == 1319, [(p.id, v.reason) for p, v in zip(probs, right) if not v.correct][:5]
    assert not any(v.correct or v.error for v in wrong)
    assert seconds < 60


@needs_data
def test_train_folder_split():
    probs = GSM8K(path=str(DATA / "train.jsonl")).generate(5, seed=0)
    assert all(p.id.startswith("gsm8k-train-") and p.meta["split"] == "train" for p in probs)


@needs_data
def test_load_problems_reads_a_file_with_the_tasks_settings():
    """`eval --task gsm8k --set split=... --problems FILE`: the file is read by the task as configured."""
    from scalinglab.tasks import get_task, load_problems

    plain = load_problems(DATA / "test.jsonl", "gsm8k")
    declared = load_problems(DATA / "test.jsonl", "gsm8k", task=get_task("gsm8k", {"split": "train"}))
    assert plain[0].meta["split"] == "test" and declared[0].meta["split"] == "train"
    assert len(plain) == len(declared) == 1319
