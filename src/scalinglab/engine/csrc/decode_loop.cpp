// The engine's decode loop and prefill in native code (CPU, float32).
//
// `decode_steps`: many decode steps per call.
// A small model's decode step on a CPU is a few small matrix products and ~40 cheap
// element-wise passes; from Python each of those costs more to launch than to compute,
// and the scheduler's per-step bookkeeping as much again. Here one call runs steps until
// a group of samples has finished (so the Python scheduler can retire and refill it), or
// `max_steps` (1 when stop strings must be checked after every token):
//   embed -> per layer: RMSNorm, fused QKV GEMM, RoPE (interleaved pairs), K/V written to
//   the cache, attention (attention.h), Wo GEMM + residual, RMSNorm, gate/up GEMM, SiLU·up,
//   down GEMM + residual -> RMSNorm, LM head -> sample -> record.
// The matrix products are gemm.cpp's, on weights packed once (float32 or bf16) by engine.steps;
// they, attention and the sampler (rows in parallel) share pool.h's load-tolerant threads.
// The maths and the random draws are the engine's Python path's (engine.py): the same fused
// weights and cache layout, Gumbel-max sampling on uniforms drawn by the same generator
// with the same shape (S, V) per step, log-probs under the full tempered distribution.
// The bookkeeping is the scheduler's too: each live slot's token and log-prob go to its
// next column of buf_tok / buf_lp (numpy arrays shared with Python), and a slot finishes
// on EOS or when it holds `budget` tokens (reason codes as in engine.py).
//
// `prefill_rows`: a batch of prompts, packed without padding (one row per prompt token),
// through the same layer code; a row attends to its own prompt's cached positions before it.
// A refill of one short prompt costs a fraction of a millisecond, not the ~1 ms of eager ops.
#include <torch/extension.h>
#include <torch/library.h>
#include <ATen/core/Generator.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "attention.h"
#include "gemm.h"
#include "pool.h"
#include "uniform.h"

PackedW packed_of(const torch::Tensor& wp, int64_t N);  // gemm.cpp

namespace {

constexpr int8_t kEos = 1, kLength = 3;  // engine.py's _EOS, _LENGTH

// fn(r0, r1) over rows [0, R) of a row-wise pass of `per_row` values a row: on the pool's threads
// from 32k values on (a hand-off costs a few microseconds; a serial pass of a batch of 64 left
// the other thread idle for it: about 3% of a SmolLM2 step for the norms, RoPE and SiLU), else
// in this thread. Each row is computed alike either way.
void rows_for(int64_t R, int64_t per_row, const std::function<void(int64_t, int64_t)>& fn) {
  const int64_t T = at::get_num_threads();
  pool_for(R, R * per_row < (int64_t{1} << 15) ? R : std::max<int64_t>(1, (R + 2 * T - 1) / (2 * T)), fn);
}

// out[s] = w * x[s] / sqrt(mean(x[s]^2) + eps), rows of width E
void rms_norm(const float* x, const float* w, float eps, int64_t rows, int64_t E, float* out) {
  rows_for(rows, E, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const float* xs = x + s * E;
      float ss = 0.f;
      for (int64_t e = 0; e < E; ++e) ss += xs[e] * xs[e];
      const float r = 1.f / std::sqrt(ss / E + eps);
      float* os = out + s * E;
      for (int64_t e = 0; e < E; ++e) os[e] = w[e] * (xs[e] * r);
    }
  });
}

// rotate heads [0, nh) of a row by cs = (cos, sin) pairs of its position: (x0, x1) -> (x0 c - x1 s, x0 s + x1 c)
void rope(float* __restrict__ row, int64_t nh, int64_t D, const float* __restrict__ cs) {
  for (int64_t h = 0; h < nh; ++h) {
    float* __restrict__ x = row + h * D;
    for (int64_t i = 0; i < D / 2; ++i) {
      const float x0 = x[2 * i], x1 = x[2 * i + 1], c = cs[2 * i], s = cs[2 * i + 1];
      x[2 * i] = x0 * c - x1 * s;
      x[2 * i + 1] = x0 * s + x1 * c;
    }
  }
}

// Gumbel noise of a uniform u: -log(-log(u)), u clamped to [1e-10, 1] as engine.sample_tokens does
inline float gumbel(float u) { return -std::log(-std::log(std::clamp(u, 1e-10f, 1.f))); }

// The first index of the largest of s[0..n) (torch.argmax's choice among equals), in two
// vectorised passes rather than one compare-and-branch loop.
int64_t first_max(const float* __restrict__ s, int64_t n) {
  float top = s[0];
  for (int64_t v = 1; v < n; ++v) top = std::max(top, s[v]);
  int64_t v = 0;
  while (v + 1 < n && s[v] != top) ++v;  // bounded: NaN logits give some id, never a read past the row
  return v;
}

// engine.sample_tokens for one row of logits r (V,) and its uniforms u (V,): the sampled id,
// and its log-prob under the full tempered distribution in *lp. Greedy: argmax of the logits.
// Truncation as there: top-k keeps log-probs >= the k-th largest; top-p then keeps the smallest
// prefix, by descending log-prob, whose mass reaches top_p (cumulative sum in double, as
// torch.cumsum on a CPU). Dropped tokens are skipped, never set to -inf (this file is built
// with -ffast-math, which assumes no infinities). Without truncation the noise, the scores and
// their maximum take two passes over the row.
struct Sampler {
  int64_t V;
  float temp;
  bool greedy;
  int64_t top_k;  // 0: off
  float top_p;    // >= 1: off

  // scratch per thread (rows are sampled in parallel), reused across calls
  int64_t pick(const float* __restrict__ r, const float* __restrict__ u, float* lp) const {
    thread_local std::vector<float> logp, kth;
    thread_local std::vector<int64_t> order;
    thread_local std::vector<char> keep;
    if (static_cast<int64_t>(logp.size()) < V) { logp.resize(V); kth.resize(V); order.resize(V); keep.resize(V); }
    float top = r[0] / temp;
    for (int64_t v = 1; v < V; ++v) top = std::max(top, r[v] / temp);
    float z = 0.f;
    for (int64_t v = 0; v < V; ++v) z += std::exp(r[v] / temp - top);
    const float logz = std::log(z);  // log-prob of v: (r[v] / temp - top) - logz, as log_softmax computes it
    if (greedy) {
      const int64_t best = first_max(r, V);
      *lp = (r[best] / temp - top) - logz;
      return best;
    }
    float* __restrict__ lg = logp.data();
    for (int64_t v = 0; v < V; ++v) lg[v] = (r[v] / temp - top) - logz;
    if (top_k == 0 && top_p >= 1.f) {  // no truncation: Gumbel-max over every token
      float* __restrict__ score = kth.data();
      for (int64_t v = 0; v < V; ++v) score[v] = lg[v] + gumbel(u[v]);
      const int64_t best = first_max(score, V);
      *lp = lg[best];
      return best;
    }
    std::fill(keep.begin(), keep.begin() + V, 1);
    if (top_k > 0) {
      std::copy_n(logp.begin(), V, kth.begin());
      std::nth_element(kth.begin(), kth.begin() + (top_k - 1), kth.begin() + V, std::greater<float>());
      const float cut = kth[top_k - 1];
      for (int64_t v = 0; v < V; ++v) keep[v] = lg[v] >= cut;
    }
    if (top_p < 1.f) {
      int64_t m = 0;
      for (int64_t v = 0; v < V; ++v) if (keep[v]) order[m++] = v;
      std::sort(order.begin(), order.begin() + m, [&](int64_t a, int64_t b) { return logp[a] > logp[b]; });
      double acc = 0.0;
      for (int64_t i = 0; i < m; ++i) {
        const float e = std::exp(logp[order[i]]);
        acc += e;
        if (static_cast<float>(acc) - e > top_p) keep[order[i]] = 0;
      }
    }
    int64_t best = -1;
    float best_score = 0.f;
    for (int64_t v = 0; v < V; ++v) {  // Gumbel-max over the kept tokens
      if (!keep[v]) continue;
      const float score = lg[v] + gumbel(u[v]);
      if (best < 0 || score > best_score) { best_score = score; best = v; }
    }
    *lp = lg[best];
    return best;
  }
};

// The fused weights as engine.steps passes them: 7 tensors per layer (ln1, Wqkv, bqkv or empty,
// Wo, ln2, Wgate_up, Wdown), and the RoPE table cs (P, D/2, 2).
struct Model {
  const std::vector<torch::Tensor>& layers;
  int64_t L, H, Hkv, D, E;
  float eps;
  const float* cs;
  int64_t P;
  int64_t QKV() const { return (H + 2 * Hkv) * D; }
  int64_t F2() const { return 2 * packed_of(layers[6], E).K; }  // gate and up rows: twice the down projection's input width
};

// Where a layer's keys and values live: row (layer l, cache row c, head h, position t) at
// k + l*k_l + c*k_c + h*k_h + t*k_t (the same for v); T positions per cache row.
struct CacheView {
  float *k, *v;
  int64_t k_l, k_c, k_h, k_t, v_l, v_c, v_h, v_t, T;
  static CacheView of(const torch::Tensor& k, const torch::Tensor& v) {  // (L, rows, Hkv, T, D), rows of D contiguous
    TORCH_CHECK(k.stride(4) == 1 && v.stride(4) == 1 && k.scalar_type() == torch::kFloat32, "cache rows must be contiguous float32");
    return {k.data_ptr<float>(), v.data_ptr<float>(), k.stride(0), k.stride(1), k.stride(2), k.stride(3),
            v.stride(0), v.stride(1), v.stride(2), v.stride(3), k.size(3)};
  }
};

// One pass of every layer over R token rows x (R, E), in place. Row r sits at cache row
// crow[r] (null: r), is rotated to position rpos[r], writes its key/value at position wpos[r]
// and attends to the positions before it there, to its group's prompt prefix if any (a.G > 0:
// prefix pointers and plen set by the caller, per layer offsets kp_l/vp_l), and to itself.
// Work space of `forward_rows` for R rows, made once per call of an operator, not per step.
struct Buffers {
  torch::Tensor h, qkv, att, gu, act;
  Buffers(const Model& m, int64_t R, const torch::TensorOptions& o)
      : h(torch::empty({R, m.E}, o)), qkv(torch::empty({R, m.QKV()}, o)), att(torch::empty({R, m.H * m.D}, o)),
        gu(torch::empty({R, m.F2()}, o)), act(torch::empty({R, m.F2() / 2}, o)) {}
};

void forward_rows(const Model& m, int64_t R, torch::Tensor& x, Buffers& b, const CacheView& c, AttnArgs a, int64_t kp_l,
                  int64_t vp_l, const int64_t* crow, const int64_t* wpos, const int64_t* rpos) {
  const int64_t E = m.E, H = m.H, Hkv = m.Hkv, D = m.D, QKV = m.QKV(), F2 = m.F2(), Fh = F2 / 2;
  torch::Tensor &h = b.h, &qkv = b.qkv, &att = b.att, &gu = b.gu, &act = b.act;
  float* xp = x.data_ptr<float>();
  float* q = qkv.data_ptr<float>();
  a.S = R; a.H = H; a.Hkv = Hkv; a.D = D; a.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  a.q = q; a.q_s = QKV; a.q_h = D;
  a.kn = q + H * D; a.kn_s = QKV; a.kn_h = D;
  a.vn = q + (H + Hkv) * D; a.vn_s = QKV; a.vn_h = D;
  a.Ts = c.T; a.ks_s = c.k_c; a.ks_h = c.k_h; a.ks_t = c.k_t; a.vs_s = c.v_c; a.vs_h = c.v_h; a.vs_t = c.v_t;
  a.slen = wpos; a.row_of = crow;
  a.out = att.data_ptr<float>();
  const float *kp0 = a.kp, *vp0 = a.vp;
  for (int64_t l = 0; l < m.L; ++l) {
    const torch::Tensor* w = &m.layers[7 * l];
    rms_norm(xp, w[0].data_ptr<float>(), m.eps, R, E, h.data_ptr<float>());
    gemm_packed(h.data_ptr<float>(), R, E, packed_of(w[1], QKV), w[2].numel() > 0 ? w[2].data_ptr<float>() : nullptr, false, q, QKV);
    float* kl = c.k + l * c.k_l;
    float* vl = c.v + l * c.v_l;
    rows_for(R, QKV, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* row = q + r * QKV;
        rope(row, H + Hkv, D, m.cs + std::min(rpos[r], m.P - 1) * D);  // q and k heads are adjacent
        const int64_t cr = crow ? crow[r] : r;
        for (int64_t g = 0; g < Hkv; ++g) {
          std::copy_n(row + (H + g) * D, D, kl + cr * c.k_c + g * c.k_h + wpos[r] * c.k_t);
          std::copy_n(row + (H + Hkv + g) * D, D, vl + cr * c.v_c + g * c.v_h + wpos[r] * c.v_t);
        }
      }
    });
    if (a.G > 0) { a.kp = kp0 + l * kp_l; a.vp = vp0 + l * vp_l; }
    a.ks = kl; a.vs = vl;
    attend(a);  // all rows' keys are written first: a prompt row sees the rows before it
    gemm_packed(att.data_ptr<float>(), R, H * D, packed_of(w[3], E), nullptr, true, xp, E);  // residual added in place
    rms_norm(xp, w[4].data_ptr<float>(), m.eps, R, E, h.data_ptr<float>());
    gemm_packed(h.data_ptr<float>(), R, E, packed_of(w[5], F2), nullptr, false, gu.data_ptr<float>(), F2);
    const float* g = gu.data_ptr<float>();
    float* ap = act.data_ptr<float>();
    rows_for(R, Fh, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t f = 0; f < Fh; ++f) {
          const float gv = g[r * F2 + f];
          ap[r * Fh + f] = gv / (1.f + std::exp(-gv)) * g[r * F2 + Fh + f];
        }
    });
    gemm_packed(act.data_ptr<float>(), R, Fh, packed_of(w[6], E), nullptr, true, xp, E);
  }
}

}  // namespace

int64_t decode_steps(torch::Tensor embed, std::vector<torch::Tensor> layers, torch::Tensor norm_w, torch::Tensor lm_head,
                     int64_t n_heads, double eps, torch::Tensor rope_cs, torch::Tensor kp, torch::Tensor vp,
                     torch::Tensor plen, torch::Tensor kv, bool flat, int64_t n, int64_t S, torch::Tensor tokens,
                     torch::Tensor slen, torch::Tensor buf_tok, torch::Tensor buf_lp, torch::Tensor ntok, torch::Tensor done,
                     torch::Tensor reason, int64_t budget, double temperature, bool greedy, int64_t top_k, double top_p, int64_t eos, int64_t max_steps,
                     std::optional<at::Generator> gen) {
  // rope_cs (P, D/2, 2): cos and sin of position p's angles
  // embed (V, E); layers: 7 per layer (ln1, Wqkv, bqkv or empty, Wo, ln2, Wgate_up, Wdown); lm_head (V, E)
  // kp/vp (L, G, Hkv, Tp, D) shared prompts (unused when flat); plen (G,) prompt lengths
  // kv (L, 2, slots, Hkv, T, D): flat: prompt + generated tokens; else generated tokens only
  // tokens, slen (slots,): last sampled ids, tokens generated so far (both advanced here)
  // buf_tok (slots, budget) int64, buf_lp (slots, budget) double, ntok (slots,) int64, done (slots,) bool,
  // reason (slots,) int8: the scheduler's per-slot record (numpy arrays, shared)
  const int64_t L = kv.size(0), Hkv = kv.size(3), T = kv.size(4), D = kv.size(5);
  const int64_t V = embed.size(0), E = embed.size(1), H = n_heads;
  TORCH_CHECK(static_cast<int64_t>(layers.size()) == 7 * L, "decode_steps: 7 tensors per layer");
  TORCH_CHECK(kv.is_contiguous() && kp.is_contiguous() && vp.is_contiguous(), "decode_steps: caches must be contiguous");
  TORCH_CHECK(embed.scalar_type() == torch::kFloat32 && kv.scalar_type() == torch::kFloat32, "decode_steps: float32 only");
  TORCH_CHECK(rope_cs.is_contiguous() && rope_cs.dim() == 3 && rope_cs.size(1) * 2 == kv.size(5), "decode_steps: rope_cs (P, D/2, 2)");
  TORCH_CHECK(S >= 1 && S <= kv.size(2) && S % n == 0 && D % 2 == 0 && D <= 256, "decode_steps: bad shapes");
  for (const auto& t : {tokens, slen, plen, buf_tok, ntok}) TORCH_CHECK(t.scalar_type() == torch::kInt64 && t.is_contiguous());
  TORCH_CHECK(buf_lp.scalar_type() == torch::kFloat64 && done.scalar_type() == torch::kBool && reason.scalar_type() == torch::kChar);
  const int64_t Tp = flat ? 0 : kp.size(3), G = S / n;

  auto opts = embed.options();
  auto x = torch::empty({S, E}, opts), h = torch::empty({S, E}, opts);
  auto logits = torch::empty({S, V}, opts), uniform = torch::empty({S, V}, opts);
  std::vector<int64_t> wpos(S), attended(S), live(S);
  const float* emb = embed.data_ptr<float>();
  const Model m{layers, L, H, Hkv, D, E, static_cast<float>(eps), rope_cs.data_ptr<float>(), rope_cs.size(0)};
  int64_t* tok = tokens.data_ptr<int64_t>();
  int64_t* sl = slen.data_ptr<int64_t>();
  const int64_t* pl = plen.data_ptr<int64_t>();
  int64_t* bt = buf_tok.data_ptr<int64_t>();
  double* bl = buf_lp.data_ptr<double>();
  int64_t* nt = ntok.data_ptr<int64_t>();
  bool* dn = done.data_ptr<bool>();
  int8_t* why = reason.data_ptr<int8_t>();
  const int64_t bstride = buf_tok.stride(0);
  const Sampler sampler{V, greedy ? 1.f : static_cast<float>(std::max(temperature, 1e-5)), greedy, top_k > 0 && top_k < V ? top_k : 0,
                        static_cast<float>(top_p)};
  std::vector<int64_t> picked(S);
  std::vector<float> picked_lp(S);
  const CacheView cache = CacheView::of(kv.select(1, 0), kv.select(1, 1));
  Buffers work(m, S, opts);
  AttnArgs prefix;  // shared prompts: each group's n samples attend to its prompt's first plen positions
  if (!flat) {
    prefix.G = G; prefix.Tp = Tp; prefix.plen = pl; prefix.n = n;  // a live row's group: its slot / n
    prefix.kp = kp.data_ptr<float>(); prefix.kp_s = kp.stride(1); prefix.kp_h = kp.stride(2); prefix.kp_t = kp.stride(3);
    prefix.vp = vp.data_ptr<float>(); prefix.vp_s = vp.stride(1); prefix.vp_h = vp.stride(2); prefix.vp_t = vp.stride(3);
  }

  int64_t steps = 0;
  while (steps < max_steps) {
    // Only live slots are computed: finished samples of a group still waiting for its slowest
    // one cost nothing (row r is slot live[r], in the cache row of that slot and its group's prefix).
    // RoPE at prompt length + generated; the new K/V go at wpos.
    int64_t R = 0;
    for (int64_t s = 0; s < S; ++s) {
      if (dn[s]) continue;
      const int64_t pos = (flat ? pl[s] : pl[s / n]) + sl[s];
      live[R] = s;
      attended[R] = pos;
      wpos[R] = std::min<int64_t>(flat ? pos : sl[s], T - 1);
      ++R;
    }
    if (R == 0) break;
    float* xp = x.data_ptr<float>();
    for (int64_t r = 0; r < R; ++r) std::copy_n(emb + tok[live[r]] * E, E, xp + r * E);
    forward_rows(m, R, x, work, cache, prefix, flat ? 0 : kp.stride(0), flat ? 0 : vp.stride(0), live.data(), wpos.data(),
                 attended.data());
    rms_norm(xp, norm_w.data_ptr<float>(), static_cast<float>(eps), R, E, h.data_ptr<float>());
    gemm_packed(h.data_ptr<float>(), R, E, packed_of(lm_head, V), nullptr, false, logits.data_ptr<float>(), V);
    float* u = uniform.data_ptr<float>();
    if (!greedy) fill_uniform(gen, u, S * V);  // what torch.rand((S, V), generator=gen) draws: slot s uses row s
    const float* lg = logits.data_ptr<float>();
    pool_for(R, R * V < (int64_t{1} << 16) ? R : 1, [&](int64_t r0, int64_t r1) {  // rows in parallel (toy sizes: one thread)
      for (int64_t r = r0; r < r1; ++r) {
        picked[live[r]] = sampler.pick(lg + r * V, u + live[r] * V, &picked_lp[live[r]]);
      }
    });
    bool group_done = false;
    for (int64_t s = 0; s < S; ++s) sl[s] += 1;  // every slot's clock advances, as the scheduler's host copy does
    for (int64_t r = 0; r < R; ++r) {
      const int64_t s = live[r];
      const float lp = picked_lp[s];
      const int64_t best = picked[s];
      tok[s] = best;
      const int64_t col = nt[s]++;
      bt[s * bstride + col] = best;
      bl[s * bstride + col] = static_cast<double>(lp);
      int8_t code = nt[s] >= budget ? kLength : 0;
      if (eos >= 0 && best == eos) code = kEos;
      if (code) { why[s] = code; dn[s] = true; }
    }
    ++steps;
    for (int64_t g0 = 0; g0 < S && !group_done; g0 += n) {  // a whole group finished: the scheduler refills it
      bool all = true;
      for (int64_t j = 0; j < n; ++j) all = all && dn[g0 + j];
      group_done = all;
    }
    if (group_done) break;
  }
  return steps;
}

torch::Tensor prefill_rows(torch::Tensor embed, std::vector<torch::Tensor> layers, torch::Tensor norm_w, torch::Tensor lm_head,
                           int64_t n_heads, double eps, torch::Tensor rope_cs, torch::Tensor k_cache, torch::Tensor v_cache,
                           torch::Tensor tokens, torch::Tensor crow, torch::Tensor pos, torch::Tensor last) {
  // k_cache, v_cache (L, rows, Hkv, T, D): where the prompts' keys/values go (engine.steps: the flat
  // cache, or the shared-prompt prefix cache); tokens, crow, pos (R,): each prompt token, its cache
  // row and position, a prompt's tokens in order; last (k,): the rows whose logits are returned (k, V)
  const int64_t L = k_cache.size(0), Hkv = k_cache.size(2), D = k_cache.size(4), R = tokens.size(0);
  const int64_t V = embed.size(0), E = embed.size(1);
  TORCH_CHECK(static_cast<int64_t>(layers.size()) == 7 * L && R >= 1, "prefill_rows: 7 tensors per layer, >= 1 token");
  TORCH_CHECK(embed.scalar_type() == torch::kFloat32 && rope_cs.is_contiguous() && rope_cs.size(1) * 2 == D, "prefill_rows: bad inputs");
  for (const auto& t : {tokens, crow, pos, last}) TORCH_CHECK(t.scalar_type() == torch::kInt64 && t.is_contiguous(), "prefill_rows: int64 indices");
  const int64_t* tk = tokens.data_ptr<int64_t>();
  const int64_t* ps = pos.data_ptr<int64_t>();
  for (int64_t r = 0; r < R; ++r) TORCH_CHECK(tk[r] >= 0 && tk[r] < V && ps[r] >= 0 && ps[r] < k_cache.size(3), "prefill_rows: token or position out of range");
  const Model m{layers, L, n_heads, Hkv, D, E, static_cast<float>(eps), rope_cs.data_ptr<float>(), rope_cs.size(0)};
  auto x = torch::empty({R, E}, embed.options());
  const float* emb = embed.data_ptr<float>();
  float* xp = x.data_ptr<float>();
  for (int64_t r = 0; r < R; ++r) std::copy_n(emb + tk[r] * E, E, xp + r * E);
  Buffers work(m, R, embed.options());
  forward_rows(m, R, x, work, CacheView::of(k_cache, v_cache), AttnArgs{}, 0, 0, crow.data_ptr<int64_t>(), ps, ps);
  auto xl = x.index_select(0, last), h = torch::empty_like(xl), logits = torch::empty({last.size(0), V}, embed.options());
  rms_norm(xl.data_ptr<float>(), norm_w.data_ptr<float>(), static_cast<float>(eps), last.size(0), E, h.data_ptr<float>());
  gemm_packed(h.data_ptr<float>(), last.size(0), E, packed_of(lm_head, V), nullptr, false, logits.data_ptr<float>(), V);
  return logits;
}

TORCH_LIBRARY_FRAGMENT(scalinglab, m) {
  m.def("decode_steps(Tensor embed, Tensor[] layers, Tensor norm_w, Tensor lm_head, int n_heads, float eps, "
        "Tensor rope_cs, Tensor kp, Tensor vp, Tensor plen, Tensor(a!) kv, bool flat, int n, int S, Tensor(b!) tokens, "
        "Tensor(c!) slen, Tensor(d!) buf_tok, Tensor(e!) buf_lp, Tensor(f!) ntok, Tensor(g!) done, Tensor(h!) reason, "
        "int budget, float temperature, bool greedy, int top_k, float top_p, int eos, int max_steps, Generator? generator) -> int");
  m.def("prefill_rows(Tensor embed, Tensor[] layers, Tensor norm_w, Tensor lm_head, int n_heads, float eps, Tensor rope_cs, "
        "Tensor(a!) k_cache, Tensor(b!) v_cache, Tensor tokens, Tensor crow, Tensor pos, Tensor last) -> Tensor");
}

TORCH_LIBRARY_IMPL(scalinglab, CPU, m) {
  m.impl("decode_steps", &decode_steps);
  m.impl("prefill_rows", &prefill_rows);
}
