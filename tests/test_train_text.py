"""Pre-training on real text: the stdlib corpus and its split by file, the byte-level BPE trained here, the
window stream (resume, unique tokens, epochs), next-token accuracy, and a tiny IsoFLOP sweep end to end."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from scalinglab.tasks.corpus import EVAL_EVERY, split_of_path, stdlib_corpus
from scalinglab.train.text import TextStream, eval_rows, next_tokens_accuracy


def _mini_corpus(tmp_path, n=40):
    root = tmp_path / "lib"
    for i in range(n):
        sub = root / ("pkg" if i % 3 else "")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"mod{i}.py").write_text(f"def f{i}(x):\n    return x * {i}  # module {i}\n" * 5)
    (root / "test").mkdir()
    (root / "test" / "test_x.py").write_text("assert True\n")
    (root / "site-packages").mkdir()
    (root / "site-packages" / "y.py").write_text("y = 1\n")
    return root


def test_the_split_is_by_file_and_leaves_tests_out(tmp_path):
    c = stdlib_corpus(_mini_corpus(tmp_path))
    train, ev = set(c.files("train")), set(c.files("eval"))
    assert train.isdisjoint(ev) and train | ev == set(c.paths) and len(c.paths) == 40
    assert not any(p.startswith(("test/", "site-packages/")) for p in c.paths)
    assert all(split_of_path(p) == "eval" for p in ev)


def test_fingerprint_follows_the_bytes(tmp_path):
    root = _mini_corpus(tmp_path)
    a = stdlib_corpus(root).fingerprint
    assert stdlib_corpus(root).fingerprint == a
    (root / "mod0.py").write_text("changed = True\n")
    assert stdlib_corpus(root).fingerprint != a


def test_the_real_stdlib_corpus_holds_out_about_one_file_in_ten():
    c = stdlib_corpus()
    n_eval = len(c.files("eval"))
    assert len(c.paths) > 300  # a real standard library
    assert abs(n_eval / len(c.paths) - 1 / EVAL_EVERY) < 0.05
    assert not any("/test/" in f"/{p}" or p.startswith("test/") for p in c.paths)


def test_bpe_round_trips_any_text_and_loads_in_transformers(tmp_path):
    from scalinglab.model.tokenizer import load_tokenizer, train_bpe

    texts = [f"def f{i}(x):\n    return x ** {i}\n" for i in range(200)]
    tok = train_bpe(texts, 300, tmp_path / "tok")
    assert tok.vocab_size == 300 and tok.adds_bos
    s = "déjà vu: ∑ x_i\t\n  tabs and ünïcode 🙂"
    ids = tok.encode(s)
    assert ids[0] == tok.bos_id and tok.decode(ids) == s
    assert len(tok.encode("return x ** 1", bos=False)) < len("return x ** 1")  # merges were learned
    again = load_tokenizer(tmp_path / "tok")
    assert again.encode(s) == ids
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    assert hf(s)["input_ids"] == ids
    with pytest.raises(Exception, match="at least"):
        train_bpe(texts, 100, tmp_path / "small")


def test_stream_resumes_exactly_and_repeats_only_its_unique_tokens():
    tokens = np.arange(10_000, dtype=np.uint16)
    a = TextStream(tokens, 100, seed=3)
    first = a.next_rows(7)
    b = TextStream(tokens, 100, seed=3)
    b.load(a.state())
    assert torch.equal(a.next_rows(5), b.next_rows(5))
    assert torch.equal(TextStream(tokens, 100, seed=3).next_rows(7), first)
    # unique tokens: a pool of 5 windows, the same windows for every seed, reshuffled each epoch
    u = TextStream(tokens, 100, seed=1, unique_tokens=500)
    rows = u.next_rows(15)
    starts = {int(r[0]) for r in rows}
    assert len(starts) == 5 and u.epochs() == 3.0 and u.unique_tokens == 500
    assert {int(r[0]) for r in TextStream(tokens, 100, seed=9, unique_tokens=500).next_rows(5)} == starts
    epochs = [[int(r[0]) for r in rows[i : i + 5]] for i in (0, 5, 10)]
    assert all(sorted(e) == sorted(epochs[0]) for e in epochs) and len({tuple(e) for e in epochs}) > 1
    assert all(int(r[-1]) - int(r[0]) == 99 for r in rows)  # whole contiguous windows


class _Oracle(torch.nn.Module):
    """Logits that put the next token of `tokens` first wherever the context matches (tokens are distinct)."""

    def __init__(self, vocab, right=True):
        super().__init__()
        self.vocab, self.right = vocab, right
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, ids):
        nxt = (ids + 1) % self.vocab if self.right else torch.zeros_like(ids)
        return torch.nn.functional.one_hot(nxt, self.vocab).float()


def test_next_tokens_accuracy_counts_exact_continuations():
    tokens = np.arange(3000, dtype=np.int64) % 500  # each token's successor is token + 1
    assert next_tokens_accuracy(_Oracle(500), tokens, context=20, k=4, items=50) == 1.0
    assert next_tokens_accuracy(_Oracle(500, right=False), tokens, context=20, k=4, items=50) == 0.0
    rows = eval_rows(tokens, 129, 1000)
    assert rows.shape == (7, 129) and int(rows[0, 0]) == 0


def test_pretrain_on_the_corpus_records_what_it_was_made_from(tmp_path):
    from scalinglab.train.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(
        task="pystdlib",
        depth=1,
        width=24,
        vocab_size=512,
        batch_size=8,
        seq_len=64,
        tokens=8192,
        val_tokens=4096,
        eval_problems=20,
        log_every=4,
    )
    s = pretrain(cfg, str(tmp_path / "r"))
    assert s["corpus"]["name"] == "pystdlib" and s["corpus"]["files"]["eval"] > 0
    assert math.isfinite(s["val_loss"]) and s["val_loss"] < math.log(512) + 0.5
    assert s["tokens"] == 8192 and 0.0 <= s["accuracy"] <= 1.0 and "next 4 tokens" in s["accuracy_task"]
    from scalinglab.model.tokenizer import load_tokenizer

    tok = load_tokenizer(tmp_path / "r" / "model")
    assert tok.vocab_size == 512 and tok.decode(tok.encode("import os\n")) == "import os\n"


def test_unique_tokens_needs_a_corpus(tmp_path):
    from scalinglab.errors import UserError
    from scalinglab.train.pretrain import PretrainConfig, pretrain

    with pytest.raises(UserError, match="unique_tokens"):
        pretrain(PretrainConfig(task="arithmetic", unique_tokens=1000), str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


EXE = shutil.which("scalinglab", path=str(Path(sys.executable).parent)) or shutil.which("scalinglab")


def _cli(*args):
    if EXE is None:
        pytest.skip("the scalinglab console script is not installed (pip install -e .)")
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    )


def test_sweep_isoflop_predicts_before_it_trains(tmp_path):
    out = tmp_path / "iso"
    args = [
        "sweep",
        "isoflop",
        "--budgets",
        "1e9,2e9",
        "--sizes",
        "8,16,24",
        "--predict",
        "4e9",
        "--lr-width",
        "0",
        "--bootstrap",
        "60",
        "--grid",
        "small",
        "--eval-problems",
        "40",
        "--out",
        str(out),
        "--json",
        "--set",
        "vocab_size=512",
        "--set",
        "batch_size=8",
        "--set",
        "seq_len=64",
        "--set",
        "val_tokens=4096",
    ]
    r = _cli(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(r.stdout)
    assert len(s["rungs"]) == 12 and {r_["budget"] for r_ in s["rungs"]} == {1e9, 2e9}  # 2 seeds by default
    assert sorted(r_["seed"] for r_ in s["rungs"]) == [0] * 6 + [1] * 6
    assert (out / "rung-w8-c1e09").is_dir() and (out / "rung-w8-c1e09-s1").is_dir()
    for row in s["rungs"]:  # D = C / 6N, to a whole number of steps
        assert abs(row["C"] - row["budget"]) / row["budget"] < 0.6
    p = s["prediction"]
    assert set(p) >= {"predicted", "interval95", "measured", "relative_error", "inside", "N", "D", "size"}
    assert p["relative_error"] == pytest.approx((p["predicted"] - p["measured"]) / p["measured"])
    saved = json.loads((out / "prediction.json").read_text())
    assert saved["predicted"] == p["predicted"] and "measured" not in saved  # written before the training
    # 10-20-step toys: no profile has its vertex inside its sizes, so Approach 2 has no line and the
    # parametric law names the size and predicts alone (tests/test_scaling_isoflop.py: the frontier's path)
    assert s["approach2"]["budgets_used"] == [] and p["method"] == saved["method"] == "approach3"
    assert s["heldout_rung"]["budget"] == 4e9 and s["heldout_rung"]["loss"] == p["measured"]
    assert len(p["measured_runs"]) == 2 and p["measured"] == pytest.approx(sum(p["measured_runs"]) / 2)
    assert {f.split("/")[-1] for f in s["figures"]} >= {"isoflop.png", "nopt.png"}
    assert len(s["approach2"]["profiles"]) == 2
    again = json.loads(_cli(*args).stdout)
    assert again["trained"] == 0 and again["reused"] == 14 and again["prediction"]["measured"] == p["measured"]


def test_sweep_isoflop_refuses_bad_designs(tmp_path):
    r = _cli("sweep", "isoflop", "--budgets", "1e9", "--out", str(tmp_path / "a"))
    assert r.returncode == 2 and "at least two distinct" in r.stderr and not (tmp_path / "a").exists()
    r = _cli("sweep", "isoflop", "--sizes", "16,24", "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "three distinct" in r.stderr
    r = _cli("sweep", "isoflop", "--budgets", "1e9,2e9", "--predict", "1e9", "--out", str(tmp_path / "c"))
    assert r.returncode == 2 and "must exceed the largest" in r.stderr
    r = _cli("sweep", "isoflop", "--budgets", "1e9,x", "--out", str(tmp_path / "d"))
    assert r.returncode == 2 and "'x' is not a number" in r.stderr
    r = _cli("sweep", "isoflop", "--set", "depth=3", "--out", str(tmp_path / "e"))
    assert r.returncode == 2 and "sets depth itself" in r.stderr
    r = _cli("sweep", "isoflop", "--sizes", "16,24,32", "--window", "2", "--out", str(tmp_path / "f"))
    assert r.returncode == 2 and "--window 2" in r.stderr and not (tmp_path / "f").exists()
    r = _cli("sweep", "isoflop", "--workers", "-1", "--out", str(tmp_path / "g"))
    assert r.returncode == 2 and "--workers -1" in r.stderr and not (tmp_path / "g").exists()
    for cmd in ("datawall", "saturation"):  # the same flag on the other sweeps
        r = _cli("sweep", cmd, "--workers", "-1", "--out", str(tmp_path / cmd))
        assert r.returncode == 2 and "--workers -1" in r.stderr and not (tmp_path / cmd).exists()
    r = _cli("sweep", "isoflop", "--seeds", "0", "--out", str(tmp_path / "h"))
    assert r.returncode == 2 and "--seeds 0" in r.stderr and not (tmp_path / "h").exists()


def test_isoflop_window_slides_up_the_dial_with_the_budget():
    from scalinglab.train.isoflop import IsoFlopConfig, budget_sizes

    cfg = IsoFlopConfig(budgets=(8e11, 1e11, 4e11, 2e11), sizes=(56, 8, 16, 24, 32, 40, 48), window=5)
    assert budget_sizes(cfg) == {
        1e11: [8, 16, 24, 32, 40],  # the smallest budget: the smallest sizes
        2e11: [8, 16, 24, 32, 40],
        4e11: [16, 24, 32, 40, 48],
        8e11: [24, 32, 40, 48, 56],  # the largest budget: the largest sizes
    }
    every = budget_sizes(IsoFlopConfig(budgets=(1e11, 2e11), sizes=(16, 24, 32, 40), window=0))
    assert every == {1e11: [16, 24, 32, 40], 2e11: [16, 24, 32, 40]}  # window 0: every size at every budget
    few = budget_sizes(IsoFlopConfig(budgets=(1e11, 2e11), sizes=(16, 24, 32)))  # the default window 5 > 3 sizes
    assert few == {1e11: [16, 24, 32], 2e11: [16, 24, 32]}


def test_isoflop_lr_width_sets_each_rungs_learning_rate(tmp_path):
    from scalinglab.train.isoflop import IsoFlopConfig, rung_config

    assert rung_config(IsoFlopConfig(lr_width=0.168), 48, 80_000, 4e11).lr == pytest.approx(0.0035)
    assert rung_config(IsoFlopConfig(lr_width=0.168), 24, 26_000, 4e11).lr == pytest.approx(0.007)
    assert rung_config(IsoFlopConfig(), 48, 80_000, 4e11).lr == pytest.approx(0.0035)  # the default, 0.168
    assert rung_config(IsoFlopConfig(lr_width=0), 48, 80_000, 4e11).lr == 0.0  # the model's default
    assert rung_config(IsoFlopConfig(dial="depth"), 3, 80_000, 4e11).lr == 0.0  # not on the depth dial
    r = _cli(
        "sweep", "isoflop", "--dial", "depth", "--sizes", "1,2,3", "--lr-width", "0.2", "--out", str(tmp_path / "a")
    )
    assert r.returncode == 2 and "--lr-width 0.2" in r.stderr and "width dial only" in r.stderr


def test_uniform_shape_gives_every_width_heads_of_8_and_the_same_mlp_ratio():
    from scalinglab.model.config import ModelConfig

    for w in (16, 24, 40, 48, 56):
        m = ModelConfig.from_depth(2, vocab_size=512, width=w, shape="uniform")
        assert (m.head_dim, m.num_attention_heads, m.num_key_value_heads) == (8, w // 8, w // 8)
        assert m.intermediate_size % 8 == 0 and abs(m.intermediate_size / w - 8 / 3) < 8 / w
    auto = ModelConfig.from_depth(2, vocab_size=512, width=48)
    assert (auto.head_dim, auto.intermediate_size) == (16, 128)  # the default shape is unchanged
