// Micro-benchmarks of the index kernels (Google Benchmark), one thread:
//   - the int8 and float32 scans, AVX2 vs portable, over a 100k x 512 gallery;
//   - the Flat choice between the blocked AVX2 scan and BLAS sgemm per batch
//     size, which sets FlatIndex::kBlasMinQueries;
//   - whole searches for Flat, FaissFlat and SQ8 per batch size.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "candor/index.h"
#include "index/gallery.h"
#include "kernels.h"

extern "C" void openblas_set_num_threads(int threads) __attribute__((weak));
extern "C" int sgemm_(const char* transa, const char* transb, const int* m, const int* n,
                      const int* k, const float* alpha, const float* a, const int* lda,
                      const float* b, const int* ldb, const float* beta, float* c,
                      const int* ldc);

namespace {

constexpr int kDim = 512;
constexpr size_t kRows = 100000;

struct Data {
  std::vector<float> gallery, queries;
  std::vector<int8_t> codes;
  std::vector<float> scales;
  Data() {
    if (openblas_set_num_threads) openblas_set_num_threads(1);
    omp_set_num_threads(1);
    auto model = candor::bench::TemplateModel::synthetic(kDim, 7);
    gallery = model.sample(kRows, 8);
    queries = model.sample(64, 9);
    codes.resize(gallery.size());
    scales.resize(kRows);
    for (size_t i = 0; i < kRows; ++i)
      scales[i] = candor::index_detail::encode_sq8(gallery.data() + i * kDim, kDim,
                                                  codes.data() + i * kDim);
  }
};
const Data& data() {
  static const Data d;
  return d;
}

const candor::index_detail::Kernels& pick(int avx2) {
  return avx2 ? candor::index_detail::avx2_kernels() : candor::index_detail::scalar_kernels();
}

void BM_ScanF32(benchmark::State& st) {
  const Data& d = data();
  const auto& k = pick(static_cast<int>(st.range(0)));
  std::vector<float> out(kRows);
  for (auto _ : st) {
    k.scan_f32(d.queries.data(), d.gallery.data(), kRows, kDim, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * kRows * kDim * sizeof(float)));
  st.SetLabel(k.name);
}
BENCHMARK(BM_ScanF32)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

void BM_ScanSq8(benchmark::State& st) {
  const Data& d = data();
  const auto& k = pick(static_cast<int>(st.range(0)));
  std::vector<float> out(kRows);
  for (auto _ : st) {
    k.scan_sq8(d.queries.data(), d.codes.data(), d.scales.data(), kRows, kDim, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * kRows * kDim));
  st.SetLabel(k.name);
}
BENCHMARK(BM_ScanSq8)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// Scores for nq queries, AVX2 scan in 128-row blocks (the FlatIndex scan path).
void BM_FlatBlockedScan(benchmark::State& st) {
  const Data& d = data();
  const auto nq = static_cast<size_t>(st.range(0));
  const auto& k = candor::index_detail::kernels();
  constexpr size_t kBlock = 128;
  std::vector<float> out(kBlock);
  for (auto _ : st) {
    for (size_t first = 0; first < kRows; first += kBlock)
      for (size_t q = 0; q < nq; ++q) {
        k.scan_f32(d.queries.data() + q * kDim, d.gallery.data() + first * kDim, kBlock, kDim,
                   out.data());
        benchmark::DoNotOptimize(out.data());
      }
  }
  st.counters["s_per_query"] = benchmark::Counter(
      static_cast<double>(st.iterations() * nq),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_FlatBlockedScan)->RangeMultiplier(2)->Range(1, 32)->Unit(benchmark::kMillisecond);

// The same scores through sgemm (the FlatIndex BLAS path).
void BM_FlatSgemm(benchmark::State& st) {
  const Data& d = data();
  const int nq = static_cast<int>(st.range(0));
  const int block = std::clamp((4 << 20) / nq, 1024, 65536);
  std::vector<float> out(static_cast<size_t>(block) * static_cast<size_t>(nq));
  const float one = 1.0F, zero = 0.0F;
  const int dim = kDim;
  for (auto _ : st) {
    for (size_t first = 0; first < kRows; first += static_cast<size_t>(block)) {
      const int rows = static_cast<int>(std::min<size_t>(static_cast<size_t>(block), kRows - first));
      sgemm_("T", "N", &rows, &nq, &dim, &one, d.gallery.data() + first * kDim, &dim,
             d.queries.data(), &dim, &zero, out.data(), &rows);
      benchmark::DoNotOptimize(out.data());
    }
  }
  st.counters["s_per_query"] = benchmark::Counter(
      static_cast<double>(st.iterations() * static_cast<size_t>(nq)),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_FlatSgemm)->RangeMultiplier(2)->Range(1, 32)->Unit(benchmark::kMillisecond);

// Whole searches (top 10) for a batch of st.range(1) queries.
void BM_Search(benchmark::State& st, const char* spec) {
  const Data& d = data();
  auto index = candor::make_index(kDim, spec);
  std::vector<int64_t> ids(kRows);
  std::iota(ids.begin(), ids.end(), 0);
  index->add(ids, d.gallery);
  const auto nq = static_cast<size_t>(st.range(0));
  const std::span<const float> q(d.queries.data(), nq * kDim);
  for (auto _ : st) benchmark::DoNotOptimize(index->search(q, 10));
  st.counters["s_per_query"] = benchmark::Counter(
      static_cast<double>(st.iterations() * nq),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK_CAPTURE(BM_Search, Flat, "Flat")->RangeMultiplier(4)->Range(1, 64)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Search, FaissFlat, "FaissFlat")->RangeMultiplier(4)->Range(1, 64)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Search, SQ8, "SQ8")->RangeMultiplier(4)->Range(1, 64)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
