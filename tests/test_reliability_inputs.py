"""Bad input ends in one line naming it, a non-zero exit and nothing half-written (issue 20,
items 10-13): tokenomics configs and workloads, --out that is a file or unwritable, input
files that are binary, directories or not UTF-8, nonsense training settings."""

import json

import pytest

from scalinglab.cli import main
from scalinglab.errors import UserError
from scalinglab.runs.store import read_json, read_text

LLAMA = {
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 100,
}


def cli(capsys, *args):
    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code or 0
    return code, capsys.readouterr()


def _one_line(err):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "change,key",
    [
        ({"num_attention_heads": 0}, "num_attention_heads"),
        ({"hidden_size": -64}, "hidden"),
        ({"num_key_value_heads": 0}, "kv_heads"),
        ({"num_hidden_layers": "32"}, "num_hidden_layers"),
        ({"vocab_size": [100]}, "vocab_size"),
        ({"num_key_value_heads": 3}, "key/value heads"),
        ({"sliding_window": "big"}, "sliding_window"),
    ],
)
def test_tokenomics_config_with_impossible_shapes_is_refused_naming_the_field(tmp_path, capsys, change, key):
    (tmp_path / "config.json").write_text(json.dumps({**LLAMA, **change}))
    code, o = cli(capsys, "tokenomics", "kv", "--model", str(tmp_path / "config.json"), "--json")
    assert code == 2 and key in _one_line(o.err)
    assert key in json.loads(o.out)["error"]  # --json: the error object is the one thing on stdout


def test_a_sound_config_still_loads(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    code, o = cli(capsys, "tokenomics", "kv", "--model", str(tmp_path), "--json")
    assert code == 0 and json.loads(o.out)["attention"] == "GQA"


@pytest.mark.parametrize("content", [b"\xff\xfe\x00binary", b"", b"[1, 2]", b'{"num_hidden_layers": 2'])
def test_tokenomics_model_file_that_is_not_a_config(tmp_path, capsys, content):
    (tmp_path / "m.json").write_bytes(content)
    code, o = cli(capsys, "tokenomics", "kv", "--model", str(tmp_path / "m.json"))
    assert code == 2 and "m.json" in _one_line(o.err)


@pytest.mark.parametrize(
    "args,msg",
    [
        (["serve", "--model", "Qwen2.5-0.5B", "--n-requests", "10", "--warmup", "10"], "--warmup 10"),
        (
            ["serve", "--model", "Llama-3.1-8B", "--input-len", "5000000", "--output-len", "10", "--n-requests", "3"],
            "KV cache",
        ),
        (["decode", "--model", "Llama-3.1-405B", "--hardware", "H100"], "do not fit"),
        (
            ["decode", "--model", "Llama-3.1-8B", "--hardware", "H100", "--batch", "4000", "--context", "100000"],
            "do not fit",
        ),
        (["train", "--params", "nan", "--tokens", "1e12"], "--params"),
    ],
)
def test_tokenomics_workloads_that_cannot_run_are_one_line(capsys, args, msg):
    code, o = cli(capsys, "tokenomics", *args, "--json")
    assert code == 2 and msg in _one_line(o.err) and msg in json.loads(o.out)["error"]


def test_shared_reader_names_binary_directory_and_missing_files(tmp_path):
    (tmp_path / "bin").write_bytes(b"ok\n\xff\xfe")
    with pytest.raises(UserError, match=r"--data .*bin: not UTF-8 text \(byte 3\)") as e:
        read_text(tmp_path / "bin", "--data")
    assert e.value.input == str(tmp_path / "bin")
    with pytest.raises(UserError, match="is a directory"):
        read_text(tmp_path)
    with pytest.raises(UserError, match="no such file"):
        read_json(tmp_path / "nope.json")


@pytest.mark.parametrize("make", ["file", "proc"])
def test_out_that_is_a_file_or_unwritable_is_one_line_and_creates_nothing(tmp_path, capsys, make):
    out = tmp_path / "f" if make == "file" else "/proc/scalinglab-x/run"
    if make == "file":
        out.write_text("keep me")
    code, o = cli(capsys, "pretrain", "--depth", "1", "--steps", "1", "--out", str(out))
    assert code == 2 and "--out" in _one_line(o.err)
    if make == "file":
        assert out.read_text() == "keep me"


@pytest.mark.parametrize("content", [b"\xff\xfe\x00\x01", "DIR"])
def test_sft_data_that_is_binary_or_a_directory_leaves_no_run(tmp_path, capsys, content):
    data = tmp_path / "d.jsonl"
    if content == "DIR":
        data.mkdir()
    else:
        data.write_bytes(content)
    code, o = cli(
        capsys, "train", "sft", "--model", "/nonexistent-model", "--data", str(data), "--out", str(tmp_path / "S")
    )
    assert code == 2 and "--data" in _one_line(o.err)
    assert not (tmp_path / "S").exists()


@pytest.mark.parametrize(
    "sets,key",
    [
        (["group_size=0"], "group_size"),
        (["lr=nan"], "lr"),
        (["temperature=-1"], "temperature"),
        (["checkpoint_every=-1"], "checkpoint_every"),
    ],
)
def test_grpo_nonsense_settings_name_the_key(tmp_path, capsys, sets, key):
    args = [a for s in sets for a in ("--set", s)]
    code, o = cli(capsys, "train", "grpo", "--model", "/nonexistent-model", "--out", str(tmp_path / "G"), *args)
    assert code == 2 and f"'{key}'" in _one_line(o.err)
    assert not (tmp_path / "G").exists()


def test_grpo_zero_steps_is_refused(tmp_path, capsys):
    code, o = cli(
        capsys, "train", "grpo", "--model", "/nonexistent-model", "--out", str(tmp_path / "G"), "--steps", "0"
    )
    assert code == 2 and "'steps'" in _one_line(o.err)


@pytest.mark.parametrize(
    "args",
    [
        ["pretrain", "--set", "device=tpu", "--out", "OUT"],
        ["generate", "--model", "MODEL", "--prompts", "PROMPTS", "--device", "tpu"],
    ],
)
def test_unknown_device_is_one_line(tmp_path, capsys, args):
    (tmp_path / "p.txt").write_text("1+1=?\n")
    (tmp_path / "m").mkdir()
    args = [
        a.replace("OUT", str(tmp_path / "R"))
        .replace("PROMPTS", str(tmp_path / "p.txt"))
        .replace("MODEL", str(tmp_path / "m"))
        for a in args
    ]
    code, o = cli(capsys, *args)
    assert code == 2 and "tpu" in _one_line(o.err)
    assert not (tmp_path / "R").exists()


def test_atomic_writes_to_an_impossible_place_are_one_line(tmp_path):
    from scalinglab.runs.store import atomic_write_json

    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match=r"cannot write there \(.*/f is a file\)"):
        atomic_write_json(tmp_path / "f" / "out.json", {})
    with pytest.raises(UserError, match="cannot write there"):
        atomic_write_json("/proc/scalinglab-x/out.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_cost_plot_to_an_unwritable_place_and_negative_workers_are_one_line(capsys, tmp_path):
    code, o = cli(
        capsys, "tokenomics", "cost", "--model", "Qwen2.5-0.5B", "--plot", "/proc/scalinglab-x/cost.png", "--json"
    )
    assert code == 2 and "--plot" in _one_line(o.err)
    from scalinglab.verify.pool import WorkerPool

    with pytest.raises(UserError, match="--workers -2"):
        WorkerPool("math.sqrt", workers=-2)


@pytest.mark.parametrize(
    "content,msg",
    [
        ('{"N": 1, "loss": 2}', "same length"),
        ("[1, 2, 3]", "no table rows"),
        ('{"N": [1, 2], "loss": [3]}', "same length"),
        ("DIR", "is a directory"),
    ],
)
def test_fit_on_data_of_the_wrong_shape_is_one_line(tmp_path, capsys, content, msg):
    f = tmp_path / "d.json"
    if content == "DIR":
        f.mkdir()
    else:
        f.write_text(content)
    code, o = cli(capsys, "fit", "chinchilla", str(f))
    assert code == 2 and msg in _one_line(o.err)


def test_a_fit_with_too_few_usable_points_is_an_error_not_a_table_of_nan(tmp_path, capsys):
    f = tmp_path / "d.csv"
    f.write_text("x,y\n1,-1\n2,0\n0,3\n")
    code, o = cli(capsys, "fit", "power", str(f), "--json")
    assert code == 2 and "usable points" in _one_line(o.err)
    assert json.loads(o.out)["error"].startswith("power fit of")


def test_a_chinchilla_exponent_off_the_plausible_range_is_called_unconstrained_not_bounded():
    import numpy as np

    from scalinglab.scaling.chinchilla import fit_chinchilla

    N = np.repeat([1e6, 1e7, 1e8], 3)
    D = np.tile([1e8, 1e9, 1e10], 3)
    L = 1.0 + 5.0 * (N < 2e6) + 1e-3 * np.log(D)  # a cliff between the two smallest sizes: alpha runs off
    res = fit_chinchilla(N, D, L, bootstrap=0, grid="small")
    text = " ".join(res.warnings)
    assert "upper bound" not in text and "lower bound" not in text
    assert not 1e-3 <= res.params["alpha"] <= 2.5  # the cliff really sends it off (8.6 here)
    assert "alpha=" in text and "outside the plausible range" in text and "unconstrained" in text


def test_annotate_negative_limit_is_refused(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "1+1=", "answer": "2", "completion": "2"}\n')
    code, o = cli(
        capsys,
        "annotate",
        "--task",
        "arithmetic",
        "--model",
        str(tmp_path / "m"),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "o.jsonl"),
        "--limit",
        "-1",
    )
    assert code == 2 and "--limit" in _one_line(o.err)
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize(
    "kw,name",
    [
        ({"temperature": -1.0}, "temperature=-1.0"),
        ({"top_p": 0.0}, "top_p=0.0"),
        ({"max_new_tokens": 0}, "max_new_tokens=0"),
        ({"n": 0}, "n=0"),
        ({"top_k": -5}, "top_k=-5"),
    ],
)
def test_sampling_params_refuse_nonsense_for_every_caller(kw, name):
    from scalinglab.engine import SamplingParams

    with pytest.raises(UserError, match=name):
        SamplingParams(**kw)
    SamplingParams(greedy=True, temperature=-1.0)  # greedy ignores the temperature


@pytest.mark.parametrize(
    "flag,value", [("--temperature", "nan"), ("--top-p", "1.5"), ("--max-batch", "0"), ("--max-new-tokens", "-3")]
)
def test_eval_names_a_nonsense_sampling_value_before_loading_anything(tmp_path, capsys, flag, value):
    code, o = cli(capsys, "eval", "--model", str(tmp_path / "nowhere"), flag, value)
    assert code == 2 and f"{flag} {value}" in _one_line(o.err)


def test_prompt_past_the_context_and_nan_weights_are_one_line(tmp_path, tiny_model):
    import torch

    from scalinglab.engine import Engine, SamplingParams
    from scalinglab.model.hf import load_model, save_model

    model, tok = tiny_model
    ctx = model.config.max_position_embeddings
    with pytest.raises(UserError, match="runs past the model's context"):
        Engine(model, tok).generate(["1" * (ctx - 4)], SamplingParams(max_new_tokens=8))
    d = save_model(model, tok, tmp_path / "m")
    load_model(d)  # intact weights load
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    d = save_model(model, tok, tmp_path / "nan")
    with pytest.raises(UserError, match="NaN or infinity: model.layers.0.mlp.down_proj.weight"):
        load_model(d)


def test_eval_that_fails_leaves_no_half_run_and_the_corrected_command_runs(tmp_path, capsys, tiny_model):
    from scalinglab.model.hf import save_model
    from scalinglab.runs import list_runs

    model, tok = tiny_model
    d = save_model(model, tok, tmp_path / "m")
    out = tmp_path / "E"
    # a prompt longer than the context fails inside the evaluation, after the run directory was created
    code, o = cli(
        capsys,
        "eval",
        "--model",
        str(d),
        "--task",
        "arithmetic",
        "--num-problems",
        "2",
        "--strategy",
        "greedy",
        "--n",
        "1",
        "--max-new-tokens",
        str(model.config.max_position_embeddings),
        "--out",
        str(out),
    )
    assert code == 2 and "context" in _one_line(o.err)
    assert not out.exists()
    assert not [r for r in list_runs(tmp_path) if r["name"] == "E"]  # a run that did nothing leaves no row either
    code, o = cli(
        capsys,
        "eval",
        "--model",
        str(d),
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
        "--out",
        str(out),
    )
    assert code == 0 and [r["status"] for r in list_runs(tmp_path) if r["name"] == "E"] == [
        "finished"
    ]  # the corrected command runs
