// Portable kernels: the fallback on CPUs without AVX2, and the reference the
// AVX2 build is tested against. Compiled with the build's generic flags.
#include "kernels.h"

#include <algorithm>
#include <cmath>

namespace candor::index_detail {
namespace {

float dot_f32(const float* a, const float* b, size_t d) {
  // Four partial sums so the compiler may vectorise without -ffast-math.
  float s0 = 0.0F, s1 = 0.0F, s2 = 0.0F, s3 = 0.0F;
  size_t j = 0;
  for (; j + 4 <= d; j += 4) {
    s0 += a[j] * b[j];
    s1 += a[j + 1] * b[j + 1];
    s2 += a[j + 2] * b[j + 2];
    s3 += a[j + 3] * b[j + 3];
  }
  for (; j < d; ++j) s0 += a[j] * b[j];
  return (s0 + s1) + (s2 + s3);
}

void scan_f32(const float* q, const float* base, size_t n, size_t d, float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = dot_f32(q, base + i * d, d);
}

void scan_sq8(const float* q, const int8_t* codes, const float* scales, size_t n, size_t d,
              float* out) {
  for (size_t i = 0; i < n; ++i) {
    const int8_t* c = codes + i * d;
    float s0 = 0.0F, s1 = 0.0F;
    size_t j = 0;
    for (; j + 2 <= d; j += 2) {
      s0 += q[j] * static_cast<float>(c[j]);
      s1 += q[j + 1] * static_cast<float>(c[j + 1]);
    }
    for (; j < d; ++j) s0 += q[j] * static_cast<float>(c[j]);
    out[i] = scales[i] * (s0 + s1);
  }
}

float ip_distance(const void* a, const void* b, const void* param) {
  return 1.0F - dot_f32(static_cast<const float*>(a), static_cast<const float*>(b),
                        *static_cast<const size_t*>(param));
}

}  // namespace

const Kernels& scalar_kernels() {
  static const Kernels k{"scalar", dot_f32, scan_f32, scan_sq8, ip_distance};
  return k;
}

float encode_sq8(const float* x, size_t d, int8_t* codes) {
  float max_abs = 0.0F;
  for (size_t j = 0; j < d; ++j) max_abs = std::max(max_abs, std::fabs(x[j]));
  if (max_abs == 0.0F) {
    std::fill(codes, codes + d, int8_t{0});
    return 0.0F;
  }
  const float scale = max_abs / 127.0F;
  const float inv = 127.0F / max_abs;
  for (size_t j = 0; j < d; ++j) {
    const float v = std::clamp(std::nearbyint(x[j] * inv), -127.0F, 127.0F);
    codes[j] = static_cast<int8_t>(v);
  }
  return scale;
}

}  // namespace candor::index_detail
