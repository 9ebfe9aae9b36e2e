"""The local backend's process pool: results in submission order, errors after the others finish,
and rungs trained in worker processes equal to rungs trained in this one."""

import os
import time

import pytest

from scalinglab.distributed.executor import LocalExecutor, local_workers, make_executor


def _slow_square(x: int) -> tuple[int, int]:
    time.sleep(0.2 if x == 0 else 0.0)  # the first submitted is not the first to finish
    return x * x, os.getpid()


def _fail_on_two(x: int) -> int:
    if x == 2:
        raise ValueError("two")
    return x


def test_pool_gathers_in_submission_order_in_other_processes():
    ex = make_executor("local", workers=2)
    seen = []
    out = ex.gather([ex.submit(_slow_square, i) for i in range(4)], on_result=lambda i, r: seen.append(i))
    assert [r[0] for r in out] == [0, 1, 4, 9]
    assert all(pid != os.getpid() for _, pid in out)  # each ran in a worker process
    assert sorted(seen) == [0, 1, 2, 3]  # each reported once, as it finished


def test_pool_raises_the_first_error_after_the_others_finish():
    ex = LocalExecutor(workers=2)
    seen = []
    with pytest.raises(ValueError, match="two"):
        ex.gather([ex.submit(_fail_on_two, i) for i in range(4)], on_result=lambda i, r: seen.append(i))
    assert sorted(seen) == [0, 1, 3]


def test_one_worker_runs_in_this_process_and_auto_fills_the_cpus():
    ex = LocalExecutor(workers=1)
    assert ex.gather([ex.submit(_slow_square, 3)])[0] == (9, os.getpid())
    assert local_workers(threads=1, requested=3) == 3
    assert local_workers(threads=len(os.sched_getaffinity(0))) == 1
    assert local_workers(threads=1) == len(os.sched_getaffinity(0))


def test_rungs_trained_by_two_workers_equal_rungs_trained_in_this_process(tmp_path):
    pytest.importorskip("torch")
    from scalinglab.config import override
    from scalinglab.train.ladder import train_rungs
    from scalinglab.train.pretrain import PretrainConfig

    tiny = ["batch_size=4", "seq_len=32", "val_tokens=1024", "warmup_steps=1", "eval_problems=0"]
    base = override(PretrainConfig(task="arithmetic"), tiny)
    jobs = {f"d{d}": override(base, [f"depth={d}", "tokens=512"]) for d in (1, 2)}
    got = {}
    for w in (1, 2):
        s, reused = train_rungs(tmp_path / f"w{w}", jobs, 1, 0.0, 0, "local", None, None, workers=w)
        assert reused == 0
        got[w] = {n: s[n]["val_loss"] for n in jobs}
    assert got[1] == got[2]  # bit for bit: a worker process changes nothing but where it runs
