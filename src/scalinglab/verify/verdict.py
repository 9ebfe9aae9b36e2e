"""The structured verdict every verifier returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Verdict:
    """The judgement of one candidate.

    `error` is True when the verifier itself failed (timeout, crash, sandbox fault): such a
    verdict is counted and reported apart from a wrong answer, never silently a 0.
    """

    correct: bool
    reward: float
    reason: str
    error: bool = False

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def right(cls, reason: str = "correct") -> "Verdict":
        return cls(True, 1.0, reason)

    @classmethod
    def wrong(cls, reason: str) -> "Verdict":
        return cls(False, 0.0, reason)

    @classmethod
    def failed(cls, reason: str) -> "Verdict":
        return cls(False, 0.0, reason, error=True)
