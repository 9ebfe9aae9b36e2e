"""How a task's prompt reaches the model: the chat template for instruct models, the
task's few-shot prefix for base models.

`PromptFormat(tokenizer, chat="auto"|"on"|"off", system=None)` decides once per model:
chat is on when the tokenizer carries a chat template (auto), or as asked. `render(text)`
is the prompt exactly as the model sees it:

- chat on: the template rendered (with Jinja, as `transformers` does) for one user
  message (`text`), after a system message when `system` is given (otherwise the
  template's own default, e.g. SmolLM2's "You are a helpful AI assistant named SmolLM"),
  with the generation prompt (`<|im_start|>assistant\\n`) appended. Generation stops at
  the tokenizer's EOS, which for instruct models is the end-of-turn token (SmolLM2:
  `<|im_end|>`, id 2).
- chat off: `few_shot + text`, where `few_shot` is the task's optional prefix of worked
  examples (`getattr(task, "few_shot", "")`).

One deviation: when the tokenizer adds BOS itself and the template also writes it, the
rendered text leaves that leading BOS out, because every caller encodes prompts with
`encode(text, bos=True)`; the token ids then equal `apply_chat_template(...,
add_generation_prompt=True, tokenize=True)` (tests/test_model_prompting.py checks).

`formatted(task, fmt)` wraps a task so that `generate()` and `apply(problems)` (for
`--problems` files) yield problems whose `prompt` is rendered; the task's own prompt is kept
in `meta["raw_prompt"]`, and `check` sees the problem as the task made it. Everything
else (extract_answer, equivalent, split_steps, stop, ...) is the inner task's. So eval,
synth, SFT, GRPO/PPO and reward models all see the same prompt with no other change.
This module does not import torch.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import Any, Sequence

from scalinglab.errors import UserError
from scalinglab.tasks.base import Problem

CHAT_MODES = ("auto", "on", "off")
RAW = "raw_prompt"  # meta key: the task's prompt before formatting


@lru_cache(maxsize=8)
def _compile(template: str):
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise TemplateError(message)

    def tojson(
        x: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys: bool = False
    ) -> str:
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    # The same environment settings as transformers' chat-template renderer.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template)
    except TemplateError as e:
        raise UserError(f"chat template: not valid Jinja ({e})") from None


def render_chat(template: str, messages: list[dict], add_generation_prompt: bool = True, **special_tokens: str) -> str:
    """A chat template rendered for `messages`, as `transformers`' `apply_chat_template(tokenize=False)`."""
    from jinja2 import TemplateError

    try:
        return _compile(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **special_tokens
        )
    except TemplateError as e:
        raise UserError(f"chat template: {e}") from None


class PromptFormat:
    """Chat template or few-shot prefix, decided once for a tokenizer. See the module docstring."""

    def __init__(self, tokenizer, chat: str = "auto", system: str | None = None):
        if chat not in CHAT_MODES:
            raise UserError(f"--chat {chat!r}: expected auto, on or off")
        self.tok = tokenizer
        self.template: str | None = getattr(tokenizer, "chat_template", None)
        if chat == "on" and self.template is None:
            raise UserError("--chat on: the model's tokenizer has no chat template (use --chat off or auto)")
        self.chat = chat == "on" or (chat == "auto" and self.template is not None)
        if system is not None and not self.chat:
            raise UserError("--system: only applies with a chat template (this model has none, or --chat off)")
        self.system = system
        self.specials: dict[str, str] = dict(getattr(tokenizer, "special_tokens", {}) or {})

    def messages(self, text: str) -> list[dict]:
        return ([{"role": "system", "content": self.system}] if self.system is not None else []) + [
            {"role": "user", "content": text}
        ]

    def render(self, text: str, few_shot: str = "") -> str:
        """The prompt as the model sees it (less a BOS the tokenizer adds itself)."""
        if not self.chat:
            return few_shot + text
        out = render_chat(self.template, self.messages(text), add_generation_prompt=True, **self.specials)
        bos = self.specials.get("bos_token")
        if bos and getattr(self.tok, "adds_bos", False) and out.startswith(bos):
            out = out[len(bos) :]  # encode(text, bos=True) puts it back
        return out

    def apply(self, problems: Sequence[Problem], few_shot: str = "") -> list[Problem]:
        """Problems with rendered prompts (re-rendered from `meta["raw_prompt"]` when already formatted)."""
        out = []
        for p in problems:
            raw = p.meta.get(RAW, p.prompt)
            text = self.render(raw, few_shot)
            out.append(p if text == p.prompt else replace(p, prompt=text, meta={**p.meta, RAW: raw}))
        return out

    def describe(self) -> dict:
        return {"chat": self.chat, "system": self.system}


def unformatted(problem: Problem) -> Problem:
    """The problem as its task made it (the inverse of `PromptFormat.apply`)."""
    if RAW not in problem.meta:
        return problem
    meta = {k: v for k, v in problem.meta.items() if k != RAW}
    return replace(problem, prompt=problem.meta[RAW], meta=meta)


class FormattedTask:
    """A task whose problems carry rendered prompts; all else is the inner task's."""

    def __init__(self, task, fmt: PromptFormat):
        self.inner, self.fmt = task, fmt
        self.name = task.name

    @property
    def few_shot(self) -> str:
        return getattr(self.inner, "few_shot", "") or ""

    def generate(self, n: int, seed: int, difficulty: int | None = None) -> list[Problem]:
        return self.apply(self.inner.generate(n, seed=seed, difficulty=difficulty))

    def apply(self, problems: Sequence[Problem]) -> list[Problem]:
        return self.fmt.apply(problems, self.few_shot)

    def check(self, problem: Problem, completion: str):
        return self.inner.check(unformatted(problem), completion)

    def __getattr__(self, name: str):  # extract_answer, equivalent, split_steps, stop, ...
        if name in ("inner", "fmt"):
            raise AttributeError(name)
        return getattr(self.inner, name)


def format_task(task, problems: Sequence[Problem], tokenizer, chat: str = "auto", system: str | None = None):
    """(task, problems) as the model behind `tokenizer` should see them: the one call commands make."""
    t = formatted(task, PromptFormat(tokenizer, chat, system))
    return t, (t.apply(problems) if isinstance(t, FormattedTask) else list(problems))


def formatted(task, fmt: PromptFormat):
    """`task` wrapped so its prompts are rendered by `fmt` (the same task when nothing changes)."""
    if isinstance(task, FormattedTask):
        task = task.inner
    if not fmt.chat and not (getattr(task, "few_shot", "") or ""):
        return task
    return FormattedTask(task, fmt)
