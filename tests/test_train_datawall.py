"""`scalinglab sweep datawall` end to end on tiny rungs: repeated and fresh rungs, the fit, reuse, errors.

Rungs are a few optimizer steps of 4 x 32 tokens on the real `pystdlib` corpus (its BPE is cached
after the first build), so the losses are not a data wall; the test checks that the rungs really
repeat (or never repeat) their data, that the table is the rungs' numbers, and the contract.
"""

import json

import pytest
from typer.testing import CliRunner

from scalinglab.cli import app, main
from scalinglab.errors import UserError
from scalinglab.train.datawall import DataWallConfig, jobs, run_datawall

TINY = (
    "aspect=16",
    "vocab_size=512",
    "batch_size=4",
    "seq_len=32",
    "val_tokens=1024",
    "warmup_steps=1",
    "log_every=1",
    "eval_problems=0",
)
CFG = DataWallConfig(depths=(1,), unique_tokens=660, epochs=(1, 2, 4), bootstrap=50, overrides=TINY)


@pytest.fixture(scope="module")
def wall(tmp_path_factory):
    out = tmp_path_factory.mktemp("wall") / "W"
    return out, run_datawall(CFG, str(out), figures=True)


def test_repeated_rungs_repeat_the_same_unique_tokens(wall):
    out, s = wall
    assert s["trained"] == 6 and s["reused"] == 0
    rep = sorted((r for r in s["rungs"] if r["kind"] == "repeated"), key=lambda r: r["D"])
    fresh = sorted((r for r in s["rungs"] if r["kind"] == "fresh"), key=lambda r: r["D"])
    assert [round(r["epochs"]) for r in rep] == [1, 2, 4]
    # 660 tokens = 20 windows of 33: U in trained-token units is 20 x 32 = 640 for every repeated rung
    assert {round(r["U"]) for r in rep} == {640}
    for r in rep:
        assert r["D"] == pytest.approx(r["epochs"] * r["U"])
    # fresh references: the same D, one pass over a pool of exactly D tokens' windows, U = D
    assert [r["D"] for r in fresh] == [r["D"] for r in rep]
    assert all(r["passes"] == 1.0 and r["U"] == r["D"] for r in fresh)
    # the rungs' own summaries say the same
    summ = json.loads((out / rep[-1]["run"] / "summary.json").read_text())
    assert summ["unique_tokens"] == 20 * 33 and summ["epochs"] == pytest.approx(rep[-1]["epochs"])


def test_table_and_csv_are_the_rungs_numbers(wall):
    out, s = wall
    by_run = {r["run"]: r for r in s["rungs"]}
    for t in s["comparison"]:
        e = round(t["epochs"])
        rep = by_run[f"rep-d1-u660-e{e}"]
        fresh = next(r for r in s["rungs"] if r["kind"] == "fresh" and r["D"] == rep["D"])
        assert t["loss_repeated"] == rep["loss"] and t["loss_fresh"] == fresh["loss"]
        assert t["loss_gap"] == pytest.approx(rep["loss"] / fresh["loss"] - 1)
    lines = (out / "datawall.csv").read_text().splitlines()
    assert lines[0].startswith("kind,depth,N,D,U,epochs,loss") and len(lines) == 7
    assert s["fit"]["law"] == "datawall" and "R_D*" in s["fit"]["params"]
    assert (out / "datawall.png").stat().st_size > 10_000


def test_rerun_reuses_every_rung_and_changed_settings_are_refused(wall):
    out, s = wall
    again = run_datawall(CFG, str(out), figures=False)
    assert again["trained"] == 0 and again["reused"] == 6
    assert [r["loss"] for r in again["rungs"]] == [r["loss"] for r in s["rungs"]]
    changed = DataWallConfig(depths=(1,), unique_tokens=660, epochs=(1, 2, 4), overrides=(*TINY[:-1], "lr=1e-3"))
    with pytest.raises(UserError, match="different config"):
        run_datawall(changed, str(out), figures=False)


def test_the_plan_names_every_rung():
    plan = jobs(DataWallConfig(depths=(2, 3), unique_tokens=1000, epochs=(1, 4)))
    assert set(plan) == {
        "rep-d2-u1000-e1",
        "rep-d2-u1000-e4",
        "fresh-d2-t1000",
        "fresh-d2-t4000",
        "rep-d3-u1000-e1",
        "rep-d3-u1000-e4",
        "fresh-d3-t1000",
        "fresh-d3-t4000",
    }
    kind, depth, e, pc = plan["rep-d3-u1000-e4"]
    assert (kind, depth, e, pc.tokens, pc.unique_tokens) == ("repeated", 3, 4, 4000, 1000)
    fresh = plan["fresh-d2-t4000"][3]  # the windows its steps serve, once each: the pool's first D tokens
    assert fresh.unique_tokens == fresh.total_steps * fresh.batch_size * (fresh.seq_len + 1) >= 4000


def test_fresh_references_contain_the_repeated_pool():
    """The 1-epoch pair trains on the same windows: a fresh pool is a prefix of the same fixed order."""
    import numpy as np

    from scalinglab.train.text import TextStream

    tokens = np.arange(33 * 200)
    small, big = TextStream(tokens, 33, seed=5, unique_tokens=660), TextStream(tokens, 33, seed=5, unique_tokens=2640)
    assert big.pool[: len(small.pool)] == small.pool
    rows = big.next_rows(len(big.pool))  # one epoch of the bigger pool: every window once
    assert len({int(r[0]) for r in rows}) == len(big.pool)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "arithmetic"], "needs a text corpus"),
        (["--epochs", "1"], "at least one count above 1"),
        (["--epochs", "1,x"], "--epochs"),
        (["--unique-tokens", "1e6", "--epochs", "1,16"], "training tokens"),
        (["--unique-tokens", "0.5"], "--unique-tokens"),
        (["--set", "tokens=1000"], "sets tokens itself"),
        (["--set", "unique_tokens=1000"], "sets unique_tokens itself"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main(["sweep", "datawall", "--out", str(tmp_path / "w"), *args])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "w").exists()  # a refused start leaves nothing behind


def test_cli_json_is_one_object(wall):
    out, s = wall
    args = [
        "sweep",
        "datawall",
        "--depths",
        "1",
        "--unique-tokens",
        "660",
        "--epochs",
        "1,2,4",
        "--bootstrap",
        "50",
        "--out",
        str(out),
        "--json",
    ]
    for item in TINY:
        args += ["--set", item]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["kind"] == "datawall" and got["reused"] == 6 and got["trained"] == 0
    assert got["comparison"][0]["loss_repeated"] == s["comparison"][0]["loss_repeated"]
