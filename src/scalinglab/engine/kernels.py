"""The engine's hand-written CPU code, one C++ extension of seven operators:

- `scalinglab::decode_attention` (csrc/decode_attention.cpp): one query token per sequence
  against its cached keys/values, with or without a shared prompt prefix;
- `scalinglab::decode_steps` (csrc/decode_loop.cpp): the whole decode loop — forward step,
  sampling and the scheduler's per-token record — for as many steps as no group finishes;
- `scalinglab::prefill_rows` (same file): prompts packed without padding through the same
  layer code, their keys/values written to the cache, the logits of each prompt's last token;
- `scalinglab::linear_packed` (csrc/gemm.cpp): the matrix product the other two use, against
  weights packed once (`scalinglab::pack_rows`, same file) into 16-column panels (float32;
  bf16 widened in registers; or, on a CPU with bf16 dot products, bf16 pairs multiplied by
  activations rounded to bf16, with AVX512-BF16 or AMX tiles; `scalinglab::bf16_products`
  says which this CPU and build have); threads
  from csrc/pool.cpp, which tolerates cores taken by other processes;
- `scalinglab::uniform_fill` (csrc/uniform.cpp): `torch.rand`'s float32 stream, bit for bit,
  drawn a block of the Mersenne twister at a time (the decode loop's Gumbel noise).

Building. `torch.utils.cpp_extension.load` compiles it (g++ and ninja, about 30 s) on first
use; `scripts/setup.sh` does that once, by calling `decode_attention()`. The build is keyed
by everything it depends on — the sources (every file in csrc/), the compiler flags, the
compiler named by $CXX, torch's and Python's versions, the CPU's vector level and
architecture (the flags say -march=native) — and kept with the environment that built it:
under `sys.prefix` (the virtualenv), in `var/scalinglab/kernels/<name>-<key>/`, or under
$SCALINGLAB_KERNELS_DIR when set. So two checkouts or two venvs never evict each other (a
different key is a different folder), and once the library exists it is loaded with
`torch.ops.load_library` directly: no ninja run, nothing compiled, after set-up. Where
`sys.prefix` is not writable, torch's own cache folder is used, still keyed.

The library registers `torch.ops.scalinglab.*`, so the operators work eagerly and inside
`torch.compile` graphs. Where it cannot be built (no compiler), `decode_attention()` returns
None and the engine uses batched matmuls instead.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import warnings
from pathlib import Path

import torch

_OP = None
_FAILED: str | None = None
_INFO: dict = {}  # how the library got here: {"path", "key", "compiled"} (see build_info)
_NAME = "scalinglab_engine_kernels"
_CSRC = Path(__file__).parent / "csrc"
_FLAGS = [
    "-O3",
    "-march=native",
    "-ffast-math",
    "-fopenmp",
]  # fast-math: vectorised exp and dot products (the kernel meets no inf/NaN); -fopenmp: at::parallel_for really runs in parallel, on torch's own OpenMP runtime (not linked, resolved from libtorch)


def build_key(csrc: Path = _CSRC, flags: list[str] = _FLAGS) -> str:
    """16 hex digits naming one build: a hash of what the compiled library depends on (see the module docstring)."""
    h = hashlib.sha256()
    for f in sorted(p for p in csrc.iterdir() if p.is_file()):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    for part in (
        *flags,
        os.environ.get("CXX", "c++"),
        torch.__version__,
        sys.version.split()[0],
        torch.backends.cpu.get_cpu_capability(),
        platform.machine(),
    ):
        h.update(str(part).encode() + b"\0")
    return h.hexdigest()[:16]


def build_root() -> Path:
    """Where builds are kept: $SCALINGLAB_KERNELS_DIR, else under sys.prefix, else torch's extension cache."""
    if os.environ.get("SCALINGLAB_KERNELS_DIR"):
        return Path(os.environ["SCALINGLAB_KERNELS_DIR"])
    root = Path(sys.prefix) / "var" / "scalinglab" / "kernels"
    try:
        root.mkdir(parents=True, exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    from torch.utils.cpp_extension import _get_build_directory  # noqa: PLC0415 - only where sys.prefix is read-only

    return Path(_get_build_directory(_NAME, False)).parent


def build_dir(csrc: Path = _CSRC, root: Path | None = None) -> Path:
    """The folder of the build of `csrc` (its key in the name)."""
    return (root or build_root()) / f"{_NAME}-{build_key(csrc)}"


def _load(csrc: Path = _CSRC, root: Path | None = None) -> dict:
    """Load the library built from `csrc`, compiling it first only if this key has never been built."""
    d = build_dir(csrc, root)
    name = d.name.replace("-", "_")
    so = d / f"{name}.so"
    if so.exists() and not (d / "lock").exists():  # built before (a lock: another process is still building it)
        torch.ops.load_library(str(so))
        return {"path": str(so), "key": d.name.rsplit("-", 1)[1], "compiled": False}
    from torch.utils.cpp_extension import load

    d.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p) for p in csrc.glob("*.cpp"))
    load(
        name,
        sources,
        extra_cflags=_FLAGS,
        build_directory=str(d),
        is_python_module=False,
        verbose=os.environ.get("SCALINGLAB_VERBOSE_BUILD") == "1",
    )  # registers torch.ops.scalinglab.*
    return {"path": str(so), "key": d.name.rsplit("-", 1)[1], "compiled": True}


def _build():
    _INFO.update(_load())

    @torch.library.register_fake("scalinglab::decode_attention")
    def _(q, kp, vp, plen, ks, vs, slen, k_new, v_new, scale):  # shapes for torch.compile's tracing
        return torch.empty_like(q)

    return torch.ops.scalinglab.decode_attention.default


def build_info() -> dict:
    """{"path": the loaded library, "key": its build key, "compiled": whether this process compiled it}; {} if not loaded."""
    decode_attention()
    return dict(_INFO)


def decode_attention():
    """The operator `scalinglab::decode_attention`, or None where it cannot be built.

    (q (S,H,D), kp/vp (G,Hkv,Tp,D), plen (G,), ks/vs (S,Hkv,Ts,D), slen (S,), k_new/v_new
    (S,Hkv,D), scale) -> (S,H,D): each sequence's query attends to its group's first plen
    prompt positions (G = S/n groups; G = 0: no prefix), its first slen cached positions and
    its own new key/value. CPU, float32.
    """
    global _OP, _FAILED
    if _OP is None and _FAILED is None:
        try:
            _OP = _build()
        except Exception as e:  # noqa: BLE001 - no compiler / ninja: the matmul path still works
            _FAILED = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
            warnings.warn(
                f"CPU decode-attention kernel not built ({_FAILED}); using batched matmuls",
                RuntimeWarning,
                stacklevel=2,
            )
    return _OP


def decode_steps():
    """The operator `scalinglab::decode_steps` (see csrc/decode_loop.cpp), or None where it cannot be built."""
    return torch.ops.scalinglab.decode_steps.default if decode_attention() is not None else None


def prefill_rows():
    """The operator `scalinglab::prefill_rows` (see csrc/decode_loop.cpp), or None where it cannot be built."""
    return torch.ops.scalinglab.prefill_rows.default if decode_attention() is not None else None


def linear_packed():
    """The operator `scalinglab::linear_packed` (csrc/gemm.cpp): x (M, K) float32 · W^T (+ bias) for W
    packed by `engine.steps.pack_weight` (float32 or bfloat16), N the rows of W; or None where it cannot be built."""
    return torch.ops.scalinglab.linear_packed.default if decode_attention() is not None else None


def pack_rows():
    """The operator `scalinglab::pack_rows` (csrc/gemm.cpp): (parts, rows, dtype, pairs=False) -> the matrix whose
    row i is row rows[i] of cat(parts), in `pack_weight`'s layout, in one parallel pass; or None where it cannot be built."""
    return torch.ops.scalinglab.pack_rows.default if decode_attention() is not None else None


def uniform_fill():
    """The operator `scalinglab::uniform_fill` (csrc/uniform.cpp): (out, generator) fills float32 `out` with what
    `torch.rand(out.shape, generator=generator)` draws, advancing the generator alike; or None where it cannot be built."""
    return torch.ops.scalinglab.uniform_fill.default if decode_attention() is not None else None


def bf16_products() -> int:
    """What multiplies bf16 matrices by bf16 activations in this build on this CPU (csrc/gemm.cpp): 0 nothing
    (bf16 weights are widened to float32), 1 AVX512-BF16 dot products, 2 those and AMX tiles."""
    return int(torch.ops.scalinglab.bf16_products()) if decode_attention() is not None else 0
