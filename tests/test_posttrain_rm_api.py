"""The reward-model API other code relies on: load_reward_model, score_outcomes, score_steps(_batch)."""

import json

import pytest
import torch
from typer.testing import CliRunner

from scalinglab.errors import UserError
from scalinglab.model import ModelConfig, Transformer
from scalinglab.model.hf import load_model, save_model
from scalinglab.model.tokenizer import CharTokenizer
from scalinglab.train.reward_model import RewardModel, load_reward_model, outcome_ids, save_reward_model, step_ids


@pytest.fixture
def rm():
    torch.manual_seed(0)
    return RewardModel(Transformer(ModelConfig.from_depth(1, vocab_size=128)).eval(), CharTokenizer(), kind="orm",
                       meta={"task": "arithmetic"}).eval()


def test_scores_are_the_head_at_the_right_tokens(rm):
    tok = rm.tok
    prompts, comps = ["12+3=?\n", "9-1=?\n", "1=?\n"], ["1+2\nA: 15\n", "A: 8\n", "A: 1000000\n"]
    got = rm.score_outcomes(prompts, comps)
    for p, c, g in zip(prompts, comps, got):  # batched + padded == one by one, at the final EOS
        ids = outcome_ids(tok, p, c)
        z = rm(torch.tensor([ids]))[0, -1]
        assert g == pytest.approx(torch.sigmoid(z).item(), abs=1e-6)
    steps = ["1+2+0=3\n", "A: 3\n"]
    ids, ends = step_ids(tok, "1+2=?\n", steps)
    z = torch.sigmoid(rm(torch.tensor([ids]))[0])
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
    save_reward_model(rm, tmp_path / "rm")
    back = load_reward_model(tmp_path / "rm")
    args = (["12+3=?\n", "9-1=?\n"], ["A: 15\n", "A: 9\n"])
    assert back.score_outcomes(*args) == pytest.approx(rm.score_outcomes(*args), abs=1e-6)
    assert back.kind == "orm" and back.meta["task"] == "arithmetic"
    m, _ = load_model(tmp_path / "rm")  # plain HF layout next to the head
    assert torch.equal(m.lm_head.weight, rm.backbone.lm_head.weight)
    save_model(rm.backbone, rm.tok, tmp_path / "plain")
    with pytest.raises(UserError, match="not a reward model"):
        load_reward_model(tmp_path / "plain")


def test_cli_json_and_bad_input(tmp_path, rm):
    from scalinglab.cli import app
    from scalinglab.tasks import get_task, write_jsonl

    save_model(rm.backbone, rm.tok, tmp_path / "tiny")
    ps = get_task("arithmetic").generate(4, seed=1)
    write_jsonl(tmp_path / "lab.jsonl", [{"prompt": p.prompt, "answer": p.answer, "completion": c} for p in ps for c in (p.solution, "A: 0\n")])
    r = CliRunner().invoke(app, ["train", "reward-model", "--model", str(tmp_path / "tiny"), "--data", str(tmp_path / "lab.jsonl"),
                                 "--steps", "2", "--out", str(tmp_path / "rm"), "--set", "eval_problems=0", "--set", "device=cpu", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["rm_kind"] == "orm" and out["steps"] == 2 and out["examples"] == 8
    r = CliRunner().invoke(app, ["train", "sft", "--model", str(tmp_path / "tiny"), "--data", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "s")])
    assert isinstance(r.exception, UserError) and "nope.jsonl" in str(r.exception)
    assert not (tmp_path / "s").exists()  # no half-made run directory left behind
