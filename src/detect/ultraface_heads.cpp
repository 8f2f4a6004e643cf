#include "detect/ultraface_heads.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace candor {
namespace {

// SSD's prior variances (Liu et al. 2016), which RFB-320 was trained with: a centre offset
// is in units of 0.1 anchor, a size offset in units of 0.2 of log size.
constexpr float kCentreVariance = 0.1f;
constexpr float kSizeVariance = 0.2f;

}  // namespace

const std::array<UltraFaceHead, 4>& ultraface_heads() {
  static const std::array<UltraFaceHead, 4> heads{{
      {8, {10.f, 16.f, 24.f}},
      {16, {32.f, 48.f}},
      {32, {64.f, 96.f}},
      {64, {128.f, 192.f, 256.f}},
  }};
  return heads;
}

std::string ultraface_class_key(const UltraFaceHead& head) { return "class_" + std::to_string(head.stride); }
std::string ultraface_box_key(const UltraFaceHead& head) { return "box_" + std::to_string(head.stride); }

void decode_ultraface_head(const cv::Mat& logits, const cv::Mat& regress, const UltraFaceHead& head,
                           cv::Size input, float threshold, std::vector<HeadBox>& out) {
  const int anchors = static_cast<int>(head.anchors.size());
  const auto shaped = [](const cv::Mat& m, int channels) {
    return m.type() == CV_32F && m.dims == 4 && m.size[0] == 1 && m.size[1] == channels && m.isContinuous();
  };
  if (!shaped(logits, 2 * anchors) || !shaped(regress, 4 * anchors) || logits.size[2] != regress.size[2] ||
      logits.size[3] != regress.size[3]) {
    throw std::invalid_argument("decode_ultraface_head: head tensors of the wrong shape");
  }
  const int h = logits.size[2], w = logits.size[3];
  const std::size_t plane = static_cast<std::size_t>(h) * static_cast<std::size_t>(w);
  const auto* l = logits.ptr<float>();
  const auto* r = regress.ptr<float>();
  // Anchor centres are spread evenly over the input: a head whose stride does not divide
  // the input (240 / 32 = 7.5) has ceil(7.5) = 8 rows, 30 px apart, as in the model's own
  // priors, which the detector's authors generate from each input size in the same way.
  const float step_x = static_cast<float>(input.width) / static_cast<float>(w);
  const float step_y = static_cast<float>(input.height) / static_cast<float>(h);
  // A probability >= threshold is a logit difference >= log(t / (1 - t)): most anchors are
  // rejected without an exp.
  const float min_margin = threshold <= 0.f ? -INFINITY
                           : threshold >= 1.f ? INFINITY
                                              : std::log(threshold / (1.f - threshold));
  for (int a = 0; a < anchors; ++a) {
    // Channels are anchor-major: the graph permutes to H x W x C and reshapes to (A, 2) / (A, 4).
    const float* background = l + (2 * a) * plane;
    const float* face = l + (2 * a + 1) * plane;
    const float* dx = r + (4 * a) * plane;
    const float* dy = r + (4 * a + 1) * plane;
    const float* dw = r + (4 * a + 2) * plane;
    const float* dh = r + (4 * a + 3) * plane;
    // The authors clamp every prior to the image (a 256 px anchor is 240 px high in a
    // 320x240 input); so does the model's stored copy.
    const float side = head.anchors[static_cast<std::size_t>(a)];
    const float anchor_w = std::min(side, static_cast<float>(input.width));
    const float anchor_h = std::min(side, static_cast<float>(input.height));
    for (int y = 0; y < h; ++y) {
      for (int x = 0; x < w; ++x) {
        const std::size_t i = static_cast<std::size_t>(y) * static_cast<std::size_t>(w) + static_cast<std::size_t>(x);
        const float margin = face[i] - background[i];
        if (margin < min_margin) continue;
        const float cx = (static_cast<float>(x) + 0.5f) * step_x + dx[i] * kCentreVariance * anchor_w;
        const float cy = (static_cast<float>(y) + 0.5f) * step_y + dy[i] * kCentreVariance * anchor_h;
        const float half_w = 0.5f * anchor_w * std::exp(dw[i] * kSizeVariance);
        const float half_h = 0.5f * anchor_h * std::exp(dh[i] * kSizeVariance);
        out.push_back({cx - half_w, cy - half_h, cx + half_w, cy + half_h, 1.f / (1.f + std::exp(-margin))});
      }
    }
  }
}

}  // namespace candor
