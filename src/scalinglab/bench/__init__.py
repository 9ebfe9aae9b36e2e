"""The project's benchmarks, each measured side by side against the tool a user would otherwise pick.

One module per `scalinglab bench` command, each returning the one JSON object the command prints:
- `bench.engine`: `scalinglab bench engine`, the engine against `transformers` `generate` (torch);
- `bench.fit`: `scalinglab bench fit`, the batched Chinchilla fit against plain SciPy (torch-free);
- `bench.sandbox`: `scalinglab bench sandbox`, sandboxed verification against a naive subprocess
  loop (torch-free).
This package imports nothing at load time, so `bench.fit` and `bench.sandbox` stay torch-free
(tests/test_layering.py checks it). The scripts in the repository's `benchmarks/` folder are the
longer, one-off comparisons (GRPO against TRL, post-training, self-consistency, the GPU check) and
thin wrappers over these modules.
"""
