"""Every command's file inputs fed with a binary file, an empty file, a directory and a
truncated file (issue 20 acceptance): a non-zero exit, no traceback, at most one line on
stderr, and nothing left behind beside the input. In process (cli.main), so it stays fast;
a command with a model argument gets a random depth-1 model, so its file reading is reached.

Cases marked xfail wait on readers outside runs/ and train/ (tasks/base.read_jsonl and
commands that read files themselves); each says what it needs. They pass once fixed
(non-strict xfail), so the marks can then go."""

import os

import pytest

from scalinglab.cli import main

NOMODEL = "MODEL"

# command line with FILE (the fuzzed input) and OUT (a path the command would write)
COMMANDS = {
    "generate": ["generate", "--model", NOMODEL, "--prompts", "FILE"],
    "verify-math": ["verify", "math", "--input", "FILE"],
    "verify-code": ["verify", "code", "--input", "FILE"],
    "judge": ["judge", "--input", "FILE"],
    "eval": ["eval", "--model", NOMODEL, "--task", "arithmetic", "--problems", "FILE"],
    "synth": ["synth", "--task", "arithmetic", "--model", NOMODEL, "--problems", "FILE", "--out", "OUT"],
    "annotate": ["annotate", "--task", "arithmetic", "--model", NOMODEL, "--data", "FILE", "--out", "OUT"],
    "train-sft": ["train", "sft", "--model", NOMODEL, "--data", "FILE", "--out", "OUT"],
    "train-dpo": ["train", "dpo", "--model", NOMODEL, "--data", "FILE", "--out", "OUT"],
    "train-rm": ["train", "reward-model", "--model", NOMODEL, "--data", "FILE", "--out", "OUT"],
    "tokenomics": ["tokenomics", "kv", "--model", "FILE"],
    "fit": ["fit", "chinchilla", "FILE"],
    "export-hf": ["export-hf", "FILE", "OUT"],
}

TRUNCATED = {"tokenomics": b'{"num_hidden_layers": 2, "hidden_si', "fit": b"N,D,loss\n1e6,2e9,3.1\n1e7,2e"}
KINDS = {
    "binary": b"\x00\xff\xfe\x89PNG\r\n\x1a\n\xc3\x28",
    "empty": b"",
    "directory": None,
    "truncated": b'{"id": "a", "prompt": "1+1=?", "ans',
}

# readers this engineer does not own (what each needs is in the reason)
PENDING = {}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A random depth-1 model in Hugging Face layout: loading it is all the commands get to do."""
    import torch

    from scalinglab.model import ModelConfig, Transformer
    from scalinglab.model.hf import save_model
    from scalinglab.model.tokenizer import CharTokenizer

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("model") / "m"
    save_model(Transformer(ModelConfig.from_depth(1, vocab_size=128)), CharTokenizer(), d)
    return d


def _cases():
    for cmd in COMMANDS:
        for kind in KINDS:
            if cmd == "generate" and kind == "truncated":
                continue  # a prompts file is plain text: any prefix of one is a valid one
            marks = [pytest.mark.xfail(reason=PENDING[(cmd, kind)], strict=False)] if (cmd, kind) in PENDING else []
            yield pytest.param(cmd, kind, id=f"{cmd}-{kind}", marks=marks)


@pytest.mark.parametrize("cmd,kind", list(_cases()))
def test_bad_file_input_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, model_dir, cmd, kind):
    monkeypatch.chdir(tmp_path)  # a command that writes relative paths writes here, where we look
    inp = tmp_path / "input.jsonl"
    if kind == "directory":
        inp.mkdir()
    else:
        inp.write_bytes(TRUNCATED.get(cmd, KINDS[kind]) if kind == "truncated" else KINDS[kind])
    before = sorted(os.listdir(tmp_path))
    args = [
        a.replace("FILE", str(inp)).replace("OUT", str(tmp_path / "out")).replace("MODEL", str(model_dir))
        for a in COMMANDS[cmd]
    ]
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    # any other exception propagates: pytest reports it as the traceback a user would see
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code not in (0, None), f"exit 0 for a {kind} input"
    assert "Traceback" not in err and len(lines) <= 1, err
    assert sorted(os.listdir(tmp_path)) == before, "something was left behind"
