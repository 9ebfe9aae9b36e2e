"""The installed `scalinglab` executable: one line naming the bad input, the right exit codes.

These run the console script that `pip install` wrote (not the typer app object), so they
catch what a user sees: typer >= 0.24 vendors its own click, and an `isinstance` check on
`click.ClickException` no longer matched its usage errors (they printed a traceback).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXE = shutil.which("scalinglab", path=str(Path(sys.executable).parent)) or shutil.which("scalinglab")
pytestmark = pytest.mark.skipif(EXE is None, reason="the scalinglab console script is not installed (pip install -e .)")


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"}
    )


@pytest.mark.parametrize(
    "args, names",
    [
        (["pretrain", "--bogus"], "--bogus"),  # a mistyped flag
        (["sweep", "pretrain", "--steps", "40", "--out", "x"], "--steps"),  # a flag of another command
        (["pretrian"], "pretrian"),  # a bad subcommand
        (["generate", "--prompts", "p.txt"], "--model"),  # a missing required option
        (["pretrain", "--depth", "two"], "--depth"),  # a wrong type
    ],
)
def test_usage_errors_are_one_line(args, names, tmp_path):
    r = _run(*args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and names in lines[0] and lines[0].startswith("error:")
    assert r.stdout == ""


def test_usage_error_under_json_is_the_one_object():
    r = _run("fit", "power", "x.csv", "--json", "--bogus")
    assert r.returncode == 2
    obj = json.loads(r.stdout)
    assert "--bogus" in obj["error"] and obj["input"] == "--bogus"
    assert len(r.stderr.strip().splitlines()) == 1


def test_ctrl_c_exits_130_with_a_message(tmp_path):
    """SIGINT during a long fit: exit 130 and one line, so `scalinglab ... && next` stops."""
    import numpy as np

    rng = np.random.default_rng(0)
    n, d = np.meshgrid(np.geomspace(1e6, 1e9, 8), np.geomspace(1e8, 1e11, 8))
    loss = 1.7 + 400 / n**0.34 + 410 / d**0.28
    csv = tmp_path / "big.csv"
    csv.write_text(
        "N,D,loss\n"
        + "".join(
            f"{a:.6g},{b:.6g},{c * (1 + 0.01 * rng.standard_normal()):.6g}\n"
            for a, b, c in zip(n.ravel(), d.ravel(), loss.ravel())
        )
    )
    # A shell's background job (`cmd &`, nohup) starts with SIGINT ignored, and children inherit that:
    # give the command the default disposition a terminal user's process has.
    p = subprocess.Popen(
        [EXE, "fit", "chinchilla", str(csv), "--bootstrap", "400000", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(4)  # past start-up, inside the bootstrap
    assert p.poll() is None, "the fit finished before it could be interrupted"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, (p.returncode, err)
    assert "interrupted" in err and "Traceback" not in err


def test_help_does_not_import_heavy_modules():
    """`--help` stays quick because the heavy libraries are imported by the commands that use them."""
    code = (
        "import sys; from scalinglab import cli; "
        "heavy = [m for m in ('torch', 'transformers', 'scipy', 'matplotlib', 'datasets') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"imported at CLI start-up: {r.stdout.strip()}"


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--temperature", "-1"),
        ("--max-batch", "0"),
        ("--top-k", "-5"),
        ("--n", "0"),
        ("--top-p", "0"),
        ("--max-new-tokens", "0"),
    ],
)
def test_generate_rejects_nonsense_sampling_values(flag, value, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("1+1=\n")
    r = _run("generate", "--model", str(tmp_path / "nowhere"), "--prompts", str(prompts), flag, value)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert f"{flag} {value}" in r.stderr  # named before the (missing) model is even looked at


def test_weights_that_do_not_match_the_config_are_one_line(tmp_path, tiny_model):
    """A config.json edited (or copied) so its shapes disagree with model.safetensors: one line, not a load_state_dict dump."""
    from scalinglab.model.hf import save_model

    model, tok = tiny_model
    d = save_model(model, tok, tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["intermediate_size"] += 8
    (d / "config.json").write_text(json.dumps(cfg))
    prompts = tmp_path / "p.txt"
    prompts.write_text("1+1=\n")
    r = _run("generate", "--model", str(d), "--prompts", str(prompts), "--max-new-tokens", "2")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "do not match config.json" in r.stderr, (
        r.stderr
    )
