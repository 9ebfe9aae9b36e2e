"""Each post-training loss against values computed by hand."""

import math

import pytest
import torch

from scalinglab.train.dpo import dpo_loss
from scalinglab.train.reward_model import auc, bce_soft_loss, bradley_terry_loss
from scalinglab.train.sft import sft_loss


def test_sft_masked_cross_entropy_by_hand():
    # position 0: p = [1,2,1]/4, target 1 -> CE = ln 2; position 1: p = [1,1,2]/4, target 0 -> CE = ln 4;
    # position 2 is a prompt token (mask 0) with a huge loss that must not count.
    logits = torch.log(torch.tensor([[[1.0, 2, 1], [1, 1, 2], [1e-9, 1, 1]]]))
    targets = torch.tensor([[1, 0, 0]])
    mask = torch.tensor([[1.0, 1, 0]])
    loss, st = sft_loss(logits, targets, mask, normaliser=2.0)
    assert loss.item() == pytest.approx((math.log(2) + math.log(4)) / 2, rel=1e-6)
    assert st == {"correct_tokens": 1.0, "tokens": 2.0}  # argmax hits at position 0 only
    # a step-wide normaliser (e.g. 4 answer tokens over all micro-batches) just rescales
    loss4, _ = sft_loss(logits, targets, mask, normaliser=4.0)
    assert loss4.item() == pytest.approx(loss.item() / 2, rel=1e-6)


def test_dpo_loss_by_hand():
    # r_c = 0.5·(−1 − (−2)) = 0.5, r_r = 0.5·(−3 − (−2)) = −0.5 -> loss = −log σ(1) = log(1 + e^−1)
    loss, st = dpo_loss(
        torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.5
    )
    assert loss.item() == pytest.approx(math.log1p(math.exp(-1)), rel=1e-6)
    assert st["correct"] == 1.0 and st["margin_sum"] == pytest.approx(1.0)
    assert st["chosen_sum"] == pytest.approx(0.5) and st["rejected_sum"] == pytest.approx(-0.5)
    # policy == reference: every pair costs ln 2, whatever β
    z = torch.tensor([-4.0, -7.0])
    loss0, st0 = dpo_loss(z, z + 1, z, z + 1, beta=3.0)
    assert loss0.item() == pytest.approx(math.log(2), rel=1e-6) and st0["correct"] == 0.0


def test_bradley_terry_by_hand():
    loss = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
    assert loss.item() == pytest.approx((math.log1p(math.exp(-2)) + math.log(2)) / 2, rel=1e-6)
    # large margins stay finite (softplus form)
    assert bradley_terry_loss(torch.tensor([0.0]), torch.tensor([200.0])).item() == pytest.approx(200.0)


def test_bce_soft_targets_by_hand():
    # z = ln 3 -> σ = 0.75; t = 0.25: −(0.25 ln 0.75 + 0.75 ln 0.25)
    want = -(0.25 * math.log(0.75) + 0.75 * math.log(0.25))
    z = torch.tensor([math.log(3.0), 0.0, 5.0])
    t = torch.tensor([0.25, 0.3, 1.0])
    m = torch.tensor([1.0, 1.0, 0.0])  # the third position is unlabelled
    loss = bce_soft_loss(z, t, m)
    assert loss.item() == pytest.approx((want + math.log(2)) / 2, rel=1e-6)  # at z = 0 BCE is ln 2 for any t


def test_auc_by_hand():
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: 3 of 4 pairs ordered right
    assert auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)
    assert auc([0.5, 0.5], [True, False]) == pytest.approx(0.5)  # a tie counts one half
    assert auc([0.9, 0.1, 0.2], [True, False, False]) == 1.0
    assert math.isnan(auc([0.1, 0.2], [True, True]))
