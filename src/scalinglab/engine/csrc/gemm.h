// Matrix products against pre-packed weights (gemm.cpp): what the native decode loop and
// prefill use instead of ATen's GEMM, whose MKL call re-packs the whole weight matrix on
// every call (a fifth of a SmolLM2 decode step at batch 32) and whose matrix-vector path
// streams the LM head at a third of the memory bandwidth.
#pragma once
#include <cstdint>

// A weight W (N, K) packed into panels of 16 output columns: element (p, k, j) = W[16p + j, k],
// zero for 16p + j >= N; float32 or bfloat16 (the upper 16 bits of a float32). Or, for bf16 on a
// CPU with bf16 dot products (`bf16_products`), the pairs layout: (p, k/2, 2j + k%2) = W[16p + j, k]
// with K a multiple of 32, what vdpbf16ps and AMX multiply (x rounded to bf16, see gemm.cpp).
struct PackedW {
  const void* data = nullptr;
  bool bf16 = false;
  bool pairs = false;
  int64_t N = 0, K = 0;  // logical shape of W
};

// 0: no bf16 dot products in this build or CPU; 1: AVX512-BF16 (vdpbf16ps); 2: and AMX tiles, usable by this process.
int bf16_products();

// out[m, :N] = (accumulate ? out[m, :N] : bias or 0) + x[m, :K] · W^T   for m < M
// x rows at stride ldx, out rows at stride ldo; spread over threads by panels of 16 columns.
void gemm_packed(const float* x, int64_t M, int64_t ldx, const PackedW& w, const float* bias, bool accumulate, float* out,
                 int64_t ldo);
