// libFuzzer entry point of fuzz_onnx: ONNX models through the oneDNN runtime's reader.
// The work is in harness.h, shared with tests/fuzz_regression.
#include <cstddef>
#include <cstdint>

#include "harness.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  (void)candor::fuzz::onnx_input({data, size});
  return 0;
}
