// fuzz_manifest: arbitrary bytes as the model manifest, through load_manifest and what
// Engine::create does with a loaded one before touching a network (finding each role,
// resolving the model file).
#include <fstream>

#include "candor/engine.h"
#include "candor/models.h"
#include "harness.h"
#include "harness_internal.h"

namespace candor::fuzz {

Outcome manifest_input(Bytes data) {
  // load_manifest reads a path (that is how manifests arrive), so the input goes to a file.
  const std::filesystem::path path = scratch_dir() / "models.json";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  }
  auto manifest = load_manifest(path);
  if (!manifest) return {};
  const std::filesystem::path model_dir = resolve_model_dir();
  for (ModelRole role : {ModelRole::kDetector, ModelRole::kLandmarks, ModelRole::kRecognizer, ModelRole::kPose,
                         ModelRole::kEye, ModelRole::kLiveness}) {
    auto spec = manifest->find(role);
    if (!spec) continue;
    // No hash check: a fuzzed "file" may name any path, and hashing is not parsing.
    (void)locate_model(*spec, model_dir, /*verify=*/false);
    if (role == ModelRole::kRecognizer) {
      for (const OperatingPoint& point : spec->operating_points) (void)find_operating_point(*spec, point.name);
    }
  }
  return {true, 0};
}

}  // namespace candor::fuzz
