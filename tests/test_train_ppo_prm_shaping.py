"""PPO with PRM rewards: the default shaping (PURE min-form) and Gao et al.'s clip form cannot
be gamed by repeating a correct step; the old sum form (kept as `prm_shaping=sum`) can."""

import pytest
import torch

from scalinglab.engine.engine import Completion, Generation, GenerationResult
from scalinglab.model.tokenizer import CharTokenizer
from scalinglab.tasks import get_task
from scalinglab.train.advantages import gae
from scalinglab.train.ppo import PPOConfig, shape_clip, shape_min, token_rewards
from scalinglab.train.rollout import rollout

ARITH = get_task("arithmetic")


class ScriptedEngine:
    """Engine double: each prompt gets the given completions (ids from the char tokenizer)."""

    def __init__(self, replies):
        self.tok, self.device, self.replies = CharTokenizer(), torch.device("cpu"), replies

    def generate(self, prompts, params):
        res = GenerationResult(generations=[])
        for p, texts in zip(prompts, self.replies):
            comps = [
                Completion(t, self.tok.encode(t, bos=False) + [self.tok.eos_id], [-0.5] * (len(t) + 1), "eos")
                for t in texts
            ]
            res.generations.append(Generation(p, self.tok.encode(p), comps))
            res.generated_tokens += sum(len(c.token_ids) for c in comps)
        return res


class StepPRM:
    """0.9 for a step that is right (an equation that holds or the right answer line), else 0.1."""

    def score_steps_batch(self, prompts, steps):
        return [[0.9 if ("=" in s and _holds(s)) or s.startswith("A: 5") else 0.1 for s in st] for st in steps]


def _holds(step: str) -> bool:
    left, right = step.strip().split("=")
    return eval(left) == int(right)  # test-only: "2+3+0" style sums


SHORT = "2+3+0=5\nA: 5\n"
PADDED = "2+3+0=5\n2+3+0=5\n2+3+0=5\nA: 5\n"  # the same solution with a correct step repeated twice


def _returns(shaping: str) -> list[float]:
    problem = ARITH.make(2, "+", 3)
    ro = rollout(ScriptedEngine([[SHORT, PADDED]]), ARITH, [problem], n=2, max_new_tokens=40, temperature=1.0, seed=0)
    assert ro.correct.tolist() == [True, True]
    cfg = PPOConfig(reward="prm", prm_shaping=shaping)
    scores = token_rewards(ro, cfg, StepPRM(), CharTokenizer(), ARITH)  # (B, T-1)
    # the return of the first response token under GAE with V = 0, γ = 1: the sum of the rewards after it
    _, ret = gae(scores, torch.zeros_like(scores), ro.mask, gamma=1.0, lam=1.0)
    first = ro.mask.argmax(-1)
    out = [float(ret[i, first[i]]) for i in range(2)]
    assert out == pytest.approx([float(scores[i].sum()) for i in range(2)])
    return out


def test_sum_form_pays_for_a_redundant_step():
    short, padded = _returns("sum")
    assert short == pytest.approx(0.9 + 0.9) and padded == pytest.approx(4 * 0.9)  # the gameable form


@pytest.mark.parametrize("shaping", ["min", "clip"])
def test_redundant_correct_step_does_not_raise_the_return(shaping):
    short, padded = _returns(shaping)
    assert padded <= short + 1e-9
    if shaping == "min":
        assert short == pytest.approx(0.9) and padded == pytest.approx(0.9)  # min of the step scores, however many


def test_min_form_by_hand():
    s = [0.8, 0.3, 0.9, 0.6]
    r = shape_min(s, PPOConfig())
    # suffix minima 0.3, 0.3, 0.6, 0.6 then 0: rewards 0, -0.3, 0, 0.6
    assert r == pytest.approx([0.0, -0.3, 0.0, 0.6])
    assert [sum(r[k:]) for k in range(4)] == pytest.approx([0.3, 0.3, 0.6, 0.6])  # return from step k = min of s[k:]
    assert shape_min(s + [0.95], PPOConfig())[:1] == pytest.approx([0.0]) and sum(
        shape_min(s + [0.95], PPOConfig())
    ) == pytest.approx(0.3)
    # a wrong step anywhere caps the whole return
    assert sum(shape_min([0.9, 0.05, 0.9], PPOConfig())) == pytest.approx(0.05)


def test_clip_form_by_hand():
    assert shape_clip([0.9, 0.2, 0.5], PPOConfig(prm_clip_eta=0.5)) == pytest.approx([0.0, -0.3, 0.0])


def test_unknown_shaping_is_a_user_error(tmp_path):
    from scalinglab.errors import UserError
    from scalinglab.train.ppo import train_ppo

    with pytest.raises(UserError, match="prm_shaping"):
        train_ppo(PPOConfig(prm_shaping="mean"), str(tmp_path / "nope"), str(tmp_path / "out"))
