#include "infer/dnnl_net.h"

#include <dlfcn.h>
#include <xmmintrin.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <set>
#include <stdexcept>

#include <oneapi/dnnl/dnnl.hpp>

namespace candor {
namespace {

using dnnl::memory;
using Dims = std::vector<int64_t>;
using Tag = memory::format_tag;
using DataType = memory::data_type;

// Thrown while compiling a plan; DnnlNet::run turns it into an Error.
struct CompileError : std::runtime_error {
  CompileError(ErrorCode c, const std::string& message) : std::runtime_error(message), code(c) {}
  ErrorCode code;
};

// oneDNN from Debian is built on OpenMP (DNNL_CPU_RUNTIME == DNNL_RUNTIME_OMP in
// dnnl_config.h; libdnnl.so.2 links GCC's libgomp.so.1): it runs each primitive on
// omp_get_max_threads() threads of the calling thread, a per-thread setting that its jit
// kernels also read when they are created. One inference on one thread: set it to 1 around
// compile and run, and restore it after. The functions are looked up in the libgomp that
// libdnnl loaded, not linked: a clang build (ASan, fuzzing) links LLVM's libomp for FAISS,
// whose omp_set_num_threads would not reach libgomp's setting.
class OneOmpThread {
 public:
  OneOmpThread() {
    static const Api api = load();
    api_ = &api;
    if (api_->get != nullptr && api_->set != nullptr) {
      previous_ = api_->get();
      api_->set(1);
    }
  }
  ~OneOmpThread() {
    if (previous_ > 0) api_->set(previous_);
  }
  OneOmpThread(const OneOmpThread&) = delete;
  OneOmpThread& operator=(const OneOmpThread&) = delete;

 private:
  struct Api {
    int (*get)() = nullptr;
    void (*set)(int) = nullptr;
  };
  static Api load() {
    Api api;
    void* gomp = dlopen("libgomp.so.1", RTLD_NOW | RTLD_NOLOAD);  // loaded by libdnnl already
    if (gomp == nullptr) return api;
    api.get = reinterpret_cast<int (*)()>(dlsym(gomp, "omp_get_max_threads"));
    api.set = reinterpret_cast<void (*)(int)>(dlsym(gomp, "omp_set_num_threads"));
    return api;
  }
  const Api* api_ = nullptr;
  int previous_ = 0;
};

// Denormal floats flushed to zero (MXCSR FTZ and DAZ) for the duration of an inference.
// The recogniser's weights and activations reach the denormal range, and x86 cores take
// a microcode assist per denormal operand: one 1x1 convolution of MobileFaceNet (128 to
// 256 channels at 14x14, 13 MFLOP) took 40-87 ms instead of ~0.3, the whole network
// 116 ms instead of ~9 (oneDNN 2.6 has no setting of its own for this; OpenCV's results
// are matched within float32 rounding either way, tests/infer).
class FlushDenormals {
 public:
  FlushDenormals() : previous_(_mm_getcsr()) { _mm_setcsr(previous_ | kFtz | kDaz); }
  ~FlushDenormals() { _mm_setcsr(previous_); }
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  static constexpr unsigned kFtz = 0x8000;  // MXCSR bit 15, flush to zero (Intel SDM vol. 1, 10.2.3)
  static constexpr unsigned kDaz = 0x0040;  // MXCSR bit 6, denormals are zeros
  unsigned previous_;
};

int64_t numel(const Dims& d) {
  int64_t n = 1;
  for (const int64_t v : d) n *= v;
  return n;
}

std::string dims_text(const Dims& d) {
  std::string s = "[";
  for (std::size_t i = 0; i < d.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(d[i]);
  }
  s += ']';
  return s;
}

memory::desc plain_desc(const Dims& d, DataType type) {
  static const Tag kTags[] = {Tag::a, Tag::a, Tag::ab, Tag::abc, Tag::abcd, Tag::abcde, Tag::abcdef};
  if (d.size() > 6) throw CompileError(ErrorCode::kModelInvalid, "a tensor of rank " + std::to_string(d.size()));
  const memory::dims md = d.empty() ? memory::dims{1} : memory::dims(d.begin(), d.end());
  return memory::desc(md, type, kTags[d.size()]);
}

// Normalises a possibly negative ONNX axis against a rank.
int64_t axis_of(int64_t axis, std::size_t rank, const std::string& op) {
  const auto r = static_cast<int64_t>(rank);
  if (axis < 0) axis += r;
  if (axis < 0 || axis >= r) throw CompileError(ErrorCode::kInvalidArgument, op + ": axis out of range");
  return axis;
}

// Row-major strides of `dims` aligned right against an output of rank `rank`; 0 along
// broadcast dimensions (numpy broadcasting, which ONNX's elementwise ops follow).
Dims broadcast_strides(const Dims& dims, const Dims& out) {
  Dims s(out.size(), 0);
  int64_t stride = 1;
  for (std::size_t k = 0; k < dims.size(); ++k) {
    const std::size_t i = dims.size() - 1 - k;
    const std::size_t o = out.size() - 1 - k;
    s[o] = dims[i] == 1 ? 0 : stride;
    stride *= dims[i];
  }
  return s;
}

Dims broadcast_dims(const Dims& a, const Dims& b, const std::string& op) {
  Dims out(std::max(a.size(), b.size()), 1);
  for (std::size_t k = 0; k < out.size(); ++k) {
    const int64_t x = k < a.size() ? a[a.size() - 1 - k] : 1;
    const int64_t y = k < b.size() ? b[b.size() - 1 - k] : 1;
    if (x != y && x != 1 && y != 1) {
      throw CompileError(ErrorCode::kInvalidArgument,
                         op + ": shapes " + dims_text(a) + " and " + dims_text(b) + " do not broadcast");
    }
    out[out.size() - 1 - k] = std::max(x, y);
  }
  return out;
}

// out[i] = f(a[i], b[i]) over the broadcast shape `od`.
template <typename F>
void broadcast_apply(const float* a, const Dims& as, const float* b, const Dims& bs, const Dims& od, float* out,
                     F f) {
  const std::size_t rank = od.size();
  if (rank == 0) {
    out[0] = f(a[0], b[0]);
    return;
  }
  const int64_t inner = od[rank - 1];
  const int64_t sa = as[rank - 1], sb = bs[rank - 1];
  const int64_t outer = numel(od) / std::max<int64_t>(inner, 1);
  Dims index(rank, 0);
  for (int64_t o = 0; o < outer; ++o) {
    int64_t ia = 0, ib = 0;
    for (std::size_t k = 0; k + 1 < rank; ++k) {
      ia += index[k] * as[k];
      ib += index[k] * bs[k];
    }
    float* dst = out + o * inner;
    for (int64_t j = 0; j < inner; ++j) dst[j] = f(a[ia + j * sa], b[ib + j * sb]);
    for (std::size_t k = rank - 1; k-- > 0;) {  // odometer over all but the last dimension
      if (++index[k] < od[k]) break;
      index[k] = 0;
    }
  }
}

// A host (plain C++) op compiled for fixed shapes: reads the data inputs as dense
// float32, writes the output.
struct HostKernel {
  std::vector<std::string> data_inputs;
  Dims out_dims;
  std::function<void(const std::vector<const float*>&, float*)> fn;
};

struct Value {
  Dims dims;
  bool constant = false;
  onnx::Tensor tensor;  // constant values
  memory mem;           // runtime values
};

}  // namespace

struct DnnlNet::Plan {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  memory input;
  std::vector<std::function<void()>> steps;
  std::vector<std::pair<memory, Dims>> outputs;  // dense float32, in the requested order
  std::vector<memory> keep;                      // every buffer a host step points into
  std::deque<std::vector<float>> constants;      // constants host steps read
};

namespace {

class Compiler {
 public:
  Compiler(const onnx::Model& model, InferencePrecision precision, DnnlNet::Plan& plan)
      : model_(model), precision_(precision), plan_(plan) {}

  void compile(const Dims& input_dims, const std::vector<std::string>& outputs) {
    input_name_ = model_.inputs.front();
    requested_.insert(outputs.begin(), outputs.end());
    mark_needed(outputs);
    Value in;
    in.dims = input_dims;
    in.mem = alloc(plain_desc(input_dims, DataType::f32));
    plan_.input = in.mem;
    values_[input_name_] = std::move(in);
    for (const auto& [name, t] : model_.initializers) {
      Value v;
      v.constant = true;
      v.dims = t.dims;
      v.tensor = t;
      values_[name] = std::move(v);
    }
    for (std::size_t k = 0; k < model_.nodes.size(); ++k) {
      if (!needed_[k] || fused_[k]) continue;
      compile_node(k);
    }
    for (const std::string& name : outputs) {
      auto it = values_.find(name);
      if (it == values_.end()) throw CompileError(ErrorCode::kInvalidArgument, "no tensor named " + name);
      if (it->second.constant) {
        if (it->second.tensor.type != onnx::Tensor::Type::kFloat) {
          throw CompileError(ErrorCode::kInvalidArgument, name + " is not a float tensor");
        }
        memory m = alloc(plain_desc(it->second.dims, DataType::f32));
        std::copy(it->second.tensor.f.begin(), it->second.tensor.f.end(), static_cast<float*>(m.get_data_handle()));
        plan_.outputs.emplace_back(m, it->second.dims);
      } else {
        plan_.outputs.emplace_back(as_desc(name, plain_desc(it->second.dims, DataType::f32)), it->second.dims);
      }
    }
  }

 private:
  // Only the nodes a requested output depends on are compiled: the detector's conv body
  // runs at any size, its box-decoding tail (constants of one size) only when asked for.
  void mark_needed(const std::vector<std::string>& outputs) {
    std::map<std::string, std::size_t> producer;
    for (std::size_t k = 0; k < model_.nodes.size(); ++k) {
      for (const auto& o : model_.nodes[k].outputs) producer[o] = k;
    }
    needed_.assign(model_.nodes.size(), false);
    fused_.assign(model_.nodes.size(), false);
    std::vector<std::string> todo(outputs.begin(), outputs.end());
    std::set<std::string> seen;
    while (!todo.empty()) {
      const std::string name = todo.back();
      todo.pop_back();
      if (!seen.insert(name).second) continue;
      auto it = producer.find(name);
      if (it == producer.end()) continue;
      if (needed_[it->second]) continue;
      needed_[it->second] = true;
      for (const auto& i : model_.nodes[it->second].inputs) {
        if (!i.empty()) todo.push_back(i);
      }
    }
    for (std::size_t k = 0; k < model_.nodes.size(); ++k) {
      if (!needed_[k]) continue;
      for (const auto& i : model_.nodes[k].inputs) consumers_[i].push_back(k);
    }
  }

  memory alloc(const memory::desc& md) {
    memory m(md, plan_.engine);
    plan_.keep.push_back(m);
    return m;
  }

  Value& value(const std::string& name, const onnx::Node& n) {
    auto it = values_.find(name);
    if (it == values_.end()) {
      throw CompileError(ErrorCode::kModelInvalid, n.op_type + " " + n.name + ": input " + name + " is not computed");
    }
    return it->second;
  }

  const onnx::Tensor& constant(const onnx::Node& n, std::size_t input) {
    if (input >= n.inputs.size() || n.inputs[input].empty()) {
      throw CompileError(ErrorCode::kModelInvalid, n.op_type + " " + n.name + ": input " + std::to_string(input) + " missing");
    }
    Value& v = value(n.inputs[input], n);
    if (!v.constant) {
      throw CompileError(ErrorCode::kModelInvalid,
                         n.op_type + " " + n.name + ": input " + n.inputs[input] + " must be a constant");
    }
    return v.tensor;
  }

  bool is_constant(const std::string& name) const {
    auto it = values_.find(name);
    return it != values_.end() && it->second.constant;
  }

  // The value's memory in layout `md`, reordered once (cached) when it is held otherwise.
  memory as_desc(const std::string& name, const memory::desc& md) {
    Value& v = values_.at(name);
    if (v.mem.get_desc() == md) return v.mem;
    for (const memory& m : converted_[name]) {
      if (m.get_desc() == md) return m;
    }
    memory m = alloc(md);
    memory from = v.mem;
    dnnl::reorder r(from, m);
    plan_.steps.push_back([r, from, m, s = plan_.stream]() mutable { r.execute(s, from, m); });
    converted_[name].push_back(m);
    return m;
  }

  void compile_node(std::size_t k) {
    const onnx::Node& n = model_.nodes[k];
    const std::string& op = n.op_type;
    if (op == "Constant") {
      const onnx::Attribute* a = n.attribute("value");
      if (a == nullptr || a->t.empty()) throw CompileError(ErrorCode::kModelInvalid, "Constant " + n.name + " without a tensor value");
      define_constant(n.outputs[0], a->t.front());
      return;
    }
    if (op == "Shape") {
      onnx::Tensor t;
      t.type = onnx::Tensor::Type::kInt64;
      t.dims = {static_cast<int64_t>(value(n.inputs[0], n).dims.size())};
      t.i = value(n.inputs[0], n).dims;
      define_constant(n.outputs[0], std::move(t));
      return;
    }
    if (try_integer_constant(n)) return;
    if (op == "Conv") return conv(k);
    if (op == "Relu" && !is_constant(n.inputs[0])) return eltwise_relu(n);
    if (op == "PRelu" && dnnl_prelu(n)) return;
    if (op == "Concat" && dnnl_concat(n)) return;
    host(n);
  }

  void define_constant(const std::string& name, onnx::Tensor t) {
    Value v;
    v.constant = true;
    v.dims = t.dims;
    v.tensor = std::move(t);
    values_[name] = std::move(v);
  }

  // Shape arithmetic on int64 constants (Shape → Gather → Unsqueeze → Concat → Reshape),
  // folded while compiling since every shape is known then.
  bool try_integer_constant(const onnx::Node& n) {
    for (const auto& i : n.inputs) {
      if (!i.empty() && !is_constant(i)) return false;
    }
    bool any_int = false;
    for (const auto& i : n.inputs) {
      if (!i.empty() && values_.at(i).tensor.type == onnx::Tensor::Type::kInt64) any_int = true;
    }
    if (!any_int || n.op_type == "Reshape") return false;
    const onnx::Tensor& a = constant(n, 0);
    onnx::Tensor out;
    out.type = onnx::Tensor::Type::kInt64;
    if (n.op_type == "Gather") {
      const onnx::Tensor& idx = constant(n, 1);
      if (a.dims.size() != 1 || n.int_attr("axis", 0) != 0) {
        throw CompileError(ErrorCode::kModelInvalid, "Gather " + n.name + ": only 1-D constants");
      }
      out.dims = idx.dims;
      for (int64_t j : idx.i) {
        if (j < 0) j += a.dims[0];
        if (j < 0 || j >= a.dims[0]) throw CompileError(ErrorCode::kModelInvalid, "Gather " + n.name + ": index out of range");
        out.i.push_back(a.i[static_cast<std::size_t>(j)]);
      }
    } else if (n.op_type == "Unsqueeze") {
      out.i = a.i;
      out.dims = a.dims;
      for (const int64_t axis : n.ints_attr("axes")) {
        const int64_t at = axis < 0 ? axis + static_cast<int64_t>(out.dims.size()) + 1 : axis;
        if (at < 0 || at > static_cast<int64_t>(out.dims.size())) {
          throw CompileError(ErrorCode::kModelInvalid, "Unsqueeze " + n.name + ": axis out of range");
        }
        out.dims.insert(out.dims.begin() + at, 1);
      }
    } else if (n.op_type == "Concat") {
      for (const auto& i : n.inputs) {
        const onnx::Tensor& t = values_.at(i).tensor;
        if (t.type != onnx::Tensor::Type::kInt64 || t.dims.size() > 1) {
          throw CompileError(ErrorCode::kModelInvalid, "Concat " + n.name + ": mixed or multi-dimensional constants");
        }
        out.i.insert(out.i.end(), t.i.begin(), t.i.end());
      }
      out.dims = {static_cast<int64_t>(out.i.size())};
    } else {
      throw CompileError(ErrorCode::kModelInvalid, n.op_type + " " + n.name + " on integer tensors is not supported");
    }
    define_constant(n.outputs[0], std::move(out));
    return true;
  }

  bool single_consumer(const std::string& name) const {
    if (requested_.count(name) != 0) return false;
    auto it = consumers_.find(name);
    return it != consumers_.end() && it->second.size() == 1;
  }

  // Whether every consumer of `name` reads oneDNN layouts (so a bf16 result may stay bf16).
  bool consumed_by_dnnl_only(const std::string& name) const {
    if (requested_.count(name) != 0) return false;
    auto it = consumers_.find(name);
    if (it == consumers_.end()) return false;
    for (const std::size_t c : it->second) {
      const std::string& op = model_.nodes[c].op_type;
      if (op != "Conv" && op != "Relu" && op != "PRelu" && op != "Concat") return false;
    }
    return true;
  }

  static float scalar_of(const onnx::Tensor& t) {
    if (t.type != onnx::Tensor::Type::kFloat || t.size() != 1) return std::numeric_limits<float>::quiet_NaN();
    return t.f[0];
  }

  void conv(std::size_t k) {
    const onnx::Node& n = model_.nodes[k];
    const std::string where = "Conv " + n.name;
    Value& x = value(n.inputs[0], n);
    if (x.constant || x.dims.size() != 4) throw CompileError(ErrorCode::kModelInvalid, where + ": needs a 4-D computed input");
    const onnx::Tensor& w_t = constant(n, 1);
    if (w_t.type != onnx::Tensor::Type::kFloat || w_t.dims.size() != 4) {
      throw CompileError(ErrorCode::kModelInvalid, where + ": weights are not 4-D float");
    }
    const onnx::Attribute* auto_pad = n.attribute("auto_pad");
    if (auto_pad != nullptr && !auto_pad->s.empty() && auto_pad->s != "NOTSET") {
      throw CompileError(ErrorCode::kModelInvalid, where + ": auto_pad " + auto_pad->s + " is not supported");
    }
    const int64_t group = n.int_attr("group", 1);
    const int64_t oc = w_t.dims[0], icg = w_t.dims[1], kh = w_t.dims[2], kw = w_t.dims[3];
    Dims strides = n.ints_attr("strides"), dil = n.ints_attr("dilations"), pads = n.ints_attr("pads");
    if (strides.empty()) strides = {1, 1};
    if (dil.empty()) dil = {1, 1};
    if (pads.empty()) pads = {0, 0, 0, 0};
    if (group < 1 || icg * group != x.dims[1] || oc % group != 0 || strides.size() != 2 || dil.size() != 2 ||
        pads.size() != 4) {
      throw CompileError(ErrorCode::kModelInvalid, where + ": weights " + dims_text(w_t.dims) +
                                                       " do not fit input " + dims_text(x.dims));
    }
    const int64_t oh = (x.dims[2] + pads[0] + pads[2] - ((kh - 1) * dil[0] + 1)) / strides[0] + 1;
    const int64_t ow = (x.dims[3] + pads[1] + pads[3] - ((kw - 1) * dil[1] + 1)) / strides[1] + 1;
    if (oh < 1 || ow < 1) throw CompileError(ErrorCode::kInvalidArgument, where + ": input " + dims_text(x.dims) + " too small");
    const Dims out_dims{x.dims[0], oc, oh, ow};

    std::vector<float> w = w_t.f;
    std::vector<float> b(static_cast<std::size_t>(oc), 0.0f);
    if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
      const onnx::Tensor& b_t = constant(n, 2);
      if (b_t.size() != oc) throw CompileError(ErrorCode::kModelInvalid, where + ": bias size");
      b = b_t.f;
    }

    // Absorb the chain of single-consumer ops after the convolution: a BatchNormalization
    // right after it into the weights, then Relu, PRelu, scalar Mul and one residual Add
    // as post-ops.
    struct PostOp {
      enum class Kind { kRelu, kPrelu, kScale, kSum } kind;
      std::size_t node;
      float scale = 0.0f;
      std::string operand;  // kPrelu: the slopes; kSum: the residual
    };
    std::vector<PostOp> chain;
    std::string out = n.outputs[0];
    std::string conv_out = out;  // after a folded BatchNormalization, if any
    bool has_sum = false;
    while (single_consumer(out)) {
      const std::size_t c = consumers_.at(out).front();
      const onnx::Node& m = model_.nodes[c];
      const std::string other = m.inputs.size() == 2 ? (m.inputs[0] == out ? m.inputs[1] : m.inputs[0]) : "";
      if (m.op_type == "BatchNormalization" && chain.empty() && m.inputs.size() == 5 && m.inputs[0] == out &&
          is_constant(m.inputs[1]) && is_constant(m.inputs[2]) && is_constant(m.inputs[3]) && is_constant(m.inputs[4])) {
        const onnx::Tensor &g = constant(m, 1), &beta = constant(m, 2), &mean = constant(m, 3), &var = constant(m, 4);
        if (g.size() != oc || beta.size() != oc || mean.size() != oc || var.size() != oc) break;
        const float eps = m.float_attr("epsilon", 1e-5f);
        const std::size_t per_oc = w.size() / static_cast<std::size_t>(oc);
        for (std::size_t o = 0; o < static_cast<std::size_t>(oc); ++o) {
          const float scale = g.f[o] / std::sqrt(var.f[o] + eps);
          for (std::size_t j = 0; j < per_oc; ++j) w[o * per_oc + j] *= scale;
          b[o] = (b[o] - mean.f[o]) * scale + beta.f[o];
        }
        fused_[c] = true;
        out = conv_out = m.outputs[0];
        continue;
      }
      if (m.op_type == "Relu") {
        chain.push_back({PostOp::Kind::kRelu, c, 0.0f, {}});
      } else if (m.op_type == "PRelu" && m.inputs[0] == out && is_constant(other) &&
                 (constant(m, 1).size() == oc || constant(m, 1).size() == 1)) {
        chain.push_back({PostOp::Kind::kPrelu, c, 0.0f, other});
      } else if (m.op_type == "Mul" && is_constant(other) && !std::isnan(scalar_of(values_.at(other).tensor))) {
        chain.push_back({PostOp::Kind::kScale, c, scalar_of(values_.at(other).tensor), {}});
      } else if (m.op_type == "Add" && !has_sum && !other.empty() && values_.count(other) != 0 &&
                 !values_.at(other).constant && values_.at(other).dims == out_dims) {
        chain.push_back({PostOp::Kind::kSum, c, 0.0f, other});
        has_sum = true;
      } else {
        break;
      }
      out = m.outputs[0];
    }

    auto build = [&](std::size_t count, std::vector<std::pair<int, memory>>& slopes, std::string& sum_with) {
      dnnl::post_ops po;
      slopes.clear();
      sum_with.clear();
      for (std::size_t j = 0; j < count; ++j) {
        const PostOp& p = chain[j];
        switch (p.kind) {
          case PostOp::Kind::kRelu: po.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f); break;
          case PostOp::Kind::kScale: po.append_eltwise(1.0f, dnnl::algorithm::eltwise_linear, p.scale, 0.0f); break;
          case PostOp::Kind::kSum:
            po.append_sum(1.0f);
            sum_with = p.operand;
            break;
          case PostOp::Kind::kPrelu: {
            const onnx::Tensor& slope = values_.at(p.operand).tensor;
            const bool per_channel = slope.size() == oc;
            po.append_prelu(per_channel ? (1 << 1) : 0);
            memory sm = alloc(plain_desc(per_channel ? Dims{1, oc, 1, 1} : Dims{1, 1, 1, 1}, DataType::f32));
            std::copy(slope.f.begin(), slope.f.end(), static_cast<float*>(sm.get_data_handle()));
            slopes.emplace_back(static_cast<int>(j), sm);
            break;
          }
        }
      }
      return po;
    };

    // oneDNN 2.6 has no optimised convolution for some post-op chains (a PReLU post-op
    // sends every convolution to its reference kernel, ~50x slower): take the longest
    // prefix of the chain an optimised kernel takes; the rest runs as ops of their own.
    const memory::dims wdims = group == 1 ? memory::dims{oc, icg, kh, kw} : memory::dims{group, oc / group, icg, kh, kw};
    const memory::desc b_md({oc}, DataType::f32, Tag::a);
    std::vector<std::pair<int, memory>> prelu_slopes;
    std::string sum_with;
    std::optional<dnnl::convolution_forward::primitive_desc> pd;
    std::size_t count = chain.size();
    bool allow_low = true;  // false once this CPU has no bf16 kernel for the convolution
    for (;; --count) {
      out = count == 0 ? conv_out : model_.nodes[chain[count - 1].node].outputs[0];
      const bool low = allow_low && precision_ == InferencePrecision::kBf16 && n.inputs[0] != input_name_ &&
                       requested_.count(out) == 0;
      const DataType src_type = low ? DataType::bf16 : DataType::f32;
      const DataType dst_type = low && consumed_by_dnnl_only(out) ? DataType::bf16 : DataType::f32;
      const memory::desc src_md({x.dims[0], x.dims[1], x.dims[2], x.dims[3]}, src_type, Tag::any);
      const memory::desc w_md(wdims, src_type, Tag::any);
      const memory::desc dst_md({out_dims[0], out_dims[1], out_dims[2], out_dims[3]}, dst_type, Tag::any);
      const dnnl::convolution_forward::desc desc(
          dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_md, w_md, b_md, dst_md,
          {strides[0], strides[1]}, {dil[0] - 1, dil[1] - 1}, {pads[0], pads[1]}, {pads[2], pads[3]});
      dnnl::primitive_attr attr;
      attr.set_post_ops(build(count, prelu_slopes, sum_with));
      try {
        pd.emplace(desc, attr, plan_.engine);
      } catch (const dnnl::error&) {
        if (!low) throw;
        // A CPU without AVX-512 has no bf16 convolution in oneDNN 2.6: run it in float32.
        allow_low = false;
        ++count;
        continue;
      }
      if (count == 0 || std::string(pd->impl_info_str()).rfind("ref", 0) != 0) break;
    }
    for (std::size_t j = 0; j < count; ++j) fused_[chain[j].node] = true;

    // Weights and bias: reordered into the kernel's layout once, now.
    memory w_user(memory::desc(wdims, DataType::f32, group == 1 ? Tag::oihw : Tag::goihw), plan_.engine, w.data());
    memory w_mem = alloc(pd->weights_desc());
    dnnl::reorder(w_user, w_mem).execute(plan_.stream, w_user, w_mem);
    plan_.stream.wait();
    memory b_mem = alloc(b_md);
    std::copy(b.begin(), b.end(), static_cast<float*>(b_mem.get_data_handle()));

    memory src = as_desc(n.inputs[0], pd->src_desc());
    memory dst;
    if (!sum_with.empty()) {
      Value& o = values_.at(sum_with);
      if (o.mem.get_desc() == pd->dst_desc() && single_consumer(sum_with) && sum_with != input_name_) {
        dst = o.mem;  // in place: the residual's buffer is read nowhere else
      } else {
        dst = alloc(pd->dst_desc());
        memory from = o.mem;
        dnnl::reorder r(from, dst);
        plan_.steps.push_back([r, from, dst, s = plan_.stream]() mutable { r.execute(s, from, dst); });
      }
    } else {
      dst = alloc(pd->dst_desc());
    }
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w_mem}, {DNNL_ARG_BIAS, b_mem}, {DNNL_ARG_DST, dst}};
    for (const auto& [index, s] : prelu_slopes) args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(index) | DNNL_ARG_WEIGHTS] = s;
    dnnl::convolution_forward prim(*pd);
    plan_.steps.push_back([prim, args, s = plan_.stream]() { prim.execute(s, args); });
    Value v;
    v.dims = out_dims;
    v.mem = dst;
    values_[out] = std::move(v);
  }

  void eltwise_relu(const onnx::Node& n) {
    Value& x = value(n.inputs[0], n);
    const memory::desc md = x.mem.get_desc();
    const dnnl::eltwise_forward::primitive_desc pd(
        {dnnl::prop_kind::forward_inference, dnnl::algorithm::eltwise_relu, md, 0.0f, 0.0f}, plan_.engine);
    memory src = x.mem;
    memory dst = alloc(pd.dst_desc());
    dnnl::eltwise_forward prim(pd);
    plan_.steps.push_back([prim, src, dst, s = plan_.stream]() {
      prim.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
    });
    Value v;
    v.dims = x.dims;
    v.mem = dst;
    values_[n.outputs[0]] = std::move(v);
  }

  // PReLU with per-channel (or one) constant slopes on a computed 4-D tensor, in its own
  // layout (oneDNN 2.6 runs it as a post-op only in its reference convolution).
  bool dnnl_prelu(const onnx::Node& n) {
    if (n.inputs.size() != 2 || is_constant(n.inputs[0]) || !is_constant(n.inputs[1])) return false;
    Value& x = value(n.inputs[0], n);
    const onnx::Tensor& slope = constant(n, 1);
    if (x.dims.size() != 4 || slope.type != onnx::Tensor::Type::kFloat) return false;
    if (slope.size() != 1 && slope.size() != x.dims[1]) return false;
    const Dims sd{1, slope.size(), 1, 1};
    const memory::desc md = x.mem.get_desc();
    const dnnl::prelu_forward::primitive_desc pd(
        {dnnl::prop_kind::forward_inference, md, memory::desc({sd.begin(), sd.end()}, DataType::f32, Tag::any)},
        plan_.engine);
    std::vector<float> slopes = slope.f;
    memory user(plain_desc(sd, DataType::f32), plan_.engine, slopes.data());
    memory weights = alloc(pd.weights_desc());
    dnnl::reorder(user, weights).execute(plan_.stream, user, weights);
    plan_.stream.wait();
    memory src = x.mem;
    memory dst = alloc(pd.dst_desc());
    dnnl::prelu_forward prim(pd);
    plan_.steps.push_back([prim, src, weights, dst, s = plan_.stream]() {
      prim.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}});
    });
    Value v;
    v.dims = x.dims;
    v.mem = dst;
    values_[n.outputs[0]] = std::move(v);
    return true;
  }

  // Channel concatenation of computed 4-D tensors, in oneDNN layouts.
  bool dnnl_concat(const onnx::Node& n) {
    std::vector<const Value*> in;
    for (const auto& i : n.inputs) {
      const Value& v = value(i, n);
      if (v.constant || v.dims.size() != 4) return false;
      in.push_back(&v);
    }
    if (axis_of(n.int_attr("axis", 1), 4, "Concat") != 1) return false;
    DataType type = DataType::bf16;
    for (const Value* v : in) {
      if (v->mem.get_desc().data_type() != DataType::bf16) type = DataType::f32;
    }
    std::vector<memory> srcs;
    std::vector<memory::desc> mds;
    Dims out_dims = in.front()->dims;
    out_dims[1] = 0;
    for (std::size_t j = 0; j < in.size(); ++j) {
      memory m = in[j]->mem;
      if (m.get_desc().data_type() != type) m = as_desc(n.inputs[j], plain_desc(in[j]->dims, type));
      srcs.push_back(m);
      mds.push_back(m.get_desc());
      out_dims[1] += in[j]->dims[1];
    }
    const dnnl::concat::primitive_desc pd(1, mds, plan_.engine);
    memory dst = alloc(pd.dst_desc());
    std::unordered_map<int, memory> args{{DNNL_ARG_DST, dst}};
    for (std::size_t j = 0; j < srcs.size(); ++j) args[DNNL_ARG_MULTIPLE_SRC + static_cast<int>(j)] = srcs[j];
    dnnl::concat prim(pd);
    plan_.steps.push_back([prim, args, s = plan_.stream]() { prim.execute(s, args); });
    Value v;
    v.dims = out_dims;
    v.mem = dst;
    values_[n.outputs[0]] = std::move(v);
    return true;
  }

  // Plain C++ ops on dense float32: folded now when every input is a constant, else a step.
  void host(const onnx::Node& n) {
    HostKernel kernel = host_kernel(n);
    std::vector<const Value*> in;
    bool all_constant = true;
    for (const auto& name : kernel.data_inputs) {
      const Value& v = value(name, n);
      if (v.constant && v.tensor.type != onnx::Tensor::Type::kFloat) {
        throw CompileError(ErrorCode::kModelInvalid, n.op_type + " " + n.name + ": integer input " + name);
      }
      all_constant = all_constant && v.constant;
      in.push_back(&v);
    }
    if (all_constant) {
      std::vector<const float*> ptrs;
      for (const Value* v : in) ptrs.push_back(v->tensor.f.data());
      onnx::Tensor t;
      t.dims = kernel.out_dims;
      t.f.resize(static_cast<std::size_t>(numel(kernel.out_dims)));
      kernel.fn(ptrs, t.f.data());
      define_constant(n.outputs[0], std::move(t));
      return;
    }
    std::vector<const float*> ptrs;
    for (std::size_t j = 0; j < in.size(); ++j) {
      if (in[j]->constant) {
        plan_.constants.push_back(in[j]->tensor.f);
        ptrs.push_back(plan_.constants.back().data());
      } else {
        memory m = as_desc(kernel.data_inputs[j], plain_desc(in[j]->dims, DataType::f32));
        ptrs.push_back(static_cast<const float*>(m.get_data_handle()));
      }
    }
    memory out = alloc(plain_desc(kernel.out_dims, DataType::f32));
    auto* dst = static_cast<float*>(out.get_data_handle());
    plan_.steps.push_back([s = plan_.stream, fn = kernel.fn, ptrs, dst]() mutable {
      s.wait();  // the oneDNN steps before have written the inputs
      fn(ptrs, dst);
    });
    Value v;
    v.dims = kernel.out_dims;
    v.mem = out;
    values_[n.outputs[0]] = std::move(v);
  }

  const Dims& dims_of(const onnx::Node& n, std::size_t input) { return value(n.inputs.at(input), n).dims; }

  HostKernel host_kernel(const onnx::Node& n) {
    const std::string& op = n.op_type;
    const std::string where = op + " " + n.name;
    if (n.inputs.empty() || n.inputs[0].empty()) throw CompileError(ErrorCode::kModelInvalid, where + " without input");
    HostKernel k;
    const Dims a = dims_of(n, 0);
    if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "Pow" || op == "PRelu") {
      if (n.inputs.size() != 2) throw CompileError(ErrorCode::kModelInvalid, where + " needs two inputs");
      const Dims b = dims_of(n, 1);
      k.data_inputs = {n.inputs[0], n.inputs[1]};
      k.out_dims = broadcast_dims(a, b, where);
      const Dims as = broadcast_strides(a, k.out_dims), bs = broadcast_strides(b, k.out_dims), od = k.out_dims;
      auto bind = [&](auto f) {
        return [as, bs, od, f](const std::vector<const float*>& in, float* out) {
          broadcast_apply(in[0], as, in[1], bs, od, out, f);
        };
      };
      if (op == "Add") k.fn = bind([](float x, float y) { return x + y; });
      if (op == "Sub") k.fn = bind([](float x, float y) { return x - y; });
      if (op == "Mul") k.fn = bind([](float x, float y) { return x * y; });
      if (op == "Div") k.fn = bind([](float x, float y) { return x / y; });
      if (op == "Pow") k.fn = bind([](float x, float y) { return std::pow(x, y); });
      if (op == "PRelu") k.fn = bind([](float x, float s) { return x >= 0.0f ? x : x * s; });
      return k;
    }
    k.data_inputs = {n.inputs[0]};
    const auto count = numel(a);
    auto unary = [&](auto f) {
      k.out_dims = a;
      k.fn = [count, f](const std::vector<const float*>& in, float* out) {
        for (int64_t j = 0; j < count; ++j) out[j] = f(in[0][j]);
      };
      return k;
    };
    if (op == "Relu") return unary([](float x) { return std::max(x, 0.0f); });
    if (op == "Exp") return unary([](float x) { return std::exp(x); });
    if (op == "Sigmoid") return unary([](float x) { return 1.0f / (1.0f + std::exp(-x)); });
    if (op == "Reshape" || op == "Flatten" || op == "Squeeze" || op == "Unsqueeze") {
      k.out_dims = reshaped(n, a);
      if (numel(k.out_dims) != count) {
        throw CompileError(ErrorCode::kInvalidArgument, where + ": cannot reshape " + dims_text(a) + " to " + dims_text(k.out_dims));
      }
      k.fn = [count](const std::vector<const float*>& in, float* out) { std::copy(in[0], in[0] + count, out); };
      return k;
    }
    if (op == "Softmax") return softmax(n, a);
    if (op == "Transpose") return transpose(n, a);
    if (op == "Slice") return slice(n, a);
    if (op == "Concat") return concat(n);
    if (op == "Gemm") return gemm(n, a);
    if (op == "BatchNormalization") return batch_norm(n, a);
    throw CompileError(ErrorCode::kModelInvalid, "unsupported op " + where);
  }

  Dims reshaped(const onnx::Node& n, const Dims& a) {
    const std::string& op = n.op_type;
    if (op == "Flatten") {
      const int64_t axis = n.int_attr("axis", 1);
      const auto at = static_cast<std::size_t>(axis < 0 ? axis + static_cast<int64_t>(a.size()) : axis);
      if (at > a.size()) throw CompileError(ErrorCode::kModelInvalid, "Flatten " + n.name + ": axis out of range");
      return {numel(Dims(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(at))),
              numel(Dims(a.begin() + static_cast<std::ptrdiff_t>(at), a.end()))};
    }
    if (op == "Unsqueeze") {
      Dims out = a;
      for (const int64_t axis : n.ints_attr("axes")) {
        const int64_t at = axis < 0 ? axis + static_cast<int64_t>(out.size()) + 1 : axis;
        if (at < 0 || at > static_cast<int64_t>(out.size())) throw CompileError(ErrorCode::kModelInvalid, "Unsqueeze: axis");
        out.insert(out.begin() + at, 1);
      }
      return out;
    }
    if (op == "Squeeze") {
      const Dims axes = n.ints_attr("axes");
      Dims out;
      for (std::size_t j = 0; j < a.size(); ++j) {
        bool drop = axes.empty() ? a[j] == 1 : false;
        for (const int64_t axis : axes) drop = drop || axis_of(axis, a.size(), "Squeeze") == static_cast<int64_t>(j);
        if (!drop) out.push_back(a[j]);
      }
      return out;
    }
    // Reshape: 0 copies the input's dimension, -1 takes what is left (ONNX Reshape).
    const onnx::Tensor& shape = constant(n, 1);
    if (shape.type != onnx::Tensor::Type::kInt64) throw CompileError(ErrorCode::kModelInvalid, "Reshape: shape is not int64");
    Dims out;
    int infer = -1;
    int64_t known = 1;
    for (std::size_t j = 0; j < shape.i.size(); ++j) {
      int64_t d = shape.i[j];
      if (d == 0 && j < a.size()) d = a[j];
      if (d == -1) {
        if (infer >= 0) throw CompileError(ErrorCode::kModelInvalid, "Reshape: two -1 dimensions");
        infer = static_cast<int>(j);
        d = 1;
      } else if (d < 0) {
        throw CompileError(ErrorCode::kModelInvalid, "Reshape: negative dimension");
      } else {
        known *= d;
      }
      out.push_back(d);
    }
    if (infer >= 0) out[static_cast<std::size_t>(infer)] = known == 0 ? 0 : numel(a) / known;
    return out;
  }

  HostKernel softmax(const onnx::Node& n, const Dims& a) {
    // Opset < 13 (these files: Unsqueeze takes `axes` as an attribute) coerces the input
    // to 2-D at `axis` (default 1); opset 13 normalises along `axis` alone (default -1).
    const bool opset13 = model_.opset >= 13;
    const auto axis = static_cast<std::size_t>(axis_of(n.int_attr("axis", opset13 ? -1 : 1), a.size(), "Softmax"));
    const int64_t outer = numel(Dims(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(axis)));
    const int64_t len = opset13 ? a[axis] : numel(Dims(a.begin() + static_cast<std::ptrdiff_t>(axis), a.end()));
    const int64_t inner = opset13 ? numel(Dims(a.begin() + static_cast<std::ptrdiff_t>(axis) + 1, a.end())) : 1;
    HostKernel k;
    k.data_inputs = {n.inputs[0]};
    k.out_dims = a;
    k.fn = [outer, len, inner](const std::vector<const float*>& in, float* out) {
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t i = 0; i < inner; ++i) {
          const float* x = in[0] + o * len * inner + i;
          float* y = out + o * len * inner + i;
          float top = x[0];
          for (int64_t j = 1; j < len; ++j) top = std::max(top, x[j * inner]);
          float sum = 0.0f;
          for (int64_t j = 0; j < len; ++j) sum += (y[j * inner] = std::exp(x[j * inner] - top));
          for (int64_t j = 0; j < len; ++j) y[j * inner] /= sum;
        }
      }
    };
    return k;
  }

  HostKernel transpose(const onnx::Node& n, const Dims& a) {
    Dims perm = n.ints_attr("perm");
    if (perm.empty()) {
      perm.resize(a.size());
      std::iota(perm.rbegin(), perm.rend(), 0);
    }
    if (perm.size() != a.size()) throw CompileError(ErrorCode::kModelInvalid, "Transpose " + n.name + ": perm rank");
    Dims in_strides(a.size(), 1);
    for (std::size_t j = a.size(); j-- > 1;) in_strides[j - 1] = in_strides[j] * a[j];
    HostKernel k;
    k.data_inputs = {n.inputs[0]};
    Dims src_strides;  // input stride of each output dimension
    for (const int64_t p : perm) {
      const auto j = static_cast<std::size_t>(axis_of(p, a.size(), "Transpose"));
      k.out_dims.push_back(a[j]);
      src_strides.push_back(in_strides[j]);
    }
    const Dims od = k.out_dims;
    const Dims zero(od.size(), 0);
    k.fn = [od, src_strides, zero](const std::vector<const float*>& in, float* out) {
      // An elementwise copy whose "other" operand is never read: reuses the broadcast walk.
      broadcast_apply(in[0], src_strides, in[0], zero, od, out, [](float x, float) { return x; });
    };
    return k;
  }

  HostKernel slice(const onnx::Node& n, const Dims& a) {
    Dims starts = n.ints_attr("starts"), ends = n.ints_attr("ends"), axes = n.ints_attr("axes"), steps;
    if (n.attribute("starts") == nullptr) {  // opset >= 10: inputs, not attributes
      starts = constant(n, 1).i;
      ends = constant(n, 2).i;
      if (n.inputs.size() > 3 && !n.inputs[3].empty()) axes = constant(n, 3).i;
      if (n.inputs.size() > 4 && !n.inputs[4].empty()) steps = constant(n, 4).i;
    }
    if (axes.empty()) {
      axes.resize(starts.size());
      std::iota(axes.begin(), axes.end(), 0);
    }
    if (starts.size() != ends.size() || axes.size() != starts.size()) {
      throw CompileError(ErrorCode::kModelInvalid, "Slice " + n.name + ": starts, ends and axes differ in length");
    }
    for (const int64_t s : steps) {
      if (s != 1) throw CompileError(ErrorCode::kModelInvalid, "Slice " + n.name + ": only step 1");
    }
    Dims begin(a.size(), 0);
    HostKernel k;
    k.data_inputs = {n.inputs[0]};
    k.out_dims = a;
    for (std::size_t j = 0; j < axes.size(); ++j) {
      const auto ax = static_cast<std::size_t>(axis_of(axes[j], a.size(), "Slice"));
      auto clamp = [&](int64_t v) { return std::clamp(v < 0 ? v + a[ax] : v, int64_t{0}, a[ax]); };
      const int64_t s = clamp(starts[j]), e = clamp(ends[j]);
      begin[ax] = s;
      k.out_dims[ax] = std::max<int64_t>(e - s, 0);
    }
    Dims in_strides(a.size(), 1);
    for (std::size_t j = a.size(); j-- > 1;) in_strides[j - 1] = in_strides[j] * a[j];
    int64_t offset = 0;
    for (std::size_t j = 0; j < a.size(); ++j) offset += begin[j] * in_strides[j];
    const Dims od = k.out_dims;
    const Dims zero(od.size(), 0);
    k.fn = [od, in_strides, zero, offset](const std::vector<const float*>& in, float* out) {
      broadcast_apply(in[0] + offset, in_strides, in[0], zero, od, out, [](float x, float) { return x; });
    };
    return k;
  }

  HostKernel concat(const onnx::Node& n) {
    HostKernel k;
    const Dims first = dims_of(n, 0);
    const auto axis = static_cast<std::size_t>(axis_of(n.int_attr("axis", 0), first.size(), "Concat"));
    std::vector<int64_t> blocks;  // elements per outer index, per input
    k.out_dims = first;
    k.out_dims[axis] = 0;
    for (std::size_t j = 0; j < n.inputs.size(); ++j) {
      const Dims d = dims_of(n, j);
      for (std::size_t r = 0; r < d.size(); ++r) {
        if (d.size() != first.size() || (r != axis && d[r] != first[r])) {
          throw CompileError(ErrorCode::kInvalidArgument, "Concat " + n.name + ": shapes " + dims_text(first) + " and " + dims_text(d));
        }
      }
      k.data_inputs.push_back(n.inputs[j]);
      k.out_dims[axis] += d[axis];
      blocks.push_back(numel(Dims(d.begin() + static_cast<std::ptrdiff_t>(axis), d.end())));
    }
    const int64_t outer = numel(Dims(first.begin(), first.begin() + static_cast<std::ptrdiff_t>(axis)));
    k.fn = [outer, blocks](const std::vector<const float*>& in, float* out) {
      for (int64_t o = 0; o < outer; ++o) {
        for (std::size_t j = 0; j < blocks.size(); ++j) {
          out = std::copy(in[j] + o * blocks[j], in[j] + (o + 1) * blocks[j], out);
        }
      }
    };
    return k;
  }

  HostKernel gemm(const onnx::Node& n, const Dims& a) {
    const std::string where = "Gemm " + n.name;
    const Dims b = dims_of(n, 1);
    if (a.size() != 2 || b.size() != 2) throw CompileError(ErrorCode::kModelInvalid, where + ": needs 2-D inputs");
    const bool ta = n.int_attr("transA", 0) != 0, tb = n.int_attr("transB", 0) != 0;
    const float alpha = n.float_attr("alpha", 1.0f), beta = n.float_attr("beta", 1.0f);
    const int64_t m = ta ? a[1] : a[0], kk = ta ? a[0] : a[1];
    const int64_t nn = tb ? b[0] : b[1];
    if ((tb ? b[1] : b[0]) != kk) throw CompileError(ErrorCode::kInvalidArgument, where + ": inner dimensions differ");
    HostKernel k;
    k.data_inputs = {n.inputs[0], n.inputs[1]};
    k.out_dims = {m, nn};
    const bool has_c = n.inputs.size() > 2 && !n.inputs[2].empty();
    Dims cs(2, 0);
    if (has_c) {
      k.data_inputs.push_back(n.inputs[2]);
      (void)broadcast_dims(k.out_dims, dims_of(n, 2), where);
      const Dims c = dims_of(n, 2);
      if (c.size() > 2) throw CompileError(ErrorCode::kInvalidArgument, where + ": C of rank > 2");
      cs = broadcast_strides(c, k.out_dims);
    }
    k.fn = [=](const std::vector<const float*>& in, float* out) {
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < nn; ++j) {
          double acc = 0.0;
          for (int64_t t = 0; t < kk; ++t) {
            const float x = ta ? in[0][t * m + i] : in[0][i * kk + t];
            const float y = tb ? in[1][j * kk + t] : in[1][t * nn + j];
            acc += static_cast<double>(x) * y;
          }
          float r = alpha * static_cast<float>(acc);
          if (has_c) r += beta * in[2][i * cs[0] + j * cs[1]];
          out[i * nn + j] = r;
        }
      }
    };
    return k;
  }

  HostKernel batch_norm(const onnx::Node& n, const Dims& a) {
    const std::string where = "BatchNormalization " + n.name;
    if (a.size() < 2 || n.inputs.size() != 5) throw CompileError(ErrorCode::kModelInvalid, where + ": needs 5 inputs, rank >= 2");
    const onnx::Tensor &g = constant(n, 1), &beta = constant(n, 2), &mean = constant(n, 3), &var = constant(n, 4);
    const int64_t c = a[1];
    if (g.size() != c || beta.size() != c || mean.size() != c || var.size() != c) {
      throw CompileError(ErrorCode::kModelInvalid, where + ": parameter sizes");
    }
    const float eps = n.float_attr("epsilon", 1e-5f);
    std::vector<float> scale(static_cast<std::size_t>(c)), shift(static_cast<std::size_t>(c));
    for (std::size_t j = 0; j < scale.size(); ++j) {
      scale[j] = g.f[j] / std::sqrt(var.f[j] + eps);
      shift[j] = beta.f[j] - mean.f[j] * scale[j];
    }
    const int64_t outer = a[0], inner = numel(Dims(a.begin() + 2, a.end()));
    HostKernel k;
    k.data_inputs = {n.inputs[0]};
    k.out_dims = a;
    k.fn = [=](const std::vector<const float*>& in, float* out) {
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t ch = 0; ch < c; ++ch) {
          const int64_t base = (o * c + ch) * inner;
          for (int64_t j = 0; j < inner; ++j) {
            out[base + j] = in[0][base + j] * scale[static_cast<std::size_t>(ch)] + shift[static_cast<std::size_t>(ch)];
          }
        }
      }
    };
    return k;
  }

  const onnx::Model& model_;
  InferencePrecision precision_;
  DnnlNet::Plan& plan_;
  std::string input_name_;
  std::set<std::string> requested_;
  std::vector<bool> needed_;
  std::vector<bool> fused_;
  std::map<std::string, std::vector<std::size_t>> consumers_;
  std::map<std::string, Value> values_;
  std::map<std::string, std::vector<memory>> converted_;
};

}  // namespace

DnnlNet::DnnlNet(std::shared_ptr<const onnx::Model> model, InferencePrecision precision, std::string source)
    : model_(std::move(model)), precision_(precision), source_(std::move(source)) {}

DnnlNet::~DnnlNet() = default;

Result<std::unique_ptr<DnnlNet>> DnnlNet::create(std::shared_ptr<const onnx::Model> model, InferencePrecision precision,
                                                 std::string source) {
  if (model == nullptr) throw std::invalid_argument("DnnlNet::create: no model");
  static const std::set<std::string> kSupported = {
      "Conv", "Relu", "PRelu", "Add", "Sub", "Mul", "Div", "Pow", "Exp", "Sigmoid", "BatchNormalization",
      "Concat", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Softmax", "Slice", "Gemm",
      "Constant", "Shape", "Gather"};
  for (const onnx::Node& n : model->nodes) {
    if (kSupported.count(n.op_type) == 0) {
      return Error{ErrorCode::kModelInvalid, source + ": op " + n.op_type + " (" + n.name + ") is not supported by the oneDNN runtime"};
    }
  }
  return std::unique_ptr<DnnlNet>(new DnnlNet(std::move(model), precision, std::move(source)));
}

Result<std::vector<cv::Mat>> DnnlNet::run(const cv::Mat& blob, const std::vector<std::string>& outputs) {
  if (blob.type() != CV_32F || !blob.isContinuous() || blob.empty()) {
    return Error{ErrorCode::kInvalidArgument, source_ + ": the input must be a continuous float32 blob"};
  }
  Dims dims;
  for (int j = 0; j < blob.dims; ++j) dims.push_back(blob.size[j]);
  std::string key = dims_text(dims);
  for (const std::string& o : outputs) key += "|" + o;
  const OneOmpThread one_thread;
  const FlushDenormals flush;
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    if (plans_.size() >= kMaxPlans) {
      const auto oldest = std::min_element(last_used_.begin(), last_used_.end(),
                                           [](const auto& a, const auto& b) { return a.second < b.second; });
      plans_.erase(oldest->first);
      last_used_.erase(oldest);
    }
    auto plan = std::make_unique<Plan>();
    try {
      Compiler(*model_, precision_, *plan).compile(dims, outputs);
    } catch (const CompileError& e) {
      return Error{e.code, source_ + ": " + e.what()};
    } catch (const dnnl::error& e) {
      return Error{ErrorCode::kModelInvalid, source_ + ": oneDNN: " + e.what()};
    }
    it = plans_.emplace(key, std::move(plan)).first;
  }
  last_used_[key] = ++runs_;
  Plan& plan = *it->second;
  try {
    plan.input.set_data_handle(const_cast<float*>(blob.ptr<float>()));  // read, never written
    for (const auto& step : plan.steps) step();
    plan.stream.wait();
  } catch (const dnnl::error& e) {
    return Error{ErrorCode::kInternal, source_ + ": oneDNN: " + e.what()};
  }
  std::vector<cv::Mat> results;
  for (const auto& [mem, d] : plan.outputs) {
    std::vector<int> sizes(d.begin(), d.end());
    if (sizes.empty()) sizes = {1};
    if (sizes.size() == 1) sizes.insert(sizes.begin(), 1);  // cv::Mat has at least 2 dimensions
    cv::Mat m(static_cast<int>(sizes.size()), sizes.data(), CV_32F);
    const auto* src = static_cast<const float*>(mem.get_data_handle());
    std::copy(src, src + m.total(), m.ptr<float>());
    results.push_back(std::move(m));
  }
  return results;
}

}  // namespace candor
