// A fixed set of replicas of one network behind one interface, whatever runs it:
// OpenCV DNN (OpenCvNetPool) or the oneDNN runtime (DnnlNetPool, dnnl_net.h). Neither a
// cv::dnn::Net nor a DnnlNet may run two inferences at once (both keep per-inference
// buffers), so a pool hands each caller a replica of its own for one run().
// Thread safety: run() may be called from any number of threads; at most replicas()
// inferences run at once, the others wait for a free replica.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "candor/inference.h"
#include "candor/result.h"

namespace candor {

class NetPool {
 public:
  // Reads the ONNX file once and builds `replicas` networks from its bytes.
  // requires: replicas >= 1.
  // ensures: kModelMissing when the file cannot be opened; kModelInvalid naming the
  //          file when the runtime cannot load it (or, for oneDNN, parse it or run its ops).
  static Result<std::unique_ptr<NetPool>> load(const std::filesystem::path& onnx, int replicas,
                                               InferenceBackend backend = InferenceBackend::kOpenCv);
  virtual ~NetPool() = default;

  // One inference on a free replica: the named outputs as continuous float32 Mats the
  // caller owns. Any tensor of the graph may be named with the oneDNN backends; OpenCV
  // knows its layers' names only.
  // Throws (cv::Exception, std::runtime_error) when the blob does not fit the network —
  // the engine's blobs always do, as OpenCV's forward() throws for them.
  virtual std::vector<cv::Mat> run(const cv::Mat& blob, const std::vector<std::string>& outputs) const = 0;
  virtual std::size_t replicas() const = 0;
  virtual InferenceBackend backend() const = 0;
};

}  // namespace candor
