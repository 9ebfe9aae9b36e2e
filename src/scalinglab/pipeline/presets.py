"""Presets of the main job: how big each stage is.

`smoke` finishes in a few minutes on 2 CPU cores and is what the tests run; `cpu` (the
default) trains models that clearly learn in under half an hour on 2 cores; `gpu` scales the
models and budgets up and uses a CUDA device when one is present; `real` starts from a
pretrained model (SmolLM2-135M-Instruct) instead of the ladder (pipeline/real.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Sequence, TypeVar

from scalinglab.config import check_choices
from scalinglab.errors import UserError

C = TypeVar("C")


@dataclass(frozen=True)
class Preset:
    name: str = "cpu"  # the preset's name, as given to --preset
    task: str = "arithmetic"  # the reasoning task every stage works on
    device: str = "cpu"  # where training and sampling run
    # 1a. the pre-training law: an IsoFLOP ladder on real text (train/isoflop.py), budgets × sizes, then
    # predict-then-train at `text_predict`; () budgets = skip
    text_corpus: str = "pystdlib"  # the text the law is measured on (pystdlib: the stdlib's sources, split by file)
    text_budgets: tuple[float, ...] = (1e11, 2e11, 4e11, 8e11)  # compute budgets C = 6ND of the profiles (() = skip)
    text_sizes: tuple[int, ...] = (8, 16, 24, 32, 40, 48, 56)  # widths of 2-layer models: 6k-104k parameters
    text_window: int = 5  # sizes per budget, sliding up the dial with the budget (0 = every size)
    text_lr_width: float = 0.168  # width dial: peak lr = text_lr_width / width (0 = each model's default)
    text_dial: Literal["width", "depth"] = "width"  # text_sizes are widths (of 2 layers) or depths
    text_predict: float = 3.2e12  # the held-out budget (four times the largest)
    text_workers: int = 0  # rungs trained at once, each in its own process (0 = CPUs // 1 thread)
    text_seeds: int = 2  # runs of every rung (seeds 0, 1, ...): one seed leaves the law's alpha unpinned
    text_overrides: tuple[str, ...] = (  # PretrainConfig fields of every text rung
        "vocab_size=512",
        "batch_size=8",
        "seq_len=128",
        "val_tokens=65536",
    )
    text_eval_contexts: int = 1000  # held-out contexts for the loss-to-accuracy step
    # 1b. the task's models (sizes × token budgets; no law: the task's loss saturates); the base model of post-training
    depths: tuple[int, ...] = (1, 2, 3)  # model depths of the task ladder (() = skip)
    tokens: tuple[int, ...] = (192_000, 384_000, 768_000)  # 768k = 1,500 steps of 4 × 128 tokens
    pretrain_overrides: tuple[str, ...] = ("batch_size=4", "seq_len=128")  # PretrainConfig fields of every task rung
    base_depth: int = 2  # the base model of post-training: this depth at the largest token budget
    bootstrap: int = 1000  # bootstrap resamples of every fit
    # 2. synthetic data and SFT
    synth_problems: int = 400  # problems rejection-sampled for SFT data
    synth_k: int = 4  # samples per problem
    sft_steps: int = 60  # SFT optimizer steps on the kept samples
    # 3. RL
    grpo_steps: int = 200  # GRPO steps (one rollout batch each)
    ppo_steps: int = 200  # PPO steps (one rollout batch each)
    rl_prompts_per_step: int = 16  # problems per RL step, GRPO and PPO alike
    # 4. reward models (on the RL policy's samples)
    rm_steps: int = 80  # optimizer steps of each reward model (ORM and PRM)
    rm_problems: int = 128  # problems whose policy samples label the reward models
    # 5. test-time compute and evaluation
    eval_problems: int = 200  # held-out problems (seed 777, never used in training)
    ns: tuple[int, ...] = (1, 2, 4, 8, 16)  # test-time budgets: samples per problem
    # 6. trade-off: serving this many queries with the model
    queries: float = 1e6  # queries served over the model's life, for the compute trade-off
    target_accuracy: float = 0.0  # 0 = the best accuracy reached by any measured configuration minus 2 points
    # a pretrained model instead of the ladder (the `real` preset, stages in pipeline/real.py); "" = pre-train here
    model: str = ""  # --model form: a directory, a .gguf file or a short name (smollm2-135m)
    temperature: float = (
        1.0  # sampling temperature of the test-time stage (and, with `model`, of SFT's samples and GRPO)
    )
    max_new_tokens: int = 0  # per answer (0 = room for the task's longest worked solution)
    group_size: int = 8  # GRPO samples per prompt
    grpo_lr: float = 1e-4  # GRPO learning rate
    sft_batch: int = 16  # SFT sequences per step
    sft_seq_len: int = 128  # SFT tokens per sequence
    sft_lr: float = 3e-4  # SFT learning rate
    gsm8k_problems: int = 0  # GSM8K test problems the base model is evaluated on (chat template)
    gsm8k_max_new_tokens: int = 256  # tokens per GSM8K answer
    stage_sets: tuple[str, ...] = ()  # `run --set RECIPE.FIELD=VALUE` overrides of the stages' configs

    def __post_init__(self) -> None:
        check_choices(self)

    def with_sets(self, recipe: str, cfg: C) -> C:
        """`cfg` (the config a stage built for `recipe`) with this run's `--set RECIPE.FIELD=VALUE`s applied."""
        from scalinglab.config import override

        return override(cfg, stage_overrides(self, recipe))


PRESETS = {
    "smoke": Preset(
        name="smoke",
        task="addition",
        text_budgets=(2e9, 4e9),
        text_sizes=(16, 24, 32),
        text_predict=8e9,
        text_eval_contexts=200,
        text_workers=1,
        text_seeds=1,
        text_lr_width=0.0,  # 10-step toys: the models' default lr gives the smoke run a prediction to check
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
        text_window=0,
        text_workers=1,
        text_seeds=1,
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


# the recipes whose configs `run --set STAGE.FIELD=VALUE` reaches (config.RECIPES names), applied
# last in the stage that builds them
STAGE_RECIPES = ("synth", "sft", "grpo", "ppo", "reward-model", "eval")


def configure(name: str, sets: Sequence[str] = ()) -> Preset:
    """Preset `name` with `run --set` overrides: `FIELD=VALUE` changes a Preset field
    (`grpo_steps=50`), `RECIPE.FIELD=VALUE` a field of that recipe's config in every stage that
    builds one (`grpo.lr=3e-4`, `eval.top_p=0.95`). Every key and value is checked here, before
    any work: an unknown one is a UserError naming it."""
    from scalinglab.config import override, recipe_config

    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    plain, staged = [], []
    for item in sets:
        key = item.split("=", 1)[0].strip()
        if "." not in key:
            if key in ("name", "stage_sets"):
                raise UserError(f"--set {item!r}: {key} is not a setting (choose the preset with --preset)")
            plain.append(item)
            continue
        recipe, _, field = key.partition(".")
        if recipe not in STAGE_RECIPES:
            raise UserError(f"--set {item!r}: {recipe!r} is not a stage's recipe (known: {', '.join(STAGE_RECIPES)})")
        cls = recipe_config(recipe)
        try:
            override(cls(), [item.split(".", 1)[1]])  # type-checks the field and the value now
        except UserError as e:
            raise UserError(f"--set {item!r}: {e}") from None
        staged.append(item.strip())
    p = override(PRESETS[name], plain)
    return replace(p, stage_sets=p.stage_sets + tuple(staged)) if staged else p


def stage_overrides(p: Preset, recipe: str) -> list[str]:
    """The `FIELD=VALUE` overrides `run --set` gave for `recipe`'s config."""
    return [s.split(".", 1)[1] for s in p.stage_sets if s.split("=", 1)[0].split(".", 1)[0] == recipe]
