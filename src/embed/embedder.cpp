#include "embed/embedder.h"

#include "align/face_warp.h"

#include <cmath>

#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>

namespace candor {

Embedder::Embedder(ModelSpec spec, std::unique_ptr<NetPool> nets) : spec_(std::move(spec)), nets_(std::move(nets)) {}

cv::Mat Embedder::align(const cv::Mat& bgr, const Face& face) const {
  const cv::Size size(spec_.input.width, spec_.input.height);
  const FaceWarp w = face_warp(bgr, face.landmarks, size);
  cv::Mat crop;
  cv::warpAffine(w.source, crop, w.transform, size, cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar::all(0));
  return crop;
}

Embedder::Templates Embedder::embed_aligned(const std::vector<cv::Mat>& crops) const {
  Templates templates;
  if (crops.empty()) return templates;
  const InputSpec& in = spec_.input;
  const cv::Size size(in.width, in.height);
  const std::size_t dim = static_cast<std::size_t>(spec_.dim);
  auto run = [&](const std::vector<cv::Mat>& batch) {
    cv::Mat blob = cv::dnn::blobFromImages(batch, in.scale, size, cv::Scalar::all(in.mean), in.color == ColorOrder::kRgb,
                                           false, CV_32F);
    const cv::Mat out = nets_->run(blob, {spec_.outputs.at("embedding")}).front();
    if (out.total() != batch.size() * dim) {
      throw std::runtime_error("recogniser " + spec_.id + " returned " + std::to_string(out.total()) +
                               " values for " + std::to_string(batch.size()) + " faces; the manifest says dim " +
                               std::to_string(dim));
    }
    const float* v = out.ptr<float>();  // N x dim (OpenCV may flatten the batch into 1 x N*dim)
    for (std::size_t i = 0; i < batch.size(); ++i) {
      std::vector<float> t(v + i * dim, v + (i + 1) * dim);
      double norm = 0;
      for (float x : t) norm += static_cast<double>(x) * x;
      const auto inv = static_cast<float>(norm > 0 ? 1.0 / std::sqrt(norm) : 0.0);
      for (float& x : t) x *= inv;
      templates.vectors.push_back(std::move(t));
      templates.norms.push_back(static_cast<float>(std::sqrt(norm)));
    }
  };
  if (spec_.batchable) {
    run(crops);
  } else {
    for (const cv::Mat& c : crops) run({c});
  }
  return templates;
}

void Embedder::embed(const cv::Mat& bgr, std::span<Face> faces) const {
  std::vector<cv::Mat> crops;
  crops.reserve(faces.size());
  for (const Face& f : faces) {
    if (f.landmarks68.empty() && f.landmarks[0] == f.landmarks[1]) {
      throw std::invalid_argument("embed: landmarks must be located first");
    }
    crops.push_back(align(bgr, f));
  }
  Templates templates = embed_aligned(crops);
  for (std::size_t i = 0; i < faces.size(); ++i) {
    faces[i].embedding = std::move(templates.vectors[i]);
    faces[i].embedding_norm = templates.norms[i];
  }
}

}  // namespace candor
