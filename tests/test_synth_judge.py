"""Judge chorus: verdict parsing robust to garbage, vote aggregation, stub judges (torch-free layer)."""

import pytest

from scalinglab.verify.judge import (
    JudgeResult,
    Vote,
    aggregate,
    judge_candidates,
    judge_prompt,
    majority,
    mean_score,
    parse_vote,
    summarise,
    unanimous,
)


@pytest.mark.parametrize(
    "text,passed,score",
    [
        ("VERDICT: PASS\nSCORE: 8", True, 0.8),
        ("verdict = fail\nscore: 2/10", False, 0.2),
        ("**Verdict:** Correct. Score: 3/4", True, 0.75),
        ("VERDICT: INCORRECT", False, 0.0),
        ("Score: 7", True, 0.7),  # score only: passes at >= 0.5
        ("SCORE: 4", False, 0.4),
        ("yes", True, 1.0),  # a bare word counts
        (" No.", False, 0.0),
        ("VERDICT: PASS\n...\nVERDICT: FAIL", False, 0.0),  # the last verdict wins
        ("VERDICT: PASS SCORE: 42", True, 1.0),  # out-of-range score is dropped, verdict kept
        ("A: 12\n#$%^&", None, None),  # garbage abstains
        ("", None, None),
        ("VERDICT: none of the above", None, None),
        ("no idea, maybe", None, None),  # 'no' inside a sentence is not a vote
    ],
)
def test_parse_vote(text, passed, score):
    v = parse_vote(text, "j")
    assert (v.passed, v.score) == (passed, pytest.approx(score) if score is not None else None)
    assert v.valid == (passed is not None) and v.raw == text


def V(p, s=None):
    return Vote("j", p, s if s is not None or p is None else float(p), "")


def test_aggregators_by_hand():
    votes = [V(True, 0.9), V(False, 0.4), V(True, 0.6), V(None)]
    assert majority(votes) is True and unanimous(votes) is False
    assert mean_score(votes) is True  # (0.9 + 0.4 + 0.6) / 3 = 0.633
    r = aggregate(votes)
    assert (
        r.passed is True
        and r.score == pytest.approx(1.9 / 3)
        and r.agreement == pytest.approx(2 / 3)
        and r.abstained == 1
    )
    assert majority([V(True), V(False)]) is None  # tie
    assert majority([V(None), V(None)]) is None and mean_score([V(None)]) is None
    assert aggregate([V(True, 0.2), V(False, 0.4)], "mean").passed is False
    with pytest.raises(ValueError):
        aggregate(votes, "plurality")


def test_to_verdict():
    assert aggregate([V(True), V(True), V(False)]).to_verdict().correct is True
    tie = aggregate([V(True), V(False)]).to_verdict()
    assert tie.error and not tie.correct and "tied" in tie.reason
    assert "abstained" in aggregate([V(None)]).to_verdict().reason


def test_chorus_with_stub_judges():
    items = [
        {"question": "2+2=?", "candidate": "A: 4", "reference": "4"},
        {"question": "2+3=?", "candidate": "A: 6", "reference": "5"},
    ]
    seen = []

    def checker(prompts):  # a judge that actually compares reference and candidate
        seen.append(list(prompts))
        out = []
        for p in prompts:
            ref = p.split("Reference answer: ")[1].split("\n")[0]
            out.append("VERDICT: PASS\nSCORE: 10" if f"A: {ref}" in p else "VERDICT: FAIL\nSCORE: 1")
        return out

    def yes_man(prompts):
        return ["VERDICT: PASS\nSCORE: 9"] * len(prompts)

    def garbage(prompts):
        return ["\x00\x01 lorem ipsum"] * len(prompts)

    res = judge_candidates({"checker": checker, "yes": yes_man, "noise": garbage}, items)
    assert len(seen) == 1 and len(seen[0]) == 2  # one batched call per judge
    assert seen[0][0] == judge_prompt("2+2=?", "A: 4", reference="4") and "SCORE:" in seen[0][0]
    assert [r.passed for r in res] == [True, None]  # 2 pass; then 1 pass vs 1 fail (a tie), garbage abstains
    assert [r.abstained for r in res] == [1, 1] and res[0].score == pytest.approx(0.95)
    s = summarise(res)
    assert (s["passed"], s["undecided"], s["pass_rate"], s["abstention_rate"]) == (1, 1, 1.0, 2 / 6)
    strict = judge_candidates({"checker": checker, "yes": yes_man}, items, rule="unanimous")
    assert [r.passed for r in strict] == [True, False]


def test_bad_chorus():
    with pytest.raises(ValueError, match="empty"):
        judge_candidates({}, [])
    with pytest.raises(ValueError, match="returned 0 replies"):
        judge_candidates({"broken": lambda ps: []}, [{"question": "q", "candidate": "c"}])
    assert isinstance(aggregate([V(True)]), JudgeResult)


def test_prompt_without_reference():
    p = judge_prompt("Q", "C", rubric="Be kind.")
    assert "Reference" not in p and "Rubric: Be kind." in p and p.endswith("SCORE: an integer from 0 to 10\n")
