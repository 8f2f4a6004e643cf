// libFuzzer entry point of fuzz_json: the JSON request bodies (and paths and queries) of every route, through the real server.
// The work is in harness.h, shared with tests/fuzz_regression.
#include <cstddef>
#include <cstdint>

#include "harness.h"

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  candor::fuzz::init_server();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  (void)candor::fuzz::json_input({data, size});
  return 0;
}
