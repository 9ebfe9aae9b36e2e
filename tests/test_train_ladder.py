"""`scalinglab sweep pretrain` on the local backend: rungs, ladder.csv, the fit, reuse, recovery.

Budgets are tiny (depth 1-2, 128-512 tokens: 1-4 optimizer steps of 4 x 32 tokens), so the
numbers are not a real scaling law; the test checks the bookkeeping and that the fit sees
exactly the rungs' numbers.
"""

import json
import math

import pytest
import typer
from typer.testing import CliRunner

from scalinglab.commands import sweep
from scalinglab.errors import UserError
from scalinglab.model import ModelConfig
from scalinglab.train.ladder import LadderConfig, parse_list, run_ladder, rung_name

TINY = ("batch_size=4", "seq_len=32", "val_tokens=1024", "warmup_steps=1", "log_every=1")
CFG = LadderConfig(task="arithmetic", depths=(1, 2), tokens=(128, 256, 512), bootstrap=50, grid="small", overrides=TINY)


@pytest.fixture(scope="module")
def ladder(tmp_path_factory):
    out = tmp_path_factory.mktemp("ladder") / "L"
    return out, run_ladder(CFG, str(out))


def test_parse_list():
    assert parse_list("1, 2,4", "--depths") == (1, 2, 4)
    assert parse_list("2e5,4e5", "--tokens") == (200_000, 400_000)
    for bad in ("1,x", "0", "1.5", "-2"):
        with pytest.raises(UserError, match="--tokens"):
            parse_list(bad, "--tokens")


def test_rows_are_the_rungs_numbers(ladder):
    out, s = ladder
    assert s["trained"] == 6 and s["reused"] == 0
    assert [(r["depth"], r["tokens_budget"]) for r in s["rungs"]] == [(d, t) for d in (1, 2) for t in (128, 256, 512)]
    for r in s["rungs"]:
        rung = json.loads((out / r["run"] / "summary.json").read_text())
        # N counts every parameter of the depth-d model; D = whole steps of 4 x 32 tokens; C = 6ND
        assert r["N"] == ModelConfig.from_depth(r["depth"], vocab_size=128).num_params
        assert r["D"] == math.ceil(r["tokens_budget"] / 128) * 128
        assert r["C"] == 6 * r["N"] * r["D"]
        assert r["loss"] == rung["val_loss"]
        steps = [m["step"] for m in map(json.loads, (out / r["run"] / "metrics.jsonl").read_text().splitlines())]
        assert steps == list(range(1, int(r["D"]) // 128 + 1))  # every step logged exactly once
    # more tokens -> lower held-out loss at each size (even 1 vs 4 steps of AdamW at lr 3e-3 shows it)
    for d in (1, 2):
        losses = [r["loss"] for r in s["rungs"] if r["depth"] == d]
        assert losses == sorted(losses, reverse=True)


def test_csv_and_fit(ladder):
    from scalinglab.scaling import read_table

    out, s = ladder
    cols = read_table(out / "ladder.csv")  # the table `scalinglab fit chinchilla` reads
    for k in ("N", "D", "C", "loss"):
        assert cols[k].tolist() == [r[k] for r in s["rungs"]]
    # two sizes cannot pin E + A/N^a: the fit must say so rather than look confident
    assert s["fit"]["n_points"] == 6 and s["fit"]["ill_determined"]
    assert any("2 distinct model sizes" in w for w in s["fit"]["warnings"])
    for f in ("loss_vs_compute.png", "fit.png"):
        assert (out / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "summary.json").read_text())["fit"]["params"] == s["fit"]["params"]


def test_changed_settings_are_refused(ladder):
    out, _ = ladder
    other = LadderConfig(
        task="arithmetic",
        depths=(1,),
        tokens=(128,),
        grid="small",
        bootstrap=0,
        overrides=tuple(x if not x.startswith("batch_size") else "batch_size=8" for x in TINY),
    )
    with pytest.raises(UserError, match="different config"):
        run_ladder(other, str(out))
    with pytest.raises(UserError, match="sets depth itself"):
        run_ladder(LadderConfig(depths=(1,), tokens=(128,), overrides=("depth=3",)), str(out))
    with pytest.raises(UserError, match="--backend"):
        run_ladder(CFG, str(out), backend="spark")


def test_half_written_rung_is_trained_again(tmp_path):
    """A killed attempt leaves config.json and some metrics but no summary: it is cleared and redone."""
    cfg = LadderConfig(depths=(1,), tokens=(256,), bootstrap=0, grid="small", overrides=TINY)
    rung = tmp_path / rung_name(1, 256)
    rung.mkdir()
    (rung / "config.json").write_text("{}")
    (rung / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n{"step": 2, "lo')
    s = run_ladder(cfg, str(tmp_path), figures=False)
    assert s["trained"] == 1
    steps = [json.loads(x)["step"] for x in (rung / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]
    assert s["fit"]["success"] is False and "need at least 6" in s["fit"]["message"]  # 1 point: reported, not raised
    assert s["compute_optimal"] is None


def test_cli_rerun_reuses_finished_rungs(ladder):
    """`sweep pretrain --json` on the finished ladder: one JSON object, nothing retrained, same fit."""
    out, s = ladder
    stamps = {r["run"]: (out / r["run"] / "summary.json").stat().st_mtime_ns for r in s["rungs"]}
    app = typer.Typer()
    sweep.register(app)
    args = [
        "sweep",
        "pretrain",
        "--depths",
        "1,2",
        "--tokens",
        "128,256,512",
        "--bootstrap",
        "50",
        "--grid",
        "small",
        "--out",
        str(out),
        "--json",
    ] + [a for kv in TINY for a in ("--set", kv)]
    r = CliRunner().invoke(app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["trained"] == 0 and got["reused"] == 6
    assert [r["loss"] for r in got["rungs"]] == [r["loss"] for r in s["rungs"]]
    assert got["fit"]["params"] == s["fit"]["params"]
    assert stamps == {r["run"]: (out / r["run"] / "summary.json").stat().st_mtime_ns for r in s["rungs"]}
