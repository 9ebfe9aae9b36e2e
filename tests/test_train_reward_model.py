"""The reward-model API other code relies on: load_reward_model, score_outcomes, score_steps(_batch)."""

import json
import math

import pytest
import torch
from typer.testing import CliRunner

from scalinglab.errors import UserError
from scalinglab.model import ModelConfig, Transformer
from scalinglab.model.hf import load_model, save_model
from scalinglab.model.tokenizer import CharTokenizer
from scalinglab.train.reward_model import (
    RewardModel,
    load_reward_model,
    outcome_ids,
    running_min_logprob,
    save_reward_model,
    step_ids,
)


@pytest.fixture
def rm():
    torch.manual_seed(0)
    return RewardModel(
        Transformer(ModelConfig.from_depth(1, vocab_size=128)).eval(),
        CharTokenizer(),
        kind="orm",
        meta={"task": "arithmetic"},
    ).eval()


def test_running_min_logprob_by_hand():
    # vocab 3; logits chosen so log-softmax is easy: row [0, 0, 0] -> log(1/3) for every token
    logits = torch.zeros(1, 4, 3)
    logits[0, 1] = torch.tensor([0.0, math.log(3.0), 0.0])  # predicts ids[2]=1 with p = 3/5
    ids = torch.tensor([[0, 2, 1, 0]])
    got = running_min_logprob(logits, ids, torch.tensor([2]))[0]
    # positions 0, 1 before start -> 0; position 2: log(3/5); position 3: min(log 3/5, log 1/3)
    assert got.tolist() == pytest.approx([0.0, 0.0, math.log(0.6), math.log(1 / 3)], abs=1e-6)
    assert running_min_logprob(logits, ids, torch.tensor([1]))[0, 1].item() == pytest.approx(math.log(1 / 3), abs=1e-6)


def test_scores_are_the_head_at_the_right_tokens(rm):
    tok = rm.tok
    with torch.no_grad():
        rm.confidence.weight.fill_(0.7)
    prompts, comps = ["12+3=?\n", "9-1=?\n", "1=?\n"], ["1+2\nA: 15\n", "A: 8\n", "A: 1000000\n"]
    got = rm.score_outcomes(prompts, comps)
    for p, c, g in zip(prompts, comps, got):  # batched + padded == one by one, at the final EOS
        ids = outcome_ids(tok, p, c)
        start = len(tok.encode(p, bos=True))
        x = torch.tensor([ids])
        with torch.no_grad():  # independently: head at the EOS + 0.7 * min log p of the completion's tokens
            lp = torch.log_softmax(rm.backbone(x)[0], -1)
            conf = min(lp[t - 1, ids[t]].item() for t in range(start, len(ids)))
            z = rm.score(rm.backbone.hidden_states(x))[0, -1, 0].item() + 0.7 * conf
        assert g == pytest.approx(torch.sigmoid(torch.tensor(z)).item(), abs=1e-5)
    steps = ["1+2+0=3\n", "A: 3\n"]
    ids, ends = step_ids(tok, "1+2=?\n", steps)
    z = torch.sigmoid(rm(torch.tensor([ids]), torch.tensor([len(tok.encode("1+2=?\n", bos=True))]))[0])
    assert rm.score_steps("1+2=?\n", steps) == pytest.approx([z[e].item() for e in ends], abs=1e-6)
    batch = rm.score_steps_batch(["1+2=?\n", "7=?\n"], [steps, ["A: 7\n"]])
    assert batch[0] == pytest.approx(rm.score_steps("1+2=?\n", steps), abs=1e-6) and len(batch[1]) == 1
    assert rm.score_outcomes([], []) == [] and rm.score_steps("x", []) == []
    with pytest.raises(UserError):
        rm.score_outcomes(["a"], [])


def test_prm_outcome_score_aggregates_step_scores(rm):
    prm = RewardModel(rm.backbone, rm.tok, kind="prm", meta={"task": "arithmetic"})
    comp = "1+2+0=3\nA: 3\n"
    steps = prm.score_steps("1+2=?\n", ["1+2+0=3\n", "A: 3\n"])
    assert prm.score_outcomes(["1+2=?\n"], [comp]) == pytest.approx([min(steps)])
    assert prm.score_outcomes(["1+2=?\n"], [comp], aggregate="last") == pytest.approx([steps[-1]])


def test_save_load_round_trip_and_backbone_still_loads(rm, tmp_path):
    with torch.no_grad():
        rm.score.bias.fill_(0.3)
        rm.confidence.weight.fill_(1.5)
    save_reward_model(rm, tmp_path / "rm")
    back = load_reward_model(tmp_path / "rm")
    args = (["12+3=?\n", "9-1=?\n"], ["A: 15\n", "A: 9\n"])
    assert back.score_outcomes(*args) == pytest.approx(rm.score_outcomes(*args), abs=1e-6)
    assert back.kind == "orm" and back.meta["task"] == "arithmetic" and back.confidence.weight.item() == 1.5
    m, _ = load_model(tmp_path / "rm")  # plain HF layout next to the head
    assert torch.equal(m.lm_head.weight, rm.backbone.lm_head.weight)
    save_model(rm.backbone, rm.tok, tmp_path / "plain")
    with pytest.raises(UserError, match="not a reward model"):
        load_reward_model(tmp_path / "plain")


def test_cli_json_and_bad_input(tmp_path, rm):
    from scalinglab.cli import app
    from scalinglab.runs.store import write_jsonl
    from scalinglab.tasks import get_task

    save_model(rm.backbone, rm.tok, tmp_path / "tiny")
    ps = get_task("arithmetic").generate(4, seed=1)
    write_jsonl(
        tmp_path / "lab.jsonl",
        [{"prompt": p.prompt, "answer": p.answer, "completion": c} for p in ps for c in (p.solution, "A: 0\n")],
    )
    r = CliRunner().invoke(
        app,
        [
            "train",
            "reward-model",
            "--model",
            str(tmp_path / "tiny"),
            "--data",
            str(tmp_path / "lab.jsonl"),
            "--steps",
            "2",
            "--out",
            str(tmp_path / "rm"),
            "--set",
            "eval_problems=0",
            "--set",
            "device=cpu",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["rm_kind"] == "orm" and out["steps"] == 2 and out["examples"] == 8
    r = CliRunner().invoke(
        app,
        [
            "train",
            "sft",
            "--model",
            str(tmp_path / "tiny"),
            "--data",
            str(tmp_path / "nope.jsonl"),
            "--out",
            str(tmp_path / "s"),
        ],
    )
    assert isinstance(r.exception, UserError) and "nope.jsonl" in str(r.exception)
    assert not (tmp_path / "s").exists()  # no half-made run directory left behind


def test_probe_recovers_a_known_head(rm):
    """Soft targets made by a known head + gain: the logistic probe's minimiser is that head."""
    from scalinglab.train.reward_trainer import RewardModelConfig, _encode, fit_probe

    cfg = RewardModelConfig(kind="orm")
    torch.manual_seed(1)
    with torch.no_grad():
        rm.score.weight.normal_(std=0.5)
        rm.score.bias.fill_(-0.2)
        rm.confidence.weight.fill_(0.8)
    items = [
        {"prompt": f"{a}+{b}=?\n", "completion": f"A: {a + b + d}\n", "correct": True}
        for a in range(0, 60, 7)
        for b in range(3, 40, 9)
        for d in (0, 1, 11)
    ]
    truth = rm.score_outcomes([i["prompt"] for i in items], [i["completion"] for i in items])
    enc = [(*_encode(cfg, rm.tok, i)[:2], [t], _encode(cfg, rm.tok, i)[3]) for i, t in zip(items, truth)]
    with torch.no_grad():  # forget the head
        rm.score.weight.zero_(), rm.score.bias.zero_(), rm.confidence.weight.zero_()
    fit_probe(rm, cfg, enc, "cpu", l2=0.0, iters=500)
    got = rm.score_outcomes([i["prompt"] for i in items], [i["completion"] for i in items])
    assert max(abs(g - t) for g, t in zip(got, truth)) < 0.02
    assert len({round(t, 2) for t in truth}) > 10  # the targets really vary


def test_auc_bootstrap_ci_resamples_problems():
    from scalinglab.train.reward_model import auc, auc_bootstrap_ci

    # perfectly separated: every resample with both classes has AUC 1
    assert auc_bootstrap_ci([0.9, 0.8, 0.2, 0.1], [True, True, False, False], ["a", "a", "b", "c"]) == (1.0, 1.0)
    # problem p4 ranks its pair wrongly: the point estimate lies inside a CI that has width
    scores = [0.9, 0.1, 0.8, 0.3, 0.7, 0.2, 0.4, 0.6]
    labels = [True, False, True, False, True, False, True, False]
    groups = ["p1", "p1", "p2", "p2", "p3", "p3", "p4", "p4"]
    lo, hi = auc_bootstrap_ci(scores, labels, groups, resamples=300)
    assert lo < auc(scores, labels) == 15 / 16 < hi == 1.0  # 15 of 16 pairs in order; p4 drawn often: lower
    assert all(math.isnan(x) for x in auc_bootstrap_ci([0.5, 0.6], [True, True], ["a", "b"]))  # one class only
