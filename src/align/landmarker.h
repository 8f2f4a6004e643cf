// 68-point landmarks (PFLD-style network, 64x64 grayscale): a box crop, then refined crops.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "candor/engine.h"
#include "infer/net_pool.h"

namespace candor {

class Landmarker {
 public:
  // requires: kMinLandmarkPasses <= passes <= kMaxLandmarkPasses (EngineOptions);
  //   throws std::invalid_argument otherwise.
  Landmarker(ModelSpec spec, std::unique_ptr<NetPool> nets, int passes);

  // Sets landmarks68 and the five ArcFace points of every face, in one batch per stage.
  // The first pass sees a square crop around the detector box; with passes > 1, the
  // other passes - 1 see square crops around the first pass's points (refine_scales()
  // times their extent, centre 5% lower), averaged, which frames the face the same way
  // whatever the detector's box looked like. With one pass, the first pass's points.
  void locate(const cv::Mat& bgr, std::span<Face> faces) const;

 private:
  // Runs the network on square regions of `bgr`, each made grey on its own; returns 68
  // image points per region.
  std::vector<std::vector<cv::Point2f>> run(const cv::Mat& bgr, const std::vector<cv::Rect>& regions) const;

  ModelSpec spec_;
  std::unique_ptr<NetPool> nets_;
  std::vector<float> refine_scales_;
};

// The enlargements of the refined crops for `passes` landmark passes: passes - 1 values
// 0.05 apart, centred on 1.10 (empty for one pass; 1.05, 1.10, 1.15 for four).
std::vector<float> refine_scales(int passes);

// Five ArcFace points from 68 iBUG points: eye centres (mean of 36-41, 42-47),
// nose tip (30), mouth corners (48, 54).
std::array<cv::Point2f, 5> five_points_from_68(std::span<const cv::Point2f> points68);

// A square region of side `side` centred at `center`, in integer pixels.
cv::Rect square_region(cv::Point2f center, float side);

// The pixels of `region` (which may extend past the image; the outside is black)
// resized to `size`; with a cv::ColorConversionCodes `conversion` (>= 0), converted
// before resizing: the same pixels as converting the whole image first, at the cost of
// the region only (a 12 MP photo made grey whole cost ~20 ms for its few faces).
cv::Mat crop_resized(const cv::Mat& image, const cv::Rect& region, cv::Size size, int conversion = -1);

}  // namespace candor
