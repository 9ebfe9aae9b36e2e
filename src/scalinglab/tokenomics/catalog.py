"""Hardware and model catalogs, each value with its source.

Hardware numbers are per chip and DENSE (datasheets quote 2:4-sparse FLOP/s, twice these).
HBM capacity is the datasheet number read as GiB, which is what DRAM vendors mean: an
"80GB" H100 reports 81,559 MiB to nvidia-smi, i.e. 85.5e9 bytes, not 80e9. Scale-up bandwidth is the
bidirectional per-chip figure vendors quote (NVLink 900 GB/s = 450 GB/s each way).
Prices are editable defaults for on-demand rental, not quotes: pass `--usd-per-hour`.

Models are stored as the fields of their Hugging Face `config.json` (checked against the
published configs) and parsed by `hf_config.from_hf_config`, the same path a user's own
config.json takes. `get_model` also accepts a path to a config.json or a model directory.
"""

from __future__ import annotations

from pathlib import Path

from scalinglab.errors import UserError
from scalinglab.tokenomics.hf_config import from_hf_config, load_config_file
from scalinglab.tokenomics.spec import Hardware, ModelSpec

_NV = "NVIDIA datasheet"
HARDWARE: dict[str, Hardware] = {
    h.name: h
    for h in [
        # H100 SXM5 datasheet: 1,979 TF BF16 / 3,958 TF FP8 *with sparsity* -> 989/1979 dense; 80GB HBM3 3.35 TB/s;
        # NVLink4 900 GB/s; 8 per HGX board. $2.49: Lambda on-demand (third-party price pages list $2.0-3.0).
        Hardware("H100", 989.0, 1979.0, None, 80, 3.35, 900, 8, 2.49, source=f"{_NV} H100 SXM5"),
        # H200 SXM datasheet: same compute as H100; 141GB HBM3e at 4.8 TB/s; NVLink 900 GB/s. ~$3.30/h (Lambda, third-party page).
        Hardware("H200", 989.0, 1979.0, None, 141, 4.8, 900, 8, 3.30, source=f"{_NV} H200 SXM"),
        # DGX/HGX B200 datasheet (8 GPUs): 72 PF FP8 and 144 PF FP4 sparse, 1,440 GB, 64 TB/s, NVLink5 1.8 TB/s per GPU
        # -> per GPU dense 4.5 PF FP8, 9 PF FP4, 2.25 PF BF16, 180 GB, 8 TB/s. ~$6/h (RunPod $5.98, Lambda $6.99; third-party).
        Hardware("B200", 2250.0, 4500.0, 9000.0, 180, 8.0, 1800, 8, 6.00, source=f"{_NV} DGX B200"),
        # GB200 NVL72 spec (72 GPUs): 1,440 PF FP4 / 720 PF FP8 / 360 PF BF16 sparse -> dense per GPU 10 / 5 / 2.5 PF;
        # up to 13.4 TB HBM3e (186 GB/GPU), 576 TB/s (8 TB/s/GPU), NVLink 130 TB/s (1.8 TB/s/GPU), one 72-GPU domain.
        # Per-GPU rental is not published: $6.50/h is an assumption (B200 price + ~10%); edit it.
        Hardware("GB200", 2500.0, 5000.0, 10000.0, 186, 8.0, 1800, 72, 6.50, source=f"{_NV} GB200 NVL72"),
        # AMD Instinct MI300X datasheet: 1,307.4 TF BF16, 2,614.9 TF FP8 dense; 192 GB HBM3, 5.3 TB/s;
        # 7 Infinity Fabric links x 128 GB/s = 896 GB/s; 8-GPU platform. ~$2.00/h (third-party).
        Hardware("MI300X", 1307.4, 2614.9, None, 192, 5.3, 896, 8, 2.00, source="AMD MI300X datasheet"),
        # AMD Instinct MI325X: same CDNA3 compute as MI300X; 256 GB HBM3e, 6 TB/s; same IF links.
        # $2.00-2.25/h (awesomeagents.ai/hardware/amd-mi325x).
        Hardware("MI325X", 1307.4, 2614.9, None, 256, 6.0, 896, 8, 2.25, source="AMD MI325X spec; awesomeagents.ai"),
        # docs.cloud.google.com/tpu/docs/v5e: 197 TF bf16, 393 TOPS int8, 16 GB HBM2 at 819 GB/s, ICI 400 GB/s bidir,
        # 256-chip 2D torus. The 8-bit slot holds INT8 TOPS (v5e has no FP8). $1.20/chip-h: recalled list price, unverified.
        Hardware("TPU-v5e", 197.0, 393.0, None, 16, 0.819, 400, 256, 1.20, source="Cloud TPU v5e docs"),
        # docs.cloud.google.com/tpu/docs/v5p: 459 TF bf16, "459 FP8" in the newer table (no faster 8-bit path),
        # 95 GiB HBM2e at 2,765 GB/s, ICI 1,200 GB/s bidir, 8,960-chip 3D torus. $4.20/chip-h: recalled, unverified.
        Hardware("TPU-v5p", 459.0, 459.0, None, 95, 2.765, 1200, 8960, 4.20, source="Cloud TPU v5p docs"),
        # docs.cloud.google.com/tpu/docs/v6e: 918 TF bf16, 1,836 TOPS int8, 32 GB at 1,638 GB/s, ICI 800 GB/s bidir,
        # 256-chip 2D torus. $2.70/chip-h: recalled list price, unverified.
        Hardware("TPU-v6e", 918.0, 1836.0, None, 32, 1.638, 800, 256, 2.70, source="Cloud TPU v6e docs"),
        # awsdocs-neuron trainium2.rst: 667 TF BF16, 1,299 TF FP8 dense; NKI trainium2_arch: 96 GiB at 2.9 TB/s
        # (trn2 instance table: 46.4 TB/s / 16 chips). 16 chips per trn2.48xlarge, 64 per UltraServer (NeuronLink-v3).
        # NeuronLink-v3 per-chip bandwidth is cut off in the stored page: 1,024 GB/s is unverified. $/h: assumption.
        Hardware("Trainium2", 667.0, 1299.0, None, 96, 2.9, 1024, 64, 2.50, source="AWS Neuron docs (Trainium2, Trn2)"),
        # DeepSeek's anchor (open-infra-index day 6): H800 = H100 compute and HBM with NVLink cut to 400 GB/s;
        # DeepSeek's own cost sheet assumes $2/GPU-h.
        Hardware("H800", 989.0, 1979.0, None, 80, 3.35, 400, 8, 2.00, source="DeepSeek open-infra-index day 6"),
    ]
}

_HW_ALIASES = {
    "h100sxm": "H100",
    "h100-sxm": "H100",
    "h100-80gb": "H100",
    "h200sxm": "H200",
    "h200-sxm": "H200",
    "gb200nvl72": "GB200",
    "gb200-nvl72": "GB200",
    "v5e": "TPU-v5e",
    "v5p": "TPU-v5p",
    "v6e": "TPU-v6e",
    "tpuv5e": "TPU-v5e",
    "tpuv5p": "TPU-v5p",
    "tpuv6e": "TPU-v6e",
    "trillium": "TPU-v6e",
    "trn2": "Trainium2",
}


def get_hardware(name: str) -> Hardware:
    """A catalog entry by (case-insensitive) name, or "local-cpu" from this machine's calibration."""
    key = name.strip().lower().replace(" ", "").replace("_", "-")
    if key in ("local-cpu", "local", "cpu"):
        from scalinglab.tokenomics.calibrate import local_hardware

        return local_hardware()
    for n, hw in HARDWARE.items():
        if n.lower() == key:
            return hw
    if key in _HW_ALIASES:
        return HARDWARE[_HW_ALIASES[key]]
    raise UserError(f"--hardware {name!r}: unknown; choose one of {', '.join(HARDWARE)}, local-cpu")


# ---- models: the fields of each config.json (checked against the Hugging Face hub configs) ----
def _llama(layers: int, hidden: int, heads: int, inter: int) -> dict:
    return dict(
        model_type="llama",
        num_hidden_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_key_value_heads=8,
        intermediate_size=inter,
        vocab_size=128256,
        tie_word_embeddings=False,
    )


def _qwen2(layers: int, hidden: int, heads: int, kv: int, inter: int, vocab: int, tied: bool) -> dict:
    return dict(
        model_type="qwen2",
        num_hidden_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        intermediate_size=inter,
        vocab_size=vocab,
        tie_word_embeddings=tied,
        sliding_window=32768,
        use_sliding_window=False,
    )


MODEL_CONFIGS: dict[str, dict] = {
    # meta-llama/Llama-3.1-{8B,70B,405B}/config.json (GQA, 8 KV heads, head_dim 128, vocab 128,256).
    # Llama-3.3-70B has the same architecture as 3.1-70B.
    "Llama-3.1-8B": _llama(32, 4096, 32, 14336),
    "Llama-3.1-70B": _llama(80, 8192, 64, 28672),
    "Llama-3.1-405B": _llama(126, 16384, 128, 53248),
    # Qwen/Qwen2.5-{0.5B,7B,72B}/config.json (q/k/v biases; sliding window configured but off).
    "Qwen2.5-0.5B": _qwen2(24, 896, 14, 2, 4864, 151936, True),
    "Qwen2.5-7B": _qwen2(28, 3584, 28, 4, 18944, 152064, False),
    "Qwen2.5-72B": _qwen2(80, 8192, 64, 8, 29568, 152064, False),
    # mistralai/Mixtral-8x7B-v0.1/config.json: 8 experts, top-2, sliding_window null (46.7 B total, 12.9 B active).
    "Mixtral-8x7B": dict(
        model_type="mixtral",
        num_hidden_layers=32,
        hidden_size=4096,
        num_attention_heads=32,
        num_key_value_heads=8,
        intermediate_size=14336,
        vocab_size=32000,
        num_local_experts=8,
        num_experts_per_tok=2,
        sliding_window=None,
        tie_word_embeddings=False,
    ),
    # deepseek-ai/DeepSeek-V3/config.json (R1 shares it): MLA kv_lora_rank 512 + rope 64; 256 routed + 1 shared
    # expert, top-8, moe width 2048, first 3 layers dense (18432). The MTP layer (num_nextn_predict_layers) is not served here.
    "DeepSeek-V3": dict(
        model_type="deepseek_v3",
        num_hidden_layers=61,
        hidden_size=7168,
        num_attention_heads=128,
        num_key_value_heads=128,
        intermediate_size=18432,
        moe_intermediate_size=2048,
        vocab_size=129280,
        n_routed_experts=256,
        n_shared_experts=1,
        num_experts_per_tok=8,
        first_k_dense_replace=3,
        kv_lora_rank=512,
        q_lora_rank=1536,
        qk_rope_head_dim=64,
        qk_nope_head_dim=128,
        v_head_dim=128,
        tie_word_embeddings=False,
    ),
    # openai/gpt-oss-120b/config.json: 36 layers alternating sliding(128)/full attention, 64 q / 8 kv heads of 64,
    # 128 experts top-4 of width 2880 with biases, attention_bias true, vocab 201,088. Experts ship in MXFP4.
    "GPT-OSS-120B": dict(
        model_type="gpt_oss",
        num_hidden_layers=36,
        hidden_size=2880,
        num_attention_heads=64,
        num_key_value_heads=8,
        head_dim=64,
        intermediate_size=2880,
        vocab_size=201088,
        num_local_experts=128,
        num_experts_per_tok=4,
        sliding_window=128,
        attention_bias=True,
        layer_types=["sliding_attention", "full_attention"] * 18,
        tie_word_embeddings=False,
    ),
}
MODEL_CONFIGS["DeepSeek-R1"] = MODEL_CONFIGS["DeepSeek-V3"]
_MODEL_ALIASES = {"llama-3.3-70b": "Llama-3.1-70B", "deepseek-v3/r1": "DeepSeek-V3", "gpt-oss-120b": "GPT-OSS-120B"}


def get_model(name_or_path: str) -> ModelSpec:
    """A catalog model by (case-insensitive) name, or any HF config.json / model directory on disk."""
    key = name_or_path.strip().lower()
    key = _MODEL_ALIASES.get(key, key)
    for n, cfg in MODEL_CONFIGS.items():
        if n.lower() == key.lower():
            return from_hf_config(cfg, name=n, source=f"catalog:{n}")
    if Path(name_or_path).exists():
        return load_config_file(name_or_path)
    raise UserError(
        f"--model {name_or_path!r}: not a catalog model ({', '.join(MODEL_CONFIGS)}) and no config.json at that path"
    )
