// Decode attention on the CPU: one query token per sequence against its cached keys/values.
//
// A sequence s attends to up to three pieces, in this order: its group's shared prompt
// (prefix cache, positions < plen[s / n]; absent when the prefix cache is empty), its own
// cached tokens (positions < slen[s]) and its new token (k_new, v_new, not in any cache):
//   scores = scale · q[s, h] · keys,   out[s, h] = softmax(scores) · values
// For every sequence and kv head the rep = H / Hkv query heads sharing it (grouped-query
// attention) are handled in turn while its rows are hot in cache.
// The head dimension is a template parameter for the usual sizes (32, 64, 128), so the
// inner loops are fixed-length and fully vectorised. Sequence/head pairs are spread over
// threads. At decode sizes (2 × 32 by 32 × T per head group) batched matmuls are mostly
// call overhead; this loop is bound by reading the cache.
#include <torch/extension.h>
#include <torch/library.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <vector>

#include "attention.h"
#include "pool.h"

namespace {

struct Segment {  // `len` cached rows of one head: row t at base + t * stride
  const float* k;
  const float* v;
  int64_t kstride, vstride, len;
};

template <int FixedD>
void attend_heads(const float* __restrict__ q, int64_t qstride, const Segment* seg, int nseg, const float* __restrict__ kn,
                  const float* __restrict__ vn, int64_t rep, int64_t dyn_d, float scale, float* __restrict__ w,
                  float* __restrict__ out) {
  constexpr int64_t kMaxD = FixedD > 0 ? FixedD : 256;
  const int64_t D = FixedD > 0 ? FixedD : dyn_d;
  for (int64_t r = 0; r < rep; ++r) {
    float qr[kMaxD];  // this head's query, held in registers
    for (int64_t d = 0; d < D; ++d) qr[d] = q[r * qstride + d] * scale;
    int64_t len = 0;
    for (int i = 0; i < nseg; ++i) {
      const float* __restrict__ kb = seg[i].k;
      const int64_t ks = seg[i].kstride, n = seg[i].len;
      int64_t t = 0;
      for (; t + 4 <= n; t += 4) {  // four independent dot products: their final sums overlap
        const float *k0 = kb + t * ks, *k1 = k0 + ks, *k2 = k1 + ks, *k3 = k2 + ks;
        float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
        for (int64_t d = 0; d < D; ++d) {
          a0 += qr[d] * k0[d];
          a1 += qr[d] * k1[d];
          a2 += qr[d] * k2[d];
          a3 += qr[d] * k3[d];
        }
        w[len] = a0; w[len + 1] = a1; w[len + 2] = a2; w[len + 3] = a3;
        len += 4;
      }
      for (; t < n; ++t) {
        const float* __restrict__ kt = kb + t * ks;
        float acc = 0.f;
        for (int64_t d = 0; d < D; ++d) acc += qr[d] * kt[d];
        w[len++] = acc;
      }
    }
    float acc = 0.f;
    for (int64_t d = 0; d < D; ++d) acc += qr[d] * kn[d];
    w[len++] = acc;
    float top = w[0];
    for (int64_t t = 1; t < len; ++t) top = std::max(top, w[t]);
    float z = 0.f;
    for (int64_t t = 0; t < len; ++t) { w[t] = std::exp(w[t] - top); z += w[t]; }
    float o[kMaxD] = {0.f};  // the weighted sum of values, in registers
    int64_t at = 0;
    for (int i = 0; i < nseg; ++i)
      for (int64_t t = 0; t < seg[i].len; ++t) {
        const float* __restrict__ vt = seg[i].v + t * seg[i].vstride;
        const float a = w[at++];
        for (int64_t d = 0; d < D; ++d) o[d] += a * vt[d];
      }
    const float a = w[at];
    for (int64_t d = 0; d < D; ++d) o[d] += a * vn[d];
    const float inv = 1.f / z;
    for (int64_t d = 0; d < D; ++d) out[r * D + d] = o[d] * inv;
  }
}

}  // namespace

void attend(const AttnArgs& a) {
  const int64_t rep = a.H / a.Hkv, n = a.n > 0 ? a.n : a.G > 0 ? a.S / a.G : 1;
  const int64_t items = a.S * a.Hkv;
  const bool small = items * (a.Tp + a.Ts + 1) * a.D * (a.H / a.Hkv) < (int64_t{1} << 18);  // toy sizes: one thread
  pool_for(items, small ? items : std::max<int64_t>(1, items / (4 * at::get_num_threads())), [&](int64_t begin, int64_t end) {
    std::vector<float> w(a.Tp + a.Ts + 1);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t s = i / a.Hkv, g = i % a.Hkv;
      Segment seg[2];
      int nseg = 0;
      if (a.G > 0) {
        const int64_t grp = (a.n > 0 && a.row_of ? a.row_of[s] : s) / n;
        seg[nseg++] = {a.kp + grp * a.kp_s + g * a.kp_h, a.vp + grp * a.vp_s + g * a.vp_h, a.kp_t, a.vp_t,
                       std::min<int64_t>(std::max<int64_t>(a.plen[grp], 0), a.Tp)};
      }
      const int64_t row = a.row_of ? a.row_of[s] : s;
      seg[nseg++] = {a.ks + row * a.ks_s + g * a.ks_h, a.vs + row * a.vs_s + g * a.vs_h, a.ks_t, a.vs_t,
                     std::min<int64_t>(std::max<int64_t>(a.slen[s], 0), a.Ts)};
      const float* qi = a.q + s * a.q_s + g * rep * a.q_h;
      float* oi = a.out + (s * a.H + g * rep) * a.D;
      const float* kn = a.kn + s * a.kn_s + g * a.kn_h;
      const float* vn = a.vn + s * a.vn_s + g * a.vn_h;
      switch (a.D) {
        case 32: attend_heads<32>(qi, a.q_h, seg, nseg, kn, vn, rep, a.D, a.scale, w.data(), oi); break;
        case 64: attend_heads<64>(qi, a.q_h, seg, nseg, kn, vn, rep, a.D, a.scale, w.data(), oi); break;
        case 128: attend_heads<128>(qi, a.q_h, seg, nseg, kn, vn, rep, a.D, a.scale, w.data(), oi); break;
        default: attend_heads<0>(qi, a.q_h, seg, nseg, kn, vn, rep, a.D, a.scale, w.data(), oi);
      }
    }
  });
}

torch::Tensor decode_attention(torch::Tensor q, torch::Tensor kp, torch::Tensor vp, torch::Tensor plen, torch::Tensor ks,
                               torch::Tensor vs, torch::Tensor slen, torch::Tensor k_new, torch::Tensor v_new, double scale) {
  // q (S, H, D); prefix kp, vp (G, Hkv, Tp, D) with G = 0 or S / n, plen (G,); suffix ks, vs
  // (S, Hkv, Ts, D), slen (S,); k_new, v_new (S, Hkv, D). Cache rows must be contiguous.
  for (const auto& t : {q, kp, vp, ks, vs, k_new, v_new})
    TORCH_CHECK(t.scalar_type() == torch::kFloat32, "decode_attention: float32 only");
  TORCH_CHECK(kp.stride(3) == 1 && vp.stride(3) == 1 && ks.stride(3) == 1 && vs.stride(3) == 1,
              "decode_attention: cache rows must be contiguous");
  // q, k_new, v_new may be strided views (e.g. slices of a fused qkv projection): only rows must be contiguous
  if (q.stride(2) != 1) q = q.contiguous();
  if (k_new.stride(2) != 1) k_new = k_new.contiguous();
  if (v_new.stride(2) != 1) v_new = v_new.contiguous();
  plen = plen.to(torch::kInt64).contiguous(); slen = slen.to(torch::kInt64).contiguous();
  AttnArgs a;
  a.S = q.size(0); a.H = q.size(1); a.D = q.size(2); a.Hkv = ks.size(1); a.Ts = ks.size(2);
  a.G = kp.size(0); a.Tp = a.G > 0 ? kp.size(2) : 0;
  TORCH_CHECK(a.H % a.Hkv == 0 && ks.size(3) == a.D && (a.G == 0 || a.S % a.G == 0), "decode_attention: shape mismatch");
  TORCH_CHECK(a.D <= 256, "decode_attention: head_dim > 256");
  auto out = torch::empty({a.S, a.H, a.D}, q.options());
  a.q = q.data_ptr<float>(); a.q_s = q.stride(0); a.q_h = q.stride(1);
  a.kp = kp.data_ptr<float>(); a.kp_s = kp.stride(0); a.kp_h = kp.stride(1); a.kp_t = kp.stride(2);
  a.vp = vp.data_ptr<float>(); a.vp_s = vp.stride(0); a.vp_h = vp.stride(1); a.vp_t = vp.stride(2);
  a.ks = ks.data_ptr<float>(); a.ks_s = ks.stride(0); a.ks_h = ks.stride(1); a.ks_t = ks.stride(2);
  a.vs = vs.data_ptr<float>(); a.vs_s = vs.stride(0); a.vs_h = vs.stride(1); a.vs_t = vs.stride(2);
  a.kn = k_new.data_ptr<float>(); a.kn_s = k_new.stride(0); a.kn_h = k_new.stride(1);
  a.vn = v_new.data_ptr<float>(); a.vn_s = v_new.stride(0); a.vn_h = v_new.stride(1);
  a.plen = plen.data_ptr<int64_t>(); a.slen = slen.data_ptr<int64_t>();
  a.out = out.data_ptr<float>(); a.scale = static_cast<float>(scale);
  attend(a);
  return out;
}

// Registered with the dispatcher (not as a Python module), so a call from Python or from a
// compiled graph costs a dispatcher hop, not a Python wrapper.
TORCH_LIBRARY(scalinglab, m) {
  m.def("decode_attention(Tensor q, Tensor kp, Tensor vp, Tensor plen, Tensor ks, Tensor vs, Tensor slen, "
        "Tensor k_new, Tensor v_new, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(scalinglab, CPU, m) { m.impl("decode_attention", &decode_attention); }
