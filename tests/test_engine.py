"""Engine correctness: KV-cache decoding equals full forward passes, in both cache modes."""

import pytest
import torch

from scalinglab.engine import Engine, SamplingParams, sample_tokens, sequence_flops

PROMPTS = ["12+34=?\n", "7-5=?\n", "999*9=?\n", "1+1=?\n", "abc", "a much longer prompt than the others\n"]


def naive_greedy(model, tok, prompt, steps):
    """Greedy decoding with a full forward pass per token (no cache)."""
    ids, out, logits = tok.encode(prompt), [], []
    for _ in range(steps):
        with torch.no_grad():
            lg = model(torch.tensor([ids]))[0, -1]
        t = int(lg.argmax())
        out.append(t)
        logits.append(lg.log_softmax(-1)[t].item())
        ids.append(t)
        if t == tok.eos_id:
            break
    return out, logits


@pytest.mark.parametrize("path", ["native", "kernel", "matmul"])
@pytest.mark.parametrize("n,max_batch", [(1, 4), (1, 64), (3, 8), (2, 4)])
def test_cached_decoding_matches_full_forward(tiny_model, n, max_batch, path, monkeypatch):
    # max_batch < prompts*n forces refills (continuous batching) and compaction.
    # native: the C++ decode loop; kernel: the Python step with the C++ attention;
    # matmul: the attention used where the C++ extension cannot be built
    if path != "native":
        monkeypatch.setattr("scalinglab.engine.steps.decode_steps", lambda: None)
    if path == "matmul":
        monkeypatch.setattr("scalinglab.engine.steps.decode_attention", lambda: None)
    model, tok = tiny_model
    res = Engine(model, tok, max_batch=max_batch).generate(PROMPTS, SamplingParams(greedy=True, n=n, max_new_tokens=10))
    assert res.decode_path == ("native" if path == "native" else "pytorch")
    for g in res.generations:
        ref, ref_lp = naive_greedy(model, tok, g.prompt, 10)
        assert len(g.completions) == n
        for c in g.completions:
            assert c.token_ids == ref
            assert c.logprobs == pytest.approx(ref_lp, abs=1e-4)


def test_decode_logits_match_forward(tiny_model):
    """The engine's logits at each step equal the full forward's, to float precision."""
    model, tok = tiny_model
    eng = Engine(model, tok, max_batch=2)
    ids = tok.encode("12+34=?\n")
    from scalinglab.engine.steps import KVCache

    for n in (1, 2):
        cache = KVCache(model.config, 1, n, len(ids), 8, "cpu", torch.float32)
        logits = eng.prefill(cache, [0], [ids])
        seq = list(ids)
        for step in range(5):
            with torch.no_grad():
                ref = model(torch.tensor([seq]))[0, -1]
            assert torch.allclose(logits[0], ref, atol=1e-4), (n, step)
            t = int(ref.argmax())
            seq.append(t)
            tokens = torch.full((n,), t)
            slen = torch.full((n,), step)
            tcur = (len(ids) + step + 1) if n == 1 else step + 1
            logits = eng.decode(cache, 1, n, tokens, torch.tensor([len(ids)]), slen, tcur)


def test_accounting_and_prefix_sharing(tiny_model):
    model, tok = tiny_model
    prompt = "x" * 511  # 512 tokens with BOS
    res = Engine(model, tok, max_batch=64).generate([prompt], SamplingParams(n=64, max_new_tokens=4, ignore_eos=True))
    assert res.prefills == 1 and res.prompt_tokens == 512  # prefilled once, not 64 times
    cfg = model.config
    one_copy = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * 512 * 4  # K and V, fp32
    assert res.prefix_kv_bytes == one_copy
    assert res.generated_tokens == 64 * 4 == sum(len(c.token_ids) for c in res.generations[0].completions)
    assert res.prompt_flops == pytest.approx(cfg.prefill_flops(512))  # LM head at the last prompt position only
    assert res.generated_flops == pytest.approx(64 * sequence_flops(cfg, 512, 4))


def test_sequence_flops_closed_form():
    from scalinglab.model import ModelConfig

    cfg = ModelConfig.from_depth(1, vocab_size=128)
    brute = sum(cfg.flops_per_token(ctx) for ctx in range(10 + 1, 10 + 5 + 1))  # tokens at 10..14 see 11..15 positions
    assert sequence_flops(cfg, 10, 5) == pytest.approx(brute)


def test_stop_strings_and_eos(tiny_model):
    model, tok = tiny_model
    base = Engine(model, tok).generate(["12+34=?\n"], SamplingParams(greedy=True, max_new_tokens=12))
    text = base.generations[0].completions[0].text
    stop = text[3:5]
    res = Engine(model, tok).generate(["12+34=?\n"], SamplingParams(greedy=True, max_new_tokens=12, stop=(stop,)))
    c = res.generations[0].completions[0]
    assert c.finish_reason == "stop" and c.text.endswith(stop) and len(c.text) <= 5


def test_sampling_is_seeded_and_respects_top_k():
    logits = torch.randn(4, 50)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    p = SamplingParams(top_k=3, temperature=0.7)
    t1, lp1 = sample_tokens(logits, p, g1)
    t2, _ = sample_tokens(logits, p, g2)
    assert torch.equal(t1, t2)
    top3 = logits.topk(3, -1).indices
    assert all(t1[i] in top3[i] for i in range(4))
    # returned log-prob is under the temperature-scaled full distribution
    assert torch.allclose(lp1, (logits / 0.7).log_softmax(-1).gather(-1, t1[:, None])[:, 0])


def test_sampling_distribution_matches_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0]]).repeat(20000, 1)
    t, _ = sample_tokens(logits, SamplingParams(), torch.Generator().manual_seed(0))
    freq = torch.bincount(t, minlength=4).float() / len(t)
    assert torch.allclose(freq, logits[0].softmax(-1), atol=0.015)


def test_top_p_keeps_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    seen = set()
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        t, _ = sample_tokens(logits, SamplingParams(top_p=0.75), gen)
        seen.add(int(t))
    assert seen == {0, 1}  # 0.5 alone < 0.75, 0.5 + 0.3 >= 0.75


def test_compiled_decode_matches_eager(tiny_model):
    """The torch.compile decode step gives the eager engine's tokens and log-probs.

    Greedy, plain sampling (same seed, so the same uniform draws) and top-k (sampled
    outside the graph); max_batch 4 < 6 prompts forces refills and compaction.
    """
    from scalinglab.engine.compiled import CompiledDecode

    model, tok = tiny_model
    for params in (
        SamplingParams(greedy=True, max_new_tokens=12),
        SamplingParams(temperature=0.8, max_new_tokens=12, seed=3),
        SamplingParams(top_k=5, max_new_tokens=12, seed=4),
    ):
        ref = Engine(model, tok, max_batch=4).generate(PROMPTS, params)
        got = Engine(model, tok, max_batch=4, compile=True).generate(PROMPTS, params)
        assert got.decode_path == "compiled" and ref.decode_path == "native"
        assert CompiledDecode._failed is None  # it really compiled: no silent fallback to eager
        for a, b in zip(ref.generations, got.generations):
            assert a.completions[0].token_ids == b.completions[0].token_ids, params
            assert a.completions[0].logprobs == pytest.approx(b.completions[0].logprobs, abs=1e-4)
        assert got.generated_tokens == ref.generated_tokens and got.generated_flops == pytest.approx(
            ref.generated_flops
        )


def test_decode_attention_kernel_matches_softmax_attention():
    """The C++ kernel equals softmax(q·kᵀ/√D)·v over prompt prefix + own cached tokens + own new token."""
    from scalinglab.engine.kernels import decode_attention

    op = decode_attention()
    assert op is not None  # set-up installs g++ and ninja: the kernel must build
    torch.manual_seed(0)
    S, Hkv, rep, T, D = 6, 2, 3, 9, 8
    q, ks, vs = torch.randn(S, Hkv * rep, D), torch.randn(S, Hkv, T, D), torch.randn(S, Hkv, T, D)
    kn, vn, slen = torch.randn(S, Hkv, D), torch.randn(S, Hkv, D), torch.tensor([0, 1, 4, 8, 9, 2])
    kp, vp, plen = torch.randn(3, Hkv, 5, D), torch.randn(3, Hkv, 5, D), torch.tensor([5, 1, 3])  # 3 groups of n = 2
    fused = torch.cat([q, kn.repeat(1, rep, 1)], 1)  # strided views, as slices of a fused qkv projection arrive
    for G in (0, 3):
        out = op(fused[:, : Hkv * rep], kp[:G], vp[:G], plen[:G], ks, vs, slen, kn, vn, 0.3)
        for s in range(S):
            for h in range(Hkv * rep):
                g, n, grp = h // rep, int(slen[s]), s // 2
                pre = int(plen[grp]) if G else 0
                keys = torch.cat([kp[grp, g, :pre], ks[s, g, :n], kn[s, g][None]])
                vals = torch.cat([vp[grp, g, :pre], vs[s, g, :n], vn[s, g][None]])
                ref = ((keys @ q[s, h]) * 0.3).softmax(0) @ vals
                assert torch.allclose(out[s, h], ref, atol=1e-5), (G, s, h)


def test_compiled_step_attention_paths_agree(tiny_model):
    """decode_step's fused broadcast-and-sum attention (used where the kernel is absent) equals the kernel's."""
    from scalinglab.engine.compiled import decode_step

    model, tok = tiny_model
    eng = Engine(model, tok)
    cfg = model.config
    torch.manual_seed(1)
    S, T = 3, 7
    kv = torch.randn(cfg.num_hidden_layers, 2, S, cfg.num_key_value_heads, T, cfg.head_dim)
    angles = torch.arange(T).float()[:, None] * model.inv_freq
    layers = [(a.weight, w, b, o, c.weight, gu, d) for a, w, b, o, c, gu, d in eng._fused()]
    args = (
        torch.tensor([5, 9, 11]),
        torch.tensor([0, 3, 6]),
        kv,
        angles.cos(),
        angles.sin(),
        model.model.embed_tokens.weight,
        layers,
        model.model.norm.weight,
        model.lm_head.weight,
        (cfg.num_attention_heads, cfg.num_key_value_heads),
        cfg.rms_norm_eps,
        torch.rand(S, cfg.vocab_size),
        torch.tensor(1.0),
    )
    with torch.inference_mode():
        fused, kernel = decode_step(*args, kernel=False), decode_step(*args, kernel=True)
    assert torch.allclose(fused[2], kernel[2], atol=1e-4)  # logits
    assert torch.equal(fused[0], kernel[0])


@pytest.mark.parametrize(
    "params,max_batch",
    [
        (SamplingParams(max_new_tokens=14, ignore_eos=True, seed=1), 64),  # one call does every step
        (SamplingParams(max_new_tokens=14, temperature=0.7, seed=2), 4),  # EOS, refills, compaction
        (SamplingParams(n=3, max_new_tokens=12, temperature=1.3, seed=3), 8),  # shared prompts, groups finish apart
        (SamplingParams(n=2, max_new_tokens=12, stop=("=", "9"), seed=4), 6),  # stop strings: one step per call
        (SamplingParams(greedy=True, max_new_tokens=12), 3),
        (SamplingParams(n=2, max_new_tokens=12, top_k=5, temperature=1.5, seed=5), 6),
        (SamplingParams(max_new_tokens=12, top_p=0.8, seed=6), 4),
        (SamplingParams(n=2, max_new_tokens=12, top_k=20, top_p=0.9, temperature=2.0, seed=7), 4),
    ],
    ids=["ignore-eos", "eos-refill", "shared-n3", "stop-strings", "greedy", "top-k", "top-p", "top-k-and-p"],
)
def test_native_loop_matches_python_step(params, max_batch, monkeypatch):
    """The C++ decode loop samples the Python path's tokens (same generator draws) and records them alike.

    A qwen2-style model (QKV bias, untied head) with weights scaled up, so samples vary.
    """
    from scalinglab.engine.kernels import decode_steps
    from scalinglab.model import ModelConfig, Transformer
    from scalinglab.model.tokenizer import CharTokenizer

    assert decode_steps() is not None  # set-up builds the extension: no silent fallback here
    torch.manual_seed(5)
    cfg = ModelConfig.from_depth(2, vocab_size=128, arch="qwen2", attention_bias=True, tie_word_embeddings=False)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for prm in model.parameters():
            prm.mul_(3 if prm.dim() == 2 else 1).add_(0.05 * torch.randn_like(prm) if prm.dim() == 1 else 0)
    tok = CharTokenizer()
    native = Engine(model, tok, max_batch=max_batch).generate(PROMPTS, params)
    monkeypatch.setattr("scalinglab.engine.steps.decode_steps", lambda: None)
    ref = Engine(model, tok, max_batch=max_batch).generate(PROMPTS, params)
    assert (native.decode_path, ref.decode_path) == ("native", "pytorch")
    reasons = set()
    for a, b in zip(native.generations, ref.generations):
        for x, y in zip(a.completions, b.completions, strict=True):
            assert (x.token_ids, x.finish_reason, x.text) == (y.token_ids, y.finish_reason, y.text)
            assert x.logprobs == pytest.approx(y.logprobs, abs=1e-5)
            reasons.add(x.finish_reason)
    assert (native.steps, native.generated_tokens, native.prompt_tokens) == (
        ref.steps,
        ref.generated_tokens,
        ref.prompt_tokens,
    )
    if params.stop:
        assert "stop" in reasons  # the stop strings really ended samples
    if params.ignore_eos:
        assert reasons == {"length"}


def test_bench_counts_answer_tokens_not_padding():
    """The ragged benchmark credits transformers with each row's tokens up to its first EOS (2 here)."""
    from scalinglab.bench.engine import answer_lengths

    new = torch.tensor([[5, 2, 0, 0], [5, 6, 7, 8], [2, 2, 0, 0], [9, 9, 9, 2]])
    assert answer_lengths(new, eos=2).tolist() == [2, 4, 1, 4]


@pytest.mark.parametrize("n", [1, 3], ids=["flat", "shared-prefix"])
def test_native_prefill_matches_pytorch_prefill(tiny_model, n):
    """Prompts of different lengths, packed without padding, into groups 2 and 0: same logits, same cached keys/values."""
    from scalinglab.engine.steps import KVCache

    model, tok = tiny_model
    eng = Engine(model, tok)
    ids = [tok.encode(p) for p in ("12+34=?\n", "a much longer prompt than the others\n")]
    Tp = max(map(len, ids))
    caches = [KVCache(model.config, 3, n, Tp, 4, "cpu", torch.float32) for _ in range(2)]
    ref = eng.prefill(caches[0], [2, 0], ids)
    got = eng.prefill(caches[1], [2, 0], ids, native=True)
    assert torch.allclose(got, ref, atol=1e-4)
    # keys/values of each prompt's real tokens (PyTorch also writes its padding, which nothing reads)
    kv = [torch.stack([c.ks, c.vs]) if n == 1 else torch.stack([c.kp, c.vp]) for c in caches]  # (2, L, rows, Hkv, T, D)
    for g, x in zip([2, 0], ids):
        assert torch.allclose(kv[1][:, :, g, :, : len(x)], kv[0][:, :, g, :, : len(x)], atol=1e-5)
        assert kv[1][:, :, g, :, : len(x)].abs().sum() > 0
    assert kv[1][:, :, 1].abs().sum() == 0  # group 1 was not prefilled: untouched
