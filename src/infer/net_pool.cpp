#include "infer/net_pool.h"

#include <fstream>

namespace candor {

Result<std::unique_ptr<NetPool>> NetPool::load(const std::filesystem::path& onnx, int replicas) {
  if (replicas < 1) throw std::invalid_argument("NetPool::load: replicas must be >= 1");
  std::ifstream in(onnx, std::ios::binary);
  if (!in) return Error{ErrorCode::kModelMissing, "cannot open model " + onnx.string()};
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::unique_ptr<NetPool> pool(new NetPool());
  try {
    for (int i = 0; i < replicas; ++i) {
      cv::dnn::Net net = cv::dnn::readNetFromONNX(bytes.data(), bytes.size());
      net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
      net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
      pool->nets_.push_back(std::move(net));
      pool->free_.push_back(static_cast<std::size_t>(i));
    }
    pool->output_names_ = pool->nets_.front().getUnconnectedOutLayersNames();
  } catch (const cv::Exception& e) {
    return Error{ErrorCode::kModelInvalid, "OpenCV cannot load " + onnx.string() + ": " + e.what()};
  }
  return pool;
}

NetPool::Lease NetPool::acquire() const {
  std::unique_lock lock(mutex_);
  released_.wait(lock, [this] { return !free_.empty(); });
  const std::size_t index = free_.back();
  free_.pop_back();
  return Lease(this, index);
}

std::vector<cv::Mat> NetPool::run(const cv::Mat& blob, const std::vector<std::string>& outputs) const {
  std::vector<cv::Mat> results;
  auto lease = acquire();
  lease.net().setInput(blob);
  lease.net().forward(results, outputs);
  for (cv::Mat& m : results) m = m.clone();
  return results;
}

NetPool::Lease::~Lease() {
  if (pool_ == nullptr) return;
  {
    std::lock_guard lock(pool_->mutex_);
    pool_->free_.push_back(index_);
  }
  pool_->released_.notify_one();
}

}  // namespace candor
