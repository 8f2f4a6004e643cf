// libFuzzer entry point of fuzz_image: decode_image, then detection, landmarks, templates and quality on what decodes.
// The work is in harness.h, shared with tests/fuzz_regression.
#include <cstddef>
#include <cstdint>

#include "harness.h"

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  candor::fuzz::init_image();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  (void)candor::fuzz::image_input({data, size});
  return 0;
}
