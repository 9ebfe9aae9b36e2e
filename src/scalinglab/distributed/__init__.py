"""Parallel work beyond one process: an executor interface (local or Ray) and Ray rollout pools.

    from scalinglab.distributed import make_executor, Resources
    ex = make_executor("ray", address="auto")   # "local" (default) never imports Ray

- `executor`: `LocalExecutor` (sequential, in-process) and `RayExecutor` (Ray tasks with CPU/GPU
  needs, re-executed when their worker dies); stages such as the scaling ladder
  (`scalinglab.train.ladder`) are written against the interface, not against Ray.
- `rollouts`: `RayRolloutPool`, generation actors holding a model (weights pushed by version)
  and a pool of verifier actors, for the RL trainers. Imports Ray and torch when used.

Ray is an optional extra: `pip install 'scalinglab[ray]'`. See docs/distributed.md.
"""

from scalinglab.distributed.executor import BACKENDS, Executor, LocalExecutor, RayExecutor, Resources, make_executor

__all__ = ["BACKENDS", "Executor", "LocalExecutor", "RayExecutor", "Resources", "make_executor"]
