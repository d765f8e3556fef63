// Shared machinery of the quamba TensorRT plugins (plugin_common.h says what lives here and why).
#include "plugin_common.h"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <new>

#ifdef QUAMBA_TRT_STATIC_REGISTRATION
#include <NvInferRuntime.h>  // getPluginRegistry() (libnvinfer)
#endif

namespace quamba_trt {

// ---- logging --------------------------------------------------------------------------------------------

namespace {
std::atomic<nv::ILoggerFinder*> g_finder{nullptr};

const char* severity_name(nv::ILogger::Severity s) {
  switch (s) {
    case nv::ILogger::Severity::kINTERNAL_ERROR: return "internal error";
    case nv::ILogger::Severity::kERROR: return "error";
    case nv::ILogger::Severity::kWARNING: return "warning";
    case nv::ILogger::Severity::kINFO: return "info";
    default: return "verbose";
  }
}
}  // namespace

void set_logger_finder(nv::ILoggerFinder* finder) noexcept { g_finder.store(finder); }

void log(nv::ILogger::Severity severity, const std::string& msg) noexcept {
  nv::ILoggerFinder* f = g_finder.load();
  nv::ILogger* logger = nullptr;
  if (f != nullptr) {
    try {
      logger = f->findLogger();
    } catch (...) {
      logger = nullptr;
    }
  }
  if (logger != nullptr) {
    logger->log(severity, msg.c_str());
  } else if (severity <= nv::ILogger::Severity::kWARNING) {
    // no TensorRT logger (static registration, or a caller that never set one): errors still reach someone
    std::fprintf(stderr, "[quamba_trt] %s: %s\n", severity_name(severity), msg.c_str());
  }
}

// ---- dtypes ---------------------------------------------------------------------------------------------

nv::DataType trt_type(gen::DType t) noexcept {
  switch (t) {
    case gen::DType::kINT8: return nv::DataType::kINT8;
    case gen::DType::kFLOAT16: return nv::DataType::kHALF;
    case gen::DType::kFLOAT32: return nv::DataType::kFLOAT;
    case gen::DType::kINT32: return nv::DataType::kINT32;
    case gen::DType::kINT64: return nv::DataType::kINT64;
  }
  return nv::DataType::kFLOAT;
}

const char* type_name(nv::DataType t) noexcept {
  switch (t) {
    case nv::DataType::kFLOAT: return "float32";
    case nv::DataType::kHALF: return "float16";
    case nv::DataType::kINT8: return "int8";
    case nv::DataType::kINT32: return "int32";
    case nv::DataType::kBOOL: return "bool";
    case nv::DataType::kUINT8: return "uint8";
    case nv::DataType::kINT64: return "int64";
    case nv::DataType::kBF16: return "bfloat16";
    default: return "another dtype";
  }
}

std::string dims_str(const nv::Dims& d) {
  std::string r = "[";
  for (int32_t i = 0; i < d.nbDims; ++i) r += (i ? ", " : "") + std::to_string(d.d[i]);
  return r + "]";
}

std::string cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return {};
  return cat(what, " failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
}

// ---- fields ---------------------------------------------------------------------------------------------

namespace {
const char* kind_name(gen::FieldKind k) {
  switch (k) {
    case gen::FieldKind::kINT32: return "INT32";
    case gen::FieldKind::kFLOAT32: return "FLOAT32";
    default: return "CHAR";
  }
}

nv::PluginFieldType field_type(gen::FieldKind k) {
  switch (k) {
    case gen::FieldKind::kINT32: return nv::PluginFieldType::kINT32;
    case gen::FieldKind::kFLOAT32: return nv::PluginFieldType::kFLOAT32;
    default: return nv::PluginFieldType::kCHAR;
  }
}
}  // namespace

bool Fields::parse(const gen::OpSpec& spec, const nv::PluginFieldCollection* fc, Fields* out, std::string* err) {
  out->spec_ = &spec;
  out->v_.assign(static_cast<size_t>(spec.nb_fields), Value{});
  std::vector<bool> seen(static_cast<size_t>(spec.nb_fields), false);
  const int32_t n = fc == nullptr ? 0 : fc->nbFields;
  if (n > 0 && fc->fields == nullptr) {
    *err = "the field collection has fields but no field array";
    return false;
  }
  for (int32_t k = 0; k < n; ++k) {
    const nv::PluginField& pf = fc->fields[k];
    int idx = -1;
    for (int j = 0; pf.name != nullptr && j < spec.nb_fields; ++j)
      if (std::strcmp(pf.name, spec.fields[j].name) == 0) idx = j;
    if (idx < 0) {
      std::string known;
      for (int j = 0; j < spec.nb_fields; ++j) known += std::string(j ? ", " : "") + spec.fields[j].name;
      *err = cat("unknown field '", pf.name ? pf.name : "(null)", "' (fields: ", known, ")");
      return false;
    }
    const gen::FieldSpec& fs = spec.fields[idx];
    if (seen[static_cast<size_t>(idx)]) {
      *err = cat("field '", fs.name, "' given twice");
      return false;
    }
    seen[static_cast<size_t>(idx)] = true;
    Value& v = out->v_[static_cast<size_t>(idx)];
    const bool scalar = pf.data != nullptr && pf.length == 1;
    bool ok = false;
    switch (fs.kind) {
      case gen::FieldKind::kINT32:
        if (scalar && pf.type == nv::PluginFieldType::kINT32) {
          v.i = *static_cast<const int32_t*>(pf.data);
          ok = true;
        } else if (scalar && pf.type == nv::PluginFieldType::kINT64) {
          const int64_t x = *static_cast<const int64_t*>(pf.data);
          ok = x >= std::numeric_limits<int32_t>::min() && x <= std::numeric_limits<int32_t>::max();
          v.i = static_cast<int32_t>(x);
        }
        break;
      case gen::FieldKind::kFLOAT32:
        if (scalar && pf.type == nv::PluginFieldType::kFLOAT32) {
          v.f = *static_cast<const float*>(pf.data);
          ok = true;
        } else if (scalar && pf.type == nv::PluginFieldType::kFLOAT64) {
          v.f = static_cast<float>(*static_cast<const double*>(pf.data));
          ok = true;
        }
        break;
      case gen::FieldKind::kCHAR:
        if (pf.type == nv::PluginFieldType::kCHAR && pf.length >= 0 && (pf.length == 0 || pf.data != nullptr)) {
          v.s.assign(static_cast<const char*>(pf.data), static_cast<size_t>(pf.length));
          while (!v.s.empty() && v.s.back() == '\0') v.s.pop_back();  // the ONNX parser passes a trailing NUL
          ok = true;
        }
        break;
    }
    if (!ok) {
      *err = cat("field '", fs.name, "' must be one ", kind_name(fs.kind), " value (got type ",
                 static_cast<int>(pf.type), ", length ", pf.length, ")");
      return false;
    }
  }
  for (int j = 0; j < spec.nb_fields; ++j) {
    if (seen[static_cast<size_t>(j)]) continue;
    const gen::FieldSpec& fs = spec.fields[j];
    if (fs.required) {
      if (fs.source == gen::FieldSource::kHostScale)
        *err = cat("field '", fs.name, "' is missing: the kernel takes this per-tensor scale (input ", fs.input,
                   ") as a host float, so its value must arrive as a node attribute of the same name; run "
                   "quamba_edge.ops.trt_fields.fold_host_scales on the ONNX graph before TensorRT parses it");
      else
        *err = cat("required field '", fs.name, "' is missing");
      return false;
    }
    Value& v = out->v_[static_cast<size_t>(j)];
    v.i = static_cast<int32_t>(fs.default_number);
    v.f = static_cast<float>(fs.default_number);
    v.s = fs.default_string != nullptr ? fs.default_string : "";
  }
  return true;
}

const nv::PluginFieldCollection* Fields::serialize() {
  pf_.clear();
  for (int j = 0; spec_ != nullptr && j < spec_->nb_fields; ++j) {
    const gen::FieldSpec& fs = spec_->fields[j];
    Value& v = v_[static_cast<size_t>(j)];
    switch (fs.kind) {
      case gen::FieldKind::kINT32: pf_.emplace_back(fs.name, &v.i, nv::PluginFieldType::kINT32, 1); break;
      case gen::FieldKind::kFLOAT32: pf_.emplace_back(fs.name, &v.f, nv::PluginFieldType::kFLOAT32, 1); break;
      case gen::FieldKind::kCHAR:  // with the trailing NUL, as the ONNX parser passes strings
        pf_.emplace_back(fs.name, v.s.c_str(), nv::PluginFieldType::kCHAR, static_cast<int32_t>(v.s.size() + 1));
        break;
    }
  }
  fc_.nbFields = static_cast<int32_t>(pf_.size());
  fc_.fields = pf_.data();
  return &fc_;
}

// ---- shapes and dtypes ----------------------------------------------------------------------------------

namespace {
// Try to bind one port's dims to one shape alternative on a copy of the symbols; "" or why not.
std::string bind_port(const gen::OpSpec& spec, const gen::ShapeSpec& sh, const nv::Dims& d, int64_t* sym) {
  if (d.nbDims != sh.rank) return cat("rank ", d.nbDims, " (expected ", sh.rank, ")");
  for (int32_t k = 0; k < d.nbDims; ++k) {
    const int64_t v = d.d[k];
    if (v < 0) continue;  // a runtime dimension at build time
    const gen::DimSpec& ds = sh.dims[k];
    if (ds.symbol < 0) {
      if (v != ds.offset) return cat("dim ", k, " is ", v, " (expected ", ds.offset, ")");
      continue;
    }
    const int64_t want = v - ds.offset;  // value of the symbol this dim implies
    if (want < 0) return cat("dim ", k, " is ", v, ", too small for ", spec.symbols[ds.symbol], ds.offset);
    int64_t& s = sym[ds.symbol];
    if (s < 0) {
      s = want;
    } else if (s != want) {
      return cat("dim ", k, " gives ", spec.symbols[ds.symbol], " = ", want, " but another tensor gave ", s);
    }
  }
  return {};
}

std::string bind_ports(const gen::OpSpec& spec, const gen::PortSpec* ports, int n, const nv::Dims* dims,
                       int* alt, int64_t* sym, const char* what) {
  for (int i = 0; i < n; ++i) {
    const gen::PortSpec& p = ports[i];
    std::string why;
    int chosen = -1;
    for (int a = 0; a < p.nb_shapes && chosen < 0; ++a) {
      int64_t trial[kMaxSymbols];
      std::memcpy(trial, sym, sizeof(trial));
      const std::string w = bind_port(spec, p.shapes[a], dims[i], trial);
      if (w.empty()) {
        std::memcpy(sym, trial, sizeof(trial));
        chosen = a;
      } else if (why.empty()) {
        why = w;
      }
    }
    if (chosen < 0)
      return cat(what, " '", p.name, "' has shape ", dims_str(dims[i]), ", which does not fit ", p.rule, ": ", why);
    alt[i] = chosen;
  }
  return {};
}
}  // namespace

std::string bind_shapes(const gen::OpSpec& spec, const nv::Dims* in, const nv::Dims* out, Bound* b) {
  for (int s = 0; s < kMaxSymbols; ++s) b->sym[s] = -1;
  std::string why = bind_ports(spec, spec.inputs, spec.nb_inputs, in, b->alt, b->sym, "input");
  if (why.empty() && out != nullptr)
    why = bind_ports(spec, spec.outputs, spec.nb_outputs, out, b->alt + spec.nb_inputs, b->sym, "output");
  return why;
}

std::string match_types(const gen::OpSpec& spec, const nv::DataType* in, const nv::DataType* out, Bound* b,
                        uint32_t allowed) {
  const int n_io = spec.nb_inputs + spec.nb_outputs;
  for (int v = 0; v < spec.nb_variants; ++v) {
    if (!(allowed >> v & 1u)) continue;
    const gen::DType* row = spec.variants + static_cast<size_t>(v) * n_io;
    bool ok = true;
    for (int i = 0; ok && i < spec.nb_inputs; ++i) ok = in[i] == trt_type(row[i]);
    for (int i = 0; ok && out != nullptr && i < spec.nb_outputs; ++i)
      ok = out[i] == trt_type(row[spec.nb_inputs + i]);
    if (ok) {
      b->variant = v;
      for (int i = 0; i < spec.nb_inputs; ++i) b->type[i] = in[i];
      for (int i = 0; i < spec.nb_outputs; ++i) b->type[spec.nb_inputs + i] = trt_type(row[spec.nb_inputs + i]);
      return {};
    }
  }
  std::string got, want;
  bool uint8 = false;
  for (int i = 0; i < spec.nb_inputs; ++i) {
    got += cat(i ? ", " : "", spec.inputs[i].name, " ", type_name(in[i]));
    uint8 = uint8 || in[i] == nv::DataType::kUINT8;
  }
  for (int i = 0; out != nullptr && i < spec.nb_outputs; ++i)
    got += cat(", ", spec.outputs[i].name, " ", type_name(out[i]));
  for (int v = 0; v < spec.nb_variants; ++v) {
    if (!(allowed >> v & 1u)) continue;
    want += want.empty() ? "" : "; ";
    for (int i = 0; i < n_io; ++i)
      want += cat(i ? ", " : "", type_name(trt_type(spec.variants[static_cast<size_t>(v) * n_io + i])));
  }
  return cat("unsupported dtypes (", got, "); supported (inputs then outputs",
             allowed == ~0u ? "" : ", as this node's fields allow", "): ", want,
             " -- build a strongly typed network from the float16 export",
             uint8 ? " (plugins take no uint8 tensors: the packed int4 weights must be int8 initializers, which "
                     "quamba_edge.ops.trt_fields.prepare_trt_graph makes)"
                   : "");
}

std::string fits_int(const gen::OpSpec& spec, const Bound& b) {
  for (int s = 0; s < spec.nb_symbols; ++s)
    if (b.sym[s] > std::numeric_limits<int32_t>::max())
      return cat(spec.symbols[s], " = ", b.sym[s], " exceeds the kernels' int range");
  return {};
}

// ---- the plugin -----------------------------------------------------------------------------------------

Plugin::Plugin(const gen::OpSpec& spec, std::string layer, Fields fields)
    : spec_(spec), layer_(std::move(layer)), fields_(std::move(fields)) {}

void Plugin::error(const std::string& msg) const noexcept {
  try {
    log(nv::ILogger::Severity::kERROR, cat(spec_.name, " (layer '", layer_, "'): ", msg));
  } catch (...) {
  }
}

nv::IPluginCapability* Plugin::getCapabilityInterface(nv::PluginCapabilityType type) noexcept {
  switch (type) {
    case nv::PluginCapabilityType::kCORE: return static_cast<nv::IPluginV3OneCore*>(this);
    case nv::PluginCapabilityType::kBUILD: return static_cast<nv::IPluginV3OneBuild*>(this);
    case nv::PluginCapabilityType::kRUNTIME: return static_cast<nv::IPluginV3OneRuntime*>(this);
  }
  return nullptr;
}

nv::IPluginV3* Plugin::clone() noexcept {
  try {
    return copy();
  } catch (const std::exception& e) {
    error(cat("clone failed: ", e.what()));
    return nullptr;
  }
}

nv::IPluginV3* Plugin::attachToContext(nv::IPluginResourceContext* context) noexcept {
  (void)context;  // no per-context resources beyond what prepare() makes lazily
  return clone();
}

const nv::PluginFieldCollection* Plugin::getFieldsToSerialize() noexcept {
  try {
    return fields_.serialize();
  } catch (const std::exception& e) {
    error(cat("getFieldsToSerialize failed: ", e.what()));
    return nullptr;
  }
}

int32_t Plugin::getOutputDataTypes(nv::DataType* outputTypes, int32_t nbOutputs, const nv::DataType* inputTypes,
                                   int32_t nbInputs) const noexcept {
  try {
    if (nbInputs != spec_.nb_inputs || nbOutputs != spec_.nb_outputs) {
      error(cat("expects ", spec_.nb_inputs, " inputs and ", spec_.nb_outputs, " outputs, got ", nbInputs, " and ",
                nbOutputs));
      return -1;
    }
    Bound b;
    const std::string why = match_types(spec_, inputTypes, nullptr, &b, variant_mask());
    if (!why.empty()) {
      error(why);
      return -1;
    }
    for (int i = 0; i < nbOutputs; ++i) outputTypes[i] = b.type[spec_.nb_inputs + i];
    return 0;
  } catch (const std::exception& e) {
    error(e.what());
    return -1;
  }
}

int32_t Plugin::getOutputShapes(const nv::DimsExprs* inputs, int32_t nbInputs, const nv::DimsExprs* shapeInputs,
                                int32_t nbShapeInputs, nv::DimsExprs* outputs, int32_t nbOutputs,
                                nv::IExprBuilder& exprBuilder) noexcept {
  (void)shapeInputs;
  try {
    if (nbInputs != spec_.nb_inputs || nbOutputs != spec_.nb_outputs || nbShapeInputs != 0) {
      error(cat("expects ", spec_.nb_inputs, " inputs, ", spec_.nb_outputs, " outputs and no shape inputs, got ",
                nbInputs, ", ", nbOutputs, " and ", nbShapeInputs));
      return -1;
    }
    for (int i = 0; i < nbInputs; ++i) {
      bool rank_ok = false;
      for (int a = 0; a < spec_.inputs[i].nb_shapes; ++a) rank_ok |= inputs[i].nbDims == spec_.inputs[i].shapes[a].rank;
      if (!rank_ok) {
        error(cat("input '", spec_.inputs[i].name, "' has rank ", inputs[i].nbDims, ", expected ",
                  spec_.inputs[i].rule));
        return -1;
      }
    }
    for (int o = 0; o < nbOutputs; ++o) {
      const gen::ShapeSpec& sh = spec_.outputs[o].shapes[0];
      outputs[o].nbDims = sh.rank;
      for (int k = 0; k < sh.rank; ++k) {
        const gen::DimSource& src = spec_.out_dims[o * gen::kMaxRank + k];
        const nv::IDimensionExpr* e = inputs[src.input].d[src.dim];
        if (src.offset > 0) {
          e = exprBuilder.operation(nv::DimensionOperation::kSUM, *e, *exprBuilder.constant(src.offset));
        } else if (src.offset < 0) {
          e = exprBuilder.operation(nv::DimensionOperation::kSUB, *e, *exprBuilder.constant(-src.offset));
        }
        if (e == nullptr) {
          error(cat("could not build the expression of output '", spec_.outputs[o].name, "' dim ", k));
          return -1;
        }
        outputs[o].d[k] = e;
      }
    }
    return 0;
  } catch (const std::exception& e) {
    error(e.what());
    return -1;
  }
}

bool Plugin::supportsFormatCombination(int32_t pos, const nv::DynamicPluginTensorDesc* inOut, int32_t nbInputs,
                                       int32_t nbOutputs) noexcept {
  if (nbInputs != spec_.nb_inputs || nbOutputs != spec_.nb_outputs || pos < 0 || pos >= nbInputs + nbOutputs)
    return false;
  if (inOut[pos].desc.format != nv::TensorFormat::kLINEAR) return false;
  // positions before pos are already fixed to supported values: some variant must agree with all of them
  const int n_io = nbInputs + nbOutputs;
  const uint32_t allowed = variant_mask();
  for (int v = 0; v < spec_.nb_variants; ++v) {
    if (!(allowed >> v & 1u)) continue;
    const gen::DType* row = spec_.variants + static_cast<size_t>(v) * n_io;
    bool ok = true;
    for (int i = 0; ok && i <= pos; ++i) ok = inOut[i].desc.type == trt_type(row[i]);
    if (ok) return true;
  }
  return false;
}

int32_t Plugin::configurePlugin(const nv::DynamicPluginTensorDesc* in, int32_t nbInputs,
                                const nv::DynamicPluginTensorDesc* out, int32_t nbOutputs) noexcept {
  try {
    if (nbInputs != spec_.nb_inputs || nbOutputs != spec_.nb_outputs) {
      error(cat("expects ", spec_.nb_inputs, " inputs and ", spec_.nb_outputs, " outputs, got ", nbInputs, " and ",
                nbOutputs));
      return -1;
    }
    nv::DataType ti[kMaxPorts], to[kMaxPorts];
    nv::Dims di[kMaxPorts], dout[kMaxPorts], mn[kMaxPorts], mx[kMaxPorts];
    for (int i = 0; i < nbInputs; ++i) {
      ti[i] = in[i].desc.type;
      di[i] = in[i].desc.dims;
      mn[i] = in[i].min;
      mx[i] = in[i].max;
      if (in[i].desc.format != nv::TensorFormat::kLINEAR) {
        error(cat("input '", spec_.inputs[i].name, "' must be in the linear format"));
        return -1;
      }
    }
    for (int i = 0; i < nbOutputs; ++i) {
      to[i] = out[i].desc.type;
      dout[i] = out[i].desc.dims;
      if (out[i].desc.format != nv::TensorFormat::kLINEAR) {
        error(cat("output '", spec_.outputs[i].name, "' must be in the linear format"));
        return -1;
      }
    }
    Bound b;
    std::string why = match_types(spec_, ti, to, &b, variant_mask());
    if (why.empty()) why = bind_shapes(spec_, di, dout, &b);
    if (why.empty()) why = check(b);
    // the profile's extremes must fit too (every input dim is known there)
    const struct {
      const nv::Dims* dims;
      const char* name;
    } extremes[] = {{mn, "minimum"}, {mx, "maximum"}};
    for (const auto& x : extremes) {
      if (!why.empty()) break;
      bool filled = true;  // only where TensorRT gave the profile's dims for every input
      for (int i = 0; i < nbInputs; ++i) filled = filled && x.dims[i].nbDims == di[i].nbDims;
      if (!filled) continue;
      Bound e = b;
      why = bind_shapes(spec_, x.dims, nullptr, &e);
      if (why.empty()) why = fits_int(spec_, e);
      if (why.empty()) why = check(e);
      if (!why.empty()) why = cat("at the profile's ", x.name, " shapes: ", why);
    }
    if (!why.empty()) {
      error(why);
      return -1;
    }
    return 0;
  } catch (const std::exception& e) {
    error(e.what());
    return -1;
  }
}

size_t Plugin::getWorkspaceSize(const nv::DynamicPluginTensorDesc* inputs, int32_t nbInputs,
                                const nv::DynamicPluginTensorDesc* outputs, int32_t nbOutputs) const noexcept {
  (void)outputs;
  try {
    if (nbInputs != spec_.nb_inputs || nbOutputs != spec_.nb_outputs) return 0;
    nv::Dims mx[kMaxPorts];
    nv::DataType ti[kMaxPorts];
    for (int i = 0; i < nbInputs; ++i) {
      mx[i] = inputs[i].max;
      ti[i] = inputs[i].desc.type;
    }
    Bound b;
    if (!match_types(spec_, ti, nullptr, &b, variant_mask()).empty() || !bind_shapes(spec_, mx, nullptr, &b).empty())
      return 0;
    return workspace(b);
  } catch (...) {
    return 0;
  }
}

std::string Plugin::bind_desc(const nv::PluginTensorDesc* in, int32_t nbInputs, const nv::PluginTensorDesc* out,
                              int32_t nbOutputs, Bound* b) const {
  if (nbInputs != spec_.nb_inputs || nbOutputs != spec_.nb_outputs)
    return cat("expects ", spec_.nb_inputs, " inputs and ", spec_.nb_outputs, " outputs, got ", nbInputs, " and ",
               nbOutputs);
  nv::DataType ti[kMaxPorts], to[kMaxPorts];
  nv::Dims di[kMaxPorts], dout[kMaxPorts];
  for (int i = 0; i < nbInputs; ++i) {
    ti[i] = in[i].type;
    di[i] = in[i].dims;
    if (in[i].format != nv::TensorFormat::kLINEAR) return cat("input '", spec_.inputs[i].name, "' is not linear");
    for (int k = 0; k < di[i].nbDims; ++k)
      if (di[i].d[k] < 0) return cat("input '", spec_.inputs[i].name, "' has an unresolved dimension ", dims_str(di[i]));
  }
  for (int i = 0; i < nbOutputs; ++i) {
    to[i] = out[i].type;
    dout[i] = out[i].dims;
    if (out[i].format != nv::TensorFormat::kLINEAR) return cat("output '", spec_.outputs[i].name, "' is not linear");
    for (int k = 0; k < dout[i].nbDims; ++k)
      if (dout[i].d[k] < 0)
        return cat("output '", spec_.outputs[i].name, "' has an unresolved dimension ", dims_str(dout[i]));
  }
  std::string why = match_types(spec_, ti, to, b, variant_mask());
  if (why.empty()) why = bind_shapes(spec_, di, dout, b);
  if (why.empty()) why = fits_int(spec_, *b);
  if (why.empty()) why = check(*b);
  return why;
}

int32_t Plugin::onShapeChange(const nv::PluginTensorDesc* in, int32_t nbInputs, const nv::PluginTensorDesc* out,
                              int32_t nbOutputs) noexcept {
  try {
    Bound b;
    std::string why = bind_desc(in, nbInputs, out, nbOutputs, &b);
    if (why.empty()) why = prepare();
    if (!why.empty()) {
      error(why);
      return -1;
    }
    return 0;
  } catch (const std::exception& e) {
    error(e.what());
    return -1;
  }
}

int32_t Plugin::enqueue(const nv::PluginTensorDesc* inputDesc, const nv::PluginTensorDesc* outputDesc,
                        const void* const* inputs, void* const* outputs, void* workspace,
                        cudaStream_t stream) noexcept {
  try {
    Bound b;
    std::string why = bind_desc(inputDesc, spec_.nb_inputs, outputDesc, spec_.nb_outputs, &b);
    if (why.empty()) why = run(Launch{b, inputs, outputs, workspace, stream});
    if (!why.empty()) {
      error(cat("enqueue: ", why));
      return -1;
    }
    return 0;
  } catch (const std::exception& e) {
    error(cat("enqueue: ", e.what()));
    return -1;
  }
}

// ---- creators -------------------------------------------------------------------------------------------

std::vector<nv::IPluginCreatorInterface*>& creator_list() {
  static std::vector<nv::IPluginCreatorInterface*> list;
  return list;
}

CreatorBase::CreatorBase(const gen::OpSpec& spec) : spec_(spec) {
  for (int j = 0; j < spec.nb_fields; ++j)
    fields_.emplace_back(spec.fields[j].name, nullptr, field_type(spec.fields[j].kind), 1);
  names_.nbFields = static_cast<int32_t>(fields_.size());
  names_.fields = fields_.data();
}

namespace {

// QUAMBA_TRT_FIELD_LOG=<file>: append one JSON line per createPlugin call -- op, version, namespace, phase and
// every field as received (name, type, values) -- so that plugins/check_trt_rtx.py can check what a real
// TensorRT parser hands our creators. Off unless the variable is set; never throws, never fails the call.
void log_create_fields(const gen::OpSpec& spec, const nv::PluginFieldCollection* fc, nv::TensorRTPhase phase) {
  const char* path = std::getenv("QUAMBA_TRT_FIELD_LOG");
  if (path == nullptr || path[0] == '\0') return;
  std::string j = cat("{\"op\": \"", spec.name, "\", \"version\": \"", spec.version, "\", \"namespace\": \"",
                      gen::kNamespace, "\", \"phase\": \"", phase == nv::TensorRTPhase::kBUILD ? "build" : "runtime",
                      "\", \"fields\": [");
  auto quoted = [](const char* s, size_t n) {
    std::string o = "\"";
    for (size_t i = 0; i < n && s[i] != '\0'; ++i) {
      const char c = s[i];
      if (c == '"' || c == '\\') o += '\\';
      if (static_cast<unsigned char>(c) >= 0x20) o += c;
    }
    return o + "\"";
  };
  const int n = fc != nullptr ? fc->nbFields : 0;
  for (int i = 0; i < n; ++i) {
    const nv::PluginField& f = fc->fields[i];
    const char* type = "other";
    std::string value = "null";
    const int len = f.length;
    if (f.data != nullptr && f.type == nv::PluginFieldType::kFLOAT32) {
      type = "kFLOAT32";
      value = "[";
      for (int k = 0; k < len; ++k) {
        const float v = static_cast<const float*>(f.data)[k];
        char buf[48];
        if (std::isfinite(v)) {
          std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
        } else {
          std::snprintf(buf, sizeof buf, "%s", std::isnan(v) ? "NaN" : (v > 0 ? "Infinity" : "-Infinity"));
        }
        value += cat(k ? ", " : "", buf);
      }
      value += "]";
    } else if (f.data != nullptr && f.type == nv::PluginFieldType::kINT32) {
      type = "kINT32";
      value = "[";
      for (int k = 0; k < len; ++k) value += cat(k ? ", " : "", static_cast<const int32_t*>(f.data)[k]);
      value += "]";
    } else if (f.data != nullptr && f.type == nv::PluginFieldType::kCHAR) {
      type = "kCHAR";
      value = quoted(static_cast<const char*>(f.data), static_cast<size_t>(len));
    }
    j += cat(i ? ", " : "", "{\"name\": ", quoted(f.name ? f.name : "", 256), ", \"type\": \"", type,
             "\", \"length\": ", len, ", \"value\": ", value, "}");
  }
  j += "]}\n";
  if (FILE* out = std::fopen(path, "a")) {
    std::fputs(j.c_str(), out);
    std::fclose(out);
  }
}

}  // namespace

nv::IPluginV3* CreatorBase::createPlugin(const char* name, const nv::PluginFieldCollection* fc,
                                         nv::TensorRTPhase phase) noexcept {
  try {
    log_create_fields(spec_, fc, phase);  // the same fields serve both phases (getFieldsToSerialize writes all)
    Fields f;
    std::string err;
    Plugin* p = nullptr;
    if (Fields::parse(spec_, fc, &f, &err)) p = make(name, std::move(f), &err);
    if (p == nullptr) {
      log(nv::ILogger::Severity::kERROR,
          cat(spec_.name, " (layer '", name ? name : "", "'): cannot create the plugin: ", err));
      return nullptr;
    }
    return p;
  } catch (const std::exception& e) {
    log(nv::ILogger::Severity::kERROR, cat(spec_.name, ": cannot create the plugin: ", e.what()));
    return nullptr;
  }
}

Registrar::Registrar(CreatorBase* c) {
  creator_list().push_back(c);
#ifdef QUAMBA_TRT_STATIC_REGISTRATION
  // REGISTER_TENSORRT_PLUGIN would pass "" as the namespace; ours is the creator's own ("quamba"), which the
  // ONNX parser looks up (plugin_namespace attribute / node domain).
  if (!getPluginRegistry()->registerCreator(*c, gen::kNamespace))
    log(nv::ILogger::Severity::kERROR, cat("could not register the plugin creator ", c->getPluginName(),
                                           " (already registered?)"));
#endif
}

}  // namespace quamba_trt
