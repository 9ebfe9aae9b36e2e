"""The generator seeds of every problem stream, in one place.

A task generates problems from a seed (`Task.generate(n, seed)`). Which problems count as
held out is decided by their text, not by their seed (`split.py`): every training stream draws
only the train split and every evaluation only the eval split. The seed ranges below are kept
apart so that streams do not repeat one another (pre-training chunks, post-training data, RL
prompts), and so that a run's numbers stay reproducible.

    EVAL_SEED             777         held-out evaluation problems (every stage, `scalinglab eval`)
    VAL_SEED_BASE         900,000     + chunk: pre-training's validation-loss problems (eval split)
    TRAIN_SEED_BASE       1,000,000   + 100,000·seed + chunk: pre-training's corpus
    POSTTRAIN_SEED_BASE   3,000,000   + seed: SFT's problems; + DPO_OFFSET, + RM_OFFSET for those
    RL_SEED_BASE          5,000,000   + 100,000·seed + step: RL prompts (RL_SEED_BASE - 1: probes)
"""

EVAL_SEED = 777
VAL_SEED_BASE = 900_000
TRAIN_SEED_BASE = 1_000_000
POSTTRAIN_SEED_BASE = 3_000_000
DPO_OFFSET = 10_000
RM_OFFSET = 20_000
RL_SEED_BASE = 5_000_000
