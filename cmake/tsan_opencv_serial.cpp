// Linked into every executable of the ThreadSanitizer build only (cmake/candor_tsan.cmake):
// OpenCV's parallel loops run on the calling thread, so TSan sees no uninstrumented workers.
#include <opencv2/core/utility.hpp>

namespace {

// cv::setNumThreads(0): "OpenCV will disable threading optimizations and run all its
// functions sequentially". Runs before main, after OpenCV's own initialisation.
const bool kOpenCvSerial = [] {
  cv::setNumThreads(0);
  return true;
}();

}  // namespace
