"""Every config field is visible (`scalinglab config show RECIPE`), and named flags are the fields.

Issue 18, point 6: a flag that renames a field, or whose default differs from the config's,
makes a recipe behave differently from the command line than from `--set` or the library.
"""

import dataclasses
import json

import pytest
import typer

from scalinglab.cli import app
from scalinglab.config import RECIPES, field_docs, override, recipe_config

# command path -> recipe, for the commands that build a recipe's config from their flags
COMMANDS = {
    ("pretrain",): "pretrain",
    ("train", "sft"): "sft",
    ("train", "dpo"): "dpo",
    ("train", "reward-model"): "reward-model",
    ("train", "grpo"): "grpo",
    ("train", "ppo"): "ppo",
    ("synth",): "synth",
    ("annotate",): "annotate",
    ("sweep", "pretrain"): "sweep-pretrain",
    ("sweep", "isoflop"): "isoflop",
    ("sweep", "datawall"): "datawall",
    ("sweep", "saturation"): "saturation",
}
# flags that are inputs of the command rather than fields of the recipe's config
NOT_CONFIG = {"out", "resume", "as_json", "set_", "model", "data", "backend", "address"}
SAMPLER_INPUTS = {"task", "n", "problems", "difficulty", "device", "max_batch", "chat", "system", "limit"}


def _command(path):
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return cmd


@pytest.mark.parametrize("path", list(COMMANDS), ids=" ".join)
def test_named_flags_are_config_fields_with_the_configs_default(path):
    cls = recipe_config(COMMANDS[path])
    fields = {f.name for f in dataclasses.fields(cls)}
    allowed = NOT_CONFIG | (SAMPLER_INPUTS if path in (("synth",), ("annotate",)) else set())
    for param in _command(path).params:
        if param.name in allowed and param.name not in fields:
            continue
        assert param.name in fields, f"{' '.join(path)}: flag {param.opts} is not a field of {cls.__name__}"
        if param.default is None:  # None = "the config's default"
            continue
        # the flag's default, parsed as the command line parses it, must leave the config unchanged
        assert override(cls(), {param.name: param.default}) == cls(), (
            f"{' '.join(path)}: flag {param.opts} defaults to {param.default!r}, "
            f"{cls.__name__}.{param.name} to {getattr(cls(), param.name)!r}"
        )


@pytest.mark.parametrize("path", [p for p in COMMANDS if p[0] != "sweep"], ids=" ".join)
def test_set_help_names_the_config_and_where_its_fields_are_listed(path):
    helps = [p.help for p in _command(path).params if p.name == "set_"]
    assert helps, f"{' '.join(path)} has no --set"
    assert f"scalinglab config show {COMMANDS[path]}" in helps[0]


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_config_show_lists_every_field(recipe, run_cli):
    code, out, err = run_cli("config", "show", recipe, "--json")
    assert code == 0, err
    shown = json.loads(out)
    cls = recipe_config(recipe)
    assert [r["field"] for r in shown["fields"]] == [f.name for f in dataclasses.fields(cls)]
    assert shown["config"] == cls.__name__
    defaults = json.loads(json.dumps(dataclasses.asdict(cls()), default=str))
    assert {r["field"]: r["default"] for r in shown["fields"]} == defaults


def test_field_help_comes_from_the_fields_comment_even_when_the_formatter_wrapped_it():
    docs = {d.name: d for d in field_docs(recipe_config("grpo"))}
    assert docs["lr"].help == "AdamW learning rate (constant after warmup)"
    assert docs["lr"].type == "float" and docs["lr"].default == 1e-4
    # `chat: Literal[...] = (\n "auto"  # the tokenizer's ... \n)`: the comment sits inside the parentheses
    assert docs["chat"].help.startswith("the tokenizer's chat template")
    assert docs["chat"].type == "auto | on | off"


def test_config_show_a_preset_shows_its_values(run_cli):
    code, out, _ = run_cli("config", "show", "run", "--preset", "smoke", "--json")
    assert code == 0
    values = {r["field"]: r["default"] for r in json.loads(out)["fields"]}
    assert values["name"] == "smoke" and values["task"] == "addition"


@pytest.mark.parametrize(
    "args, message",
    [
        (("config", "show", "nope"), "unknown recipe 'nope'"),
        (("config", "show", "sft", "--preset", "smoke"), "only recipe `run` has presets"),
        (("config", "show", "run", "--preset", "huge"), "--preset 'huge': known presets are"),
    ],
)
def test_config_show_bad_input_is_one_line(run_cli, args, message):
    code, out, err = run_cli(*args)
    assert code == 2 and message in err and out == ""
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_run_set_changes_a_preset_field_or_a_stage_recipes_field():
    from scalinglab.pipeline.presets import PRESETS, configure, stage_overrides

    p = configure("smoke", ["grpo_steps=7", "grpo.lr=3e-4", "eval.top_p=0.9"])
    assert p.grpo_steps == 7 and p.task == PRESETS["smoke"].task
    assert stage_overrides(p, "grpo") == ["lr=3e-4"] and stage_overrides(p, "eval") == ["top_p=0.9"]
    assert stage_overrides(p, "sft") == []
    assert configure("smoke") == PRESETS["smoke"]


@pytest.mark.parametrize(
    "item, message",
    [
        ("nope=1", "unknown config key 'nope' for Preset"),
        ("grpo.nope=1", "unknown config key 'nope' for GRPOConfig"),
        ("x.lr=1", "'x' is not a stage's recipe"),
        ("grpo.lr=abc", "expected float, got 'abc'"),
        ("name=cpu", "choose the preset with --preset"),
    ],
)
def test_run_set_rejects_a_bad_key_or_value_before_any_work(item, message):
    from scalinglab.errors import UserError
    from scalinglab.pipeline.presets import configure

    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        configure("smoke", [item])


def test_a_literal_field_is_checked_when_the_config_is_built_in_python_too():
    from scalinglab.errors import UserError
    from scalinglab.testtime.evaluate import EvalConfig

    with pytest.raises(UserError, match="--strategy 'vibes': expected one of greedy, sample, majority"):
        EvalConfig(strategy="vibes")
    with pytest.raises(UserError, match="config key 'verifier': 'judge' is not one of"):
        override(EvalConfig(), ["verifier=judge"])
    assert EvalConfig(strategy="beam", aggregation="last").strategy == "beam"


class _Built(Exception):
    """Raised by a stand-in trainer with the config the stage built."""


def test_run_set_reaches_the_config_a_stage_builds(monkeypatch, tmp_path):
    import scalinglab.train.grpo as grpo
    from scalinglab.pipeline import stages
    from scalinglab.pipeline.presets import configure
    from scalinglab.pipeline.results import StageResult

    def capture(cfg, *args, **kwargs):
        raise _Built(cfg)

    monkeypatch.setattr(grpo, "train_grpo", capture)
    p = configure("smoke", ["grpo_steps=5", "grpo.lr=0.5", "grpo.advantage=rloo"])
    ctx = stages.Context(out=tmp_path, preset=p, progress=lambda name: lambda *a, **k: None)
    ctx.records["sft"] = StageResult(title="sft", headline={}, model=str(tmp_path / "model"))
    with pytest.raises(_Built) as built:
        stages.rl(ctx)
    cfg = built.value.args[0]
    assert (cfg.steps, cfg.lr, cfg.advantage) == (5, 0.5, "rloo")
    assert cfg.prompts_per_step == p.rl_prompts_per_step  # the stage's own settings stay


def test_a_resumed_run_needs_the_settings_it_was_started_with(tmp_path):
    import json

    from scalinglab.errors import UserError
    from scalinglab.pipeline import run_pipeline
    from scalinglab.pipeline.presets import configure

    out = tmp_path / "run"
    out.mkdir()
    (out / "preset.json").write_text(json.dumps(configure("smoke", ["grpo_steps=5"]).__dict__))
    with pytest.raises(UserError, match=r"was started with grpo_steps=5, not 3 \(resume with the --set"):
        run_pipeline("smoke", str(out), resume=True)
    with pytest.raises(UserError, match="was started with stage_sets"):
        run_pipeline("smoke", str(out), resume=True, sets=["grpo_steps=5", "grpo.lr=1e-3"])


def test_a_literal_fields_values_are_exactly_what_its_dispatch_table_implements():
    import typing

    from scalinglab.train.advantages import ADVANTAGES
    from scalinglab.train.grpo import GRPOConfig
    from scalinglab.train.ppo import PRM_SHAPINGS, PPOConfig

    hints = typing.get_type_hints(GRPOConfig)
    assert set(typing.get_args(hints["advantage"])) == set(ADVANTAGES)
    assert set(typing.get_args(typing.get_type_hints(PPOConfig)["prm_shaping"])) == set(PRM_SHAPINGS)


@pytest.mark.parametrize(
    "recipe, field, value",
    [
        ("grpo", "advantage", "mean"),
        ("ppo", "reward", "judge"),
        ("isoflop", "dial", "heads"),
        ("reward-model", "kind", "vrm"),
        ("sft", "source", "web"),
        ("dpo", "chat", "maybe"),
        ("run", "text_dial", "heads"),
    ],
)
def test_a_bad_choice_is_refused_when_the_config_is_built(recipe, field, value):
    from scalinglab.errors import UserError

    cls = recipe_config(recipe)
    with pytest.raises(UserError, match=f"--{field.replace('_', '-')} '{value}': expected one of"):
        cls(**{field: value})
