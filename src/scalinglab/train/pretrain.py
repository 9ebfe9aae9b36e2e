"""Pre-training from scratch: next-token loss on a task's worked solutions.

    scalinglab pretrain --task arithmetic --depth 2 --steps 1500 --seed 0 --out runs/A

Each training sequence is `<bos> prompt solution <eos>`; sequences are packed back to
back into rows of `seq_len + 1` tokens (loss on every token, as in pre-training). AdamW
(β = 0.9, 0.95; decay on matrices only), linear warmup then cosine decay, gradient
clipping. Problems come from the task's seeded generator, each chunk filtered to the task's
train split (`tasks/split.py`); the validation loss and the held-out accuracy use evaluation
problems only, and `summary.json` records `heldout_overlap`, the evaluation problems found
among the training stream (0).

A run writes `metrics.jsonl` every `log_every` steps, checkpoints every
`checkpoint_every` steps (`runs/checkpoint.py`: atomic; `--resume` continues exactly from
the newest intact one, or from step 0 with the killed attempt's lines trimmed), and at the
end the model in `RUN/model/` (Hugging Face layout) and `summary.json` with N, D, C = 6·N·D,
the final losses (the train loss over every step, across resumes) and greedy accuracy on
held-out problems. Settings that train nothing (steps <= 0, depth 0, lr NaN) are refused
before the run directory exists.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from scalinglab.config import check_choices
from scalinglab.device import pick_device
from scalinglab.errors import UserError
from scalinglab.model import ModelConfig, Transformer
from scalinglab.model.hf import save_model
from scalinglab.model.tokenizer import CharTokenizer
from scalinglab.runs import Run, checkpoint
from scalinglab.tasks import get_task
from scalinglab.tasks.corpus import CORPORA, get_corpus, is_corpus
from scalinglab.tasks.seeds import EVAL_SEED, TRAIN_SEED_BASE, VAL_SEED_BASE
from scalinglab.tasks.split import draw, only, overlap
from scalinglab.train.common import check_fields, check_update, lr_at, make_optimizer, seed_everything, set_lr


@dataclass(frozen=True)
class PretrainConfig:
    task: str = "arithmetic"  # task whose worked solutions are the corpus, or a text corpus (`pystdlib`)
    difficulty: int = 0  # task difficulty knob (0 = the task's default)
    difficulty_mix: tuple[
        int, ...
    ] = ()  # a task: train and validate on an even mix of these difficulties (e.g. 1,2,3); accuracy stays at `difficulty`
    depth: int = 2  # the size dial: width aspect·depth, depth layers
    aspect: int = 64  # width per layer (a multiple of 8; heads of 32 when the width allows, else 16, else 8)
    width: int = 0  # the model's width, overriding aspect·depth (a multiple of 8; 0 = aspect·depth)
    shape: Literal["auto", "uniform"] = (
        "auto"  # auto: heads of 32/16/8 dims as the width allows; uniform: heads of 8, no GQA, every width alike
    )
    vocab_size: int = 1024  # a text corpus's byte-level BPE vocabulary (tasks use the 100-token char tokenizer)
    unique_tokens: int = 0  # a text corpus: train on only this many distinct tokens, repeated (0 = all of it)
    text_k: int = 4  # a text corpus: tokens each accuracy item must continue exactly
    steps: int = 300  # optimizer steps (ignored when tokens > 0)
    tokens: int = 0  # training-token budget D; sets steps = ceil(D / (batch_size·seq_len))
    batch_size: int = (
        4  # rows per step (4 leaves the 1500-step arithmetic model at ~60% greedy, room for RL; 32 saturates)
    )
    seq_len: int = 128  # tokens per row (packed)
    lr: float = 0.0  # peak learning rate (0 = the depth's default, ModelConfig.default_lr)
    warmup_steps: int = 30  # linear warmup
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of the peak
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 10  # steps between metrics records
    checkpoint_every: int = 0  # steps between checkpoints (0 = only the final model)
    eval_problems: int = 100  # held-out problems (a corpus: contexts) for the final greedy accuracy (0 = skip)
    eval_seed: int = EVAL_SEED  # generator seed of the held-out problems
    val_tokens: int = 8192  # held-out tokens for the validation loss
    device: str = "auto"  # auto, cpu or cuda

    @property
    def total_steps(self) -> int:
        if self.tokens > 0:
            return max(1, math.ceil(self.tokens / (self.batch_size * self.seq_len)))
        return self.steps

    def __post_init__(self) -> None:
        check_choices(self)


class PackedStream:
    """Packs `<bos> prompt solution <eos>` sequences into rows; resumable by its state."""

    def __init__(
        self,
        task,
        tokenizer,
        difficulty: int | tuple[int, ...] | None,
        chunk_seed: Callable[[int], int],
        chunk: int = 512,
        split: str = "train",
    ):
        self.task, self.tok, self.difficulty, self.chunk_seed, self.chunk = (
            task,
            tokenizer,
            difficulty,
            chunk_seed,
            chunk,
        )
        self.split = split  # tasks/split.py: each chunk keeps only the problems of this split
        self.consumed = 0  # problems taken from the generator so far (positions in the unfiltered chunks)
        self.carry: list[int] = []
        self._cached: tuple[int, list] = (-1, [])  # the last chunk generated

    def _problems(self, start: int, count: int):
        """The problems of `split` among generator positions [start, start + count)."""
        out, i = [], start
        while i < start + count:
            c, off = divmod(i, self.chunk)
            if self._cached[0] != c:
                self._cached = (c, self._chunk(c))
            take = self._cached[1][off : off + start + count - i]
            out.extend(take)
            i += len(take)
        return only(out, self.split)

    def _chunk(self, c: int) -> list:
        """Generator chunk c; a difficulty mix interleaves one sub-chunk per difficulty (same seed, problem by problem)."""
        mix = self.difficulty if isinstance(self.difficulty, tuple) else (self.difficulty,)
        parts = [self.task.generate(-(-self.chunk // len(mix)), seed=self.chunk_seed(c), difficulty=d) for d in mix]
        return [p for group in zip(*parts) for p in group][: self.chunk]

    def seen(self):
        """The problems consumed so far (regenerated chunk by chunk: what `heldout_overlap` is computed on)."""
        for c0 in range(0, self.consumed, self.chunk):
            yield from self._problems(c0, min(self.chunk, self.consumed - c0))

    def next_rows(self, rows: int, length: int) -> torch.Tensor:
        need = rows * length
        buf = self.carry
        while len(buf) < need:
            for p in self._problems(self.consumed, 64):
                buf.extend(self.tok.encode(p.prompt + (p.solution or p.answer)) + [self.tok.eos_id])
            self.consumed += 64
        self.carry = buf[need:]
        return torch.tensor(buf[:need], dtype=torch.long).view(rows, length)

    def state(self) -> dict:
        return {"consumed": self.consumed, "carry": list(self.carry)}

    def load(self, st: dict) -> None:
        self.consumed, self.carry = st["consumed"], list(st["carry"])


def check_config(cfg: PretrainConfig) -> None:
    """Refuse settings that would train nothing or nonsense, naming the key."""
    check_fields(
        cfg,
        positive=("depth", "batch_size", "seq_len", "log_every", "grad_clip", "aspect", "vocab_size", "text_k"),
        non_negative=(
            "steps",
            "tokens",
            "lr",
            "warmup_steps",
            "min_lr_ratio",
            "weight_decay",
            "checkpoint_every",
            "eval_problems",
            "val_tokens",
            "difficulty",
            "unique_tokens",
        ),
        at_most={"depth": 32, "min_lr_ratio": 1.0, "vocab_size": 65_535},
    )
    if cfg.tokens == 0 and cfg.steps < 1:
        raise UserError(f"config key 'steps': must be >= 1 (or set tokens), got {cfg.steps}")
    if cfg.aspect % 8 or cfg.width % 8 or cfg.width < 0:
        raise UserError(
            f"config keys 'aspect' and 'width': must be multiples of 8 (heads of 8, 16 or 32), got {cfg.aspect}, {cfg.width}"
        )
    if not is_corpus(cfg.task) and cfg.unique_tokens:
        raise UserError(
            f"config key 'unique_tokens': needs a text corpus (--task {', '.join(CORPORA)}), not task {cfg.task!r}"
        )
    if cfg.difficulty_mix and (is_corpus(cfg.task) or min(cfg.difficulty_mix) < 1):
        raise UserError(
            f"config key 'difficulty_mix': positive difficulties of a task (e.g. 1,2,3), got "
            f"{','.join(map(str, cfg.difficulty_mix))} for {cfg.task!r}"
        )
    if is_corpus(cfg.task) and cfg.text_k >= cfg.seq_len:
        raise UserError(f"config key 'text_k': must be below seq_len ({cfg.seq_len}), got {cfg.text_k}")


class TaskData:
    """A task's worked solutions as the corpus: char tokenizer, generated problems, greedy answers."""

    def __init__(self, cfg: PretrainConfig):
        self.cfg, self.task, self.tok = cfg, get_task(cfg.task), CharTokenizer()

    def _difficulty(self) -> int | tuple[int, ...] | None:
        return tuple(self.cfg.difficulty_mix) or self.cfg.difficulty or None

    def stream(self) -> PackedStream:
        cfg = self.cfg
        return PackedStream(
            self.task, self.tok, self._difficulty(), chunk_seed=lambda c: TRAIN_SEED_BASE + cfg.seed * 100_000 + c
        )

    def validation_rows(self) -> torch.Tensor:
        cfg = self.cfg
        stream = PackedStream(
            self.task, self.tok, self._difficulty(), chunk_seed=lambda c: VAL_SEED_BASE + c, split="eval"
        )
        return stream.next_rows(max(1, cfg.val_tokens // (cfg.seq_len + 1)), cfg.seq_len + 1)

    def evaluate(self, model, stream: PackedStream) -> dict:
        from scalinglab.testtime.greedy import greedy_accuracy

        cfg = self.cfg
        problems = draw(self.task, cfg.eval_problems, cfg.eval_seed, cfg.difficulty or None, split="eval")
        return {
            "accuracy": greedy_accuracy(model, self.tok, self.task, problems)["accuracy"],
            "eval_seed": cfg.eval_seed,
            "heldout_overlap": overlap(stream.seen(), problems),
        }  # training problems among them (0 by construction)

    def extra(self) -> dict:
        return {"task": self.cfg.task, "difficulty": self.cfg.difficulty}


class CorpusData:
    """A text corpus (`tasks/corpus.py`): its BPE tokenizer, a window stream, next-k-token accuracy."""

    def __init__(self, cfg: PretrainConfig):
        from scalinglab.train.text import text_data

        self.cfg = cfg
        self.data = text_data(get_corpus(cfg.task), cfg.vocab_size)
        self.tok = self.data.tokenizer

    def stream(self):
        from scalinglab.train.text import TextStream

        return TextStream(self.data.train, self.cfg.seq_len + 1, self.cfg.seed, self.cfg.unique_tokens)

    def validation_rows(self) -> torch.Tensor:
        from scalinglab.train.text import eval_rows

        return eval_rows(self.data.eval, self.cfg.seq_len + 1, self.cfg.val_tokens)

    def evaluate(self, model, stream) -> dict:
        from scalinglab.train.text import next_tokens_accuracy

        cfg = self.cfg
        acc = next_tokens_accuracy(
            model, self.data.eval, context=cfg.seq_len - cfg.text_k, k=cfg.text_k, items=cfg.eval_problems
        )
        return {"accuracy": acc, "accuracy_task": f"next {cfg.text_k} tokens of held-out files, exactly"}

    def extra(self) -> dict:
        return {"task": self.cfg.task, "corpus": self.data.corpus}


def model_config(cfg: PretrainConfig, source) -> ModelConfig:
    """The model `cfg` trains on `source` (its `data_source`)."""
    # the char tokenizer's 100 ids sit in a 128-row embedding (the toys' historical size); a BPE's vocabulary is its own
    vocab = source.tok.vocab_size if is_corpus(cfg.task) else 128
    return ModelConfig.from_depth(
        cfg.depth,
        vocab_size=vocab,
        aspect=cfg.aspect,
        width=cfg.width,
        shape=cfg.shape,
        max_position_embeddings=max(1024, cfg.seq_len),
    )


def data_source(cfg: PretrainConfig):
    return CorpusData(cfg) if is_corpus(cfg.task) else TaskData(cfg)


@torch.no_grad()
def validation_loss(model: Transformer, rows: torch.Tensor, batch_size: int, device) -> float:
    """Mean next-token loss (nats) over held-out `rows` (R, seq_len + 1)."""
    data = rows.to(device)
    losses = []
    for i in range(0, data.shape[0], batch_size):
        b = data[i : i + batch_size]
        logits = model(b[:, :-1])
        losses.append(F.cross_entropy(logits.float().flatten(0, 1), b[:, 1:].flatten(), reduction="sum").item())
    return sum(losses) / (data.shape[0] * (data.shape[1] - 1))


def pretrain(cfg: PretrainConfig, out: str, resume: bool = False, progress: Callable[..., None] | None = None) -> dict:
    """Train one model; returns the run summary (also written to OUT/summary.json)."""
    check_config(cfg)
    source = data_source(cfg)
    device = pick_device(cfg.device)
    mcfg = model_config(cfg, source)
    run = Run.create(out, kind="pretrain", config=asdict(cfg), resume=resume)
    if resume and run.finished:
        return run.summary
    with checkpoint.guard(run):
        return _train(cfg, run, source, device, mcfg, resume, progress)


def _train(cfg: PretrainConfig, run: Run, source, device, mcfg: ModelConfig, resume: bool, progress) -> dict:
    seed_everything(cfg.seed)
    tok = source.tok
    model = Transformer(mcfg).to(device)
    peak_lr = cfg.lr or mcfg.default_lr
    opt = make_optimizer(model, peak_lr, cfg.weight_decay)
    stream = source.stream()
    total = cfg.total_steps
    start, extra = checkpoint.restore(run, model, opt) if resume else (0, {})
    if start:
        stream.load(extra["stream"])
    elapsed0 = extra.get("elapsed", 0.0)
    use_amp = device.type == "cuda"
    model.train()
    t0 = time.perf_counter() - elapsed0
    tokens_seen = start * cfg.batch_size * cfg.seq_len
    loss_hist: list[float] = list(
        extra.get("loss_hist", [])
    )  # every step's loss, across resumes (the summary's tail mean)
    t_log, tok_log = time.perf_counter(), 0
    for step in range(start, total):
        lr = set_lr(opt, lr_at(step, total, peak_lr, min(cfg.warmup_steps, max(1, total // 10)), cfg.min_lr_ratio))
        batch = stream.next_rows(cfg.batch_size, cfg.seq_len + 1).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(batch[:, :-1])  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
        check_update(step + 1, loss.item(), gn)  # before the update: the last checkpoint stays the newest
        opt.step()
        tokens_seen += cfg.batch_size * cfg.seq_len
        tok_log += cfg.batch_size * cfg.seq_len
        loss_hist.append(loss.item())
        done = step + 1
        if done % cfg.log_every == 0 or done == total:
            now = time.perf_counter()
            rec = {
                "step": done,
                "loss": loss.item(),
                "lr": lr,
                "grad_norm": gn,
                "tokens": tokens_seen,
                "flops": 6.0 * mcfg.num_params * tokens_seen,
                "tokens_per_s": tok_log / max(now - t_log, 1e-9),
                "wall_time": now - t0,
            }
            run.log(rec)
            t_log, tok_log = now, 0
            if progress:
                progress(done, total, loss=loss.item())
        if checkpoint.due(done, cfg.checkpoint_every, total):
            checkpoint.save(
                run,
                done,
                model,
                tok,
                opt,
                extra={"stream": stream.state(), "elapsed": time.perf_counter() - t0, "loss_hist": loss_hist},
            )
    model.eval()
    save_model(model, tok, run.path / "model", extra=source.extra())
    tail = loss_hist[-max(1, len(loss_hist) // 10) :] if loss_hist else [float("nan")]
    summary = {
        "kind": "pretrain",
        "task": cfg.task,
        "depth": cfg.depth,
        "params": mcfg.num_params,
        "non_embedding_params": mcfg.non_embedding_params,
        "tokens": tokens_seen,
        "steps": total,
        "flops": 6.0 * mcfg.num_params * tokens_seen,
        "train_loss": sum(tail) / len(tail),
        "val_loss": validation_loss(model, source.validation_rows(), cfg.batch_size, device),
        "seconds": time.perf_counter() - t0,
        "model": str(run.path / "model"),
    }
    if is_corpus(cfg.task):
        summary.update(corpus=source.data.corpus, unique_tokens=stream.unique_tokens, epochs=stream.epochs())
    if cfg.eval_problems:
        summary.update(source.evaluate(model, stream))
    run.finish(summary)
    return summary
