// fuzz_image: arbitrary bytes through decode_image and, when they decode, the whole
// pipeline the /v1/detect route runs (detection, landmarks, templates, quality, liveness).
#include <cstdio>
#include <cstdlib>

#include "candor/image.h"
#include "harness.h"
#include "harness_internal.h"

namespace candor::fuzz {
namespace {

// A broken promise of a header contract is a bug even when nothing crashes yet.
[[noreturn]] void contract_violated(const char* what) {
  std::fprintf(stderr, "candor fuzz harness: contract violated: %s\n", what);
  std::abort();
}

}  // namespace

void init_image() {
  (void)shared_engine();
  (void)shared_analyzer();
}

Outcome image_input(Bytes data) {
  ImageLimits limits;
  limits.max_bytes = kImageMaxBytes;
  limits.max_pixels = kImageMaxPixels;
  auto bgr = decode_image(data, limits);
  if (!bgr) return {};
  // decode_image's contract, checked here because every later stage relies on it.
  if (bgr->type() != CV_8UC3 || !bgr->isContinuous() || std::int64_t{bgr->cols} * bgr->rows > kImageMaxPixels) {
    contract_violated("decode_image returned something other than a continuous CV_8UC3 within the limits");
  }
  const Engine& engine = shared_engine();
  // A lower threshold lets mutated faces reach the landmark, alignment and embedding
  // stages more often. The minimum face size stays at its default: smaller ones make the
  // detector upscale and tile a 256x256 input into some 25 inferences instead of one.
  DetectOptions options;
  options.score_threshold = 0.5f;
  options.max_faces = 2;
  std::vector<Face> faces = engine.analyze(*bgr, options);
  for (const Face& f : faces) {
    // One pixel of slack: boxes are clamped in floating point.
    const bool inside = f.box.x >= -1.0f && f.box.y >= -1.0f && f.box.right() <= static_cast<float>(bgr->cols) + 1.0f &&
                        f.box.bottom() <= static_cast<float>(bgr->rows) + 1.0f;
    if (!inside) contract_violated("Engine::detect returned a box outside the image");
    if (f.embedding.size() != static_cast<std::size_t>(engine.recognizer_spec().dim)) {
      contract_violated("Engine::analyze returned a face without a full template");
    }
  }
  if (!faces.empty()) {
    AnalysisRequest request;
    request.liveness = true;
    shared_analyzer().analyze(*bgr, faces, request);
  }
  return {true, 0};
}

}  // namespace candor::fuzz
