"""The Ray backend on a local Ray instance (2 CPUs, loopback): executor, ladder, rollout pool.

Acceptance (issue 9): a ladder on Ray equals the local one with the same seeds; a rung whose
worker is killed mid-training (by its pid) is re-executed and every rung exists exactly once;
a rerun skips finished rungs; the rollout pool gives the local engine's greedy results, carries
weight versions (stale ones are logged), and survives a killed generation actor.
"""

import json
import logging
import os
import signal
import threading
import time

import pytest

ray = pytest.importorskip("ray")
torch = pytest.importorskip("torch")

from scalinglab.distributed.executor import RayExecutor, Resources  # noqa: E402
from scalinglab.errors import UserError  # noqa: E402
from scalinglab.train.ladder import LadderConfig, run_ladder, rung_name  # noqa: E402

pytestmark = pytest.mark.ray

TINY = ("batch_size=4", "seq_len=32", "val_tokens=1024", "warmup_steps=1", "log_every=1")
# 1, 2 and 8 optimizer steps per size; the 8-step depth-2 rung is the one the test kills
CFG = LadderConfig(task="arithmetic", depths=(1, 2), tokens=(128, 256, 1024), bootstrap=0, grid="small", overrides=TINY)
VICTIM = rung_name(2, 1024)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    started = not ray.is_initialized()
    if started:
        # address="local": a private instance, even if a `ray start` elsewhere left its address recorded
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def test_executor_gathers_in_order_and_raises_the_task_error():
    def _boom(x):  # defined here so Ray ships it by value (workers cannot import test modules)
        if x == 2:
            raise UserError("bad input 2")
        return x * x

    ex = RayExecutor()
    seen = []
    hs = [ex.submit(_boom, x, resources=Resources(num_cpus=0.5)) for x in (3, 1, 4)]
    assert ex.gather(hs, on_result=lambda i, r: seen.append(i)) == [9, 1, 16]
    assert sorted(seen) == [0, 1, 2]
    with pytest.raises(UserError, match="bad input 2"):  # the user's error, not a Ray wrapper
        ex.gather([ex.submit(_boom, 2), ex.submit(_boom, 5)])
    ex.close()


@pytest.fixture(scope="module")
def local_ladder(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "L"
    return out, run_ladder(CFG, str(out), figures=False)


@pytest.fixture(scope="module")
def ray_ladder(tmp_path_factory):
    """The same ladder on Ray, with the worker of VICTIM killed (SIGKILL) after its first logged step."""
    out = tmp_path_factory.mktemp("ray") / "L"
    res = {}
    th = threading.Thread(target=lambda: res.update(s=run_ladder(CFG, str(out), backend="ray", figures=False)))
    th.start()
    pid_file, metrics = out / ".workers" / f"{VICTIM}.pid", out / VICTIM / "metrics.jsonl"
    killed = None
    deadline = time.time() + 300
    while th.is_alive() and time.time() < deadline:
        if pid_file.exists() and metrics.exists() and metrics.read_text().strip():
            killed = int(pid_file.read_text())
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.005)
    th.join(timeout=300)
    assert "s" in res, "the Ray ladder did not finish"
    return out, res["s"], killed


def test_ray_ladder_equals_local_despite_a_killed_worker(local_ladder, ray_ladder):
    lout, ls = local_ladder
    rout, rs, killed = ray_ladder
    assert killed is not None, "the victim rung finished before it could be killed"
    # re-executed on another worker process, from a clean directory
    assert int((rout / ".workers" / f"{VICTIM}.pid").read_text()) != killed
    assert rs["trained"] == 6 and rs["backend"] == "ray"
    keys = ("N", "D", "C", "loss", "train_loss", "run")
    assert [{k: r[k] for k in keys} for r in rs["rungs"]] == [{k: r[k] for k in keys} for r in ls["rungs"]]
    assert rs["fit"]["params"] == ls["fit"]["params"]  # same rows, same fit
    for r in rs["rungs"]:
        steps = [json.loads(x)["step"] for x in (rout / r["run"] / "metrics.jsonl").read_text().splitlines()]
        assert steps == list(range(1, int(r["D"]) // 128 + 1)), r["run"]  # each step exactly once
    from safetensors.torch import load_file

    for r in rs["rungs"]:
        wa = load_file(str(lout / r["run"] / "model" / "model.safetensors"))
        wb = load_file(str(rout / r["run"] / "model" / "model.safetensors"))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), r["run"]
    rung_dirs = sorted(p.name for p in rout.iterdir() if p.name.startswith("rung-"))
    assert rung_dirs == sorted(r["run"] for r in rs["rungs"])


def test_ray_rerun_skips_finished_rungs(ray_ladder):
    rout, rs, _ = ray_ladder
    again = run_ladder(CFG, str(rout), backend="ray", figures=False)
    assert again["trained"] == 0 and again["reused"] == 6
    assert again["fit"]["params"] == rs["fit"]["params"]


# -- rollouts -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool_setup(tmp_path_factory):
    from scalinglab.distributed.rollouts import RayRolloutPool, RolloutPoolConfig
    from scalinglab.model import ModelConfig, Transformer
    from scalinglab.model.hf import load_model, save_model
    from scalinglab.model.tokenizer import CharTokenizer

    d = tmp_path_factory.mktemp("pool")
    torch.manual_seed(0)
    m = Transformer(ModelConfig.from_depth(1, vocab_size=128)).eval()
    with torch.no_grad():  # larger weights so greedy outputs differ between prompts and versions
        for p in m.parameters():
            if p.dim() == 2:
                p.mul_(4)
    save_model(m, CharTokenizer(), d / "tiny")
    model, tok = load_model(d / "tiny")
    cfg = RolloutPoolConfig(
        generators=2, verifiers=2, cpus_per_generator=0.25, cpus_per_verifier=0.25, trace_dir=str(d / "trace")
    )
    pool = RayRolloutPool(str(d / "tiny"), cfg)
    yield pool, model, tok, d
    pool.close()


def _local(model, tok, task, problems, params):
    from scalinglab.engine import Engine

    res = Engine(model, tok).generate([p.prompt for p in problems], params)
    return [[c.text for c in g.completions] for g in res.generations], [
        [task.check(p, c.text) for c in g.completions] for p, g in zip(problems, res.generations)
    ]


def _texts(batch):
    return [[c.text for c in g.completions] for g in batch.result.generations]


def _setup_task():
    from scalinglab.engine import SamplingParams
    from scalinglab.tasks import get_task

    task = get_task("arithmetic")
    return task, task.generate(10, seed=3), SamplingParams(n=2, max_new_tokens=24, greedy=True, stop=tuple(task.stop))


def test_pool_greedy_equals_local_engine_and_versions_propagate(pool_setup, caplog):
    pool, model, tok, _ = pool_setup
    task, problems, params = _setup_task()
    texts, verdicts = _local(model, tok, task, problems, params)
    b = pool.generate_and_verify(task, problems, params)
    assert _texts(b) == texts and b.verdicts == verdicts
    assert b.versions == [0, 0] and b.stale == 0
    assert b.result.generated_tokens == sum(len(c.token_ids) for g in b.result.generations for c in g.completions)

    with torch.no_grad():  # an "update": the pool must sample from the new weights once told
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    texts1, verdicts1 = _local(model, tok, task, problems, params)
    assert texts1 != texts
    b1 = pool.generate_and_verify(task, problems, params, version=1, weights=model)
    assert _texts(b1) == texts1 and b1.verdicts == verdicts1 and b1.versions == [1, 1]
    assert [i["version"] for i in pool.info()] == [1, 1]

    with caplog.at_level(logging.WARNING, logger="scalinglab.distributed.rollouts"):
        b2 = pool.generate_and_verify(task, problems, params, version=2)  # v2 never published: stale
    assert b2.stale == 2 and b2.record()["stale_chunks"] == 2
    assert "STALE weights v1 (expected v2)" in caplog.text


def test_pool_rollout_is_an_rl_rollout(pool_setup):
    """`pool.rollout` returns the trainers' Rollout: rows grouped by prompt, rewards from the verifier,
    reproducible for a fixed number of generators (sampled draws differ from one local engine's,
    whose random stream spans the whole batch)."""
    pool, model, tok, _ = pool_setup
    task, problems, _ = _setup_task()
    pool.update_weights(model, version=3)
    ro = pool.rollout(task, problems, 2, 24, 1.0, seed=5, tokenizer=tok)
    assert ro.extra["weight_version"] == 3 and ro.extra["stale_chunks"] == 0
    assert ro.ids.shape[0] == 20 and ro.group.tolist() == [i // 2 for i in range(20)]
    assert ro.rewards.tolist() == [task.check(problems[i // 2], t).reward for i, t in enumerate(ro.texts)]
    for i in range(20):  # each row is <bos> prompt response: the mask covers exactly the response
        n = int(ro.mask[i].sum())
        start = int(ro.mask[i].nonzero()[0]) + 1
        assert tok.decode(ro.ids[i, start : start + n].tolist()).startswith(ro.texts[i][:1])
        assert ro.prompts[i] == problems[i // 2].prompt
    again = pool.rollout(task, problems, 2, 24, 1.0, seed=5, tokenizer=tok)
    assert again.texts == ro.texts and torch.equal(again.ids, ro.ids)


def test_killed_generation_actor_is_restarted_and_the_batch_completes_once(pool_setup):
    pool, model, tok, d = pool_setup
    task, problems, params = _setup_task()
    problems = problems * 3  # a longer call, so the kill lands mid-batch
    texts, verdicts = _local(model, tok, task, problems, params)
    pool.update_weights(model, version=4)
    before = {i["rank"]: i["pid"] for i in pool.info()}
    marker = d / "trace" / "gen-0.pid"
    marker.unlink(missing_ok=True)
    res = {}
    th = threading.Thread(target=lambda: res.update(b=pool.generate_and_verify(task, problems, params)))
    th.start()
    while not marker.exists():
        time.sleep(0.002)
    os.kill(before[0], signal.SIGKILL)
    th.join(timeout=300)
    b = res["b"]
    assert b.restarts == 1
    assert len(b.result.generations) == len(problems) and all(len(g.completions) == 2 for g in b.result.generations)
    assert _texts(b) == texts and b.verdicts == verdicts  # restarted actor caught up to v4 first
    assert b.versions == [4, 4] and b.stale == 0
    after = {i["rank"]: i["pid"] for i in pool.info()}
    assert after[0] != before[0] and after[1] == before[1]
