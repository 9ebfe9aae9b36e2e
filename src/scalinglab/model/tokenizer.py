"""Tokenizers: a character-level one for the built-in tasks, and local Hugging Face ones.

Both expose the same small interface (`encode`, `decode`, `bos_id`, `eos_id`, `pad_id`,
`vocab_size`, `save`). `encode(text, bos=True)` prepends BOS, matching what the saved
`tokenizer.json` does when `transformers.AutoTokenizer` encodes with special tokens.
A Hugging Face tokenizer also carries its chat template (`chat_template`, Jinja text, or
None) and its special-token strings; `model/prompting.py` renders the template.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

from scalinglab.errors import UserError

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
CHARS = ["\n"] + [chr(c) for c in range(32, 127)]


class Tokenizer(Protocol):
    bos_id: int | None
    eos_id: int
    pad_id: int
    vocab_size: int

    def encode(self, text: str, bos: bool = True) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def save(self, directory: str | os.PathLike) -> None: ...


class CharTokenizer:
    """One token per character: newline and printable ASCII, plus 4 specials (100 in all)."""

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3
    adds_bos, chat_template, special_tokens = True, None, {"bos_token": "<bos>", "eos_token": "<eos>"}

    def __init__(self) -> None:
        self.itos = SPECIALS + CHARS
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.vocab_size = len(self.itos)

    def encode(self, text: str, bos: bool = True) -> list[int]:
        get, unk = self.stoi.get, self.unk_id
        ids = [get(c, unk) for c in text]
        return [self.bos_id] + ids if bos else ids

    def decode(self, ids) -> str:
        itos, n = self.itos, len(SPECIALS)
        return "".join(itos[i] for i in ids if n <= i < self.vocab_size)

    def save(self, directory: str | os.PathLike) -> None:
        """Write `tokenizer.json` + `tokenizer_config.json` that `AutoTokenizer` loads."""
        from tokenizers import Tokenizer as HFTok
        from tokenizers import decoders, models, processors

        vocab = {s: i for i, s in enumerate(self.itos)}
        tok = HFTok(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))  # no merges: one token per char
        tok.add_special_tokens(SPECIALS)
        tok.decoder = decoders.Fuse()
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 1)]
        )
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tok.save(str(d / "tokenizer.json"))
        cfg = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<bos>",
            "eos_token": "<eos>",
            "pad_token": "<pad>",
            "unk_token": "<unk>",
            "model_max_length": 1_000_000,
            "clean_up_tokenization_spaces": False,
            "scalinglab_tokenizer": "char",
        }
        (d / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
        (d / "special_tokens_map.json").write_text(
            json.dumps({k: cfg[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")}, indent=2)
        )


class HFTokenizer:
    """A local Hugging Face `tokenizer.json`, loaded with the `tokenizers` library."""

    def __init__(self, directory: str | os.PathLike):
        from tokenizers import Tokenizer as HFTok

        d = Path(directory)
        if not (d / "tokenizer.json").exists():
            raise UserError(f"{d}: no tokenizer.json (a Hugging Face fast tokenizer is needed)")
        self.directory = d
        self.tok = HFTok.from_file(str(d / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.no_truncation()
        cfg = _read(d / "tokenizer_config.json")
        model_cfg = _read(d / "config.json")
        gen_cfg = _read(d / "generation_config.json")

        def text(name: str) -> str | None:
            t = cfg.get(name)
            if isinstance(t, dict):
                t = t.get("content")
            return t if isinstance(t, str) else None

        def tid(name: str) -> int | None:
            t = text(name)
            return self.tok.token_to_id(t) if t is not None else None

        self.special_tokens = {
            k: text(k) for k in ("bos_token", "eos_token", "pad_token", "unk_token") if text(k) is not None
        }
        # The chat template (Jinja), where transformers keeps it: chat_template.jinja (5.x) or tokenizer_config.json.
        tmpl = cfg.get("chat_template")
        if (d / "chat_template.jinja").exists():
            tmpl = (d / "chat_template.jinja").read_text()
        if isinstance(tmpl, list):  # named templates: [{"name": "default", "template": ...}, ...]
            tmpl = next((t.get("template") for t in tmpl if isinstance(t, dict) and t.get("name") == "default"), None)
        self.chat_template: str | None = tmpl if isinstance(tmpl, str) and tmpl.strip() else None

        self.bos_id = tid("bos_token")
        if self.bos_id is None and isinstance(model_cfg.get("bos_token_id"), int):
            self.bos_id = model_cfg["bos_token_id"]
        eos = tid("eos_token")
        for src in (gen_cfg, model_cfg):
            e = src.get("eos_token_id")
            if eos is None and e is not None:
                eos = e[0] if isinstance(e, list) else e
        if eos is None:
            raise UserError(f"{d}: cannot tell the EOS token (no eos_token in tokenizer_config.json or config.json)")
        self.eos_id = int(eos)
        pad = tid("pad_token")
        self.pad_id = int(pad if pad is not None else self.eos_id)
        self.vocab_size = self.tok.get_vocab_size(with_added_tokens=True)
        # Whether the tokenizer's post-processor adds BOS itself (Llama does, Qwen2 does not).
        probe = self.tok.encode("a", add_special_tokens=True).ids
        self._adds_bos = self.bos_id is not None and len(probe) > 0 and probe[0] == self.bos_id

    @property
    def adds_bos(self) -> bool:
        """Whether `encode(text, bos=True)` prepends BOS (Llama-style tokenizers do, Qwen2/SmolLM2 do not)."""
        return self._adds_bos

    def encode(self, text: str, bos: bool = True) -> list[int]:
        ids = self.tok.encode(text, add_special_tokens=False).ids
        if bos and self._adds_bos:
            ids = [self.bos_id] + ids
        return ids

    def decode(self, ids) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def save(self, directory: str | os.PathLike) -> None:
        import shutil

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for name in (
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "generation_config.json",
            "chat_template.jinja",
        ):
            if (self.directory / name).exists() and (self.directory / name).resolve() != (d / name).resolve():
                shutil.copy(self.directory / name, d / name)


def train_bpe(texts, vocab_size: int, directory: str | os.PathLike) -> HFTokenizer:
    """Train a byte-level BPE tokenizer (GPT-2's pre-tokenizer, `tokenizers`' trainer) and save it.

    `vocab_size` counts the 256 byte tokens, the merges and three specials (`<pad>`, `<bos>`,
    `<eos>`); every byte string is encodable, so there is no `<unk>`. Encoding with BOS prepends
    `<bos>` (the post-processor does, as for the char tokenizer). The directory then holds a
    `tokenizer.json` that `transformers.AutoTokenizer` and `HFTokenizer` load.
    """
    from tokenizers import Tokenizer as HFTok
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    specials = SPECIALS[:3]
    if vocab_size < 256 + len(specials) + 1:
        raise UserError(
            f"vocab_size {vocab_size}: a byte-level BPE needs at least {256 + len(specials) + 1} (256 bytes, specials, merges)"
        )
    tok = HFTok(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", tok.token_to_id("<bos>"))]
    )
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tok.save(str(d / "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "pad_token": "<pad>",
        "model_max_length": 1_000_000,
        "clean_up_tokenization_spaces": False,
        "scalinglab_tokenizer": "bpe",
    }
    (d / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    (d / "special_tokens_map.json").write_text(
        json.dumps({k: cfg[k] for k in ("bos_token", "eos_token", "pad_token")}, indent=2)
    )
    return HFTokenizer(d)


def _read(p: Path) -> dict:
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not valid JSON ({e.msg})") from None


def load_tokenizer(directory: str | os.PathLike) -> Tokenizer:
    """The tokenizer saved in a model directory: ours (char) or a Hugging Face one."""
    d = Path(directory)
    if _read(d / "tokenizer_config.json").get("scalinglab_tokenizer") == "char":
        return CharTokenizer()
    return HFTokenizer(d)
