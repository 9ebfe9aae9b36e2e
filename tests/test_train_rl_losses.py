"""RL maths against hand-computed values: advantages, GAE, whitening, KL estimators,
the GRPO and PPO losses, the sampler mismatch metric and PRM step placement."""

import math

import pytest
import torch

from scalinglab.train.advantages import (
    ADVANTAGES,
    gae,
    group_center,
    group_zscore,
    leave_one_out,
    whiten,
    zero_std_groups,
)
from scalinglab.train.grpo import GRPOConfig, grpo_loss
from scalinglab.train.kl import kl_k1, kl_k2, kl_k3, mismatch_stats
from scalinglab.train.ppo import PPOConfig, ppo_loss, step_end_tokens

R = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])


def test_group_zscore():
    # group 1: mean 1/4, sample std sqrt((9/16 + 3/16)/3) = 1/2 -> (r - 1/4) / (1/2 + 1e-4)
    a = group_zscore(R)
    assert a[0].tolist() == pytest.approx([0.75 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001], abs=1e-6)
    # group 2: mean 1/2, sample std sqrt(4·(1/4)/3) = 1/sqrt(3)
    s = 1 / math.sqrt(3) + 1e-4
    assert a[1].tolist() == pytest.approx([0.5 / s, 0.5 / s, -0.5 / s, -0.5 / s], abs=1e-6)


def test_group_center_is_dr_grpo():
    assert group_center(R).tolist() == [[0.75, -0.25, -0.25, -0.25], [0.5, 0.5, -0.5, -0.5]]


def test_leave_one_out():
    # r_i minus the mean of the other three
    assert leave_one_out(R)[0].tolist() == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3])
    assert leave_one_out(R)[1].tolist() == pytest.approx([2 / 3, 2 / 3, -2 / 3, -2 / 3])


def test_advantage_dict_and_zero_std():
    assert set(ADVANTAGES) == {"zscore", "center", "rloo"}
    r = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 1.0]])
    assert zero_std_groups(r).tolist() == [True, True, False]
    assert group_zscore(r)[:2].abs().max() == 0  # equal rewards: no signal


def test_gae_by_hand():
    # r = (0, 0, 1), V = (.5, .6, .7), γ = 1, λ = .95:
    # δ2 = 1 - .7 = .3; δ1 = .7 - .6 = .1; δ0 = .6 - .5 = .1
    # A2 = .3; A1 = .1 + .95·.3 = .385; A0 = .1 + .95·.385 = .46575
    r = torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0]])
    v = torch.tensor([[9.0, 0.5, 0.6, 0.7, 9.0]])  # prompt slot and pad slot hold garbage
    m = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0]])
    adv, ret = gae(r, v, m, gamma=1.0, lam=0.95)
    assert adv[0].tolist() == pytest.approx([0.0, 0.46575, 0.385, 0.3, 0.0], abs=1e-6)
    assert ret[0].tolist() == pytest.approx([0.0, 0.96575, 0.985, 1.0, 0.0], abs=1e-6)
    # γ = .5, λ = 1: A2 = .3; A1 = (0 + .5·.7 - .6) + .5·.3 = -.1; A0 = (.5·.6 - .5) + .5·(-.1) = -.25
    adv, _ = gae(r, v, m, gamma=0.5, lam=1.0)
    assert adv[0, 1:4].tolist() == pytest.approx([-0.25, -0.1, 0.3], abs=1e-6)


def test_whiten():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 100.0])
    m = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0])
    sd = math.sqrt(5 / 3)  # unbiased variance of 1..4 is 5/3
    assert whiten(x, m).tolist() == pytest.approx([-1.5 / sd, -0.5 / sd, 0.5 / sd, 1.5 / sd, 0.0], abs=1e-5)
    assert whiten(x, m, shift_mean=False)[:4].tolist() == pytest.approx(
        [2.5 - 1.5 / sd, 2.5 - 0.5 / sd, 2.5 + 0.5 / sd, 2.5 + 1.5 / sd], abs=1e-5
    )


def test_kl_estimators():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    # log π - log π_ref = log 2
    assert kl_k1(logp, ref).item() == pytest.approx(math.log(2))
    assert kl_k2(logp, ref).item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert kl_k3(logp, ref).item() == pytest.approx(0.5 + math.log(2) - 1)  # e^{-log 2} - 1 + log 2
    # clamps: log-ratio to ±20, value to ±10
    assert kl_k3(torch.tensor([0.0]), torch.tensor([-50.0])).item() == 10.0
    assert kl_k3(torch.tensor([0.0]), torch.tensor([0.0])).item() == 0.0


def _cfg(**kw):
    return GRPOConfig(**kw)


def test_grpo_loss_clip_higher():
    old = torch.zeros(1, 2)
    logp = torch.log(torch.tensor([[1.5, 0.5]])).requires_grad_()  # ratios 1.5 and 0.5
    m = torch.ones(1, 2)
    # A = +1: token 1 clipped at 1 + 0.28, token 2 not (pessimistic max) -> (-1.28 - 0.5) / 2
    loss, st = grpo_loss(logp, old, torch.tensor([1.0]), m, _cfg())
    assert loss.item() == pytest.approx(-0.89)
    assert st["clip_frac_high"] == 0.5 and st["clip_frac_low"] == 0.0
    loss.backward()  # clipped token has no gradient; d(-r)/dlogp = -r = -0.5, over 2 tokens
    assert logp.grad[0].tolist() == pytest.approx([0.0, -0.25])
    # A = -1: token 1 unclipped (1.5), token 2 clipped at 1 - 0.2 -> (1.5 + 0.8) / 2
    loss, st = grpo_loss(logp, old, torch.tensor([-1.0]), m, _cfg())
    assert loss.item() == pytest.approx(1.15)
    assert st["clip_frac_low"] == 0.5 and st["clip_frac_high"] == 0.0


def test_grpo_loss_dual_clip_normaliser_and_kl():
    old, m = torch.zeros(1, 1), torch.ones(1, 1)
    logp = torch.log(torch.tensor([[4.0]]))
    assert grpo_loss(logp, old, torch.tensor([-1.0]), m, _cfg())[0].item() == pytest.approx(3.0)  # dual clip c=3
    assert grpo_loss(logp, old, torch.tensor([-1.0]), m, _cfg(dual_clip=0))[0].item() == pytest.approx(4.0)
    # padding is masked and the normaliser is whatever the caller passes (whole-batch count)
    logp2, old2 = torch.tensor([[0.0, 5.0]]), torch.zeros(1, 2)
    mask2 = torch.tensor([[1.0, 0.0]])
    assert grpo_loss(logp2, old2, torch.tensor([1.0]), mask2, _cfg())[0].item() == pytest.approx(-1.0)
    assert grpo_loss(logp2, old2, torch.tensor([1.0]), mask2, _cfg(), num_tokens=torch.tensor(4.0))[
        0
    ].item() == pytest.approx(-0.25)
    # k3 KL in the loss: ratio 1, A = 0, β = 0.1, log π − log π_ref = log 2
    lp, ref = torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]])
    loss, st = grpo_loss(lp, lp, torch.tensor([0.0]), m, _cfg(beta=0.1), ref_logp=ref)
    assert loss.item() == pytest.approx(0.1 * (math.log(2) - 0.5)) and st["kl"] == pytest.approx(math.log(2) - 0.5)


def test_grpo_loss_sums_over_micro_batches():
    torch.manual_seed(0)
    logp, old = torch.randn(4, 6) * 0.1, torch.randn(4, 6) * 0.1
    adv = torch.tensor([1.0, -1.0, 0.5, 2.0])
    m = (torch.rand(4, 6) > 0.3).float()
    full, _ = grpo_loss(logp, old, adv, m, _cfg())
    n = m.sum()
    parts = sum(
        grpo_loss(logp[i : i + 1], old[i : i + 1], adv[i : i + 1], m[i : i + 1], _cfg(), num_tokens=n)[0]
        for i in range(4)
    )
    assert parts.item() == pytest.approx(full.item(), abs=1e-6)


def test_ppo_loss_by_hand():
    cfg = PPOConfig()
    z = torch.zeros(1, 2)
    adv = torch.tensor([[1.0, -1.0]])
    values = torch.tensor([[0.5, 0.5]])
    old_v = torch.tensor([[0.2, 0.2]])
    ret = torch.ones(1, 2)
    # ratio 1: pg = (-1 + 1)/2 = 0; value: clipped V = 0.2 + 0.2 = 0.4,
    # ½·max((0.5-1)², (0.4-1)²) = 0.18 per token; loss = 0.5 · 0.18
    loss, st = ppo_loss(z, z, adv, values, old_v, ret, torch.ones(1, 2), cfg)
    assert loss.item() == pytest.approx(0.09)
    assert st["vf_loss"] == pytest.approx(0.18) and st["vf_clip_frac"] == 1.0 and st["clip_frac"] == 0.0
    # ratio 1.5 with A = +1 is clipped at 1.2
    lp = torch.log(torch.tensor([[1.5]]))
    loss, st = ppo_loss(
        lp,
        torch.zeros(1, 1),
        torch.ones(1, 1),
        torch.ones(1, 1),
        torch.ones(1, 1),
        torch.ones(1, 1),
        torch.ones(1, 1),
        cfg,
    )
    assert loss.item() == pytest.approx(-1.2) and st["clip_frac"] == 1.0


def test_mismatch_stats():
    e, t = torch.tensor([[-1.0, -2.0, 0.0]]), torch.tensor([[-1.1, -2.0, 7.0]])
    m = torch.tensor([[1.0, 1.0, 0.0]])
    s = mismatch_stats(e, t, m)
    assert s["mismatch_abs"] == pytest.approx(0.05)
    assert s["mismatch_kl"] == pytest.approx((math.exp(-0.1) - 1 + 0.1) / 2, rel=1e-4)
    assert s["mismatch_prob_ratio"] == pytest.approx((math.exp(0.1) + 1) / 2, rel=1e-5)


def test_step_end_tokens_char_tokenizer():
    from scalinglab.model.tokenizer import CharTokenizer

    tok = CharTokenizer()
    text = "1+2+0=3\nA: 3\n"
    ids = tok.encode(text, bos=False) + [tok.eos_id]
    # each step's last token is its newline: characters 7 and 12
    assert step_end_tokens(tok, ids, text, ["1+2+0=3\n", "A: 3\n"]) == [7, 12]
    assert step_end_tokens(tok, ids, text, ["1+2+0=3", "A: 3"]) == [6, 11]


def test_last_position():
    from scalinglab.train.rollout import last_position

    mask = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 1]])
    assert last_position(mask).tolist() == [2, -1, 3]
