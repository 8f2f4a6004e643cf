// Candor index: the inner-product scan kernels, chosen at run time.
//
// Two builds of each kernel exist: a portable one (kernels_scalar.cpp, the
// build's generic flags) and an AVX2/FMA one (kernels_avx2.cpp, compiled with
// -mavx2 -mfma). kernels() picks one once, with __builtin_cpu_supports, so the
// library runs on any x86-64 and is fast on x86-64-v3.
//
// Internal header: not installed, not part of the public API.
#pragma once

#include <cstddef>
#include <cstdint>

namespace candor::index_detail {

struct Kernels {
  const char* name;  // "avx2" or "scalar", for reports

  // a · b over d floats.
  float (*dot_f32)(const float* a, const float* b, size_t d);

  // out[i] = q · base[i*d .. i*d+d) for i < n.
  void (*scan_f32)(const float* q, const float* base, size_t n, size_t d, float* out);

  // out[i] = scales[i] * (q · codes[i*d .. i*d+d)) for i < n: the score of
  // query q against n 8-bit codes (see encode_sq8).
  void (*scan_sq8)(const float* q, const int8_t* codes, const float* scales, size_t n,
                   size_t d, float* out);

  // hnswlib's DISTFUNC signature: 1 - a·b, param points to the dimension (size_t).
  float (*ip_distance)(const void* a, const void* b, const void* param);
};

// The kernels for this CPU (AVX2 when it has AVX2 and FMA, else portable).
const Kernels& kernels();
// Both builds, for tests that compare them and for the micro benchmarks.
const Kernels& scalar_kernels();
// requires: cpu_has_avx2(); otherwise the functions must not be called.
const Kernels& avx2_kernels();
bool cpu_has_avx2();

// Encodes one unit vector as int8 codes with a single scale: code = round(x /
// scale), scale = max|x| / 127, so x ≈ scale * code. One scale per template
// needs no training (templates arrive one by one from the store) and keeps the
// error per component within scale/2 ≈ max|x|/254.
// ensures: returns the scale (0 for an all-zero vector, codes all 0).
float encode_sq8(const float* x, size_t d, int8_t* codes);

}  // namespace candor::index_detail
