"""Packing with answer-only masks and document isolation; pairs; step layouts; file formats."""

import pytest
import torch

from scalinglab.errors import UserError
from scalinglab.model import ModelConfig, Transformer
from scalinglab.model.tokenizer import CharTokenizer
from scalinglab.train.data import (
    Packer,
    build_pairs,
    encode_example,
    packed_hidden_states,
    pairs_from_rows,
    sft_pairs_from_rows,
    step_label_rows,
)
from scalinglab.train.reward_model import outcome_ids, step_ids

TOK = CharTokenizer()
EXS = [
    encode_example(TOK, "12+3=?\n", "A: 15\n"),
    encode_example(TOK, "9-1=?\n", "A: 8\n"),
    encode_example(TOK, "1=?\n", "A: 1\n"),
]


def test_packer_masks_only_completion_targets():
    # example 0: "<bos>12+3=?\n" (8 tokens) + "A: 15\n<eos>" (7 tokens) = 15 tokens -> 14 positions,
    # the first 7 predict prompt tokens (mask 0), the last 7 predict completion tokens (mask 1).
    pk = Packer(lambda i: EXS[i % 3], seq_len=30, pad_id=TOK.pad_id)
    b = pk.next_rows(1)
    assert b["doc"][0, :14].tolist() == [0] * 14
    assert b["mask"][0, :14].tolist() == [0.0] * 7 + [1.0] * 7
    # example 1: "<bos>9-1=?\n" (7) + "A: 8\n<eos>" (6) -> 12 positions, fits (14 + 12 = 26 <= 30)
    assert b["doc"][0, 14:26].tolist() == [1] * 12 and b["pos"][0, 14:26].tolist() == list(range(12))
    assert b["mask"][0, 14:26].tolist() == [0.0] * 6 + [1.0] * 6
    # example 2 needs 9 positions: does not fit, so the rest is padding (own document, no loss)
    assert b["doc"][0, 26:].tolist() == [-1] * 4 and b["mask"][0, 26:].sum() == 0
    # targets are the inputs shifted by one inside each example
    assert b["targets"][0, :13].tolist() == b["ids"][0, 1:14].tolist()
    assert pk.pos == 2  # example 2 starts the next row


def test_packer_resumes_exactly():
    a = Packer(lambda i: EXS[i % 3], seq_len=24, pad_id=TOK.pad_id)
    a.next_rows(3)
    st = a.state()
    want = a.next_rows(2)
    b = Packer(lambda i: EXS[i % 3], seq_len=24, pad_id=TOK.pad_id)
    b.load(st)
    got = b.next_rows(2)
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_packed_forward_equals_each_example_alone():
    torch.manual_seed(0)
    m = Transformer(ModelConfig.from_depth(1, vocab_size=128)).eval()
    b = Packer(lambda i: EXS[i % 3], seq_len=40, pad_id=TOK.pad_id).next_rows(2)
    with torch.no_grad():
        packed = m.lm_head(packed_hidden_states(m, b["ids"], b["doc"], b["pos"]))
        for r in range(2):
            for d in range(int(b["doc"][r].max()) + 1):
                sel = (b["doc"][r] == d).nonzero()[:, 0]
                alone = m(b["ids"][r : r + 1, sel])[0]
                assert torch.allclose(alone, packed[r, sel], atol=1e-5)
        # and it differs from naive packing (attention across examples), so the test can fail
        naive = m(b["ids"])
        sel = (b["doc"][0] == 1).nonzero()[:, 0]
        assert not torch.allclose(naive[0, sel], packed[0, sel], atol=1e-3)


def test_build_pairs_pairs_verified_with_failed():
    rows = [
        {"prompt": "p", "completion": c, "correct": ok}
        for c, ok in [("a", True), ("b", False), ("c", False), ("a", True)]
    ]
    rows += [{"prompt": "q", "completion": "x", "correct": True}]  # no failed sample: no pair
    pairs = build_pairs(rows, seed=0, max_per_prompt=4)
    assert len(pairs) == 2  # min(4, max(1 distinct good, 2 distinct bad))
    assert {p["chosen"] for p in pairs} == {"a"} and {p["rejected"] for p in pairs} == {"b", "c"}
    assert pairs_from_rows([{"prompt": "p", "chosen": "a", "rejected": "b"}], None, 0, 2) == [
        {"prompt": "p", "chosen": "a", "rejected": "b"}
    ]


def test_sft_rows_accept_solutions_and_synth_completions():
    rows = [
        {"prompt": "p1", "solution": "s1"},
        {"prompt": "p2", "completion": "c2", "correct": True},
        {"prompt": "p3", "completion": "c3", "correct": False},
    ]
    assert sft_pairs_from_rows(rows) == [("p1", "s1"), ("p2", "c2")]
    with pytest.raises(UserError, match="row 1"):
        sft_pairs_from_rows([{"prompt": "p"}])


def test_step_layout_and_annotation_rows():
    ids, ends = step_ids(TOK, "1+2=?\n", ["1+2+0=3\n", "A: 3\n"])
    # <bos> + 6 prompt chars = 7 tokens; step 1 (8 chars) ends at 14, step 2 (5 chars) at 19
    assert ids == TOK.encode("1+2=?\n1+2+0=3\nA: 3\n") and ends == [14, 19]
    assert TOK.decode([ids[14]]) == "\n" and outcome_ids(TOK, "a", "b")[-1] == TOK.eos_id
    # the rows `scalinglab annotate` writes: soft/hard with null for unverifiable steps
    rows = [{"prompt": "p", "steps": ["a\n", "b\n"], "soft": [0.5, None], "hard": [1, None]}]
    assert step_label_rows(rows, None, "soft")[0]["labels"] == [0.5, None]
    assert step_label_rows(rows, None, "hard")[0]["labels"] == [1.0, None]
    with pytest.raises(UserError, match="2 steps but 1 labels"):
        step_label_rows([{"prompt": "p", "steps": ["a", "b"], "soft": [1]}], None, "soft")
