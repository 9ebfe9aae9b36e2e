"""Pre-training on real text: a tokenised corpus, its stream of rows, and a text task.

`text_data(corpus, vocab_size)` trains a byte-level BPE tokenizer on the corpus's training
files (`model/tokenizer.train_bpe`), encodes every file as `<bos> text <eos>` and caches the
result in `$SCALINGLAB_CACHE/corpus/<name>-v<vocab>-<key>/` (tokenizer, `train.npy`,
`eval.npy`, `meta.json`), keyed by the corpus fingerprint, so a second run reads it in
milliseconds and a changed stdlib is a new entry. Files are concatenated in sorted order.

`TextStream` cuts the training tokens into non-overlapping windows of `seq_len + 1` and serves
them in a fixed shuffled order (the pool), each epoch re-shuffled with the run's seed. With
`unique_tokens = U` only the pool's first U tokens' worth of windows are used, repeated epoch
after epoch (the data-constrained regime of Muennighoff et al. 2023). Its state is one integer
(rows served), so a resumed run continues exactly.

`next_tokens_accuracy` is the text task: contexts from evaluation files; a model is right when
its greedy continuation of the next `k` tokens is exactly the text's. Teacher forcing computes it
in one forward pass: a greedy continuation is exactly right iff the argmax at each of the k
positions is the true token.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scalinglab.cache import cache_root
from scalinglab.tasks.corpus import Corpus
from scalinglab.train.data import epoch_source

TOKENIZER_VERSION = "bytelevel-bpe-v1"  # bump when train_bpe's settings change


@dataclass
class TextData:
    corpus: dict  # Corpus.describe()
    tokenizer: object  # HFTokenizer
    train: np.ndarray  # uint16 token ids of the training files
    eval: np.ndarray  # uint16 token ids of the evaluation files
    directory: Path  # the cache entry (holds the tokenizer, saved with every model)


def text_data(corpus: Corpus, vocab_size: int) -> TextData:
    """The corpus tokenised with a BPE of `vocab_size` trained on its training files (cached)."""
    from scalinglab.model.tokenizer import HFTokenizer

    key = hashlib.sha256(f"{corpus.fingerprint}:{vocab_size}:{TOKENIZER_VERSION}".encode()).hexdigest()[:16]
    d = cache_root() / "corpus" / f"{corpus.name}-v{vocab_size}-{key}"
    if not (d / "meta.json").exists():
        _build(corpus, vocab_size, d)
    meta = json.loads((d / "meta.json").read_text())
    return TextData(meta["corpus"], HFTokenizer(d), np.load(d / "train.npy"), np.load(d / "eval.npy"), d)


def _build(corpus: Corpus, vocab_size: int, d: Path) -> None:
    from scalinglab.model.tokenizer import train_bpe

    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}-", dir=d.parent))
    try:
        train_texts = corpus.texts("train")
        tok = train_bpe(train_texts, vocab_size, tmp)
        arrays = {}
        for split, texts in (("train", train_texts), ("eval", corpus.texts("eval"))):
            ids: list[int] = []
            for enc in tok.tok.encode_batch(texts, add_special_tokens=False):
                ids.append(tok.bos_id)
                ids.extend(enc.ids)
                ids.append(tok.eos_id)
            arrays[split] = np.asarray(ids, dtype=np.uint16)
            np.save(tmp / f"{split}.npy", arrays[split])
        meta = {
            "corpus": corpus.describe(),
            "vocab_size": vocab_size,
            "tokenizer": TOKENIZER_VERSION,
            "tokens": {s: int(a.size) for s, a in arrays.items()},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        try:
            os.rename(tmp, d)  # atomic; another process may have built the same entry meanwhile
        except OSError:
            if not (d / "meta.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class TextStream:
    """Rows of `length` tokens from non-overlapping windows of the training tokens, shuffled per epoch."""

    POOL_SEED = 0  # the pool's order is the corpus's, not the run's: `unique_tokens` means the same text for every seed

    def __init__(self, tokens: np.ndarray, length: int, seed: int, unique_tokens: int = 0):
        n = tokens.size // length
        if n < 1:
            raise ValueError(f"{tokens.size} tokens make no window of {length}")
        order = list(range(n))
        random.Random(self.POOL_SEED).shuffle(order)
        if unique_tokens:
            order = order[: max(1, unique_tokens // length)]
        self.tokens, self.length, self.seed, self.pool = tokens, length, seed, order
        self.served = 0  # rows served so far (the resumable state)
        self._window = epoch_source(order, seed)  # window i of the endless stream of reshuffled epochs

    @property
    def unique_tokens(self) -> int:
        return len(self.pool) * self.length

    def epochs(self) -> float:
        """Epochs over the pool served so far."""
        return self.served / len(self.pool)

    def next_rows(self, rows: int, length: int | None = None) -> torch.Tensor:
        L = self.length
        if length is not None and length != L:
            raise ValueError(f"this stream serves rows of {L} tokens, not {length}")
        idx = [self._window(self.served + r) * L for r in range(rows)]
        self.served += rows
        out = np.stack([self.tokens[i : i + L] for i in idx]).astype(np.int64)
        return torch.from_numpy(out)

    def state(self) -> dict:
        return {"served": self.served}

    def load(self, st: dict) -> None:
        self.served = int(st["served"])


def eval_rows(tokens: np.ndarray, length: int, max_tokens: int) -> torch.Tensor:
    """The first `max_tokens` evaluation tokens as rows of `length` (at least one row)."""
    rows = max(1, min(max_tokens, tokens.size) // length)
    return torch.from_numpy(tokens[: rows * length].astype(np.int64).reshape(rows, length))


@torch.no_grad()
def next_tokens_accuracy(model, tokens: np.ndarray, context: int, k: int, items: int, batch: int = 32) -> float:
    """Fraction of `items` contexts (evenly spaced over `tokens`) whose next `k` tokens greedy decoding gets exactly right."""
    length = context + k
    if tokens.size < length + 1:
        raise ValueError(f"{tokens.size} evaluation tokens are fewer than one item of {length}")
    starts = np.linspace(0, tokens.size - length - 1, num=items).astype(np.int64)
    device = next(model.parameters()).device
    right = 0
    for b in range(0, items, batch):
        rows = torch.from_numpy(np.stack([tokens[s : s + length] for s in starts[b : b + batch]]).astype(np.int64)).to(
            device
        )
        logits = model(rows[:, :-1])[:, context - 1 :]  # predictions of the last k tokens
        right += int((logits.argmax(-1) == rows[:, context:]).all(dim=1).sum())
    return right / items
