"""A `.gguf` model file as a Hugging Face model directory, converted once and cached.

`gguf_model_dir(path)` returns `CACHE/gguf/<sha256 of the file>/`, a plain Hugging Face
folder (`config.json`, fp32 `model.safetensors`, tokenizer files, chat template) that
`model/hf.py` loads without `transformers`. The first call converts: `transformers`
de-quantises the GGUF (`from_pretrained(dir, gguf_file=name)`, which needs the `gguf`
package) and writes the folder into a temp directory beside the final one, renamed into
place when complete, so a killed conversion leaves nothing that looks finished and two
concurrent conversions cannot mix files. Later calls find the file's hash by its path, inode,
size and modification time (`file_sha256`; hashed again when any of them changes) and return
the folder: they never import `transformers`. The cache root is
`$SCALINGLAB_CACHE` or `~/.cache/scalinglab`.

Deviations from a plain `save_pretrained`, both deliberate:
- the quantizer marker (`quantization_config`, `quant_method: gguf`) is dropped: the
  weights written are de-quantised fp32, and the marker would make `transformers` look
  for the GGUF file again when it loads the folder;
- `rope_theta` is also written at the top level of `config.json`: `transformers` 5.x
  keeps it only inside `rope_parameters`, which 4.x ignores (it would silently use 10000
  instead of SmolLM2's 100000). Our `config_from_hf` reads either.
The weights are those of the quantised file, de-quantised: a Q4_1 model is a slightly
degraded copy of the original, not the original.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from scalinglab.cache import cache_root
from scalinglab.errors import UserError

MARKER = "scalinglab_gguf.json"  # written last into the folder: where it came from, by what
_MAGIC = b"GGUF"
_SUPPORTED = ("llama", "qwen2")  # the architectures `model/transformer.py` implements
_hashes: dict[tuple, str] = {}  # (path, size, mtime_ns) -> sha256, within one process


def is_gguf(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(".gguf")


def file_sha256(path: Path) -> str:
    """The file's SHA-256, remembered by (path, inode, size, mtime) in this process and under the cache root.

    A file rewritten or replaced gets a new mtime or inode, so it is hashed again; an unchanged
    file is read once per machine, not once per command (0.1 s for SmolLM2's 98 MB at every start).
    """
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _hashes:
        memo = cache_root() / "sha256-of" / hashlib.sha256(repr(key).encode()).hexdigest()
        try:
            known = memo.read_text().strip()
        except OSError:
            known = ""
        if len(known) != 64 or any(c not in "0123456789abcdef" for c in known):
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 22):
                    h.update(chunk)
            known = h.hexdigest()
            from scalinglab.runs.store import atomic_write_text

            try:  # best effort: a read-only cache only costs the hash next time
                atomic_write_text(memo, known)
            except UserError:
                pass
        _hashes[key] = known
    return _hashes[key]


def gguf_model_dir(path: str | os.PathLike, convert: Callable[[Path, Path], None] | None = None) -> Path:
    """The cached Hugging Face folder for GGUF file `path`, converting it on first use.

    `convert(gguf_path, out_dir)` writes the folder (default: `convert_gguf`, through
    `transformers`); tests pass a stub.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"model {p}: no such file")
    with open(p, "rb") as f:
        if f.read(4) != _MAGIC:
            raise UserError(f"model {p}: not a GGUF file (it does not start with the GGUF magic bytes)")
    sha = file_sha256(p)
    final = cache_root() / "gguf" / sha
    if (final / MARKER).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{sha[:12]}.tmp-"))
    try:
        t0 = time.perf_counter()
        (convert or convert_gguf)(p, tmp)
        marker = {"source": str(p), "sha256": sha, "seconds": round(time.perf_counter() - t0, 2)}
        try:
            import transformers

            marker["transformers"] = transformers.__version__
        except ImportError:
            pass
        (tmp / MARKER).write_text(json.dumps(marker, indent=2))
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same conversion first: keep theirs
            if not (final / MARKER).exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def convert_gguf(path: Path, out: Path) -> None:
    """De-quantise GGUF `path` with `transformers` and save it (fp32 safetensors + tokenizer) into `out`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing from a model hub, ever
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as e:
        raise UserError(
            f"model {path}: loading a .gguf needs `transformers` and `gguf` ({e}); pip install transformers gguf"
        ) from None
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as e:  # a truncated or foreign file fails anywhere in transformers' reader (struct.error, ...)
        first = str(e).splitlines()[0] if str(e) else ""
        raise UserError(
            f"model {path}: transformers cannot convert this GGUF ({type(e).__name__}: {first[:200]})"
        ) from None
    if model.config.model_type not in _SUPPORTED:
        raise UserError(
            f"model {path}: architecture {model.config.model_type!r} is not supported (supported: {', '.join(_SUPPORTED)})"
        )
    # The weights are de-quantised now: drop the quantizer, or save_pretrained refuses / marks the folder as GGUF.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("quantization_config", None)
    theta = (cfg.get("rope_parameters") or {}).get("rope_theta")
    if theta is not None and "rope_theta" not in cfg:
        cfg["rope_theta"] = theta
    cfg_path.write_text(json.dumps(cfg, indent=2))
