"""The default answer room (`default_max_new_tokens`): the task's own cap, else the longest worked
solution measured in the model's tokens, not characters."""

from scalinglab.model.tokenizer import CharTokenizer
from scalinglab.tasks import get_task
from scalinglab.tasks.base import Problem
from scalinglab.testtime.greedy import default_max_new_tokens


class _Words:
    """A tokenizer with one token per word: a stand-in for BPE's several characters per token."""

    def encode(self, text, bos=True):
        return list(range(len(text.split())))


def test_room_is_measured_in_the_models_tokens():
    task = get_task("arithmetic")
    probs = [
        Problem(id="a", task="arithmetic", prompt="q", answer="1", solution="one two three four five six seven eight")
    ]
    chars = default_max_new_tokens(task, probs)
    assert chars == int(len(probs[0].solution) * 1.5) + 16
    assert default_max_new_tokens(task, probs, CharTokenizer()) == chars  # one token per character: unchanged
    assert default_max_new_tokens(task, probs, _Words()) == int(8 * 1.5) + 16


def test_a_task_with_its_own_cap_gets_it():
    assert default_max_new_tokens(get_task("gsm8k"), [], CharTokenizer()) == 256  # lm-eval-harness's gsm8k max_gen_toks
