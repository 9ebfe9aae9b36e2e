"""`scalinglab tasks` (one line per task), and `eval --set KEY=VALUE` / `--problems` with the real benchmarks."""

import json

import pytest
from typer.testing import CliRunner

from scalinglab.cli import app
from scalinglab.errors import UserError
from scalinglab.tasks import get_task, parse_settings, task_names

runner = CliRunner()


def test_tasks_lists_every_task_on_one_line():
    r = runner.invoke(app, ["tasks"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().split("\n")
    assert [ln.split()[0] for ln in lines] == task_names() + ["rg:<name>"]
    assert "gsm8k" in task_names() and "humaneval" in task_names()
    assert all("(problems: " in ln for ln in lines)


def test_tasks_json_and_rg_listing():
    pytest.importorskip("reasoning_gym", reason="the reasoning-gym package is not installed")
    r = runner.invoke(app, ["tasks", "--rg", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["rg_count"] == len(out["rg"]) >= 100
    assert f"any of reasoning-gym's {out['rg_count']} tasks" in out["tasks"][-1]["about"]
    ba = next(t for t in out["rg"] if t["name"] == "rg:basic_arithmetic")
    assert ba["difficulty_levels"] is True and ba["about"]
    text = runner.invoke(app, ["tasks", "--rg"]).stdout
    assert "\nrg:basic_arithmetic " in text and f"reasoning-gym tasks ({out['rg_count']};" in text


def test_settings_parse_and_apply_to_dataclass_tasks():
    assert parse_settings(["min_terms=2", " split = train "]) == {"min_terms": "2", "split": "train"}
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_settings(["min_terms"])
    assert get_task("arithmetic", {"default_difficulty": "3"}).generate(1, seed=0)[0].meta["a"] >= 100
    assert get_task("code", {"n_cases": "3"}).generate(1, seed=0)[0].meta["cases"].__len__() == 3
    with pytest.raises(UserError, match="unknown setting 'digits' .*allowed: default_difficulty, ops"):
        get_task("arithmetic", {"digits": "3"})
    with pytest.raises(UserError, match="expected int"):
        get_task("arithmetic", {"default_difficulty": "three"})


@pytest.fixture
def model_dir(tiny_model, tmp_path):
    from scalinglab.model.hf import save_model

    model, tok = tiny_model
    return save_model(model, tok, tmp_path / "m")


def _main(args, capsys):
    from scalinglab import cli

    with pytest.raises(SystemExit) as e:
        cli.main(args)
    return e.value.code, capsys.readouterr()


def test_eval_set_and_gsm8k_problems_file(model_dir, tmp_path, capsys):
    pytest.importorskip("reasoning_gym", reason="the reasoning-gym package is not installed")
    base = [
        "eval",
        "--model",
        str(model_dir),
        "--strategy",
        "greedy",
        "--n",
        "1",
        "--max-new-tokens",
        "4",
        "--device",
        "cpu",
        "--json",
    ]
    r = runner.invoke(
        app,
        base + ["--task", "rg:basic_arithmetic", "--num-problems", "2", "--set", "min_terms=2", "--set", "max_terms=2"],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    from scalinglab.tasks import get_task
    from scalinglab.tasks.split import draw

    expect = draw(
        get_task("rg:basic_arithmetic", {"min_terms": 2, "max_terms": 2}), 2, 777, split="eval"
    )  # the eval split
    assert s["task"] == "rg:basic_arithmetic" and [q["id"] for q in s["per_problem"]] == [p.id for p in expect]
    code, cap = _main(base + ["--task", "rg:basic_arithmetic", "--num-problems", "1", "--set", "min_term=2"], capsys)
    assert code == 2 and "unknown setting 'min_term'" in cap.err and "min_terms" in cap.err
    code, cap = _main(base + ["--task", "arithmetic", "--num-problems", "1", "--set", "oops"], capsys)
    assert code == 2 and "--set 'oops'" in cap.err
    raw = tmp_path / "test.jsonl"  # GSM8K's own format, read by the gsm8k task
    raw.write_text(json.dumps({"question": "What is 2 + 3?", "answer": "2+3=<<2+3=5>>5\n#### 5"}) + "\n")
    r = runner.invoke(app, base + ["--task", "gsm8k", "--problems", str(raw)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert [q["id"] for q in json.loads(r.stdout)["per_problem"]] == ["gsm8k-test-1"]
