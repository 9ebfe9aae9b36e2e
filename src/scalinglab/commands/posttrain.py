"""Post-training commands: `scalinglab train sft | dpo | reward-model`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from scalinglab.commands.common import JSON_OPT, emit, progress_bar, train_app
from scalinglab.config import set_help

MODEL_OPT = typer.Option(
    ...,
    "--model",
    help="Starting model: a run directory (e.g. from `scalinglab pretrain`), a Hugging Face model directory, a .gguf file or a short name (smollm2-135m).",
)
TASK_OPT = typer.Option(
    "arithmetic",
    "--task",
    help="Task that generates problems, verifies answers and evaluates (see `scalinglab tasks`).",
)
DATA_OPT = typer.Option(
    None,
    "--data",
    help="JSONL to train on instead of generating data here (formats in --help of each command and docs/posttrain.md).",
)
STEPS_OPT = typer.Option(None, "--steps", help="Optimizer steps (default: the config's).")
SEED_OPT = typer.Option(0, "--seed", help="Seed for data, sampling and initialisation.")
OUT_OPT = typer.Option(..., "--out", help="Run directory to create (or to continue with --resume).")
RESUME_OPT = typer.Option(
    False, "--resume", help="Continue a killed run from its last checkpoint; no step is lost or repeated."
)
CKPT_OPT = typer.Option(
    None, "--checkpoint-every", help="Steps between atomic checkpoints (default 0: only the final model)."
)


def _set_opt(recipe: str) -> typer.models.OptionInfo:
    return typer.Option(None, "--set", help=set_help(recipe, "--set lr=1e-4 --set batch_size=8"))


def register(app: typer.Typer) -> None:  # commands attach to `train_app` at import time
    return None


def _config(cfg, task: str, data: Optional[Path], steps: Optional[int], seed: int, ckpt: Optional[int], sets, **more):
    from scalinglab.config import override

    base = {"task": task, "seed": seed, **more}
    if data is not None:
        base["data"] = str(data)
    if steps is not None:
        base["steps"] = steps
    if ckpt is not None:
        base["checkpoint_every"] = ckpt
    return override(override(cfg, base), sets or [])


def _human(s: dict, keys: list[str]) -> str:
    return "\n".join(
        f"{k:>20}: {s[k]:.4g}" if isinstance(s.get(k), float) else f"{k:>20}: {s.get(k)}" for k in keys if k in s
    )


@train_app.command("sft")
def sft_cmd(
    model: Path = MODEL_OPT,
    task: str = TASK_OPT,
    data: Optional[Path] = DATA_OPT,
    steps: Optional[int] = STEPS_OPT,
    seed: int = SEED_OPT,
    out: Path = OUT_OPT,
    resume: bool = RESUME_OPT,
    checkpoint_every: Optional[int] = CKPT_OPT,
    set_: Optional[List[str]] = _set_opt("sft"),
    as_json: bool = JSON_OPT,
) -> None:
    """Supervised fine-tuning, loss on answer tokens only, examples packed with document masks.

    Data: --data (problems with `solution`, or `scalinglab synth` rows with `completion`, `correct`).

    Without --data: the task's worked solutions, or with --set source=samples the model's own verified samples.

    Example: scalinglab train sft --model runs/A --task arithmetic --set source=samples --steps 100 --out runs/S
    """
    from scalinglab.train.sft import SFTConfig, sft

    cfg = _config(SFTConfig(), task, data, steps, seed, checkpoint_every, set_)
    with progress_bar("sft") as bar:
        s = sft(cfg, str(model), str(out), resume=resume, progress=bar)
    emit(
        s,
        as_json,
        human=_human(
            s, ["examples", "train_loss", "train_token_accuracy", "base_accuracy", "accuracy", "seconds", "model"]
        ),
    )


@train_app.command("dpo")
def dpo_cmd(
    model: Path = MODEL_OPT,
    task: str = TASK_OPT,
    data: Optional[Path] = DATA_OPT,
    steps: Optional[int] = STEPS_OPT,
    seed: int = SEED_OPT,
    out: Path = OUT_OPT,
    resume: bool = RESUME_OPT,
    checkpoint_every: Optional[int] = CKPT_OPT,
    beta: Optional[float] = typer.Option(
        None, "--beta", help="DPO β (default 0.1): larger keeps the policy closer to the reference."
    ),
    set_: Optional[List[str]] = _set_opt("dpo"),
    as_json: bool = JSON_OPT,
) -> None:
    """Direct Preference Optimization on (verified, failed) sample pairs; reference log-probs precomputed.

    Data: --data (rows `prompt, chosen, rejected`, or labelled samples `prompt, completion, correct`).

    Without --data: k samples per problem from the model, verified by the task, paired correct vs wrong.

    Example: scalinglab train dpo --model runs/A --task arithmetic --steps 50 --out runs/D
    """
    from scalinglab.train.dpo import DPOConfig, dpo

    more = {"beta": beta} if beta is not None else {}
    cfg = _config(DPOConfig(), task, data, steps, seed, checkpoint_every, set_, **more)
    with progress_bar("dpo") as bar:
        s = dpo(cfg, str(model), str(out), resume=resume, progress=bar)
    emit(
        s,
        as_json,
        human=_human(
            s,
            [
                "pairs",
                "train_loss",
                "reward_accuracy",
                "reward_margin",
                "base_accuracy",
                "accuracy",
                "seconds",
                "model",
            ],
        ),
    )


@train_app.command("reward-model")
def reward_model_cmd(
    model: Path = MODEL_OPT,
    task: str = TASK_OPT,
    data: Optional[Path] = DATA_OPT,
    steps: Optional[int] = STEPS_OPT,
    seed: int = SEED_OPT,
    out: Path = OUT_OPT,
    resume: bool = RESUME_OPT,
    checkpoint_every: Optional[int] = CKPT_OPT,
    kind: str = typer.Option("orm", "--kind", help="orm (one score per answer) or prm (one score per step)."),
    objective: str = typer.Option(
        "bce", "--objective", help="ORM: bce on verifier labels, or bt (Bradley–Terry) on preference pairs."
    ),
    set_: Optional[List[str]] = _set_opt("reward-model"),
    as_json: bool = JSON_OPT,
) -> None:
    """Train an outcome (ORM) or process (PRM) reward model: the backbone plus a scalar head.

    ORM data: --data labelled samples (`prompt, completion, correct`), or pairs (`prompt, chosen, rejected`,
    e.g. judge-labelled: RLAIF) with --objective bt; without --data, the model's samples verified by the task.

    PRM data: --data from `scalinglab annotate` (`prompt, steps, soft, hard`); without it, the same
    Math-Shepherd annotation runs here on the model's samples.

    The summary reports the AUC of correct vs wrong held-out answers. Load the result in Python with
    scalinglab.train.reward_model.load_reward_model(OUT).

    Example: scalinglab train reward-model --model runs/A --task arithmetic --kind prm --steps 200 --out runs/PRM
    """
    from scalinglab.train.reward_trainer import RewardModelConfig, train_reward_model

    cfg = _config(RewardModelConfig(), task, data, steps, seed, checkpoint_every, set_, kind=kind, objective=objective)
    with progress_bar(f"reward-model {cfg.kind}") as bar:
        s = train_reward_model(cfg, str(model), str(out), resume=resume, progress=bar)
    emit(
        s,
        as_json,
        human=_human(
            s,
            [
                "rm_kind",
                "objective",
                "examples",
                "train_loss",
                "train_accuracy",
                "auc",
                "auc_min",
                "auc_last",
                "seconds",
                "model",
            ],
        ),
    )
