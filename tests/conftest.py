import os

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def tiny_model():
    """A random depth-1 model with weights scaled up so greedy outputs are not degenerate."""
    from scalinglab.model import ModelConfig, Transformer
    from scalinglab.model.tokenizer import CharTokenizer

    torch.manual_seed(0)
    m = Transformer(ModelConfig.from_depth(1, vocab_size=128)).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(4)
    return m, CharTokenizer()


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process: `run_cli(*args)` -> (exit code, stdout, stderr)."""
    from scalinglab.cli import main

    def run(*args):
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code or 0
        cap = capsys.readouterr()
        return code, cap.out, cap.err

    return run
