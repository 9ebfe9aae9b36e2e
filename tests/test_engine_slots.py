"""The slot state of a generate call (engine.slots): recording, finishing and moving groups, by hand."""

import numpy as np
import torch

from scalinglab.engine.slots import EOS, LENGTH, REASONS, Slots


def test_record_finishes_on_eos_and_on_the_budget():
    st = Slots.empty(groups=2, n=2, budget=3, eos=7, device="cpu")  # 4 slots, 3 tokens each at most
    assert st.done.all() and st.active == 0  # free slots count as finished
    first = st.start(
        [0, 1], [5, 6], [4, 9], torch.tensor([1, 7, 2, 3]), torch.tensor([-0.5, -1.0, -1.5, -2.0], dtype=torch.float64)
    )
    assert first.tolist() == [0, 1, 2, 3] and st.active == 2 and st.prompt == [5, 6]
    assert st.plen.tolist() == [4, 9] and st.plen_host.tolist() == [4, 9]
    assert st.reason.tolist() == [0, EOS, 0, 0] and st.done.tolist() == [False, True, False, False]
    assert st.live(4).tolist() == [0, 2, 3]
    st.advance(
        4, torch.tensor([4, 0, 7, 5]), torch.tensor([-0.1, 0.0, -0.2, -0.3], dtype=torch.float64)
    )  # slot 1 is done: not recorded
    assert st.ntok.tolist() == [2, 1, 2, 2] and st.reason.tolist() == [0, EOS, EOS, 0]
    assert st.buf_tok[0, :2].tolist() == [1, 4] and st.buf_lp[3, :2].tolist() == [-2.0, -0.3]
    assert st.slen.tolist() == [1, 1, 1, 1] and st.slen_host.tolist() == [1, 1, 1, 1]
    assert st.finished_groups().tolist() == []  # group 1 still has slot 3 running
    st.advance(4, torch.tensor([9, 0, 0, 6]), torch.tensor([-0.4, 0.0, 0.0, -0.6]))
    assert st.reason.tolist() == [LENGTH, EOS, EOS, LENGTH] and st.done.all()
    assert st.finished_groups().tolist() == [0, 1]
    assert [REASONS[r] for r in st.reason] == ["length", "eos", "eos", "length"]
    # the native loop records into the same memory
    assert all(
        np.shares_memory(t.numpy(), a) for t, a in zip(st.shared, (st.buf_tok, st.buf_lp, st.ntok, st.done, st.reason))
    )


def test_attended_positions_and_moving_a_group():
    st = Slots.empty(groups=3, n=1, budget=4, eos=None, device="cpu")
    st.start([0, 1, 2], [0, 1, 2], [3, 5, 2], torch.tensor([1, 2, 3]), torch.zeros(3))
    st.done[1] = True  # finished: its position does not count
    assert st.attended(3, flat=True) == 3 + 1  # live slots 0 and 2 are at positions 3 and 2 (prompt + suffix 0)
    assert st.attended(3, flat=False) == 0 + 1  # suffix positions only
    st.prompt[1] = -1  # group 1 retired
    st.move(2, 1)
    assert st.prompt == [0, 2, -1] and st.plen.tolist()[:2] == [3, 2] and st.plen_host.tolist()[:2] == [3, 2]
    assert st.tokens.tolist()[:2] == [1, 3] and st.buf_tok[1, 0] == 3 and not st.done[1] and st.done[2]
