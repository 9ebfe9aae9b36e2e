"""reasoning-gym datasets as `rg:<name>` tasks: prompts, settings, difficulty, and their own scorers
run in worker processes (a raise or a hang is a verifier error)."""

import time

import pytest

from scalinglab.errors import UserError
from scalinglab.tasks import get_task, rg_names
from scalinglab.tasks.reasoning_gym import INSTRUCTION, extract

pytest.importorskip("reasoning_gym", reason="the reasoning-gym package is not installed")


def hang(name, config, answer, entry):  # a scorer that never returns (imported by the pool's worker)
    while True:
        pass


def test_prompt_ids_and_determinism():
    t = get_task("rg:basic_arithmetic")
    ps = t.generate(3, seed=1)
    assert t.name == "rg:basic_arithmetic" and [p.id for p in ps] == [f"rg:basic_arithmetic-1-{i}" for i in range(3)]
    assert ps[0].prompt == f"Question: Calculate 5 - 3 - 6.\n{INSTRUCTION}\n" and ps[0].solution == "Answer: -4\n"
    assert ps[0].answer == "-4" and ps[0].meta["metadata"]["expression"] == "5 - 3 - 6"
    assert t.generate(3, seed=1) == ps and t.generate(3, seed=2) != ps
    assert t.generate(0, seed=1) == []
    shots = t.few_shot
    assert shots.count("Question: ") == 3 and shots.count("\nAnswer: ") == 3
    assert not any(p.prompt in shots for p in ps)


@pytest.mark.parametrize(
    "completion, want",
    [
        ("think... <answer> 7 </answer>", "7"),
        ("<answer>1</answer> then <answer>2</answer>", "2"),
        ("so\nAnswer: 12\n", "12"),
        ("**Final answer:** 3 × 5\n", "3 × 5"),
        ("answer: 1 2\n3 4\n\nnext", "1 2\n3 4"),
        ("Answer:\n1 0\n0 1", "1 0\n0 1"),
        ("no final line", None),
        ("Answer:   ", None),
        ("5 - 3 = 2\n\nThe answer is 2.", "2"),
        ("Answer: Ann is a knave, and Bo is a knight.", "Ann is a knave, and Bo is a knight."),
        ("<answer>2.</answer>", "2."),
    ],
)
def test_extract(completion, want):
    assert extract(completion) == want


def test_settings_are_validated_and_typed():
    t = get_task("rg:basic_arithmetic", {"min_terms": "2", "max_terms": "2", "operators": "+,-"})
    for p in t.generate(5, seed=0):
        assert p.meta["metadata"]["num_terms"] == 2 and not any(op in p.prompt.split("\n")[0] for op in "*/")
    with pytest.raises(UserError, match="unknown setting 'foo' .*allowed: .*max_terms"):
        get_task("rg:basic_arithmetic", {"foo": "1"})
    with pytest.raises(UserError, match="min_terms='x'"):
        get_task("rg:basic_arithmetic", {"min_terms": "x"})
    with pytest.raises(UserError, match="max_terms must be >= min_terms"):
        get_task("rg:basic_arithmetic", {"min_terms": "9"})
    with pytest.raises(UserError, match="come from generate"):
        get_task("rg:basic_arithmetic", {"seed": "3"})
    with pytest.raises(UserError, match="scalinglab tasks --rg"):
        get_task("rg:no_such_task")


def test_difficulty_is_the_curriculum_level():
    t = get_task("rg:basic_arithmetic")
    easy = t.generate(20, seed=0, difficulty=1)
    assert {p.meta["metadata"]["num_terms"] for p in easy} == {2} and all(p.meta["difficulty"] == 1 for p in easy)
    assert max(p.meta["metadata"]["num_terms"] for p in t.generate(20, seed=0, difficulty=5)) > 2
    pinned = get_task("rg:basic_arithmetic", {"min_terms": "4", "max_terms": "4"}).generate(5, seed=0, difficulty=1)
    assert {p.meta["metadata"]["num_terms"] for p in pinned} == {4}  # explicit settings win
    with pytest.raises(UserError, match="no reasoning-gym curriculum"):
        get_task("rg:gsm_symbolic").generate(1, seed=0, difficulty=1)


def test_scorer_verdicts_partial_credit_and_errors():
    t = get_task("rg:prime_factorization")
    p = t.generate(1, seed=1)[0]
    right, raised, nothing, tags = t.check_batch(
        [p] * 4, [p.solution, "Answer: abc", "I am not sure", f"<answer>{p.answer}</answer>"]
    )
    assert right.correct and right.reward == 1.0 and tags.correct
    assert (
        raised.error and not raised.correct and "ValueError" in raised.reason
    )  # the scorer raised: not a wrong answer
    assert not nothing.correct and not nothing.error
    q = get_task("rg:basic_arithmetic").generate(1, seed=1)[0]
    v = get_task("rg:basic_arithmetic").check(q, "Answer: -40")  # reasoning-gym's default partial credit
    assert not v.correct and 0 < v.reward < 1 and not v.error


def test_a_hanging_scorer_times_out_as_a_verifier_error():
    from scalinglab.verify.pool import WorkerPool

    t = get_task("rg:basic_arithmetic")
    p = t.generate(1, seed=1)[0]
    with WorkerPool(f"{__name__}:hang", workers=1) as pool:
        t0 = time.perf_counter()
        v = type(t)(dataset=t.dataset, timeout_s=0.5).check_batch([p], [p.solution], pool=pool)[0]
    assert v.error and v.reason.startswith("timeout") and time.perf_counter() - t0 < 10


def _references_score_one(names):
    problems, tasks = [], {}
    for name in names:
        if name == "composite":  # a mixture that needs a list of datasets as a setting
            continue
        tasks[name] = get_task(f"rg:{name}")
        problems += [p for p in tasks[name].generate(2, seed=5) if p.solution is not None]
    verdicts = tasks["basic_arithmetic"].check_batch(problems, [p.solution for p in problems])
    return problems, [(p.id, v.reason) for p, v in zip(problems, verdicts) if not v.correct]


def test_some_datasets_score_their_references():
    # futoshiki: a multi-line answer with whitespace-only lines; countdown: an expression the scorer checks
    names = ["basic_arithmetic", "futoshiki", "countdown", "gsm_symbolic", "knights_knaves", "graph_color"]
    problems, bad = _references_score_one(names)
    assert len(problems) >= 10 and bad == []


@pytest.mark.slow
def test_every_dataset_generates_and_scores_its_reference():
    names = rg_names()
    assert len(names) >= 100 and "basic_arithmetic" in names
    problems, bad = _references_score_one(names)  # ~10 s on 2 loaded cores
    assert len(problems) > 180 and bad == []


def test_generator_prints_go_to_stderr(capsys):
    get_task("rg:bf").generate(2, seed=5)  # reasoning-gym's bf generator prints progress dots
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err.strip(".\n") == ""


def test_task_spec_carries_settings_in_brackets():
    """`name[k=v,...]` is what a config's `task` field holds: the same problems as get_task(name, settings)."""
    from scalinglab.tasks import get_task, split_spec

    assert split_spec("rg:basic_arithmetic[min_terms=2, max_digits=1]") == (
        "rg:basic_arithmetic",
        {"min_terms": "2", "max_digits": "1"},
    )
    assert split_spec("arithmetic") == ("arithmetic", {})
    a = get_task("rg:basic_arithmetic[min_terms=2,max_terms=2,max_digits=1,min_digits=1]").generate(5, seed=3)
    b = get_task("rg:basic_arithmetic", {"min_terms": 2, "max_terms": 2, "max_digits": 1, "min_digits": 1}).generate(
        5, seed=3
    )
    assert [p.prompt for p in a] == [p.prompt for p in b]
    import re

    numbers = [re.findall(r"\d+", p.prompt.split("Calculate ")[1].split("\n")[0]) for p in a]
    assert all(len(ns) == 2 and all(len(n) == 1 for n in ns) for ns in numbers), numbers  # two one-digit terms
    with pytest.raises(UserError, match="bogus"):
        get_task("rg:basic_arithmetic[bogus=1]")
    with pytest.raises(UserError, match="brackets"):
        get_task("rg:basic_arithmetic[min_terms=2")
