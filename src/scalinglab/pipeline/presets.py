"""Presets of the main job: how big each stage is.

`smoke` finishes in a few minutes on 2 CPU cores and is what the tests run; `cpu` (the
default) trains models that clearly learn in under half an hour on 2 cores; `gpu` scales the
models and budgets up and uses a CUDA device when one is present; `real` starts from a
pretrained model (SmolLM2-135M-Instruct) instead of the ladder (pipeline/real.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str = "cpu"
    task: str = "arithmetic"  # the reasoning task every stage works on
    device: str = "cpu"  # where training and sampling run
    # 1a. the pre-training law: an IsoFLOP ladder on real text (train/isoflop.py), budgets × sizes, then
    # predict-then-train at `text_predict`; () budgets = skip
    text_corpus: str = "pystdlib"
    text_budgets: tuple[float, ...] = (1e11, 2e11, 4e11, 8e11)
    text_sizes: tuple[int, ...] = (16, 24, 32, 40, 48)  # widths of 2-layer models: 13k-80k parameters
    text_dial: str = "width"
    text_predict: float = 1.6e12  # the held-out budget (twice the largest)
    text_overrides: tuple[str, ...] = ("vocab_size=512", "batch_size=8", "seq_len=128", "val_tokens=65536")
    text_eval_contexts: int = 1000  # held-out contexts for the loss-to-accuracy step
    # 1b. the task's models (sizes × token budgets; no law: the task's loss saturates); the base model of post-training
    depths: tuple[int, ...] = (1, 2, 3)
    tokens: tuple[int, ...] = (192_000, 384_000, 768_000)  # 768k = 1,500 steps of 4 × 128 tokens
    pretrain_overrides: tuple[str, ...] = ("batch_size=4", "seq_len=128")
    base_depth: int = 2  # the base model of post-training: this depth at the largest token budget
    bootstrap: int = 1000  # bootstrap resamples of every fit
    # 2. synthetic data and SFT
    synth_problems: int = 400
    synth_k: int = 4
    sft_steps: int = 60
    # 3. RL
    grpo_steps: int = 200
    ppo_steps: int = 200
    rl_prompts_per_step: int = 16
    # 4. reward models (on the RL policy's samples)
    rm_steps: int = 80
    rm_problems: int = 128
    # 5. test-time compute and evaluation
    eval_problems: int = 200  # held-out problems (seed 777, never used in training)
    ns: tuple[int, ...] = (1, 2, 4, 8, 16)
    # 6. trade-off: serving this many queries with the model
    queries: float = 1e6
    target_accuracy: float = 0.0  # 0 = the best accuracy reached by any measured configuration minus 2 points
    # a pretrained model instead of the ladder (the `real` preset, stages in pipeline/real.py); "" = pre-train here
    model: str = ""  # --model form: a directory, a .gguf file or a short name (smollm2-135m)
    temperature: float = (
        1.0  # sampling temperature of the test-time stage (and, with `model`, of SFT's samples and GRPO)
    )
    max_new_tokens: int = 0  # per answer (0 = room for the task's longest worked solution)
    group_size: int = 8  # GRPO samples per prompt
    grpo_lr: float = 1e-4
    sft_batch: int = 16
    sft_seq_len: int = 128
    sft_lr: float = 3e-4
    gsm8k_problems: int = 0  # GSM8K test problems the base model is evaluated on (chat template)
    gsm8k_max_new_tokens: int = 256


PRESETS = {
    "smoke": Preset(
        name="smoke",
        task="addition",
        text_budgets=(2e9, 4e9),
        text_sizes=(16, 24, 32),
        text_predict=8e9,
        text_eval_contexts=200,
        depths=(1, 2),
        tokens=(100_000, 300_000),
        pretrain_overrides=("batch_size=16", "seq_len=64"),
        base_depth=2,
        bootstrap=200,
        synth_problems=24,
        synth_k=4,
        sft_steps=4,
        rm_steps=4,
        rm_problems=32,
        grpo_steps=3,
        ppo_steps=3,
        rl_prompts_per_step=4,
        eval_problems=24,
        ns=(1, 2, 4),
        queries=1e5,
    ),
    "cpu": Preset(),
    # SmolLM2-135M-Instruct on 2 CPU cores, at most 45 minutes: no ladder; base evaluation on a reasoning-gym task
    # (few-shot) and GSM8K (chat), rejection-sampled SFT, GRPO with shared prefixes, test-time curves, tokenomics
    "real": Preset(
        name="real",
        task="rg:basic_arithmetic[min_terms=2,max_terms=2,min_digits=1,max_digits=1]",
        model="smollm2-135m",
        text_budgets=(),
        depths=(),
        tokens=(),
        eval_problems=200,
        ns=(1, 2, 4, 8, 16),
        max_new_tokens=16,
        temperature=0.7,
        synth_problems=192,
        synth_k=4,
        sft_steps=16,
        sft_batch=8,
        sft_seq_len=192,
        sft_lr=1e-5,
        grpo_steps=90,
        rl_prompts_per_step=8,
        group_size=8,
        grpo_lr=1e-5,
        ppo_steps=0,
        rm_steps=0,
        rm_problems=0,
        gsm8k_problems=40,
        gsm8k_max_new_tokens=256,
    ),
    "gpu": Preset(
        name="gpu",
        device="auto",
        text_budgets=(1e13, 2e13, 4e13, 8e13),
        text_sizes=(2, 3, 4, 5, 6, 7),
        text_dial="depth",
        text_predict=1.6e14,
        text_overrides=("aspect=32", "vocab_size=2048", "batch_size=32", "seq_len=256", "val_tokens=262144"),
        depths=(2, 3, 4),
        tokens=(2_000_000, 5_000_000, 12_000_000),
        pretrain_overrides=("batch_size=64", "seq_len=256"),
        base_depth=4,
        bootstrap=2000,
        synth_problems=2000,
        synth_k=8,
        sft_steps=200,
        rm_steps=300,
        rm_problems=512,
        grpo_steps=200,
        ppo_steps=200,
        rl_prompts_per_step=64,
        eval_problems=500,
        ns=(1, 2, 4, 8, 16, 32, 64),
    ),
}
