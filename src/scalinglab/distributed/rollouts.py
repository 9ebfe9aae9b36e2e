"""Rollouts on Ray: generation actors that hold the policy, and a pool of verifier actors.

    pool = RayRolloutPool("runs/sft", RolloutPoolConfig(generators=2, verifiers=2))
    ro = pool.rollout(task, problems, n=8, max_new_tokens=64, temperature=1.0, seed=s,
                      tokenizer=tok, device=model.device)   # a train.rollout.Rollout, as the local engine gives
    ...optimizer step...
    pool.update_weights(model, version=step + 1)             # pushed once to the object store

How it works:
- `GenerationWorker` (one Ray actor per generator, `num_cpus`/`num_gpus` reserved) loads the model
  from a run or Hugging Face directory and serves `Engine.generate` on its share of the prompts
  (contiguous chunks, in order). It knows the weight VERSION it holds. `update_weights` puts the
  parameters in the object store once and tells every actor; each call also carries the version
  the trainer expects and a reference to those weights, so an actor that is behind (e.g. it was
  restarted and came back with the initial weights) loads them before generating. Whenever an
  actor generates with weights other than the expected version, the pool logs it as STALE
  (`logging`, logger `scalinglab.distributed.rollouts`) and counts it in the batch.
- `VerifierWorker` actors run `task.check` on the completions; each verification call takes the
  generation call's ObjectRef directly, so verifying chunk i starts as soon as chunk i is sampled.
- Fault tolerance: actors are created with `max_restarts` and `max_task_retries`; when an actor
  process dies mid-batch Ray restarts it and re-runs the call, so the batch completes with every
  sample exactly once (the pool logs the restart: the actor's pid changed).
- Sampling seeds: chunk i samples with `seed + i`. With one generator, or greedy decoding, the
  results equal the local engine's; with several, sampled batches are reproducible for a fixed
  number of generators but are not the same draws as one engine.

`rollout()` gives the exact `train.rollout.Rollout` the local trainers use: the pool's
generations and verdicts go into `train.rollout.build_rollout`, the same function the local
engine path ends in.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from scalinglab.distributed.executor import import_ray, init_ray

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RolloutPoolConfig:
    generators: int = 2  # generation actors (each holds a copy of the model)
    verifiers: int = 2  # verifier actors
    cpus_per_generator: float = 1.0  # Ray CPUs reserved per generation actor
    gpus_per_generator: float = 0.0  # Ray GPUs per generation actor (fractions share a device)
    cpus_per_verifier: float = 0.5  # Ray CPUs per verifier actor
    threads: int = 1  # torch threads inside a generation actor
    max_batch: int = 64  # Engine max_batch inside each actor
    max_restarts: int = 3  # restarts of a dead actor (its in-flight call is re-run: max_task_retries)
    trace_dir: str | None = None  # if set, each generation call writes {trace_dir}/gen-{rank}.pid first


def model_weights(model_or_weights: Any) -> dict:
    """Parameters as CPU tensors by name (tied weights once), ready for the object store."""
    if hasattr(model_or_weights, "named_parameters"):
        return {k: v.detach().to("cpu").clone() for k, v in model_or_weights.named_parameters()}
    return {k: v.detach().to("cpu") for k, v in dict(model_or_weights).items()}


class GenerationWorker:
    """A Ray actor holding one copy of the model and an Engine (see module docstring)."""

    def __init__(self, model_path: str, rank: int, threads: int = 1, max_batch: int = 64, trace_dir: str | None = None):
        import torch

        from scalinglab.engine import Engine
        from scalinglab.model.hf import load_model

        torch.set_num_threads(threads)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model, tok = load_model(model_path, device=device)
        self.engine = Engine(model, tok, max_batch=max_batch)
        self.rank, self.version, self.trace_dir = rank, 0, trace_dir
        log.info("generator %d (pid %d) loaded %s on %s at weights v0", rank, os.getpid(), model_path, device)

    def info(self) -> dict:
        return {"rank": self.rank, "pid": os.getpid(), "version": self.version, "device": str(self.engine.device)}

    def _load(self, version: int, weights: dict) -> None:
        import torch

        params = dict(self.engine.model.named_parameters())
        missing = set(params) - set(weights)
        if missing:
            raise ValueError(f"weights v{version} lack {sorted(missing)[:3]}")
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(weights[k])  # in place: the engine sees the parameter versions change
        log.info("generator %d (pid %d): weights v%d -> v%d", self.rank, os.getpid(), self.version, version)
        self.version = version

    def set_weights(self, published: tuple) -> int:
        """Load the published (version, [weights ref]) unless already holding that version."""
        import ray

        version, box = published
        if version != self.version:
            self._load(version, ray.get(box[0]))
        return self.version

    def generate(self, prompts: list[str], params: Any, expected: int, published: tuple | None) -> dict:
        """Sample with the weights of version `expected`; `published` = (version, [ref]) of the latest weights."""
        if self.trace_dir:
            Path(self.trace_dir, f"gen-{self.rank}.pid").write_text(f"{os.getpid()}\n")
        if published is not None and published[0] != self.version:
            self.set_weights(published)  # behind (e.g. restarted with the initial weights): catch up first
        if expected != self.version:
            log.warning("generator %d: STALE weights v%d (trainer expects v%d)", self.rank, self.version, expected)
        res = self.engine.generate(prompts, params)
        return {"result": res, "version": self.version, "pid": os.getpid(), "rank": self.rank}


class VerifierWorker:
    """A Ray actor that judges completions with the task's verifier."""

    def check(self, task: Any, problems: list, gen: dict, lo: int, hi: int) -> list[list[Any]]:
        gens = gen["result"].generations
        return [[task.check(problems[i], c.text) for c in gens[i].completions] for i in range(lo, hi)]


@dataclass
class PoolBatch:
    """One `generate_and_verify` call: merged generations (problem order) and their verdicts."""

    result: Any  # engine.GenerationResult over all problems
    verdicts: list[list[Any]]  # verdicts[i][j]: problem i, completion j
    versions: list[int]  # weight version each chunk was generated with
    expected_version: int
    restarts: int = 0  # generators found restarted (new pid) during this call
    seconds: float = 0.0
    stale: int = field(init=False)

    def __post_init__(self) -> None:
        self.stale = sum(v != self.expected_version for v in self.versions)

    def record(self) -> dict:
        """Metrics a trainer logs per step."""
        return {
            "weight_version": self.expected_version,
            "stale_chunks": self.stale,
            "generator_restarts": self.restarts,
        }


def _chunks(n: int, k: int) -> list[tuple[int, int]]:
    """k contiguous, balanced [lo, hi) ranges over n items (empty ones dropped)."""
    bounds = [round(i * n / k) for i in range(k + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def merge_results(parts: Sequence[Any], seconds: float) -> Any:
    from scalinglab.engine.engine import GenerationResult

    out = GenerationResult(generations=[g for p in parts for g in p.generations], seconds=seconds)
    for k in (
        "prompt_tokens",
        "generated_tokens",
        "prefills",
        "prompt_flops",
        "generated_flops",
        "kv_bytes",
        "prefix_kv_bytes",
    ):
        setattr(out, k, sum(getattr(p, k) for p in parts))
    out.steps = max((p.steps for p in parts), default=0)
    return out


class RayRolloutPool:
    """Generation actors + verifier actors on Ray (local instance, or the cluster at `address`)."""

    def __init__(self, model_path: str, cfg: RolloutPoolConfig = RolloutPoolConfig(), address: str | None = None):
        # first: it may set Ray's auth mode before the import. A private instance declares enough
        # logical CPUs for every actor (Ray would otherwise leave the verifiers unscheduled on a
        # 2-core machine and the first rollout would wait forever); on a cluster Ray places them.
        need = cfg.generators * cfg.cpus_per_generator + cfg.verifiers * cfg.cpus_per_verifier
        self._owns = init_ray(address, num_cpus=max(os.cpu_count() or 1, math.ceil(need)))
        ray = self.ray = import_ray()
        self.cfg, self.model_path = cfg, str(model_path)
        if cfg.trace_dir:
            Path(cfg.trace_dir).mkdir(parents=True, exist_ok=True)
        restarts = dict(max_restarts=cfg.max_restarts, max_task_retries=cfg.max_restarts)
        Gen = ray.remote(GenerationWorker).options(
            num_cpus=cfg.cpus_per_generator, num_gpus=cfg.gpus_per_generator, **restarts
        )
        Ver = ray.remote(VerifierWorker).options(num_cpus=cfg.cpus_per_verifier, **restarts)
        self.generators = [
            Gen.remote(self.model_path, r, cfg.threads, cfg.max_batch, cfg.trace_dir) for r in range(cfg.generators)
        ]
        self.verifiers = [Ver.remote() for _ in range(cfg.verifiers)]
        self.version = 0
        # (version, [ObjectRef]) of the latest published weights; the ref sits in a list so Ray passes
        # it through unresolved and an actor fetches the weights only when it is behind
        self._published: tuple[int, list] | None = None
        self._pids = {i["rank"]: i["pid"] for i in self.info()}

    def info(self) -> list[dict]:
        """Each generator's rank, pid, weight version and device."""
        return self.ray.get([g.info.remote() for g in self.generators])

    def update_weights(self, model_or_weights: Any, version: int) -> None:
        """Publish new weights as `version` (put once; every generator loads them before its next call)."""
        self._published = (version, [self.ray.put(model_weights(model_or_weights))])
        self.version = version
        # each runs before any later call to the same actor; kept so `close` can let them finish
        self._loading = [g.set_weights.remote(self._published) for g in self.generators]

    def generate_and_verify(
        self, task: Any, problems: Sequence[Any], params: Any, version: int | None = None, weights: Any = None
    ) -> PoolBatch:
        """Sample `params.n` completions per problem on the generators and verify them on the verifiers.

        `weights` (a model or a name -> tensor dict) with `version` publishes new weights first;
        `version` alone states which weights the trainer expects (default: the latest published).
        """
        ray = self.ray
        if weights is not None:
            if version is None:
                raise ValueError("weights need a version")
            self.update_weights(weights, version)
        expected = self.version if version is None else version
        problems = list(problems)
        t0 = time.perf_counter()
        spans = _chunks(len(problems), len(self.generators))
        task_ref = ray.put(task)
        gen_refs, ver_refs = [], []
        for i, (lo, hi) in enumerate(spans):
            p_i = replace(params, seed=params.seed + i)
            gref = self.generators[i].generate.remote(
                [p.prompt for p in problems[lo:hi]], p_i, expected, self._published
            )
            gen_refs.append(gref)
            per = max(1, len(self.verifiers) // len(spans))  # verifiers per chunk
            for j, (a, b) in enumerate(_chunks(hi - lo, per)):
                v = self.verifiers[(i * per + j) % len(self.verifiers)]
                ver_refs.append(v.check.remote(task_ref, problems[lo:hi], gref, a, b))
        gens = ray.get(gen_refs)
        verdicts = [row for part in ray.get(ver_refs) for row in part]
        restarts = 0
        for g in gens:
            if self._pids.get(g["rank"]) != g["pid"]:
                restarts += 1
                log.warning(
                    "generator %d was restarted (pid %s -> %s); the call was re-run",
                    g["rank"],
                    self._pids.get(g["rank"]),
                    g["pid"],
                )
                self._pids[g["rank"]] = g["pid"]
            if g["version"] != expected:
                log.warning(
                    "generator %d sampled with STALE weights v%d (expected v%d)", g["rank"], g["version"], expected
                )
        seconds = time.perf_counter() - t0
        result = merge_results([g["result"] for g in gens], seconds)
        return PoolBatch(
            result=result,
            verdicts=verdicts,
            versions=[g["version"] for g in gens],
            expected_version=expected,
            restarts=restarts,
            seconds=seconds,
        )

    def rollout(
        self,
        task: Any,
        problems: Sequence[Any],
        n: int,
        max_new_tokens: int,
        temperature: float,
        seed: int,
        missing_eos_penalty: float = 0.0,
        *,
        tokenizer: Any,
        device: Any = "cpu",
        version: int | None = None,
    ):
        """`train.rollout.rollout` with generation and verification on the pool: the pool's
        generations and verdicts go straight into `build_rollout`, so the `Rollout` is the one the
        local engine path builds; its `extra` holds the batch's weight version, stale chunks and
        generator restarts. `generate_seconds` is the whole pool call (verification overlaps it)."""
        from scalinglab.train.rollout import build_rollout, sampling_params

        params = sampling_params(task, n, max_new_tokens, temperature, seed)
        t0 = time.perf_counter()
        batch = self.generate_and_verify(task, problems, params, version)
        t_gen = time.perf_counter() - t0
        ro = build_rollout(
            problems,
            batch.result,
            batch.verdicts,
            tokenizer.pad_id,
            device,
            missing_eos_penalty,
            started=t0,
            generate_seconds=t_gen,
        )
        ro.extra.update(batch.record())
        return ro

    def close(self) -> None:
        # let weight loads still in flight finish: killing an actor under them makes Ray report
        # (on stdout) a failed task it is about to retry
        self.ray.wait(getattr(self, "_loading", []), num_returns=len(getattr(self, "_loading", [])), timeout=60)
        for a in self.generators + self.verifiers:
            self.ray.kill(a)
        self.generators, self.verifiers = [], []
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()
            self._owns = False
