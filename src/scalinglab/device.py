"""Where tensors live: `pick_device("auto" | "cpu" | "cuda" | "cuda:N" | "mps")`.

Its own module so that every package that places a model (train/, synth/, the commands)
imports it from here, not from one another (train/ and synth/ used to import each other only
for this function).
"""

from __future__ import annotations

import torch

from scalinglab.errors import UserError


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise UserError(f"device {name!r}: not one of auto, cpu, cuda, cuda:N")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"device {name!r}: not one of auto, cpu, cuda, cuda:N") from None
