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
#include <cstdlib>
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
#if defined(SL_AVX512) && defined(__AVX512BF16__)
#define SL_BF16DP 1
#endif
#if defined(SL_BF16DP) && defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#define SL_AMX 1
#endif

namespace {

#ifdef SL_AVX512
constexpr int64_t kNR = 16, kMR = 12;  // one zmm register per row of a tile: 12 accumulators
#else
constexpr int64_t kNR = 16, kMR = 6;  // two ymm registers per row: 12 accumulators
#endif
// The bf16 dot-product tile of one row streams its two panels from memory a line each per pair of
// k: it asks for the lines this far ahead itself, as the hardware prefetcher stops at 4 KB pages
// (SmolLM2 bf16 batch 1: 78-80 tok/s without, 84-91 at 2 KB, 88-92 at 4 KB, interleaved). The
// float32 one-row tile gained nothing from the same (39-40 tok/s either way), so it has none.
constexpr int64_t kAhead = 4096;  // bytes
// The AVX2 one-row tile over widened bf16 does the same, nearer: on Zen 3 (AVX2 only) a cold
// 283 MB stream of bf16 panels ran at 27-30 GB/s with it against 21-25 without, and SmolLM2 bf16
// batch 1 at 82-89 tok/s against 75-82 (interleaved, 2026-12-03). Its float32 tile gained nothing
// again (23-28 GB/s with it against 26-29 without: the hardware prefetcher keeps up with two lines
// a k pair), and 4 KB or more ahead was slower.
constexpr int64_t kAheadWidened = 1024;  // bytes

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
// pf: lines [0, pf_lines) of the panels the next call reads (null: none), fetched into L2 at
// ceil(pf_lines / K) a k, so the next pair's weights stream in while these tiles compute.
template <int R, typename BT>
void tile2(const float* __restrict__ x, int64_t ldx, const BT* __restrict__ b0, const BT* __restrict__ b1, int64_t K,
           float* __restrict__ c, int64_t ldc, bool load, const char* pf, int64_t pf_lines) {
  const int64_t per_k = pf ? (pf_lines + K - 1) / K : 0;
  __m512 a0[R], a1[R];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    a0[r] = load ? _mm512_loadu_ps(c + r * ldc) : _mm512_setzero_ps();
    a1[r] = load ? _mm512_loadu_ps(c + r * ldc + kNR) : _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t i = k * per_k; i < std::min((k + 1) * per_k, pf_lines); ++i) _mm_prefetch(pf + 64 * i, _MM_HINT_T1);
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
void tile2_rows(int R, const float* x, int64_t ldx, const BT* b0, const BT* b1, int64_t K, float* c, int64_t ldc, bool load,
                const char* pf, int64_t pf_lines) {
  switch (R) {
    case 12: tile2<12>(x, ldx, b0, b1, K, c, ldc, load, pf, pf_lines); break;
    case 11: tile2<11>(x, ldx, b0, b1, K, c, ldc, load, pf, pf_lines); break;
    case 10: tile2<10>(x, ldx, b0, b1, K, c, ldc, load, pf, pf_lines); break;
    case 9: tile2<9>(x, ldx, b0, b1, K, c, ldc, load, pf, pf_lines); break;
    case 8: tile2<8>(x, ldx, b0, b1, K, c, ldc, load, pf, pf_lines); break;
    case 7: tile2<7>(x, ldx, b0, b1, K, c, ldc, load, pf, pf_lines); break;
    case 6: tile2<6>(x, ldx, b0, b1, K, c, ldc, load, pf, pf_lines); break;
    case 5: tile2<5>(x, ldx, b0, b1, K, c, ldc, load, pf, pf_lines); break;
    case 4: tile2<4>(x, ldx, b0, b1, K, c, ldc, load, pf, pf_lines); break;
    default: tile2<3>(x, ldx, b0, b1, K, c, ldc, load, pf, pf_lines);  // R >= 3: rows 1-2 take the unpaired tiles
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
    if constexpr (std::is_same_v<BT, uint16_t>)  // one line a k pair, kAheadWidened ahead
      _mm_prefetch(reinterpret_cast<const char*>(b + k * kNR) + kAheadWidened, _MM_HINT_T0);
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

// Items per chunk for n items on T threads, a multiple of `step`: the chunking that leaves the
// busiest thread the fewest items, then the one nearest `per_thread` chunks a thread (16 for one
// or two rows, whose calls are short and bound by memory: the last chunk's wait is shorter; bf16
// batch 1 on SmolLM2 80-81 against 78-79 tok/s with 4, interleaved). n / (4T) alone gave
// SmolLM2's Wo and down projections (36 panels, 18 pairs) 9 chunks on 2 threads: one thread did
// the ninth alone, 11% of those products' time.
int64_t balanced_chunk(int64_t n, int64_t T, int64_t step, int64_t per_thread) {
  int64_t best = n, best_load = n, best_off = n;
  for (int64_t c = step; c <= std::max(step, n / T); c += step) {
    const int64_t chunks = (n + c - 1) / c, load = (chunks + T - 1) / T * c, off = std::abs(chunks - per_thread * T);
    if (load < best_load || (load == best_load && off < best_off)) { best = c; best_load = load; best_off = off; }
  }
  return best;
}

// Chunk for a product of M rows by N columns by K over n items (panels or pairs of them) of
// `elem`-byte weights, the `step` dividing it: all n in one (this thread) below about 16 us of
// one thread's work, both in multiply-adds (under 2^19) and in weight bytes streamed (under
// 256 KiB: toy widths), else balanced_chunk's, about 16 a thread for one or two rows and 4 for more.
// The bytes count on their own for one or two rows, which memory bounds: SmolLM2's Wo (576 x 576,
// 2^18.3 multiply-adds a row) ran on one thread at batch 1 before, 15 GB/s against the other
// projections' 22-24 (float32 and bf16 alike, Zen 3, 2026-12-03).
int64_t product_chunk(int64_t n, int64_t M, int64_t N, int64_t K, int64_t step, int64_t elem) {
  const bool small = M * N * K < (int64_t{1} << 19) && N * K * elem < (int64_t{1} << 18);
  return small ? n : balanced_chunk(n, at::get_num_threads(), step, M <= 2 ? 16 : 4);
}

// The pair of panels after the pair that starts at panel p of P (each panel K x 16 weights of `elem`
// bytes), fetched into L2 a share per row tile while that pair is multiplied: cold weights, as in a
// decode step, would otherwise keep the first tile waiting on memory for all of them. Past this
// thread's run they are likely the other thread's, and still land in the shared L3.
struct NextPair {
  const char* base;
  int64_t lines, share;
  NextPair(const void* pair, int64_t p, int64_t P, int64_t K, int64_t elem, int64_t tiles)
      : base(static_cast<const char*>(pair) + 2 * K * kNR * elem),
        lines(std::max<int64_t>(0, std::min<int64_t>(2, P - p - 2)) * K * kNR * elem / 64),
        share((lines + tiles - 1) / tiles) {}
  int64_t count(int64_t t) const { return std::max<int64_t>(0, std::min(share, lines - t * share)); }  // tile t's lines
  const char* at(int64_t t) const { return count(t) > 0 ? base + 64 * t * share : nullptr; }
};

template <typename BT>
void gemm_t(const float* x, int64_t M, int64_t ldx, const BT* w, int64_t N, int64_t K, const float* bias, bool accumulate,
            float* out, int64_t ldo) {
  const int64_t P = (N + kNR - 1) / kNR;
  // chunks of panels claimed one by one (pool.h), so a late thread costs little
#ifdef SL_AVX512
  const int64_t chunk = product_chunk(P, M, N, K, 2, sizeof(BT));  // no pair of panels split
#else
  const int64_t chunk = product_chunk(P, M, N, K, 1, sizeof(BT));
#endif
#ifdef SL_AVX512
  // Paired panels take the rows in tiles of equal size (64 rows: 4 x 11 + 2 x 10, not 5 x 12 + 4:
  // a 4-row tile is bound by its loads), all summed in k order like every tile of 2-12 rows; only
  // the AVX2 kernel's lone row (M = 6q + 1, its tiles being 6 rows) is summed even and odd k apart
  // (tile1) and stays alone, so no output depends on the tile sizes (tested).
  const int64_t Mb = M - (M % 6 == 1 ? 1 : 0), tiles = (Mb + kMR - 1) / kMR;
#endif
  pool_for(P, chunk, [&](int64_t p0, int64_t p1) {
    float edge[kMR * kNR];
    for (int64_t p = p0; p < p1; ++p) {
      const BT* b = w + p * K * kNR;
      const int64_t n0 = p * kNR, nv = std::min(kNR, N - n0);
#ifdef SL_AVX512
      if (M >= 3 && p + 1 < p1 && n0 + 2 * kNR <= N) {  // two full panels; 1-2 rows stay bandwidth-bound tiles
        const NextPair next(b, p, P, K, sizeof(BT), tiles);
        for (int64_t t = 0; t <= tiles; ++t) {  // the tiles, then the lone row if any
          const int64_t m0 = t < tiles ? Mb * t / tiles : Mb;
          const int R = static_cast<int>(t < tiles ? Mb * (t + 1) / tiles - m0 : M - Mb);
          if (R == 0) continue;
          float* c = out + m0 * ldo + n0;
          if (bias)
            for (int r = 0; r < R; ++r)
              for (int64_t j = 0; j < 2 * kNR; ++j) c[r * ldo + j] = (accumulate ? c[r * ldo + j] : 0.f) + bias[n0 + j];
          const bool load = accumulate || bias != nullptr;
          if (R <= 2) {  // the same tiles as unpaired panels: a result never depends on the pairing
            tile_rows(R, x + m0 * ldx, ldx, b, K, c, ldo, load);
            tile_rows(R, x + m0 * ldx, ldx, b + K * kNR, K, c + kNR, ldo, load);
          } else {
            tile2_rows(R, x + m0 * ldx, ldx, b, b + K * kNR, K, c, ldo, load, next.at(t), next.count(t));
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


// ---- bf16 dot products: the pairs layout (gemm.h), x rounded to bf16 ----------------------------
//
// On a CPU with AVX512-BF16, bf16 weights are multiplied by bf16 activations: x is rounded to bf16
// (to nearest even, as Tensor.to rounds; subnormals flushed) once per call, and each product of two
// bf16 values is exact in float32, summed in float32 two k at a time (vdpbf16ps: 32 products a
// register, twice the float32 FMA's). From 16 rows on, with AMX (Sapphire Rapids and later), the
// tiles multiply 16 rows by 16 columns by 32 k in one instruction. A row's sums depend on which of the
// two kernels served its call (the row count picks it), never on the thread count.
#ifdef SL_BF16DP
// the rows of x as bf16 pairs, rows padded to `rows` with zeros: a (rows, K) bf16, K % 32 == 0
void round_rows(const float* x, int64_t M, int64_t ldx, int64_t K, int64_t rows, uint16_t* a) {
  for (int64_t m = 0; m < rows; ++m)
    for (int64_t k = 0; k < K; k += 32) {
      __m512i v = _mm512_setzero_si512();
      if (m < M) v = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + m * ldx + k + 16), _mm512_loadu_ps(x + m * ldx + k));
      _mm512_storeu_si512(a + m * K + k, v);
    }
}

inline __m512bh pair_of(const uint16_t* a) {  // the bf16 pair a[0], a[1] in every 32-bit lane
  int32_t v;
  std::memcpy(&v, a, 4);
  return (__m512bh)_mm512_set1_epi32(v);
}

// c (R rows x 16·NP) = init + a (R rows of bf16, stride lda) · NP panels in the pairs layout, K2 = K/2;
// pf, pf_lines: lines of the panels the next call reads, fetched into L2 spread over the k pairs (as
// tile2 does; from two rows on: one row prefetches its own stream kAhead bytes ahead instead)
template <int R, int NP>
void dp_tile(const uint16_t* __restrict__ a, int64_t lda, const uint16_t* __restrict__ b0, const uint16_t* __restrict__ b1,
             int64_t K2, float* __restrict__ c, int64_t ldc, bool load, const char* pf, int64_t pf_lines) {
  const int64_t per_k = pf ? (pf_lines + K2 - 1) / K2 : 0;
  __m512 acc[NP][R];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    acc[0][r] = load ? _mm512_loadu_ps(c + r * ldc) : _mm512_setzero_ps();
    if (NP == 2) acc[NP - 1][r] = load ? _mm512_loadu_ps(c + r * ldc + kNR) : _mm512_setzero_ps();
  }
  for (int64_t k2 = 0; k2 < K2; ++k2) {
    if constexpr (R == 1) {  // one row streams the panels: fetched kAhead bytes ahead
      _mm_prefetch(reinterpret_cast<const char*>(b0 + 32 * k2) + kAhead, _MM_HINT_T0);
      if (NP == 2) _mm_prefetch(reinterpret_cast<const char*>(b1 + 32 * k2) + kAhead, _MM_HINT_T0);
    } else {
      for (int64_t i = k2 * per_k; i < std::min((k2 + 1) * per_k, pf_lines); ++i) _mm_prefetch(pf + 64 * i, _MM_HINT_T1);
    }
    const __m512bh w0 = (__m512bh)_mm512_loadu_si512(b0 + 32 * k2);
    const __m512bh w1 = NP == 2 ? (__m512bh)_mm512_loadu_si512(b1 + 32 * k2) : w0;
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      const __m512bh xr = pair_of(a + r * lda + 2 * k2);
      acc[0][r] = _mm512_dpbf16_ps(acc[0][r], xr, w0);
      if (NP == 2) acc[NP - 1][r] = _mm512_dpbf16_ps(acc[NP - 1][r], xr, w1);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_ps(c + r * ldc, acc[0][r]);
    if (NP == 2) _mm512_storeu_ps(c + r * ldc + kNR, acc[NP - 1][r]);
  }
}

template <int NP>
void dp_rows(int R, const uint16_t* a, int64_t lda, const uint16_t* b0, const uint16_t* b1, int64_t K2, float* c, int64_t ldc,
             bool load, const char* pf, int64_t pf_lines) {
  switch (R) {
    case 12: dp_tile<12, NP>(a, lda, b0, b1, K2, c, ldc, load, pf, pf_lines); break;
    case 11: dp_tile<11, NP>(a, lda, b0, b1, K2, c, ldc, load, pf, pf_lines); break;
    case 10: dp_tile<10, NP>(a, lda, b0, b1, K2, c, ldc, load, pf, pf_lines); break;
    case 9: dp_tile<9, NP>(a, lda, b0, b1, K2, c, ldc, load, pf, pf_lines); break;
    case 8: dp_tile<8, NP>(a, lda, b0, b1, K2, c, ldc, load, pf, pf_lines); break;
    case 7: dp_tile<7, NP>(a, lda, b0, b1, K2, c, ldc, load, pf, pf_lines); break;
    case 6: dp_tile<6, NP>(a, lda, b0, b1, K2, c, ldc, load, pf, pf_lines); break;
    case 5: dp_tile<5, NP>(a, lda, b0, b1, K2, c, ldc, load, pf, pf_lines); break;
    case 4: dp_tile<4, NP>(a, lda, b0, b1, K2, c, ldc, load, pf, pf_lines); break;
    case 3: dp_tile<3, NP>(a, lda, b0, b1, K2, c, ldc, load, pf, pf_lines); break;
    case 2: dp_tile<2, NP>(a, lda, b0, b1, K2, c, ldc, load, pf, pf_lines); break;
    default: dp_tile<1, NP>(a, lda, b0, b1, K2, c, ldc, load, pf, pf_lines);
  }
}
#endif

#ifdef SL_AMX
// From two rows on, AMX beats the AVX-512 dot products (measured 2-3x at 8 rows, even at 1).
constexpr int64_t kAmxRows = 2;

bool amx_ready() {  // Linux hands AMX's 8 KB of tile state to a process that asks (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
  static const bool ok = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
  return ok;
}

struct TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// tiles 0-3: C (row tile i, panel j at 2i + j), 16 float32 columns; 4-5: A (row tiles), 32 bf16; 6-7: B (panels), 16 pairs
void amx_configure(int rows) {
  TileConfig t;
  for (int i = 0; i < 6; ++i) t.rows[i] = static_cast<uint8_t>(rows), t.colsb[i] = 64;
  for (int i = 6; i < 8; ++i) t.rows[i] = 16, t.colsb[i] = 64;
  _tile_loadconfig(&t);
}

// a C tile (16 rows by 16 columns of out at stride ldo, rows_valid x cols_valid of them inside out): where
// it loads from and stores to, out itself where the whole tile lies inside it, else the scratch tile sc
inline const float* c_src(const float* out, int64_t ldo, int64_t rows_valid, int64_t cols_valid, int tile_rows, float* sc,
                          int64_t& stride) {
  stride = ldo * 4;
  if (rows_valid == tile_rows && cols_valid == kNR) return out;
  std::memset(sc, 0, sizeof(float) * kNR * 16);
  for (int64_t r = 0; r < rows_valid; ++r) std::copy_n(out + r * ldo, cols_valid, sc + r * kNR);
  stride = kNR * 4;
  return sc;
}
inline float* c_dst(float* out, int64_t ldo, int64_t rows_valid, int64_t cols_valid, int tile_rows, float* sc, int64_t& stride) {
  const bool inside = rows_valid == tile_rows && cols_valid == kNR;
  stride = inside ? ldo * 4 : kNR * 4;
  return inside ? out : sc;
}
inline void c_back(float* out, int64_t ldo, int64_t rows_valid, int64_t cols_valid, const float* sc, const float* dst) {
  if (dst == sc)
    for (int64_t r = 0; r < rows_valid; ++r) std::copy_n(sc + r * kNR, cols_valid, out + r * ldo);
}
// the tile intrinsics take the tile register's number as a literal
#define SL_C_LOAD(T, o, rv, cv)                               \
  do {                                                        \
    if (!load) {                                              \
      _tile_zero(T);                                          \
    } else {                                                  \
      int64_t st_;                                            \
      const float* src_ = c_src(o, ldo, rv, cv, tr, sc, st_);     \
      _tile_loadd(T, src_, st_);                              \
    }                                                         \
  } while (0)
#define SL_C_STORE(T, o, rv, cv)                  \
  do {                                            \
    int64_t st_;                                  \
    float* dst_ = c_dst(o, ldo, rv, cv, tr, sc, st_); \
    _tile_stored(T, dst_, st_);                   \
    c_back(o, ldo, rv, cv, sc, dst_);             \
  } while (0)
#endif

#ifdef SL_BF16DP
// the pairs layout's product (gemm_packed): x rounded to bf16 by the calling thread, then panels in pairs over the pool
void gemm_pairs(const float* x, int64_t M, int64_t ldx, const uint16_t* w, int64_t N, int64_t K, const float* bias,
                bool accumulate, float* out, int64_t ldo) {
  const int64_t P = (N + kNR - 1) / kNR, Q = (P + 1) / 2, K2 = K / 2;
#ifdef SL_AMX
  const bool amx = M >= kAmxRows && amx_ready();
#else
  const bool amx = false;
#endif
  const int64_t rows = amx && M >= 16 ? (M + 15) / 16 * 16 : M;  // below 16 rows the tiles have M rows
  thread_local std::vector<uint16_t> abuf;
  if (static_cast<int64_t>(abuf.size()) < rows * K) abuf.resize(rows * K);
  uint16_t* a = abuf.data();
  round_rows(x, M, ldx, K, rows, a);
  if (bias)  // out = (accumulate ? out : 0) + bias, then every kernel accumulates into out
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) out[m * ldo + n] = (accumulate ? out[m * ldo + n] : 0.f) + bias[n];
  const bool load = accumulate || bias != nullptr;
  const int64_t chunk = product_chunk(Q, M, N, K, 1, 2);
  pool_for(Q, chunk, [&](int64_t q0, int64_t q1) {
    alignas(64) float sc[kMR * 2 * kNR > kNR * kNR ? kMR * 2 * kNR : kNR * kNR];
#ifdef SL_AMX
    if (amx) {
      const int tr = static_cast<int>(std::min<int64_t>(16, rows));
      amx_configure(tr);
      for (int64_t q = q0; q < q1; ++q) {
        const int64_t p = 2 * q, n0 = p * kNR, n1 = n0 + kNR;
        const bool two = p + 1 < P;
        const uint16_t* b0 = w + p * K * kNR;
        const uint16_t* b1 = b0 + K * kNR;
        for (int64_t m0 = 0; m0 < rows; m0 += 32) {
          const bool lower = m0 + 16 < rows;  // a second row tile
          const int64_t r0 = std::min<int64_t>(16, M - m0), r1 = std::max<int64_t>(0, std::min<int64_t>(16, M - m0 - 16));
          const int64_t c0 = std::min(kNR, N - n0), c1 = std::max<int64_t>(0, std::min(kNR, N - n1));
          float* o = out + m0 * ldo;
          SL_C_LOAD(0, o + n0, r0, c0);
          if (two) SL_C_LOAD(1, o + n1, r0, c1);
          if (lower) {
            SL_C_LOAD(2, o + 16 * ldo + n0, r1, c0);
            if (two) SL_C_LOAD(3, o + 16 * ldo + n1, r1, c1);
          }
          for (int64_t k = 0; k < K; k += 32) {
            _tile_loadd(6, b0 + k * kNR, 64);
            _tile_loadd(4, a + m0 * K + k, K * 2);
            _tile_dpbf16ps(0, 4, 6);
            if (lower) {
              _tile_loadd(5, a + (m0 + 16) * K + k, K * 2);
              _tile_dpbf16ps(2, 5, 6);
            }
            if (two) {
              _tile_loadd(7, b1 + k * kNR, 64);
              _tile_dpbf16ps(1, 4, 7);
              if (lower) _tile_dpbf16ps(3, 5, 7);
            }
          }
          SL_C_STORE(0, o + n0, r0, c0);
          if (two) SL_C_STORE(1, o + n1, r0, c1);
          if (lower) {
            SL_C_STORE(2, o + 16 * ldo + n0, r1, c0);
            if (two) SL_C_STORE(3, o + 16 * ldo + n1, r1, c1);
          }
        }
      }
      _tile_release();  // a thread that holds no tiles saves no tile state when it is switched out
      return;
    }
#endif
    // rows in tiles of equal size, as gemm_t's paired panels (64 rows: 4 x 11 + 2 x 10); every row's
    // sums are the same whatever its tile, so this changes no result
    const int64_t tiles = (M + kMR - 1) / kMR;
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t p = 2 * q, n0 = p * kNR, nv = std::min(2 * kNR, N - n0);
      const bool two = p + 1 < P;
      const uint16_t* b0 = w + p * K * kNR;
      const NextPair next(b0, p, P, K, 2, tiles);  // a lone row's tile prefetches its own stream instead
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t m0 = M * t / tiles;
        const int R = static_cast<int>(M * (t + 1) / tiles - m0);
        const bool full = nv == (two ? 2 : 1) * kNR;
        float* c = full ? out + m0 * ldo + n0 : sc;  // the edge: through sc (R <= 12 rows of 32)
        const int64_t ldc = full ? ldo : 2 * kNR;
        if (!full && load)
          for (int r = 0; r < R; ++r)
            for (int64_t j = 0; j < 2 * kNR; ++j) sc[r * ldc + j] = j < nv ? out[(m0 + r) * ldo + n0 + j] : 0.f;
        if (two) dp_rows<2>(R, a + m0 * K, K, b0, b0 + K * kNR, K2, c, ldc, load, next.at(t), next.count(t));
        else dp_rows<1>(R, a + m0 * K, K, b0, b0, K2, c, ldc, load, next.at(t), next.count(t));
        if (!full)
          for (int r = 0; r < R; ++r) std::copy_n(sc + r * ldc, nv, out + (m0 + r) * ldo + n0);
      }
    }
  });
}
#endif

}  // namespace

void gemm_packed(const float* x, int64_t M, int64_t ldx, const PackedW& w, const float* bias, bool accumulate, float* out,
                 int64_t ldo) {
  if (M <= 0) return;
#ifdef SL_BF16DP
  if (w.pairs) return gemm_pairs(x, M, ldx, static_cast<const uint16_t*>(w.data), w.N, w.K, bias, accumulate, out, ldo);
#endif
  TORCH_CHECK(!w.pairs, "packed weight in the pairs layout, but this build has no bf16 dot products");
  if (w.bf16)
    gemm_t(x, M, ldx, static_cast<const uint16_t*>(w.data), w.N, w.K, bias, accumulate, out, ldo);
  else
    gemm_t(x, M, ldx, static_cast<const float*>(w.data), w.N, w.K, bias, accumulate, out, ldo);
}

int bf16_products() {
#if defined(SL_AMX)
  return amx_ready() ? 2 : 1;
#elif defined(SL_BF16DP)
  return 1;
#else
  return 0;
#endif
}

PackedW packed_of(const torch::Tensor& wp, int64_t N) {
  if (wp.dim() == 3 && wp.size(2) == 2 * kNR) {  // the pairs layout (P, K/2, 32)
    TORCH_CHECK(wp.is_contiguous() && wp.size(0) * kNR >= N && wp.scalar_type() == torch::kBFloat16 && wp.size(1) % 16 == 0,
                "packed weight, pairs layout: (ceil(N/16), K/2, 32) bfloat16 contiguous, K a multiple of 32");
    return {wp.data_ptr(), true, true, N, 2 * wp.size(1)};
  }
  TORCH_CHECK(wp.dim() == 3 && wp.size(2) == kNR && wp.is_contiguous() && wp.size(0) * kNR >= N,
              "packed weight: (ceil(N/16), K, 16) contiguous");
  TORCH_CHECK(wp.scalar_type() == torch::kFloat32 || wp.scalar_type() == torch::kBFloat16, "packed weight: float32 or bfloat16");
  return {wp.data_ptr(), wp.scalar_type() == torch::kBFloat16, false, N, wp.size(1)};
}

// x (M, K) float32 · W^T (+ bias) for W packed as (ceil(N/16), K, 16): the operator tests and benchmarks call
torch::Tensor linear_packed(torch::Tensor x, torch::Tensor wp, int64_t N, std::optional<torch::Tensor> bias) {
  const PackedW w = packed_of(wp, N);
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32 && x.stride(1) == 1 && x.size(1) == w.K,
              "linear_packed: x (M, K) float32, rows contiguous");
  auto out = torch::empty({x.size(0), N}, x.options());
  torch::Tensor bc = bias && bias->numel() ? bias->contiguous() : torch::Tensor();
  const float* b = bc.defined() ? bc.data_ptr<float>() : nullptr;
  gemm_packed(x.data_ptr<float>(), x.size(0), x.stride(0), w, b, false, out.data_ptr<float>(), N);
  return out;
}

namespace {
template <bool Pairs, typename S, typename D>
void pack_t(const std::vector<const S*>& row_ptr, int64_t K, D* out) {
  const int64_t P = static_cast<int64_t>(row_ptr.size()) / kNR;
  const std::vector<S> zeros(K, S(0.f));  // what a missing row (past N) reads
  pool_for(P, std::max<int64_t>(1, P / (8 * at::get_num_threads())), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      D* panel = out + p * K * kNR;
      const S* src[kNR];
      for (int64_t j = 0; j < kNR; ++j) src[j] = row_ptr[p * kNR + j] ? row_ptr[p * kNR + j] : zeros.data();
      if (Pairs)  // one output line (two k) at a time
        for (int64_t k = 0; k < K; k += 2)
          for (int64_t j = 0; j < kNR; ++j) {
            panel[k * kNR + 2 * j] = D(static_cast<float>(src[j][k]));
            panel[k * kNR + 2 * j + 1] = D(static_cast<float>(src[j][k + 1]));
          }
      else
        for (int64_t k = 0; k < K; ++k)  // one output line at a time, 16 rows read in order
          for (int64_t j = 0; j < kNR; ++j) panel[k * kNR + j] = D(static_cast<float>(src[j][k]));
    }
  });
}
}  // namespace

// The packed layout of gemm.h for the matrix whose row i is row rows[i] of cat(parts) (each
// part (n_p, K), float32 or bfloat16, rows contiguous), in `dtype` (float32, or bfloat16 rounded
// to nearest even, as Tensor.to rounds); with `pairs`, bfloat16 in the pairs layout (gemm.h), K a multiple of 32. One pass, spread over the pool: this replaces
// torch.cat + index + transpose + contiguous, which cost a third of a second for SmolLM2's
// 540 MB at start-up (two strided copies and a fused copy kept besides).
torch::Tensor pack_rows(std::vector<torch::Tensor> parts, torch::Tensor rows, c10::ScalarType dtype, bool pairs) {
  TORCH_CHECK(!parts.empty() && rows.dim() == 1 && rows.scalar_type() == torch::kInt64, "pack_rows: parts, rows (N,) int64");
  TORCH_CHECK(dtype == torch::kFloat32 || dtype == torch::kBFloat16, "pack_rows: dtype float32 or bfloat16");
  TORCH_CHECK(!pairs || (dtype == torch::kBFloat16 && parts[0].size(1) % 32 == 0), "pack_rows: pairs: bfloat16, K a multiple of 32");
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
  auto out = pairs ? torch::empty({P, K / 2, 2 * kNR}, parts[0].options().dtype(dtype))
                   : torch::empty({P, K, kNR}, parts[0].options().dtype(dtype));
  auto run = [&](auto* src_tag, auto* dst) {
    using S = std::remove_pointer_t<decltype(src_tag)>;
    std::vector<const S*> rp(ptr.size());
    for (size_t i = 0; i < ptr.size(); ++i) rp[i] = reinterpret_cast<const S*>(ptr[i]);
    if (pairs) pack_t<true>(rp, K, dst);
    else pack_t<false>(rp, K, dst);
  };
  const bool src16 = st == torch::kBFloat16, dst16 = dtype == torch::kBFloat16;
  if (src16 && dst16) run(static_cast<c10::BFloat16*>(nullptr), out.data_ptr<c10::BFloat16>());
  else if (src16) run(static_cast<c10::BFloat16*>(nullptr), out.data_ptr<float>());
  else if (dst16) run(static_cast<float*>(nullptr), out.data_ptr<c10::BFloat16>());
  else run(static_cast<float*>(nullptr), out.data_ptr<float>());
  return out;
}

int64_t bf16_products_op() { return bf16_products(); }

TORCH_LIBRARY_FRAGMENT(scalinglab, m) {
  m.def("linear_packed(Tensor x, Tensor wp, int n, Tensor? bias) -> Tensor");
  m.def("pack_rows(Tensor[] parts, Tensor rows, ScalarType dtype, bool pairs=False) -> Tensor");
  m.def("bf16_products() -> int", &bf16_products_op);  // no tensor argument: registered for every dispatch key
}

TORCH_LIBRARY_IMPL(scalinglab, CPU, m) {
  m.impl("linear_packed", &linear_packed);
  m.impl("pack_rows", &pack_rows);
}
