"""Every stage's training stream has zero overlap with its evaluation set (issue 17, section 1).

Each test reads what a stage actually trained on (the pre-training stream's chunks, the
SFT/DPO/RM `data.jsonl`, GRPO/PPO prompt batches over many steps, synth's problems) and
intersects it with the evaluation problems (seed 777) by canonical text; the summaries'
`heldout_overlap` must say the same. Each size is chosen so that the raw generator, without
the split, would overlap (checked alongside), so every test can fail.
"""

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from scalinglab.errors import UserError
from scalinglab.model import ModelConfig, Transformer
from scalinglab.model.hf import save_model
from scalinglab.model.tokenizer import CharTokenizer
from scalinglab.runs.store import read_jsonl, write_jsonl
from scalinglab.tasks import get_task
from scalinglab.tasks.split import canonical, draw, overlap, split_of

TASK = get_task("arithmetic")
EVAL = draw(TASK, 200, 777, split="eval")
KEYS = {canonical(p) for p in EVAL}
SMALL = dict(steps=1, batch_size=2, device="cpu", warmup_steps=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("heldout") / "tiny"
    save_model(Transformer(ModelConfig.from_depth(1, vocab_size=128)), CharTokenizer(), d)
    return d


def _leaks(texts) -> int:
    return len({canonical(t) for t in texts} & KEYS)


def test_pretrain_stream_keeps_train_problems_and_validation_keeps_eval_problems():
    from scalinglab.tasks.seeds import TRAIN_SEED_BASE, VAL_SEED_BASE
    from scalinglab.train.pretrain import PackedStream

    tok = CharTokenizer()
    stream = PackedStream(TASK, tok, None, chunk_seed=lambda c: TRAIN_SEED_BASE + c)
    for _ in range(400):  # 400 steps of 4 x 128 tokens: about 8,000 problems over 16 chunks
        stream.next_rows(4, 129)
    seen = list(stream.seen())
    assert len(seen) > 5000 and all(split_of(p) == "train" for p in seen)
    assert _leaks(seen) == 0 and overlap(seen, EVAL) == 0
    raw = [p for c in range(16) for p in TASK.generate(512, seed=TRAIN_SEED_BASE + c)]
    assert _leaks(raw) > 0  # the same chunks unfiltered: what pre-training trained on before the split
    val = PackedStream(TASK, tok, None, chunk_seed=lambda c: VAL_SEED_BASE + c, split="eval")
    val.next_rows(8, 129)
    assert all(split_of(p) == "eval" for p in val.seen())


def test_pretrain_run_records_heldout_overlap(tmp_path):
    from scalinglab.train.pretrain import PretrainConfig, pretrain

    s = pretrain(
        PretrainConfig(depth=1, steps=3, batch_size=2, seq_len=32, eval_problems=40, val_tokens=256, device="cpu"),
        str(tmp_path / "A"),
    )
    assert s["heldout_overlap"] == 0
    assert json.loads((tmp_path / "A" / "summary.json").read_text())["heldout_overlap"] == 0


def test_rl_prompt_batches_over_many_steps_never_meet_the_eval_set():
    from scalinglab.train.rollout import prompt_batch, rollout_seed

    for seed in (0, 1):
        prompts = [p for step in range(200) for p in prompt_batch(TASK, seed, step, 16, None)]
        assert len(prompts) == 3200 and _leaks(prompts) == 0
    # before the split: 42 of seed 777's 197 distinct problems were among GRPO's default prompts
    raw = [p for step in range(200) for p in TASK.generate(16, seed=rollout_seed(0, step))]
    assert overlap(raw, TASK.generate(200, seed=777)) > 20


@pytest.mark.parametrize("kind", ["grpo", "ppo"])
def test_rl_runs_record_zero_heldout_overlap(kind, tiny, tmp_path):
    from scalinglab.train.grpo import GRPOConfig, train_grpo
    from scalinglab.train.ppo import PPOConfig, train_ppo

    common = dict(task="arithmetic", steps=2, prompts_per_step=4, max_new_tokens=8, eval_problems=30, device="cpu")
    if kind == "grpo":
        s = train_grpo(GRPOConfig(group_size=2, **common), str(tiny), str(tmp_path / "B"))
    else:
        s = train_ppo(PPOConfig(samples_per_prompt=2, **common), str(tiny), str(tmp_path / "B"))
    assert s["heldout_overlap"] == 0


def test_sft_training_set_has_no_eval_problem(tiny, tmp_path):
    from scalinglab.train.sft import SFTConfig, sft

    s = sft(SFTConfig(num_problems=1500, seq_len=64, eval_problems=200, **SMALL), str(tiny), str(tmp_path / "S"))
    prompts = [r["prompt"] for r in read_jsonl(tmp_path / "S" / "data.jsonl")]
    assert len(prompts) == 1500 and _leaks(prompts) == 0 and s["heldout_overlap"] == 0
    assert _leaks(p.prompt for p in TASK.generate(1500, seed=0)) > 0  # the raw generator would have leaked


def _fake_samples(model, tok, task, problems, k, temperature, seed, **kw):
    """One right and one wrong completion per problem (no model needed)."""
    rows = []
    for p in problems:
        for j, c in enumerate((p.solution, p.solution.replace(f"A: {p.answer}", f"A: {int(p.answer) + 1}"))):
            rows.append(
                {
                    "id": f"{p.id}#{j}",
                    "problem_id": p.id,
                    "task": p.task,
                    "prompt": p.prompt,
                    "answer": p.answer,
                    "completion": c,
                    "correct": j == 0,
                    "verifier_error": False,
                    "finish_reason": "stop",
                }
            )
    return rows


def test_dpo_and_reward_model_training_sets_have_no_eval_problem(tiny, tmp_path, monkeypatch):
    from scalinglab.train import dpo as dpo_mod
    from scalinglab.train import reward_trainer as rm_mod

    monkeypatch.setattr(dpo_mod, "sample_and_verify", _fake_samples)
    monkeypatch.setattr(rm_mod, "sample_and_verify", _fake_samples)
    s = dpo_mod.dpo(dpo_mod.DPOConfig(num_problems=1500, eval_problems=200, **SMALL), str(tiny), str(tmp_path / "D"))
    prompts = [r["prompt"] for r in read_jsonl(tmp_path / "D" / "data.jsonl")]
    assert len(set(prompts)) > 1000 and _leaks(prompts) == 0 and s["heldout_overlap"] == 0
    r = rm_mod.train_reward_model(
        rm_mod.RewardModelConfig(num_problems=1500, eval_problems=200, eval_samples=2, **SMALL),
        str(tiny),
        str(tmp_path / "R"),
    )
    prompts = [x["prompt"] for x in read_jsonl(tmp_path / "R" / "data.jsonl")]
    assert len(set(prompts)) > 1000 and _leaks(prompts) == 0 and r["heldout_overlap"] == 0


def test_training_refuses_data_rows_of_a_declared_test_split(tiny, tmp_path):
    from scalinglab.train.sft import SFTConfig, sft

    p = TASK.generate(4, seed=1)
    write_jsonl(
        tmp_path / "d.jsonl", [{"prompt": q.prompt, "completion": q.solution, "meta": {"split": "test"}} for q in p]
    )
    with pytest.raises(UserError, match="declared test split"):
        sft(SFTConfig(data=str(tmp_path / "d.jsonl"), eval_problems=0, **SMALL), str(tiny), str(tmp_path / "S"))


def test_synth_draws_train_problems_and_refuses_a_test_file(tmp_path):
    from scalinglab.synth.rejection import load_task_problems

    _, problems = load_task_problems("arithmetic", 1500, seed=31_337)
    assert len(problems) == 1500 and _leaks(problems) == 0
    test = tmp_path / "test.jsonl"
    test.write_text(
        json.dumps({"question": "Tom has 2 apples and buys 3. How many?", "answer": "2 + 3 = 5\n#### 5"}) + "\n"
    )
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "scalinglab.cli",
            "synth",
            "--task",
            "gsm8k",
            "--model",
            "x",
            "--n",
            "1",
            "--problems",
            str(test),
            "--out",
            str(tmp_path / "o.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0 and "declared test split" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_eval_without_a_file_uses_the_eval_split(tiny, monkeypatch):
    import scalinglab.commands.testtime as tt
    from scalinglab.cli import app

    got = {}
    monkeypatch.setattr(tt, "run_eval", lambda model, task, problems, cfg, **kw: got.setdefault("p", problems) and {})
    monkeypatch.setattr(tt, "emit", lambda *a, **k: None)
    monkeypatch.setattr(tt, "_human", lambda s: "")
    r = CliRunner().invoke(
        app, ["eval", "--model", str(tiny), "--task", "arithmetic", "--num-problems", "200", "--strategy", "greedy"]
    )
    assert r.exit_code == 0, r.output
    assert [p.prompt for p in got["p"]] == [p.prompt for p in EVAL]


def test_pipeline_sums_the_stages_overlap():
    from scalinglab.pipeline import stages
    from scalinglab.pipeline.results import StageResult

    def trained(n):  # a training stage's result with its overlap
        return StageResult("", {}, trains=True, heldout_overlap=n)

    assert stages.heldout_overlap({"pretrain": trained(0), "sft": trained(0), "testtime": StageResult("", {})}) == 0
    assert stages.heldout_overlap({"a": trained(2), "b": trained(1)}) == 3
    assert stages.heldout_overlap({"a": trained(None), "b": trained(0)}) is None
    assert stages.heldout_overlap({"tokenomics": StageResult("", {})}) is None  # nothing computed: nothing claimed
