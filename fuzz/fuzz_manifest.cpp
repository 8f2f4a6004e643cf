// libFuzzer entry point of fuzz_manifest: model manifests through load_manifest.
// The work is in harness.h, shared with tests/fuzz_regression.
#include <cstddef>
#include <cstdint>

#include "harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  (void)candor::fuzz::manifest_input({data, size});
  return 0;
}
