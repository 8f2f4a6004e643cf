// Figures to a level: each figure earns a level against QualityThresholds, the face the
// lowest of them, and the limiting factor names the figure that decided it.
#include <cmath>
#include <cstdio>
#include <string>

#include "candor/analyzer.h"

namespace candor {
namespace {

std::string_view level_name(QualityLevel level) {
  switch (level) {
    case QualityLevel::kHigh: return "high";
    case QualityLevel::kMedium: return "medium";
    case QualityLevel::kLow: return "low";
  }
  return "low";
}

std::string fmt(const char* pattern, double a, double b) {
  char buf[128];
  std::snprintf(buf, sizeof buf, pattern, a, b);
  return buf;
}

struct Verdict {
  QualityLevel level = QualityLevel::kHigh;
  std::string reason;
};

// Keeps the first figure that reached the lowest level so far.
void consider(Verdict& v, QualityLevel level, std::string reason) {
  if (level < v.level) v.level = level, v.reason = std::move(reason);
}

// A figure that must be at least `medium` / `high`.
void at_least(Verdict& v, const char* name, const char* unit, float value, float medium, float high) {
  if (value < medium) {
    consider(v, QualityLevel::kLow, fmt((std::string(name) + " %.1f" + unit + " < %.4g").c_str(), value, medium));
  } else if (value < high) {
    consider(v, QualityLevel::kMedium, fmt((std::string(name) + " %.1f" + unit + " < %.4g").c_str(), value, high));
  }
}

// A figure that must be at most `medium` / `high`.
void at_most(Verdict& v, const char* name, float value, float medium, float high, int decimals) {
  const std::string pattern = std::string(name) + (decimals == 2 ? " %.2f > %.4g" : " %.1f > %.4g");
  if (value > medium) {
    consider(v, QualityLevel::kLow, fmt(pattern.c_str(), value, medium));
  } else if (value > high) {
    consider(v, QualityLevel::kMedium, fmt(pattern.c_str(), value, high));
  }
}

}  // namespace

void assign_quality_level(FaceQuality& q, const QualityThresholds& t) {
  Verdict v;
  at_least(v, "face size", " px", q.face_size_px, t.min_face_size_medium, t.min_face_size_high);
  at_least(v, "brightness", "", q.brightness, t.min_brightness_medium, t.min_brightness_high);
  at_most(v, "brightness", q.brightness, t.max_brightness_medium, t.max_brightness_high, 1);
  at_most(v, "dark clipping", q.dark_clipped, t.max_clipped_medium, t.max_clipped_high, 2);
  at_most(v, "bright clipping", q.bright_clipped, t.max_clipped_medium, t.max_clipped_high, 2);
  at_least(v, "sharpness", "", q.sharpness, t.min_sharpness_medium, t.min_sharpness_high);
  if (q.pose) {
    at_most(v, "|yaw|", std::abs(q.pose->yaw), t.max_yaw_medium, t.max_yaw_high, 1);
    at_most(v, "|pitch|", std::abs(q.pose->pitch), t.max_pitch_medium, t.max_pitch_high, 1);
    at_most(v, "|roll|", std::abs(q.pose->roll), t.max_roll_medium, t.max_roll_high, 1);
  }
  if (t.eyes_closed_caps_at_medium && q.left_eye_open && q.right_eye_open && !*q.left_eye_open &&
      !*q.right_eye_open) {
    consider(v, QualityLevel::kMedium, "eyes closed or covered");
  }
  q.level = v.level;
  q.limiting_factor = v.level == QualityLevel::kHigh ? std::string() : std::move(v.reason);
}

Status check_enrollment_quality(const Face& face, QualityLevel minimum) {
  if (!face.quality) {
    return Error{ErrorCode::kInvalidArgument, "the face has not been analysed (no quality to check)"};
  }
  const FaceQuality& q = *face.quality;
  if (q.level >= minimum) return ok_status();
  return Error{ErrorCode::kQualityTooLow, "quality " + std::string(level_name(q.level)) + " (" + q.limiting_factor +
                                              "); enrolment needs " + std::string(level_name(minimum))};
}

}  // namespace candor
