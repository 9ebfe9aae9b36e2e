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
CFG = DataWallConfig(depths=(1,), unique_tokens=660, epochs=(1, 2, 4), seeds=1, bootstrap=50, overrides=TINY)


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
    assert lines[0].startswith("kind,depth,N,D,U,epochs,seed,loss") and len(lines) == 7
    assert s["fit"]["law"] == "datawall" and "R_D*" in s["fit"]["params"]
    assert (out / "datawall.png").stat().st_size > 10_000


def test_rerun_reuses_every_rung_and_changed_settings_are_refused(wall):
    out, s = wall
    again = run_datawall(CFG, str(out), figures=False)
    assert again["trained"] == 0 and again["reused"] == 6
    assert [r["loss"] for r in again["rungs"]] == [r["loss"] for r in s["rungs"]]
    changed = DataWallConfig(
        depths=(1,), unique_tokens=660, epochs=(1, 2, 4), seeds=1, overrides=(*TINY[:-1], "lr=1e-3")
    )
    with pytest.raises(UserError, match="different config"):
        run_datawall(changed, str(out), figures=False)


def test_the_plan_names_every_rung():
    plan = jobs(DataWallConfig(depths=(2, 3), unique_tokens=1000, epochs=(1, 4), seeds=1))
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
    kind, depth, e, seed, pc = plan["rep-d3-u1000-e4"]
    assert (kind, depth, e, seed, pc.tokens, pc.unique_tokens) == ("repeated", 3, 4, 0, 4000, 1000)
    fresh = plan["fresh-d2-t4000"][4]  # the windows its steps serve, once each: the pool's first D tokens
    assert fresh.unique_tokens == fresh.total_steps * fresh.batch_size * (fresh.seq_len + 1) >= 4000


def test_seeds_replicate_every_rung_on_the_same_tokens():
    plan = jobs(DataWallConfig(depths=(2,), unique_tokens=1000, epochs=(1, 4), seed=3, seeds=2))
    assert set(plan) == {
        "rep-d2-u1000-e1",
        "rep-d2-u1000-e4",
        "fresh-d2-t1000",
        "fresh-d2-t4000",
        "rep-d2-u1000-e1-s4",
        "rep-d2-u1000-e4-s4",
        "fresh-d2-t1000-s4",
        "fresh-d2-t4000-s4",
    }
    a, b = plan["rep-d2-u1000-e4"][4], plan["rep-d2-u1000-e4-s4"][4]
    assert (a.seed, b.seed) == (3, 4) and a.unique_tokens == b.unique_tokens == 1000 and a.tokens == b.tokens
    assert plan["fresh-d2-t4000-s4"][4].unique_tokens == plan["fresh-d2-t4000"][4].unique_tokens


def test_gap_interval_from_the_seeds_scatter():
    from scalinglab.train.datawall import gap_interval

    assert gap_interval([3.0], [2.9, 3.1]) is None  # one run: its scatter is unknown
    lo, hi = gap_interval([3.10, 3.12, 3.08], [3.00, 3.02, 2.98])
    assert 0 < lo < 3.10 / 3.00 - 1 < hi < 0.07  # 3.3% gap, runs within 0.7%: the interval excludes 0
    lo, hi = gap_interval([3.2, 3.0, 3.1], [3.0, 3.2, 3.1])
    assert lo < 0 < hi and hi - lo > 0.1  # no gap, 6% scatter: a wide interval around 0


def test_seed_replicates_are_points_of_the_fit_and_the_table_averages_them(tmp_path):
    cfg = DataWallConfig(depths=(1,), unique_tokens=660, epochs=(1, 2), seeds=2, bootstrap=20, overrides=TINY)
    s = run_datawall(cfg, str(tmp_path / "W"), figures=False)
    assert s["trained"] == 8 and s["fit"]["n_points"] == 8
    runs = {r["run"]: r for r in s["rungs"]}
    assert runs["rep-d1-u660-e2"]["seed"] == 0 and runs["rep-d1-u660-e2-s1"]["seed"] == 1
    assert runs["rep-d1-u660-e2"]["loss"] != runs["rep-d1-u660-e2-s1"]["loss"]  # another init and order
    t = next(t for t in s["comparison"] if round(t["epochs"]) == 2)
    rep = [runs["rep-d1-u660-e2"]["loss"], runs["rep-d1-u660-e2-s1"]["loss"]]
    assert t["seeds"] == 2 and t["loss_repeated_runs"] == rep and t["loss_repeated"] == pytest.approx(sum(rep) / 2)
    lo, hi = t["loss_gap_ci95"]
    assert lo < t["loss_gap"] < hi
    assert set(s["shape"]) == {"near_fresh_to_4_epochs", "late_cost", "R_D*_pinned", "verdict"}


def test_published_shape_needs_all_three_checks():
    from types import SimpleNamespace

    from scalinglab.train.datawall import published_shape

    def row(e, lo, hi):
        return {"epochs": e, "loss_gap_ci95": [lo, hi]}

    pinned = SimpleNamespace(success=True, warnings=[])
    shape = [row(1, -0.02, 0.02), row(2, -0.01, 0.03), row(4, 0.005, 0.04), row(8, 0.0, 0.05), row(16, 0.02, 0.08)]
    assert published_shape(shape, pinned) == {
        "near_fresh_to_4_epochs": True,
        "late_cost": True,
        "R_D*_pinned": True,
        "verdict": "the published shape",
    }
    costly_early = [*shape[:2], row(4, 0.03, 0.06), *shape[3:]]  # 4 epochs already cost more than 2%
    assert published_shape(costly_early, pinned)["near_fresh_to_4_epochs"] is False
    free = [*shape[:4], row(16, -0.01, 0.05)]  # 16 epochs not shown to cost anything
    assert published_shape(free, pinned)["late_cost"] is False
    boxed = SimpleNamespace(success=True, warnings=["the 95% interval of R_D* (10, 1e+04) runs into its search box"])
    got = published_shape(shape, boxed)
    assert got["R_D*_pinned"] is False and got["verdict"] == "not shown: R_D*_pinned fails"
    one_seed = [{"epochs": e, "loss_gap_ci95": None} for e in (1, 2, 4, 16)]
    got = published_shape(one_seed, pinned)
    assert got["near_fresh_to_4_epochs"] is None and got["late_cost"] is None and "unmeasured" in got["verdict"]


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
        (["--unique-tokens", "4e5"], "training tokens"),  # the default 16 epochs of 4e5 exceed the corpus
        (["--unique-tokens", "0.5"], "--unique-tokens"),
        (["--seeds", "0"], "--seeds 0"),
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
        "--seeds",
        "1",
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
