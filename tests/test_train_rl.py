"""GRPO and PPO trainers on a tiny random model: rollout layout, 3 steps change the
parameters, exact gradient accumulation (1 × 8 == 8 × 1), stopping on a bad step with the
last good checkpoint kept, and SIGKILL + --resume leaving every step once in metrics.jsonl."""

import copy
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import scalinglab.tasks as tasks_mod
from scalinglab.engine import Engine
from scalinglab.model import ModelConfig, Transformer
from scalinglab.model.hf import load_model, save_model
from scalinglab.model.tokenizer import CharTokenizer
from scalinglab.train import grpo as grpo_mod
from scalinglab.train.advantages import ADVANTAGES
from scalinglab.train.common import NonFiniteError
from scalinglab.train.grpo import GRPOConfig, grpo_step, train_grpo
from scalinglab.train.kl import mismatch_stats
from scalinglab.train.ppo import PPOConfig, ValueModel, ppo_step, token_rewards, train_ppo
from scalinglab.train.rollout import rollout, sequence_logprobs
from scalinglab.verify.verdict import Verdict

ARITH = tasks_mod.get_task("arithmetic")


class Toy:
    """Arithmetic prompts; reward 1 when the completion contains a '1' (a random model
    gets both outcomes, so every group has signal)."""

    name, stop = "toy", ()

    def generate(self, n, seed, difficulty=None):
        return ARITH.generate(n, seed, difficulty)

    def check(self, p, c):
        return Verdict.right() if "1" in c else Verdict.wrong("no 1")

    def split_steps(self, c):
        return ARITH.split_steps(c)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("rl") / "tiny"
    save_model(Transformer(ModelConfig.from_depth(1, vocab_size=128)), CharTokenizer(), d)
    return d


@pytest.fixture
def toy(monkeypatch):
    orig = tasks_mod.get_task
    monkeypatch.setattr(tasks_mod, "get_task", lambda name: Toy() if name == "toy" else orig(name))
    return Toy()


SMALL = dict(task="toy", prompts_per_step=4, max_new_tokens=10, eval_problems=0, device="cpu", lr=1e-3)


def _params(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_rollout_layout_and_temperature(tiny, toy):
    model, tok = load_model(tiny)
    assert tok.pad_id != tok.eos_id
    ro = rollout(Engine(model, tok), toy, toy.generate(2, seed=1), n=3, max_new_tokens=10, temperature=0.7, seed=3)
    assert ro.ids.shape[0] == 6 and ro.group.tolist() == [0, 0, 0, 1, 1, 1]
    for i in range(6):
        resp = ro.ids[i, 1:][ro.mask[i] > 0].tolist()  # masked targets are exactly the response
        assert tok.decode(resp) == ro.texts[i]
        assert len(resp) <= 10 and (ro.truncated[i] or resp[-1] == tok.eos_id)
        assert int(ro.last[i]) == int(ro.mask[i].nonzero().max())
        end = int(ro.last[i]) + 2
        assert (ro.ids[i, end:] == tok.pad_id).all()
    # the trainer reproduces the sampler's log-probs only at the sampling temperature
    lp, _ = sequence_logprobs(model, ro.ids, ro.mask, 0.7, micro_batch=4)
    assert mismatch_stats(ro.engine_logp, lp, ro.mask)["mismatch_abs"] < 1e-4
    lp1, _ = sequence_logprobs(model, ro.ids, ro.mask, 1.0, micro_batch=4)
    assert mismatch_stats(ro.engine_logp, lp1, ro.mask)["mismatch_abs"] > 1e-2


def test_grpo_three_steps_changes_parameters(tiny, toy, tmp_path):
    before = _params(load_model(tiny)[0])
    s = train_grpo(GRPOConfig(steps=3, group_size=4, **SMALL), str(tiny), str(tmp_path / "g"))
    after = _params(load_model(tmp_path / "g")[0])
    assert any(not torch.equal(before[k], after[k]) for k in before)
    recs = [json.loads(x) for x in (tmp_path / "g" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3]
    for key in (
        "reward",
        "accuracy",
        "response_length",
        "entropy",
        "kl",
        "clip_frac",
        "grad_norm",
        "frac_reward_zero_std",
        "mismatch_abs",
        "mismatch_kl",
        "tokens_per_s",
        "wall_time",
    ):
        assert key in recs[0], key
    assert s["steps"] == 3
    for r in recs:  # the step's time, broken down: generation, scoring, training, each inside the step
        parts = [r["generate_seconds"], r["score_seconds"], r["train_seconds"]]
        assert all(p > 0 for p in parts) and sum(parts) <= r["step_seconds"], r


def test_ppo_three_steps_changes_parameters(tiny, toy, tmp_path):
    before = _params(load_model(tiny)[0])
    train_ppo(PPOConfig(steps=3, samples_per_prompt=2, **SMALL), str(tiny), str(tmp_path / "p"))
    after = _params(load_model(tmp_path / "p")[0])
    assert any(not torch.equal(before[k], after[k]) for k in before)
    recs = [json.loads(x) for x in (tmp_path / "p" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3] and all(r["vf_loss"] >= 0 for r in recs)
    assert all(
        min(r["generate_seconds"], r["score_seconds"], r["train_seconds"]) > 0
        and r["generate_seconds"] + r["score_seconds"] + r["train_seconds"] <= r["step_seconds"]
        for r in recs
    )


def test_ppo_with_prm_rewards(tiny, toy, tmp_path):
    from scalinglab.train.reward_model import RewardModel, save_reward_model

    backbone, tok = load_model(tiny)
    save_reward_model(RewardModel(backbone, tok, kind="prm", meta={"task": "arithmetic"}), tmp_path / "prm")
    model, tok = load_model(tiny)
    ro = rollout(Engine(model, tok), toy, toy.generate(2, seed=1), n=2, max_new_tokens=10, temperature=1.0, seed=3)
    from scalinglab.train.reward_model import load_reward_model

    rm = load_reward_model(tmp_path / "prm")
    cfg = PPOConfig(reward="prm", reward_model=str(tmp_path / "prm"), prm_shaping="sum")
    sc = token_rewards(ro, cfg, rm, tok, toy)
    sc_min = token_rewards(
        ro, PPOConfig(reward="prm", reward_model=str(tmp_path / "prm")), rm, tok, toy
    )  # default: min-form
    for i, text in enumerate(ro.texts):  # one score per step, each inside the response
        n_steps = len(toy.split_steps(text))
        assert int((sc[i] != 0).sum()) <= n_steps and (sc[i] * (1 - ro.mask[i])).abs().sum() == 0
        if n_steps:
            step_scores = rm.score_steps(ro.prompts[i], toy.split_steps(text))
            assert float(sc[i].sum()) == pytest.approx(sum(step_scores), abs=1e-5)
            assert float(sc_min[i].sum()) == pytest.approx(min(step_scores), abs=1e-5)
    train_ppo(
        PPOConfig(steps=2, samples_per_prompt=2, reward="prm", reward_model=str(tmp_path / "prm"), **SMALL),
        str(tiny),
        str(tmp_path / "p"),
    )
    assert len((tmp_path / "p" / "metrics.jsonl").read_text().splitlines()) == 2


def _batch(tiny, toy):
    model, tok = load_model(tiny)
    ro = rollout(Engine(model, tok), toy, toy.generate(2, seed=5), n=4, max_new_tokens=10, temperature=1.0, seed=11)
    assert ro.rewards.std() > 0
    return model, tok, ro


def _delta(m0, m1):
    return torch.cat([(a - b).flatten() for a, b in zip(m1.parameters(), m0.parameters())])


def test_grad_accumulation_exact_grpo(tiny, toy):
    model, _, ro = _batch(tiny, toy)
    adv = ADVANTAGES["zscore"](ro.rewards.view(2, 4)).reshape(-1)
    deltas = []
    for micro in (8, 1, 3):  # 8 samples × 1 step, 1 sample × 8 accumulation steps, length-sorted chunks of 3
        m = copy.deepcopy(model)
        opt = torch.optim.SGD(m.parameters(), lr=1.0)
        grpo_step(m, opt, ro, adv, GRPOConfig(micro_batch=micro, grad_clip=1e9), step=0, max_new_tokens=10)
        deltas.append(_delta(model, m))
    assert deltas[0].abs().max() > 1e-4
    torch.testing.assert_close(deltas[1], deltas[0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(deltas[2], deltas[0], rtol=1e-5, atol=1e-7)


def test_grpo_minibatches_recompute_old_logprobs(tiny, toy):
    model, _, ro = _batch(tiny, toy)
    adv = ADVANTAGES["center"](ro.rewards.view(2, 4)).reshape(-1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    st = grpo_step(model, opt, ro, adv, GRPOConfig(minibatches=2, epochs=2, micro_batch=3), step=0, max_new_tokens=10)
    assert st["optimizer_steps"] == 4
    assert st["mismatch_abs"] < 1e-4  # old log-probs from a separate pass before any update
    assert st["ppo_kl"] != 0.0  # later minibatches see a moved policy


def test_grad_accumulation_exact_ppo(tiny, toy):
    model, tok, ro = _batch(tiny, toy)
    scores = token_rewards(ro, PPOConfig(), None, tok, toy)
    deltas = []
    for micro in (8, 1):
        m, critic = copy.deepcopy(model), ValueModel(copy.deepcopy(model))
        ref = copy.deepcopy(model)
        opt, copt = torch.optim.SGD(m.parameters(), lr=1.0), torch.optim.SGD(critic.parameters(), lr=1.0)
        ppo_step(
            m, critic, opt, copt, ro, scores, ref, PPOConfig(micro_batch=micro, minibatches=1, grad_clip=1e9), step=0
        )
        deltas.append(_delta(model, m))
    assert deltas[0].abs().max() > 1e-4
    torch.testing.assert_close(deltas[1], deltas[0], rtol=1e-5, atol=1e-7)


def test_bad_step_stops_and_keeps_last_checkpoint(tiny, toy, tmp_path, monkeypatch):
    real, calls = grpo_mod.grpo_loss, {"n": 0}

    def nan_at_step_3(*a, **k):
        loss, st = real(*a, **k)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] >= 3 else loss), st

    monkeypatch.setattr(grpo_mod, "grpo_loss", nan_at_step_3)
    cfg = GRPOConfig(steps=5, group_size=4, checkpoint_every=1, **SMALL)
    with pytest.raises(NonFiniteError, match=r"step \d: non-finite loss=nan") as e:
        train_grpo(cfg, str(tiny), str(tmp_path / "g"))
    bad = int(str(e.value).split()[1].rstrip(":"))  # the third update (a step without signal makes none)
    assert bad >= 3
    ckpts = sorted(int(p.name[5:]) for p in (tmp_path / "g" / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert ckpts[-1] == bad - 1
    assert [json.loads(x)["step"] for x in (tmp_path / "g" / "metrics.jsonl").read_text().splitlines()] == list(
        range(1, bad)
    )
    m, _ = load_model(tmp_path / "g" / "checkpoints" / f"step-{bad - 1}" / "model")
    assert all(torch.isfinite(p).all() for p in m.parameters())
    monkeypatch.setattr(grpo_mod, "grpo_loss", real)
    with pytest.raises(NonFiniteError, match="exploding"):
        train_grpo(GRPOConfig(steps=2, group_size=4, abort_grad_norm=1e-9, **SMALL), str(tiny), str(tmp_path / "h"))


def _cli(*args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "scalinglab.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, **kw
    )


def test_cli_rejects_unknown_key(tiny, tmp_path):
    p = _cli("train", "grpo", "--model", str(tiny), "--out", str(tmp_path / "x"), "--set", "nope=1")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and b"unknown config key 'nope'" in err


def test_sigkill_then_resume_logs_every_step_once(tiny, tmp_path):
    out = tmp_path / "k"
    # 60 steps: with the native engine a step of this size takes ~10 ms, and the kill must land
    # well before the end (12 steps sometimes finished between two polls)
    args = [
        "train",
        "grpo",
        "--model",
        str(tiny),
        "--task",
        "arithmetic",
        "--steps",
        "60",
        "--seed",
        "0",
        "--checkpoint-every",
        "3",
        "--out",
        str(out),
        "--set",
        "prompts_per_step=2",
        "--set",
        "group_size=2",
        "--set",
        "max_new_tokens=8",
        "--set",
        "eval_problems=0",
        "--set",
        "device=cpu",
        "--json",
    ]
    p = _cli(*args)
    deadline = time.time() + 120
    metrics = out / "metrics.jsonl"
    while time.time() < deadline:  # kill once a checkpoint exists and steps past it were logged
        n = len(metrics.read_text().splitlines()) if metrics.exists() else 0
        if n >= 5 and p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL, "run finished before it could be killed"
    assert not (out / "summary.json").exists()
    p = _cli(*args[:-1], "--resume", "--json")
    stdout, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-2000:]
    summary = json.loads(stdout)
    assert summary["steps"] == 60
    steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines()]
    assert steps == list(range(1, 61))


def test_resume_before_first_checkpoint_starts_over_cleanly(tiny, toy, tmp_path):
    cfg = GRPOConfig(steps=2, group_size=2, **SMALL)
    train_grpo(cfg, str(tiny), str(tmp_path / "r"))
    (tmp_path / "r" / "summary.json").unlink()  # as if killed after logging both steps, with no checkpoint
    train_grpo(cfg, str(tiny), str(tmp_path / "r"), resume=True)
    assert [json.loads(x)["step"] for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()] == [1, 2]
