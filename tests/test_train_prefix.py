"""Shared-prefix policy log-probs equal the plain forward's, values and gradients (train/prefix.py)."""

import pytest
import torch

from scalinglab.train.prefix import policy_logprobs


def _batch():
    """Two prompts (5 and 7 tokens) with three right-padded responses each, rows interleaved."""
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(4, 100, (5,), generator=g), torch.randint(4, 100, (7,), generator=g)]
    rows, spans = [], []
    for r, length in enumerate([3, 6, 1, 4, 2, 5]):
        p = prompts[r % 2]
        rows.append(torch.cat([p, torch.randint(4, 100, (length,), generator=g)]))
        spans.append((len(p) - 1, len(p) - 1 + length))  # target positions of the response
    T = max(len(r) for r in rows)
    x = torch.zeros(len(rows), T, dtype=torch.long)
    mask = torch.zeros(len(rows), T - 1)
    for i, (r, (a, b)) in enumerate(zip(rows, spans)):
        x[i, : len(r)] = r
        mask[i, a:b] = 1
    return x, mask


def _grads(model, x, mask, share):
    model.zero_grad(set_to_none=True)
    logp, ent = policy_logprobs(model, x, mask, 0.7, share)
    (logp * mask).sum().backward()
    return logp.detach(), ent, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("depth", [1, 2])
def test_shared_prefix_matches_plain_forward(depth):
    from scalinglab.model import ModelConfig, Transformer

    torch.manual_seed(depth)
    model = Transformer(ModelConfig.from_depth(depth, vocab_size=128))
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # GQA path covered
    x, mask = _batch()
    lp0, ent0, g0 = _grads(model, x, mask, share=False)
    lp1, ent1, g1 = _grads(model, x, mask, share=True)
    on = mask > 0
    assert torch.allclose(lp1[on], lp0[on], atol=1e-5, rtol=1e-5)
    assert torch.allclose(ent1[on], ent0[on], atol=1e-5, rtol=1e-5)
    assert set(g1) == set(g0)
    for n in g0:
        assert torch.allclose(g1[n], g0[n], atol=1e-5, rtol=1e-4), n
    # the check can fail: a prompt seen by the wrong rows changes the log-probs
    x_bad = x.clone()
    x_bad[1, 0] = (x_bad[1, 0] + 1) % 100 + 4
    assert not torch.allclose(policy_logprobs(model, x_bad, mask, 0.7, True)[0][1][on[1]], lp0[1][on[1]])


def test_grpo_step_with_shared_prefixes_makes_the_same_update(tiny_model):
    """One GRPO optimizer step on a real rollout (8 samples per prompt): the same new weights either way."""
    import copy

    from scalinglab.engine import Engine
    from scalinglab.tasks import get_task
    from scalinglab.train.common import make_optimizer
    from scalinglab.train.grpo import GRPOConfig, grpo_step
    from scalinglab.train.rollout import rollout

    model, tok = tiny_model
    task = get_task("arithmetic")
    ro = rollout(Engine(model, tok, max_batch=32), task, task.generate(3, seed=1), 8, 12, 1.0, seed=5)
    adv = torch.randn(
        ro.ids.shape[0], generator=torch.Generator().manual_seed(0)
    )  # any advantages: the update must agree
    after = {}
    for share in (False, True):
        m = copy.deepcopy(model).train()
        opt = make_optimizer(m, 1e-2, 0.0)
        stats = grpo_step(m, opt, ro, adv, GRPOConfig(share_prefix=share, micro_batch=16), 0, 12)
        after[share] = ({n: p.detach().clone() for n, p in m.named_parameters()}, stats)
    (w0, s0), (w1, s1) = after[False], after[True]
    moved = max(float((w0[n] - p.detach()).abs().max()) for n, p in model.named_parameters())
    assert moved > 1e-4  # the step changed the weights, so agreeing is not trivial
    for n in w0:
        assert torch.allclose(w1[n], w0[n], atol=1e-5), n
    for k in ("loss", "entropy", "grad_norm"):
        assert s1[k] == pytest.approx(s0[k], rel=1e-4, abs=1e-6), k
