"""Where derived files are cached: `$SCALINGLAB_CACHE`, else `~/.cache/scalinglab`.

Converted GGUF models (`model/gguf.py`) and tokenised corpora (`train/text.py`) live here,
each under a key that names what it was made from, so a changed input is a new entry.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$SCALINGLAB_CACHE`, else `~/.cache/scalinglab`."""
    env = os.environ.get("SCALINGLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "scalinglab"
