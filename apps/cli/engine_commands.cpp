// candor detect | compare | embed
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>

#include <opencv2/core/utility.hpp>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "candor/json.h"
#include "cli_context.h"

namespace candor::cli {
namespace {

struct DetectArgs {
  std::vector<std::string> images;
  bool json = false;
  bool no_quality = false;
  bool liveness = false;
  std::string draw;
  int landmarks = 5;  // 5 or 68: the points printed in JSON and drawn
  DetectOptions options;
};

void add_detect_options(CLI::App* cmd, DetectOptions& o) {
  cmd->add_option("--min-face", o.min_face_size, "Smallest face to look for, in pixels")->capture_default_str();
  cmd->add_option("--threshold", o.score_threshold, "Detector score threshold")->capture_default_str();
  cmd->add_option("--max-faces", o.max_faces, "Keep at most this many faces")->capture_default_str();
}

void draw_faces(cv::Mat& canvas, const std::vector<Face>& faces, bool landmarks68) {
  const int thickness = std::max(1, std::min(canvas.cols, canvas.rows) / 400);
  for (const Face& f : faces) {
    cv::rectangle(canvas, cv::Rect2f(f.box.x, f.box.y, f.box.width, f.box.height), {0, 255, 0}, thickness);
    if (landmarks68) {
      for (const auto& p : f.landmarks68) cv::circle(canvas, p, thickness, {255, 200, 0}, cv::FILLED);
    } else {
      for (const auto& p : f.landmarks) cv::circle(canvas, p, 2 * thickness, {0, 0, 255}, cv::FILLED);
    }
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
    if (!args.no_quality || args.liveness) {
      AnalysisRequest request;
      request.liveness = args.liveness;
      ctx.analyzer().analyze(*image, faces, request);
    }
    if (args.json) {
      nlohmann::json j = {{"image", path}, {"width", image->cols}, {"height", image->rows}};
      j["faces"] = nlohmann::json::array();
      for (const Face& f : faces) j["faces"].push_back(face_to_json(f, false, args.landmarks == 68));
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
      draw_faces(canvas, faces, args.landmarks == 68);
      std::string out = args.draw;
      if (args.images.size() > 1) out = std::to_string(&path - args.images.data()) + "_" + out;
      if (!cv::imwrite(out, canvas)) status = fail({ErrorCode::kIoError, "cannot write " + out});
    }
  }
  // One shape whatever the number of images: an array with an object per image, in order.
  if (args.json) std::cout << all.dump(2) << "\n";
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
    std::cout << verification_to_json(v, *fa, *fb, na, nb).dump(2) << "\n";
  } else {
    std::printf("similarity %.4f  %s  (threshold %.4f at %s)\n", static_cast<double>(v.similarity),
                v.match ? "MATCH" : "no match", static_cast<double>(v.operating_point.threshold),
                v.operating_point.name.c_str());
    if (na > 1 || nb > 1) std::printf("note: the largest of %zu and %zu faces were compared\n", na, nb);
  }
  return 0;
}

struct EmbedArgs {
  std::vector<std::string> inputs;  // image files and folders
  std::string format = "json";
  bool all_faces = false;
  int workers = 0;  // 0: one per core
  DetectOptions options;
};

// The JSON Lines of one image: a line per embedded face, or one {"image", "error"} line.
std::string embed_lines(const Engine& engine, const std::string& path, const EmbedArgs& args, const ImageLimits& limits,
                        std::optional<Error>* error) {
  auto image = read_image(path, limits);
  std::vector<Face> faces;
  if (!image) {
    *error = Error{image.error().code, path + ": " + image.error().message};
  } else {
    faces = engine.analyze(*image, args.options);
    if (faces.empty()) *error = Error{ErrorCode::kNoFace, path + ": no face found"};
  }
  if (*error) {  // raw output stays templates only; the message is on stderr either way
    if (args.format == "raw") return "";
    return nlohmann::json{{"image", path}, {"error", error_to_json(**error)["error"]}}.dump() + "\n";
  }
  std::vector<const Face*> chosen;
  if (args.all_faces) {
    for (const Face& f : faces) chosen.push_back(&f);
  } else {
    chosen.push_back(primary_face(faces));
  }
  std::string out;
  for (const Face* f : chosen) {
    if (args.format == "raw") {  // little-endian float32, dim values per face, faces in order
      out.append(reinterpret_cast<const char*>(f->embedding.data()), f->embedding.size() * sizeof(float));
      continue;
    }
    nlohmann::json j = face_to_json(*f, true);
    j["image"] = path;
    j["faces_in_image"] = faces.size();
    j["model"] = engine.recognizer_spec().id;
    out += j.dump() + "\n";
  }
  return out;
}

// Embeds every image on `workers` threads sharing one engine (whose networks have a
// replica per worker), printing each image's lines in input order as soon as the images
// before it are done. A failed image gets an error line and a message on stderr.
int run_embed(CliContext& ctx, const EmbedArgs& args) {
  std::vector<std::string> paths;
  bool bulk = args.inputs.size() > 1;
  for (const std::string& input : args.inputs) {
    std::error_code ec;
    if (!std::filesystem::is_directory(input, ec)) {
      paths.push_back(input);
      continue;
    }
    bulk = true;
    for (const auto& f : image_files(input, true)) paths.push_back(f.string());
  }
  if (args.format == "raw" && bulk) {
    return fail({ErrorCode::kInvalidArgument, "--format raw takes one image (raw templates carry no file name); "
                                              "use the JSON Lines output for several"});
  }
  if (paths.empty()) return fail({ErrorCode::kInvalidArgument, "no image files in " + args.inputs.front()});
  const int workers = ctx.prepare_workers(args.workers, paths.size());
  const Engine& engine = ctx.engine();

  const auto start = std::chrono::steady_clock::now();
  std::vector<std::optional<std::string>> done_lines(paths.size());
  std::size_t printed = 0, done = 0, failed = 0;
  std::mutex mutex;
  const ProgressLine progress(bulk ? paths.size() : 1);
  parallel_for(paths.size(), workers, [&](std::size_t i) {
      std::optional<Error> error;
      std::string lines = embed_lines(engine, paths[i], args, ctx.limits, &error);
      std::lock_guard lock(mutex);
      if (error) {
        progress.clear();
        fail(*error);
        ++failed;
      }
      done_lines[i] = std::move(lines);
      for (; printed < paths.size() && done_lines[printed]; ++printed) {
        std::cout << *done_lines[printed];
        done_lines[printed].reset();
      }
      std::cout.flush();
      progress.show(++done, std::to_string(failed) + " failed");
  });
  progress.clear();
  if (bulk) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "embedded %zu of %zu images in %.1f s: %.1f images/s (%d worker%s)\n", paths.size() - failed,
                 paths.size(), seconds, static_cast<double>(paths.size()) / seconds, workers, workers == 1 ? "" : "s");
  }
  return failed > 0 ? 1 : 0;
}

}  // namespace

void register_engine_commands(CLI::App& app, CliContext& ctx) {
  auto detect_args = std::make_shared<DetectArgs>();
  CLI::App* detect = app.add_subcommand("detect", "Find faces: box, score, landmarks");
  detect->add_option("images", detect_args->images, "Image files (JPEG, PNG, WebP, BMP, PGM, PPM)")->required();
  detect->add_flag("--json", detect_args->json, "Print JSON");
  detect->add_option("--landmarks", detect_args->landmarks,
                     "Landmarks in JSON and --draw: 5 (eyes, nose tip, mouth corners) or 68 (iBUG 300-W order)")
      ->check(CLI::IsMember({5, 68}))
      ->capture_default_str();
  detect->add_flag_callback("--landmarks68", [detect_args] { detect_args->landmarks = 68; })
      ->group("");  // the earlier spelling of --landmarks 68, kept for scripts
  detect->add_option("--draw", detect_args->draw, "Write the image with faces drawn on it to this file");
  detect->add_flag("--no-quality", detect_args->no_quality, "Skip quality analysis (pose, eyes, sharpness, exposure)");
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
  CLI::App* embed = app.add_subcommand(
      "embed", "Face templates (L2-normalised) of the largest face of each image: one JSON line per face");
  embed->add_option("images", embed_args->inputs, "Image files, or folders (searched recursively for images)")
      ->required();
  embed->add_option("--format", embed_args->format, "json (JSON Lines) or raw (float32 little-endian; one image)")
      ->check(CLI::IsMember({"json", "raw"}))->capture_default_str();
  embed->add_flag("--all-faces", embed_args->all_faces, "Every face, not only the largest");
  embed->add_option("--workers", embed_args->workers, "Images embedded at once (0: one per core)")
      ->check(CLI::NonNegativeNumber)->capture_default_str();
  add_detect_options(embed, embed_args->options);
  embed->callback([&ctx, embed_args] { ctx.exit_code = run_embed(ctx, *embed_args); });
}

}  // namespace candor::cli
