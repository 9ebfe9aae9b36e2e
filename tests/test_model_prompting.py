"""Chat templates and few-shot prefixes (`model/prompting.py`) and their wiring into
`scalinglab generate` / `eval`: the rendered text by hand, the token ids against
`transformers`' `apply_chat_template`, BOS handling, and the task wrapper's delegation."""

import json
from dataclasses import dataclass

import pytest
import torch
import typer
from typer.testing import CliRunner

from scalinglab.errors import UserError
from scalinglab.model import ModelConfig, Transformer
from scalinglab.model.hf import save_model
from scalinglab.model.prompting import RAW, FormattedTask, PromptFormat, format_task, formatted, unformatted
from scalinglab.model.tokenizer import CharTokenizer, HFTokenizer
from scalinglab.tasks import get_task

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are tiny.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Llama-style: the template writes BOS and the tokenizer adds it too
LLAMAISH = (
    "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}"
)


def make_tokenizer(d, template, bos_prefix=False):
    """A character-level Hugging Face tokenizer with ChatML specials, saved in `d`."""
    from tokenizers import Tokenizer, decoders, models, processors

    chars = ["\n"] + [chr(c) for c in range(32, 127)]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>"]
    tok = Tokenizer(
        models.BPE(vocab={s: i for i, s in enumerate(specials + chars)}, merges=[], unk_token="<|endoftext|>")
    )
    tok.add_special_tokens(specials)
    tok.decoder = decoders.Fuse()
    if bos_prefix:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 3)]
        )
    d.mkdir(parents=True, exist_ok=True)
    tok.save(str(d / "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>" if bos_prefix else "<|im_start|>",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "chat_template": template,
    }
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return HFTokenizer(d)


def hf_chat_ids(d, messages):
    transformers = pytest.importorskip("transformers")
    out = transformers.AutoTokenizer.from_pretrained(str(d)).apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True
    )
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def test_chat_template_rendered_as_written_and_ids_equal_transformers(tmp_path):
    tok = make_tokenizer(tmp_path / "tok", CHATML)
    fmt = PromptFormat(tok)  # auto: the tokenizer has a template
    assert fmt.chat
    assert (
        fmt.render("2+3=?")
        == "<|im_start|>system\nYou are tiny.<|im_end|>\n<|im_start|>user\n2+3=?<|im_end|>\n<|im_start|>assistant\n"
    )
    sys_fmt = PromptFormat(tok, system="Be brief.")
    assert sys_fmt.render("hi").startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi")
    assert tok.encode(fmt.render("2+3=?"))[:2] == [1, tok.tok.token_to_id("s")]  # <|im_start|> is one special token
    for f, text in [(fmt, "2+3=?"), (sys_fmt, "hi\nthere")]:
        assert tok.encode(f.render(text)) == hf_chat_ids(tmp_path / "tok", f.messages(text))


def test_bos_written_by_template_and_tokenizer_appears_once(tmp_path):
    tok = make_tokenizer(tmp_path / "tok", LLAMAISH, bos_prefix=True)
    assert tok.adds_bos
    text = PromptFormat(tok).render("hi")
    assert text == "[user] hi<|im_end|>[assistant] "  # the leading <s> is left to encode(bos=True)
    ids = tok.encode(text)
    assert ids.count(3) == 1 and ids == hf_chat_ids(tmp_path / "tok", [{"role": "user", "content": "hi"}])


def test_chat_modes_and_their_errors(tmp_path):
    tok = make_tokenizer(tmp_path / "tok", CHATML)
    assert (
        not PromptFormat(tok, chat="off").chat and PromptFormat(tok, chat="off").render("q", few_shot="ex\n") == "ex\nq"
    )
    char = CharTokenizer()
    assert not PromptFormat(char).chat  # no template: auto is off
    with pytest.raises(UserError, match="no chat template"):
        PromptFormat(char, chat="on")
    with pytest.raises(UserError, match="--chat 'yes'"):
        PromptFormat(tok, chat="yes")
    with pytest.raises(UserError, match="--system"):
        PromptFormat(char, system="x")


@dataclass
class FewShotTask:
    """An arithmetic task with a few-shot prefix, as the real-benchmark tasks will expose."""

    inner: object
    few_shot: str = "Q: 1+1=?\nA: 2\n"

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_formatted_task_renders_prompts_and_delegates(tmp_path):
    base = get_task("arithmetic")
    tok = make_tokenizer(tmp_path / "tok", CHATML)
    t = formatted(base, PromptFormat(tok))
    assert isinstance(t, FormattedTask) and t.name == base.name and t.stop == base.stop
    raw, chat = base.generate(3, seed=1), t.generate(3, seed=1)
    for r, c in zip(raw, chat):
        assert c.prompt == PromptFormat(tok).render(r.prompt) and c.meta[RAW] == r.prompt and c.answer == r.answer
        assert unformatted(c) == r
        assert t.check(c, r.solution).correct and t.check(c, r.solution) == base.check(r, r.solution)
        assert t.extract_answer(r.solution) == base.extract_answer(r.solution)
    assert t.apply(chat) == chat  # re-rendered from the raw prompt, not wrapped twice
    assert formatted(t, PromptFormat(tok)).inner is base
    # chat off: plain prompts stay the very same objects; a few-shot task gets its prefix
    assert formatted(base, PromptFormat(tok, chat="off")) is base
    fs = FewShotTask(base)
    t2, probs = format_task(fs, raw, tok, chat="off")
    assert [p.prompt for p in probs] == ["Q: 1+1=?\nA: 2\n" + r.prompt for r in raw]
    assert t2.check(probs[0], raw[0].solution).correct


# --- wiring: generate and eval -----------------------------------------------------------


@pytest.fixture
def chat_model(tmp_path):
    tok = make_tokenizer(tmp_path / "tok", CHATML)
    torch.manual_seed(0)
    m = Transformer(ModelConfig.from_depth(1, vocab_size=tok.vocab_size))
    return save_model(m, tok, tmp_path / "m"), tok


def _app():
    from scalinglab.commands import foundation, testtime

    root = typer.Typer()
    foundation.register(root)
    testtime.register(root)
    return root


def test_generate_applies_the_chat_template_unless_off(chat_model, tmp_path):
    model_dir, tok = chat_model
    prompts = tmp_path / "p.txt"
    prompts.write_text("2+3=?\n")
    runner = CliRunner()
    args = [
        "generate",
        "--model",
        str(model_dir),
        "--prompts",
        str(prompts),
        "--greedy",
        "--max-new-tokens",
        "2",
        "--device",
        "cpu",
        "--json",
    ]
    on = json.loads(runner.invoke(_app(), args, catch_exceptions=False).stdout)
    off = json.loads(runner.invoke(_app(), args + ["--chat", "off"], catch_exceptions=False).stdout)
    assert on["chat"] is True and off["chat"] is False
    assert on["prompt_tokens"] == len(tok.encode(PromptFormat(tok).render("2+3=?")))
    assert off["prompt_tokens"] == len(tok.encode("2+3=?"))
    r = runner.invoke(_app(), args + ["--chat", "maybe"])
    assert isinstance(r.exception, UserError) and "--chat" in str(r.exception)


def test_eval_sees_the_formatted_prompts(chat_model, tmp_path):
    from scalinglab.runs.store import write_jsonl

    model_dir, tok = chat_model
    probs = get_task("arithmetic").generate(2, seed=3)
    path = tmp_path / "p.jsonl"
    write_jsonl(path, [p.to_json() for p in probs])
    runner = CliRunner()
    args = [
        "eval",
        "--model",
        str(model_dir),
        "--task",
        "arithmetic",
        "--problems",
        str(path),
        "--strategy",
        "greedy",
        "--n",
        "1",
        "--max-new-tokens",
        "2",
        "--device",
        "cpu",
        "--system",
        "Solve it.",
        "--json",
    ]
    r = runner.invoke(_app(), args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    fmt = PromptFormat(tok, system="Solve it.")
    assert s["chat"] is True
    assert s["points"][0]["prompt_tokens"] == sum(len(tok.encode(fmt.render(p.prompt))) for p in probs)


def test_synth_samples_from_the_formatted_prompts(chat_model, tmp_path):
    from scalinglab.commands import synth

    model_dir, tok = chat_model
    root = typer.Typer()
    synth.register(root)
    args = [
        "synth",
        "--task",
        "addition",
        "--model",
        str(model_dir),
        "--n",
        "2",
        "--k",
        "1",
        "--max-new-tokens",
        "2",
        "--device",
        "cpu",
        "--seed",
        "4",
        "--json",
    ]
    on = json.loads(
        CliRunner().invoke(root, args + ["--out", str(tmp_path / "on.jsonl")], catch_exceptions=False).stdout
    )
    off = json.loads(
        CliRunner()
        .invoke(root, args + ["--out", str(tmp_path / "off.jsonl"), "--chat", "off"], catch_exceptions=False)
        .stdout
    )
    probs = get_task("addition").generate(2, seed=4)
    assert off["prompt_tokens"] == sum(len(tok.encode(p.prompt)) for p in probs)
    assert on["prompt_tokens"] == sum(len(tok.encode(PromptFormat(tok).render(p.prompt))) for p in probs)
