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
    for row in res["cases"].values():
        assert set(row) == {"scalinglab_fp32", "scalinglab_bf16", "transformers_fp32", "transformers_bf16"}
        for r in row.values():
            assert 0 < r["min"] <= r["tokens_per_s"] <= r["max"] and math.isfinite(r["vs_transformers_fp32"])
        assert row["transformers_fp32"]["vs_transformers_fp32"] == 1.0
    assert len(res["load_average_per_round"]) == 2 and res["scalinglab_decode_path"] == "native"
    for name, pkg in (
        ("ctranslate2", "ctranslate2"),
        ("llama.cpp", "llama_cpp"),
    ):  # absent engines: skipped with a note
        assert (name in res["skipped"]) == (importlib.util.find_spec(pkg) is None)
