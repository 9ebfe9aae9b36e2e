"""What every test-time strategy shares: samples, their exact cost, and the solve interface.

A strategy turns a budget (`n`: samples, beam width or thinking tokens) into one answer
per problem and reports what that cost: prompt tokens (prefilled), generated tokens
(decoded) and the FLOPs of each, as counted by the engine (`GenerationResult`), plus the
reward model's forward passes when a strategy calls one (best-of-N with an ORM/PRM, the
RM-weighted vote, PRM/ORM beam search): each scored text is one RM forward over its prompt
+ completion tokens at the RM's own size (`RewardModel.forward_flops`), kept apart as
`reward_tokens` / `reward_flops` and included in `flops`. A functional verifier (the task's
checker) runs no model and costs no FLOPs here.

    strategy.solve(problems, n) -> SolveResult(solutions=[Solution(id, answer, correct)], cost=Cost(...))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from scalinglab.tasks.base import Problem


@dataclass
class Cost:
    """Tokens and FLOPs spent: the policy model's, and the reward model's when one scores."""

    prompt_tokens: int = 0  # tokens prefilled
    generated_tokens: int = 0  # tokens decoded
    prompt_flops: float = 0.0
    generated_flops: float = 0.0
    prefills: int = 0  # prompts prefilled (one per engine prompt, shared by its n samples)
    prefix_kv_bytes: int = 0  # peak bytes of the shared prompt KV cache over the engine calls
    seconds: float = 0.0  # wall time of the engine calls (0 for a cost derived per sample)
    reward_tokens: int = 0  # tokens the reward model read (prompt + completion, once per scored text)
    reward_flops: float = 0.0  # the reward model's forward FLOPs over them

    @property
    def policy_flops(self) -> float:
        return self.prompt_flops + self.generated_flops

    @property
    def flops(self) -> float:
        """Everything the strategy computed: the policy's prefill and decode, and the reward model's scoring."""
        return self.policy_flops + self.reward_flops

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(
            self.prompt_tokens + other.prompt_tokens,
            self.generated_tokens + other.generated_tokens,
            self.prompt_flops + other.prompt_flops,
            self.generated_flops + other.generated_flops,
            self.prefills + other.prefills,
            max(self.prefix_kv_bytes, other.prefix_kv_bytes),
            self.seconds + other.seconds,
            self.reward_tokens + other.reward_tokens,
            self.reward_flops + other.reward_flops,
        )

    @classmethod
    def of(cls, result) -> "Cost":
        """The cost of one engine call, from its `GenerationResult` totals."""
        return cls(
            result.prompt_tokens,
            result.generated_tokens,
            result.prompt_flops,
            result.generated_flops,
            result.prefills,
            result.prefix_kv_bytes,
            result.seconds,
        )

    def to_json(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "prompt_flops": self.prompt_flops,
            "generated_flops": self.generated_flops,
            "reward_tokens": self.reward_tokens,
            "reward_flops": self.reward_flops,
            "policy_flops": self.policy_flops,
            "flops": self.flops,
            "prefills": self.prefills,
            "prefix_kv_bytes": self.prefix_kv_bytes,
        }


@dataclass
class Sample:
    """One sampled completion, judged once."""

    text: str
    answer: str | None  # task.extract_answer(text)
    correct: bool  # task.check(problem, text).correct (uses the reference answer)
    tokens: int  # generated tokens, EOS included
    flops: float  # its decode FLOPs (engine.sequence_flops after the prompt)
    score: float | None = None  # verifier / reward-model score, filled by best_of_n.score_attempts
    score_tokens: int = 0  # tokens the reward model read to score it (0: no RM, or the functional verifier)
    score_flops: float = 0.0  # the reward model's FLOPs for that


@dataclass
class Attempt:
    """A problem's prompt (prefilled once) and its samples, in the order drawn."""

    problem: Problem
    prompt_tokens: int
    prompt_flops: float
    samples: list[Sample] = field(default_factory=list)

    def cost(self, n: int | None = None) -> Cost:
        """What the first `n` samples cost: the prompt once plus their decodes (and their RM scoring)."""
        head = self.samples if n is None else self.samples[:n]
        return Cost(
            self.prompt_tokens,
            sum(s.tokens for s in head),
            self.prompt_flops,
            sum(s.flops for s in head),
            1,
            reward_tokens=sum(s.score_tokens for s in head),
            reward_flops=sum(s.score_flops for s in head),
        )


@dataclass
class Solution:
    """A strategy's outcome on one problem."""

    id: str
    answer: str | None  # the chosen final answer (None: nothing parseable)
    correct: float  # 1/0 for a chosen answer; the mean over samples for plain sampling
    candidates: int = 0  # completions the strategy looked at
    correct_candidates: int = 0  # of which correct (for coverage)


@dataclass
class SolveResult:
    solutions: list[Solution]
    cost: Cost

    @property
    def accuracy(self) -> float:
        return sum(s.correct for s in self.solutions) / max(1, len(self.solutions))

    @property
    def coverage(self) -> float:
        """Fraction of problems where some candidate was correct (what an oracle verifier would get)."""
        return sum(s.correct_candidates > 0 for s in self.solutions) / max(1, len(self.solutions))


class Strategy(Protocol):
    """Solve problems within a budget `n`; every strategy in testtime/ has this shape."""

    name: str

    def solve(self, problems: Sequence[Problem], n: int) -> SolveResult: ...
