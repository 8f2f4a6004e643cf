// libFuzzer entry point of fuzz_multipart: multipart/form-data requests, parsed by httplib as the server does, into the routes that take images.
// The work is in harness.h, shared with tests/fuzz_regression.
#include <cstddef>
#include <cstdint>

#include "harness.h"

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  candor::fuzz::init_server();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  (void)candor::fuzz::multipart_input({data, size});
  return 0;
}
