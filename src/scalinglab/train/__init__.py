"""Training: one readable file per algorithm (pretrain, sft, reward_model, dpo, ppo, grpo)
and small shared helpers in `common.py`."""
