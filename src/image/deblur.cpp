// Wiener deconvolution of a linear motion blur: see include/candor/deblur.h.
#include "candor/deblur.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include <opencv2/core.hpp>

namespace candor {

cv::Mat motion_kernel(cv::Point2f smear) {
  const float length = std::hypot(smear.x, smear.y);
  if (!(length < 1000)) throw std::invalid_argument("motion_kernel: a smear of 1000 px or more (or NaN)");
  const int half = static_cast<int>(std::ceil(std::max(std::abs(smear.x), std::abs(smear.y)) / 2)) + 1;
  cv::Mat k = cv::Mat::zeros(2 * half + 1, 2 * half + 1, CV_32F);
  // The segment as many points, each shared bilinearly among its four pixels: every
  // pixel gets the share of the segment that passes near it, the ends included.
  const int samples = std::max(2, static_cast<int>(std::ceil(length * 8)));
  for (int i = 0; i < samples; ++i) {
    const float t = static_cast<float>(i) / (samples - 1) - 0.5f;
    const float x = half + t * smear.x, y = half + t * smear.y;
    const int x0 = static_cast<int>(std::floor(x)), y0 = static_cast<int>(std::floor(y));
    const float fx = x - x0, fy = y - y0;
    k.at<float>(y0, x0) += (1 - fx) * (1 - fy);
    k.at<float>(y0, x0 + 1) += fx * (1 - fy);
    k.at<float>(y0 + 1, x0) += (1 - fx) * fy;
    k.at<float>(y0 + 1, x0 + 1) += fx * fy;
  }
  return k / cv::sum(k)[0];
}

cv::Mat deblur_motion(const cv::Mat& bgr, cv::Point2f smear, float noise_to_signal) {
  CV_Assert(bgr.type() == CV_8UC3 && noise_to_signal > 0);
  if (std::hypot(smear.x, smear.y) < kMinMotionBlurPx || bgr.empty()) return bgr.clone();
  const cv::Mat k = motion_kernel(smear);
  // Mirrored borders at least a kernel wide on every side, up to sizes the DFT is fast at.
  const int border = k.cols;
  const int width = cv::getOptimalDFTSize(bgr.cols + 2 * border);
  const int height = cv::getOptimalDFTSize(bgr.rows + 2 * border);
  cv::Mat padded;
  cv::copyMakeBorder(bgr, padded, border, height - bgr.rows - border, border, width - bgr.cols - border,
                     cv::BORDER_REFLECT_101);
  // The kernel's centre at the origin (wrapped round), so that the filter shifts nothing.
  cv::Mat origin = cv::Mat::zeros(height, width, CV_32F);
  const int c = k.cols / 2;
  for (int y = 0; y < k.rows; ++y) {
    for (int x = 0; x < k.cols; ++x) {
      origin.at<float>((y - c + height) % height, (x - c + width) % width) = k.at<float>(y, x);
    }
  }
  cv::Mat spectrum;
  cv::dft(origin, spectrum, cv::DFT_COMPLEX_OUTPUT);
  // The Wiener filter conj(K) / (|K|^2 + noise_to_signal), scaled by 1 + noise_to_signal
  // so that it passes the mean (K(0) = 1) unchanged: a constant noise-to-signal ratio
  // stands for white noise against a white signal, but a picture's power is mostly at low
  // frequencies, and unscaled the filter would dim the whole picture by 1 / (1 + ratio).
  // Computed once for the three channels.
  cv::Mat filter(spectrum.size(), CV_32FC2);
  for (int y = 0; y < height; ++y) {
    const auto* s = spectrum.ptr<cv::Vec2f>(y);
    auto* f = filter.ptr<cv::Vec2f>(y);
    for (int x = 0; x < width; ++x) {
      const float d = (s[x][0] * s[x][0] + s[x][1] * s[x][1] + noise_to_signal) / (1 + noise_to_signal);
      f[x] = cv::Vec2f(s[x][0] / d, -s[x][1] / d);
    }
  }
  std::vector<cv::Mat> channels;
  cv::split(padded, channels);
  for (cv::Mat& ch : channels) {
    cv::Mat f, spec, restored;
    ch.convertTo(f, CV_32F);
    cv::dft(f, spec, cv::DFT_COMPLEX_OUTPUT);
    cv::mulSpectrums(spec, filter, spec, 0);
    cv::dft(spec, restored, cv::DFT_INVERSE | cv::DFT_REAL_OUTPUT | cv::DFT_SCALE);
    restored(cv::Rect(border, border, bgr.cols, bgr.rows)).convertTo(ch, CV_8U);  // saturating
  }
  cv::Mat out;
  cv::merge(channels, out);
  return out;
}

}  // namespace candor
