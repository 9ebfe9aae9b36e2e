"""Strategies that turn more inference compute into accuracy.

greedy (the baseline), repeated sampling with pass@k, majority / weighted vote,
best-of-N with a verifier or reward model, step-level beam search with a PRM or Monte
Carlo roll-outs, and thinking-budget control; `evaluate` sweeps one over budgets and
reports accuracy against the exact tokens and FLOPs spent. Every module imports torch
through the engine except passk.py and vote.py, which are pure.
"""
