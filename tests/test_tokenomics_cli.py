"""The `scalinglab tokenomics` commands: one JSON object on stdout, clear errors."""

import json

import pytest
import typer
from typer.testing import CliRunner

from scalinglab.commands import tokenomics
from scalinglab.errors import UserError

root = typer.Typer()
tokenomics.register(root)
runner = CliRunner()


def _json(*args):
    r = runner.invoke(root, ["tokenomics", *args, "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_kv_json():
    assert _json("kv", "--model", "Llama-3.1-70B")["kv_bytes_per_token"] == 327680


def test_memory_decode_prefill_json():
    r = _json(
        "memory",
        "--model",
        "Llama-3.1-405B",
        "--hardware",
        "H200",
        "--tp",
        "8",
        "--weights-dtype",
        "fp8",
        "--context",
        "20000",
    )
    assert r["max_batch"] == 63
    d = _json("decode", "--model", "Llama-3.1-8B", "--hardware", "H100", "--batch", "8", "--context", "1000")
    assert {"step_seconds", "tokens_per_s", "bound"} <= set(d)
    assert _json("prefill", "--model", "Qwen2.5-0.5B", "--input-len", "512")["bound"] in ("compute", "memory")


def test_serve_cost_train_rl(tmp_path):
    r = _json("serve", "--model", "Qwen2.5-0.5B", "--n-requests", "50", "--rate", "10", "--output-len", "50")
    assert r["counted"] == 50 and r["ttft_s"]["p50"] > 0
    png = tmp_path / "cost.png"
    c = _json("cost", "--model", "Llama-3.1-8B", "--cot-len", "1000,4000", "--plot", str(png))
    assert len(c["answers"]) == 2 and png.exists() and c["prices"]["usd_per_m_output"] > 0
    assert _json("train", "--params", "1e9", "--tokens", "2e10", "--gpus", "8")["flops"] == pytest.approx(1.2e20)
    assert 0 < _json("rl", "--model", "Qwen2.5-0.5B", "--steps", "2")["rollout_share"] < 1


def test_calibrate_json(tmp_path):
    r = _json("calibrate", "--quick", "--path", str(tmp_path / "cal.json"))
    assert r["matmul_flops"] > 1e8 and r["bandwidth_bytes_per_s"] > 1e8 and (tmp_path / "cal.json").exists()


@pytest.mark.parametrize(
    "args,match",
    [
        (["kv", "--model", "no-such"], "--model"),
        (["decode", "--hardware", "X100"], "--hardware"),
        (["decode", "--batch", "0"], "--batch"),
        (["serve", "--disagg", "1:x"], "--disagg"),
        (["cost", "--cot-len", "a,b"], "--cot-len"),
    ],
)
def test_bad_input_is_a_user_error(args, match):
    r = runner.invoke(root, ["tokenomics", *args])
    assert isinstance(r.exception, UserError) and match in str(r.exception)
