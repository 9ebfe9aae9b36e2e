"""LLM-as-judge: a chorus of models grades a candidate against a rubric; votes are aggregated.

Torch-free on purpose: a judge here is any callable `JudgeFn = (prompts) -> texts` that
turns a batch of prompts into a batch of replies. `scalinglab.synth.judge` builds such
callables from local Hugging Face models (load_model + Engine); tests pass stubs.

The method is the "LLM-as-a-judge" single-answer grading of Zheng et al. 2023 (MT-Bench),
with a *panel* of judges in place of one (the "jury" of Verga et al. 2024, "Replacing
Judges with Juries"): each judge sees the same prompt, and the panel's verdict is the
majority of pass/fail votes, its score the mean of the scores. Deviations: a reference
answer is optional (reference-guided grading when given); judges may be small models, so
replies are parsed leniently and a reply that cannot be parsed is an *abstention*, never a
silent fail. The prompt a judge sees (`judge_prompt`):

    You are a strict grader. Rubric: The final answer must equal the reference.
    Question:
    47+85=?
    Reference answer: 132
    Candidate answer:
    7+5+0=12 ...
    Reply with two lines:
    VERDICT: PASS or FAIL
    SCORE: an integer from 0 to 10

`parse_vote` reads, case-insensitively and taking the *last* occurrence of each:
`VERDICT: PASS|FAIL` (also CORRECT/INCORRECT, YES/NO, TRUE/FALSE) and `SCORE: x` or
`SCORE: x/y` (x/10 unless a denominator is given; out of range = no score). A reply with a
score but no verdict passes when score >= 0.5; one with a verdict but no score scores 1 or
0; a reply that is only a bare `pass`/`fail`/`yes`/`no` word counts too. Anything else abstains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

from scalinglab.verify.verdict import Verdict

JudgeFn = Callable[[Sequence[str]], Sequence[str]]  # a batch of prompts -> a batch of replies

DEFAULT_RUBRIC = "The candidate's final answer must be correct and its reasoning must support it."

_PASS_WORDS = {
    "pass": True,
    "correct": True,
    "yes": True,
    "true": True,
    "accept": True,
    "fail": False,
    "incorrect": False,
    "no": False,
    "false": False,
    "reject": False,
    "wrong": False,
}
_VERDICT = re.compile(
    r"verdict\s*[:=]\s*\**\s*(pass|fail|incorrect|correct|yes|no|true|false|accept|reject|wrong)\b", re.I
)
_SCORE = re.compile(r"score\s*[:=]\s*\**\s*(-?\d+(?:\.\d+)?)(?:\s*/\s*(\d+(?:\.\d+)?))?", re.I)
_BARE = re.compile(r"^\W*(pass|fail|incorrect|correct|yes|no|true|false)\b\W*$", re.I)


@dataclass(frozen=True)
class Vote:
    """One judge's parsed reply. `passed` and `score` are None when the reply abstains."""

    judge: str
    passed: bool | None
    score: float | None  # in [0, 1]
    raw: str

    @property
    def valid(self) -> bool:
        return self.passed is not None


@dataclass(frozen=True)
class JudgeResult:
    """The chorus's decision on one candidate."""

    votes: tuple[Vote, ...]
    passed: bool | None  # majority of valid votes; None on a tie or when every judge abstained
    score: float | None  # mean score of the valid votes
    agreement: float | None  # fraction of valid votes that side with the majority
    abstained: int = 0
    meta: dict = field(default_factory=dict)

    def to_verdict(self) -> Verdict:
        """As a verifier verdict: no decision (tie or all abstained) is a verifier error."""
        if self.passed is None:
            why = "every judge abstained" if self.abstained == len(self.votes) else "judges tied"
            return Verdict.failed(f"judge chorus undecided: {why}")
        v = sum(x.passed is True for x in self.votes)
        return Verdict(
            self.passed,
            float(self.score if self.score is not None else self.passed),
            f"{v}/{len(self.votes) - self.abstained} judges pass, {self.abstained} abstained",
        )

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "score": self.score,
            "agreement": self.agreement,
            "abstained": self.abstained,
            "votes": [{"judge": v.judge, "passed": v.passed, "score": v.score, "raw": v.raw} for v in self.votes],
        }


def judge_prompt(question: str, candidate: str, rubric: str = DEFAULT_RUBRIC, reference: str | None = None) -> str:
    """The grading prompt shown to every judge (see the module docstring)."""
    ref = f"Reference answer: {reference.strip()}\n" if reference else ""
    return (
        f"You are a strict grader. Rubric: {rubric.strip()}\nQuestion:\n{question.strip()}\n{ref}"
        f"Candidate answer:\n{candidate.strip()}\nReply with two lines:\nVERDICT: PASS or FAIL\n"
        f"SCORE: an integer from 0 to 10\n"
    )


def _score(text: str) -> float | None:
    found = _SCORE.findall(text)
    if not found:
        return None
    num, den = found[-1]
    scale = float(den) if den else 10.0
    if scale <= 0:
        return None
    x = float(num) / scale
    return x if 0.0 <= x <= 1.0 else None


def parse_vote(text: str, judge: str = "") -> Vote:
    """Parse one reply; garbage abstains (passed = score = None)."""
    text = text if isinstance(text, str) else ""
    verdicts = _VERDICT.findall(text)
    passed = _PASS_WORDS[verdicts[-1].lower()] if verdicts else None
    if passed is None:
        m = _BARE.match(text.strip())
        passed = _PASS_WORDS[m.group(1).lower()] if m else None
    score = _score(text)
    if passed is None and score is not None:
        passed = score >= 0.5
    if score is None and passed is not None:
        score = 1.0 if passed else 0.0
    return Vote(judge, passed, score, text)


# -- aggregation: small functions chosen from a dict (STYLE.md example 8) -----------------
def majority(votes: Sequence[Vote]) -> bool | None:
    """Pass when more valid votes pass than fail; None on a tie or no valid vote."""
    yes = sum(v.passed is True for v in votes)
    no = sum(v.passed is False for v in votes)
    return None if yes == no else yes > no


def mean_score(votes: Sequence[Vote]) -> bool | None:
    """Pass when the mean score of the valid votes is at least 0.5 (None without valid votes)."""
    s = [v.score for v in votes if v.score is not None]
    return None if not s else sum(s) / len(s) >= 0.5


def unanimous(votes: Sequence[Vote]) -> bool | None:
    """Pass only when every valid vote passes (a strict filter for synthetic data)."""
    valid = [v for v in votes if v.valid]
    return None if not valid else all(v.passed for v in valid)


AGGREGATORS: dict[str, Callable[[Sequence[Vote]], bool | None]] = {
    "majority": majority,
    "mean": mean_score,
    "unanimous": unanimous,
}


def aggregate(votes: Sequence[Vote], rule: str = "majority") -> JudgeResult:
    """Combine one candidate's votes with `rule` (a key of AGGREGATORS)."""
    if rule not in AGGREGATORS:
        raise ValueError(f"unknown aggregation rule {rule!r} (known: {', '.join(AGGREGATORS)})")
    valid = [v for v in votes if v.valid]
    passed = AGGREGATORS[rule](votes)
    scores = [v.score for v in valid if v.score is not None]
    agree = None if passed is None or not valid else sum(v.passed == passed for v in valid) / len(valid)
    return JudgeResult(
        tuple(votes), passed, sum(scores) / len(scores) if scores else None, agree, abstained=len(votes) - len(valid)
    )


def judge_candidates(
    chorus: dict[str, JudgeFn], items: Sequence[dict], rubric: str = DEFAULT_RUBRIC, rule: str = "majority"
) -> list[JudgeResult]:
    """Grade `items` ({question, candidate, reference?}) with every judge in `chorus`.

    Each judge gets the whole batch in one call (so a model judge batches its generation).
    A judge that returns the wrong number of replies is a bug in that judge: ValueError.
    """
    if not chorus:
        raise ValueError("the judge chorus is empty")
    prompts = [judge_prompt(it["question"], it["candidate"], rubric, it.get("reference")) for it in items]
    replies: dict[str, list[str]] = {}
    for name, fn in chorus.items():
        out = list(fn(prompts)) if prompts else []
        if len(out) != len(prompts):
            raise ValueError(f"judge {name!r} returned {len(out)} replies for {len(prompts)} prompts")
        replies[name] = out
    return [aggregate([parse_vote(replies[name][i], name) for name in chorus], rule) for i in range(len(items))]


def summarise(results: Sequence[JudgeResult]) -> dict:
    """Pass rate, undecided count and mean agreement over a batch of judged candidates."""
    decided = [r for r in results if r.passed is not None]
    agree = [r.agreement for r in decided if r.agreement is not None]
    votes = sum(len(r.votes) for r in results)
    return {
        "candidates": len(results),
        "passed": sum(r.passed is True for r in results),
        "failed": sum(r.passed is False for r in results),
        "undecided": len(results) - len(decided),
        "pass_rate": sum(r.passed is True for r in decided) / len(decided) if decided else None,
        "abstention_rate": sum(r.abstained for r in results) / votes if votes else None,
        "mean_agreement": sum(agree) / len(agree) if agree else None,
    }
