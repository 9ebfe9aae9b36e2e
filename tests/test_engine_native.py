"""The native path's fast kernels against their references (issue 16): the packed GEMM
(csrc/gemm.cpp, float32 and bfloat16 weights, widened or multiplied by bf16 dot products),
the engine with bf16 weights, the thread pool (csrc/pool.cpp): the same tokens whatever
the thread count, and the bulk uniforms (csrc/uniform.cpp): torch.rand's stream bit for bit."""

import copy

import pytest
import torch

from scalinglab.engine import Engine, SamplingParams, kernels
from scalinglab.engine.kernels import decode_steps, linear_packed, pack_rows, uniform_fill
from scalinglab.engine.steps import pack_weight
from scalinglab.model import ModelConfig, Transformer
from scalinglab.model.tokenizer import CharTokenizer

PROMPTS = ["12+34=?\n", "7-5=?\n", "999*9=?\n", "1+1=?\n", "abc", "a much longer prompt than the others\n"]


@pytest.fixture(scope="module")
def wide_model():
    """A qwen2-style model wide enough that the GEMMs go through the thread pool, with widths
    that are not multiples of 16 (partial panels): gate/up 2 x 676 rows."""
    assert decode_steps() is not None  # set-up builds the extension: no silent fallback here
    torch.manual_seed(11)
    cfg = ModelConfig.from_depth(
        2,
        vocab_size=128,
        arch="qwen2",
        attention_bias=True,
        tie_word_embeddings=False,
        hidden_size=256,
        intermediate_size=676,
        num_attention_heads=8,
        num_key_value_heads=2,
    )
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for prm in model.parameters():
            prm.mul_(3 if prm.dim() == 2 else 1).add_(0.05 * torch.randn_like(prm) if prm.dim() == 1 else 0)
    return model, CharTokenizer()


def _rounded(model, matrices_only: bool = True):
    """The model with its matrices (or every parameter) rounded to bf16 and kept in float32: the bf16 paths' exact reference."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2 or not matrices_only:
                p.copy_(p.to(torch.bfloat16).float())
    return m


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "M,N,K",
    [(1, 16, 8), (2, 37, 576), (5, 1000, 64), (6, 48, 33), (7, 3072, 576), (13, 100, 256), (14, 96, 64), (64, 200, 96)],
)
def test_linear_packed_matches_linear(M, N, K, dtype):
    op = linear_packed()
    assert op is not None
    torch.manual_seed(M * N + K)
    x, w, b = torch.randn(M, K), torch.randn(N, K), torch.randn(N)
    wr = w.to(dtype).float()  # the weights the kernel multiplies by (bf16: rounded)
    got = op(x, pack_weight(w, dtype), N, b)
    ref = torch.nn.functional.linear(x.double(), wr.double(), b.double()).float()
    assert got.shape == (M, N)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-4 * K**0.5)
    no_bias = op(x, pack_weight(w, dtype), N, None)
    assert torch.allclose(no_bias + b, got, atol=1e-4)


@pytest.mark.parametrize("src", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("dst", [torch.float32, torch.bfloat16])
def test_pack_rows_is_pack_weight_of_the_indexed_concatenation(src, dst):
    """The start-up packer: rows picked from several parts (permuted, a partial last panel) in
    one pass, bit for bit what `pack_weight` makes of cat(parts)[rows] (bf16: the same rounding)."""
    torch.manual_seed(3)
    parts = [torch.randn(37, 24).to(src), torch.randn(5, 24).to(src), torch.randn(20, 24).to(src)]
    rows = torch.randperm(62)[:45]  # 45 rows: two full panels and one of 13
    got = pack_rows()(parts, rows, dst)
    assert torch.equal(got, pack_weight(torch.cat(parts)[rows], dst))


def test_native_path_packs_without_a_fused_copy(wide_model):
    """The native path packs from the model's own weights: the fused matrices (the Python step's)
    are never built, so the weights are held twice, not three times."""
    model, tok = wide_model
    eng = Engine(model, tok, max_batch=4)
    res = eng.generate(PROMPTS[:2], SamplingParams(greedy=True, max_new_tokens=4))
    assert res.decode_path == "native"
    assert getattr(eng, "_fused_layers", None) is None
    again = eng.generate(PROMPTS[:2], SamplingParams(greedy=True, max_new_tokens=4))
    assert 0 <= again.pack_seconds < res.pack_seconds <= res.seconds  # packed once, timed apart from decoding


@pytest.mark.parametrize(
    "params,max_batch",
    [
        (SamplingParams(n=2, max_new_tokens=12, temperature=0.8, seed=2), 4),  # EOS, refills, shared prompts
        (SamplingParams(greedy=True, max_new_tokens=12), 8),
    ],
    ids=["sampled-n2", "greedy"],
)
def test_bf16_weights_sample_the_rounded_models_tokens(wide_model, params, max_batch, monkeypatch):
    """bf16 matrices widened in registers (float32 arithmetic; norms and biases stay float32; what a CPU
    without bf16 dot products runs, and any CPU with $SCALINGLAB_BF16_PRODUCTS=0) give exactly the tokens
    of the float32 path run on the same matrices rounded to bf16: native loop, and the Python step as reference."""
    model, tok = wide_model
    monkeypatch.setenv("SCALINGLAB_BF16_PRODUCTS", "0")
    bf16 = Engine(model, tok, max_batch=max_batch, weight_dtype=torch.bfloat16).generate(PROMPTS, params)
    rounded = _rounded(model)
    native32 = Engine(rounded, tok, max_batch=max_batch).generate(PROMPTS, params)
    monkeypatch.setattr("scalinglab.engine.steps.decode_steps", lambda: None)
    ref = Engine(rounded, tok, max_batch=max_batch).generate(PROMPTS, params)
    assert (bf16.decode_path, native32.decode_path, ref.decode_path) == ("native", "native", "pytorch")
    for a, b, c in zip(bf16.generations, native32.generations, ref.generations):
        for x, y, z in zip(a.completions, b.completions, c.completions, strict=True):
            assert x.token_ids == y.token_ids == z.token_ids
            assert x.logprobs == y.logprobs  # the packed kernel widens bf16 exactly: bit-identical
            assert x.logprobs == pytest.approx(z.logprobs, abs=1e-4)


def test_a_bf16_model_runs_natively(wide_model, monkeypatch):
    """A model loaded in bf16 takes the native path (float32 activations, bf16 matrices, widened) and samples
    what its float32 copy samples."""
    model, tok = wide_model
    monkeypatch.setenv("SCALINGLAB_BF16_PRODUCTS", "0")
    rounded = _rounded(model, matrices_only=False)  # a bf16 model's norms and biases are bf16 too
    params = SamplingParams(n=3, max_new_tokens=10, temperature=1.0, seed=9)
    b = Engine(copy.deepcopy(rounded).to(torch.bfloat16), tok, max_batch=8).generate(PROMPTS, params)
    f = Engine(rounded, tok, max_batch=8).generate(PROMPTS, params)
    assert b.decode_path == "native"
    assert [c.token_ids for g in b.generations for c in g.completions] == [
        c.token_ids for g in f.generations for c in g.completions
    ]


def test_thread_count_does_not_change_tokens(wide_model):
    """Every output of the packed GEMM, attention and sampler is computed by one thread in a fixed order,
    so 1 and 2 threads give identical tokens and log-probs."""
    model, tok = wide_model
    params = SamplingParams(n=2, max_new_tokens=12, temperature=1.2, seed=4)
    before = torch.get_num_threads()
    try:
        out = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            r = Engine(model, tok, max_batch=6).generate(PROMPTS, params)
            out.append([(c.token_ids, c.logprobs) for g in r.generations for c in g.completions])
    finally:
        torch.set_num_threads(before)
    assert out[0] == out[1]


# ---- bf16 dot products (AVX512-BF16, AMX): activations rounded to bf16 ---------------------------

needs_bf16_products = pytest.mark.skipif(
    kernels.bf16_products() == 0, reason="this CPU or build has no bf16 dot products (AVX512-BF16)"
)


def _rounded_linear_reference(x, w, b):
    """x and W rounded to bf16, then multiplied in float64: what the bf16 dot products compute up to float32 sums."""
    xr, wr = x.to(torch.bfloat16).double(), w.to(torch.bfloat16).double()
    ref = xr @ wr.T + (0 if b is None else b.double())
    return ref, xr.abs() @ wr.abs().T


@needs_bf16_products
@pytest.mark.parametrize(
    # rows: the one-row dot-product tile, AMX tiles of fewer than 16 rows, one, and several 32-row blocks with a
    # partial row tile; columns: partial last panels and odd panel counts (a panel pair without its second panel)
    "M,N,K",
    [
        (1, 16, 32),
        (1, 1000, 576),
        (2, 37, 576),
        (7, 3072, 64),
        (15, 48, 32),
        (16, 33, 96),
        (17, 3072, 576),
        (40, 1537, 96),
        (64, 100, 256),
    ],
)
@pytest.mark.parametrize("with_bias", [False, True])
def test_bf16_products_match_the_rounded_product(M, N, K, with_bias):
    """The pairs layout's product is x and W rounded to bf16, multiplied exactly and summed in float32: within
    K float32 roundings of the float64 product of the rounded operands (the recursive-summation bound)."""
    torch.manual_seed(M * N + K)
    x, w, b = torch.randn(M, K), torch.randn(N, K), torch.randn(N) if with_bias else None
    wp = pack_weight(w, torch.bfloat16, pairs=True)
    assert wp.shape == (-(-N // 16), K // 2, 32)
    got = linear_packed()(x, wp, N, b).double()
    ref, mag = _rounded_linear_reference(x, w, b)
    bound = K * 2.0**-24 * (mag + (0 if b is None else b.double().abs()))
    assert ((got - ref).abs() <= bound).all()
    # and rounding x matters: the float64 product of unrounded x is further away than the bound in places
    assert ((got - x.double() @ w.to(torch.bfloat16).double().T - (0 if b is None else b.double())).abs() > bound).any()


def test_pack_rows_packs_pairs_like_pack_weight():
    """The pairs layout from `pack_rows` (permuted rows, a partial panel) is bit for bit `pack_weight(..., pairs=True)`,
    whose lines hold the 16 columns' values at k and k+1 side by side."""
    torch.manual_seed(5)
    parts = [torch.randn(30, 64), torch.randn(20, 64)]
    rows = torch.randperm(50)[:37]
    got = pack_rows()(parts, rows, torch.bfloat16, True)
    w = torch.cat(parts)[rows]
    want = pack_weight(w, torch.bfloat16, pairs=True)
    assert torch.equal(got, want)
    assert want[1, 3, 2 * 5 + 1] == w[16 + 5, 2 * 3 + 1].to(torch.bfloat16)  # panel 1, pair 3: row 21, k = 7
    with pytest.raises(RuntimeError, match="multiple of 32"):
        pack_rows()([torch.randn(16, 48)], torch.arange(16), torch.bfloat16, True)


@needs_bf16_products
def test_bf16_products_do_not_depend_on_the_thread_count():
    """Each output of the pairs kernels is summed by one thread in a fixed order: 1 and 2 threads give the same bits."""
    torch.manual_seed(8)
    x, w = torch.randn(64, 576), torch.randn(1000, 576)
    wp = pack_weight(w, torch.bfloat16, pairs=True)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append([linear_packed()(x[:m], wp, 1000, None) for m in (1, 8, 64)])
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(*outs))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_float32_tiles_do_not_depend_on_the_row_count(dtype):
    """With float32 products a row's outputs are the same bits in a call of 2 to 64 rows, whatever tiles the rows
    are split into (12 rows and a rest, or equal tiles where two panels go together; a partial last panel), except
    the one row the AVX2 kernel's 6-row tiles leave alone (M = 6q + 1): like a single row, it sums even and odd k
    apart, and differs from the same row's outputs in a bigger call in the last bits."""
    torch.manual_seed(10)
    x, w = torch.randn(64, 200), torch.randn(1000, 200)
    wp = pack_weight(w, dtype)
    full = linear_packed()(x, wp, 1000, None)
    for m in (2, 3, 4, 6, 7, 8, 11, 12, 13, 14, 19, 23, 24, 25, 37, 52, 63):
        got = linear_packed()(x[:m], wp, 1000, None)
        same = m - 1 if m % 6 == 1 else m
        assert torch.equal(got[:same], full[:same]), m
        assert torch.allclose(got, full[:m], rtol=0, atol=1e-3), m


@pytest.mark.skipif(kernels.bf16_products() < 2, reason="this CPU or build has no AMX tiles")
def test_amx_rows_do_not_depend_on_the_row_count():
    """AMX serves every call of two rows or more, and a row's outputs are the same bits whether it is multiplied
    with 1 or 63 other rows (a 16-row tile, a partial one, several 32-row blocks). A lone row goes through
    vdpbf16ps, which rounds after each product (AMX does not say how it rounds inside a tile): on the Xeons
    measured, about 80% of its outputs differ in the last bits from the same row's in a bigger call."""
    torch.manual_seed(9)
    x, w = torch.randn(64, 576), torch.randn(1000, 576)
    wp = pack_weight(w, torch.bfloat16, pairs=True)
    full = linear_packed()(x, wp, 1000, None)
    for m in (2, 3, 15, 16, 17, 32, 33, 63):
        assert torch.equal(linear_packed()(x[:m], wp, 1000, None), full[:m]), m
    assert torch.allclose(linear_packed()(x[:1], wp, 1000, None), full[:1], rtol=0, atol=1e-3)


@pytest.mark.skipif(kernels.bf16_products() != 1, reason="this CPU or build has no AVX512-BF16, or AMX serves 2+ rows")
def test_bf16_dot_product_rows_do_not_depend_on_the_row_count():
    """Without AMX every call goes through vdpbf16ps tiles, each row summed pair of k by pair of k in order, so a
    row's outputs are the same bits in a call of 1 to 64 rows, whatever the equal tiles the rows are split into
    and whether the next panels are prefetched (a partial last panel and a pair without its second panel too)."""
    torch.manual_seed(11)
    x, w = torch.randn(64, 576), torch.randn(1000, 576)
    wp = pack_weight(w, torch.bfloat16, pairs=True)
    full = linear_packed()(x, wp, 1000, None)
    for m in (1, 2, 3, 5, 11, 12, 13, 23, 25, 37, 63):
        assert torch.equal(linear_packed()(x[:m], wp, 1000, None), full[:m]), m


@needs_bf16_products
@pytest.mark.parametrize(
    "params,max_batch",
    [
        (SamplingParams(n=2, max_new_tokens=12, temperature=0.8, seed=2), 4),
        (SamplingParams(greedy=True, max_new_tokens=12), 8),
    ],
    ids=["sampled-n2", "greedy"],
)
def test_bf16_products_sample_the_tokens_of_rounded_activations(wide_model, params, max_batch, monkeypatch):
    """The native path with bf16 dot products against the Python step run on the rounded matrices with every
    matrix product's input rounded to bf16. Exact parity cannot hold: a float32 difference of summation order
    that moves one activation across a bf16 rounding boundary changes it by 1/256, and the change spreads
    through every later rounding (measured here: 0.004 mean |log-prob| difference against 0.006 for rounding
    the activations or not). So: the same tokens in most completions, log-probs within 0.05 until they part,
    where a wrong layout or accumulation gives differences of order 1."""
    model, tok = wide_model
    eng = Engine(model, tok, max_batch=max_batch, weight_dtype=torch.bfloat16)
    fast = eng.generate(PROMPTS, params)
    assert eng.matmul_kind() in ("bf16-avx512", "bf16-amx")
    assert {t.shape[-1] for t in eng._packed()[3][1::7]} == {32}  # Wqkv (K = 256) in pairs
    linear = torch.nn.functional.linear
    monkeypatch.setattr(torch.nn.functional, "linear", lambda x, w, b=None: linear(x.to(torch.bfloat16).float(), w, b))
    monkeypatch.setattr("scalinglab.engine.steps.decode_steps", lambda: None)
    ref = Engine(_rounded(model), tok, max_batch=max_batch).generate(PROMPTS, params)
    assert (fast.decode_path, ref.decode_path) == ("native", "pytorch")
    pairs = [
        (x, z)
        for a, c in zip(fast.generations, ref.generations)
        for x, z in zip(a.completions, c.completions, strict=True)
    ]
    assert sum(x.token_ids == z.token_ids for x, z in pairs) >= 0.75 * len(pairs)
    for x, z in pairs:
        same = next((i for i, (u, v) in enumerate(zip(x.token_ids, z.token_ids)) if u != v), len(x.token_ids))
        assert same > 0  # the first token comes from the prompt alone
        assert x.logprobs[:same] == pytest.approx(z.logprobs[:same], abs=0.05)


@pytest.mark.parametrize(
    "before", [0, 1, 623, 624, 1000]
)  # draws already taken: the block is fresh, partly or fully used
@pytest.mark.parametrize("n", [0, 1, 623, 624, 625, 1249, 64 * 1000 + 7])
def test_uniform_fill_draws_torch_rand_stream(before, n):
    """The decode loop's bulk uniforms are torch.rand's, and leave the generator where torch.rand would."""
    ours, ref = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    torch.rand(before, generator=ours), torch.rand(before, generator=ref)
    assert torch.equal(uniform_fill()(torch.empty(n), ours), torch.rand(n, generator=ref))
    assert torch.equal(ours.get_state(), ref.get_state())
    assert torch.equal(torch.rand(700, generator=ours), torch.rand(700, generator=ref))


def test_uniform_fill_without_a_generator_draws_from_the_default_one():
    torch.manual_seed(3)
    ours = uniform_fill()(torch.empty(2, 800), None)
    torch.manual_seed(3)
    assert torch.equal(ours, torch.rand(2, 800))
