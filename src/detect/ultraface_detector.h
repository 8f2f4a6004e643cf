// The RFB-320 detector (Ultra-Light-Fast-Generic-Face-Detector-1MB) run over an
// image pyramid with tiles, so that faces far smaller than the network's 320x240
// view are still found.
#pragma once

#include <memory>
#include <vector>

#include "candor/engine.h"
#include "infer/net_pool.h"

namespace candor {

// Greedy non-maximum suppression over faces sorted by score (best first). A face
// is dropped when it overlaps a kept one by IoU > iou_threshold, or when most of
// it (> containment) lies inside a kept one: the second rule removes the partial
// boxes that tiles at different pyramid levels produce for one face.
std::vector<Face> suppress_overlaps(std::vector<Face> faces, float iou_threshold, float containment);

class UltraFaceDetector {
 public:
  UltraFaceDetector(ModelSpec spec, std::unique_ptr<NetPool> nets);

  // See Engine::detect_boxes.
  std::vector<Face> detect(const cv::Mat& bgr, const DetectOptions& options) const;

  // The scales (network pixels per image pixel) of the pyramid for an image and options,
  // coarsest first; min_face_size is raised to smallest_min_face(image).
  std::vector<double> pyramid_scales(cv::Size image, int min_face_size) const;

  // See Engine::smallest_min_face.
  int smallest_min_face(cv::Size image) const;

  const ModelSpec& spec() const { return spec_; }

 private:
  // Runs the network on one net-sized tile whose `valid` part (origin in the scaled
  // image) holds pixels; appends faces in original image coordinates.
  void run_tile(const cv::Mat& tile, cv::Rect valid, bool cut_left, bool cut_top, bool cut_right,
                bool cut_bottom, double scale, float threshold, float max_size, std::vector<Face>& out) const;

  ModelSpec spec_;
  std::unique_ptr<NetPool> nets_;
};

}  // namespace candor
