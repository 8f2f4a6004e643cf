// Candor: the model manifest.
//
// Every network Candor runs is described by an entry in a JSON manifest
// (config/models.json): its file, SHA-256, input geometry and normalisation, and
// how to read its outputs. A user points Candor at their own ONNX detector or
// recogniser by adding an entry, not by editing code.
//
// Thread safety: plain values; load_manifest is reentrant.
#pragma once

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "candor/result.h"

namespace candor {

enum class ModelRole { kDetector, kLandmarks, kRecognizer, kPose, kEye, kLiveness };

enum class ColorOrder { kRgb, kBgr, kGray };

// input = (pixel - mean) * scale, per channel in `color` order, NCHW.
struct InputSpec {
  int width = 0;
  int height = 0;
  ColorOrder color = ColorOrder::kRgb;
  float mean = 0;
  float scale = 1;
};

struct OperatingPoint {
  std::string name;     // e.g. "fmr-1e-3"
  double fmr = 0;       // the false match rate it was calibrated for
  float threshold = 0;  // cosine similarity at or above which two templates match
  // The same false match rate for a probe face against a *subject template* (the
  // renormalised mean of a subject's k enrolled templates, subject_template() in
  // candor/collections.h), whose impostor scores are distributed otherwise than
  // face-to-face ones: element k-1 holds the threshold for a subject enrolled from k
  // photos; more photos than the list covers use its last element. Calibrated on LFW
  // View 1 (README "Operating points"). Empty: `threshold` for every k.
  std::vector<float> subject_thresholds;
};

// The threshold of `point` for a probe against a subject template made from `photos` faces.
// requires: photos >= 1.
inline float subject_threshold(const OperatingPoint& point, std::size_t photos) {
  if (point.subject_thresholds.empty() || photos == 0) return point.threshold;
  return point.subject_thresholds[std::min(photos, point.subject_thresholds.size()) - 1];
}

struct ModelSpec {
  std::string id;                 // unique within the manifest
  ModelRole role = ModelRole::kDetector;
  std::string type;               // decoder family: "ultraface", "pfld68", "embedding", "hopenet", ...
  std::filesystem::path file;     // relative to the model directory
  std::string sha256;             // lowercase hex; verified before the network is loaded
  InputSpec input;
  std::map<std::string, std::string> outputs;  // role of an output -> layer name
  int dim = 0;                                   // recognisers: template length
  std::string alignment;                         // recognisers: "arcface112"
  bool batchable = false;                        // the graph accepts N > 1
  std::vector<OperatingPoint> operating_points;  // recognisers, strictest last
  double threshold = 0;                          // detectors: default score threshold
};

struct Manifest {
  std::filesystem::path path;
  std::vector<ModelSpec> models;

  // The entry with this id, or (id empty) the first entry with this role.
  Result<ModelSpec> find(ModelRole role, const std::string& id = {}) const;
};

Result<Manifest> load_manifest(const std::filesystem::path& path);

// SHA-256 of a file as lowercase hex (streamed; no size limit).
Result<std::string> sha256_file(const std::filesystem::path& path);

// Resolves and checks a model file: present, and (when verify) its hash matches.
// ensures: errors are kModelMissing or kModelInvalid naming the file and both hashes.
Result<std::filesystem::path> locate_model(const ModelSpec& spec, const std::filesystem::path& model_dir, bool verify);

std::string_view model_role_name(ModelRole role) noexcept;

// Where an installed Candor keeps its read-only data (models/, config/models.json, web/):
// <directory of `executable`>/../share/candor, the layout of the Debian package
// (/usr/bin/candor, /usr/share/candor). A binary run from a build tree has no such
// directory and keeps the build's paths.
// ensures: that directory when it exists, else an empty path.
std::filesystem::path installed_data_dir(const std::filesystem::path& executable);
// installed_data_dir() of the running process (/proc/self/exe).
std::filesystem::path installed_data_dir();
// ensures: installed_data_dir() / relative when this process runs from an installation,
//          else build_default (the source tree's file, compiled in).
std::filesystem::path installed_or(const std::filesystem::path& relative, const std::filesystem::path& build_default);

// The model directory and manifest in force: `given` when not empty, else
// $CANDOR_MODEL_DIR / $CANDOR_MANIFEST, else the installed data directory's
// (models/, config/models.json), else where the build's set-up puts them.
std::filesystem::path resolve_model_dir(const std::filesystem::path& given = {});
std::filesystem::path resolve_manifest(const std::filesystem::path& given = {});

}  // namespace candor
