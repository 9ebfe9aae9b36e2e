"""Hugging Face interop: what we save transformers loads, and what transformers saves we load,
with identical greedy completions token for token."""

import json

import pytest
import torch

from scalinglab.engine import Engine, SamplingParams
from scalinglab.errors import UserError
from scalinglab.model.hf import load_model, save_model

transformers = pytest.importorskip("transformers")

PROMPTS = ["12+34=?\n", "905-17=?\n", "3*3=?\n"]


def hf_greedy(hf_model, hf_tok, prompt, steps):
    enc = hf_tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = hf_model.generate(**enc, do_sample=False, max_new_tokens=steps, pad_token_id=hf_tok.pad_token_id or 0)
    return out[0, enc["input_ids"].shape[1] :].tolist()


def ours_greedy(model, tok, prompts, steps):
    res = Engine(model, tok).generate(prompts, SamplingParams(greedy=True, max_new_tokens=steps))
    return [g.completions[0].token_ids for g in res.generations]


def test_export_loads_in_transformers_with_same_greedy_tokens(tiny_model, tmp_path):
    model, tok = tiny_model
    save_model(model, tok, tmp_path / "m")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "m")
    assert hf_tok("12+34=?\n")["input_ids"] == tok.encode("12+34=?\n")
    ours = ours_greedy(model, tok, PROMPTS, 16)
    for p, o in zip(PROMPTS, ours):
        theirs = hf_greedy(hf, hf_tok, p, 16)
        n = len(o)  # ours stops at EOS; HF continues only if it did not emit EOS
        assert theirs[:n] == o


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_transformers_model_loads_here_and_matches(tmp_path, arch):
    from scalinglab.model.tokenizer import CharTokenizer

    torch.manual_seed(1)
    common = dict(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    if arch == "qwen2":
        cfg = transformers.Qwen2Config(tie_word_embeddings=False, **common)
        hf = transformers.Qwen2ForCausalLM(cfg)
    else:
        cfg = transformers.LlamaConfig(tie_word_embeddings=False, rope_theta=500000.0, **common)
        hf = transformers.LlamaForCausalLM(cfg)
    with torch.no_grad():  # make logits peaked so greedy paths are stable
        for p in hf.parameters():
            if p.dim() == 2:
                p.mul_(8)
            elif p.dim() == 1 and p.abs().sum() > 0 and arch == "qwen2":
                p.add_(0.1)
    hf.eval().save_pretrained(tmp_path / "hf")
    CharTokenizer().save(tmp_path / "hf")
    model, tok = load_model(tmp_path / "hf")
    assert model.config.arch == arch and model.config.attention_bias == (arch == "qwen2")
    x = torch.tensor([tok.encode(PROMPTS[0])])
    with torch.no_grad():
        assert torch.allclose(model(x), hf(x).logits, atol=1e-4)
    # (transformers picks its own Qwen2 tokenizer class for this directory, so feed ids directly)
    for p, o in zip(PROMPTS, ours_greedy(model, tok, PROMPTS, 12)):
        ids = torch.tensor([tok.encode(p)])
        with torch.no_grad():
            theirs = hf.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12, pad_token_id=0
            )[0, ids.shape[1] :]
        assert theirs.tolist()[: len(o)] == o


def test_llama3_rope_scaling_matches(tmp_path):
    torch.manual_seed(2)
    cfg = transformers.LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    )
    hf = transformers.LlamaForCausalLM(cfg).eval()
    hf.save_pretrained(tmp_path / "hf")
    from scalinglab.model.tokenizer import CharTokenizer

    CharTokenizer().save(tmp_path / "hf")
    model, _ = load_model(tmp_path / "hf")
    x = torch.randint(4, 100, (1, 200))
    with torch.no_grad():
        assert torch.allclose(model(x), hf(x).logits, atol=1e-4)


def test_bad_model_dirs_give_clear_errors(tmp_path, tiny_model):
    with pytest.raises(UserError, match="no such directory"):
        load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither a Hugging Face model directory"):
        load_model(tmp_path / "empty")
    model, tok = tiny_model
    save_model(model, tok, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match="corrupt"):
        load_model(tmp_path / "m")
    save_model(model, tok, tmp_path / "m2")
    cfg = json.loads((tmp_path / "m2" / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    (tmp_path / "m2" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="not supported"):
        load_model(tmp_path / "m2")


def test_save_is_atomic_no_temp_left(tiny_model, tmp_path):
    model, tok = tiny_model
    save_model(model, tok, tmp_path / "m")
    save_model(model, tok, tmp_path / "m")  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
