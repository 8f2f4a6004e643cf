// Templates of LFW images computed in parallel, with an optional cache file so that
// several protocols can be evaluated on one pass of the network.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "candor/engine.h"

namespace candor::bench {

struct StageTotals {
  double decode_ms = 0, detect_ms = 0, landmarks_ms = 0, embed_ms = 0;
};

struct ImageTemplates {
  std::vector<std::string> keys;                // "Name/Name_0001.jpg"
  std::vector<std::vector<float>> templates;     // empty when the image did not decode
  std::vector<float> norms;                      // per image: Face::embedding_norm (0: no template)
  std::size_t no_face = 0;                       // images where the fallback box was used
  std::size_t unreadable = 0;
  StageTotals totals;                            // summed over images (thread time)
  double wall_seconds = 0;
};

// Computes one template per image: the detected face nearest the image centre (LFW
// labels the centred face); when the detector finds none, a second try at a lower
// threshold, then a fixed central box (counted in no_face).
// `cache`: when it exists and covers all keys, read from it; otherwise computed and written.
ImageTemplates embed_lfw_images(const EngineOptions& options, const std::filesystem::path& root,
                                const std::vector<std::string>& keys, int threads,
                                const std::filesystem::path& cache = {});

}  // namespace candor::bench
