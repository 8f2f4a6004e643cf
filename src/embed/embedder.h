// The recogniser: ArcFace-aligned 112x112 crops to L2-normalised templates.
#pragma once

#include <memory>
#include <span>

#include "candor/engine.h"
#include "infer/net_pool.h"

namespace candor {

class Embedder {
 public:
  Embedder(ModelSpec spec, std::unique_ptr<NetPool> nets);

  // The crop the network sees: the face warped by the similarity transform that takes
  // its five landmarks onto the ArcFace template (scaled to the network's input size).
  cv::Mat align(const cv::Mat& bgr, const Face& face) const;

  // Sets face.embedding for every face; one forward pass when the model is batchable.
  void embed(const cv::Mat& bgr, std::span<Face> faces) const;

  // Templates for already aligned crops (input-sized, BGR), one per crop, each
  // L2-normalised, with the norm it had before (Face::embedding_norm).
  struct Templates {
    std::vector<std::vector<float>> vectors;
    std::vector<float> norms;
  };
  Templates embed_aligned(const std::vector<cv::Mat>& crops) const;

  const ModelSpec& spec() const { return spec_; }

 private:
  ModelSpec spec_;
  std::unique_ptr<NetPool> nets_;
};

}  // namespace candor
