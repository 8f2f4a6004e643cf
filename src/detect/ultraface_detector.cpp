#include "detect/ultraface_detector.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <opencv2/imgproc.hpp>

namespace candor {
namespace {

// The smallest face, in network pixels, that RFB-320 finds reliably. Its smallest
// anchors are 10, 16 and 24 px at stride 8 (the model's prior-box configuration);
// measured on the face-api samples scaled down, recall falls off below ~20 px.
constexpr double kMinDetectablePx = 20.0;
// Successive pyramid levels differ by this factor; the anchors span 10..256 px, so a
// face is inside the anchors' range at one level or the next.
constexpr double kLevelStep = 2.5;
// A box closer than this to a tile edge that is interior to the image is cut by the
// tile: the same face appears whole in the neighbouring tile or a coarser level.
constexpr float kCutMargin = 2.0f;
// Above the coarsest level, a face larger than this (network pixels) would have been
// at least kMinDetectablePx * 1.2 at the coarser level, where the detector sees its
// context; finer levels keep only the small faces the coarser one cannot see. Without
// this rule, tiles fire on hands and fabric that the whole view rejects (face-api samples).
// Tiles of the finer levels see less context than the whole view, and their false
// detections (hair, jewellery in the face-api samples) score 0.86-0.90 while real
// faces of 22-48 px score >= 0.975 there (faces shrunk into a 1920x1080 canvas).
// So finer levels require a score closer to 1: t' = t + (1 - t) * 0.8 (0.94 for 0.7).
constexpr float kFineLevelStrictness = 0.8f;
// The finest pyramid level holds at most this many pixels, so that what one image costs
// is bounded whatever its size and the minimum face asked for: each level above the
// finest holds 1/6.25 as many pixels as the one below it, and the coarsest (one view) at
// most as many as the one below it, so all hold at most 1.4x the finest (a tile advances
// 256 x 176 px: 217 tiles for a 4000x3000 photo at 24 px and for 7300x5470 at any
// minimum face up to 44 px; 265 with the earlier overlap of 80, 309 when levels were
// planned from the coarsest). 8.3 MP is
// what a 12 MP photo (4000x3000) needs at the default minimum face of 24 px, which stays as it
// was; a 40 MP image is searched from 44 px up, and only images up to 1.3 MP are
// upsampled 2.5x for 8 px faces (a 40 MP one was, to 250 MP: 83 s and 1.1 GB).
constexpr double kMaxFinestLevelPixels = 4000.0 * 3000.0 * (kMinDetectablePx / 24) * (kMinDetectablePx / 24);
constexpr float kMaxFineLevelFacePx = static_cast<float>(kMinDetectablePx * kLevelStep * 1.2);
// Tiles overlap by this many network pixels: the largest face a tiled (finer) level keeps,
// plus the cut margin on both sides, so every such face lies wholly inside some tile at
// least kCutMargin from its interior edges (UltraFaceTiles.EveryKeptFaceLiesWhollyInATile).
// Only finer levels are tiled: the coarsest is one view. It was 80, which tiled a
// 4000x3000 photo's level for 60 px faces (1333x1000) 6 x 6 times, now 5 x 6: 35 detector
// runs a photo in all, not 41 (README "Photo libraries", ingest).
constexpr int kTileOverlap = static_cast<int>(kMaxFineLevelFacePx + 2 * kCutMargin);
// With a backend that takes any input size, a finer level runs in views of up to this many
// network pixels a side instead of 320x240 tiles: a 1920x1080 frame's level for 40 px faces
// (960x540) in one view, with no overlap to compute twice; a 12 MP photo's finest level
// (3333x2500) in 12. The cap bounds one view's activations (~16 MB for its first layer).
constexpr int kWideView = 1024;
// Wide views see a level whole (or in views of up to kWideView), with the context the
// coarsest view has, so a wide-view pyramid may take one longer step than kLevelStep: a
// level less than 1.25x finer than the whole view is dropped, and the level below it keeps
// faces up to 1.2 x kMinDetectablePx x its step (75 px for the 3.125 that is the most this
// allows) instead of kMaxFineLevelFacePx. A 1920x1080 frame at 40 px had levels 1/6, 0.2
// and 0.5, the 0.2 level for faces the whole view at 1/6 also sees (100-300 px); its wide
// view (384x240) and its resize cost 1.5 detector runs of the 9 a frame took.
constexpr double kMaxWideStep = kLevelStep * 1.25;

}  // namespace

std::vector<int> tile_origins(int extent, int tile, int overlap) {
  std::vector<int> o{0};
  if (extent <= tile) return o;
  const int steps = static_cast<int>(std::ceil(static_cast<double>(extent - tile) / (tile - overlap)));
  for (int i = 1; i <= steps; ++i) o.push_back(static_cast<int>(std::lround(static_cast<double>(extent - tile) * i / steps)));
  return o;
}

std::vector<int> tile_origins(int extent, int tile) { return tile_origins(extent, tile, kTileOverlap); }

int tiled_face_limit_px() { return static_cast<int>(kMaxFineLevelFacePx); }
int tile_cut_margin_px() { return static_cast<int>(kCutMargin); }

std::vector<Face> suppress_overlaps(std::vector<Face> faces, float iou_threshold, float containment) {
  std::stable_sort(faces.begin(), faces.end(), [](const Face& a, const Face& b) { return a.score > b.score; });
  std::vector<Face> kept;
  for (Face& f : faces) {
    bool drop = false;
    for (const Face& k : kept) {
      const float inter = intersection_area(f.box, k.box);
      const float smaller = std::min(f.box.area(), k.box.area());
      if (iou(f.box, k.box) > iou_threshold || (smaller > 0 && inter / smaller > containment)) {
        drop = true;
        break;
      }
    }
    if (!drop) kept.push_back(std::move(f));
  }
  return kept;
}

UltraFaceDetector::UltraFaceDetector(ModelSpec spec, std::unique_ptr<NetPool> nets)
    : spec_(std::move(spec)), nets_(std::move(nets)) {
  const auto& outputs = spec_.outputs;
  // OpenCV 4.6 plans a graph's shapes as a whole, so the stored priors fix its input to
  // 320x240; the oneDNN runtime runs the convolutional body at any size.
  any_size_ = nets_ != nullptr && nets_->backend() != InferenceBackend::kOpenCv &&
              std::all_of(ultraface_heads().begin(), ultraface_heads().end(), [&](const UltraFaceHead& head) {
                return outputs.contains(ultraface_class_key(head)) && outputs.contains(ultraface_box_key(head));
              });
}

int UltraFaceDetector::smallest_min_face(cv::Size image) const {
  const double pixels = static_cast<double>(image.width) * image.height;
  return std::max(1, static_cast<int>(std::ceil(kMinDetectablePx * std::sqrt(pixels / kMaxFinestLevelPixels) - 1e-9)));
}

std::vector<double> UltraFaceDetector::pyramid_scales(cv::Size image, int min_face_size) const {
  const double fit = std::min(static_cast<double>(spec_.input.width) / image.width,
                              static_cast<double>(spec_.input.height) / image.height);
  const double finest = kMinDetectablePx / std::max({1, min_face_size, smallest_min_face(image)});
  // Planned from the finest level up, so that the one step shorter than kLevelStep falls
  // next to the coarsest (whole-view) level, where a level costs one or two tiles, and not
  // next to the finest, where it cost most of the work (1920x1080 at 40 px: levels 1/6,
  // 0.42 and 0.5 took 1 + 9 + 12 tiles, now 1/6, 0.2 and 0.5 take 1 + 2 + 12).
  std::vector<double> scales;
  for (double s = finest; s > fit; s /= kLevelStep) scales.push_back(s);
  // Wide views: the level next to the whole view is dropped when the step over it stays
  // within kMaxWideStep (see there); tiles keep it, their levels see too little context.
  if (any_size_ && scales.size() >= 2 && scales[scales.size() - 2] / fit <= kMaxWideStep * (1 + 1e-9)) {
    scales.pop_back();
  }
  scales.push_back(fit);
  std::reverse(scales.begin(), scales.end());
  return scales;
}

float UltraFaceDetector::max_face_px(const std::vector<double>& scales, std::size_t level) const {
  if (level == 0) return std::numeric_limits<float>::max();  // the whole view keeps every face
  if (!any_size_) return kMaxFineLevelFacePx;  // the tile overlap is sized to it
  // A face larger than this is at least 1.2 x kMinDetectablePx at the next coarser level.
  const double step = scales[level] / scales[level - 1];
  return std::max(kMaxFineLevelFacePx, static_cast<float>(kMinDetectablePx * 1.2 * step));
}

std::vector<HeadBox> UltraFaceDetector::run_view(const cv::Mat& pixels, cv::Size view, float threshold) const {
  // One blob per thread, reused: a wide view's is 6 MB, and a fresh one per view cost its
  // page faults each time.
  thread_local cv::Mat blob;
  image_to_blob(pixels, view, spec_.input, blob);
  std::vector<HeadBox> boxes;
  if (any_size_) {
    std::vector<std::string> names;
    for (const UltraFaceHead& head : ultraface_heads()) {
      names.push_back(spec_.outputs.at(ultraface_class_key(head)));
      names.push_back(spec_.outputs.at(ultraface_box_key(head)));
    }
    const std::vector<cv::Mat> outs = nets_->run(blob, names);
    for (std::size_t k = 0; k < ultraface_heads().size(); ++k) {
      decode_ultraface_head(outs[2 * k], outs[2 * k + 1], ultraface_heads()[k], view, threshold, boxes);
    }
    return boxes;
  }
  // The graph's own decoding, for a backend bound to the 320x240 its priors were stored for.
  const std::vector<cv::Mat> outs = nets_->run(blob, {spec_.outputs.at("boxes"), spec_.outputs.at("scores")});
  const int n = outs[0].size[1];
  const auto* b = outs[0].ptr<float>();  // 1 x N x 4: x1, y1, x2, y2 in [0, 1]
  const auto* s = outs[1].ptr<float>();  // 1 x N x 2: background, face
  const auto w = static_cast<float>(view.width), h = static_cast<float>(view.height);
  for (int i = 0; i < n; ++i) {
    if (s[2 * i + 1] < threshold) continue;
    boxes.push_back({b[4 * i] * w, b[4 * i + 1] * h, b[4 * i + 2] * w, b[4 * i + 3] * h, s[2 * i + 1]});
  }
  return boxes;
}

void UltraFaceDetector::run_tile(const cv::Mat& level, cv::Rect valid, cv::Size view, double scale, float threshold,
                                 float max_size, std::vector<Face>& out) const {
  const float valid_w = static_cast<float>(valid.width), valid_h = static_cast<float>(valid.height);
  const cv::Point origin = valid.tl();
  const bool cut_left = valid.x > 0, cut_top = valid.y > 0;
  const bool cut_right = valid.br().x < level.cols, cut_bottom = valid.br().y < level.rows;
  for (const HeadBox& box : run_view(level(valid), view, threshold)) {
    const float x1 = std::clamp(box.x1, 0.0f, valid_w), y1 = std::clamp(box.y1, 0.0f, valid_h);
    const float x2 = std::clamp(box.x2, 0.0f, valid_w), y2 = std::clamp(box.y2, 0.0f, valid_h);
    if (x2 - x1 < 2 || y2 - y1 < 2 || std::max(x2 - x1, y2 - y1) > max_size) continue;
    if ((cut_left && x1 < kCutMargin) || (cut_top && y1 < kCutMargin) ||
        (cut_right && x2 > valid_w - kCutMargin) || (cut_bottom && y2 > valid_h - kCutMargin)) {
      continue;
    }
    Face f;
    const auto inv = static_cast<float>(1.0 / scale);
    f.box = {(x1 + static_cast<float>(origin.x)) * inv, (y1 + static_cast<float>(origin.y)) * inv, (x2 - x1) * inv,
             (y2 - y1) * inv};
    f.score = box.score;
    out.push_back(f);
  }
}

cv::Size UltraFaceDetector::view_size(int level_width, int level_height, bool coarsest) const {
  const cv::Size net(spec_.input.width, spec_.input.height);
  if (!any_size_ || coarsest) return net;
  // A level smaller than a wide view runs whole, its size rounded up to a multiple of 32
  // px: fewer distinct shapes for the backend to plan (photos of one camera share them),
  // at most 31 px of padding (the network's zero, as in a partial tile; 960x540 runs as
  // 960x544, where rounding to the coarsest head's 64 px cost 7% more pixels).
  constexpr int step = 32;
  const auto round_up = [](int v) { return (v + step - 1) / step * step; };
  return {std::min(round_up(std::max(level_width, net.width)), kWideView),
          std::min(round_up(std::max(level_height, net.height)), kWideView)};
}

void UltraFaceDetector::search_levels(const cv::Mat& bgr, const std::vector<double>& scales, float score_threshold,
                                      std::vector<Face>& candidates) const {
  for (std::size_t level = 0; level < scales.size(); ++level) {
    const double scale = scales[level];
    const bool coarsest = level == 0;
    const float max_size = max_face_px(scales, level);
    const float threshold =
        coarsest ? score_threshold : score_threshold + (1 - score_threshold) * kFineLevelStrictness;
    const int sw = std::max(1, static_cast<int>(std::lround(bgr.cols * scale)));
    const int sh = std::max(1, static_cast<int>(std::lround(bgr.rows * scale)));
    cv::Mat scaled;
    cv::resize(bgr, scaled, cv::Size(sw, sh), 0, 0, scale < 1.0 ? cv::INTER_AREA : cv::INTER_LINEAR);
    const cv::Size view = view_size(sw, sh, coarsest);
    // Views overlap by the largest face the level keeps and the cut margin on both sides.
    const int overlap = coarsest ? 0 : static_cast<int>(std::ceil(max_size)) + 2 * static_cast<int>(kCutMargin);
    const auto xs = tile_origins(sw, view.width, overlap), ys = tile_origins(sh, view.height, overlap);
    for (int oy : ys) {
      for (int ox : xs) {
        const cv::Rect roi(ox, oy, std::min(view.width, sw - ox), std::min(view.height, sh - oy));
        // Partial tiles are padded (letterboxed, image_to_blob), not stretched, so the network
        // sees undistorted faces; run_tile keeps boxes within the valid part only.
        run_tile(scaled, roi, view, scale, threshold, max_size, candidates);
      }
    }
  }
}

std::vector<Face> UltraFaceDetector::detect(const cv::Mat& bgr, const DetectOptions& options) const {
  if (bgr.type() != CV_8UC3 || bgr.empty()) throw std::invalid_argument("detect: image must be non-empty CV_8UC3");
  std::vector<Face> candidates;
  search_levels(bgr, pyramid_scales(bgr.size(), options.min_face_size), options.score_threshold, candidates);
  std::vector<Face> faces = select(std::move(candidates), bgr.size(), options);
  if (!faces.empty()) return faces;
  // Nothing found: the image may be a face that fills the frame (an ID-style crop).
  return search_padded(bgr, options);
}

std::vector<Face> UltraFaceDetector::search_padded(const cv::Mat& bgr, const DetectOptions& options) const {
  // Shrunk first, then padded, so that a large image costs no more than a small one: the
  // padded canvas fills one network view at scale 1.
  const double s = std::min(spec_.input.width / (2.0 * bgr.cols), spec_.input.height / (2.0 * bgr.rows));
  cv::Mat small;
  cv::resize(bgr, small, cv::Size(std::max(1, static_cast<int>(bgr.cols * s)), std::max(1, static_cast<int>(bgr.rows * s))),
             0, 0, s < 1.0 ? cv::INTER_AREA : cv::INTER_LINEAR);
  const int px = small.cols / 2, py = small.rows / 2;
  cv::Mat padded;
  cv::copyMakeBorder(small, padded, py, py, px, px, cv::BORDER_CONSTANT, cv::Scalar::all(spec_.input.mean));
  std::vector<Face> candidates;
  search_levels(padded, {1.0}, options.score_threshold, candidates);
  const auto inv = static_cast<float>(1.0 / s);
  for (Face& f : candidates) {
    f.box = {(f.box.x - static_cast<float>(px)) * inv, (f.box.y - static_cast<float>(py)) * inv, f.box.width * inv,
             f.box.height * inv};
  }
  return select(std::move(candidates), bgr.size(), options);
}

std::vector<Face> UltraFaceDetector::select(std::vector<Face> candidates, cv::Size image,
                                            const DetectOptions& options) const {
  // IoU 0.4 as the model's authors use (onnx_config.nms_threshold in the model pack's JS).
  std::vector<Face> faces = suppress_overlaps(std::move(candidates), 0.4f, 0.7f);
  const float min_side = 0.75f * static_cast<float>(options.min_face_size);  // detector boxes run tight
  std::erase_if(faces, [&](const Face& f) { return std::max(f.box.width, f.box.height) < min_side; });
  for (Face& f : faces) {  // clamp to the image
    const float x2 = std::min(f.box.right(), static_cast<float>(image.width));
    const float y2 = std::min(f.box.bottom(), static_cast<float>(image.height));
    f.box.x = std::max(0.0f, f.box.x);
    f.box.y = std::max(0.0f, f.box.y);
    f.box.width = x2 - f.box.x;
    f.box.height = y2 - f.box.y;
  }
  if (faces.size() > static_cast<std::size_t>(std::max(0, options.max_faces))) faces.resize(static_cast<std::size_t>(options.max_faces));
  return faces;
}

}  // namespace candor
