#include <array>
#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>
#include <sodium.h>

#include "candor/models.h"
#include "core/json_number.h"

namespace candor {
namespace {

Result<ModelRole> parse_role(const std::string& s) {
  static const std::array<std::pair<const char*, ModelRole>, 6> kRoles{{{"detector", ModelRole::kDetector},
                                                                        {"landmarks", ModelRole::kLandmarks},
                                                                        {"recognizer", ModelRole::kRecognizer},
                                                                        {"pose", ModelRole::kPose},
                                                                        {"eye", ModelRole::kEye},
                                                                        {"liveness", ModelRole::kLiveness}}};
  for (const auto& [name, role] : kRoles) {
    if (s == name) return role;
  }
  return Error{ErrorCode::kInvalidArgument, "unknown model role '" + s + "'"};
}

Result<ColorOrder> parse_color(const std::string& s) {
  if (s == "rgb") return ColorOrder::kRgb;
  if (s == "bgr") return ColorOrder::kBgr;
  if (s == "gray") return ColorOrder::kGray;
  return Error{ErrorCode::kInvalidArgument, "unknown colour order '" + s + "' (rgb, bgr or gray)"};
}

}  // namespace

namespace {
std::filesystem::path env_or(const char* name, const std::filesystem::path& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::filesystem::path(v) : fallback;
}
}  // namespace

std::filesystem::path installed_data_dir(const std::filesystem::path& executable) {
  std::error_code ec;
  const std::filesystem::path dir = executable.parent_path().parent_path() / "share" / "candor";
  return std::filesystem::is_directory(dir, ec) ? dir : std::filesystem::path();
}

std::filesystem::path installed_data_dir() {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path() : installed_data_dir(self);
}

std::filesystem::path installed_or(const std::filesystem::path& relative, const std::filesystem::path& build_default) {
  const std::filesystem::path installed = installed_data_dir();
  return installed.empty() ? build_default : installed / relative;
}

std::filesystem::path resolve_model_dir(const std::filesystem::path& given) {
  return !given.empty() ? given : env_or("CANDOR_MODEL_DIR", installed_or("models", CANDOR_DEFAULT_MODEL_DIR));
}

std::filesystem::path resolve_manifest(const std::filesystem::path& given) {
  return !given.empty() ? given
                        : env_or("CANDOR_MANIFEST", installed_or("config/models.json", CANDOR_DEFAULT_MANIFEST));
}

std::string_view model_role_name(ModelRole role) noexcept {
  switch (role) {
    case ModelRole::kDetector: return "detector";
    case ModelRole::kLandmarks: return "landmarks";
    case ModelRole::kRecognizer: return "recognizer";
    case ModelRole::kPose: return "pose";
    case ModelRole::kEye: return "eye";
    case ModelRole::kLiveness: return "liveness";
  }
  return "unknown";
}

Result<ModelSpec> Manifest::find(ModelRole role, const std::string& id) const {
  for (const ModelSpec& m : models) {
    if (id.empty() ? m.role == role : m.id == id) {
      if (m.role != role) {
        return Error{ErrorCode::kInvalidArgument,
                     "model '" + id + "' is a " + std::string(model_role_name(m.role)) + ", not a " +
                         std::string(model_role_name(role))};
      }
      return m;
    }
  }
  return Error{ErrorCode::kNotFound, "no " + std::string(model_role_name(role)) + " model" +
                                         (id.empty() ? std::string() : " with id '" + id + "'") + " in " +
                                         path.string()};
}

Result<Manifest> load_manifest(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return Error{ErrorCode::kIoError, "cannot read model manifest " + path.string()};
  Manifest manifest;
  manifest.path = path;
  try {
    const auto doc = nlohmann::json::parse(in);
    for (const auto& j : doc.at("models")) {
      ModelSpec m;
      m.id = j.at("id").get<std::string>();
      auto role = parse_role(j.at("role").get<std::string>());
      if (!role) return Error{role.error().code, path.string() + ": " + m.id + ": " + role.error().message};
      m.role = *role;
      m.type = j.at("type").get<std::string>();
      m.file = j.at("file").get<std::string>();
      m.sha256 = j.value("sha256", "");
      const auto& input = j.at("input");
      m.input.width = json_get<int>(input.at("width"));
      m.input.height = json_get<int>(input.at("height"));
      auto color = parse_color(input.value("color", "rgb"));
      if (!color) return Error{color.error().code, path.string() + ": " + m.id + ": " + color.error().message};
      m.input.color = *color;
      m.input.mean = json_value(input, "mean", 0.0f);
      m.input.scale = json_value(input, "scale", 1.0f);
      if (m.input.width <= 0 || m.input.height <= 0 || m.input.width > 4096 || m.input.height > 4096) {
        return Error{ErrorCode::kInvalidArgument, path.string() + ": " + m.id + ": input size out of range"};
      }
      if (j.contains("outputs")) m.outputs = j.at("outputs").get<std::map<std::string, std::string>>();
      m.dim = json_value(j, "dim", 0);
      m.alignment = j.value("alignment", "");
      m.batchable = j.value("batchable", false);
      m.threshold = j.value("threshold", 0.0);
      if (j.contains("operating_points")) {
        for (const auto& op : j.at("operating_points")) {
          OperatingPoint point{op.at("name").get<std::string>(), op.at("fmr").get<double>(),
                               json_get<float>(op.at("threshold")), {}};
          if (op.contains("subject_thresholds")) {
            for (const auto& t : op.at("subject_thresholds")) point.subject_thresholds.push_back(json_get<float>(t));
          }
          m.operating_points.push_back(std::move(point));
        }
      }
      if (m.role == ModelRole::kRecognizer && (m.dim <= 0 || m.dim > 4096)) {
        return Error{ErrorCode::kInvalidArgument, path.string() + ": recogniser " + m.id + " needs a dim in 1..4096"};
      }
      manifest.models.push_back(std::move(m));
    }
  } catch (const nlohmann::json::exception& e) {
    return Error{ErrorCode::kInvalidArgument, "model manifest " + path.string() + " is malformed: " + e.what()};
  }
  return manifest;
}

Result<std::string> sha256_file(const std::filesystem::path& path) {
  if (sodium_init() < 0) return Error{ErrorCode::kInternal, "libsodium failed to initialise"};
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{ErrorCode::kIoError, "cannot read " + path.string()};
  crypto_hash_sha256_state state;
  crypto_hash_sha256_init(&state);
  std::vector<char> buffer(1 << 16);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    crypto_hash_sha256_update(&state, reinterpret_cast<const unsigned char*>(buffer.data()),
                              static_cast<unsigned long long>(in.gcount()));
  }
  std::array<unsigned char, crypto_hash_sha256_BYTES> digest{};
  crypto_hash_sha256_final(&state, digest.data());
  std::array<char, crypto_hash_sha256_BYTES * 2 + 1> hex{};
  sodium_bin2hex(hex.data(), hex.size(), digest.data(), digest.size());
  return std::string(hex.data());
}

Result<std::filesystem::path> locate_model(const ModelSpec& spec, const std::filesystem::path& model_dir, bool verify) {
  const std::filesystem::path file = spec.file.is_absolute() ? spec.file : model_dir / spec.file;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) {
    return Error{ErrorCode::kModelMissing,
                 "model file " + file.string() + " (" + spec.id + ") is missing; run `make setup` to fetch the model pack"};
  }
  if (verify && !spec.sha256.empty()) {
    auto digest = sha256_file(file);
    if (!digest) return digest.error();
    if (*digest != spec.sha256) {
      return Error{ErrorCode::kModelInvalid, "model file " + file.string() + " has SHA-256 " + *digest +
                                                 "; the manifest expects " + spec.sha256};
    }
  }
  return file;
}

}  // namespace candor
