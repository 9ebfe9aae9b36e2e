"""Real text for pre-training ladders: the Python standard library's own sources.

A scaling ladder needs a corpus whose loss keeps falling with model size and data. The
built-in reasoning tasks do not: `arithmetic` has one canonical solution per problem, so its
loss saturates and a Chinchilla fit collapses (E -> 0). The corpus here is present on every
machine that runs scalinglab: the `.py` files of the running interpreter's standard library
(`sysconfig.get_paths()["stdlib"]`), without its tests, `site-packages`, `__pycache__` and
the IDLE test-suite. On Python 3.11.7 that is 734 files, 12.1 MB; another Python version is
another corpus, so `fingerprint` (the sha256 of every file's path and bytes) is recorded with
every result made from it.

Held out means held out: a file's split is decided by its path. A file is an evaluation file
when the sha256 of `SALT` + its relative path, read as an integer, is 0 modulo `EVAL_EVERY`
(1 in 10), else a training file. Validation loss and the text tasks read evaluation files
only; the training stream reads training files only, so no evaluation text is ever trained on
(whole files, not lines, so a held-out module's own idioms stay unseen).

    >>> c = stdlib_corpus()
    >>> c.files("eval")[:2]          # relative paths, sorted
    ['__phello__/spam.py', 'abc.py']  # (on Python 3.11.7: 65 of 734 files, 0.84 of 12.1 MB)

Torch-free: the tokenizer and the token cache live in `model/tokenizer.py` and `train/text.py`.
"""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from scalinglab.errors import UserError

SALT = "scalinglab-corpus-split-v1"
EVAL_EVERY = 10  # one file in EVAL_EVERY is an evaluation file
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
CORPORA = {"pystdlib": "the Python standard library's .py sources (no tests), split by file"}


def split_of_path(rel: str) -> str:
    """'eval' for one relative path in EVAL_EVERY (by hash), else 'train'."""
    h = int.from_bytes(hashlib.sha256((SALT + rel).encode()).digest(), "big")
    return "eval" if h % EVAL_EVERY == 0 else "train"


@dataclass(frozen=True)
class Corpus:
    """A directory of text files, split into train and evaluation files by path."""

    name: str
    root: Path
    paths: tuple[str, ...]  # every file, relative to root, sorted

    def files(self, split: str) -> list[str]:
        if split not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
        return [p for p in self.paths if split_of_path(p) == split]

    def read(self, rel: str) -> str:
        return (self.root / rel).read_text(encoding="utf-8", errors="replace")

    def texts(self, split: str) -> list[str]:
        return [self.read(p) for p in self.files(split)]

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over every file's relative path and bytes (a changed stdlib is another corpus)."""
        h = hashlib.sha256(self.name.encode())
        for rel in self.paths:
            h.update(rel.encode() + b"\0")
            h.update((self.root / rel).read_bytes())
        return h.hexdigest()

    def describe(self) -> dict:
        """What a result was made from: name, root, Python version, files, bytes, fingerprint."""
        sizes = {s: sum((self.root / p).stat().st_size for p in self.files(s)) for s in ("train", "eval")}
        return {
            "name": self.name,
            "root": str(self.root),
            "python": sys.version.split()[0],
            "files": {s: len(self.files(s)) for s in ("train", "eval")},
            "bytes": sizes,
            "fingerprint": self.fingerprint[:16],
        }


def stdlib_corpus(root: str | os.PathLike | None = None) -> Corpus:
    """The `pystdlib` corpus: `.py` files under the stdlib (or `root`), tests and site-packages left out."""
    base = Path(root or sysconfig.get_paths()["stdlib"])
    if not base.is_dir():
        raise UserError(f"corpus pystdlib: {base} is not a directory (no Python standard library sources here)")
    paths = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        rel_dir = os.path.relpath(dirpath, base)
        for f in filenames:
            if f.endswith(".py"):
                paths.append(f if rel_dir == "." else f"{rel_dir}/{f}".replace(os.sep, "/"))
    if not paths:
        raise UserError(f"corpus pystdlib: no .py files under {base}")
    return Corpus("pystdlib", base, tuple(sorted(paths)))


def get_corpus(name: str) -> Corpus:
    if name == "pystdlib":
        return stdlib_corpus()
    raise UserError(f"unknown corpus {name!r} (known: {', '.join(CORPORA)})")


def is_corpus(name: str) -> bool:
    return name in CORPORA
