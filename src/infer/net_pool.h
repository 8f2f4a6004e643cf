// A fixed set of replicas of one network. cv::dnn::Net::forward mutates the net's
// internal blobs, so one Net must never run two inferences at once; the pool hands
// each caller a replica of its own for the duration of a Lease.
#pragma once

#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <vector>

#include <opencv2/dnn.hpp>

#include "candor/result.h"

namespace candor {

class NetPool {
 public:
  // Reads the ONNX file once and builds `replicas` networks from the bytes.
  // ensures: kModelInvalid naming the file when OpenCV cannot load it.
  static Result<std::unique_ptr<NetPool>> load(const std::filesystem::path& onnx, int replicas);

  class Lease {
   public:
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Lease(Lease&& other) noexcept : pool_(other.pool_), index_(other.index_) { other.pool_ = nullptr; }
    ~Lease();
    cv::dnn::Net& net() const { return pool_->nets_[index_]; }

   private:
    friend class NetPool;
    Lease(const NetPool* pool, std::size_t index) : pool_(pool), index_(index) {}
    const NetPool* pool_;
    std::size_t index_;
  };

  // Blocks until a replica is free. Thread-safe. The Mats a replica's forward()
  // returns point into the replica's own buffers: read them, or copy them, before the
  // Lease ends, or prefer run() which does that.
  Lease acquire() const;

  // One inference on a free replica: the named outputs, deep-copied (continuous)
  // before the replica is released, so another thread's inference cannot overwrite them.
  std::vector<cv::Mat> run(const cv::Mat& blob, const std::vector<std::string>& outputs) const;
  std::size_t replicas() const { return nets_.size(); }
  // Whether run() takes inputs of any spatial size. OpenCV 4.6 plans a graph's shapes as a
  // whole, so a graph whose constants fix its input size (RFB-320's priors) takes no other.
  bool accepts_any_size() const { return false; }
  const std::vector<std::string>& output_names() const { return output_names_; }

 private:
  NetPool() = default;
  mutable std::vector<cv::dnn::Net> nets_;
  std::vector<std::string> output_names_;
  mutable std::mutex mutex_;
  mutable std::condition_variable released_;
  mutable std::vector<std::size_t> free_;
};

}  // namespace candor
