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
#include "candor/models.h"
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

// Writes `pixels` (8-bit BGR) into `blob` as the 1 x 3 x view.height x view.width float32
// tensor a network takes: (value - spec.mean) * spec.scale per channel, in RGB order when
// spec.color says so; the part of the view that `pixels` does not cover is 0 (what the mean
// normalises to, as in a tile padded with the mean). The same values as
// cv::dnn::blobFromImage of the padded tile, without the padded copy, the interleaved float
// image and the fresh 4-D allocation it makes per call: a 960x544 detector view spent 3-4 ms
// there, a fifth of the network's own time (perf, README "Engine speed").
// requires: pixels is CV_8UC3 (continuous or not), pixels.cols <= view.width,
//           pixels.rows <= view.height.
// ensures: blob is 1 x 3 x view.height x view.width CV_32F, continuous; its memory is
//          reused when it already has that shape.
// Thread safety: none shared; call with a blob of the calling thread's own.
void image_to_blob(const cv::Mat& pixels, cv::Size view, const InputSpec& spec, cv::Mat& blob);

}  // namespace candor
