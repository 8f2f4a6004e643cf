// An ONNX model read straight from its protobuf bytes: the graph's nodes, initialisers
// and inputs/outputs, enough for the oneDNN runtime (dnnl_net.h) to compile it.
//
// Why a reader of our own rather than OpenCV's imported cv::dnn::Net: OpenCV 4.6 fuses
// and renames layers while importing (BatchNorm into Conv, "Relu" into the layer before,
// some constants into attributes), and hides the ONNX tensor names the lead needs to cut
// the detector before its box decoding. The ONNX protobuf subset used here is small: only
// varints, 32/64-bit fixed fields and length-delimited fields (protobuf wire format,
// https://protobuf.dev/programming-guides/encoding/), with the field numbers of onnx.proto
// (ONNX IR version 3+, https://github.com/onnx/onnx/blob/main/onnx/onnx.proto).
//
// The bytes are treated as untrusted: every length is bounds-checked, tensor payloads must
// match their dims, and any violation is a kModelInvalid error naming the file.
// Thread safety: the parsed OnnxModel is immutable after parse_onnx and may be read by
// any number of threads.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "candor/result.h"

namespace candor::onnx {

// A constant tensor (initialiser or Constant node's value). Float tensors are held as
// float, integer ones (INT64, INT32) as int64; other element types are refused.
struct Tensor {
  enum class Type { kFloat, kInt64 };
  std::string name;
  Type type = Type::kFloat;
  std::vector<int64_t> dims;
  std::vector<float> f;    // type kFloat: product(dims) values, row-major
  std::vector<int64_t> i;  // type kInt64
  int64_t size() const;    // product(dims), 1 for a scalar
};

struct Attribute {
  std::string name;
  float f = 0.0f;
  int64_t i = 0;
  std::string s;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<Tensor> t;  // at most one: the attribute's tensor value
};

struct Node {
  std::string op_type;
  std::string name;
  std::vector<std::string> inputs;   // "" marks an omitted optional input
  std::vector<std::string> outputs;
  std::vector<Attribute> attributes;

  const Attribute* attribute(std::string_view attribute_name) const;
  int64_t int_attr(std::string_view attribute_name, int64_t fallback) const;
  float float_attr(std::string_view attribute_name, float fallback) const;
  std::vector<int64_t> ints_attr(std::string_view attribute_name) const;
};

struct Model {
  std::vector<Node> nodes;                   // in file order (ONNX requires topological order)
  std::map<std::string, Tensor> initializers;
  std::vector<std::string> inputs;           // graph inputs that are not initialisers
  std::vector<std::string> outputs;
  int64_t opset = 0;                         // version of the default ("" / ai.onnx) domain
};

// ensures: kModelInvalid naming `source` (a file name, for the message) when the bytes
//          are not a well-formed ONNX model of the supported subset.
Result<Model> parse_onnx(std::string_view bytes, const std::string& source);

}  // namespace candor::onnx
