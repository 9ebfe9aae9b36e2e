"""Honest compute (issue 17, section 5): prefill FLOPs count the LM head only at the last
prompt position, and test-time strategies that call a reward model pay for its forwards.
Every expected number is written out by hand from the architecture."""

import pytest

from scalinglab.engine import Engine, SamplingParams
from scalinglab.model import ModelConfig
from scalinglab.tasks import get_task
from scalinglab.testtime.sampling import SampledStrategy
from scalinglab.testtime.search import BeamSearch

ARITH = get_task("arithmetic")

# depth-1 model, vocabulary 128: width 64, 2 heads of 32, 1 KV head, MLP 192 (ceil(8·64/3/32)·32)
BODY = 2 * (64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 192 + 2 * 64 + 64)  # 2 × 49,344 weights (norms included)
HEAD = 2 * 128 * 64  # LM head per position
PAIR = 4 * 1 * 2 * 32  # QK^T + AV per attended position: 4 · layers · heads · head_dim


def test_flop_formulas_by_hand():
    cfg = ModelConfig.from_depth(1, vocab_size=128)
    assert cfg.non_embedding_params == 49_344 and BODY == 98_688 and HEAD == 16_384 and PAIR == 256
    # prefill of 9 tokens: 9 bodies, 1 + 2 + ... + 9 = 45 attended positions, ONE LM head (the last row)
    assert cfg.prefill_flops(9) == 9 * BODY + 45 * PAIR + 1 * HEAD == 899_712 + 16_384
    # decoding 3 tokens after it: positions 9, 10, 11 attend to 10, 11, 12 positions, logits at each
    assert cfg.forward_flops(9, 3) == 3 * BODY + (10 + 11 + 12) * PAIR + 3 * HEAD
    # what was counted before: the LM head at every prompt position
    assert cfg.forward_flops(0, 9) - cfg.prefill_flops(9) == 8 * HEAD


def test_engine_counts_prefill_head_once(tiny_model):
    model, tok = tiny_model
    res = Engine(model, tok).generate(["12+34=?\n"], SamplingParams(n=2, max_new_tokens=3, ignore_eos=True, seed=0))
    assert res.prompt_tokens == 9  # BOS + 8 characters
    assert res.prompt_flops == 9 * BODY + 45 * PAIR + HEAD
    assert res.generated_flops == 2 * (3 * BODY + (10 + 11 + 12) * PAIR + 3 * HEAD)


def test_lm_head_share_of_the_old_prefill_count_for_a_150k_vocabulary():
    # Qwen2.5-0.5B's shape (vocabulary 151,936): the head is ~27% of the old per-position count
    cfg = ModelConfig(
        vocab_size=151_936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        head_dim=64,
        attention_bias=True,
        max_position_embeddings=32_768,
    )
    old, new = cfg.forward_flops(0, 512), cfg.prefill_flops(512)
    assert old - new == 511 * 2 * 151_936 * 896
    assert 0.26 < (old - new) / old < 0.28


# -- reward-model compute in test-time strategies ------------------------------------------


def _rm(model, tok, kind):
    from scalinglab.train.reward_model import RewardModel

    return RewardModel(model, tok, kind=kind, meta={"task": "arithmetic"}).eval()


def test_rm_forward_flops_by_hand(tiny_model):
    model, tok = tiny_model
    rm = _rm(model, tok, "orm")
    # 12 tokens: 12 bodies, 78 attended positions, the LM head at all 12 (the confidence feature reads
    # every token's log-prob), then the scalar head (2·64 + 1) and the confidence gain (2) per position
    assert rm.forward_flops(12) == 12 * BODY + 78 * PAIR + 12 * HEAD + 12 * (2 * 64 + 3)


def test_best_of_n_with_orm_pays_for_the_rm(tiny_model):
    from scalinglab.train.reward_model import outcome_ids

    model, tok = tiny_model
    rm = _rm(model, tok, "orm")
    problems = ARITH.generate(3, seed=1)
    strat = SampledStrategy(
        Engine(model, tok), ARITH, "best-of-n", SamplingParams(max_new_tokens=12, seed=2), "orm", rm
    )
    attempts, drawn = strat.draw(problems, 4)
    from scalinglab.testtime.sampling import select

    for n in (1, 4):
        cost = select(attempts, n, "best-of-n", ARITH).cost
        texts = [(a.problem.prompt, s.text) for a in attempts for s in a.samples[:n]]
        lengths = [len(outcome_ids(tok, p, t)) for p, t in texts]  # <bos> prompt completion <eos>
        assert cost.reward_tokens == sum(lengths)
        assert cost.reward_flops == pytest.approx(
            sum(L * BODY + L * (L + 1) / 2 * PAIR + L * HEAD + L * 131 for L in lengths)
        )
        assert cost.flops == pytest.approx(cost.prompt_flops + cost.generated_flops + cost.reward_flops)
        # the RM reads prompt + completion with logits everywhere: more than the policy's own decode
        assert cost.reward_flops > cost.generated_flops
    # the weighted vote scores the same samples: the same RM bill
    w = SampledStrategy(
        Engine(model, tok), ARITH, "weighted", SamplingParams(max_new_tokens=12, seed=2), "orm", rm
    ).solve(problems, 4)
    assert w.cost.reward_flops == pytest.approx(select(attempts, 4, "best-of-n", ARITH).cost.reward_flops)
    assert w.cost.to_json()["flops"] == pytest.approx(w.cost.policy_flops + w.cost.reward_flops)


def test_best_of_n_with_prm_pays_for_each_scored_sample(tiny_model):
    from scalinglab.train.reward_model import step_ids

    model, tok = tiny_model
    rm = _rm(model, tok, "prm")
    problems = ARITH.generate(2, seed=3)
    r = SampledStrategy(Engine(model, tok), ARITH, "best-of-n", SamplingParams(max_new_tokens=16, seed=4), "prm", rm)
    attempts, _ = r.draw(problems, 3)
    from scalinglab.testtime.sampling import select

    cost = select(attempts, 3, "best-of-n", ARITH).cost
    lengths = [
        len(step_ids(tok, a.problem.prompt, ARITH.split_steps(s.text))[0])
        for a in attempts
        for s in a.samples
        if ARITH.split_steps(s.text)
    ]  # no step: the PRM is not called
    assert lengths and cost.reward_tokens == sum(lengths)
    assert cost.reward_flops == pytest.approx(sum(rm.forward_flops(L) for L in lengths))


@pytest.mark.parametrize("scorer", ["prm", "orm"])
def test_beam_search_adds_the_rm_forwards(tiny_model, scorer):
    model, tok = tiny_model
    rm = _rm(model, tok, scorer)
    before_t, before_f = rm.tokens_scored, rm.flops_spent
    bs = BeamSearch(
        Engine(model, tok, max_batch=32),
        ARITH,
        scorer,
        rm,
        expand=2,
        max_steps=2,
        step_tokens=6,
        params=SamplingParams(seed=1),
    )
    r = bs.solve(ARITH.generate(2, seed=2), 4)
    spent = rm.flops_spent - before_f
    assert spent > 0 and r.cost.reward_flops == pytest.approx(spent)
    assert r.cost.reward_tokens == rm.tokens_scored - before_t
    assert r.cost.flops == pytest.approx(r.cost.prompt_flops + r.cost.generated_flops + spent)
