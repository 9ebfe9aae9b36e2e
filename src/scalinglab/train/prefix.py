"""Policy log-probs with each prompt's forward pass computed once per group (RL on real prompts).

A GRPO step trains on `group_size` responses to each prompt. The plain forward runs every row
through the model from its first token, so a 100-token few-shot prompt with 8-token answers
is processed 8 times for 8 samples: about 90% of the step's FLOPs go to prompt copies. Here
the rows that share a prompt are run as one prefix (1, P) — with gradients, so the update is
the exact gradient of the same loss — and their responses (G, S) attend to that prefix's keys
and values as well as causally to their own:

    plain:  G · (P + S) positions per group        shared: P + G · S positions per group

Logits are computed only where a log-prob is needed (the last prompt position and the
response positions), which also drops the LM head's share of the prompt (a 49k-vocabulary
head is about a fifth of SmolLM2's FLOPs per position).

The result is the plain forward's, up to floating-point summation order (other GEMM shapes):
tests/test_train_prefix.py checks log-probs and gradients against `model(ids)` on a toy model.
Rows are grouped by their exact prompt tokens, so a micro-batch may mix groups or split one;
a row without a response target contributes nothing. Deviation: only the policy forward of the
update shares prefixes; recomputed old or reference log-probs (epochs·minibatches > 1, beta > 0)
use the plain forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from scalinglab.model.transformer import Transformer, rope_cos_sin
from scalinglab.train.common import entropy_from_logits, token_logprobs


def _prefix_kv(model: Transformer, prompt: torch.Tensor):
    """Hidden state at the prompt's last position (1, 1, d) and each layer's (k, v) over the prompt."""
    x = model.model.embed_tokens(prompt[None])  # (1, P, d)
    cos, sin = rope_cos_sin(model.inv_freq, torch.arange(prompt.numel(), device=prompt.device), x.dtype)
    kvs = []
    for block in model.model.layers:
        attn = block.self_attn
        h = block.input_layernorm(x)
        q, k, v = attn.qkv(h, cos, sin)  # (1, H, P, D), (1, Hkv, P, D)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=attn.n_kv != attn.n_heads)
        x = x + attn.o_proj(y.transpose(1, 2).reshape(1, prompt.numel(), -1))
        x = x + block.mlp(block.post_attention_layernorm(x))
        kvs.append((k, v))
    return model.model.norm(x[:, -1:]), kvs


def _suffix_hidden(model: Transformer, suffix: torch.Tensor, kvs, start: int) -> torch.Tensor:
    """Final-norm hidden states (G, S, d) of `suffix` tokens at positions start.., attending to the prefix."""
    G, S = suffix.shape
    x = model.model.embed_tokens(suffix)  # (G, S, d)
    cos, sin = rope_cos_sin(model.inv_freq, torch.arange(start, start + S, device=suffix.device), x.dtype)
    allowed = torch.ones(S, start + S, dtype=torch.bool, device=suffix.device)
    allowed[:, start:] = torch.ones(S, S, dtype=torch.bool, device=suffix.device).tril()  # (S, P + S)
    for block, (pk, pv) in zip(model.model.layers, kvs):
        attn = block.self_attn
        h = block.input_layernorm(x)
        q, k, v = attn.qkv(h, cos, sin)  # (G, H, S, D), (G, Hkv, S, D)
        k = torch.cat([pk.expand(G, -1, -1, -1), k], dim=2)  # (G, Hkv, P + S, D)
        v = torch.cat([pv.expand(G, -1, -1, -1), v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, enable_gqa=attn.n_kv != attn.n_heads)
        x = x + attn.o_proj(y.transpose(1, 2).reshape(G, S, -1))
        x = x + block.mlp(block.post_attention_layernorm(x))
    return model.model.norm(x)


def policy_logprobs(
    model: Transformer, x: torch.Tensor, mask: torch.Tensor, temperature: float, share_prefix: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x[:, 1:]) (b, t) with gradients, and the detached per-token entropy (b, t).

    `mask` (b, t) marks the response targets; positions before a row's first target are its
    prompt. With `share_prefix=False` this is exactly `token_logprobs(model(x[:, :-1]), ...)`;
    with True, each distinct prompt is run once (see the module docstring) and positions
    before the last prompt token hold 0 (they are off the mask).
    """
    if not share_prefix:
        logits = model(x[:, :-1])  # (b, t, V)
        with torch.no_grad():
            ent = entropy_from_logits(logits, temperature)
        return token_logprobs(logits, x[:, 1:], temperature), ent
    b, t = mask.shape
    first = torch.where(mask.any(1), (mask > 0).float().argmax(1), torch.full((b,), t, device=mask.device))  # (b,)
    groups: dict[tuple, list[int]] = {}
    for i in range(b):
        f = int(first[i])
        if f < t:  # the prompt is x[i, :f + 1]; its last position predicts the first response token
            groups.setdefault((f, tuple(x[i, : f + 1].tolist())), []).append(i)
    logp_rows, ent_rows, order = [], [], []
    for (f, _), rows in groups.items():
        idx = torch.tensor(rows, device=x.device)
        last, kvs = _prefix_kv(model, x[rows[0], : f + 1])
        suffix = x[idx, f + 1 : t]  # (G, t - f - 1): inputs at positions f+1 .. t-1
        hidden = last.expand(len(rows), 1, -1)
        if suffix.shape[1]:
            hidden = torch.cat([hidden, _suffix_hidden(model, suffix, kvs, f + 1)], dim=1)  # (G, t - f, d)
        logits = model.lm_head(hidden)  # (G, t - f, V): predictions for targets f .. t-1
        lp = token_logprobs(logits, x[idx, f + 1 : t + 1], temperature)
        with torch.no_grad():
            ent = entropy_from_logits(logits, temperature)
        logp_rows.append(F.pad(lp, (f, 0)))
        ent_rows.append(F.pad(ent, (f, 0)))
        order += rows
    empty = [i for i in range(b) if int(first[i]) >= t]
    if empty:
        logp_rows.append(x.new_zeros(len(empty), t, dtype=torch.float32))
        ent_rows.append(x.new_zeros(len(empty), t, dtype=torch.float32))
        order += empty
    inv = torch.empty(b, dtype=torch.long, device=x.device)
    inv[torch.tensor(order, device=x.device)] = torch.arange(b, device=x.device)
    return torch.cat(logp_rows)[inv], torch.cat(ent_rows)[inv]
