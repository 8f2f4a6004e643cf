// The RFB-320 detector (Ultra-Light-Fast-Generic-Face-Detector-1MB) run over an
// image pyramid with tiles, so that faces far smaller than the network's 320x240
// view are still found.
#pragma once

#include <memory>
#include <vector>

#include "candor/engine.h"
#include "detect/ultraface_heads.h"
#include "infer/net_pool.h"

namespace candor {

// Greedy non-maximum suppression over faces sorted by score (best first). A face
// is dropped when it overlaps a kept one by IoU > iou_threshold, or when most of
// it (> containment) lies inside a kept one: the second rule removes the partial
// boxes that tiles at different pyramid levels produce for one face.
std::vector<Face> suppress_overlaps(std::vector<Face> faces, float iou_threshold, float containment);

// The origins of the tiles of `tile` network pixels that cover `extent` pixels of a
// pyramid level: the first at 0, the last ending at the edge, evenly spaced and
// overlapping by at least the tile overlap (ultraface_detector.cpp, kTileOverlap).
std::vector<int> tile_origins(int extent, int tile);
// The same for views that overlap by `overlap` pixels (< tile).
std::vector<int> tile_origins(int extent, int tile, int overlap);

// The largest face (network pixels, longer box side) a tiled level keeps, and how close
// to a tile's interior edge a box may come before it counts as cut (both for tests).
int tiled_face_limit_px();
int tile_cut_margin_px();

class UltraFaceDetector {
 public:
  UltraFaceDetector(ModelSpec spec, std::unique_ptr<NetPool> nets);

  // See Engine::detect_boxes. When the pyramid finds nothing, search_padded runs too.
  std::vector<Face> detect(const cv::Mat& bgr, const DetectOptions& options) const;

  // The whole image alone, in the middle of a canvas twice its width and height padded
  // with the network's zero, in one network view. The detector, trained on faces with
  // context around them, misses most faces cut inside their box (ID-style crops, 92x112
  // portraits): 17 of the 22 face-api sample faces cut 10% inside their box are found
  // without it, 21 with it (15 and 21 in grey); Detect.FindsAFaceThatFillsTheFrame.
  // One more detector run, only for images where nothing was found.
  std::vector<Face> search_padded(const cv::Mat& bgr, const DetectOptions& options) const;

  // The scales (network pixels per image pixel) of the pyramid for an image and options,
  // coarsest first; min_face_size is raised to smallest_min_face(image). With wide views
  // one step may be longer than the others (ultraface_detector.cpp, kMaxWideStep).
  std::vector<double> pyramid_scales(cv::Size image, int min_face_size) const;

  // The largest face (network pixels, longer box side) that level `level` of `scales`
  // keeps: every face at the coarsest (0); at a finer level, the faces the next coarser
  // level sees at less than 1.2x the smallest face it finds reliably.
  float max_face_px(const std::vector<double>& scales, std::size_t level) const;

  // See Engine::smallest_min_face.
  int smallest_min_face(cv::Size image) const;

  const ModelSpec& spec() const { return spec_; }

 private:
  // The network on one view of size `view` (net-sized, or any size when any_size_) whose
  // top-left part holds `pixels` and the rest padding: candidate boxes in the view's pixels
  // with a face probability >= threshold.
  std::vector<HeadBox> run_view(const cv::Mat& pixels, cv::Size view, float threshold) const;

  // The view a level is searched in: the network's input size, or with any_size_ a finer
  // level whole (rounded up to the coarsest head's stride) up to kWideView a side.
  cv::Size view_size(int level_width, int level_height, bool coarsest) const;

  // Runs the network on the `valid` part of a pyramid level (scale x the image) in a view
  // of size `view`; a box near an edge of `valid` inside the level is cut and dropped.
  // Appends faces in original image coordinates.
  void run_tile(const cv::Mat& level, cv::Rect valid, cv::Size view, double scale, float threshold, float max_size,
                std::vector<Face>& out) const;

  // Runs the pyramid levels `scales` (coarsest first) over bgr in tiles; appends faces in
  // bgr's coordinates, not yet suppressed.
  void search_levels(const cv::Mat& bgr, const std::vector<double>& scales, float score_threshold,
                     std::vector<Face>& candidates) const;

  // Suppresses overlaps, drops faces below the minimum size, clamps boxes to the image and
  // keeps the best options.max_faces.
  std::vector<Face> select(std::vector<Face> candidates, cv::Size image, const DetectOptions& options) const;

  ModelSpec spec_;
  std::unique_ptr<NetPool> nets_;
  // The backend runs any input size and the manifest names the raw heads: finer levels
  // run in wide views decoded in C++ (ultraface_heads.h), not 320x240 tiles.
  bool any_size_ = false;
};

}  // namespace candor
