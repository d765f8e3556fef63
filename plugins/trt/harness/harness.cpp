// The plugin harness (harness.h): TensorRT's plugin call sequence without libnvinfer.
//
// IDimensionExpr / IExprBuilder are thin wrappers over implementation objects (apiv::VDimensionExpr /
// apiv::VExprBuilder in NvInferImpl.h) that libnvinfer normally provides; the harness supplies its own: every
// expression carries the value it stands for, so the plugin's symbolic output shapes can be evaluated and
// compared with the expected dims, while runtime dims stay non-constant as in a real build.
#include "harness.h"

#include <NvInferRuntime.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

namespace nv = nvinfer1;

namespace {

// ---- expressions ----------------------------------------------------------------------------------------

class Expr final : public nv::IDimensionExpr {
 public:
  Expr(int64_t value, bool constant) : impl_(value, constant) { mImpl = &impl_; }
  ~Expr() override = default;
  int64_t value() const { return impl_.value; }
  bool constant() const { return impl_.constant; }

 private:
  struct Impl final : nvinfer1::apiv::VDimensionExpr {
    Impl(int64_t v, bool c) : value(v), constant(c) {}
    bool isConstant() const override { return constant; }
    int64_t getConstantValue() const override { return constant ? value : std::numeric_limits<int64_t>::min(); }
    bool isSizeTensor() const override { return false; }
    int64_t value;
    bool constant;
  };
  Impl impl_;
};

class Builder final : public nv::IExprBuilder {
 public:
  Builder() : impl_(this) { mImpl = &impl_; }
  ~Builder() override = default;
  const Expr* make(int64_t value, bool constant) {
    pool_.push_back(std::make_unique<Expr>(value, constant));
    return pool_.back().get();
  }
  std::string error;

 private:
  struct Impl final : nvinfer1::apiv::VExprBuilder {
    explicit Impl(Builder* b) : owner(b) {}
    const nv::IDimensionExpr* constant(int64_t value) override { return owner->make(value, true); }
    const nv::IDimensionExpr* operation(nv::DimensionOperation op, const nv::IDimensionExpr& first,
                                        const nv::IDimensionExpr& second) override {
      // every expression the plugin can hold was made by this builder (or is an input dim made here)
      const auto& a = static_cast<const Expr&>(first);
      const auto& b = static_cast<const Expr&>(second);
      const int64_t x = a.value(), y = b.value();
      int64_t r = 0;
      switch (op) {
        case nv::DimensionOperation::kSUM: r = x + y; break;
        case nv::DimensionOperation::kPROD: r = x * y; break;
        case nv::DimensionOperation::kMAX: r = x > y ? x : y; break;
        case nv::DimensionOperation::kMIN: r = x < y ? x : y; break;
        case nv::DimensionOperation::kSUB: r = x - y; break;
        case nv::DimensionOperation::kEQUAL: r = x == y; break;
        case nv::DimensionOperation::kLESS: r = x < y; break;
        case nv::DimensionOperation::kFLOOR_DIV:
        case nv::DimensionOperation::kCEIL_DIV:
          if (y == 0) {
            owner->error = "division by zero in a dimension expression";
            return nullptr;
          }
          r = op == nv::DimensionOperation::kFLOOR_DIV ? (x / y - ((x % y != 0) && ((x < 0) != (y < 0))))
                                                       : (x / y + ((x % y != 0) && ((x < 0) == (y < 0))));
          break;
        default: owner->error = "unknown DimensionOperation"; return nullptr;
      }
      return owner->make(r, a.constant() && b.constant());
    }
    const nv::IDimensionExpr* declareSizeTensor(int32_t, const nv::IDimensionExpr&, const nv::IDimensionExpr&) override {
      owner->error = "declareSizeTensor is not supported by the harness (no plugin here has size tensors)";
      return nullptr;
    }
    Builder* owner;
  };
  Impl impl_;
  std::vector<std::unique_ptr<Expr>> pool_;
};

// ---- logger, resource context ---------------------------------------------------------------------------

class Logger final : public nv::ILogger {
 public:
  void log(Severity s, const char* msg) noexcept override {
    static const char* names[] = {"internal error", "error", "warning", "info", "verbose"};
    const int i = static_cast<int>(s);
    std::lock_guard<std::mutex> g(mu);
    text += std::string("[plugin ") + (i >= 0 && i < 5 ? names[i] : "?") + "] " + (msg ? msg : "") + "\n";
  }
  std::mutex mu;
  std::string text;
};

class Finder final : public nv::ILoggerFinder {
 public:
  nv::ILogger* findLogger() override { return &logger; }
  Logger logger;
};

class Context final : public nv::IPluginResourceContext {
 public:
  nv::IGpuAllocator* getGpuAllocator() const noexcept override { return nullptr; }
  nv::IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
};

Finder g_finder;

// ---- the library ----------------------------------------------------------------------------------------

using GetCreators = nv::IPluginCreatorInterface* const* (*)(int32_t&);
using SetLoggerFinder = void (*)(nv::ILoggerFinder*);

struct Library {
  GetCreators get_creators = nullptr;
  SetLoggerFinder set_logger_finder = nullptr;
};

bool open_library(const char* path, Library* lib, std::string* err) {
  static std::mutex mu;
  static std::map<std::string, Library> cache;  // never dlclose: the creators are static objects of the library
  std::lock_guard<std::mutex> g(mu);
  auto it = cache.find(path);
  if (it != cache.end()) {
    *lib = it->second;
    return true;
  }
  void* h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) {
    *err = std::string("dlopen failed: ") + dlerror();
    return false;
  }
  Library l;
  l.get_creators = reinterpret_cast<GetCreators>(dlsym(h, "getCreators"));
  l.set_logger_finder = reinterpret_cast<SetLoggerFinder>(dlsym(h, "setLoggerFinder"));
  if (l.get_creators == nullptr || l.set_logger_finder == nullptr) {
    *err = std::string(path) + " does not export getCreators and setLoggerFinder";
    return false;
  }
  cache[path] = l;
  *lib = l;
  return true;
}

nv::IPluginCreatorV3One* find_creator(const Library& lib, const char* op, std::string* err) {
  int32_t n = 0;
  nv::IPluginCreatorInterface* const* list = lib.get_creators(n);
  for (int32_t i = 0; list != nullptr && i < n; ++i) {
    if (list[i] == nullptr) continue;
    // TensorRT tells creator generations apart by their interface kind
    if (std::strcmp(list[i]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0) continue;
    auto* c = static_cast<nv::IPluginCreatorV3One*>(list[i]);
    if (std::strcmp(c->getPluginName(), op) == 0) return c;
  }
  *err = std::string("no IPluginCreatorV3One named ") + op + " among the library's " + std::to_string(n) + " creators";
  return nullptr;
}

// ---- one run --------------------------------------------------------------------------------------------

template <class... A>
std::string cat(const A&... a) {
  std::ostringstream s;
  (s << ... << a);
  return s.str();
}

std::string dims_str(const int64_t* d, int rank) {
  std::string r = "[";
  for (int i = 0; i < rank; ++i) r += (i ? ", " : "") + std::to_string(d[i]);
  return r + "]";
}

nv::Dims to_dims(const QthTensor& t, bool runtime_as_minus_one) {
  nv::Dims d{};
  d.nbDims = t.rank;
  for (int k = 0; k < t.rank; ++k) d.d[k] = (runtime_as_minus_one && (t.dynamic_mask >> k & 1u)) ? -1 : t.dims[k];
  return d;
}

nv::PluginTensorDesc to_desc(const QthTensor& t) {
  nv::PluginTensorDesc d{};
  d.dims = to_dims(t, false);
  d.type = static_cast<nv::DataType>(t.dtype);
  d.format = nv::TensorFormat::kLINEAR;
  d.scale = -1.f;  // what TensorRT passes when no int8 scale is set
  return d;
}

// A deep copy of a field collection (the plugin's own storage may change or go away).
struct OwnedFields {
  std::vector<std::string> names;
  std::vector<std::vector<char>> data;
  std::vector<nv::PluginField> fields;
  nv::PluginFieldCollection fc{0, nullptr};

  static size_t elem_size(nv::PluginFieldType t) {
    switch (t) {
      case nv::PluginFieldType::kFLOAT64:
      case nv::PluginFieldType::kINT64: return 8;
      case nv::PluginFieldType::kFLOAT32:
      case nv::PluginFieldType::kINT32: return 4;
      case nv::PluginFieldType::kFLOAT16:
      case nv::PluginFieldType::kINT16:
      case nv::PluginFieldType::kBF16: return 2;
      default: return 1;
    }
  }
  void copy_from(const nv::PluginFieldCollection* src) {
    const int32_t n = src ? src->nbFields : 0;
    names.resize(static_cast<size_t>(n));
    data.resize(static_cast<size_t>(n));
    fields.clear();
    for (int32_t i = 0; i < n; ++i) {
      const nv::PluginField& f = src->fields[i];
      names[static_cast<size_t>(i)] = f.name ? f.name : "";
      const size_t bytes = f.data ? elem_size(f.type) * static_cast<size_t>(f.length) : 0;
      data[static_cast<size_t>(i)].assign(static_cast<const char*>(f.data), static_cast<const char*>(f.data) + bytes);
    }
    for (int32_t i = 0; i < n; ++i)
      fields.emplace_back(names[static_cast<size_t>(i)].c_str(),
                          data[static_cast<size_t>(i)].empty() ? nullptr : data[static_cast<size_t>(i)].data(),
                          src->fields[i].type, src->fields[i].length);
    fc.nbFields = n;
    fc.fields = fields.data();
  }
  bool same_as(const OwnedFields& o) const {
    if (fields.size() != o.fields.size()) return false;
    for (size_t i = 0; i < fields.size(); ++i)
      if (names[i] != o.names[i] || fields[i].type != o.fields[i].type || fields[i].length != o.fields[i].length ||
          data[i] != o.data[i])
        return false;
    return true;
  }
};

struct PluginDeleter {
  void operator()(nv::IPluginV3* p) const { delete p; }
};
using PluginPtr = std::unique_ptr<nv::IPluginV3, PluginDeleter>;

class Run {
 public:
  Run(const char* op, const QthTensor* in, int32_t nin, const QthTensor* out, int32_t nout, cudaStream_t stream,
      bool host_memory)
      : op_(op), in_(in, in + nin), out_(out, out + nout), stream_(stream), host_memory_(host_memory) {}

  // Each step returns "" or what went wrong.
  std::string build(nv::IPluginCreatorV3One* creator, const nv::PluginFieldCollection* fc, bool device) {
    if (std::strcmp(creator->getPluginNamespace(), "quamba") != 0)
      return cat("creator namespace is '", creator->getPluginNamespace(), "', expected 'quamba'");
    PluginPtr plugin(creator->createPlugin(op_, fc, nv::TensorRTPhase::kBUILD));
    if (!plugin) return "createPlugin(kBUILD) returned null";
    auto* core = static_cast<nv::IPluginV3OneCore*>(plugin->getCapabilityInterface(nv::PluginCapabilityType::kCORE));
    auto* bld = static_cast<nv::IPluginV3OneBuild*>(plugin->getCapabilityInterface(nv::PluginCapabilityType::kBUILD));
    auto* rt = static_cast<nv::IPluginV3OneRuntime*>(plugin->getCapabilityInterface(nv::PluginCapabilityType::kRUNTIME));
    if (!core || !bld || !rt) return "a build-phase plugin must return the CORE, BUILD and RUNTIME capabilities";
    if (std::strcmp(core->getPluginName(), creator->getPluginName()) != 0 ||
        std::strcmp(core->getPluginVersion(), creator->getPluginVersion()) != 0 ||
        std::strcmp(core->getPluginNamespace(), creator->getPluginNamespace()) != 0)
      return "the plugin's name / version / namespace differ from its creator's";
    const int32_t nin = static_cast<int32_t>(in_.size()), nout = static_cast<int32_t>(out_.size());
    if (bld->getNbOutputs() != nout) return cat("getNbOutputs() = ", bld->getNbOutputs(), ", expected ", nout);

    // dtypes
    std::vector<nv::DataType> tin(in_.size()), tout(out_.size());
    for (size_t i = 0; i < in_.size(); ++i) tin[i] = static_cast<nv::DataType>(in_[i].dtype);
    if (bld->getOutputDataTypes(tout.data(), nout, tin.data(), nin) != 0) return "getOutputDataTypes failed";
    for (size_t i = 0; i < out_.size(); ++i)
      if (static_cast<int32_t>(tout[i]) != out_[i].dtype)
        return cat("getOutputDataTypes: output ", i, " has dtype ", static_cast<int>(tout[i]), ", expected ",
                   out_[i].dtype);

    // symbolic shapes
    {
      Builder eb;
      std::vector<nv::DimsExprs> ein(in_.size()), eout(out_.size());
      for (size_t i = 0; i < in_.size(); ++i) {
        ein[i].nbDims = in_[i].rank;
        for (int k = 0; k < in_[i].rank; ++k)
          ein[i].d[k] = eb.make(in_[i].dims[k], !(in_[i].dynamic_mask >> k & 1u));
      }
      if (bld->getOutputShapes(ein.data(), nin, nullptr, 0, eout.data(), nout, eb) != 0)
        return cat("getOutputShapes failed", eb.error.empty() ? "" : ": " + eb.error);
      for (size_t o = 0; o < out_.size(); ++o) {
        std::vector<int64_t> got;
        for (int k = 0; k < eout[o].nbDims; ++k) {
          if (eout[o].d[k] == nullptr) return cat("getOutputShapes: output ", o, " dim ", k, " is null");
          got.push_back(static_cast<const Expr*>(eout[o].d[k])->value());
        }
        if (eout[o].nbDims != out_[o].rank || !std::equal(got.begin(), got.end(), out_[o].dims))
          return cat("getOutputShapes: output ", o, " is ", dims_str(got.data(), eout[o].nbDims), ", expected ",
                     dims_str(out_[o].dims, out_[o].rank));
      }
    }

    // formats: every given dtype in kLINEAR is accepted, an unused dtype or another layout is not
    std::vector<nv::DynamicPluginTensorDesc> io(in_.size() + out_.size());
    for (size_t i = 0; i < io.size(); ++i) {
      const QthTensor& t = i < in_.size() ? in_[i] : out_[i - in_.size()];
      io[i].desc = to_desc(t);
      io[i].desc.dims = to_dims(t, true);
      io[i].min = io[i].opt = io[i].max = to_dims(t, false);
    }
    for (int32_t pos = 0; pos < nin + nout; ++pos) {
      if (!bld->supportsFormatCombination(pos, io.data(), nin, nout))
        return cat("supportsFormatCombination rejects position ", pos, " (dtype ", static_cast<int>(io[pos].desc.type),
                   ", linear)");
      auto bad = io;
      for (nv::DataType wrong : {nv::DataType::kINT32, nv::DataType::kBF16}) {
        bad[pos].desc.type = wrong;
        if (bld->supportsFormatCombination(pos, bad.data(), nin, nout))
          return cat("supportsFormatCombination accepts dtype ", static_cast<int>(wrong), " at position ", pos);
      }
      bad[pos] = io[pos];
      bad[pos].desc.format = nv::TensorFormat::kCHW32;
      if (bld->supportsFormatCombination(pos, bad.data(), nin, nout))
        return cat("supportsFormatCombination accepts kCHW32 at position ", pos);
    }

    if (bld->configurePlugin(io.data(), nin, io.data() + nin, nout) != 0) return "configurePlugin failed";
    workspace_ = bld->getWorkspaceSize(io.data(), nin, io.data() + nin, nout);
    serialized_.copy_from(rt->getFieldsToSerialize());

    if (device) {  // TensorRT times the build-phase plugin (a clone of it) before serializing the engine
      PluginPtr timed(plugin->clone());
      if (!timed) return "clone() returned null";
      std::string why = execute(timed.get(), 1);
      if (!why.empty()) return "build-phase " + why;
    }
    return {};
  }

  std::string runtime(nv::IPluginCreatorV3One* creator, bool device) {
    PluginPtr plugin(creator->createPlugin(op_, &serialized_.fc, nv::TensorRTPhase::kRUNTIME));
    if (!plugin) return "createPlugin(kRUNTIME) from the serialized fields returned null";
    auto* rt = static_cast<nv::IPluginV3OneRuntime*>(plugin->getCapabilityInterface(nv::PluginCapabilityType::kRUNTIME));
    if (!rt) return "a runtime-phase plugin must return the RUNTIME capability";
    Context ctx;
    PluginPtr attached(rt->attachToContext(&ctx));
    if (!attached) return "attachToContext returned null";
    auto* art = static_cast<nv::IPluginV3OneRuntime*>(attached->getCapabilityInterface(nv::PluginCapabilityType::kRUNTIME));
    if (!art) return "the attached plugin has no RUNTIME capability";
    OwnedFields again;
    again.copy_from(art->getFieldsToSerialize());
    if (!again.same_as(serialized_)) return "the runtime plugin serializes different fields than the build plugin";
    if (device) {
      std::string why = execute(attached.get(), 2);
      if (!why.empty()) return "runtime-phase " + why;
    }
    return {};
  }

  std::string raw_enqueue(nv::IPluginCreatorV3One* creator, const nv::PluginFieldCollection* fc) {
    PluginPtr plugin(creator->createPlugin(op_, fc, nv::TensorRTPhase::kRUNTIME));
    if (!plugin) return "createPlugin(kRUNTIME) returned null";
    auto* rt = static_cast<nv::IPluginV3OneRuntime*>(plugin->getCapabilityInterface(nv::PluginCapabilityType::kRUNTIME));
    if (!rt) return "no RUNTIME capability";
    Context ctx;
    PluginPtr attached(rt->attachToContext(&ctx));
    if (!attached) return "attachToContext returned null";
    auto* art = static_cast<nv::IPluginV3OneRuntime*>(attached->getCapabilityInterface(nv::PluginCapabilityType::kRUNTIME));
    std::vector<nv::PluginTensorDesc> din, dout;
    std::vector<const void*> pin;
    std::vector<void*> pout;
    for (const auto& t : in_) din.push_back(to_desc(t)), pin.push_back(t.data);
    for (const auto& t : out_) dout.push_back(to_desc(t)), pout.push_back(t.data);
    if (art->enqueue(din.data(), dout.data(), pin.data(), pout.data(), nullptr, stream_) != 0)
      return "enqueue returned nonzero";
    return {};
  }

 private:
  // onShapeChange + enqueue into outputs' data (which = 1) or data2 (which = 2); synchronizes the stream.
  std::string execute(nv::IPluginV3* plugin, int which) {
    auto* rt = static_cast<nv::IPluginV3OneRuntime*>(plugin->getCapabilityInterface(nv::PluginCapabilityType::kRUNTIME));
    std::vector<nv::PluginTensorDesc> din, dout;
    std::vector<const void*> pin;
    std::vector<void*> pout;
    for (const auto& t : in_) din.push_back(to_desc(t)), pin.push_back(t.data);
    for (const auto& t : out_) dout.push_back(to_desc(t)), pout.push_back(which == 1 ? t.data : t.data2);
    if (rt->onShapeChange(din.data(), static_cast<int32_t>(din.size()), dout.data(), static_cast<int32_t>(dout.size())) != 0)
      return "onShapeChange failed";
    void* ws = nullptr;
    if (host_memory_) {  // a fake plugin library: its kernels only record pointers
      ws = workspace_ > 0 ? std::malloc(workspace_) : nullptr;
    } else if (workspace_ > 0 && cudaMalloc(&ws, workspace_) != cudaSuccess) {
      return cat("cudaMalloc of the ", workspace_, "-byte workspace failed");
    }
    const int32_t rc = rt->enqueue(din.data(), dout.data(), pin.data(), pout.data(), ws, stream_);
    const cudaError_t sync = host_memory_ ? cudaSuccess : cudaStreamSynchronize(stream_);
    if (ws != nullptr) host_memory_ ? std::free(ws) : static_cast<void>(cudaFree(ws));
    if (rc != 0) return "enqueue returned nonzero";
    if (sync != cudaSuccess) return cat("the plugin's work failed on the device: ", cudaGetErrorString(sync));
    return {};
  }

  const char* op_;
  std::vector<QthTensor> in_, out_;
  cudaStream_t stream_;
  bool host_memory_;
  size_t workspace_ = 0;
  OwnedFields serialized_;
};

void write_log(const std::string& s, char* log, int32_t log_len) {
  if (log == nullptr || log_len <= 0) return;
  const size_t n = s.size() < static_cast<size_t>(log_len - 1) ? s.size() : static_cast<size_t>(log_len - 1);
  std::memcpy(log, s.data(), n);
  log[n] = '\0';
}

std::mutex g_run_mu;  // one run at a time: the logger text is shared

}  // namespace

extern "C" __attribute__((visibility("default"))) int32_t qth_run(
    const char* library, const char* op, const QthField* fields, int32_t nb_fields, const QthTensor* inputs,
    int32_t nb_inputs, const QthTensor* outputs, int32_t nb_outputs, int32_t flags, void* stream, char* log,
    int32_t log_len) {
  std::lock_guard<std::mutex> g(g_run_mu);
  std::string why;
  try {
    {
      std::lock_guard<std::mutex> lg(g_finder.logger.mu);
      g_finder.logger.text.clear();
    }
    Library lib;
    nv::IPluginCreatorV3One* creator = nullptr;
    if (nb_inputs < 0 || nb_outputs < 0 || nb_fields < 0 || (nb_inputs && !inputs) || (nb_outputs && !outputs)) {
      why = "bad arguments";
    } else if (!open_library(library, &lib, &why)) {
    } else {
      lib.set_logger_finder(&g_finder);
      creator = find_creator(lib, op, &why);
    }
    if (creator != nullptr) {
      std::vector<nv::PluginField> pf;
      for (int32_t i = 0; i < nb_fields; ++i)
        pf.emplace_back(fields[i].name, fields[i].data, static_cast<nv::PluginFieldType>(fields[i].type), fields[i].length);
      const nv::PluginFieldCollection fc{nb_fields, pf.data()};
      Run run(op, inputs, nb_inputs, outputs, nb_outputs, static_cast<cudaStream_t>(stream),
              (flags & QTH_HOST_MEMORY) != 0);
      if (flags & QTH_RAW_ENQUEUE) {
        why = run.raw_enqueue(creator, &fc);
      } else {
        const bool device = !(flags & QTH_BUILD_ONLY);
        why = run.build(creator, &fc, device);
        if (why.empty()) why = run.runtime(creator, device);
      }
    }
  } catch (const std::exception& e) {
    why = std::string("exception: ") + e.what();
  }
  std::string text;
  {
    std::lock_guard<std::mutex> lg(g_finder.logger.mu);
    text = g_finder.logger.text;
  }
  if (!why.empty()) text = "harness: " + why + "\n" + text;
  write_log(text, log, log_len);
  return why.empty() ? 0 : 1;
}

extern "C" __attribute__((visibility("default"))) int32_t qth_list(const char* library, char* out, int32_t out_len) {
  std::lock_guard<std::mutex> g(g_run_mu);
  Library lib;
  std::string err;
  if (!open_library(library, &lib, &err)) {
    write_log(err, out, out_len);
    return 1;
  }
  lib.set_logger_finder(&g_finder);
  int32_t n = 0;
  nv::IPluginCreatorInterface* const* list = lib.get_creators(n);
  std::string text;
  for (int32_t i = 0; list != nullptr && i < n; ++i) {
    const nv::InterfaceInfo info = list[i]->getInterfaceInfo();
    if (std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") != 0) {
      text += cat("(creator of kind ", info.kind, ")\n");
      continue;
    }
    auto* c = static_cast<nv::IPluginCreatorV3One*>(list[i]);
    text += cat(c->getPluginName(), " ", c->getPluginVersion(), " ", c->getPluginNamespace(), " ");
    const nv::PluginFieldCollection* fc = c->getFieldNames();
    for (int32_t j = 0; fc != nullptr && j < fc->nbFields; ++j)
      text += cat(j ? "," : "", fc->fields[j].name, ":", static_cast<int>(fc->fields[j].type));
    text += "\n";
  }
  write_log(text, out, out_len);
  return 0;
}
