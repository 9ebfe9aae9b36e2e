"""The engine's one hand-written kernel: CPU decode attention (csrc/decode_attention.cpp).

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
_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fassociative-math", "-fno-signed-zeros"]


def _build():
    from torch.utils.cpp_extension import load

    src = Path(__file__).parent / "csrc" / "decode_attention.cpp"
    # -march=native: the name carries the CPU's vector level, so a cache shared between machines never mixes them
    name = f"scalinglab_decode_attention_{torch.backends.cpu.get_cpu_capability().lower()}"
    ext = load(name, [str(src)], extra_cflags=_FLAGS, verbose=os.environ.get("SCALINGLAB_VERBOSE_BUILD") == "1")

    @torch.library.custom_op("scalinglab::decode_attention", mutates_args=())
    def op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lens: torch.Tensor, k_new: torch.Tensor,
           v_new: torch.Tensor, scale: float) -> torch.Tensor:
        return ext.decode_attention(q, k, v, lens, k_new, v_new, scale)

    @op.register_fake
    def _(q, k, v, lens, k_new, v_new, scale):
        return torch.empty_like(q)

    return op


def decode_attention():
    """The operator (q (S,H,D), k/v cache (S,Hkv,T,D), lens (S,), k_new/v_new (S,Hkv,D), scale) -> (S,H,D), or None.

    Attends each sequence's query to its first lens[s] cached positions plus its own new
    key/value; CPU, float32.
    """
    global _OP, _FAILED
    if _OP is None and _FAILED is None:
        try:
            _OP = _build()
        except Exception as e:  # noqa: BLE001 - no compiler / ninja: the matmul path still works
            _FAILED = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
            warnings.warn(f"CPU decode-attention kernel not built ({_FAILED}); using batched matmuls", RuntimeWarning, stacklevel=2)
    return _OP
