"""Verifier errors (timeouts, sandbox faults: `Verdict.error` / `verifier_error: true`) are
neither right nor wrong answers (issue 17, section 5): with a fake verifier that errors on
some samples, the errored samples get zero advantage and no loss weight in GRPO and PPO,
never become a DPO/RM chosen or rejected answer or an ORM label, are left out of the AUC,
and are counted (`verifier_errors`). The RL summaries also state `prompts_seen`."""

import json
from types import SimpleNamespace

import pytest
import torch

import scalinglab.tasks as tasks_mod
from scalinglab.model import ModelConfig, Transformer
from scalinglab.model.hf import save_model
from scalinglab.model.tokenizer import CharTokenizer
from scalinglab.runs.store import read_jsonl
from scalinglab.train.advantages import group_advantages, zero_std_groups
from scalinglab.train.grpo import GRPOConfig, grpo_advantages
from scalinglab.verify.verdict import Verdict

ARITH = tasks_mod.get_task("arithmetic")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("verr") / "tiny"
    save_model(Transformer(ModelConfig.from_depth(1, vocab_size=128)), CharTokenizer(), d)
    return d


class Flaky:
    """Arithmetic prompts; every other verdict (the 2nd, 4th, ... call) is a verifier error,
    the others reward a completion containing a '1' (a random model gets both outcomes)."""

    name, stop = "flaky", ()

    def __init__(self):
        self.calls, self.errored = 0, []

    def generate(self, n, seed, difficulty=None):
        return ARITH.generate(n, seed, difficulty)

    def check(self, p, c):
        self.calls += 1
        if self.calls % 2 == 0:
            self.errored.append(c)
            return Verdict.failed("timeout after 5 s")
        return Verdict.right() if "1" in c else Verdict.wrong("no 1")

    def split_steps(self, c):
        return ARITH.split_steps(c)


@pytest.fixture
def flaky(monkeypatch):
    task = Flaky()
    orig = tasks_mod.get_task
    monkeypatch.setattr(tasks_mod, "get_task", lambda name: task if name == "flaky" else orig(name))
    return task


RL = dict(task="flaky", prompts_per_step=3, max_new_tokens=8, eval_problems=0, device="cpu", lr=1e-3)


# -- GRPO advantages -------------------------------------------------------------------------


def test_group_statistics_skip_errored_samples_by_hand():
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    valid = torch.tensor([[True, True, False, True], [True, True, False, True], [False, True, False, False]])
    adv = group_advantages(r, valid, "center")
    # group 0: answered rewards 1, 0, 0 → mean 1/3; the errored slot gets 0 (not −1/3 as a wrong answer would)
    assert adv[0].tolist() == pytest.approx([2 / 3, -1 / 3, 0.0, -1 / 3])
    # group 1: answered rewards all 1 → no signal, although the errored 0 would have looked like a wrong answer
    assert adv[1].tolist() == pytest.approx([0.0] * 4)
    assert adv[2].tolist() == pytest.approx([0.0] * 4)  # one answered sample: nothing to compare it with
    assert zero_std_groups(r, valid).tolist() == [False, True, True]
    assert zero_std_groups(r).tolist() == [False, False, False]  # what counting errors as 0 would say
    z = group_advantages(r, valid, "zscore")[0]  # std with Bessel over the answered three: sqrt(1/3)
    assert z.tolist() == pytest.approx(
        [(2 / 3) / (1 / 3) ** 0.5, -(1 / 3) / (1 / 3) ** 0.5, 0.0, -(1 / 3) / (1 / 3) ** 0.5], rel=1e-3
    )


def test_grpo_never_trains_on_an_errored_sample():
    ro = SimpleNamespace(
        rewards=torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0]),
        answered=torch.tensor([True, True, False, True, True, True, False, True]),
    )
    for filt in (True, False):
        adv, keep, zero = grpo_advantages(ro, GRPOConfig(group_size=4, advantage="center", filter_zero_std=filt))
        assert not keep[2] and not keep[6] and adv[2] == 0 and adv[6] == 0
        assert keep[:4].tolist() == [True, True, False, True] and zero.tolist() == [False, True]
        assert keep[4:].tolist() == ([False] * 4 if filt else [True, True, False, True])


def test_grpo_run_masks_and_counts_verifier_errors(tiny, flaky, tmp_path, monkeypatch):
    from scalinglab.train import grpo as grpo_mod

    seen = []
    real_step = grpo_mod.grpo_step

    def spy(model, opt, ro, adv, cfg, *a, **kw):
        seen.append((ro, adv))
        return real_step(model, opt, ro, adv, cfg, *a, **kw)

    monkeypatch.setattr(grpo_mod, "grpo_step", spy)
    s = grpo_mod.train_grpo(GRPOConfig(steps=2, group_size=6, **RL), str(tiny), str(tmp_path / "g"))
    recs = [json.loads(x) for x in (tmp_path / "g" / "metrics.jsonl").read_text().splitlines()]
    assert [r["verifier_errors"] for r in recs] == [9, 9]  # every other sample of 3 prompts × 6
    assert s["verifier_errors"] == 18 and s["prompts_seen"] == 6 and s["samples_seen"] == 36
    assert seen  # at least one step had signal among its answered samples
    for ro, adv in seen:  # what the update saw: answered samples only (3 per group of 6)
        assert ro.errored is not None and not ro.errored.any() and len(ro.texts) <= 9 and len(ro.texts) % 3 == 0
        assert len(adv) == len(ro.texts)


# -- PPO ---------------------------------------------------------------------------------------


def test_ppo_trains_on_answered_samples_only(tiny, flaky, tmp_path, monkeypatch):
    from scalinglab.train import ppo as ppo_mod

    seen = []
    real_step = ppo_mod.ppo_step

    def spy(policy, critic, opt, copt, ro, scores, ref, cfg, step):
        seen.append((ro, scores))
        return real_step(policy, critic, opt, copt, ro, scores, ref, cfg, step)

    monkeypatch.setattr(ppo_mod, "ppo_step", spy)
    s = ppo_mod.train_ppo(ppo_mod.PPOConfig(steps=2, samples_per_prompt=4, **RL), str(tiny), str(tmp_path / "p"))
    assert len(seen) == 2
    for ro, scores in seen:
        assert len(ro.texts) == 6 and bool(ro.answered.all())  # 12 sampled, the 6 errored left out of the update
        assert scores.shape[0] == 6
    recs = [json.loads(x) for x in (tmp_path / "p" / "metrics.jsonl").read_text().splitlines()]
    assert [r["verifier_errors"] for r in recs] == [6, 6] and [r["samples"] for r in recs] == [12, 12]
    assert s["verifier_errors"] == 12 and s["prompts_seen"] == 6 and s["samples_seen"] == 24


def test_ppo_train_rows_selects_the_answered(tiny, flaky):
    from scalinglab.engine import Engine
    from scalinglab.model.hf import load_model
    from scalinglab.train.ppo import PPOConfig, ppo_train_rows
    from scalinglab.train.rollout import rollout

    model, tok = load_model(tiny)
    ro = rollout(Engine(model, tok), flaky, flaky.generate(2, seed=1), n=3, max_new_tokens=8, temperature=1.0, seed=3)
    assert ro.errored.tolist() == [False, True, False, True, False, True] and ro.verifier_errors == 3
    kept = ppo_train_rows(ro, PPOConfig())
    assert kept.texts == [ro.texts[i] for i in (0, 2, 4)] and not kept.errored.any()
    assert ppo_train_rows(ro, PPOConfig(reward="orm")) is ro  # an RM's reward does not depend on the verifier


# -- preference pairs, reward-model labels, AUC ------------------------------------------------


def _samples_with_errors(model, tok, task, problems, k, temperature, seed, **kw):
    """Per problem: a right answer, a wrong one, and a verifier error (a right-looking text the
    verifier timed out on; counting it as wrong would make it a 'rejected' answer)."""
    rows = []
    for p in problems:
        wrong = p.solution.replace(f"A: {p.answer}", f"A: {int(p.answer) + 1}")
        for j, (c, ok, err) in enumerate(
            ((p.solution, True, False), (wrong, False, False), (p.solution + "#t\n", False, True))
        ):
            rows.append(
                {
                    "id": f"{p.id}#{j}",
                    "problem_id": p.id,
                    "task": p.task,
                    "prompt": p.prompt,
                    "answer": p.answer,
                    "completion": c,
                    "correct": ok,
                    "verifier_error": err,
                    "finish_reason": "stop",
                }
            )
    return rows


POST = dict(task="arithmetic", steps=1, batch_size=2, device="cpu", warmup_steps=1)


def test_build_pairs_never_uses_an_errored_sample():
    from scalinglab.train.data import build_pairs, drop_verifier_errors

    rows = _samples_with_errors(None, None, ARITH, ARITH.generate(5, seed=3), 3, 1.0, 0)
    pairs = build_pairs(rows, seed=0, max_per_prompt=4)
    assert len(pairs) == 5  # one right × one wrong per problem; the errored third adds nothing
    assert not any(x.endswith("#t\n") for q in pairs for x in (q["chosen"], q["rejected"]))
    assert drop_verifier_errors(rows)[1] == 5


def test_dpo_pairs_exclude_and_count_verifier_errors(tiny, tmp_path, monkeypatch):
    from scalinglab.train import dpo as dpo_mod

    monkeypatch.setattr(dpo_mod, "sample_and_verify", _samples_with_errors)
    s = dpo_mod.dpo(dpo_mod.DPOConfig(num_problems=6, eval_problems=0, **POST), str(tiny), str(tmp_path / "D"))
    pairs = read_jsonl(tmp_path / "D" / "data.jsonl")
    assert pairs and not any(x.endswith("#t\n") for q in pairs for x in (q["chosen"], q["rejected"]))
    assert s["verifier_errors"] == 6 and s["samples"] == 18
    assert s["sample_accuracy"] == pytest.approx(0.5)  # 6 right of the 12 answered, not 6 of 18


def test_dpo_data_file_judged_here_counts_its_errors(tiny, tmp_path, monkeypatch):
    from scalinglab.runs.store import write_jsonl
    from scalinglab.train import dpo as dpo_mod

    class TimesOut:  # the verifier errors on completions with a marker, else judges as arithmetic
        name, stop = "arithmetic", ARITH.stop

        def check(self, p, c):
            return Verdict.failed("timeout") if "#t" in c else ARITH.check(p, c)

        def __getattr__(self, k):
            return getattr(ARITH, k)

    rows = [
        {k: r[k] for k in ("prompt", "answer", "completion")}
        for r in _samples_with_errors(None, None, ARITH, ARITH.generate(4, seed=5), 3, 1, 0)
    ]
    write_jsonl(tmp_path / "rows.jsonl", rows)  # no `correct`: judged by the task in the trainer
    monkeypatch.setattr(dpo_mod, "open_run", _open_run_with(dpo_mod.open_run, TimesOut()))
    s = dpo_mod.dpo(
        dpo_mod.DPOConfig(data=str(tmp_path / "rows.jsonl"), eval_problems=0, **POST), str(tiny), str(tmp_path / "D")
    )
    pairs = read_jsonl(tmp_path / "D" / "data.jsonl")
    assert len(pairs) == 4 and not any(x.endswith("#t\n") for q in pairs for x in (q["chosen"], q["rejected"]))
    assert s["verifier_errors"] == 4


def _open_run_with(open_run, task):
    def wrapped(*a, **kw):
        st = open_run(*a, **kw)
        st.task = task
        return st

    return wrapped


def test_orm_labels_and_auc_exclude_and_count_verifier_errors(tiny, tmp_path, monkeypatch):
    from scalinglab.train import reward_trainer as rm_mod

    monkeypatch.setattr(rm_mod, "sample_and_verify", _samples_with_errors)
    s = rm_mod.train_reward_model(
        rm_mod.RewardModelConfig(num_problems=6, eval_problems=5, eval_samples=3, **POST),
        str(tiny),
        str(tmp_path / "R"),
    )
    items = read_jsonl(tmp_path / "R" / "data.jsonl")
    assert len(items) == 12 and not any(
        r["completion"].endswith("#t\n") for r in items
    )  # no errored verdict as a label
    assert s["verifier_errors"] == 6
    assert s["eval_verifier_errors"] == 5 and s["eval_samples"] == 10 and s["eval_negatives"] == 5


def test_ranking_auc_leaves_errors_out():
    from scalinglab.train.reward_trainer import ranking_auc

    rows = _samples_with_errors(None, None, ARITH, ARITH.generate(6, seed=9), 3, 1, 0)
    score = {r["completion"]: 2.0 if r["verifier_error"] else float(r["correct"]) for r in rows}

    class TableRM:  # ranks right answers over wrong ones, and scores the (right-looking) errored texts highest
        kind = "orm"

        def score_outcomes(self, prompts, comps, aggregate=None):
            return [score[c] for c in comps]

    out = ranking_auc(TableRM(), rows)
    # answered only: every right answer (1) above every wrong one (0): AUC 1. Had the errored texts
    # counted as wrong (score 2, above every right answer), half the negatives would rank first: 0.5
    assert out["auc"] == pytest.approx(1.0) and out["eval_verifier_errors"] == 6 and out["eval_samples"] == 12
    assert out["eval_negatives"] == 6
