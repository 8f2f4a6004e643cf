// Engine routes: detection and 1:1 comparison. Nothing is stored; images are
// decoded, analysed and dropped within the request.
#include <algorithm>
#include <cmath>

#include "candor/json.h"
#include "http_util.h"
#include "server_context.h"

namespace candor::server {
namespace {

Result<float> float_param(const httplib::Request& req, const std::string& name, float fallback, float lo, float hi) {
  if (!req.has_param(name)) return fallback;
  const std::string v = req.get_param_value(name);
  char* end = nullptr;
  const float f = std::strtof(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || !std::isfinite(f) || f < lo || f > hi) {
    return Error{ErrorCode::kInvalidArgument,
                 name + " must be a number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]"};
  }
  return f;
}

ImageLimits limits_for(const Context& ctx) {
  ImageLimits limits;
  limits.max_bytes = ctx.options.max_body_bytes;
  return limits;
}

// The face with the largest box: the subject of a portrait, ignoring bystanders.
const Face* largest_face(const std::vector<Face>& faces) {
  const auto it = std::max_element(faces.begin(), faces.end(), [](const Face& a, const Face& b) {
    return a.box.width * a.box.height < b.box.width * b.box.height;
  });
  return it == faces.end() ? nullptr : &*it;
}

}  // namespace

std::optional<AdmissionGate::Ticket> admit_inference(Context& ctx, Call& call) {
  auto ticket = ctx.gate->enter();
  if (!ticket) {
    send_error(call.res, {ErrorCode::kOverloaded, "inference queue full; retry shortly"}, 1);
  }
  return ticket;
}

void register_engine_routes(Router& router) {
  router.add({"POST", "/v1/detect", Access::kScoped, "detect", true}, [](Context& ctx, Call& call) {
    DetectOptions options;
    auto min_face = int_param(call.req, "min_face", options.min_face_size, 8, 8192);
    // Landmarks and quality cost per face: at threshold 0.05 a 1920x1080 frame of noise
    // gives 800 boxes, whose landmarks alone took 15 s (2-core machine). 256 faces, four
    // times the default, bound that to a few seconds as the pyramid bounds detection.
    auto max_faces = int_param(call.req, "max_faces", options.max_faces, 1, 256);
    auto threshold = float_param(call.req, "threshold", options.score_threshold, 0.05f, 1.0f);
    if (!min_face) return send_error(call.res, min_face.error());
    if (!max_faces) return send_error(call.res, max_faces.error());
    if (!threshold) return send_error(call.res, threshold.error());
    // 5 (default: the points alignment uses) or 68 (every point of the landmark network,
    // for clients that draw or measure faces); no other set exists.
    auto landmarks = int_param(call.req, "landmarks", 5, 5, 68);
    if (landmarks && *landmarks != 5 && *landmarks != 68) landmarks = Error{ErrorCode::kInvalidArgument, "landmarks must be 5 or 68"};
    if (!landmarks) return send_error(call.res, landmarks.error());
    options.min_face_size = static_cast<int>(*min_face);
    options.max_faces = static_cast<int>(*max_faces);
    options.score_threshold = *threshold;
    auto images = images_from(call.req, "image", false);
    if (!images) return send_error(call.res, images.error());
    const Engine& engine = *ctx.engine.load();
    // A minimum face the engine would raise (a bound on detection work: Engine::
    // smallest_min_face) is refused rather than silently changed. The pixel count does
    // not depend on EXIF orientation, so the header suffices and nothing is decoded.
    if (auto info = probe_image((*images)[0].bytes); info && call.req.has_param("min_face")) {
      const int smallest = engine.smallest_min_face({info->width, info->height});
      if (options.min_face_size < smallest) {
        return send_error(call.res, {ErrorCode::kInvalidArgument,
                                     "min_face must be at least " + std::to_string(smallest) + " for a " +
                                         std::to_string(info->width) + "x" + std::to_string(info->height) +
                                         " image (detection work is bounded per image)"});
      }
    }
    auto ticket = admit_inference(ctx, call);
    if (!ticket) return;
    auto bgr = decode_image((*images)[0].bytes, limits_for(ctx));
    if (!bgr) return send_error(call.res, bgr.error());
    auto faces = engine.detect(*bgr, options);
    // Quality (pose, eyes, sharpness, exposure) unless ?quality=false; liveness on request.
    const bool quality = !call.req.has_param("quality") || call.req.get_param_value("quality") != "false";
    const bool liveness = call.req.has_param("liveness") && call.req.get_param_value("liveness") == "true";
    if (quality || liveness) {
      AnalysisRequest request;
      request.liveness = liveness;
      ctx.analyzer.load()->analyze(*bgr, faces, request);
    }
    nlohmann::json out = {{"width", bgr->cols}, {"height", bgr->rows}, {"faces", nlohmann::json::array()}};
    for (const auto& f : faces) out["faces"].push_back(face_to_json(f, false, *landmarks == 68));
    send_json(call.res, 200, out);
  });

  router.add({"POST", "/v1/compare", Access::kScoped, "compare", true}, [](Context& ctx, Call& call) {
    const Engine& engine = *ctx.engine.load();
    const std::string point_name =
        call.req.has_param("operating_point") ? call.req.get_param_value("operating_point") : "fmr-1e-3";
    auto point = find_operating_point(engine.recognizer_spec(), point_name);
    if (!point) return send_error(call.res, {ErrorCode::kInvalidArgument, point.error().message});
    auto a = images_from(call.req, "a", false);
    if (!a) return send_error(call.res, a.error());
    auto b = images_from(call.req, "b", false);
    if (!b) return send_error(call.res, b.error());
    auto ticket = admit_inference(ctx, call);
    if (!ticket) return;
    std::vector<Face> faces[2];
    const std::vector<NamedImage>* inputs[2] = {&*a, &*b};
    const char* labels[2] = {"a", "b"};
    for (int i = 0; i < 2; ++i) {
      auto bgr = decode_image((*inputs[i])[0].bytes, limits_for(ctx));
      if (!bgr) return send_error(call.res, {bgr.error().code, std::string("image ") + labels[i] + ": " + bgr.error().message});
      faces[i] = engine.analyze(*bgr);
      if (faces[i].empty()) return send_error(call.res, {ErrorCode::kNoFace, std::string("no face in image ") + labels[i]});
      // The compared face's quality tells the caller how far to trust the answer.
      auto largest = std::max_element(faces[i].begin(), faces[i].end(),
                                      [](const Face& x, const Face& y) { return x.box.area() < y.box.area(); });
      ctx.analyzer.load()->analyze(*bgr, std::span<Face>(&*largest, 1), AnalysisRequest{});
    }
    const Face* fa = largest_face(faces[0]);
    const Face* fb = largest_face(faces[1]);
    const Verification v = verify(fa->embedding, fb->embedding, *point);
    send_json(call.res, 200, verification_to_json(v, *fa, *fb, faces[0].size(), faces[1].size()));
  });
}

}  // namespace candor::server
