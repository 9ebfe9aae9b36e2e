"""`scalinglab run --preset real` stages (pipeline/real.py) on a tiny saved model: every stage runs,
the held-out gains carry intervals, nothing evaluated was trained on, and the report is written."""

import json
from pathlib import Path

import pytest

pytest.importorskip("reasoning_gym", reason="the reasoning-gym package is not installed")
GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k"


@pytest.mark.skipif(not (GSM8K / "test.jsonl").exists(), reason=f"GSM8K files not found in {GSM8K}")
def test_real_preset_stages_on_a_tiny_model(tmp_path, monkeypatch):
    import torch

    from scalinglab.model import ModelConfig, Transformer
    from scalinglab.model.hf import save_model
    from scalinglab.model.tokenizer import CharTokenizer
    from scalinglab.pipeline import presets, run_pipeline

    # a character-level model reads a GSM8K few-shot prompt as ~1,300 tokens: give it the context for it
    torch.manual_seed(0)
    model, tok = (
        Transformer(ModelConfig.from_depth(1, vocab_size=128, max_position_embeddings=2048)).eval(),
        CharTokenizer(),
    )
    model_dir = save_model(model, tok, tmp_path / "m")
    tiny = presets.Preset(
        name="real-tiny",
        task="rg:basic_arithmetic[min_terms=2,max_terms=2,min_digits=1,max_digits=1]",
        model=str(model_dir),
        depths=(),
        tokens=(),
        eval_problems=8,
        ns=(1, 2, 4),
        max_new_tokens=6,
        synth_problems=8,
        synth_k=2,
        sft_steps=2,
        sft_batch=2,
        sft_seq_len=192,
        grpo_steps=2,
        rl_prompts_per_step=2,
        group_size=2,
        gsm8k_problems=2,
        gsm8k_max_new_tokens=8,
    )
    monkeypatch.setitem(presets.PRESETS, "real-tiny", tiny)
    out = tmp_path / "run"
    s = run_pipeline("real-tiny", str(out))
    assert s["status"] == "finished"
    assert list(s["stages"]) == ["base", "sft", "rl", "testtime", "tokenomics"]
    assert s["heldout_overlap"] == 0
    tt = json.loads((out / "testtime" / "stage.json").read_text())
    for k in ("sft", "rl"):
        lo, hi = tt["gains"][k]["ci95"]
        assert lo <= tt["gains"][k]["delta"] <= hi
    assert (out / "report.html").stat().st_size > 10_000
