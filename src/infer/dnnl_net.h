// One ONNX network compiled into oneDNN primitives (Debian's libdnnl 2.6), run on the
// calling thread only.
//
// What it is: a plan per (input shape, requested outputs), compiled on first use and
// cached. Convolutions (grouped and depthwise too) carry their bias, a following
// BatchNormalization folded into their weights, and a following Relu, PRelu, scalar Mul
// and residual Add as oneDNN post-ops; layouts are oneDNN's choice (format_tag::any) with
// reorders only where a consumer needs another one. Small tail ops (Softmax, Transpose,
// Reshape, Slice, Gemm, the box-decoding arithmetic) run as plain C++ on dense float32.
// Any tensor of the graph may be requested as an output, not only the graph's outputs.
//
// Precision kBf16 runs convolutions on bfloat16 weights and activations (AVX512-BF16 /
// AMX kernels) except the first one (the input image) and those whose result is a
// requested output, which stay float32; everything outside convolutions is float32. On a
// CPU without AVX-512 (no bf16 convolution in oneDNN 2.6) the convolutions run in float32.
//
// Threads: one inference uses one thread (oneDNN here is built on OpenMP; run() sets the
// calling thread's OpenMP team size to 1 for its duration and restores it). Thread
// safety: none — a DnnlNet must not run or compile on two threads at once; the parsed
// model it shares is immutable. Use one DnnlNet per replica (DnnlNetPool in net_pool.h).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "candor/result.h"
#include "infer/onnx_model.h"

namespace candor {

enum class InferencePrecision { kF32, kBf16 };

class DnnlNet {
 public:
  // requires: model != nullptr.
  // ensures: kModelInvalid naming `source` when the graph holds an op this runtime lacks.
  static Result<std::unique_ptr<DnnlNet>> create(std::shared_ptr<const onnx::Model> model, InferencePrecision precision,
                                                 std::string source);
  ~DnnlNet();
  DnnlNet(const DnnlNet&) = delete;
  DnnlNet& operator=(const DnnlNet&) = delete;

  // One inference. blob: a continuous CV_32F N-dimensional Mat (NCHW, as
  // cv::dnn::blobFromImage makes). Returns the named tensors as continuous CV_32F Mats with
  // the tensor's ONNX shape (a copy the caller owns).
  // ensures: kInvalidArgument for an unknown output name or an input the graph cannot take
  //          (e.g. a spatial size its constants do not fit); kModelInvalid when an op's
  //          attributes are unsupported.
  Result<std::vector<cv::Mat>> run(const cv::Mat& blob, const std::vector<std::string>& outputs);

  // Compiled plans held (one per input shape and output set, at most kMaxPlans).
  std::size_t plans() const { return plans_.size(); }
  // A plan owns the buffers of every tensor it computes (tens of MB for a detector view of
  // 1024 px), and a photo library of mixed sizes meets a new shape with most photos: the
  // least recently used plan is dropped beyond this many. A video stream uses 3-4 shapes, a
  // photo of one camera 3-5 (its pyramid levels), so one camera's plans stay.
  static constexpr std::size_t kMaxPlans = 8;

  struct Plan;

 private:
  DnnlNet(std::shared_ptr<const onnx::Model> model, InferencePrecision precision, std::string source);
  std::shared_ptr<const onnx::Model> model_;
  InferencePrecision precision_;
  std::string source_;
  std::map<std::string, std::unique_ptr<Plan>> plans_;
  std::map<std::string, std::uint64_t> last_used_;  // run() count at each plan's latest use
  std::uint64_t runs_ = 0;
};

}  // namespace candor
