// Shared machinery of the quamba TensorRT plugins (one IPluginV3 per custom op, plugins/trt/<op>.cpp).
//
// Everything an op has in common is driven by its generated spec (generated/fields.h, rendered from the op
// registry): the creator's fields, getOutputDataTypes / supportsFormatCombination (exactly the record's
// dtype variants with T = float16 and uint8 carried as int8, narrowed by the op's variant_mask where a field
// fixes a type variable; kLINEAR only), getOutputShapes (output dims copied from input dims), and
// the shape checks of configurePlugin / onShapeChange / enqueue (the record's shape rules, symbol by
// symbol). An op file adds only its own constraints (`check`), its workspace, and `run`, which fills the
// kernel's C-ABI params struct and calls quamba_<op>().
//
// Errors never give a wrong answer: a bad shape or dtype fails configurePlugin (build) or enqueue (run) with
// a logged message naming the op, the layer and the tensor.
#pragma once

#include <NvInferRuntime.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "generated/fields.h"

#if !defined(NV_TENSORRT_MAJOR) || NV_TENSORRT_MAJOR < 10
#error "the quamba TensorRT plugins need TensorRT >= 10 (IPluginV3)"
#endif

namespace quamba_trt {

namespace nv = nvinfer1;

inline constexpr int kMaxSymbols = 16;
inline constexpr int kMaxPorts = 32;

// ---- logging: through the ILoggerFinder TensorRT hands to setLoggerFinder(), else stderr -----------------

void set_logger_finder(nv::ILoggerFinder* finder) noexcept;
void log(nv::ILogger::Severity severity, const std::string& msg) noexcept;

template <class... A>
std::string cat(const A&... a) {
  std::ostringstream s;
  (s << ... << a);
  return s.str();
}

// ---- dtypes -----------------------------------------------------------------------------------------------

nv::DataType trt_type(gen::DType t) noexcept;
const char* type_name(nv::DataType t) noexcept;
std::string dims_str(const nv::Dims& d);

// ---- fields -----------------------------------------------------------------------------------------------

// The values of an op's fields (attributes + host scales), parsed from a PluginFieldCollection against the
// spec: unknown or duplicate names, wrong types and missing required fields are errors; defaults fill in.
class Fields {
 public:
  static bool parse(const gen::OpSpec& spec, const nv::PluginFieldCollection* fc, Fields* out, std::string* err);
  int32_t i(int idx) const { return v_[static_cast<size_t>(idx)].i; }
  float f(int idx) const { return v_[static_cast<size_t>(idx)].f; }
  const std::string& s(int idx) const { return v_[static_cast<size_t>(idx)].s; }
  // Every field with its value (defaults included), pointing into this object (valid until it changes).
  const nv::PluginFieldCollection* serialize();

 private:
  struct Value {
    int32_t i = 0;
    float f = 0.f;
    std::string s;
  };
  const gen::OpSpec* spec_ = nullptr;
  std::vector<Value> v_;
  std::vector<nv::PluginField> pf_;
  nv::PluginFieldCollection fc_{0, nullptr};
};

// ---- shapes and dtypes of one call, bound to the op's symbols --------------------------------------------

struct Bound {
  int64_t sym[kMaxSymbols];   // value of each symbol (B, L, E, ...); -1 where unknown (runtime dim at build time)
  int alt[kMaxPorts];         // which shape alternative each input/output matched
  nv::DataType type[kMaxPorts];  // inputs then outputs
  int variant = -1;           // index of the matching dtype variant
  bool known(int s) const { return sym[s] >= 0; }
  int64_t operator[](int s) const { return sym[s]; }
};

// Bind the symbols from the dims of inputs (and outputs, when given); -1 dims are skipped. "" or why not.
std::string bind_shapes(const gen::OpSpec& spec, const nv::Dims* in, const nv::Dims* out, Bound* b);
// The dtype variant the types (inputs, and outputs when given) match among the `allowed` ones (bit v: variant
// v); "" or why none does.
std::string match_types(const gen::OpSpec& spec, const nv::DataType* in, const nv::DataType* out, Bound* b,
                        uint32_t allowed = ~0u);
// A dimension that a kernel takes as `int`: "" or why not.
std::string fits_int(const gen::OpSpec& spec, const Bound& b);

// What run() gets: concrete symbols, the tensors and the stream.
struct Launch {
  const Bound& b;
  const void* const* in;
  void* const* out;
  void* workspace;
  cudaStream_t stream;
  template <class T>
  const T* input(int i) const { return static_cast<const T*>(in[i]); }
  template <class T>
  T* output(int i) const { return static_cast<T*>(out[i]); }
};

// "" when a CUDA call succeeded, else its message.
std::string cuda_status(cudaError_t e, const char* what);

// ---- the plugin ------------------------------------------------------------------------------------------

class Plugin : public nv::IPluginV3,
               public nv::IPluginV3OneCore,
               public nv::IPluginV3OneBuild,
               public nv::IPluginV3OneRuntime {
 public:
  Plugin(const gen::OpSpec& spec, std::string layer, Fields fields);
  Plugin(const Plugin&) = default;
  Plugin& operator=(const Plugin&) = delete;
  ~Plugin() override = default;

  // IPluginV3
  nv::IPluginCapability* getCapabilityInterface(nv::PluginCapabilityType type) noexcept override;
  nv::IPluginV3* clone() noexcept override;

  // IPluginV3OneCore
  const char* getPluginName() const noexcept override { return spec_.name; }
  const char* getPluginVersion() const noexcept override { return spec_.version; }
  const char* getPluginNamespace() const noexcept override { return gen::kNamespace; }

  // IPluginV3OneBuild
  int32_t getNbOutputs() const noexcept override { return spec_.nb_outputs; }
  int32_t getOutputDataTypes(nv::DataType* outputTypes, int32_t nbOutputs, const nv::DataType* inputTypes,
                             int32_t nbInputs) const noexcept override;
  int32_t getOutputShapes(const nv::DimsExprs* inputs, int32_t nbInputs, const nv::DimsExprs* shapeInputs,
                          int32_t nbShapeInputs, nv::DimsExprs* outputs, int32_t nbOutputs,
                          nv::IExprBuilder& exprBuilder) noexcept override;
  bool supportsFormatCombination(int32_t pos, const nv::DynamicPluginTensorDesc* inOut, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override;
  int32_t configurePlugin(const nv::DynamicPluginTensorDesc* in, int32_t nbInputs,
                          const nv::DynamicPluginTensorDesc* out, int32_t nbOutputs) noexcept override;
  size_t getWorkspaceSize(const nv::DynamicPluginTensorDesc* inputs, int32_t nbInputs,
                          const nv::DynamicPluginTensorDesc* outputs, int32_t nbOutputs) const noexcept override;

  // IPluginV3OneRuntime
  int32_t onShapeChange(const nv::PluginTensorDesc* in, int32_t nbInputs, const nv::PluginTensorDesc* out,
                        int32_t nbOutputs) noexcept override;
  int32_t enqueue(const nv::PluginTensorDesc* inputDesc, const nv::PluginTensorDesc* outputDesc,
                  const void* const* inputs, void* const* outputs, void* workspace,
                  cudaStream_t stream) noexcept override;
  nv::IPluginV3* attachToContext(nv::IPluginResourceContext* context) noexcept override;
  const nv::PluginFieldCollection* getFieldsToSerialize() noexcept override;

 protected:
  // The op's own constraints beyond the record's shape rules (unknown symbols are -1 at build time).
  virtual std::string check(const Bound& b) const = 0;
  // The dtype variants this node's fields allow (bit v: variant v of the spec). A type variable that only an
  // output has (the linears' Y, fixed by out_int8) cannot follow from the input dtypes: the op narrows it here,
  // and getOutputDataTypes, supportsFormatCombination, configurePlugin and enqueue all see only these.
  virtual uint32_t variant_mask() const { return ~0u; }
  // Scratch bytes for the largest problem (every symbol known).
  virtual size_t workspace(const Bound& max) const {
    (void)max;
    return 0;
  }
  // Device resources (runtime; called from onShapeChange, so enqueue normally finds them ready).
  virtual std::string prepare() { return {}; }
  // Fill the kernel's params and launch; "" on success.
  virtual std::string run(const Launch& l) = 0;
  virtual Plugin* copy() const = 0;

  const Fields& fields() const { return fields_; }
  void error(const std::string& msg) const noexcept;  // logs "<op> (layer '<name>'): msg"

  const gen::OpSpec& spec_;
  std::string layer_;
  Fields fields_;

 private:
  std::string bind_desc(const nv::PluginTensorDesc* in, int32_t nbInputs, const nv::PluginTensorDesc* out,
                        int32_t nbOutputs, Bound* b) const;
};

// ---- the creator and the library's creator list ----------------------------------------------------------

std::vector<nv::IPluginCreatorInterface*>& creator_list();

class CreatorBase : public nv::IPluginCreatorV3One {
 public:
  explicit CreatorBase(const gen::OpSpec& spec);
  nv::IPluginV3* createPlugin(const char* name, const nv::PluginFieldCollection* fc,
                              nv::TensorRTPhase phase) noexcept override;
  const nv::PluginFieldCollection* getFieldNames() noexcept override { return &names_; }
  const char* getPluginName() const noexcept override { return spec_.name; }
  const char* getPluginVersion() const noexcept override { return spec_.version; }
  const char* getPluginNamespace() const noexcept override { return gen::kNamespace; }
  const gen::OpSpec& spec() const { return spec_; }

 protected:
  // Check the field values (creation time) and construct; nullptr + *err on failure.
  virtual Plugin* make(const char* name, Fields fields, std::string* err) const = 0;

 private:
  const gen::OpSpec& spec_;
  std::vector<nv::PluginField> fields_;
  nv::PluginFieldCollection names_{0, nullptr};
};

template <class P>
class Creator final : public CreatorBase {
 public:
  Creator() : CreatorBase(P::spec()) {}

 protected:
  Plugin* make(const char* name, Fields fields, std::string* err) const override {
    *err = P::validate(fields);
    if (!err->empty()) return nullptr;
    return new P(name ? name : "", std::move(fields));
  }
};

// Adds a creator to the list getCreators() returns; with QUAMBA_TRT_STATIC_REGISTRATION also registers it
// in TensorRT's plugin registry when the library is loaded (needs libnvinfer).
struct Registrar {
  explicit Registrar(CreatorBase* c);
};

}  // namespace quamba_trt

// One line per op file: the creator instance and its registration.
#define QUAMBA_TRT_PLUGIN(PluginClass)                                                                  \
  static_assert(PluginClass::spec().nb_symbols <= ::quamba_trt::kMaxSymbols, "too many shape symbols"); \
  static_assert(PluginClass::spec().nb_inputs + PluginClass::spec().nb_outputs <= ::quamba_trt::kMaxPorts, \
                "too many inputs/outputs");                                                             \
  static_assert(PluginClass::spec().nb_variants <= 32, "variant_mask() has 32 bits");                  \
  namespace {                                                                                           \
  ::quamba_trt::Creator<PluginClass> g_creator;                                                         \
  const ::quamba_trt::Registrar g_registrar{&g_creator};                                                \
  }
