// fuzz_onnx: arbitrary bytes as an ONNX model, through the oneDNN runtime's own protobuf
// reader (src/infer/onnx_model.h) and its op check (DnnlNet::create). The model files are
// SHA-256 checked before loading, but the reader is written to refuse anything malformed.
#include <memory>
#include <string_view>

#include "harness.h"
#include "infer/dnnl_net.h"
#include "infer/onnx_model.h"

namespace candor::fuzz {

Outcome onnx_input(Bytes data) {
  auto model = onnx::parse_onnx(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()), "fuzz.onnx");
  if (!model) return {};
  auto net = DnnlNet::create(std::make_shared<const onnx::Model>(std::move(model).value()), InferencePrecision::kF32,
                             "fuzz.onnx");
  return {net.ok(), 0};
}

namespace {

// Protobuf wire format: a varint, and a length-delimited field (tag, length, bytes).
std::string varint(std::uint64_t v) {
  std::string out;
  do {
    out += static_cast<char>((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v != 0);
  return out;
}
std::string field(int number, std::string_view bytes) {
  return varint(static_cast<std::uint64_t>(number) << 3 | 2) + varint(bytes.size()) + std::string(bytes);
}
std::string int_field(int number, std::uint64_t v) { return varint(static_cast<std::uint64_t>(number) << 3) + varint(v); }

}  // namespace

std::vector<std::uint8_t> onnx_seed() {
  // y = Relu(Conv(x, W)), W a 1x1x1x1 float tensor of 0.5 (onnx.proto field numbers).
  const float half = 0.5f;
  const std::string weight = field(1, varint(1) + varint(1) + varint(1) + varint(1)) + int_field(2, 1) +
                             field(8, "W") + field(9, std::string_view(reinterpret_cast<const char*>(&half), 4));
  const std::string conv = field(1, "x") + field(1, "W") + field(2, "c") + field(4, "Conv");
  const std::string relu = field(1, "c") + field(2, "y") + field(4, "Relu");
  const std::string graph = field(1, conv) + field(1, relu) + field(5, weight) + field(11, field(1, "x")) +
                            field(11, field(1, "W")) + field(12, field(1, "y"));
  // The graph last: any cut of the model then cuts a field and is refused (the test checks).
  const std::string model = int_field(1, 7) + field(8, int_field(2, 11)) + field(7, graph);
  return {model.begin(), model.end()};
}

}  // namespace candor::fuzz
