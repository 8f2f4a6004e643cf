// Candor: undoing the motion blur of a moving face.
//
// A face that crosses the frame while the shutter is open is smeared along its motion:
// its image is the sharp one averaged over a line segment, the motion during the
// exposure. The recogniser is not robust to it (`candor bench deblur`: a 10 px smear of a
// 90 px face took the people named from 194 of 200 to 150). When the smear is known — the
// tracker measures the face's motion, the camera's configuration gives the exposure — a
// Wiener filter (Wiener 1949; Gonzalez & Woods, "Digital Image Processing", 5.8) inverts
// it where the blur kept signal and damps it where the blur's spectrum falls to nothing,
// instead of amplifying the noise there.
//
// Estimating the smear from the image alone (blind deconvolution) was tried and is not
// offered: the zero crossing of the derivative's autocorrelation (Yitzhaky & Kopeika
// 1997) and the cepstrum (Cannon 1976) misjudged 10 px smears of compressed 90 px faces
// by 1-3 px and found smears in sharp ones (README "Camera streams").
//
// Thread safety: reentrant.
#pragma once

#include <opencv2/core/mat.hpp>

namespace candor {

// Below this length (px) a smear is no blur worth undoing: deblur_motion returns a copy.
inline constexpr float kMinMotionBlurPx = 2;

// The noise-to-signal power ratio the Wiener filter assumes, relative to a unit kernel.
// `candor bench deblur --people 200` (LFW, 90 px faces, noise sigma 4, JPEG quality 40,
// the true smear; 194 of 200 named unsmeared): at a 6, 10 and 14 px smear, as seen 188,
// 150 and 78 named; deblurred with 0.02 188, 176, 154; with 0.05 192, 181, 148; with 0.1
// 192, 177, 126. At 0.05 a 10 px smear misjudged by 2 px either way still named 164-167.
// (Chosen on the first 100 of those people, before the bench existed, with the same order.)
inline constexpr float kWienerNoiseToSignal = 0.05f;

// The image with a linear motion blur of `smear` (the motion during the exposure, in px:
// its direction and length) undone by a Wiener filter. Borders are mirrored before the
// transform so that they do not ring into the picture.
// requires: bgr is CV_8UC3; noise_to_signal > 0.
// ensures: the result has bgr's size and type; a smear shorter than kMinMotionBlurPx
//   gives a copy of bgr. The work is O(n log n) in the pixels of bgr (padded by the
//   smear's length): callers pass the region around a face, not a whole frame.
cv::Mat deblur_motion(const cv::Mat& bgr, cv::Point2f smear, float noise_to_signal = kWienerNoiseToSignal);

// The line kernel of a smear: a normalised image (sum 1) of odd size, the segment centred,
// anti-aliased at its ends. For tests and callers that blur on purpose (cv::filter2D).
// requires: the smear's length < 1000 px.
cv::Mat motion_kernel(cv::Point2f smear);

}  // namespace candor
