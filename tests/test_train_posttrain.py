"""SFT, DPO and reward-model trainers on a tiny model: 3 steps change the parameters, gradient
accumulation is exact, --resume repeats no step, non-finite losses stop the run."""

import json
from dataclasses import replace
from functools import partial

import pytest
import torch
from safetensors.torch import load_file

from scalinglab.errors import UserError
from scalinglab.model import ModelConfig, Transformer
from scalinglab.model.hf import save_model
from scalinglab.model.tokenizer import CharTokenizer
from scalinglab.runs.store import write_jsonl
from scalinglab.tasks import get_task
from scalinglab.train.data import Packer, encode_example
from scalinglab.train.dpo import DPOConfig, dpo, dpo_backward, reference_logprobs
from scalinglab.train.reward_model import RewardModel, load_reward_model
from scalinglab.train.reward_trainer import RewardModelConfig, _encode, rm_backward, train_reward_model
from scalinglab.train.sft import SFTConfig, sft, sft_backward

TASK = get_task("arithmetic")
SMALL = dict(steps=3, batch_size=4, eval_problems=0, device="cpu", warmup_steps=1)


def _wrong(p):
    return p.solution.replace(f"A: {p.answer}", f"A: {int(p.answer) + 1}")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("posttrain")
    torch.manual_seed(0)
    save_model(Transformer(ModelConfig.from_depth(1, vocab_size=128)), CharTokenizer(), d / "tiny")
    ps = TASK.generate(12, seed=5)
    write_jsonl(d / "pairs.jsonl", [{"prompt": p.prompt, "chosen": p.solution, "rejected": _wrong(p)} for p in ps])
    write_jsonl(
        d / "labelled.jsonl",
        [{"prompt": p.prompt, "answer": p.answer, "completion": c} for p in ps for c in (p.solution, _wrong(p))],
    )
    write_jsonl(
        d / "steps.jsonl",
        [{"prompt": p.prompt, "steps": list(p.steps), "soft": [1.0] * len(p.steps)} for p in ps]
        + [
            {"prompt": p.prompt, "steps": TASK.split_steps(_wrong(p)), "soft": [0.75] * (len(p.steps) - 1) + [0.0]}
            for p in ps
        ],
    )
    return d


def _run(kind, files, out, **over):
    if kind == "sft":
        return sft(SFTConfig(num_problems=20, seq_len=64, **{**SMALL, **over}), str(files / "tiny"), str(out))
    if kind == "dpo":
        return dpo(DPOConfig(data=str(files / "pairs.jsonl"), **{**SMALL, **over}), str(files / "tiny"), str(out))
    rm_kind, objective, data = {
        "orm": ("orm", "bce", "labelled"),
        "orm-bt": ("orm", "bt", "pairs"),
        "prm": ("prm", "bce", "steps"),
    }[kind]
    cfg = RewardModelConfig(kind=rm_kind, objective=objective, data=str(files / f"{data}.jsonl"), **{**SMALL, **over})
    return train_reward_model(cfg, str(files / "tiny"), str(out))


@pytest.mark.parametrize("kind", ["sft", "dpo", "orm", "orm-bt", "prm"])
def test_three_steps_change_parameters_and_log_metrics(kind, files, tmp_path):
    s = _run(kind, files, tmp_path / "run")
    before = load_file(str(files / "tiny" / "model.safetensors"))
    after = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) >= len(before) // 2, changed
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [1, 2, 3]
    for r in recs:
        assert {"loss", "accuracy", "grad_norm", "tokens_per_s", "wall_time", "lr"} <= set(r)
    assert s["steps"] == 3
    if kind in ("orm", "orm-bt", "prm"):
        rm = load_reward_model(tmp_path / "run")
        assert rm.kind == ("prm" if kind == "prm" else "orm")
        assert not torch.equal(
            rm.score.weight, RewardModel(rm.backbone, rm.tok).score.weight
        )  # head trained, saved, reloaded


def _grads(model):
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def _same_grads(step_for_micro, model, batch):
    out = []
    for micro in (0, 1):  # 8 × 1 vs 1 × 8
        model.zero_grad(set_to_none=True)
        res = step_for_micro(micro)(batch)
        out.append((res.loss, _grads(model)))
    (l8, g8), (l1, g1) = out
    assert l1 == pytest.approx(l8, rel=1e-5)
    assert len(g1) == len(g8) > 0
    for a, b in zip(g1, g8):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


def test_gradient_accumulation_is_exact(files):
    tok = CharTokenizer()
    torch.manual_seed(0)
    model = Transformer(ModelConfig.from_depth(1, vocab_size=128))
    dev = torch.device("cpu")
    ps = TASK.generate(16, seed=3)
    # SFT: 8 packed rows of different answer-token counts
    exs = [encode_example(tok, p.prompt, p.solution) for p in ps]
    batch = Packer(lambda i: exs[i % len(exs)], seq_len=48, pad_id=tok.pad_id).next_rows(8)
    _same_grads(lambda m: partial(sft_backward, model, cfg=SFTConfig(micro_batch_size=m), device=dev), model, batch)
    # DPO: 8 pairs
    pairs = [{"prompt": p.prompt, "chosen": p.solution, "rejected": _wrong(p)} for p in ps[:8]]
    ref = reference_logprobs(model, tok, pairs, dev) - 0.5  # a reference that differs from the policy
    _same_grads(
        lambda m: partial(
            dpo_backward, model, tok, pairs, ref, cfg=DPOConfig(micro_batch_size=m, nll_weight=0.5), device=dev
        ),
        model,
        list(range(8)),
    )
    # reward models: BCE over step labels of different counts per sequence, and Bradley–Terry
    rm = RewardModel(model, tok, kind="prm")
    cfg = RewardModelConfig(kind="prm")
    enc = [
        _encode(
            cfg,
            tok,
            {"prompt": p.prompt, "steps": list(p.steps), "labels": [0.5] * (len(p.steps) - 1) + [float(i % 2)]},
        )
        for i, p in enumerate(ps[:8])
    ]
    _same_grads(
        lambda m: partial(rm_backward, rm, enc, cfg=replace(cfg, micro_batch_size=m), device=dev), rm, list(range(8))
    )
    cfg = RewardModelConfig(objective="bt")
    enc = [_encode(cfg, tok, pr) for pr in pairs]
    _same_grads(
        lambda m: partial(rm_backward, rm, enc, cfg=replace(cfg, micro_batch_size=m), device=dev), rm, list(range(8))
    )


def test_resume_continues_exactly(files, tmp_path):
    _run("sft", files, tmp_path / "full", steps=4)
    _run("sft", files, tmp_path / "killed", steps=4, checkpoint_every=2)
    run = tmp_path / "killed"
    # pretend the process died after logging step 3: no summary, no final model, step 3 logged
    (run / "summary.json").unlink()
    with open(run / "metrics.jsonl") as f:
        lines = f.readlines()[:3]
    (run / "metrics.jsonl").write_text("".join(lines))
    sft(
        SFTConfig(num_problems=20, seq_len=64, **{**SMALL, "steps": 4, "checkpoint_every": 2}),
        str(files / "tiny"),
        str(run),
        resume=True,
    )
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(run / "model" / "model.safetensors"))
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    full = [json.loads(x)["loss"] for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    resumed = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert resumed == pytest.approx(full, rel=1e-5)


@pytest.mark.parametrize("kind,every,at", [("dpo", 0, 3), ("dpo", 2, 19), ("orm", 2, 19)])
def test_interrupted_run_resumes_to_the_uninterrupted_summary(files, tmp_path, kind, every, at):
    """Ctrl-C at step `at` (before the first checkpoint, or after step 18's), then --resume: metrics
    hold each step once and the summary's tail mean (the last 2 of 20 steps) spans the restored
    step 19 too, as the uninterrupted run's (issue 20 items 1, 9)."""
    from scalinglab.runs import Run

    def make(**o):
        if kind == "dpo":
            return DPOConfig(data=str(files / "pairs.jsonl"), **{**SMALL, "steps": 20, **o})
        return RewardModelConfig(data=str(files / "labelled.jsonl"), probe=False, **{**SMALL, "steps": 20, **o})

    train = dpo if kind == "dpo" else train_reward_model

    def stop(done, total, **info):
        if done == at:
            raise KeyboardInterrupt

    a = train(make(), str(files / "tiny"), str(tmp_path / "A"))
    with pytest.raises(KeyboardInterrupt):
        train(make(checkpoint_every=every), str(files / "tiny"), str(tmp_path / "B"), progress=stop)
    assert Run(tmp_path / "B").status()["status"] == "interrupted"
    b = train(make(checkpoint_every=every), str(files / "tiny"), str(tmp_path / "B"), resume=True)
    assert [json.loads(x)["step"] for x in (tmp_path / "B" / "metrics.jsonl").read_text().splitlines()] == list(
        range(1, 21)
    )
    assert (
        b["train_loss"] == a["train_loss"]
        and b["train_accuracy" if kind == "orm" else "reward_accuracy"]
        == a["train_accuracy" if kind == "orm" else "reward_accuracy"]
    )


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(files, tmp_path, monkeypatch):
    import scalinglab.train.sft as sft_mod

    calls = {"n": 0}
    real = sft_mod.sft_loss

    def flaky(logits, targets, mask, normaliser):
        calls["n"] += 1
        loss, st = real(logits, targets, mask, normaliser)
        return (loss * float("nan") if calls["n"] >= 3 else loss), st

    monkeypatch.setattr(sft_mod, "sft_loss", flaky)
    with pytest.raises(UserError, match="non-finite"):
        _run("sft", files, tmp_path / "nan", steps=5, checkpoint_every=1)
    ckpts = sorted(p.name for p in (tmp_path / "nan" / "checkpoints").iterdir() if not p.name.startswith("."))
    assert ckpts == ["step-1", "step-2"]  # step 3 was not applied nor saved
    assert not (tmp_path / "nan" / "summary.json").exists()
    with pytest.raises(UserError, match="exploding"):
        _run("dpo", files, tmp_path / "boom", stop_grad_norm=1e-12)
