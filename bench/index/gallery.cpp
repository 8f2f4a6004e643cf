#include "index/gallery.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numbers>
#include <stdexcept>

extern "C" int sgemm_(const char* transa, const char* transb, const int* m, const int* n,
                      const int* k, const float* alpha, const float* a, const int* lda,
                      const float* b, const int* ldb, const float* beta, float* c,
                      const int* ldc);

namespace candor::bench {
namespace {

// splitmix64 (Steele, Lea, Flood 2014) with Box-Muller: ~10x faster than
// std::normal_distribution over std::mt19937, which matters for 1M x 512 draws.
class FastNormal {
 public:
  explicit FastNormal(uint64_t seed) : state_(seed) {}
  float operator()() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = (static_cast<double>(next() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = static_cast<double>(next() >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double t = 2.0 * std::numbers::pi * u2;
    spare_ = static_cast<float>(r * std::sin(t));
    has_spare_ = true;
    return static_cast<float>(r * std::cos(t));
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
  float spare_ = 0.0F;
  bool has_spare_ = false;
};

void normalise(float* x, size_t d) {
  double s = 0.0;
  for (size_t j = 0; j < d; ++j) s += static_cast<double>(x[j]) * x[j];
  const auto inv = static_cast<float>(s > 0.0 ? 1.0 / std::sqrt(s) : 0.0);
  for (size_t j = 0; j < d; ++j) x[j] *= inv;
}

std::vector<int> dims_for_fractions(std::vector<double> eig) {
  std::sort(eig.begin(), eig.end(), std::greater<>());
  double total = 0.0;
  for (double e : eig) total += std::max(0.0, e);
  std::vector<int> out;
  for (double f : {0.5, 0.8, 0.9, 0.95}) {
    double acc = 0.0;
    int k = 0;
    while (k < static_cast<int>(eig.size()) && acc < f * total) acc += std::max(0.0, eig[static_cast<size_t>(k++)]);
    out.push_back(k);
  }
  return out;
}

}  // namespace

TemplateModel TemplateModel::synthetic(int dim, uint64_t seed, double tau) {
  const auto d = static_cast<size_t>(dim);
  TemplateModel m;
  m.dim_ = dim;
  m.source_ = "synthetic: exp(-i/" + std::to_string(static_cast<int>(tau)) +
              ") spectrum, random rotation, zero mean";
  m.mean_.assign(d, 0.0F);
  // Random orthonormal basis: modified Gram-Schmidt on Gaussian columns (stored as rows).
  FastNormal rng(seed);
  std::vector<double> q(d * d);
  for (double& v : q) v = rng();
  for (size_t i = 0; i < d; ++i) {
    double* qi = q.data() + i * d;
    for (size_t p = 0; p < i; ++p) {
      const double* qp = q.data() + p * d;
      double dot = 0.0;
      for (size_t j = 0; j < d; ++j) dot += qi[j] * qp[j];
      for (size_t j = 0; j < d; ++j) qi[j] -= dot * qp[j];
    }
    double n2 = 0.0;
    for (size_t j = 0; j < d; ++j) n2 += qi[j] * qi[j];
    const double inv = 1.0 / std::sqrt(n2);
    for (size_t j = 0; j < d; ++j) qi[j] *= inv;
  }
  std::vector<double> eig(d);
  for (size_t i = 0; i < d; ++i) eig[i] = std::exp(-static_cast<double>(i) / tau);
  // L[r][c] = basis_c[r] * sqrt(lambda_c): column c of L is the c-th axis.
  m.l_.assign(d * d, 0.0F);
  for (size_t c = 0; c < d; ++c)
    for (size_t r = 0; r < d; ++r)
      m.l_[r * d + c] = static_cast<float>(q[c * d + r] * std::sqrt(eig[c]));
  m.variance_dims_ = dims_for_fractions(eig);
  return m;
}

TemplateModel TemplateModel::fitted(int dim, const std::vector<float>& rows) {
  const auto d = static_cast<size_t>(dim);
  const size_t n = rows.size() / d;
  if (n * d != rows.size() || n <= d)
    throw std::invalid_argument("TemplateModel::fitted: need more templates than dimensions");
  TemplateModel m;
  m.dim_ = dim;
  m.source_ = "fitted to " + std::to_string(n) + " real templates (mean, full covariance)";
  std::vector<double> mean(d, 0.0);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < d; ++j) mean[j] += rows[i * d + j];
  for (double& v : mean) v /= static_cast<double>(n);
  m.mean_.assign(mean.begin(), mean.end());
  std::vector<float> centred(rows.size());
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < d; ++j) centred[i * d + j] = rows[i * d + j] - m.mean_[j];
  std::vector<float> cov(d * d);
  const int di = dim, ni = static_cast<int>(n);
  const float alpha = 1.0F / static_cast<float>(n - 1), zero = 0.0F;
  sgemm_("N", "T", &di, &di, &ni, &alpha, centred.data(), &di, centred.data(), &di, &zero,
         cov.data(), &di);
  // Cholesky C = L L^T in double, with a small ridge so that a rank-deficient
  // covariance (fewer distinct templates than dimensions matter) still factors.
  double trace = 0.0;
  for (size_t i = 0; i < d; ++i) trace += cov[i * d + i];
  const double ridge = 1e-6 * trace / static_cast<double>(d);
  std::vector<double> l(d * d, 0.0);
  for (size_t i = 0; i < d; ++i) {
    for (size_t j = 0; j <= i; ++j) {
      double s = cov[i * d + j] + (i == j ? ridge : 0.0);
      for (size_t p = 0; p < j; ++p) s -= l[i * d + p] * l[j * d + p];
      l[i * d + j] = i == j ? std::sqrt(std::max(s, ridge)) : s / l[j * d + j];
    }
  }
  m.l_.assign(l.begin(), l.end());
  // variance_dims_ stays empty: it would need an eigendecomposition, and the
  // fitted model reproduces the real spectrum whatever it is.
  return m;
}

std::vector<float> TemplateModel::sample(size_t n, uint64_t seed) const {
  const auto d = static_cast<size_t>(dim_);
  std::vector<float> out(n * d);
  constexpr size_t kChunk = 4096;
  std::vector<float> z(kChunk * d);
  FastNormal rng(seed);
  const float one = 1.0F, zero = 0.0F;
  const int di = dim_;
  for (size_t first = 0; first < n; first += kChunk) {
    const size_t rows = std::min(kChunk, n - first);
    for (size_t i = 0; i < rows * d; ++i) z[i] = rng();
    const int ri = static_cast<int>(rows);
    // Column-major: X^T (d x rows) = L (d x d) * Z^T (d x rows); L row-major is L^T column-major.
    sgemm_("T", "N", &di, &ri, &di, &one, l_.data(), &di, z.data(), &di, &zero,
           out.data() + first * d, &di);
    for (size_t i = 0; i < rows; ++i) {
      float* x = out.data() + (first + i) * d;
      for (size_t j = 0; j < d; ++j) x[j] += mean_[j];
      normalise(x, d);
    }
  }
  return out;
}

Probes plant_mates(const TemplateModel& model, const std::vector<float>& gallery, size_t nq,
                   uint64_t seed, float cos_lo, float cos_hi) {
  const auto d = static_cast<size_t>(model.dim());
  const size_t n = gallery.size() / d;
  if (n == 0) throw std::invalid_argument("plant_mates: empty gallery");
  Probes p;
  p.vectors = model.sample(nq, seed);
  FastNormal rng(seed ^ 0x5eedULL);
  for (size_t i = 0; i < nq; ++i) {
    const size_t mate = static_cast<size_t>(rng.next() % n);
    const float c = cos_lo + static_cast<float>(rng.uniform()) * (cos_hi - cos_lo);
    const float* g = gallery.data() + mate * d;
    float* u = p.vectors.data() + i * d;
    double dot = 0.0;
    for (size_t j = 0; j < d; ++j) dot += static_cast<double>(u[j]) * g[j];
    for (size_t j = 0; j < d; ++j) u[j] -= static_cast<float>(dot) * g[j];
    normalise(u, d);
    const float s = std::sqrt(1.0F - c * c);
    for (size_t j = 0; j < d; ++j) u[j] = c * g[j] + s * u[j];
    normalise(u, d);
    p.mate.push_back(mate);
    p.mate_cos.push_back(c);
  }
  return p;
}

std::vector<float> read_templates(const std::string& path, int dim) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error("cannot open " + path);
  const auto bytes = static_cast<size_t>(in.tellg());
  const size_t row = static_cast<size_t>(dim) * sizeof(float);
  if (bytes == 0 || bytes % row != 0)
    throw std::runtime_error(path + ": " + std::to_string(bytes) +
                             " bytes is not a whole number of " + std::to_string(dim) +
                             "-d float32 templates");
  std::vector<float> out(bytes / sizeof(float));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(bytes));
  if (!in) throw std::runtime_error("cannot read " + path);
  return out;
}

}  // namespace candor::bench
