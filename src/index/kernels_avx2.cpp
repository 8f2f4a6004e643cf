// AVX2/FMA kernels. This translation unit alone is compiled with -mavx2 -mfma
// (src/index/CMakeLists.txt); nothing here may run before kernels() has checked
// the CPU, so it exposes only the table avx2_kernels().
//
// Four independent accumulators per row cover the latency of the FMA / add
// chains. At 512-d the int8 scan should be bound by memory bandwidth, not
// arithmetic (../shared/docs/vector-search.md: ~12 GB/s per thread, so
// 512 MB of codes for 1M templates takes >= ~45 ms).
#include "kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace candor::index_detail {
namespace {

inline float hsum(__m256 v) {
  const __m128 lo = _mm256_castps256_ps128(v);
  const __m128 hi = _mm256_extractf128_ps(v, 1);
  __m128 s = _mm_add_ps(lo, hi);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 8 int8 codes at p, widened to 8 floats.
inline __m256 load8_i8(const int8_t* p) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
}

float dot_f32(const float* a, const float* b, size_t d) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  size_t j = 0;
  for (; j + 16 <= d; j += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8), s1);
  }
  for (; j + 8 <= d; j += 8)
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), s0);
  float s = hsum(_mm256_add_ps(s0, s1));
  for (; j < d; ++j) s += a[j] * b[j];
  return s;
}

// One row at a time, four accumulators: rows are read in address order, a
// single stream the hardware prefetcher follows well. (Interleaving four rows
// measured 12 GB/s against 21 GB/s for one stream on the 2-core EPYC.)
void scan_f32(const float* q, const float* base, size_t n, size_t d, float* out) {
  if (d % 32 != 0) {
    for (size_t i = 0; i < n; ++i) out[i] = dot_f32(q, base + i * d, d);
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    const float* r = base + i * d;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (size_t j = 0; j < d; j += 32) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j), _mm256_loadu_ps(r + j), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j + 8), _mm256_loadu_ps(r + j + 8), a1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j + 16), _mm256_loadu_ps(r + j + 16), a2);
      a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j + 24), _mm256_loadu_ps(r + j + 24), a3);
    }
    out[i] = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  }
}

inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// Query range for the integer path: |q16| <= 16383 (14 bits), codes |c| <= 127.
// The whole dot product is summed in int32, and |sum| <= d * 127 * 16383,
// which stays below 2^31 for d <= 1024; longer vectors use the float path.
constexpr float kQ16Max = 16383.0F;
constexpr size_t kSq8MaxIntDim = 1024;

float dot_sq8(const float* q, const int8_t* c, size_t d) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  size_t j = 0;
  for (; j + 16 <= d; j += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j), load8_i8(c + j), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j + 8), load8_i8(c + j + 8), s1);
  }
  float s = hsum(_mm256_add_ps(s0, s1));
  for (; j < d; ++j) s += q[j] * static_cast<float>(c[j]);
  return s;
}

void scan_sq8_float(const float* q, const int8_t* codes, const float* scales, size_t n,
                    size_t d, float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = scales[i] * dot_sq8(q, codes + i * d, d);
}

// Integer path: the query as int16 (relative error <= 1/32766 of its largest
// component, far below the int8 codes' own 1/254) times the int8 codes with
// vpmaddwd: 16 dimensions per multiply instead of 8 with float FMAs, which
// brings the scan down to the memory-bandwidth floor.
void scan_sq8(const float* q, const int8_t* codes, const float* scales, size_t n, size_t d,
              float* out) {
  if (d % 64 != 0 || d > kSq8MaxIntDim) {
    scan_sq8_float(q, codes, scales, n, d, out);
    return;
  }
  float q_max = 0.0F;
  for (size_t j = 0; j < d; ++j) q_max = std::max(q_max, std::fabs(q[j]));
  if (q_max == 0.0F) {
    std::fill(out, out + n, 0.0F);
    return;
  }
  alignas(32) int16_t q16[kSq8MaxIntDim];
  const float to_int = kQ16Max / q_max;
  for (size_t j = 0; j < d; ++j)
    q16[j] = static_cast<int16_t>(std::lrint(q[j] * to_int));
  const float q_scale = q_max / kQ16Max;
  for (size_t i = 0; i < n; ++i) {
    const int8_t* r = codes + i * d;
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    __m256i a2 = _mm256_setzero_si256(), a3 = _mm256_setzero_si256();
    for (size_t j = 0; j < d; j += 64) {
      const __m256i c0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + j)));
      const __m256i c1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + j + 16)));
      const __m256i c2 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + j + 32)));
      const __m256i c3 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + j + 48)));
      a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(c0, _mm256_load_si256(reinterpret_cast<const __m256i*>(q16 + j))));
      a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(c1, _mm256_load_si256(reinterpret_cast<const __m256i*>(q16 + j + 16))));
      a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(c2, _mm256_load_si256(reinterpret_cast<const __m256i*>(q16 + j + 32))));
      a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(c3, _mm256_load_si256(reinterpret_cast<const __m256i*>(q16 + j + 48))));
    }
    const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3));
    out[i] = scales[i] * q_scale * static_cast<float>(hsum_epi32(sum));
  }
}

float ip_distance(const void* a, const void* b, const void* param) {
  return 1.0F - dot_f32(static_cast<const float*>(a), static_cast<const float*>(b),
                        *static_cast<const size_t*>(param));
}

}  // namespace

const Kernels& avx2_kernels() {
  static const Kernels k{"avx2", dot_f32, scan_f32, scan_sq8, ip_distance};
  return k;
}

}  // namespace candor::index_detail
