"""llama.cpp as an engine-benchmark contender (bench/llamacpp.py): the GGUF variants and one timed call.

Skipped where llama-cpp-python (the `llama` extra, built by scripts/setup.sh --dev) or the packaged SmolLM2 GGUF is absent."""

from collections import Counter

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the `llama` extra: scripts/setup.sh --dev)")
gguf = pytest.importorskip("gguf", reason="the gguf package is not installed")


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """The three variants of the packaged SmolLM2, the F32 and BF16 ones made once per module."""
    from scalinglab.bench.llamacpp import gguf_variants
    from scalinglab.errors import UserError
    from scalinglab.model.registry import packaged_model_file

    try:
        packaged_model_file("smollm2-135m")
    except UserError as e:
        pytest.skip(f"packaged model absent: {e}")
    tmp = tmp_path_factory.mktemp("llamacpp")
    return tmp, gguf_variants("smollm2-135m", tmp)


def _types(reader, min_dims=1):
    return Counter(t.tensor_type.name for t in reader.tensors if len(t.shape) >= min_dims)


def test_gguf_variants_are_made_once_with_the_right_types(variants):
    from scalinglab.bench.llamacpp import gguf_variants
    from scalinglab.model.registry import packaged_model_file

    tmp, v = variants
    assert set(v) == {"llama.cpp_q4_1", "llama.cpp_f32", "llama.cpp_bf16"}
    assert v["llama.cpp_q4_1"] == packaged_model_file("smollm2-135m")
    assert all(p.is_file() for p in v.values())
    assert v["llama.cpp_f32"].parent == tmp and v["llama.cpp_bf16"].parent == tmp
    f32, bf16 = gguf.GGUFReader(v["llama.cpp_f32"]), gguf.GGUFReader(v["llama.cpp_bf16"])  # 2 s each
    assert set(_types(f32)) == {"F32"}
    assert set(_types(bf16, min_dims=2)) == {"BF16"}
    assert set(_types(bf16)) == {"BF16", "F32"}  # the norms stay F32
    assert len(f32.tensors) == len(bf16.tensors) == 272  # SmolLM2-135M: 30 layers x 9 + embedding + final norm
    assert not [p for p in tmp.iterdir() if p.name.endswith(".partial")]
    mtimes = {k: p.stat().st_mtime_ns for k, p in v.items()}
    again = gguf_variants("smollm2-135m", tmp)
    assert again == v and {k: p.stat().st_mtime_ns for k, p in again.items()} == mtimes


def test_gguf_variants_of_a_directory_is_empty(tmp_path):
    from scalinglab.bench.llamacpp import gguf_variants

    (tmp_path / "config.json").write_text("{}")
    assert gguf_variants(tmp_path, tmp_path / "out") == {}
    assert not (tmp_path / "out").exists()


def test_llama_call_sampling_shares_the_prefill_and_counts_every_token(variants):
    from scalinglab.bench.llamacpp import llama_call

    _, v = variants
    count, seconds = llama_call(v["llama.cpp_q4_1"], 1, (["What is 12 + 34?", "Compute 7 * 8 - 5."], 2, False), 4)
    assert count == 2 * 2 * 4 and seconds > 0


def test_llama_call_greedy_batch_1(variants):
    from scalinglab.bench.llamacpp import llama_call

    _, v = variants
    count, seconds = llama_call(v["llama.cpp_q4_1"], 1, (["What is 12 + 34?"], 1, True), 4)
    assert count == 4 and seconds > 0


def test_llama_call_reports_a_failure_in_the_child(variants):
    from scalinglab.bench.llamacpp import llama_call

    _, v = variants
    with pytest.raises(RuntimeError, match="no empty ones"):
        llama_call(v["llama.cpp_q4_1"], 1, ([""], 1, True), 4)
