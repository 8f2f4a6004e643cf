#include "infer/onnx_model.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace candor::onnx {
namespace {

// Thrown inside the reader only; parse_onnx turns it into a kModelInvalid Error.
struct Malformed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Protobuf wire types (protobuf encoding guide).
constexpr int kVarint = 0;
constexpr int kFixed64 = 1;
constexpr int kLengthDelimited = 2;
constexpr int kFixed32 = 5;

// ONNX TensorProto.DataType values (onnx.proto).
constexpr int64_t kOnnxFloat = 1;
constexpr int64_t kOnnxInt32 = 6;
constexpr int64_t kOnnxInt64 = 7;

// A tensor larger than this is not one of Candor's networks (the largest, the
// recogniser, holds ~1.2 M floats); the bound keeps a hostile dims list from asking
// for gigabytes before the payload size check would refuse it.
constexpr int64_t kMaxTensorElements = int64_t{1} << 28;

struct Field {
  uint32_t number = 0;
  int wire = 0;
  uint64_t varint = 0;          // kVarint, kFixed32, kFixed64 (raw bits)
  std::string_view bytes;       // kLengthDelimited
};

class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool done() const { return pos_ >= data_.size(); }

  Field next() {
    Field f;
    const uint64_t key = varint();
    f.number = static_cast<uint32_t>(key >> 3);
    f.wire = static_cast<int>(key & 7);
    if (f.number == 0) throw Malformed("field number 0");
    switch (f.wire) {
      case kVarint: f.varint = varint(); break;
      case kFixed64: f.varint = fixed(8); break;
      case kFixed32: f.varint = fixed(4); break;
      case kLengthDelimited: {
        const uint64_t length = varint();
        if (length > data_.size() - pos_) throw Malformed("a length runs past the end of its message");
        f.bytes = data_.substr(pos_, static_cast<std::size_t>(length));
        pos_ += static_cast<std::size_t>(length);
        break;
      }
      default: throw Malformed("unsupported protobuf wire type " + std::to_string(f.wire));
    }
    return f;
  }

  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) throw Malformed("truncated varint");
      const auto byte = static_cast<uint8_t>(data_[pos_++]);
      value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return value;
    }
    throw Malformed("varint longer than 10 bytes");
  }

 private:
  uint64_t fixed(std::size_t n) {
    if (n > data_.size() - pos_) throw Malformed("truncated fixed-width field");
    uint64_t value = 0;
    std::memcpy(&value, data_.data() + pos_, n);  // little-endian host (x86-64)
    pos_ += n;
    return value;
  }
  std::string_view data_;
  std::size_t pos_ = 0;
};

float as_float(uint64_t bits) {
  const auto b = static_cast<uint32_t>(bits);
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

std::string as_string(const Field& f) {
  if (f.wire != kLengthDelimited) throw Malformed("field " + std::to_string(f.number) + " is not a string");
  return std::string(f.bytes);
}

// A repeated int64 field, packed (one length-delimited run) or not (one varint each).
void append_ints(const Field& f, std::vector<int64_t>& out) {
  if (f.wire == kVarint) {
    out.push_back(static_cast<int64_t>(f.varint));
  } else if (f.wire == kLengthDelimited) {
    Reader r(f.bytes);
    while (!r.done()) out.push_back(static_cast<int64_t>(r.varint()));
  } else {
    throw Malformed("an integer list has wire type " + std::to_string(f.wire));
  }
}

void append_floats(const Field& f, std::vector<float>& out) {
  if (f.wire == kFixed32) {
    out.push_back(as_float(f.varint));
  } else if (f.wire == kLengthDelimited) {
    if (f.bytes.size() % 4 != 0) throw Malformed("a packed float list is not a multiple of 4 bytes");
    const std::size_t n = f.bytes.size() / 4;
    if (n == 0) return;  // memcpy's pointers must not be null even for no bytes (found by fuzz_onnx)
    const std::size_t at = out.size();
    out.resize(at + n);
    std::memcpy(out.data() + at, f.bytes.data(), f.bytes.size());
  } else {
    throw Malformed("a float list has wire type " + std::to_string(f.wire));
  }
}

// TensorProto: dims 1, data_type 2, float_data 4, int32_data 5, int64_data 7, name 8,
// raw_data 9, data_location 14 (external data is refused).
Tensor read_tensor(std::string_view bytes) {
  Tensor t;
  int64_t data_type = 0;
  std::string_view raw;
  bool has_raw = false;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  Reader r(bytes);
  while (!r.done()) {
    const Field f = r.next();
    switch (f.number) {
      case 1: append_ints(f, t.dims); break;
      case 2: data_type = static_cast<int64_t>(f.varint); break;
      case 4: append_floats(f, floats); break;
      case 5: case 7: append_ints(f, ints); break;
      case 8: t.name = as_string(f); break;
      case 9: raw = f.bytes; has_raw = true; break;
      case 14: if (f.varint != 0) throw Malformed("tensor with external data"); break;
      default: break;
    }
  }
  int64_t count = 1;
  for (const int64_t d : t.dims) {
    if (d < 0 || (d > 0 && count > kMaxTensorElements / d)) throw Malformed("tensor " + t.name + " has bad dims");
    count *= d;
  }
  const auto n = static_cast<std::size_t>(count);
  if (data_type == kOnnxFloat) {
    t.type = Tensor::Type::kFloat;
    if (has_raw) {
      if (raw.size() != n * 4) throw Malformed("tensor " + t.name + ": raw data size does not match its dims");
      t.f.resize(n);
      if (n > 0) std::memcpy(t.f.data(), raw.data(), raw.size());  // a tensor with a 0 dim has no data
    } else {
      t.f = std::move(floats);
    }
    if (t.f.size() != n) throw Malformed("tensor " + t.name + ": value count does not match its dims");
  } else if (data_type == kOnnxInt64 || data_type == kOnnxInt32) {
    t.type = Tensor::Type::kInt64;
    const std::size_t width = data_type == kOnnxInt64 ? 8 : 4;
    if (has_raw) {
      if (raw.size() != n * width) throw Malformed("tensor " + t.name + ": raw data size does not match its dims");
      t.i.resize(n);
      for (std::size_t k = 0; k < n; ++k) {
        if (width == 8) {
          std::memcpy(&t.i[k], raw.data() + k * 8, 8);
        } else {
          int32_t v;
          std::memcpy(&v, raw.data() + k * 4, 4);
          t.i[k] = v;
        }
      }
    } else {
      t.i = std::move(ints);
    }
    if (t.i.size() != n) throw Malformed("tensor " + t.name + ": value count does not match its dims");
  } else {
    throw Malformed("tensor " + t.name + " has unsupported element type " + std::to_string(data_type));
  }
  return t;
}

// AttributeProto: name 1, f 2, i 3, s 4, t 5, floats 7, ints 8.
Attribute read_attribute(std::string_view bytes) {
  Attribute a;
  Reader r(bytes);
  while (!r.done()) {
    const Field f = r.next();
    switch (f.number) {
      case 1: a.name = as_string(f); break;
      case 2: a.f = as_float(f.varint); break;
      case 3: a.i = static_cast<int64_t>(f.varint); break;
      case 4: a.s = as_string(f); break;
      case 5:
        if (f.wire != kLengthDelimited) throw Malformed("attribute tensor is not a message");
        a.t.clear();
        a.t.push_back(read_tensor(f.bytes));
        break;
      case 7: append_floats(f, a.floats); break;
      case 8: append_ints(f, a.ints); break;
      default: break;
    }
  }
  return a;
}

// NodeProto: input 1, output 2, name 3, op_type 4, attribute 5.
Node read_node(std::string_view bytes) {
  Node n;
  Reader r(bytes);
  while (!r.done()) {
    const Field f = r.next();
    switch (f.number) {
      case 1: n.inputs.push_back(as_string(f)); break;
      case 2: n.outputs.push_back(as_string(f)); break;
      case 3: n.name = as_string(f); break;
      case 4: n.op_type = as_string(f); break;
      case 5:
        if (f.wire != kLengthDelimited) throw Malformed("node attribute is not a message");
        n.attributes.push_back(read_attribute(f.bytes));
        break;
      default: break;
    }
  }
  if (n.op_type.empty()) throw Malformed("a node without op_type");
  if (n.outputs.empty()) throw Malformed("node " + n.name + " (" + n.op_type + ") has no output");
  return n;
}

// ValueInfoProto: name 1.
std::string read_value_name(std::string_view bytes) {
  Reader r(bytes);
  while (!r.done()) {
    const Field f = r.next();
    if (f.number == 1) return as_string(f);
  }
  throw Malformed("a graph input or output without a name");
}

// GraphProto: node 1, initializer 5, input 11, output 12.
Model read_graph(std::string_view bytes) {
  Model m;
  std::vector<std::string> inputs;
  Reader r(bytes);
  while (!r.done()) {
    const Field f = r.next();
    if (f.number != 1 && f.number != 5 && f.number != 11 && f.number != 12) continue;
    if (f.wire != kLengthDelimited) throw Malformed("graph field " + std::to_string(f.number) + " is not a message");
    switch (f.number) {
      case 1: m.nodes.push_back(read_node(f.bytes)); break;
      case 5: {
        Tensor t = read_tensor(f.bytes);
        std::string name = t.name;
        m.initializers[name] = std::move(t);
        break;
      }
      case 11: inputs.push_back(read_value_name(f.bytes)); break;
      case 12: m.outputs.push_back(read_value_name(f.bytes)); break;
      default: break;
    }
  }
  for (auto& name : inputs) {
    if (m.initializers.count(name) == 0) m.inputs.push_back(std::move(name));
  }
  if (m.nodes.empty()) throw Malformed("the graph has no nodes");
  if (m.inputs.size() != 1) throw Malformed("the graph has " + std::to_string(m.inputs.size()) + " inputs, not 1");
  if (m.outputs.empty()) throw Malformed("the graph has no outputs");
  return m;
}

}  // namespace

int64_t Tensor::size() const {
  int64_t n = 1;
  for (const int64_t d : dims) n *= d;
  return n;
}

const Attribute* Node::attribute(std::string_view attribute_name) const {
  for (const Attribute& a : attributes) {
    if (a.name == attribute_name) return &a;
  }
  return nullptr;
}

int64_t Node::int_attr(std::string_view attribute_name, int64_t fallback) const {
  const Attribute* a = attribute(attribute_name);
  return a != nullptr ? a->i : fallback;
}

float Node::float_attr(std::string_view attribute_name, float fallback) const {
  const Attribute* a = attribute(attribute_name);
  return a != nullptr ? a->f : fallback;
}

std::vector<int64_t> Node::ints_attr(std::string_view attribute_name) const {
  const Attribute* a = attribute(attribute_name);
  return a != nullptr ? a->ints : std::vector<int64_t>{};
}

// OperatorSetIdProto: domain 1, version 2. The version of the default domain, else -1.
int64_t read_opset(std::string_view bytes) {
  std::string domain;
  int64_t version = 0;
  Reader r(bytes);
  while (!r.done()) {
    const Field f = r.next();
    if (f.number == 1) domain = as_string(f);
    if (f.number == 2) version = static_cast<int64_t>(f.varint);
  }
  return domain.empty() || domain == "ai.onnx" ? version : -1;
}

// ModelProto: graph 7, opset_import 8.
Result<Model> parse_onnx(std::string_view bytes, const std::string& source) {
  try {
    Reader r(bytes);
    std::string_view graph;
    bool has_graph = false;
    int64_t opset = 0;
    while (!r.done()) {
      const Field f = r.next();
      if (f.number == 7) {
        if (f.wire != kLengthDelimited) throw Malformed("the graph is not a message");
        graph = f.bytes;
        has_graph = true;
      } else if (f.number == 8) {
        if (f.wire != kLengthDelimited) throw Malformed("an opset_import is not a message");
        opset = std::max(opset, read_opset(f.bytes));
      }
    }
    if (!has_graph) throw Malformed("no graph");
    Model model = read_graph(graph);
    model.opset = opset;
    return model;
  } catch (const Malformed& e) {
    return Error{ErrorCode::kModelInvalid, "not a readable ONNX model: " + source + ": " + e.what()};
  }
}

}  // namespace candor::onnx
