// torch.rand's float32 stream on a CPU, in bulk (uniform.cpp).
#pragma once
#include <ATen/core/Generator.h>
#include <cstdint>
#include <optional>

// out[0..n): what torch.rand(n, generator=gen) would draw (the default CPU generator when gen is
// empty), advancing the generator exactly as that call does.
void fill_uniform(const std::optional<at::Generator>& gen, float* out, int64_t n);
