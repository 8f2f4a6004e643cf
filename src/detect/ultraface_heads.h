// RFB-320's raw heads decoded in C++, so that the detector's convolutional body can run on
// an image of any size. The ONNX file as shipped decodes its boxes inside the graph against
// prior boxes stored as constants of a 320x240 input (4,420 of them), which fixes the input
// size; the heads before that decoding are plain convolutions, valid at any size.
#pragma once

#include <array>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "candor/engine.h"

namespace candor {

// One of the detector's four heads: its stride in input pixels and the side of each of
// its anchors (square, in input pixels). The values are the prior-box configuration of
// Ultra-Light-Fast-Generic-Face-Detector-1MB (Linzaer, 2019): strides 8, 16, 32, 64 with
// anchors {10, 16, 24}, {32, 48}, {64, 96}, {128, 192, 256}. The test
// UltraFaceHeads.DecodingMatchesTheNetworksOwnAt320x240 checks them against the priors
// stored in the model.
struct UltraFaceHead {
  int stride;
  std::vector<float> anchors;
};
const std::array<UltraFaceHead, 4>& ultraface_heads();

// The manifest output keys naming each head's two tensors: "class_<stride>" (1 x 2A x H x W,
// logits [background, face] per anchor) and "box_<stride>" (1 x 4A x H x W: centre offsets
// and log-size offsets per anchor).
std::string ultraface_class_key(const UltraFaceHead& head);
std::string ultraface_box_key(const UltraFaceHead& head);

// A decoded anchor: box corners in input pixels and the face probability.
struct HeadBox {
  float x1, y1, x2, y2;
  float score;
};

// Decodes one head's anchors whose face probability is >= threshold and appends them to out.
// requires: logits is CV_32F 1 x 2A x H x W and regress CV_32F 1 x 4A x H x W, where
//           A = head.anchors.size() (std::invalid_argument otherwise); `input` is the size
//           of the image the network ran on (H = ceil(input.height / stride)).
// ensures:  boxes follow the model's own decoding (centre offsets scaled by 0.1 of the
//           anchor, sizes by exp(0.2 x offset), the variances of SSD, Liu et al. 2016).
void decode_ultraface_head(const cv::Mat& logits, const cv::Mat& regress, const UltraFaceHead& head,
                           cv::Size input, float threshold, std::vector<HeadBox>& out);

}  // namespace candor
