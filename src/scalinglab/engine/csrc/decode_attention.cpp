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
  const int64_t S = q.size(0), H = q.size(1), D = q.size(2), Hkv = ks.size(1), Ts = ks.size(2);
  const int64_t G = kp.size(0), Tp = G > 0 ? kp.size(2) : 0;
  TORCH_CHECK(H % Hkv == 0 && ks.size(3) == D && (G == 0 || S % G == 0), "decode_attention: shape mismatch");
  TORCH_CHECK(D <= 256, "decode_attention: head_dim > 256");
  const int64_t rep = H / Hkv, n = G > 0 ? S / G : 1;
  auto out = torch::empty({S, H, D}, q.options());
  const float* qp = q.data_ptr<float>();
  const float* knp = k_new.data_ptr<float>();
  const float* vnp = v_new.data_ptr<float>();
  const int64_t* pl = plen.data_ptr<int64_t>();
  const int64_t* sl = slen.data_ptr<int64_t>();
  float* op = out.data_ptr<float>();
  const float sc = static_cast<float>(scale);
  at::parallel_for(0, S * Hkv, 8, [&](int64_t begin, int64_t end) {
    std::vector<float> w(Tp + Ts + 1);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t s = i / Hkv, g = i % Hkv;
      Segment seg[2];
      int nseg = 0;
      if (G > 0) {
        const int64_t grp = s / n;
        seg[nseg++] = {kp.data_ptr<float>() + grp * kp.stride(0) + g * kp.stride(1),
                       vp.data_ptr<float>() + grp * vp.stride(0) + g * vp.stride(1), kp.stride(2), vp.stride(2),
                       std::min<int64_t>(std::max<int64_t>(pl[grp], 0), Tp)};
      }
      seg[nseg++] = {ks.data_ptr<float>() + s * ks.stride(0) + g * ks.stride(1),
                     vs.data_ptr<float>() + s * vs.stride(0) + g * vs.stride(1), ks.stride(2), vs.stride(2),
                     std::min<int64_t>(std::max<int64_t>(sl[s], 0), Ts)};
      const float* qi = qp + s * q.stride(0) + g * rep * q.stride(1);
      float* oi = op + (s * H + g * rep) * D;
      const float* kn = knp + s * k_new.stride(0) + g * k_new.stride(1);
      const float* vn = vnp + s * v_new.stride(0) + g * v_new.stride(1);
      switch (D) {
        case 32: attend_heads<32>(qi, q.stride(1), seg, nseg, kn, vn, rep, D, sc, w.data(), oi); break;
        case 64: attend_heads<64>(qi, q.stride(1), seg, nseg, kn, vn, rep, D, sc, w.data(), oi); break;
        case 128: attend_heads<128>(qi, q.stride(1), seg, nseg, kn, vn, rep, D, sc, w.data(), oi); break;
        default: attend_heads<0>(qi, q.stride(1), seg, nseg, kn, vn, rep, D, sc, w.data(), oi);
      }
    }
  });
  return out;
}

// Registered with the dispatcher (not as a Python module), so a call from Python or from a
// compiled graph costs a dispatcher hop, not a Python wrapper.
TORCH_LIBRARY(scalinglab, m) {
  m.def("decode_attention(Tensor q, Tensor kp, Tensor vp, Tensor plen, Tensor ks, Tensor vs, Tensor slen, "
        "Tensor k_new, Tensor v_new, float scale) -> Tensor");
}

TORCH_LIBRARY_IMPL(scalinglab, CPU, m) { m.impl("decode_attention", &decode_attention); }
