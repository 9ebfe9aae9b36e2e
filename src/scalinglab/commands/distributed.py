"""`scalinglab ray-status`: what a Ray cluster offers before a sweep or RL run is pointed at it."""

from __future__ import annotations

from typing import Optional

import typer

from scalinglab.commands import common


def register(app: typer.Typer) -> None:
    app.command("ray-status")(ray_status_cmd)


def ray_status_cmd(
    address: Optional[str] = typer.Option(
        None,
        help="Cluster to query (HEAD:6379, or 'auto' for one started on this machine); default: a throwaway local instance.",
    ),
    as_json: bool = common.JSON_OPT,
) -> None:
    """Show a Ray cluster's nodes, CPUs and GPUs (total and free) and the Ray version.

    \b
    Example, after `ray start --head` on this machine:
      scalinglab ray-status --address auto --json
      {"ray_version": "2.x", "nodes": 1, "resources": {"CPU": 16.0, ...}, "available": {...}}
    See docs/distributed.md for starting a head and joining workers.
    """
    from scalinglab.distributed.executor import import_ray, init_ray

    owns = init_ray(address)
    ray = import_ray()
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        out = {
            "ray_version": ray.__version__,
            "address": address or "local",
            "nodes": len(nodes),
            "resources": {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU", "memory")},
            "available": {k: v for k, v in ray.available_resources().items() if k in ("CPU", "GPU", "memory")},
            "node_ips": sorted({n.get("NodeManagerAddress", "?") for n in nodes}),
        }
    finally:
        if owns:
            ray.shutdown()
    human = "\n".join(f"{k:>12}: {v}" for k, v in out.items())
    common.emit(out, as_json, human=human)
