// Experiments that establish the model pack's conventions (not a test; run by hand):
// which HopeNet output is yaw/pitch/roll and their signs, which eye class is "open",
// which liveness class is "live". Prints one line per image variant.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <opencv2/dnn.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "analyze/analysis_ops.h"
#include "candor/engine.h"

using namespace candor;

namespace {

cv::Mat rotate(const cv::Mat& img, double deg) {
  cv::Mat m = cv::getRotationMatrix2D(cv::Point2f(img.cols / 2.0f, img.rows / 2.0f), deg, 1.0);
  cv::Mat out;
  cv::warpAffine(img, out, m, img.size(), cv::INTER_LINEAR, cv::BORDER_REFLECT);
  return out;
}

// A photo of a photo: the image shown small inside another (a screen or a print), with
// the cues a re-capture carries: a bezel or paper border, blur, moire, a colour cast.
cv::Mat replay(const cv::Mat& img, int kind) {
  cv::Mat small;
  cv::resize(img, small, cv::Size(), 0.55, 0.55, cv::INTER_AREA);
  cv::GaussianBlur(small, small, cv::Size(0, 0), 1.2);
  cv::Mat f;
  small.convertTo(f, CV_32FC3);
  for (int y = 0; y < f.rows; ++y)
    for (int x = 0; x < f.cols; ++x) {
      const float m = kind == 0 ? 1.0f + 0.12f * std::sin(0.9f * x + 0.35f * y) : 1.0f;  // screen moire
      auto& p = f.at<cv::Vec3f>(y, x);
      p = kind == 0 ? cv::Vec3f(p[0] * 1.08f * m + 10, p[1] * m, p[2] * 0.9f * m) : cv::Vec3f(p[0] * 0.85f + 30, p[1] * 0.9f + 25, p[2] * 0.95f + 20);
    }
  f.convertTo(small, CV_8UC3);
  cv::Mat canvas(img.size(), CV_8UC3, kind == 0 ? cv::Scalar(30, 30, 30) : cv::Scalar(200, 205, 210));
  const cv::Rect at((img.cols - small.cols) / 2, (img.rows - small.rows) / 2, small.cols, small.rows);
  small.copyTo(canvas(at));
  cv::rectangle(canvas, at, kind == 0 ? cv::Scalar(10, 10, 10) : cv::Scalar(245, 245, 245), std::max(3, img.cols / 60));
  return canvas;
}

Face central(const std::vector<Face>& faces, cv::Size s) {
  const Face* best = &faces[0];
  double bd = 1e18;
  for (const auto& f : faces) {
    const double d = cv::norm(f.box.center() - cv::Point2f(s.width / 2.0f, s.height / 2.0f));
    if (d < bd) bd = d, best = &f;
  }
  return *best;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: analyze_probe pose|eye|live models_dir images...\n";
    return 2;
  }
  const std::string mode = argv[1];
  const std::filesystem::path models = argv[2];
  auto engine = Engine::create();
  if (!engine) return std::cerr << engine.error().message << "\n", 1;
  cv::dnn::Net pose = cv::dnn::readNetFromONNX((models / "fr_pose.onnx").string());
  cv::dnn::Net eye = cv::dnn::readNetFromONNX((models / "fr_eye.onnx").string());
  cv::dnn::Net live = cv::dnn::readNetFromONNX((models / "fr_liveness.onnx").string());
  const std::vector<std::string> pose_out = {"617", "618", "output"};
  for (int i = 3; i < argc; ++i) {
    cv::Mat img0 = cv::imread(argv[i]);
    if (img0.empty()) continue;
    std::vector<std::pair<std::string, cv::Mat>> variants;
    if (mode == "pose") {
      variants = {{"orig", img0}, {"flip", {}}, {"rot+15", rotate(img0, 15)}, {"rot-15", rotate(img0, -15)}};
      cv::flip(img0, variants[1].second, 1);
    } else if (mode == "eye") {
      variants = {{"orig", img0}};
      auto fs = (*engine)->detect(img0);
      cv::Mat bar = img0.clone();
      for (const auto& f : fs) {
        std::vector<cv::Point2f> eyes(f.landmarks68.begin() + 36, f.landmarks68.begin() + 48);
        cv::Rect r = cv::boundingRect(eyes);
        const int pad = r.height + r.width / 10;
        r.x -= pad / 2, r.width += pad, r.y -= pad, r.height += 2 * pad;
        cv::rectangle(bar, r, cv::Scalar::all(0), cv::FILLED);
      }
      variants.push_back({"bar", bar});
    } else {
      variants = {{"orig", img0}, {"replay", replay(img0, 0)}, {"print", replay(img0, 1)}};
    }
    for (auto& [vname, img] : variants) {
      auto faces = (*engine)->detect(img);
      if (faces.empty()) {
        std::printf("%s %s noface\n", argv[i], vname.c_str());
        continue;
      }
      if (mode == "eye" || mode == "live") {
        // all faces for the multi-face samples
      } else {
        faces = {central(faces, img.size())};
      }
      for (std::size_t k = 0; k < faces.size(); ++k) {
        Face& f = faces[k];
        std::printf("%s %s f%zu box=%.0f ", std::filesystem::path(argv[i]).filename().c_str(), vname.c_str(), k,
                    std::min(f.box.width, f.box.height));
        if (mode == "pose") {
          cv::Mat crop = analysis::pose_crop(img, f, cv::Size(224, 224));
          if (std::getenv("PROBE_DUMP")) {
            cv::imwrite(std::string(std::getenv("PROBE_DUMP")) + "/pose_" + std::filesystem::path(argv[i]).stem().string() + "_" + vname + ".png", crop);
          }
          cv::Mat rgb;
          cv::cvtColor(crop, rgb, cv::COLOR_BGR2RGB);
          rgb.convertTo(rgb, CV_32FC3, 1.0 / 255);
          cv::subtract(rgb, cv::Scalar(0.485, 0.456, 0.406), rgb);
          cv::divide(rgb, cv::Scalar(0.229, 0.224, 0.225), rgb);
          cv::Mat blob = cv::dnn::blobFromImage(rgb);
          pose.setInput(blob);
          std::vector<cv::Mat> outs;
          pose.forward(outs, pose_out);
          for (std::size_t o = 0; o < 3; ++o) {
            std::printf("%s=%7.2f ", pose_out[o].c_str(),
                        analysis::hopenet_angle({outs[o].ptr<float>(), outs[o].total()}));
          }
          HeadPose p = analysis::pose_from_landmarks(f.landmarks68, img.size());
          std::printf("pnp y=%7.2f p=%7.2f r=%7.2f lmroll=%7.2f\n", p.yaw, p.pitch, p.roll,
                      analysis::roll_from_landmarks(f.landmarks68));
        } else if (mode == "eye") {
          cv::Mat gray;
          cv::cvtColor(img, gray, cv::COLOR_BGR2GRAY);
          auto crops = analysis::eye_crops(gray, f.landmarks68);
          for (int e = 0; e < 2; ++e) {
            cv::Mat blob = cv::dnn::blobFromImage(crops[static_cast<std::size_t>(e)], 1.0 / 255);
            eye.setInput(blob);
            cv::Mat o = eye.forward().clone();
            std::vector<float> v(o.ptr<float>(), o.ptr<float>() + o.total());
            analysis::softmax(v);
            std::printf("eye%d p0=%.3f ", e, v[0]);
            if (std::getenv("PROBE_DUMP")) {
              cv::imwrite(std::string(std::getenv("PROBE_DUMP")) + "/eye_" + std::filesystem::path(argv[i]).stem().string() + "_" + std::to_string(k) + "_" + std::to_string(e) + ".png", crops[static_cast<std::size_t>(e)]);
            }
          }
          std::printf("\n");
        } else {
          cv::Mat crop = analysis::liveness_crop(img, f.box, 2.7f, cv::Size(128, 128));
          for (bool swap : {false, true}) {
            cv::Mat blob = cv::dnn::blobFromImage(crop, 1.0, cv::Size(), cv::Scalar(), swap);
            live.setInput(blob);
            cv::Mat o = live.forward().clone();
            std::vector<float> v(o.ptr<float>(), o.ptr<float>() + o.total());
            analysis::softmax(v);
            std::printf("%s p=[%.3f %.3f %.3f] ", swap ? "rgb" : "bgr", v[0], v[1], v[2]);
          }
          std::printf("\n");
        }
      }
    }
  }
  return 0;
}
