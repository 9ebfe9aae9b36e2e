"""RL post-training commands: `scalinglab train grpo|ppo`. (Held-out evaluation is
`scalinglab eval`, in commands/testtime.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from scalinglab.commands.common import JSON_OPT, emit, progress_bar, train_app
from scalinglab.config import set_help

MODEL_OPT = typer.Option(
    ...,
    help="Starting policy: a run directory (e.g. from `scalinglab pretrain`), a Hugging Face model directory, a .gguf file or a short name (smollm2-135m).",
)
TASK_OPT = typer.Option("arithmetic", help="Task whose verifier gives the reward (see docs/tasks.md).")
STEPS_OPT = typer.Option(200, help="RL steps (one rollout batch and one update each).")
SEED_OPT = typer.Option(0, help="Seed of the prompt stream and the sampler.")
CKPT_OPT = typer.Option(
    0, "--checkpoint-every", help="Write an atomic checkpoint every N steps (0 = final model only)."
)
OUT_OPT = typer.Option(..., help="Run directory to create (or to continue with --resume).")
RESUME_OPT = typer.Option(
    False, help="Continue a killed run from its last checkpoint; every step appears once in metrics.jsonl."
)


def register(app: typer.Typer) -> None:
    train_app.command("grpo")(grpo_cmd)
    train_app.command("ppo")(ppo_cmd)


def _human(s: dict) -> str:
    keys = ["accuracy_before", "accuracy", "gain", "reward_last10", "train_accuracy_last10", "seconds", "model"]
    return "\n".join(
        f"{k:>22}: {s[k]:.4g}" if isinstance(s.get(k), float) else f"{k:>22}: {s.get(k)}" for k in keys if k in s
    )


def _run(kind: str, cfg, model: Path, out: Path, resume: bool, as_json: bool) -> None:
    if kind == "grpo":
        from scalinglab.train.grpo import train_grpo as train
    else:
        from scalinglab.train.ppo import train_ppo as train
    with progress_bar(f"{kind} {cfg.task}") as bar:  # a NaN loss is a NonFiniteError: a UserError, one line
        summary = train(cfg, str(model), str(out), resume=resume, progress=bar)
    emit(summary, as_json, human=_human(summary))


def grpo_cmd(
    model: Path = MODEL_OPT,
    task: str = TASK_OPT,
    steps: int = STEPS_OPT,
    seed: int = SEED_OPT,
    checkpoint_every: int = CKPT_OPT,
    out: Path = OUT_OPT,
    resume: bool = RESUME_OPT,
    backend: str = typer.Option(
        "local", help="local: sample in this process; ray: generation and verifier actors on Ray."
    ),
    ray_address: str = typer.Option(
        "",
        "--ray-address",
        "--address",
        help="Ray cluster address to join (--backend ray; default: a private local instance).",
    ),
    ray_generators: int = typer.Option(
        2, "--ray-generators", "--workers", help="Generation actors on the Ray backend."
    ),
    set_: Optional[List[str]] = typer.Option(
        None, "--set", help=set_help("grpo", "--set lr=3e-4 --set group_size=16 --set advantage=center")
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """GRPO (DAPO-style: token-mean loss over the whole batch, clip-higher, zero-variance groups filtered) against the task's verifier.

    Example: scalinglab train grpo --model runs/A --task arithmetic --steps 200 --seed 0 --checkpoint-every 20 --out runs/B

    Writes OUT/metrics.jsonl (one line per step: reward, accuracy, response_length, entropy, kl,
    clip_frac, grad_norm, frac_reward_zero_std, mismatch_*, tokens_per_s, wall_time), checkpoints,
    OUT/model/ and OUT/summary.json with greedy accuracy on held-out problems before and after.
    Advantage variants: --set advantage=zscore|center|rloo. KL to the initial model: --set beta=0.01.
    """
    from scalinglab.config import override
    from scalinglab.train.grpo import GRPOConfig

    cfg = override(
        GRPOConfig(),
        {
            "task": task,
            "steps": steps,
            "seed": seed,
            "checkpoint_every": checkpoint_every,
            "backend": backend,
            "ray_address": ray_address,
            "ray_generators": ray_generators,
        },
    )
    cfg = override(cfg, set_ or [])
    _run("grpo", cfg, model, out, resume, as_json)


def ppo_cmd(
    model: Path = MODEL_OPT,
    task: str = TASK_OPT,
    steps: int = STEPS_OPT,
    seed: int = SEED_OPT,
    checkpoint_every: int = CKPT_OPT,
    out: Path = OUT_OPT,
    resume: bool = RESUME_OPT,
    set_: Optional[List[str]] = typer.Option(
        None,
        "--set",
        help=set_help("ppo", "--set reward=orm --set reward_model=runs/RM --set kl_coef=0.02"),
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """PPO with a value model: GAE (γ=1, λ=0.95), whitened advantages, value clipping, per-token k1 KL to the reference in the reward.

    Example: scalinglab train ppo --model runs/A --task arithmetic --steps 200 --seed 0 --checkpoint-every 20 --out runs/C

    Rewards: the task's verifier (default), an outcome reward model (--set reward=orm --set reward_model=DIR)
    or a process reward model (--set reward=prm --set reward_model=DIR; per-step rewards on each step's last token,
    shaped by --set prm_shaping=min (PURE min-form, default) | clip (Gao et al.) | sum (gameable, for comparison)).
    Same outputs as `train grpo`.
    """
    from scalinglab.config import override
    from scalinglab.train.ppo import PPOConfig

    cfg = override(PPOConfig(), {"task": task, "steps": steps, "seed": seed, "checkpoint_every": checkpoint_every})
    cfg = override(cfg, set_ or [])
    _run("ppo", cfg, model, out, resume, as_json)
