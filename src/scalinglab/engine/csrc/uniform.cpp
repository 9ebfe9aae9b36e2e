// torch.rand's float32 stream on a CPU, drawn in bulk.
//
// The sampler's contract (engine/sampling.py) is that every decode path draws its Gumbel noise
// from `torch.rand((S, V), generator=gen)`, so a seed gives the same tokens on every path. ATen
// draws it one number at a time (cpu_serial_kernel: a call, a branch and a mutex-held generator
// per number): about 2.4 ns a draw, 7.5 ms of a batch-64 SmolLM2 step's 100 (its vocabulary is
// 49,152), on one thread while the others wait. The numbers are ATen's mt19937 (the 32-bit
// Mersenne twister, at/core/MT19937RNGEngine.h) cut to 24 bits and scaled by 2^-24
// (uniform_real_distribution<float>, TransformationHelper.h). Here the same engine state is
// advanced a block of 624 words at a time, in loops the compiler vectorises: the twist (each
// new word reads words 1 and 397 places on, or 227 back in the new block) and the tempering.
// The generator's state is read from and written back to the torch.Generator, so draws before,
// between and after interleave with torch's own exactly (tests/test_engine_native.py).
#include <torch/extension.h>
#include <torch/library.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>
#include <algorithm>
#include <mutex>

#include "uniform.h"

namespace {

constexpr int kN = 624, kM = 397;
constexpr uint32_t kMatrixA = 0x9908b0df, kUpper = 0x80000000, kLower = 0x7fffffff;

inline uint32_t twist(uint32_t u, uint32_t v) { return (((u & kUpper) | (v & kLower)) >> 1) ^ ((v & 1) ? kMatrixA : 0); }

// MT19937RNGEngine.h's next_state, as three loops without a loop-carried dependence shorter
// than 227 words.
void next_block(uint32_t* s) {
  for (int i = 0; i < kN - kM; ++i) s[i] = s[i + kM] ^ twist(s[i], s[i + 1]);
  for (int i = kN - kM; i < kN - 1; ++i) s[i] = s[i + kM - kN] ^ twist(s[i], s[i + 1]);
  s[kN - 1] = s[kM - 1] ^ twist(s[kN - 1], s[0]);
}

// n words of the state from s, tempered, as uniform floats in [0, 1).
void emit(const uint32_t* __restrict__ s, int64_t n, float* __restrict__ out) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t y = s[i];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >> 18;
    out[i] = static_cast<float>(y & 0xffffff) * (1.0f / 16777216.0f);
  }
}

}  // namespace

void fill_uniform(const std::optional<at::Generator>& gen, float* out, int64_t n) {
  auto* g = at::get_generator_or_default<at::CPUGeneratorImpl>(gen, at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(g->mutex_);
  at::mt19937 engine = g->engine();
  at::mt19937_data_pod d = engine.data();
  // ATen's operator(): `if (--left_ == 0) next_state();` then returns state_[next_++]. So
  // left_ - 1 words are left in the block, from next_; after a twist, a draw of k words leaves
  // next_ = k and left_ = kN + 1 - k.
  int64_t done = std::min<int64_t>(d.left_ - 1, n);
  emit(d.state_.data() + d.next_, done, out);
  d.next_ += static_cast<uint32_t>(done);
  d.left_ -= static_cast<int>(done);
  while (done < n) {
    next_block(d.state_.data());
    const int64_t k = std::min<int64_t>(kN, n - done);
    emit(d.state_.data(), k, out + done);
    d.next_ = static_cast<uint32_t>(k);
    d.left_ = kN + 1 - static_cast<int>(k);
    done += k;
  }
  engine.set_data(d);
  g->set_engine(engine);
}

namespace {

torch::Tensor uniform_fill(torch::Tensor out, std::optional<at::Generator> gen) {
  TORCH_CHECK(out.scalar_type() == torch::kFloat32 && out.is_contiguous(), "uniform_fill: a contiguous float32 tensor");
  fill_uniform(gen, out.data_ptr<float>(), out.numel());
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(scalinglab, m) { m.def("uniform_fill(Tensor(a!) out, Generator? generator) -> Tensor(a!)"); }

TORCH_LIBRARY_IMPL(scalinglab, CPU, m) { m.impl("uniform_fill", &uniform_fill); }
