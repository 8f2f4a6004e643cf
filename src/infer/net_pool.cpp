#include "infer/net_pool.h"

#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <stdexcept>

#include <opencv2/dnn.hpp>

#include "infer/dnnl_net.h"
#include "infer/onnx_model.h"

namespace candor {

std::string_view inference_backend_name(InferenceBackend backend) noexcept {
  switch (backend) {
    case InferenceBackend::kOpenCv: return "opencv";
    case InferenceBackend::kOneDnn: return "onednn";
    case InferenceBackend::kOneDnnBf16: return "onednn-bf16";
  }
  return "opencv";
}

std::optional<InferenceBackend> parse_inference_backend(std::string_view name) noexcept {
  for (const auto b : {InferenceBackend::kOpenCv, InferenceBackend::kOneDnn, InferenceBackend::kOneDnnBf16}) {
    if (inference_backend_name(b) == name) return b;
  }
  return std::nullopt;
}

namespace {

// Replicas of T, each leased to one caller at a time.
template <typename T>
class Replicas {
 public:
  explicit Replicas(std::vector<T> items) : items_(std::move(items)) {
    for (std::size_t i = 0; i < items_.size(); ++i) free_.push_back(i);
  }
  std::size_t size() const { return items_.size(); }

  // Runs f(replica) on a free replica, waiting for one if all are busy.
  template <typename F>
  auto with_replica(F f) const {
    std::size_t index;
    {
      std::unique_lock lock(mutex_);
      released_.wait(lock, [this] { return !free_.empty(); });
      index = free_.back();
      free_.pop_back();
    }
    struct Release {
      const Replicas* self;
      std::size_t index;
      ~Release() {
        {
          std::lock_guard lock(self->mutex_);
          self->free_.push_back(index);
        }
        self->released_.notify_one();
      }
    } release{this, index};
    return f(items_[index]);
  }

 private:
  mutable std::vector<T> items_;
  mutable std::mutex mutex_;
  mutable std::condition_variable released_;
  mutable std::vector<std::size_t> free_;
};

class OpenCvNetPool final : public NetPool {
 public:
  explicit OpenCvNetPool(std::vector<cv::dnn::Net> nets) : nets_(std::move(nets)) {}
  // cv::dnn::Net::forward returns Mats into the replica's own buffers: they are
  // deep-copied before the replica is released, so another inference cannot overwrite them.
  std::vector<cv::Mat> run(const cv::Mat& blob, const std::vector<std::string>& outputs) const override {
    return nets_.with_replica([&](cv::dnn::Net& net) {
      std::vector<cv::Mat> results;
      net.setInput(blob);
      net.forward(results, outputs);
      for (cv::Mat& m : results) m = m.clone();
      return results;
    });
  }
  std::size_t replicas() const override { return nets_.size(); }
  InferenceBackend backend() const override { return InferenceBackend::kOpenCv; }

 private:
  Replicas<cv::dnn::Net> nets_;
};

class DnnlNetPool final : public NetPool {
 public:
  DnnlNetPool(std::vector<std::unique_ptr<DnnlNet>> nets, InferenceBackend backend)
      : nets_(std::move(nets)), backend_(backend) {}
  // A batch runs as its images one after another on one replica, and the outputs are
  // stacked: a plan is compiled per input shape (tens of ms), and a batch size is part of
  // the shape, so batches of 1..N faces made N plans per replica for no gain (oneDNN's
  // single-thread kernels take a batch of n in n single runs' time here, as OpenCV's did).
  std::vector<cv::Mat> run(const cv::Mat& blob, const std::vector<std::string>& outputs) const override {
    const int batch = blob.dims >= 1 ? blob.size[0] : 0;
    auto results = nets_.with_replica([&](std::unique_ptr<DnnlNet>& net) -> Result<std::vector<cv::Mat>> {
      if (batch <= 1 || !blob.isContinuous()) return net->run(blob, outputs);
      std::vector<int> one(blob.size.p, blob.size.p + blob.dims);
      one[0] = 1;
      const std::size_t step = blob.total() / static_cast<std::size_t>(batch) * blob.elemSize();
      std::vector<cv::Mat> stacked;
      for (int i = 0; i < batch; ++i) {
        const cv::Mat image(static_cast<int>(one.size()), one.data(), blob.type(),
                            const_cast<uchar*>(blob.data) + static_cast<std::size_t>(i) * step);
        auto part = net->run(image, outputs);
        if (!part) return part.error();
        if (i == 0) {
          for (const cv::Mat& m : *part) {
            if (m.dims < 1) return Error{ErrorCode::kInternal, "an output without a batch dimension"};
            std::vector<int> dims(static_cast<std::size_t>(m.dims));
            for (int d = 0; d < m.dims; ++d) dims[static_cast<std::size_t>(d)] = m.size[d];
            dims.front() *= batch;
            stacked.emplace_back(m.dims, dims.data(), m.type());
          }
        }
        for (std::size_t k = 0; k < part->size(); ++k) {
          const cv::Mat& m = (*part)[k];
          const std::size_t bytes = m.total() * m.elemSize();
          if (bytes * static_cast<std::size_t>(batch) != stacked[k].total() * stacked[k].elemSize()) {
            return Error{ErrorCode::kInternal, "an output's size changed within a batch"};
          }
          std::memcpy(stacked[k].data + static_cast<std::size_t>(i) * bytes, m.data, bytes);
        }
      }
      return stacked;
    });
    if (!results) throw std::runtime_error(results.error().message);
    return std::move(results).value();
  }
  std::size_t replicas() const override { return nets_.size(); }
  InferenceBackend backend() const override { return backend_; }

 private:
  Replicas<std::unique_ptr<DnnlNet>> nets_;
  InferenceBackend backend_;
};

}  // namespace

Result<std::unique_ptr<NetPool>> NetPool::load(const std::filesystem::path& onnx, int replicas,
                                               InferenceBackend backend) {
  if (replicas < 1) throw std::invalid_argument("NetPool::load: replicas must be >= 1");
  std::ifstream in(onnx, std::ios::binary);
  if (!in) return Error{ErrorCode::kModelMissing, "cannot open model " + onnx.string()};
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (backend == InferenceBackend::kOpenCv) {
    std::vector<cv::dnn::Net> nets;
    try {
      for (int i = 0; i < replicas; ++i) {
        cv::dnn::Net net = cv::dnn::readNetFromONNX(bytes.data(), bytes.size());
        net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
        net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
        nets.push_back(std::move(net));
      }
    } catch (const cv::Exception& e) {
      return Error{ErrorCode::kModelInvalid, "OpenCV cannot load " + onnx.string() + ": " + e.what()};
    }
    return std::unique_ptr<NetPool>(new OpenCvNetPool(std::move(nets)));
  }
  auto model = onnx::parse_onnx(std::string_view(bytes.data(), bytes.size()), onnx.string());
  if (!model) return model.error();
  auto shared = std::make_shared<const onnx::Model>(std::move(model).value());
  const InferencePrecision precision =
      backend == InferenceBackend::kOneDnnBf16 ? InferencePrecision::kBf16 : InferencePrecision::kF32;
  std::vector<std::unique_ptr<DnnlNet>> nets;
  for (int i = 0; i < replicas; ++i) {
    auto net = DnnlNet::create(shared, precision, onnx.string());
    if (!net) return net.error();
    nets.push_back(std::move(net).value());
  }
  return std::unique_ptr<NetPool>(new DnnlNetPool(std::move(nets), backend));
}

void image_to_blob(const cv::Mat& pixels, cv::Size view, const InputSpec& spec, cv::Mat& blob) {
  CV_Assert(pixels.type() == CV_8UC3 && pixels.cols <= view.width && pixels.rows <= view.height);
  const int shape[] = {1, 3, view.height, view.width};
  blob.create(4, shape, CV_32F);
  // Split into 8-bit planes first (SIMD, a third of the bytes of a float image), then each
  // plane scaled into its place in the blob.
  thread_local std::vector<cv::Mat> planes;
  cv::split(pixels, planes);
  const cv::Rect covered(0, 0, pixels.cols, pixels.rows);
  for (int c = 0; c < 3; ++c) {
    cv::Mat plane(view.height, view.width, CV_32F, blob.ptr<float>(0, c));
    const int from = spec.color == ColorOrder::kRgb ? 2 - c : c;
    planes[static_cast<std::size_t>(from)].convertTo(plane(covered), CV_32F, spec.scale, -spec.mean * spec.scale);
    if (pixels.cols < view.width) plane(cv::Rect(pixels.cols, 0, view.width - pixels.cols, pixels.rows)).setTo(0);
    if (pixels.rows < view.height) plane.rowRange(pixels.rows, view.height).setTo(0);
  }
}

}  // namespace candor
