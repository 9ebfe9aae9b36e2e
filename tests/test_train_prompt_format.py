"""Every post-training recipe sees the prompts as the model should: chat template or few-shot.

The trainers wrap their task with `model.prompting.formatted` right after loading the model,
so SFT/DPO/RM (through `posttrain.open_run`) and GRPO/PPO (through `rl_run.load_policy`) draw,
train on and evaluate the same rendered prompts that `eval` and `synth` use. A character-level
toy model has no chat template, so a task with a few-shot prefix gets the prefix (chat auto).
"""

import pytest

pytest.importorskip("reasoning_gym", reason="the reasoning-gym package is not installed")

TASK = "rg:basic_arithmetic[min_terms=2,max_terms=2,min_digits=1,max_digits=1]"


@pytest.fixture
def model_dir(tiny_model, tmp_path):
    from scalinglab.model.hf import save_model

    model, tok = tiny_model
    return save_model(model, tok, tmp_path / "m")


def test_rl_run_formats_its_task(model_dir, tmp_path):
    from scalinglab.tasks import get_task
    from scalinglab.train.grpo import GRPOConfig
    from scalinglab.train.rl_run import load_policy, open_rl_run

    few_shot = get_task(TASK).few_shot
    assert few_shot
    o = open_rl_run(
        "grpo",
        GRPOConfig(task=TASK, steps=1, eval_problems=0, device="cpu"),
        str(model_dir),
        str(tmp_path / "g"),
        False,
    )
    task = load_policy(o)[2]
    p = task.generate(2, seed=5)[0]
    assert p.prompt.startswith(few_shot) and p.prompt.endswith(p.meta["raw_prompt"])
    o = open_rl_run(
        "grpo",
        GRPOConfig(task="arithmetic", steps=1, eval_problems=0, device="cpu"),
        str(model_dir),
        str(tmp_path / "a"),
        False,
    )
    plain = load_policy(o)[2]
    assert (
        plain.generate(1, seed=5)[0].prompt == get_task("arithmetic").generate(1, seed=5)[0].prompt
    )  # toy runs unchanged


def test_posttrain_open_run_formats_its_task(model_dir, tmp_path):
    from scalinglab.tasks import get_task
    from scalinglab.train.posttrain import open_run
    from scalinglab.train.sft import SFTConfig

    opened = open_run(
        "sft", SFTConfig(task=TASK, steps=1, eval_problems=0, device="cpu"), str(model_dir), str(tmp_path / "s"), False
    )
    assert opened.task.generate(1, seed=2)[0].prompt.startswith(get_task(TASK).few_shot)
    with pytest.raises(Exception, match="chat template"):
        open_run(
            "sft",
            SFTConfig(task=TASK, chat="on", steps=1, eval_problems=0, device="cpu"),
            str(model_dir),
            str(tmp_path / "t"),
            False,
        )
