"""The engine's hand-written CPU code (float32), one C++ extension of three operators:

- `scalinglab::decode_attention` (csrc/decode_attention.cpp): one query token per sequence
  against its cached keys/values, with or without a shared prompt prefix;
- `scalinglab::decode_steps` (csrc/decode_loop.cpp): the whole decode loop — forward step,
  sampling and the scheduler's per-token record — for as many steps as no group finishes;
- `scalinglab::prefill_rows` (same file): prompts packed without padding through the same
  layer code, their keys/values written to the cache, the logits of each prompt's last token.

Built on first use with `torch.utils.cpp_extension.load` (g++ and ninja, about 30 s, cached
under TORCH_EXTENSIONS_DIR; `scripts/setup.sh` builds it once) and registered as the
operator `scalinglab::decode_attention`, so it works eagerly and inside `torch.compile`
graphs. Where it cannot be built (no compiler), `decode_attention()` returns None and the
engine uses batched matmuls instead.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

_OP = None
_FAILED: str | None = None
_FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp"]  # fast-math: vectorised exp and dot products (the kernel meets no inf/NaN); -fopenmp: at::parallel_for really runs in parallel, on torch's own OpenMP runtime (not linked, resolved from libtorch)


def _build():
    from torch.utils.cpp_extension import load

    csrc = Path(__file__).parent / "csrc"
    # -march=native: the name carries the CPU's vector level, so a cache shared between machines never mixes them
    name = f"scalinglab_engine_kernels_{torch.backends.cpu.get_cpu_capability().lower()}"
    load(name, [str(csrc / "decode_attention.cpp"), str(csrc / "decode_loop.cpp")], extra_cflags=_FLAGS, is_python_module=False,
         verbose=os.environ.get("SCALINGLAB_VERBOSE_BUILD") == "1")  # registers torch.ops.scalinglab.*

    @torch.library.register_fake("scalinglab::decode_attention")
    def _(q, kp, vp, plen, ks, vs, slen, k_new, v_new, scale):  # shapes for torch.compile's tracing
        return torch.empty_like(q)

    return torch.ops.scalinglab.decode_attention.default


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
            warnings.warn(f"CPU decode-attention kernel not built ({_FAILED}); using batched matmuls", RuntimeWarning, stacklevel=2)
    return _OP


def decode_steps():
    """The operator `scalinglab::decode_steps` (see csrc/decode_loop.cpp), or None where it cannot be built."""
    return torch.ops.scalinglab.decode_steps.default if decode_attention() is not None else None


def prefill_rows():
    """The operator `scalinglab::prefill_rows` (see csrc/decode_loop.cpp), or None where it cannot be built."""
    return torch.ops.scalinglab.prefill_rows.default if decode_attention() is not None else None
