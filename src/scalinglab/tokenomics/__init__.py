"""Tokenomics: what serving (and training) reasoning models costs. Torch-free.

catalog (hardware, models) -> kv -> memory -> roofline -> serve (simulator) -> cost; training;
calibrate (this machine). See docs/tokenomics.md.
"""
