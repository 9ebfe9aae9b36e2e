"""`scalinglab eval`: one JSON object, the run directory (summary == stdout, figure), one-line errors."""

import json

import pytest
import typer
from typer.testing import CliRunner

from scalinglab.commands import testtime
from scalinglab.runs.store import write_jsonl
from scalinglab.tasks import get_task

root = typer.Typer()
testtime.register(root)
root.command("noop")(lambda: None)  # a second command keeps `eval` a named subcommand
runner = CliRunner()


@pytest.fixture
def model_dir(tiny_model, tmp_path):
    from scalinglab.model.hf import save_model

    model, tok = tiny_model
    return save_model(model, tok, tmp_path / "m")


def test_eval_json_and_run_directory(model_dir, tmp_path):
    probs = tmp_path / "p.jsonl"
    write_jsonl(probs, [p.to_json() for p in get_task("arithmetic").generate(2, seed=3)])
    out = tmp_path / "run"
    r = runner.invoke(
        root,
        [
            "eval",
            "--model",
            str(model_dir),
            "--task",
            "arithmetic",
            "--problems",
            str(probs),
            "--strategy",
            "majority",
            "--n",
            "2,1",
            "--max-new-tokens",
            "6",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--json",
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["task"] == "arithmetic" and s["strategy"] == "majority"
    assert [p["n"] for p in s["points"]] == [1, 2]
    assert set(s["points"][0]) >= {"n", "accuracy", "pass_at_k", "prompt_tokens", "generated_tokens", "flops"}
    assert [(q["id"], q["samples"]) for q in s["per_problem"]] == [("arithmetic-s3-0", 2), ("arithmetic-s3-1", 2)]
    cov = s["coverage"]  # pass@k at k = 1, 2 with intervals; two k values are too few for the law
    assert cov["k"] == [1, 2] and len(cov["ci95"]) == 2 and cov["law"] is None
    assert cov["pass_at_k"][0] == pytest.approx(s["points"][0]["pass_at_k"])
    assert json.loads((out / "summary.json").read_text()) == s
    assert (out / "accuracy_vs_flops.png").stat().st_size > 1000
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_num_problems_takes_the_first_n_of_a_problems_file(model_dir, tmp_path):
    """`--problems FILE --num-problems N` evaluates the file's first N problems (lm-eval's --limit); without N, all."""
    probs = tmp_path / "p.jsonl"
    write_jsonl(probs, [p.to_json() for p in get_task("arithmetic").generate(5, seed=3)])
    base = [
        "eval",
        "--model",
        str(model_dir),
        "--task",
        "arithmetic",
        "--problems",
        str(probs),
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
    for extra, want in (
        (["--num-problems", "2"], ["arithmetic-s3-0", "arithmetic-s3-1"]),
        ([], [f"arithmetic-s3-{i}" for i in range(5)]),
    ):
        r = runner.invoke(root, base + extra, catch_exceptions=False)
        assert r.exit_code == 0, r.output
        assert [q["id"] for q in json.loads(r.stdout)["per_problem"]] == want


def _main_exit(args, capsys):
    from scalinglab import cli

    with pytest.raises(SystemExit) as e:
        cli.main(args)
    return e.value.code, capsys.readouterr()


def test_bad_input_is_one_line_exit_2(model_dir, tmp_path, capsys):
    base = ["eval", "--model", str(model_dir), "--num-problems", "1", "--json"]
    code, cap = _main_exit(base + ["--strategy", "vibes"], capsys)
    assert (
        code == 2 and "--strategy 'vibes'" in cap.err and "--strategy 'vibes'" in json.loads(cap.out)["error"]
    )  # --json: the error as the one object
    code, cap = _main_exit(base + ["--n", "1,two"], capsys)
    assert code == 2 and "--n '1,two'" in cap.err
    code, cap = _main_exit(base + ["--strategy", "best-of-n", "--verifier", "prm"], capsys)
    assert code == 2 and "--reward-model" in cap.err
    code, cap = _main_exit(["eval", "--model", str(tmp_path / "nope"), "--json"], capsys)
    assert code == 2 and "nope" in cap.err


def test_parse_ns():
    assert testtime.parse_ns("1, 2,16") == (1, 2, 16)


def test_dtype_picks_the_decode_weights_and_a_bad_one_is_one_line(model_dir, tmp_path, capsys):
    base = [
        "eval",
        "--model",
        str(model_dir),
        "--task",
        "arithmetic",
        "--num-problems",
        "2",
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
    for flag, want in (("auto", "float32"), ("fp32", "float32"), ("bf16", "bfloat16")):
        r = runner.invoke(root, base + ["--dtype", flag], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["dtype"] == want
    code, cap = _main_exit(base + ["--dtype", "fp16"], capsys)
    assert code == 2 and "--dtype 'fp16'" in cap.err
