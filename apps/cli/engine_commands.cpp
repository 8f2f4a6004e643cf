// candor detect | compare | embed
#include <cstdio>
#include <fstream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "candor/json.h"
#include "cli_context.h"

namespace candor::cli {
namespace {

struct DetectArgs {
  std::vector<std::string> images;
  bool json = false;
  bool quality = true;
  bool liveness = false;
  std::string draw;
  bool landmarks68 = false;
  DetectOptions options;
};

void add_detect_options(CLI::App* cmd, DetectOptions& o) {
  cmd->add_option("--min-face", o.min_face_size, "Smallest face to look for, in pixels")->capture_default_str();
  cmd->add_option("--threshold", o.score_threshold, "Detector score threshold")->capture_default_str();
  cmd->add_option("--max-faces", o.max_faces, "Keep at most this many faces")->capture_default_str();
}

// The face a one-face command uses when there are several: the largest.
const Face* primary_face(const std::vector<Face>& faces) {
  const Face* best = nullptr;
  for (const Face& f : faces) {
    if (best == nullptr || f.box.area() > best->box.area()) best = &f;
  }
  return best;
}

void draw_faces(cv::Mat& canvas, const std::vector<Face>& faces) {
  const int thickness = std::max(1, std::min(canvas.cols, canvas.rows) / 400);
  for (const Face& f : faces) {
    cv::rectangle(canvas, cv::Rect2f(f.box.x, f.box.y, f.box.width, f.box.height), {0, 255, 0}, thickness);
    for (const auto& p : f.landmarks68) cv::circle(canvas, p, thickness, {255, 200, 0}, cv::FILLED);
    for (const auto& p : f.landmarks) cv::circle(canvas, p, 2 * thickness, {0, 0, 255}, cv::FILLED);
    char label[32];
    std::snprintf(label, sizeof label, "%.2f", static_cast<double>(f.score));
    cv::putText(canvas, label, {static_cast<int>(f.box.x), std::max(12, static_cast<int>(f.box.y) - 4)},
                cv::FONT_HERSHEY_SIMPLEX, 0.4 * thickness, {0, 255, 0}, thickness);
  }
}

int run_detect(CliContext& ctx, const DetectArgs& args) {
  int status = 0;
  nlohmann::json all = nlohmann::json::array();
  for (const std::string& path : args.images) {
    auto image = read_image(path, ctx.limits);
    if (!image) {
      status = fail({image.error().code, path + ": " + image.error().message});
      if (args.json) all.push_back({{"image", path}, {"error", error_to_json(image.error())["error"]}});
      continue;
    }
    auto faces = ctx.engine().detect(*image, args.options);
    if (args.quality || args.liveness) {
      AnalysisRequest request;
      request.liveness = args.liveness;
      ctx.analyzer().analyze(*image, faces, request);
    }
    if (args.json) {
      nlohmann::json j = {{"image", path}, {"width", image->cols}, {"height", image->rows}};
      j["faces"] = nlohmann::json::array();
      for (const Face& f : faces) j["faces"].push_back(face_to_json(f, false, args.landmarks68));
      all.push_back(std::move(j));
    } else {
      std::printf("%s: %zu face%s\n", path.c_str(), faces.size(), faces.size() == 1 ? "" : "s");
      for (const Face& f : faces) {
        std::printf("  box %.0f,%.0f %.0fx%.0f  score %.3f", static_cast<double>(f.box.x), static_cast<double>(f.box.y),
                    static_cast<double>(f.box.width), static_cast<double>(f.box.height), static_cast<double>(f.score));
        if (f.quality) {
          std::printf("  quality %s", std::string(quality_level_name(f.quality->level)).c_str());
          if (!f.quality->limiting_factor.empty()) std::printf(" (%s)", f.quality->limiting_factor.c_str());
        }
        if (f.liveness) std::printf("  liveness %.2f %s", static_cast<double>(f.liveness->score), f.liveness->live ? "live" : "NOT live");
        std::printf("\n");
      }
    }
    if (!args.draw.empty()) {
      cv::Mat canvas = image->clone();
      draw_faces(canvas, faces);
      std::string out = args.draw;
      if (args.images.size() > 1) out = std::to_string(&path - args.images.data()) + "_" + out;
      if (!cv::imwrite(out, canvas)) status = fail({ErrorCode::kIoError, "cannot write " + out});
    }
  }
  if (args.json) std::cout << (all.size() == 1 ? all[0] : all).dump(2) << "\n";
  return status;
}

struct CompareArgs {
  std::string a, b;
  std::string operating_point = "fmr-1e-3";
  bool json = false;
  DetectOptions options;
};

Result<Face> primary_embedded_face(CliContext& ctx, const std::string& path, const DetectOptions& options,
                                   std::size_t* count) {
  auto image = read_image(path, ctx.limits);
  if (!image) return Error{image.error().code, path + ": " + image.error().message};
  auto faces = ctx.engine().analyze(*image, options);
  *count = faces.size();
  const Face* f = primary_face(faces);
  if (f == nullptr) return Error{ErrorCode::kNoFace, path + ": no face found"};
  return *f;
}

int run_compare(CliContext& ctx, const CompareArgs& args) {
  auto point = find_operating_point(ctx.engine().recognizer_spec(), args.operating_point);
  if (!point) return fail(point.error());
  std::size_t na = 0, nb = 0;
  auto fa = primary_embedded_face(ctx, args.a, args.options, &na);
  if (!fa) return fail(fa.error());
  auto fb = primary_embedded_face(ctx, args.b, args.options, &nb);
  if (!fb) return fail(fb.error());
  const Verification v = verify(fa->embedding, fb->embedding, *point);
  if (args.json) {
    nlohmann::json j = {{"similarity", std::round(static_cast<double>(v.similarity) * 10000.0) / 10000.0},
                        {"match", v.match},
                        {"operating_point", {{"name", v.operating_point.name}, {"fmr", v.operating_point.fmr},
                                             {"threshold", v.operating_point.threshold}}},
                        {"faces", {{"a", face_to_json(*fa)}, {"b", face_to_json(*fb)}}},
                        {"faces_in_image", {{"a", na}, {"b", nb}}}};
    std::cout << j.dump(2) << "\n";
  } else {
    std::printf("similarity %.4f  %s  (threshold %.3f at %s)\n", static_cast<double>(v.similarity),
                v.match ? "MATCH" : "no match", static_cast<double>(v.operating_point.threshold),
                v.operating_point.name.c_str());
    if (na > 1 || nb > 1) std::printf("note: the largest of %zu and %zu faces were compared\n", na, nb);
  }
  return 0;
}

struct EmbedArgs {
  std::string image;
  std::string format = "json";
  bool all_faces = false;
  DetectOptions options;
};

int run_embed(CliContext& ctx, const EmbedArgs& args) {
  auto image = read_image(args.image, ctx.limits);
  if (!image) return fail({image.error().code, args.image + ": " + image.error().message});
  auto faces = ctx.engine().analyze(*image, args.options);
  if (faces.empty()) return fail({ErrorCode::kNoFace, args.image + ": no face found"});
  std::vector<Face> chosen;
  if (args.all_faces) chosen = faces;
  else chosen.push_back(*primary_face(faces));
  if (args.format == "raw") {
    // Little-endian float32, dim values per face, faces in order: for piping into tools.
    for (const Face& f : chosen) {
      std::cout.write(reinterpret_cast<const char*>(f.embedding.data()),
                      static_cast<std::streamsize>(f.embedding.size() * sizeof(float)));
    }
    return 0;
  }
  nlohmann::json out = nlohmann::json::array();
  for (const Face& f : chosen) {
    nlohmann::json j = face_to_json(f, true);
    j["model"] = ctx.engine().recognizer_spec().id;
    out.push_back(std::move(j));
  }
  std::cout << (args.all_faces ? out : out[0]).dump() << "\n";
  return 0;
}

}  // namespace

void register_engine_commands(CLI::App& app, CliContext& ctx) {
  auto detect_args = std::make_shared<DetectArgs>();
  CLI::App* detect = app.add_subcommand("detect", "Find faces: box, score, landmarks");
  detect->add_option("images", detect_args->images, "Image files (JPEG, PNG, WebP, BMP, PGM, PPM)")->required();
  detect->add_flag("--json", detect_args->json, "Print JSON");
  detect->add_flag("--landmarks68", detect_args->landmarks68, "Include the 68 points in JSON");
  detect->add_option("--draw", detect_args->draw, "Write the image with faces drawn on it to this file");
  detect->add_flag("!--no-quality", detect_args->quality, "Skip quality analysis (pose, eyes, sharpness, exposure)");
  detect->add_flag("--liveness", detect_args->liveness, "Also run the passive liveness check (see README: what it is not)");
  add_detect_options(detect, detect_args->options);
  detect->callback([&ctx, detect_args] { ctx.exit_code = run_detect(ctx, *detect_args); });

  auto compare_args = std::make_shared<CompareArgs>();
  CLI::App* compare = app.add_subcommand("compare", "1:1 verification of the largest face in each of two images");
  compare->add_option("a", compare_args->a, "First image")->required();
  compare->add_option("b", compare_args->b, "Second image")->required();
  compare->add_option("--operating-point", compare_args->operating_point,
                      "Decision threshold: fmr-1e-3 or fmr-1e-4 (see README)")->capture_default_str();
  compare->add_flag("--json", compare_args->json, "Print JSON");
  add_detect_options(compare, compare_args->options);
  compare->callback([&ctx, compare_args] { ctx.exit_code = run_compare(ctx, *compare_args); });

  auto embed_args = std::make_shared<EmbedArgs>();
  CLI::App* embed = app.add_subcommand("embed", "The face template (L2-normalised) of the largest face");
  embed->add_option("image", embed_args->image, "Image file")->required();
  embed->add_option("--format", embed_args->format, "json or raw (float32 little-endian)")
      ->check(CLI::IsMember({"json", "raw"}))->capture_default_str();
  embed->add_flag("--all-faces", embed_args->all_faces, "Every face, not only the largest");
  add_detect_options(embed, embed_args->options);
  embed->callback([&ctx, embed_args] { ctx.exit_code = run_embed(ctx, *embed_args); });
}

}  // namespace candor::cli
