// Matrix products against pre-packed weights: out = x · W^T (+ bias or + out), see gemm.h.
//
// W (N, K) is packed once (engine.steps) into panels of 16 output columns, each panel K
// rows of 16 contiguous values, so a panel streams through memory in order and no call
// re-packs it (ATen's MKL GEMM copies the whole weight into its own panels on every call).
// One register tile is R <= 6 rows of x by the 16 columns of one panel: 12 AVX2 accumulators,
// per k two loads of the panel, R broadcasts of x and 2R FMAs. With AVX-512 (-march=native on a
// CPU that has it) a tile is R <= 12 rows by two adjacent panels: 24 zmm accumulators. The tile holds the whole K
// (the panel stays in L2 while the rows of x pass over it), so there is no K blocking and
// every output is written once. Threads take disjoint runs of panels.
//
// bfloat16 weights (the upper 16 bits of a float32) are widened in registers (zero-extend,
// shift left 16) and multiplied in float32: on a CPU without bf16 dot products this halves
// the bytes a matrix-vector product streams, at float32 arithmetic. A tile of one
// row carries two accumulator sets (even and odd k), so the FMA latency does not bound the
// matrix-vector product below the memory bandwidth; every other tile sums k in order.
// Without AVX2 (the build is -march=native) the same loops run in scalar code.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "gemm.h"
#include "pool.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#define SL_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SL_AVX2 1
#endif

namespace {

#ifdef SL_AVX512
constexpr int64_t kNR = 16, kMR = 12;  // one zmm register per row of a tile: 12 accumulators
#else
constexpr int64_t kNR = 16, kMR = 6;  // two ymm registers per row: 12 accumulators
#endif

#ifdef SL_AVX512
// AVX-512 (where -march=native has it): one panel row of 16 columns is one register
inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

template <int R, typename BT>
void tile(const float* __restrict__ x, int64_t ldx, const BT* __restrict__ b, int64_t K, float* __restrict__ c, int64_t ldc,
          bool load) {
  __m512 acc[R];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) acc[r] = load ? _mm512_loadu_ps(c + r * ldc) : _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    const __m512 bk = load16(b + k * kNR);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(x[r * ldx + k]), bk, acc[r]);
  }
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(c + r * ldc, acc[r]);
}

// one row (a matrix-vector product): two accumulators, over even and over odd k, so the FMA latency
// does not bound it below the memory bandwidth; the same sums in the same order as the AVX2 tile1,
// so both kernels give bit-identical results (every other tile sums k in order in both)
template <typename BT>
void tile1(const float* __restrict__ x, const BT* __restrict__ b, int64_t K, float* __restrict__ c, bool load) {
  __m512 a0 = load ? _mm512_loadu_ps(c) : _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + 2 <= K; k += 2) {
    a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[k]), load16(b + k * kNR), a0);
    a1 = _mm512_fmadd_ps(_mm512_set1_ps(x[k + 1]), load16(b + (k + 1) * kNR), a1);
  }
  for (; k < K; ++k) a0 = _mm512_fmadd_ps(_mm512_set1_ps(x[k]), load16(b + k * kNR), a0);
  _mm512_storeu_ps(c, _mm512_add_ps(a0, a1));
}

// two adjacent full panels (32 columns) at once: per k 2 panel loads and R broadcasts feed 2R FMAs,
// where one panel's tile issues R + 1 loads for R FMAs (the load ports, not the FMAs, bound it)
template <int R, typename BT>
void tile2(const float* __restrict__ x, int64_t ldx, const BT* __restrict__ b0, const BT* __restrict__ b1, int64_t K,
           float* __restrict__ c, int64_t ldc, bool load) {
  __m512 a0[R], a1[R];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    a0[r] = load ? _mm512_loadu_ps(c + r * ldc) : _mm512_setzero_ps();
    a1[r] = load ? _mm512_loadu_ps(c + r * ldc + kNR) : _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < K; ++k) {
    const __m512 bk0 = load16(b0 + k * kNR), bk1 = load16(b1 + k * kNR);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      const __m512 xr = _mm512_set1_ps(x[r * ldx + k]);
      a0[r] = _mm512_fmadd_ps(xr, bk0, a0[r]);
      a1[r] = _mm512_fmadd_ps(xr, bk1, a1[r]);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_ps(c + r * ldc, a0[r]);
    _mm512_storeu_ps(c + r * ldc + kNR, a1[r]);
  }
}

template <typename BT>
void tile2_rows(int R, const float* x, int64_t ldx, const BT* b0, const BT* b1, int64_t K, float* c, int64_t ldc, bool load) {
  switch (R) {
    case 12: tile2<12>(x, ldx, b0, b1, K, c, ldc, load); break;
    case 11: tile2<11>(x, ldx, b0, b1, K, c, ldc, load); break;
    case 10: tile2<10>(x, ldx, b0, b1, K, c, ldc, load); break;
    case 9: tile2<9>(x, ldx, b0, b1, K, c, ldc, load); break;
    case 8: tile2<8>(x, ldx, b0, b1, K, c, ldc, load); break;
    case 7:  // as 6 + 1, the AVX2 kernel's split of 7 rows: the last row sums even and odd k apart
      tile2<6>(x, ldx, b0, b1, K, c, ldc, load);
      tile1(x + 6 * ldx, b0, K, c + 6 * ldc, load);
      tile1(x + 6 * ldx, b1, K, c + 6 * ldc + kNR, load);
      break;
    case 6: tile2<6>(x, ldx, b0, b1, K, c, ldc, load); break;
    case 5: tile2<5>(x, ldx, b0, b1, K, c, ldc, load); break;
    case 4: tile2<4>(x, ldx, b0, b1, K, c, ldc, load); break;
    default: tile2<3>(x, ldx, b0, b1, K, c, ldc, load);  // R >= 3: rows 1-2 take the unpaired tiles
  }
}
#elif defined(SL_AVX2)
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}

// c (R rows x 16, row stride ldc) = init + x (R rows, stride ldx) · b (K x 16); init: c itself (load) or zero
template <int R, typename BT>
void tile(const float* __restrict__ x, int64_t ldx, const BT* __restrict__ b, int64_t K, float* __restrict__ c, int64_t ldc,
          bool load) {
  __m256 c0[R], c1[R];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    c0[r] = load ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();
    c1[r] = load ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < K; ++k) {
    const __m256 b0 = load8(b + k * kNR), b1 = load8(b + k * kNR + 8);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 xr = _mm256_broadcast_ss(x + r * ldx + k);
      c0[r] = _mm256_fmadd_ps(xr, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(xr, b1, c1[r]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(c + r * ldc, c0[r]);
    _mm256_storeu_ps(c + r * ldc + 8, c1[r]);
  }
}

// one row (a matrix-vector product): four accumulators over k, k+1, so the FMA latency does not bound it below the memory bandwidth
template <typename BT>
void tile1(const float* __restrict__ x, const BT* __restrict__ b, int64_t K, float* __restrict__ c, bool load) {
  __m256 a0 = load ? _mm256_loadu_ps(c) : _mm256_setzero_ps(), a1 = load ? _mm256_loadu_ps(c + 8) : _mm256_setzero_ps();
  __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 2 <= K; k += 2) {
    const __m256 x0 = _mm256_broadcast_ss(x + k), x1 = _mm256_broadcast_ss(x + k + 1);
    a0 = _mm256_fmadd_ps(x0, load8(b + k * kNR), a0);
    a1 = _mm256_fmadd_ps(x0, load8(b + k * kNR + 8), a1);
    a2 = _mm256_fmadd_ps(x1, load8(b + (k + 1) * kNR), a2);
    a3 = _mm256_fmadd_ps(x1, load8(b + (k + 1) * kNR + 8), a3);
  }
  for (; k < K; ++k) {
    const __m256 x0 = _mm256_broadcast_ss(x + k);
    a0 = _mm256_fmadd_ps(x0, load8(b + k * kNR), a0);
    a1 = _mm256_fmadd_ps(x0, load8(b + k * kNR + 8), a1);
  }
  _mm256_storeu_ps(c, _mm256_add_ps(a0, a2));
  _mm256_storeu_ps(c + 8, _mm256_add_ps(a1, a3));
}
#else
inline float widen(float v) { return v; }
inline float widen(uint16_t v) { uint32_t u = static_cast<uint32_t>(v) << 16; float f; std::memcpy(&f, &u, 4); return f; }

template <int R, typename BT>
void tile(const float* x, int64_t ldx, const BT* b, int64_t K, float* c, int64_t ldc, bool load) {
  float acc[R][kNR];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < kNR; ++j) acc[r][j] = load ? c[r * ldc + j] : 0.f;
  for (int64_t k = 0; k < K; ++k)
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < kNR; ++j) acc[r][j] += x[r * ldx + k] * widen(b[k * kNR + j]);
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < kNR; ++j) c[r * ldc + j] = acc[r][j];
}
template <typename BT>
void tile1(const float* x, const BT* b, int64_t K, float* c, bool load) { tile<1>(x, 0, b, K, c, 0, load); }
#endif

template <typename BT>
void tile_rows(int R, const float* x, int64_t ldx, const BT* b, int64_t K, float* c, int64_t ldc, bool load) {
  switch (R) {
#ifdef SL_AVX512
    case 12: tile<12>(x, ldx, b, K, c, ldc, load); break;
    case 11: tile<11>(x, ldx, b, K, c, ldc, load); break;
    case 10: tile<10>(x, ldx, b, K, c, ldc, load); break;
    case 9: tile<9>(x, ldx, b, K, c, ldc, load); break;
    case 8: tile<8>(x, ldx, b, K, c, ldc, load); break;
    case 7:  // as 6 + 1, like the AVX2 kernel (see tile1)
      tile<6>(x, ldx, b, K, c, ldc, load);
      tile1(x + 6 * ldx, b, K, c + 6 * ldc, load);
      break;
#endif
    case 6: tile<6>(x, ldx, b, K, c, ldc, load); break;
    case 5: tile<5>(x, ldx, b, K, c, ldc, load); break;
    case 4: tile<4>(x, ldx, b, K, c, ldc, load); break;
    case 3: tile<3>(x, ldx, b, K, c, ldc, load); break;
    case 2: tile<2>(x, ldx, b, K, c, ldc, load); break;
    default: tile1(x, b, K, c, load);
  }
}

template <typename BT>
void gemm_t(const float* x, int64_t M, int64_t ldx, const BT* w, int64_t N, int64_t K, const float* bias, bool accumulate,
            float* out, int64_t ldo) {
  const int64_t P = (N + kNR - 1) / kNR;
  // chunks of panels claimed one by one (pool.h): about 4 per thread, so a late thread costs little
  // (one chunk, in this thread, below about 16 us of work: toy widths)
  const int64_t chunk = M * N * K < (int64_t{1} << 19) ? P : std::max<int64_t>(1, P / (4 * at::get_num_threads()));
  pool_for(P, chunk, [&](int64_t p0, int64_t p1) {
    float edge[kMR * kNR];
    for (int64_t p = p0; p < p1; ++p) {
      const BT* b = w + p * K * kNR;
      const int64_t n0 = p * kNR, nv = std::min(kNR, N - n0);
#ifdef SL_AVX512
      if (M >= 3 && p + 1 < p1 && n0 + 2 * kNR <= N) {  // two full panels; 1-2 rows stay bandwidth-bound tiles
        for (int64_t m0 = 0; m0 < M; m0 += kMR) {
          const int R = static_cast<int>(std::min(kMR, M - m0));
          float* c = out + m0 * ldo + n0;
          if (bias)
            for (int r = 0; r < R; ++r)
              for (int64_t j = 0; j < 2 * kNR; ++j) c[r * ldo + j] = (accumulate ? c[r * ldo + j] : 0.f) + bias[n0 + j];
          const bool load = accumulate || bias != nullptr;
          if (R <= 2) {  // the same tiles as unpaired panels: a result never depends on the pairing
            tile_rows(R, x + m0 * ldx, ldx, b, K, c, ldo, load);
            tile_rows(R, x + m0 * ldx, ldx, b + K * kNR, K, c + kNR, ldo, load);
          } else {
            tile2_rows(R, x + m0 * ldx, ldx, b, b + K * kNR, K, c, ldo, load);
          }
        }
        ++p;
        continue;
      }
#endif
      for (int64_t m0 = 0; m0 < M; m0 += kMR) {
        const int R = static_cast<int>(std::min(kMR, M - m0));
        const bool full = nv == kNR;
        float* c = full ? out + m0 * ldo + n0 : edge;
        const int64_t ldc = full ? ldo : kNR;
        const bool load = accumulate || bias != nullptr;
        if (load)
          for (int r = 0; r < R; ++r)
            for (int64_t j = 0; j < kNR; ++j)
              if (!full || bias) c[r * ldc + j] = j < nv ? (accumulate ? out[(m0 + r) * ldo + n0 + j] : 0.f) + (bias ? bias[n0 + j] : 0.f) : 0.f;
        tile_rows(R, x + m0 * ldx, ldx, b, K, c, ldc, load);
        if (!full)
          for (int r = 0; r < R; ++r) std::copy_n(edge + r * kNR, nv, out + (m0 + r) * ldo + n0);
      }
    }
  });
}

}  // namespace

void gemm_packed(const float* x, int64_t M, int64_t ldx, const PackedW& w, const float* bias, bool accumulate, float* out,
                 int64_t ldo) {
  if (M <= 0) return;
  if (w.bf16)
    gemm_t(x, M, ldx, static_cast<const uint16_t*>(w.data), w.N, w.K, bias, accumulate, out, ldo);
  else
    gemm_t(x, M, ldx, static_cast<const float*>(w.data), w.N, w.K, bias, accumulate, out, ldo);
}

PackedW packed_of(const torch::Tensor& wp, int64_t N) {
  TORCH_CHECK(wp.dim() == 3 && wp.size(2) == kNR && wp.is_contiguous() && wp.size(0) * kNR >= N,
              "packed weight: (ceil(N/16), K, 16) contiguous");
  TORCH_CHECK(wp.scalar_type() == torch::kFloat32 || wp.scalar_type() == torch::kBFloat16, "packed weight: float32 or bfloat16");
  return {wp.data_ptr(), wp.scalar_type() == torch::kBFloat16, N, wp.size(1)};
}

// x (M, K) float32 · W^T (+ bias) for W packed as (ceil(N/16), K, 16): the operator tests and benchmarks call
torch::Tensor linear_packed(torch::Tensor x, torch::Tensor wp, int64_t N, std::optional<torch::Tensor> bias) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32 && x.stride(1) == 1 && x.size(1) == wp.size(1),
              "linear_packed: x (M, K) float32, rows contiguous");
  const PackedW w = packed_of(wp, N);
  auto out = torch::empty({x.size(0), N}, x.options());
  torch::Tensor bc = bias && bias->numel() ? bias->contiguous() : torch::Tensor();
  const float* b = bc.defined() ? bc.data_ptr<float>() : nullptr;
  gemm_packed(x.data_ptr<float>(), x.size(0), x.stride(0), w, b, false, out.data_ptr<float>(), N);
  return out;
}

namespace {
template <typename S, typename D>
void pack_t(const std::vector<const S*>& row_ptr, int64_t K, D* out) {
  const int64_t P = static_cast<int64_t>(row_ptr.size()) / kNR;
  const std::vector<S> zeros(K, S(0.f));  // what a missing row (past N) reads
  pool_for(P, std::max<int64_t>(1, P / (8 * at::get_num_threads())), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      D* panel = out + p * K * kNR;
      const S* src[kNR];
      for (int64_t j = 0; j < kNR; ++j) src[j] = row_ptr[p * kNR + j] ? row_ptr[p * kNR + j] : zeros.data();
      for (int64_t k = 0; k < K; ++k)  // one output line at a time, 16 rows read in order
        for (int64_t j = 0; j < kNR; ++j) panel[k * kNR + j] = D(static_cast<float>(src[j][k]));
    }
  });
}
}  // namespace

// The packed layout of gemm.h for the matrix whose row i is row rows[i] of cat(parts) (each
// part (n_p, K), float32 or bfloat16, rows contiguous), in `dtype` (float32, or bfloat16 rounded
// to nearest even, as Tensor.to rounds). One pass, spread over the pool: this replaces
// torch.cat + index + transpose + contiguous, which cost a third of a second for SmolLM2's
// 540 MB at start-up (two strided copies and a fused copy kept besides).
torch::Tensor pack_rows(std::vector<torch::Tensor> parts, torch::Tensor rows, c10::ScalarType dtype) {
  TORCH_CHECK(!parts.empty() && rows.dim() == 1 && rows.scalar_type() == torch::kInt64, "pack_rows: parts, rows (N,) int64");
  TORCH_CHECK(dtype == torch::kFloat32 || dtype == torch::kBFloat16, "pack_rows: dtype float32 or bfloat16");
  const auto st = parts[0].scalar_type();
  const int64_t K = parts[0].size(1);
  std::vector<const char*> base;
  std::vector<int64_t> start{0};
  for (auto& t : parts) {
    TORCH_CHECK(t.dim() == 2 && t.size(1) == K && t.scalar_type() == st && t.stride(1) == 1, "pack_rows: parts (n, K), one dtype, rows contiguous");
    TORCH_CHECK(st == torch::kFloat32 || st == torch::kBFloat16, "pack_rows: parts float32 or bfloat16");
    base.push_back(static_cast<const char*>(t.data_ptr()));
    start.push_back(start.back() + t.size(0));
  }
  const int64_t N = rows.size(0), P = (N + kNR - 1) / kNR, es = parts[0].element_size();
  auto r = rows.contiguous();
  const int64_t* ri = r.data_ptr<int64_t>();
  std::vector<const char*> ptr(P * kNR, nullptr);
  for (int64_t i = 0; i < N; ++i) {
    TORCH_CHECK(ri[i] >= 0 && ri[i] < start.back(), "pack_rows: row index out of range");
    const int64_t q = std::upper_bound(start.begin(), start.end(), ri[i]) - start.begin() - 1;
    ptr[i] = base[q] + (ri[i] - start[q]) * parts[q].stride(0) * es;
  }
  auto out = torch::empty({P, K, kNR}, parts[0].options().dtype(dtype));
  auto run = [&](auto* src_tag, auto* dst) {
    using S = std::remove_pointer_t<decltype(src_tag)>;
    std::vector<const S*> rp(ptr.size());
    for (size_t i = 0; i < ptr.size(); ++i) rp[i] = reinterpret_cast<const S*>(ptr[i]);
    pack_t(rp, K, dst);
  };
  const bool src16 = st == torch::kBFloat16, dst16 = dtype == torch::kBFloat16;
  if (src16 && dst16) run(static_cast<c10::BFloat16*>(nullptr), out.data_ptr<c10::BFloat16>());
  else if (src16) run(static_cast<c10::BFloat16*>(nullptr), out.data_ptr<float>());
  else if (dst16) run(static_cast<float*>(nullptr), out.data_ptr<c10::BFloat16>());
  else run(static_cast<float*>(nullptr), out.data_ptr<float>());
  return out;
}

TORCH_LIBRARY_FRAGMENT(scalinglab, m) {
  m.def("linear_packed(Tensor x, Tensor wp, int n, Tensor? bias) -> Tensor");
  m.def("pack_rows(Tensor[] parts, Tensor rows, ScalarType dtype) -> Tensor");
}
TORCH_LIBRARY_IMPL(scalinglab, CPU, m) {
  m.impl("linear_packed", &linear_packed);
  m.impl("pack_rows", &pack_rows);
}
