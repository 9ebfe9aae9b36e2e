"""`scalinglab fit` and `scalinglab bench fit`: one JSON object on stdout, one-line errors, torch-free scaling/."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import scalinglab.scaling as pkg
from scalinglab.commands import scaling
from scalinglab.scaling import laws

root = typer.Typer()
scaling.register(root)
root.add_typer(scaling.common.bench_app, name="bench")
runner = CliRunner()
REF = Path(__file__).parents[2] / "shared" / "reference"


def _json(*args):
    r = runner.invoke(root, [*args, "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_fit_chinchilla_csv_with_aliases(tmp_path):
    N, D = (a.ravel() for a in np.meshgrid(np.geomspace(1e7, 5e9, 6), np.geomspace(1e9, 1e11, 6)))
    L = laws.chinchilla(N, D, E=1.7, A=400.0, B=1500.0, alpha=0.34, beta=0.30)
    f = tmp_path / "ladder.csv"
    f.write_text("params,tokens,loss\n" + "".join(f"{a},{b},{c}\n" for a, b, c in zip(N, D, L)))
    out = _json("fit", "chinchilla", str(f), "--bootstrap", "50", "--grid", "small")
    assert set(out) >= {"law", "params", "ci95", "success", "message", "n_points"}
    assert out["law"] == "chinchilla" and out["n_points"] == 36 and out["success"]
    assert out["params"]["alpha"] == pytest.approx(0.34, rel=1e-3)
    assert len(out["ci95"]["beta"]) == 2
    plan = _json("fit", "chinchilla", str(f), "--bootstrap", "20", "--grid", "small", "--compute", "1e20,1e22")[
        "compute_optimal"
    ]
    # N* ∝ C^(β/(α+β)): 100x the compute gives 100^(0.30/0.64) x the parameters
    assert plan["N"][1] / plan["N"][0] == pytest.approx(100 ** (0.30 / 0.64), rel=1e-3)
    assert len(plan["bands"]["N"][0]) == 2


def test_fit_power_json_and_x_y_columns(tmp_path):
    f = tmp_path / "opt.json"
    f.write_text(json.dumps([{"flops": c, "n_star": 0.1 * c**0.5, "junk": "x"} for c in (1e16, 1e17, 1e18, 1e19)]))
    out = _json("fit", "power", str(f), "--x", "flops", "--y", "n_star", "--bootstrap", "0")
    assert out["params"]["b"] == pytest.approx(0.5) and out["params"]["a"] == pytest.approx(0.1)


def _main_exit(args, capsys):
    from scalinglab import cli

    with pytest.raises(SystemExit) as e:
        cli.main(args)
    return e.value.code, capsys.readouterr()


def test_bad_input_is_one_line_exit_2(tmp_path, capsys):
    code, cap = _main_exit(["fit", "power", str(tmp_path / "missing.csv"), "--json"], capsys)
    assert (
        code == 2 and "missing.csv" in cap.err and "missing.csv" in json.loads(cap.out)["error"]
    )  # --json: the error as the one object
    f = tmp_path / "t.csv"
    f.write_text("a,b\n1,2\n2,3\n")
    code, cap = _main_exit(["fit", "power", str(f), "--x", "nope"], capsys)
    assert code == 2 and "'nope'" in cap.err
    code, cap = _main_exit(["fit", "quadratic", str(f)], capsys)
    assert code == 2 and "unknown law" in cap.err


def test_a_fit_that_fits_nothing_is_one_error_line_and_a_nonzero_exit(tmp_path):
    """Too few points: nothing is fitted, so the command fails (a script's `&&` stops) with the reason."""
    f = tmp_path / "t.csv"
    f.write_text("k,c\n1,0.5\n2,0.6\n")
    from scalinglab.cli import main

    with pytest.raises(SystemExit) as e:
        main(["fit", "coverage", str(f), "--json"])
    assert e.value.code == 2


@pytest.mark.slow  # runs the full 4,500-start grid plus a few SciPy solves: ~10 s
def test_bench_fit_small(tmp_path):
    if not (REF / "epoch_chinchilla_svg_extracted_data.csv").is_file():
        pytest.skip("Epoch data not present")
    out = _json("bench", "fit", "--bootstrap", "40", "--naive-starts", "4", "--naive-resamples", "4")
    assert out["naive_extrapolated"] is True and "scaled up" in out["note"]
    assert out["speedup"] > 0 and out["same_answer"]["bootstrap_median_rel_diff"] < 1e-3


def test_scaling_is_torch_free():
    for f in sorted(Path(pkg.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n.split(".")[0] == "torch" for n in names), f"{f.name} imports torch"
    mods = ", ".join(
        f"scalinglab.scaling.{f.stem}" for f in Path(pkg.__file__).parent.glob("*.py") if f.stem != "__init__"
    )
    assert (
        subprocess.run([sys.executable, "-c", f"import sys, {mods}; sys.exit('torch' in sys.modules)"]).returncode == 0
    )
