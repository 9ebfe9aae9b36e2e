// Decode attention on raw float32 buffers: what decode_attention.cpp computes, callable from
// other kernels of this extension (the native decode loop) without building tensors.
#pragma once
#include <cstdint>

struct AttnArgs {
  int64_t S = 0, H = 0, Hkv = 0, D = 0;  // sequences, query heads, kv heads, head dim
  const float* q = nullptr;  // row (s, h) at s * q_s + h * q_h; D contiguous floats
  int64_t q_s = 0, q_h = 0;
  // shared prompt prefix (G groups of S / G sequences; G = 0: none), rows (grp, h, t)
  const float *kp = nullptr, *vp = nullptr;
  int64_t G = 0, Tp = 0, kp_s = 0, kp_h = 0, kp_t = 0, vp_s = 0, vp_h = 0, vp_t = 0;
  const int64_t* plen = nullptr;  // (G,) prefix positions attended
  int64_t n = 0;  // samples per prefix group: query s's group is row_of[s] / n (the decode loop's live rows); 0: s / (S / G)
  // each sequence's own cache, rows (s, h, t)
  const float *ks = nullptr, *vs = nullptr;
  int64_t Ts = 0, ks_s = 0, ks_h = 0, ks_t = 0, vs_s = 0, vs_h = 0, vs_t = 0;
  const int64_t* slen = nullptr;  // (S,) cached positions attended
  const int64_t* row_of = nullptr;  // (S,) cache row of query s (prefill: many queries per row); null: row s
  // the new token's key and value, rows (s, h)
  const float *kn = nullptr, *vn = nullptr;
  int64_t kn_s = 0, kn_h = 0, vn_s = 0, vn_h = 0;
  float scale = 1.f;
  float* out = nullptr;  // (S, H, D) contiguous
};

void attend(const AttnArgs& a);
