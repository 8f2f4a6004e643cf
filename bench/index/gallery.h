// Synthetic galleries that look like face templates, for `candor bench search`.
//
// Why: on near-uniform vectors an approximate index looks far worse than on
// real templates, and an exact one looks the same; real templates concentrate
// their variance (LFW: 50/80/90/95% in 35/79/103/119 of 512 dimensions,
// ../shared/docs/vector-search.md). So templates are drawn as
// normalise(mean + L z), z ~ N(0, I), with L either fitted to real templates
// (Cholesky of their covariance) or a random rotation of a decaying spectrum.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace candor::bench {

class TemplateModel {
 public:
  // Spectrum lambda_i = exp(-i / tau) in a random orthonormal basis, zero mean.
  // tau = 50 puts 50/80/90/95% of the variance in 35/80/115/150 dimensions,
  // ~100 effective dimensions (LFW: 35/79/103/119).
  static TemplateModel synthetic(int dim, uint64_t seed, double tau = 50.0);
  // Fits mean and covariance to n x dim row-major float32 templates.
  // requires: rows.size() == n * dim, n > dim.
  static TemplateModel fitted(int dim, const std::vector<float>& rows);

  int dim() const { return dim_; }
  const std::string& source() const { return source_; }
  // Dimensions holding 50/80/90/95% of the model's variance (before normalising).
  std::vector<int> variance_dims() const { return variance_dims_; }

  // n unit templates, row-major, reproducible from seed.
  std::vector<float> sample(size_t n, uint64_t seed) const;

 private:
  int dim_ = 0;
  std::string source_;
  std::vector<float> mean_;   // dim
  std::vector<float> l_;      // dim x dim row-major: x = mean + L z
  std::vector<int> variance_dims_;
};

// Probes with a planted mate: probe i = c_i g + sqrt(1 - c_i^2) u_i, with g the
// mate (gallery row mate[i]), u_i a fresh template orthogonalised against g, and
// c_i uniform in [cos_lo, cos_hi] (a genuine pair's cosine for this model is
// about 0.4-0.7, per vector-search.md), so cos(probe, mate) = c_i exactly.
struct Probes {
  std::vector<float> vectors;  // nq x dim
  std::vector<size_t> mate;    // gallery row of each probe's mate
  std::vector<float> mate_cos;
};
Probes plant_mates(const TemplateModel& model, const std::vector<float>& gallery, size_t nq,
                   uint64_t seed, float cos_lo = 0.4F, float cos_hi = 0.7F);

// Reads a raw little-endian float32 file of n x dim templates.
std::vector<float> read_templates(const std::string& path, int dim);

}  // namespace candor::bench
