"""The small shared units of the training loops: the gradient check every recipe runs before
its optimizer step, the checkpoint schedule, and the rollout seam (`build_rollout`) that the
local engine path and the Ray pool both end in."""

from types import SimpleNamespace

import pytest
import torch

from scalinglab.errors import UserError
from scalinglab.runs import checkpoint
from scalinglab.train.common import NonFiniteError, check_update
from scalinglab.train.rollout import INVALID_LOGPROB, build_rollout, rollout


def test_check_update_passes_finite_steps_and_stops_bad_ones():
    check_update(1, loss=0.5, grad_norm=3.0)  # no limit
    check_update(1, loss=0.5, grad_norm=3.0, max_grad_norm=3.0)  # at the limit is fine
    with pytest.raises(NonFiniteError, match=r"^step 3: non-finite loss=nan"):
        check_update(3, loss=float("nan"), grad_norm=1.0)
    with pytest.raises(NonFiniteError, match=r"non-finite grad_norm=inf"):
        check_update(2, loss=0.1, grad_norm=float("inf"), max_grad_norm=10.0)
    with pytest.raises(NonFiniteError, match=r"step 4: gradient norm 20 exceeds stop_grad_norm=10 \(exploding\)"):
        check_update(4, loss=0.1, grad_norm=20.0, max_grad_norm=10.0, name="stop_grad_norm")
    assert issubclass(NonFiniteError, UserError)  # the CLI prints it as one line


def test_checkpoint_due_every_n_steps_but_not_at_the_end():
    assert [s for s in range(1, 11) if checkpoint.due(s, 3, 10)] == [3, 6, 9]
    assert [s for s in range(1, 11) if checkpoint.due(s, 5, 10)] == [5]  # step 10 is the final model
    assert not any(checkpoint.due(s, 0, 10) for s in range(1, 11))  # 0 = never


def _generations():
    c = SimpleNamespace
    return c(
        generations=[
            c(
                prompt_ids=[1, 5, 6],
                completions=[
                    c(token_ids=[7, 2], logprobs=[-0.5, -0.25], text="a", finish_reason="stop"),
                    c(token_ids=[8, 9, 9], logprobs=[-1.0, -2.0, -3.0], text="bcc", finish_reason="length"),
                ],
            ),
            c(prompt_ids=[1, 4], completions=[c(token_ids=[3], logprobs=[-0.125], text="d", finish_reason="stop")]),
        ],
        generated_tokens=6,
    )


def _verdict(reward, correct, error=None):
    return SimpleNamespace(reward=reward, correct=correct, error=error)


def test_build_rollout_lays_out_generations_and_verdicts_by_hand():
    verdicts = [[_verdict(1.0, True), _verdict(0.0, False, "timeout")], [_verdict(0.0, False)]]
    problems = [SimpleNamespace(prompt="p0"), SimpleNamespace(prompt="p1")]
    ro = build_rollout(problems, _generations(), verdicts, pad_id=0, device="cpu", missing_eos_penalty=0.5)
    # rows <bos> prompt response, right-padded to T = 6; position t scores target ids[:, t+1]
    assert ro.ids.tolist() == [[1, 5, 6, 7, 2, 0], [1, 5, 6, 8, 9, 9], [1, 4, 3, 0, 0, 0]]
    assert ro.mask.tolist() == [[0, 0, 1, 1, 0], [0, 0, 1, 1, 1], [0, 1, 0, 0, 0]]
    x = INVALID_LOGPROB
    assert ro.engine_logp.tolist() == [[x, x, -0.5, -0.25, x], [x, x, -1.0, -2.0, -3.0], [x, -0.125, x, x, x]]
    assert ro.last.tolist() == [3, 4, 1]  # P - 2 + L
    assert ro.rewards.tolist() == [1.0, -0.5, 0.0]  # the truncated response loses the EOS penalty
    assert ro.correct.tolist() == [True, False, False] and ro.truncated.tolist() == [False, True, False]
    assert ro.errored.tolist() == [False, True, False] and ro.verifier_errors == 1
    assert ro.group.tolist() == [0, 0, 1] and ro.prompts == ["p0", "p0", "p1"] and ro.texts == ["a", "bcc", "d"]
    assert ro.generated_tokens == 6


def test_rollout_is_generate_then_verify_then_build_rollout():
    gens = _generations()

    class Engine:
        tok, device = SimpleNamespace(pad_id=0), torch.device("cpu")

        def generate(self, prompts, params):
            assert prompts == ["p0", "p1"] and params.n == 2 and params.stop == ("\n\n",) and params.seed == 7
            return gens

    class Task:
        stop = ["\n\n"]

        def check(self, p, text):
            return _verdict(float(len(text)), len(text) == 1)

    problems = [SimpleNamespace(prompt="p0"), SimpleNamespace(prompt="p1")]
    ro = rollout(Engine(), Task(), problems, n=2, max_new_tokens=4, temperature=1.0, seed=7)
    verdicts = [[Task().check(p, c.text) for c in g.completions] for p, g in zip(problems, gens.generations)]
    ref = build_rollout(problems, gens, verdicts, pad_id=0, device="cpu")
    for k in ("ids", "mask", "engine_logp", "last", "rewards", "correct", "truncated", "group", "errored"):
        assert torch.equal(getattr(ro, k), getattr(ref, k)), k
    assert ro.texts == ref.texts and ro.rewards.tolist() == [1.0, 3.0, 1.0]
