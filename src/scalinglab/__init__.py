"""scalinglab: the scaling laws of reasoning models and what they cost.

Stages (see DESIGN.md): model/ engine/ tasks/ verify/ synth/ train/ testtime/ scaling/
tokenomics/ runs/ distributed/ report/, and a thin command line in cli.py.
"""

__version__ = "0.1.0"
