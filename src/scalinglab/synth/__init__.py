"""Synthetic data: rejection sampling with retry (rejection.py), Math-Shepherd process
annotation (annotate.py), model-backed judges (judge.py); sampling behind one swappable
function (sampler.py). See docs/synth.md."""
