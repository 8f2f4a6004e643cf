// fuzz_make_seeds OUT_DIR SOURCE_DIR: writes the seed corpus of every fuzz target, made
// by the project rather than committed as binaries (fuzz/run.sh calls it before fuzzing):
//   OUT_DIR/fuzz_image      image_seeds() (harness.h: every format and layout, and inputs
//                           at each decoding cost limit) and face crops from testdata/
//                           found by the engine;
//   OUT_DIR/fuzz_json       a valid request for every route (harness.h's format);
//   OUT_DIR/fuzz_multipart  the multipart forms of the routes that take images;
//   OUT_DIR/fuzz_manifest   config/models.json and smaller valid manifests.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "candor/engine.h"
#include "candor/image.h"
#include "harness.h"

namespace fs = std::filesystem;

namespace {

using Blob = std::vector<std::uint8_t>;

void write_file(const fs::path& path, std::string_view bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::string as_string(const Blob& b) { return {b.begin(), b.end()}; }

Blob encode(const std::string& ext, const cv::Mat& image, const std::vector<int>& params = {}) {
  Blob out;
  if (!cv::imencode(ext, image, out, params)) throw std::runtime_error("OpenCV cannot write " + ext);
  return out;
}

std::string base64(const Blob& bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned v = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63], kAlphabet[v & 63]};
  }
  if (i + 1 == bytes.size()) {
    const unsigned v = bytes[i] << 16;
    out += {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    const unsigned v = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63], '='};
  }
  return out;
}

// Square crops around the largest face of each test photo, small enough to keep the
// fuzzed requests under the harness's body limit yet with a face the detector finds.
std::vector<Blob> face_crops(const fs::path& testdata) {
  std::vector<Blob> crops;
  if (!fs::is_directory(testdata)) return crops;
  auto engine = candor::Engine::create();
  if (!engine) {
    std::fprintf(stderr, "fuzz_make_seeds: no engine (%s); no face seeds\n", engine.error().message.c_str());
    return crops;
  }
  std::set<fs::path> photos;
  for (const auto& entry : fs::recursive_directory_iterator(testdata)) {
    if (entry.is_regular_file() && entry.path().extension() == ".jpg") photos.insert(entry.path());
  }
  for (const fs::path& photo : photos) {
    auto image = candor::read_image(photo);
    if (!image) continue;
    const auto faces = (*engine)->detect(*image);
    if (faces.empty()) continue;
    const candor::Face& face = faces.front();
    const float side = 2.0f * std::max(face.box.width, face.box.height);
    const cv::Point2f c = face.box.center();
    cv::Rect rect(static_cast<int>(c.x - side / 2), static_cast<int>(c.y - side / 2), static_cast<int>(side),
                  static_cast<int>(side));
    rect &= cv::Rect(0, 0, image->cols, image->rows);
    if (rect.width < 32 || rect.height < 32) continue;
    cv::Mat crop;
    cv::resize((*image)(rect), crop, {96, 96}, 0, 0, cv::INTER_AREA);
    crops.push_back(encode(".jpg", crop, {cv::IMWRITE_JPEG_QUALITY, 80}));
    if (crops.size() == 3) break;
  }
  return crops;
}

struct Part {
  std::string name;
  std::string filename;  // empty: a text field
  std::string content;
};

constexpr const char* kBoundary = "candor-fuzz-7f3a";

std::string multipart(const std::string& line, const std::vector<Part>& parts) {
  std::string out = line + "\n" + kBoundary + "\n";
  for (const Part& p : parts) {
    out += std::string("--") + kBoundary + "\r\nContent-Disposition: form-data; name=\"" + p.name + "\"";
    if (!p.filename.empty()) out += "; filename=\"" + p.filename + "\"\r\nContent-Type: image/jpeg";
    out += "\r\n\r\n" + p.content + "\r\n";
  }
  return out + "--" + kBoundary + "--\r\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: fuzz_make_seeds OUT_DIR SOURCE_DIR\n");
    return 2;
  }
  const fs::path out = argv[1];
  const fs::path source = argv[2];
  try {
    // fuzz_image
    const fs::path images = out / "fuzz_image";
    Blob jpeg, grey_png;
    for (const auto& [name, bytes] : candor::fuzz::image_seeds()) {
      write_file(images / name, as_string(bytes));
      if (name == "baseline.jpg") jpeg = bytes;
      if (name == "grey.png") grey_png = bytes;
    }
    const std::vector<Blob> faces = face_crops(source / "testdata");
    for (std::size_t i = 0; i < faces.size(); ++i) {
      write_file(images / ("face" + std::to_string(i) + ".jpg"), as_string(faces[i]));
    }
    const Blob face_a = faces.empty() ? jpeg : faces[0];
    const Blob face_b = faces.size() < 2 ? face_a : faces[1];

    // fuzz_json: one request per route ("<METHOD> <target>\n<body>").
    const fs::path json_dir = out / "fuzz_json";
    using nlohmann::json;
    const std::string sha(64, 'c');
    const std::vector<std::pair<std::string, std::string>> requests = {
        {"POST /v1/detect?min_face=24&max_faces=10&threshold=0.7&quality=true&liveness=true",
         json{{"image", base64(face_a)}}.dump()},
        {"POST /v1/detect", json{{"image", "data:image/jpeg;base64," + base64(jpeg)}}.dump()},
        {"POST /v1/compare?operating_point=fmr-1e-4", json{{"a", base64(face_a)}, {"b", base64(face_b)}}.dump()},
        {"GET /v1/collections", ""},
        {"POST /v1/collections", json{{"name", "visitors"}, {"purpose", "visitor check-in"}, {"retention_days", 30},
                                      {"operating_point", "fmr-1e-3"}, {"liveness_required", true}}.dump()},
        {"GET /v1/collections/staff", ""},
        {"DELETE /v1/collections/staff?reason=closing", ""},
        {"GET /v1/collections/staff/consents?subject=emp-1", ""},
        {"POST /v1/collections/staff/consents",
         json{{"subject", "emp-2"}, {"evidence_sha256", sha}, {"collected_by", "hr desk"},
              {"purpose", "building access"}, {"expires_at", "2027-12-31"}}.dump()},
        {"POST /v1/collections/staff/consents",
         json{{"subject", "emp-3"}, {"evidence_sha256", sha}, {"collected_by", "hr"},
              {"expires_at", "2027-12-31T08:00:00Z"}}.dump()},
        {"DELETE /v1/collections/staff/consents/emp-1", ""},
        {"POST /v1/collections/staff/subjects/emp-1/faces", json{{"images", {base64(face_a), base64(face_b)}}}.dump()},
        {"GET /v1/collections/staff/subjects", ""},
        {"DELETE /v1/collections/staff/subjects/emp-1?reason=erasure%20request", ""},
        {"POST /v1/collections/staff/search?top=5", json{{"image", base64(face_a)}, {"reason", "door 3 entry"}}.dump()},
        {"GET /v1/audit?limit=10&after_seq=1&subject=emp-1&operation=enroll&collection=staff", ""},
        {"GET /v1/audit/verify", ""},
        {"GET /v1/subjects/emp-1/export", ""},
        {"POST /v1/retention/run", ""},
        {"POST /v1/keys", json{{"name", "door-3"}, {"collections", {"staff"}}, {"operations", {"search", "detect"}},
                               {"searches_per_minute", 30}, {"searches_per_day", 1000}}.dump()},
        {"GET /v1/keys", ""},
        {"DELETE /v1/keys/door-3", ""},
        {"GET /healthz", ""},
        {"GET /readyz", ""},
        {"GET /metrics", ""},
        {"GET /v1/openapi.json", ""},
    };
    std::set<std::string> covered;
    int n = 0;
    for (const auto& [line, body] : requests) {
      write_file(json_dir / ("route" + std::to_string(n++)), line + "\n" + body);
      covered.insert(line.substr(0, line.find('?')));
    }
    // Routes added to the OpenAPI document after this list was written still get a seed.
    std::ifstream openapi_file(source / "src/server/openapi.json");
    const json openapi = json::parse(openapi_file, nullptr, false);
    if (openapi.is_object() && openapi.contains("paths")) {
      for (const auto& [path, operations] : openapi["paths"].items()) {
        for (const auto& [method, operation] : operations.items()) {
          if (method == "parameters" || method == "summary" || method == "description") continue;
          std::string target = path;
          for (std::size_t at; (at = target.find('{')) != std::string::npos;) {
            const std::size_t end = target.find('}', at);
            const std::string name = target.substr(at + 1, end - at - 1);
            target.replace(at, end - at + 1, name == "c" ? "staff" : "emp-1");
          }
          std::string verb;
          for (char ch : method) verb += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
          if (covered.insert(verb + " " + target).second) {
            write_file(json_dir / ("route" + std::to_string(n++)), verb + " " + target + "\n{}");
          }
        }
      }
    }

    // fuzz_multipart ("<METHOD> <target>\n<boundary>\n<body>").
    const fs::path mp = out / "fuzz_multipart";
    const std::string a = as_string(face_a), b = as_string(face_b);
    write_file(mp / "detect", multipart("POST /v1/detect?quality=false", {{"image", "face.jpg", a}}));
    write_file(mp / "detect_png", multipart("POST /v1/detect", {{"image", "", as_string(grey_png)}}));
    write_file(mp / "compare", multipart("POST /v1/compare", {{"a", "a.jpg", a}, {"b", "b.jpg", b}}));
    write_file(mp / "enroll", multipart("POST /v1/collections/staff/subjects/emp-1/faces",
                                        {{"images", "1.jpg", a}, {"images", "2.jpg", b}}));
    write_file(mp / "enroll_image", multipart("POST /v1/collections/staff/subjects/emp-1/faces", {{"image", "1.jpg", a}}));
    write_file(mp / "search", multipart("POST /v1/collections/staff/search",
                                        {{"image", "probe.jpg", a}, {"reason", "", "door 3 entry"}}));
    write_file(mp / "empty_part", multipart("POST /v1/detect", {{"image", "empty.jpg", ""}}));
    write_file(mp / "text_fields", multipart("POST /v1/collections", {{"name", "", "visitors"}, {"purpose", "", "check-in"}}));

    // fuzz_manifest
    const fs::path manifests = out / "fuzz_manifest";
    std::ifstream real(source / "config/models.json", std::ios::binary);
    const std::string real_manifest((std::istreambuf_iterator<char>(real)), std::istreambuf_iterator<char>());
    write_file(manifests / "models.json", real_manifest);
    write_file(manifests / "detector.json",
               json{{"models", {{{"id", "d"}, {"role", "detector"}, {"type", "ultraface"}, {"file", "d.onnx"},
                                 {"sha256", sha}, {"threshold", 0.7},
                                 {"input", {{"width", 320}, {"height", 240}, {"color", "rgb"}, {"mean", 127.0},
                                            {"scale", 0.0078125}}},
                                 {"outputs", {{"scores", "scores"}, {"boxes", "boxes"}}}}}}}
                   .dump(2));
    write_file(manifests / "recognizer.json",
               json{{"models", {{{"id", "r"}, {"role", "recognizer"}, {"type", "embedding"}, {"file", "/r.onnx"},
                                 {"input", {{"width", 112}, {"height", 112}, {"color", "bgr"}}},
                                 {"dim", 512}, {"alignment", "arcface112"}, {"batchable", true},
                                 {"operating_points", {{{"name", "fmr-1e-3"}, {"fmr", 1e-3}, {"threshold", 0.33}},
                                                       {{"name", "fmr-1e-4"}, {"fmr", 1e-4}, {"threshold", 0.41}}}}}}}}
                   .dump());
    write_file(manifests / "empty.json", R"({"models":[]})");

    // fuzz_onnx: a 100-odd-byte model (Conv then Relu); the real models are megabytes,
    // past the target's 8 KiB -max_len.
    const std::vector<std::uint8_t> seed = candor::fuzz::onnx_seed();
    write_file(out / "fuzz_onnx" / "conv_relu.onnx", std::string(seed.begin(), seed.end()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
