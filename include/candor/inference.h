// Which inference runtime runs the engine's networks (EngineOptions::inference,
// the global CLI option --inference).
#pragma once

#include <optional>
#include <string_view>

namespace candor {

enum class InferenceBackend {
  kOpenCv,      // OpenCV 4.6 DNN, float32 (the plain pipeline's runtime)
  kOneDnn,      // oneDNN 2.6, float32 (src/infer/dnnl_net.h)
  kOneDnnBf16,  // oneDNN 2.6, bfloat16 convolutions on AVX512-BF16/AMX, float32 elsewhere
};

// "opencv", "onednn", "onednn-bf16".
std::string_view inference_backend_name(InferenceBackend backend) noexcept;
// The backend of one of those names; nullopt for anything else.
std::optional<InferenceBackend> parse_inference_backend(std::string_view name) noexcept;

}  // namespace candor
