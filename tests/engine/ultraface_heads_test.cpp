// The detector's raw heads decoded in C++ (detect/ultraface_heads.h) against the network's
// own decoding, which uses the prior boxes stored in the ONNX file for a 320x240 input.
// (Against a broken decoding — anchor centres at (i + 0.5) x stride, or unclamped anchors —
// the comparison fails by 1 and 5 px at the strides 32 and 64.)
#include <cmath>

#include <gtest/gtest.h>
#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>

#include "candor/models.h"
#include "detect/ultraface_heads.h"
#include "infer/net_pool.h"
#include "test_support.h"

namespace candor {
namespace {

TEST(UltraFaceHeads, DecodingMatchesTheNetworksOwnAt320x240) {
  auto spec = load_manifest(resolve_manifest({}))->find(ModelRole::kDetector);
  ASSERT_TRUE(spec);
  auto file = locate_model(*spec, resolve_model_dir({}), false);
  ASSERT_TRUE(file) << file.error().message;
  const cv::Mat image = cv::imread(test::testdata("face-api/sample1.jpg").string());
  ASSERT_FALSE(image.empty());
  const InputSpec& in = spec->input;
  const cv::Mat blob = cv::dnn::blobFromImage(image, in.scale, cv::Size(in.width, in.height), cv::Scalar::all(in.mean),
                                              true, false, CV_32F);
  // The graph's own decoding through OpenCV; the raw heads through the oneDNN runtime
  // (float32), which can stop the graph there.
  auto opencv = NetPool::load(*file, 1, InferenceBackend::kOpenCv);
  auto onednn = NetPool::load(*file, 1, InferenceBackend::kOneDnn);
  ASSERT_TRUE(opencv && onednn);
  std::vector<cv::Mat> outs = (*opencv)->run(blob, {spec->outputs.at("boxes"), spec->outputs.at("scores")});
  std::vector<std::string> heads;
  for (const UltraFaceHead& head : ultraface_heads()) {
    heads.push_back(spec->outputs.at(ultraface_class_key(head)));
    heads.push_back(spec->outputs.at(ultraface_box_key(head)));
  }
  for (cv::Mat& m : (*onednn)->run(blob, heads)) outs.push_back(std::move(m));
  const auto* boxes = outs[0].ptr<float>();   // 1 x N x 4, corners in [0, 1]
  const auto* scores = outs[1].ptr<float>();  // 1 x N x 2
  int offset = 0, faces = 0;
  for (std::size_t k = 0; k < ultraface_heads().size(); ++k) {
    const UltraFaceHead& head = ultraface_heads()[k];
    std::vector<HeadBox> decoded;
    decode_ultraface_head(outs[2 + 2 * k], outs[3 + 2 * k], head, cv::Size(in.width, in.height), 0.0f, decoded);
    const int anchors = static_cast<int>(head.anchors.size());
    const int h = outs[2 + 2 * k].size[2], w = outs[2 + 2 * k].size[3];
    ASSERT_EQ(decoded.size(), static_cast<std::size_t>(anchors * h * w));
    // decode_ultraface_head walks anchor, row, column; the graph concatenates row, column, anchor.
    std::size_t j = 0;
    for (int a = 0; a < anchors; ++a) {
      for (int y = 0; y < h; ++y) {
        for (int x = 0; x < w; ++x, ++j) {
          const int n = offset + (y * w + x) * anchors + a;
          const HeadBox& d = decoded[j];
          ASSERT_NEAR(d.score, scores[2 * n + 1], 1e-4f) << "head " << head.stride << " anchor " << n;
          ASSERT_NEAR(d.x1, boxes[4 * n] * in.width, 1e-2f) << "head " << head.stride << " anchor " << n;
          ASSERT_NEAR(d.y1, boxes[4 * n + 1] * in.height, 1e-2f) << "head " << head.stride << " anchor " << n;
          ASSERT_NEAR(d.x2, boxes[4 * n + 2] * in.width, 1e-2f) << "head " << head.stride << " anchor " << n;
          ASSERT_NEAR(d.y2, boxes[4 * n + 3] * in.height, 1e-2f) << "head " << head.stride << " anchor " << n;
          faces += d.score >= spec->threshold;
        }
      }
    }
    offset += anchors * h * w;
  }
  EXPECT_EQ(offset, outs[0].size[1]);
  EXPECT_GT(faces, 0);  // the comparison covered real faces, not only background
}

TEST(UltraFaceHeads, ATensorOfTheWrongShapeIsRefused) {
  const UltraFaceHead& head = ultraface_heads()[0];
  std::vector<HeadBox> out;
  const cv::Mat logits(std::vector<int>{1, 6, 4, 5}, CV_32F, cv::Scalar(0));
  const cv::Mat wrong(std::vector<int>{1, 8, 4, 5}, CV_32F, cv::Scalar(0));
  EXPECT_THROW(decode_ultraface_head(logits, wrong, head, cv::Size(40, 32), 0.5f, out), std::invalid_argument);
  const cv::Mat regress(std::vector<int>{1, 12, 4, 5}, CV_32F, cv::Scalar(0));
  decode_ultraface_head(logits, regress, head, cv::Size(40, 32), 0.5f, out);  // equal logits: probability 0.5
  EXPECT_EQ(out.size(), 3u * 4u * 5u);
}

}  // namespace
}  // namespace candor
