"""`bench engine --model DIR`: the real-model grid of contenders (issue 16), on a tiny exported model."""

import importlib.util
import math

import torch

from scalinglab.bench.engine import SHAPES, _model_dir, real_model_benchmark, shape_model_dir, summary


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
    # the extras: this minute's bounds, scalinglab as fractions of them, start-up and long-context steps
    b = res["bounds"]
    assert b["gemm_gflops_fp32"]["median"] > 0 and b["read_gb_s"]["median"] > 0
    want_b64 = b["gemm_gflops_fp32"]["median"] * 1e9 / b["flops_per_token"]["median"]
    assert math.isclose(b["batch64_tokens_per_s_fp32"]["median"], want_b64, rel_tol=0.3)
    frac = res["fraction_of_bound"]["batch64_fp32"]
    assert math.isclose(
        frac * b["batch64_tokens_per_s_fp32"]["median"], res["cases"]["batch64"]["scalinglab_fp32"]["tokens_per_s"]
    )
    # batch 1's streamed bytes over a read taken right after each call, for both dtypes: positive, finite
    # ratios with their spread, and a line of the summary
    same = res["fraction_of_read_same_moment"]
    assert set(same) == {"batch1_greedy_fp32", "batch1_greedy_bf16"}
    for k, v in same.items():
        assert 0 < v["min"] <= v["median"] <= v["max"] and math.isfinite(v["max"]), k
    assert "right after each call" in summary(res)
    st = res["startup"]
    assert 0 < st["outside_decode_seconds"]["min"] <= st["wall_seconds"]["max"]
    assert 0 <= st["pack_seconds"]["median"] <= st["engine_seconds"]["median"]
    assert st["import_torch_seconds"]["median"] > 0
    c = res["context"]
    assert set(c) == {"batch", "step_ms_after_20", "step_ms_after_200", "ratio_200_to_20"}
    assert all(math.isfinite(c[k]["median"]) for k in c if k != "batch")  # a toy's step is within the noise
    assert "scalinglab_fp32" in summary(res) and "start-up of generate" in summary(res)
    # an absent engine is skipped with a note; llama.cpp also where the model is no GGUF (this folder)
    assert ("ctranslate2" in res["skipped"]) == (importlib.util.find_spec("ctranslate2") is None)
    assert "llama.cpp" in res["skipped"]


def test_ctranslate2_contender_generates_exactly_the_asked_tokens(tmp_path, monkeypatch):
    """n samples per prompt, each exactly new_tokens long (EOS ignored); greedy is one sequence per prompt;
    converted once, each call in its own child process."""
    import pytest

    pytest.importorskip("ctranslate2", reason="ctranslate2 is in the `bench` extra (scripts/setup.sh --dev)")
    from scalinglab.bench.ct2 import ct2_call, ct2_convert

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    d = _model_dir(None, 1, tmp_path)
    conv = ct2_convert(d, tmp_path / "ct2", "ctranslate2_fp32")
    stamp = (conv / "model.bin").stat().st_mtime_ns
    assert ct2_convert(d, tmp_path / "ct2", "ctranslate2_fp32") == conv  # kept, not converted again
    assert (conv / "model.bin").stat().st_mtime_ns == stamp
    ps = ["12+34=", "7*8="]
    count, seconds = ct2_call(conv, d, 1, "ctranslate2_fp32", (ps, 3, False), 4)
    assert count == 2 * 3 * 4 and seconds > 0
    assert ct2_call(conv, d, 1, "ctranslate2_fp32", (ps, 1, True), 5)[0] == 2 * 5


def test_child_failure_is_an_error_not_a_hang():
    """A contender that raises, or dies, in its child process: a RuntimeError that says so."""
    import pytest

    from scalinglab.bench.child import run_in_child

    assert run_in_child(divmod, 7, 2) == (3, 1)
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        run_in_child(divmod, 1, 0, what="divmod")
    with pytest.raises(RuntimeError, match="died"):
        run_in_child(__import__("os").abort)


def test_shape_model_has_the_published_config(tmp_path):
    """`--shape qwen2.5-0.5b` builds a random model whose config.json is Qwen2.5-0.5B's (here cut to one layer)."""
    import json

    import pytest

    from scalinglab.errors import UserError
    from scalinglab.model.hf import config_from_hf
    from scalinglab.tokenomics.catalog import MODEL_CONFIGS

    d = shape_model_dir("qwen2.5-0.5b", tmp_path, layers=1)
    cfg = config_from_hf(json.loads((d / "config.json").read_text()))
    want = dict(MODEL_CONFIGS[SHAPES["qwen2.5-0.5b"]], num_hidden_layers=1)
    assert {k: getattr(cfg, k) for k in want if hasattr(cfg, k)} == {k: want[k] for k in want if hasattr(cfg, k)}
    assert (cfg.arch, cfg.hidden_size, cfg.vocab_size, cfg.head_dim, cfg.attention_bias) == (
        "qwen2",
        896,
        151936,
        64,
        True,
    )
    with pytest.raises(UserError, match="qwen2.5-0.5b"):
        shape_model_dir("qwen9", tmp_path)


def test_bench_engine_shape_and_model_together_is_one_line_error(capsys):
    import pytest

    from scalinglab.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bench", "engine", "--shape", "qwen2.5-0.5b", "--model", "smollm2-135m"])
    assert e.value.code == 2 and "not both" in capsys.readouterr().err
