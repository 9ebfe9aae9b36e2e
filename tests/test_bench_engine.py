"""`bench engine --model DIR`: the real-model grid of contenders (issue 16), on a tiny exported model."""

import importlib.util
import math

import torch

from scalinglab.bench.engine import _model_dir, real_model_benchmark


def test_real_model_grid_reports_every_contender(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    d = _model_dir(None, 1, tmp_path)
    res = real_model_benchmark(d, new_tokens=3, rounds=2)
    assert set(res["cases"]) == {"batch64", "batch8", "batch1_greedy"}
    want = {"scalinglab_fp32", "scalinglab_bf16", "transformers_fp32", "transformers_bf16"}
    if importlib.util.find_spec("ctranslate2") is not None:
        import ctranslate2

        have = ctranslate2.get_supported_compute_types("cpu")
        want |= {
            f"ctranslate2_{k}" for k, q in (("fp32", "float32"), ("int8", "int8"), ("bf16", "bfloat16")) if q in have
        }
        assert res["versions"]["ctranslate2"] == ctranslate2.__version__
    for row in res["cases"].values():
        assert set(row) == want
        for r in row.values():
            assert 0 < r["min"] <= r["tokens_per_s"] <= r["max"] and math.isfinite(r["vs_transformers_fp32"])
        assert row["transformers_fp32"]["vs_transformers_fp32"] == 1.0
    assert len(res["load_average_per_round"]) == 2 and res["scalinglab_decode_path"] == "native"
    for name, pkg in (
        ("ctranslate2", "ctranslate2"),
        ("llama.cpp", "llama_cpp"),
    ):  # absent engines: skipped with a note
        assert (name in res["skipped"]) == (importlib.util.find_spec(pkg) is None)


def test_ctranslate2_contender_generates_exactly_the_asked_tokens(tmp_path, monkeypatch):
    """n samples per prompt, each exactly new_tokens long (EOS ignored); greedy is one sequence per prompt."""
    import pytest

    pytest.importorskip("ctranslate2", reason="ctranslate2 is in the `bench` extra (scripts/setup.sh --dev)")
    from transformers import AutoTokenizer

    from scalinglab.bench.engine import ct2_call, ct2_fn, ct2_generator

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    d = _model_dir(None, 1, tmp_path)
    gen = ct2_generator(d, tmp_path / "ct2", 1, "ctranslate2_fp32")
    tok = AutoTokenizer.from_pretrained(d)
    ps = ["12+34=", "7*8="]
    assert ct2_fn(gen, tok, ps, 3, False, 5)() == 2 * 3 * 5
    assert ct2_fn(gen, tok, ps, 1, True, 5)() == 2 * 5
    count, seconds = ct2_call(d, tmp_path / "ct2", 1, "ctranslate2_fp32", (ps, 3, False), 4)  # in a child process
    assert count == 2 * 3 * 4 and seconds > 0
