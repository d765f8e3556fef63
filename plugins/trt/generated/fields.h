// GENERATED from the op registry (quamba_edge/ops/, registry v1) by
//   python -m quamba_edge.ops --trt-fields > plugins/trt/generated/fields.h
// Do not edit: a test fails when this file is stale. quamba_edge/ops/trt_fields.py says what each part is.
#pragma once

#include <cstdint>
#include <limits>

namespace quamba_trt {
namespace gen {

inline constexpr int32_t kRegistryVersion = 1;
inline constexpr char kNamespace[] = "quamba";  // ONNX domain "quamba"
inline constexpr int32_t kMaxRank = 8;
inline constexpr float kInf = std::numeric_limits<float>::infinity();

// Plugin tensor dtypes: the record's T is float16, its uint8 (packed int4 weights) travels as kINT8
// (TensorRT plugins take no uint8 tensors; prepare_trt_graph retypes those initializers, same bytes).
enum class DType : int32_t { kINT8, kFLOAT16, kFLOAT32, kINT32, kINT64 };
enum class FieldKind : int32_t { kINT32, kFLOAT32, kCHAR };
// kAttribute: a node attribute of the record; kHostScale: a per-tensor scale input folded into an
// attribute of the same name (quamba_edge.ops.trt_fields.fold_host_scales), read on the host.
enum class FieldSource : int32_t { kAttribute, kHostScale };

struct FieldSpec {
  const char* name;
  FieldKind kind;
  FieldSource source;
  bool required;
  double default_number;       // numeric default (when not required)
  const char* default_string;  // kCHAR default (when not required)
  int32_t input;               // kHostScale: the input index it stands for; else -1
};
struct DimSpec {
  int32_t symbol;  // index into the op's symbols (ceil(K/2) etc.: a symbol the op checks); -1: a literal
  int32_t offset;  // dim = value(symbol) + offset (the literal when symbol is -1)
};
struct ShapeSpec {
  int32_t rank;
  DimSpec dims[kMaxRank];
};
struct PortSpec {
  const char* name;
  const char* rule;     // the record's shape rule, for messages
  int32_t nb_shapes;    // alternatives (e.g. [H, P, N] for an int8 state, [] for a float state)
  ShapeSpec shapes[2];
};
struct DimSource {
  int32_t input, dim, offset;  // output dim = input's dim + offset
};
struct OpSpec {
  const char* name;
  const char* version;
  const char* module;  // quamba_edge/ops/<module>.py, plugins/trt/<module>.cpp
  int32_t nb_inputs, nb_outputs, nb_fields, nb_symbols, nb_variants;
  const PortSpec* inputs;
  const PortSpec* outputs;
  const FieldSpec* fields;
  const char* const* symbols;
  const DType* variants;       // nb_variants rows of nb_inputs + nb_outputs dtypes (T = float16)
  const DimSource* out_dims;   // nb_outputs rows of kMaxRank
};

// ---- QuantAddRMSNorm (quamba_edge/ops/quant_add_rms_norm.py, kernel plugins/kernels/quant_add_rms_norm.cu) ----
namespace QuantAddRMSNorm {
inline constexpr char kName[] = "QuantAddRMSNorm";
inline constexpr char kVersion[] = "1";
inline constexpr char kModule[] = "quant_add_rms_norm";
namespace inputs {
enum : int32_t { hidden, residual, weight, out_scale, kCount };
}
namespace outputs {
enum : int32_t { y, residual_out, kCount };
}
namespace syms {
enum : int32_t { B, L, d, kCount };
}
namespace fields {
enum : int32_t { eps, out_scale, kCount };
}
inline constexpr const char* kSymbols[] = {"B", "L", "d"};
inline constexpr FieldSpec kFields[] = {
    {"eps", FieldKind::kFLOAT32, FieldSource::kAttribute, true, 0.0, nullptr, -1},
    {"out_scale", FieldKind::kFLOAT32, FieldSource::kHostScale, true, 0.0, nullptr, 3},
};
inline constexpr PortSpec kInputs[] = {
    {"hidden", "[B, L, d]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"residual", "[B, L, d]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"weight", "[d]", 1, {{1, {{2, 0}}}}},
    {"out_scale", "[]", 1, {{0, {}}}},
};
inline constexpr PortSpec kOutputs[] = {
    {"y", "[B, L, d]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"residual_out", "[B, L, d]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
};
inline constexpr DType kVariants[1 * 6] = {
    DType::kFLOAT16, DType::kFLOAT32, DType::kFLOAT32, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32,
};
inline constexpr DimSource kOutputDims[2 * kMaxRank] = {
    {0, 0, 0}, {0, 1, 0}, {0, 2, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0},
    {0, 0, 0}, {0, 1, 0}, {0, 2, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0},
};
inline constexpr OpSpec kSpec = {kName, kVersion, kModule, inputs::kCount, outputs::kCount, fields::kCount, syms::kCount, 1, kInputs, kOutputs, kFields, kSymbols, kVariants, kOutputDims};
}  // namespace QuantAddRMSNorm

// ---- QuantCausalConv1d (quamba_edge/ops/quant_causal_conv1d.py, kernel plugins/kernels/quant_causal_conv1d.cu) ----
namespace QuantCausalConv1d {
inline constexpr char kName[] = "QuantCausalConv1d";
inline constexpr char kVersion[] = "1";
inline constexpr char kModule[] = "quant_causal_conv1d";
namespace inputs {
enum : int32_t { x_q, x_scale, w_q, w_scale, b_q, b_scale, out_scale, conv_state, kCount };
}
namespace outputs {
enum : int32_t { y_q, conv_state_out, kCount };
}
namespace syms {
enum : int32_t { B, L, C, K, kCount };
}
namespace fields {
enum : int32_t { silu, kCount };
}
inline constexpr const char* kSymbols[] = {"B", "L", "C", "K"};
inline constexpr FieldSpec kFields[] = {
    {"silu", FieldKind::kINT32, FieldSource::kAttribute, false, 1.0, nullptr, -1},
};
inline constexpr PortSpec kInputs[] = {
    {"x_q", "[B, L, C]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"x_scale", "[C]", 1, {{1, {{2, 0}}}}},
    {"w_q", "[C, K]", 1, {{2, {{2, 0}, {3, 0}}}}},
    {"w_scale", "[C]", 1, {{1, {{2, 0}}}}},
    {"b_q", "[C] (zeros when the conv has no bias)", 1, {{1, {{2, 0}}}}},
    {"b_scale", "[C]", 1, {{1, {{2, 0}}}}},
    {"out_scale", "[C]", 1, {{1, {{2, 0}}}}},
    {"conv_state", "[B, C, K-1]", 1, {{3, {{0, 0}, {2, 0}, {3, -1}}}}},
};
inline constexpr PortSpec kOutputs[] = {
    {"y_q", "[B, L, C]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"conv_state_out", "[B, C, K-1]", 1, {{3, {{0, 0}, {2, 0}, {3, -1}}}}},
};
inline constexpr DType kVariants[1 * 10] = {
    DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kFLOAT32, DType::kINT8, DType::kINT8, DType::kINT8,
};
inline constexpr DimSource kOutputDims[2 * kMaxRank] = {
    {0, 0, 0}, {0, 1, 0}, {0, 2, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0},
    {0, 0, 0}, {0, 2, 0}, {2, 1, -1}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0},
};
inline constexpr OpSpec kSpec = {kName, kVersion, kModule, inputs::kCount, outputs::kCount, fields::kCount, syms::kCount, 1, kInputs, kOutputs, kFields, kSymbols, kVariants, kOutputDims};
}  // namespace QuantCausalConv1d

// ---- QuantEmbedding (quamba_edge/ops/quant_embedding.py, kernel plugins/kernels/quant_embedding.cu) ----
namespace QuantEmbedding {
inline constexpr char kName[] = "QuantEmbedding";
inline constexpr char kVersion[] = "1";
inline constexpr char kModule[] = "quant_embedding";
namespace inputs {
enum : int32_t { ids, table, row_scale, kCount };
}
namespace outputs {
enum : int32_t { out, kCount };
}
namespace syms {
enum : int32_t { B, L, V, d, kCount };
}
namespace fields {
enum : int32_t { bits, embedding_dim, kCount };
}
inline constexpr const char* kSymbols[] = {"B", "L", "V", "d"};
inline constexpr FieldSpec kFields[] = {
    {"bits", FieldKind::kINT32, FieldSource::kAttribute, true, 0.0, nullptr, -1},
    {"embedding_dim", FieldKind::kINT32, FieldSource::kAttribute, true, 0.0, nullptr, -1},
};
inline constexpr PortSpec kInputs[] = {
    {"ids", "[B, L]", 1, {{2, {{0, 0}, {1, 0}}}}},
    {"table", "[V, d] int8 (bits 8) or [V, ceil(d/2)] uint8 packed int4 (bits 4)", 1, {{2, {{2, 0}, {3, 0}}}}},
    {"row_scale", "[V]", 1, {{1, {{2, 0}}}}},
};
inline constexpr PortSpec kOutputs[] = {
    {"out", "[B, L, d]", 1, {{3, {{0, 0}, {1, 0}, {3, 0}}}}},
};
inline constexpr DType kVariants[1 * 4] = {
    DType::kINT64, DType::kINT8, DType::kFLOAT16, DType::kFLOAT16,
};
inline constexpr DimSource kOutputDims[1 * kMaxRank] = {
    {0, 0, 0}, {0, 1, 0}, {1, 1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0},
};
inline constexpr OpSpec kSpec = {kName, kVersion, kModule, inputs::kCount, outputs::kCount, fields::kCount, syms::kCount, 1, kInputs, kOutputs, kFields, kSymbols, kVariants, kOutputDims};
}  // namespace QuantEmbedding

// ---- QuantGatedRMSNorm (quamba_edge/ops/quant_gated_rms_norm.py, kernel plugins/kernels/quant_gated_rms_norm.cu) ----
namespace QuantGatedRMSNorm {
inline constexpr char kName[] = "QuantGatedRMSNorm";
inline constexpr char kVersion[] = "1";
inline constexpr char kModule[] = "quant_gated_rms_norm";
namespace inputs {
enum : int32_t { y, z_q, z_scale, weight, kCount };
}
namespace outputs {
enum : int32_t { out, kCount };
}
namespace syms {
enum : int32_t { B, L, E, kCount };
}
namespace fields {
enum : int32_t { eps, group_size, norm_before_gate, z_scale, kCount };
}
inline constexpr const char* kSymbols[] = {"B", "L", "E"};
inline constexpr FieldSpec kFields[] = {
    {"eps", FieldKind::kFLOAT32, FieldSource::kAttribute, true, 0.0, nullptr, -1},
    {"group_size", FieldKind::kINT32, FieldSource::kAttribute, true, 0.0, nullptr, -1},
    {"norm_before_gate", FieldKind::kINT32, FieldSource::kAttribute, false, 0.0, nullptr, -1},
    {"z_scale", FieldKind::kFLOAT32, FieldSource::kHostScale, true, 0.0, nullptr, 2},
};
inline constexpr PortSpec kInputs[] = {
    {"y", "[B, L, E]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"z_q", "[B, L, E]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"z_scale", "[]", 1, {{0, {}}}},
    {"weight", "[E]", 1, {{1, {{2, 0}}}}},
};
inline constexpr PortSpec kOutputs[] = {
    {"out", "[B, L, E]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
};
inline constexpr DType kVariants[1 * 5] = {
    DType::kFLOAT16, DType::kINT8, DType::kFLOAT32, DType::kFLOAT32, DType::kFLOAT16,
};
inline constexpr DimSource kOutputDims[1 * kMaxRank] = {
    {0, 0, 0}, {0, 1, 0}, {0, 2, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0},
};
inline constexpr OpSpec kSpec = {kName, kVersion, kModule, inputs::kCount, outputs::kCount, fields::kCount, syms::kCount, 1, kInputs, kOutputs, kFields, kSymbols, kVariants, kOutputDims};
}  // namespace QuantGatedRMSNorm

// ---- QuantHadamard (quamba_edge/ops/quant_hadamard.py, kernel plugins/kernels/quant_hadamard.cu) ----
namespace QuantHadamard {
inline constexpr char kName[] = "QuantHadamard";
inline constexpr char kVersion[] = "1";
inline constexpr char kModule[] = "quant_hadamard";
namespace inputs {
enum : int32_t { x, out_scale, kCount };
}
namespace outputs {
enum : int32_t { y, kCount };
}
namespace syms {
enum : int32_t { B, L, n, kCount };
}
namespace fields {
enum : int32_t { size, out_scale, kCount };
}
inline constexpr const char* kSymbols[] = {"B", "L", "n"};
inline constexpr FieldSpec kFields[] = {
    {"size", FieldKind::kINT32, FieldSource::kAttribute, true, 0.0, nullptr, -1},
    {"out_scale", FieldKind::kFLOAT32, FieldSource::kHostScale, true, 0.0, nullptr, 1},
};
inline constexpr PortSpec kInputs[] = {
    {"x", "[B, L, n]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"out_scale", "[]", 1, {{0, {}}}},
};
inline constexpr PortSpec kOutputs[] = {
    {"y", "[B, L, n]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
};
inline constexpr DType kVariants[1 * 3] = {
    DType::kFLOAT16, DType::kFLOAT32, DType::kINT8,
};
inline constexpr DimSource kOutputDims[1 * kMaxRank] = {
    {0, 0, 0}, {0, 1, 0}, {0, 2, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0},
};
inline constexpr OpSpec kSpec = {kName, kVersion, kModule, inputs::kCount, outputs::kCount, fields::kCount, syms::kCount, 1, kInputs, kOutputs, kFields, kSymbols, kVariants, kOutputDims};
}  // namespace QuantHadamard

// ---- QuantSSD (quamba_edge/ops/quant_ssd.py, kernel plugins/kernels/quant_ssd.cu) ----
namespace QuantSSD {
inline constexpr char kName[] = "QuantSSD";
inline constexpr char kVersion[] = "1";
inline constexpr char kModule[] = "quant_ssd";
namespace inputs {
enum : int32_t { x_q, x_scale, dt_q, dt_scale, dt_bias, A_log_q, A_log_scale, B_q, B_scale, C_q, C_scale, D_q, D_scale, state_in, state_scale, kCount };
}
namespace outputs {
enum : int32_t { y, state_out, kCount };
}
namespace syms {
enum : int32_t { B, L, H, P, G, N, kCount };
}
namespace fields {
enum : int32_t { chunk_size, dt_limit_lo, dt_limit_hi, dt_scale, A_log_scale, D_scale, kCount };
}
inline constexpr const char* kSymbols[] = {"B", "L", "H", "P", "G", "N"};
inline constexpr FieldSpec kFields[] = {
    {"chunk_size", FieldKind::kINT32, FieldSource::kAttribute, false, 256.0, nullptr, -1},
    {"dt_limit_lo", FieldKind::kFLOAT32, FieldSource::kAttribute, false, 0.0, nullptr, -1},
    {"dt_limit_hi", FieldKind::kFLOAT32, FieldSource::kAttribute, false, kInf, nullptr, -1},
    {"dt_scale", FieldKind::kFLOAT32, FieldSource::kHostScale, true, 0.0, nullptr, 3},
    {"A_log_scale", FieldKind::kFLOAT32, FieldSource::kHostScale, true, 0.0, nullptr, 6},
    {"D_scale", FieldKind::kFLOAT32, FieldSource::kHostScale, true, 0.0, nullptr, 12},
};
inline constexpr PortSpec kInputs[] = {
    {"x_q", "[B, L, H, P]", 1, {{4, {{0, 0}, {1, 0}, {2, 0}, {3, 0}}}}},
    {"x_scale", "[H, P]", 1, {{2, {{2, 0}, {3, 0}}}}},
    {"dt_q", "[B, L, H]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"dt_scale", "[]", 1, {{0, {}}}},
    {"dt_bias", "[H]", 1, {{1, {{2, 0}}}}},
    {"A_log_q", "[H]", 1, {{1, {{2, 0}}}}},
    {"A_log_scale", "[]", 1, {{0, {}}}},
    {"B_q", "[B, L, G, N]", 1, {{4, {{0, 0}, {1, 0}, {4, 0}, {5, 0}}}}},
    {"B_scale", "[G]", 1, {{1, {{4, 0}}}}},
    {"C_q", "[B, L, G, N]", 1, {{4, {{0, 0}, {1, 0}, {4, 0}, {5, 0}}}}},
    {"C_scale", "[G]", 1, {{1, {{4, 0}}}}},
    {"D_q", "[H] (zeros when absent)", 1, {{1, {{2, 0}}}}},
    {"D_scale", "[]", 1, {{0, {}}}},
    {"state_in", "[B, H, P, N]", 1, {{4, {{0, 0}, {2, 0}, {3, 0}, {5, 0}}}}},
    {"state_scale", "[H, P, N] (int8 state); [] ignored (float state)", 2, {{3, {{2, 0}, {3, 0}, {5, 0}}}, {0, {}}}},
};
inline constexpr PortSpec kOutputs[] = {
    {"y", "[B, L, H, P]", 1, {{4, {{0, 0}, {1, 0}, {2, 0}, {3, 0}}}}},
    {"state_out", "[B, H, P, N]", 1, {{4, {{0, 0}, {2, 0}, {3, 0}, {5, 0}}}}},
};
inline constexpr DType kVariants[2 * 17] = {
    DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kFLOAT16, DType::kINT8,
    DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kFLOAT16, DType::kFLOAT32, DType::kFLOAT16, DType::kFLOAT16,
};
inline constexpr DimSource kOutputDims[2 * kMaxRank] = {
    {0, 0, 0}, {0, 1, 0}, {0, 2, 0}, {0, 3, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0},
    {0, 0, 0}, {0, 2, 0}, {0, 3, 0}, {7, 3, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0},
};
inline constexpr OpSpec kSpec = {kName, kVersion, kModule, inputs::kCount, outputs::kCount, fields::kCount, syms::kCount, 2, kInputs, kOutputs, kFields, kSymbols, kVariants, kOutputDims};
}  // namespace QuantSSD

// ---- QuantSelectiveScan (quamba_edge/ops/quant_selective_scan.py, kernel plugins/kernels/quant_selective_scan.cu) ----
namespace QuantSelectiveScan {
inline constexpr char kName[] = "QuantSelectiveScan";
inline constexpr char kVersion[] = "1";
inline constexpr char kModule[] = "quant_selective_scan";
namespace inputs {
enum : int32_t { u_q, u_scale, dt_q, dt_scale, A_log_q, A_log_scale, B_q, B_scale, C_q, C_scale, D_q, D_scale, z_q, z_scale, dt_bias_q, dt_bias_scale, state_in, state_scale, kCount };
}
namespace outputs {
enum : int32_t { y, state_out, kCount };
}
namespace syms {
enum : int32_t { B, L, E, N, kCount };
}
namespace fields {
enum : int32_t { u_scale, dt_scale, A_log_scale, B_scale, C_scale, D_scale, z_scale, dt_bias_scale, state_scale, kCount };
}
inline constexpr const char* kSymbols[] = {"B", "L", "E", "N"};
inline constexpr FieldSpec kFields[] = {
    {"u_scale", FieldKind::kFLOAT32, FieldSource::kHostScale, true, 0.0, nullptr, 1},
    {"dt_scale", FieldKind::kFLOAT32, FieldSource::kHostScale, true, 0.0, nullptr, 3},
    {"A_log_scale", FieldKind::kFLOAT32, FieldSource::kHostScale, true, 0.0, nullptr, 5},
    {"B_scale", FieldKind::kFLOAT32, FieldSource::kHostScale, true, 0.0, nullptr, 7},
    {"C_scale", FieldKind::kFLOAT32, FieldSource::kHostScale, true, 0.0, nullptr, 9},
    {"D_scale", FieldKind::kFLOAT32, FieldSource::kHostScale, true, 0.0, nullptr, 11},
    {"z_scale", FieldKind::kFLOAT32, FieldSource::kHostScale, true, 0.0, nullptr, 13},
    {"dt_bias_scale", FieldKind::kFLOAT32, FieldSource::kHostScale, true, 0.0, nullptr, 15},
    {"state_scale", FieldKind::kFLOAT32, FieldSource::kHostScale, true, 0.0, nullptr, 17},
};
inline constexpr PortSpec kInputs[] = {
    {"u_q", "[B, L, E]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"u_scale", "[]", 1, {{0, {}}}},
    {"dt_q", "[B, L, E]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"dt_scale", "[]", 1, {{0, {}}}},
    {"A_log_q", "[E, N]", 1, {{2, {{2, 0}, {3, 0}}}}},
    {"A_log_scale", "[]", 1, {{0, {}}}},
    {"B_q", "[B, L, N]", 1, {{3, {{0, 0}, {1, 0}, {3, 0}}}}},
    {"B_scale", "[]", 1, {{0, {}}}},
    {"C_q", "[B, L, N]", 1, {{3, {{0, 0}, {1, 0}, {3, 0}}}}},
    {"C_scale", "[]", 1, {{0, {}}}},
    {"D_q", "[E] (zeros when absent)", 1, {{1, {{2, 0}}}}},
    {"D_scale", "[]", 1, {{0, {}}}},
    {"z_q", "[B, L, E]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"z_scale", "[]", 1, {{0, {}}}},
    {"dt_bias_q", "[E] (zeros when absent)", 1, {{1, {{2, 0}}}}},
    {"dt_bias_scale", "[]", 1, {{0, {}}}},
    {"state_in", "[B, E, N]", 1, {{3, {{0, 0}, {2, 0}, {3, 0}}}}},
    {"state_scale", "[] (ignored for a float state)", 1, {{0, {}}}},
};
inline constexpr PortSpec kOutputs[] = {
    {"y", "[B, L, E]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"state_out", "[B, E, N]", 1, {{3, {{0, 0}, {2, 0}, {3, 0}}}}},
};
inline constexpr DType kVariants[2 * 20] = {
    DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kFLOAT16, DType::kINT8,
    DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kFLOAT16, DType::kFLOAT32, DType::kFLOAT16, DType::kFLOAT16,
};
inline constexpr DimSource kOutputDims[2 * kMaxRank] = {
    {0, 0, 0}, {0, 1, 0}, {0, 2, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0},
    {0, 0, 0}, {0, 2, 0}, {4, 1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0},
};
inline constexpr OpSpec kSpec = {kName, kVersion, kModule, inputs::kCount, outputs::kCount, fields::kCount, syms::kCount, 2, kInputs, kOutputs, kFields, kSymbols, kVariants, kOutputDims};
}  // namespace QuantSelectiveScan

// ---- SSD (quamba_edge/ops/ssd.py, kernel plugins/kernels/ssd.cu) ----
namespace SSD {
inline constexpr char kName[] = "SSD";
inline constexpr char kVersion[] = "1";
inline constexpr char kModule[] = "ssd";
namespace inputs {
enum : int32_t { x, dt, A, B, C, D, state_in, kCount };
}
namespace outputs {
enum : int32_t { y, state_out, kCount };
}
namespace syms {
enum : int32_t { B, L, H, P, G, N, kCount };
}
namespace fields {
enum : int32_t { chunk_size, kCount };
}
inline constexpr const char* kSymbols[] = {"B", "L", "H", "P", "G", "N"};
inline constexpr FieldSpec kFields[] = {
    {"chunk_size", FieldKind::kINT32, FieldSource::kAttribute, false, 256.0, nullptr, -1},
};
inline constexpr PortSpec kInputs[] = {
    {"x", "[B, L, H, P]", 1, {{4, {{0, 0}, {1, 0}, {2, 0}, {3, 0}}}}},
    {"dt", "[B, L, H] (softplus'ed, clamped)", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"A", "[H] (= -exp(A_log))", 1, {{1, {{2, 0}}}}},
    {"B", "[B, L, G, N]", 1, {{4, {{0, 0}, {1, 0}, {4, 0}, {5, 0}}}}},
    {"C", "[B, L, G, N]", 1, {{4, {{0, 0}, {1, 0}, {4, 0}, {5, 0}}}}},
    {"D", "[H]", 1, {{1, {{2, 0}}}}},
    {"state_in", "[B, H, P, N]", 1, {{4, {{0, 0}, {2, 0}, {3, 0}, {5, 0}}}}},
};
inline constexpr PortSpec kOutputs[] = {
    {"y", "[B, L, H, P]", 1, {{4, {{0, 0}, {1, 0}, {2, 0}, {3, 0}}}}},
    {"state_out", "[B, H, P, N]", 1, {{4, {{0, 0}, {2, 0}, {3, 0}, {5, 0}}}}},
};
inline constexpr DType kVariants[1 * 9] = {
    DType::kFLOAT16, DType::kFLOAT16, DType::kFLOAT32, DType::kFLOAT16, DType::kFLOAT16, DType::kFLOAT32, DType::kFLOAT16, DType::kFLOAT16, DType::kFLOAT16,
};
inline constexpr DimSource kOutputDims[2 * kMaxRank] = {
    {0, 0, 0}, {0, 1, 0}, {0, 2, 0}, {0, 3, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0},
    {0, 0, 0}, {0, 2, 0}, {0, 3, 0}, {3, 3, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0},
};
inline constexpr OpSpec kSpec = {kName, kVersion, kModule, inputs::kCount, outputs::kCount, fields::kCount, syms::kCount, 1, kInputs, kOutputs, kFields, kSymbols, kVariants, kOutputDims};
}  // namespace SSD

// ---- SelectiveScan (quamba_edge/ops/selective_scan.py, kernel plugins/kernels/selective_scan.cu) ----
namespace SelectiveScan {
inline constexpr char kName[] = "SelectiveScan";
inline constexpr char kVersion[] = "1";
inline constexpr char kModule[] = "selective_scan";
namespace inputs {
enum : int32_t { u, delta, A, B, C, D, z, delta_bias, state_in, kCount };
}
namespace outputs {
enum : int32_t { y, state_out, kCount };
}
namespace syms {
enum : int32_t { B, L, E, N, kCount };
}
namespace fields {
enum : int32_t { delta_softplus, kCount };
}
inline constexpr const char* kSymbols[] = {"B", "L", "E", "N"};
inline constexpr FieldSpec kFields[] = {
    {"delta_softplus", FieldKind::kINT32, FieldSource::kAttribute, false, 1.0, nullptr, -1},
};
inline constexpr PortSpec kInputs[] = {
    {"u", "[B, L, E]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"delta", "[B, L, E] (dt_proj output without bias)", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"A", "[E, N] (= -exp(A_log))", 1, {{2, {{2, 0}, {3, 0}}}}},
    {"B", "[B, L, N]", 1, {{3, {{0, 0}, {1, 0}, {3, 0}}}}},
    {"C", "[B, L, N]", 1, {{3, {{0, 0}, {1, 0}, {3, 0}}}}},
    {"D", "[E]", 1, {{1, {{2, 0}}}}},
    {"z", "[B, L, E]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"delta_bias", "[E]", 1, {{1, {{2, 0}}}}},
    {"state_in", "[B, E, N]", 1, {{3, {{0, 0}, {2, 0}, {3, 0}}}}},
};
inline constexpr PortSpec kOutputs[] = {
    {"y", "[B, L, E]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"state_out", "[B, E, N]", 1, {{3, {{0, 0}, {2, 0}, {3, 0}}}}},
};
inline constexpr DType kVariants[1 * 11] = {
    DType::kFLOAT16, DType::kFLOAT16, DType::kFLOAT32, DType::kFLOAT16, DType::kFLOAT16, DType::kFLOAT32, DType::kFLOAT16, DType::kFLOAT32, DType::kFLOAT16, DType::kFLOAT16, DType::kFLOAT16,
};
inline constexpr DimSource kOutputDims[2 * kMaxRank] = {
    {0, 0, 0}, {0, 1, 0}, {0, 2, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0},
    {0, 0, 0}, {0, 2, 0}, {2, 1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0},
};
inline constexpr OpSpec kSpec = {kName, kVersion, kModule, inputs::kCount, outputs::kCount, fields::kCount, syms::kCount, 1, kInputs, kOutputs, kFields, kSymbols, kVariants, kOutputDims};
}  // namespace SelectiveScan

// ---- W4A16Linear (quamba_edge/ops/w4a16_linear.py, kernel plugins/kernels/w4a16_linear.cu) ----
namespace W4A16Linear {
inline constexpr char kName[] = "W4A16Linear";
inline constexpr char kVersion[] = "1";
inline constexpr char kModule[] = "w4a16_linear";
namespace inputs {
enum : int32_t { x, qweight, scale, bias, kCount };
}
namespace outputs {
enum : int32_t { y, kCount };
}
namespace syms {
enum : int32_t { B, L, K, N, ceil_K_2, ceil_K_group_size, kCount };
}
namespace fields {
enum : int32_t { in_features, group_size, kCount };
}
inline constexpr const char* kSymbols[] = {"B", "L", "K", "N", "ceil(K/2)", "ceil(K/group_size)"};
inline constexpr FieldSpec kFields[] = {
    {"in_features", FieldKind::kINT32, FieldSource::kAttribute, true, 0.0, nullptr, -1},
    {"group_size", FieldKind::kINT32, FieldSource::kAttribute, false, 128.0, nullptr, -1},
};
inline constexpr PortSpec kInputs[] = {
    {"x", "[B, L, K]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"qweight", "[N, ceil(K/2)] int4 codes, offset binary, low nibble first", 1, {{2, {{3, 0}, {4, 0}}}}},
    {"scale", "[N, ceil(K/group_size)]", 1, {{2, {{3, 0}, {5, 0}}}}},
    {"bias", "[N] (zeros when the layer has none)", 1, {{1, {{3, 0}}}}},
};
inline constexpr PortSpec kOutputs[] = {
    {"y", "[B, L, N]", 1, {{3, {{0, 0}, {1, 0}, {3, 0}}}}},
};
inline constexpr DType kVariants[1 * 5] = {
    DType::kFLOAT16, DType::kINT8, DType::kFLOAT16, DType::kFLOAT32, DType::kFLOAT16,
};
inline constexpr DimSource kOutputDims[1 * kMaxRank] = {
    {0, 0, 0}, {0, 1, 0}, {1, 0, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0},
};
inline constexpr OpSpec kSpec = {kName, kVersion, kModule, inputs::kCount, outputs::kCount, fields::kCount, syms::kCount, 1, kInputs, kOutputs, kFields, kSymbols, kVariants, kOutputDims};
}  // namespace W4A16Linear

// ---- W4A8Linear (quamba_edge/ops/w4a8_linear.py, kernel plugins/kernels/w4a8_linear.cu) ----
namespace W4A8Linear {
inline constexpr char kName[] = "W4A8Linear";
inline constexpr char kVersion[] = "1";
inline constexpr char kModule[] = "w4a8_linear";
namespace inputs {
enum : int32_t { x_q, x_scale, qweight, s_group, s_channel, bias, out_scale, kCount };
}
namespace outputs {
enum : int32_t { y, kCount };
}
namespace syms {
enum : int32_t { B, L, K, N, ceil_K_2, ceil_K_group_size, kCount };
}
namespace fields {
enum : int32_t { in_features, group_size, out_int8, kCount };
}
inline constexpr const char* kSymbols[] = {"B", "L", "K", "N", "ceil(K/2)", "ceil(K/group_size)"};
inline constexpr FieldSpec kFields[] = {
    {"in_features", FieldKind::kINT32, FieldSource::kAttribute, true, 0.0, nullptr, -1},
    {"group_size", FieldKind::kINT32, FieldSource::kAttribute, false, 128.0, nullptr, -1},
    {"out_int8", FieldKind::kINT32, FieldSource::kAttribute, true, 0.0, nullptr, -1},
};
inline constexpr PortSpec kInputs[] = {
    {"x_q", "[B, L, K]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"x_scale", "[]", 1, {{0, {}}}},
    {"qweight", "[N, ceil(K/2)] int4 codes, offset binary, low nibble first", 1, {{2, {{3, 0}, {4, 0}}}}},
    {"s_group", "[N, ceil(K/group_size)]", 1, {{2, {{3, 0}, {5, 0}}}}},
    {"s_channel", "[N]", 1, {{1, {{3, 0}}}}},
    {"bias", "[N] (zeros when the layer has none)", 1, {{1, {{3, 0}}}}},
    {"out_scale", "[N] (per row; ignored when out_int8 = 0)", 1, {{1, {{3, 0}}}}},
};
inline constexpr PortSpec kOutputs[] = {
    {"y", "[B, L, N]", 1, {{3, {{0, 0}, {1, 0}, {3, 0}}}}},
};
inline constexpr DType kVariants[2 * 8] = {
    DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT16, DType::kFLOAT32, DType::kFLOAT32, DType::kFLOAT32, DType::kINT8,
    DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT16, DType::kFLOAT32, DType::kFLOAT32, DType::kFLOAT32, DType::kFLOAT16,
};
inline constexpr DimSource kOutputDims[1 * kMaxRank] = {
    {0, 0, 0}, {0, 1, 0}, {2, 0, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0},
};
inline constexpr OpSpec kSpec = {kName, kVersion, kModule, inputs::kCount, outputs::kCount, fields::kCount, syms::kCount, 2, kInputs, kOutputs, kFields, kSymbols, kVariants, kOutputDims};
}  // namespace W4A8Linear

// ---- W8A8Linear (quamba_edge/ops/w8a8_linear.py, kernel plugins/kernels/w8a8_linear.cu) ----
namespace W8A8Linear {
inline constexpr char kName[] = "W8A8Linear";
inline constexpr char kVersion[] = "1";
inline constexpr char kModule[] = "w8a8_linear";
namespace inputs {
enum : int32_t { x_q, x_scale, w_q, w_scale, bias, out_scale, kCount };
}
namespace outputs {
enum : int32_t { y, kCount };
}
namespace syms {
enum : int32_t { B, L, K, N, kCount };
}
namespace fields {
enum : int32_t { out_int8, kCount };
}
inline constexpr const char* kSymbols[] = {"B", "L", "K", "N"};
inline constexpr FieldSpec kFields[] = {
    {"out_int8", FieldKind::kINT32, FieldSource::kAttribute, true, 0.0, nullptr, -1},
};
inline constexpr PortSpec kInputs[] = {
    {"x_q", "[B, L, K]", 1, {{3, {{0, 0}, {1, 0}, {2, 0}}}}},
    {"x_scale", "[]", 1, {{0, {}}}},
    {"w_q", "[N, K]", 1, {{2, {{3, 0}, {2, 0}}}}},
    {"w_scale", "[N] (per row)", 1, {{1, {{3, 0}}}}},
    {"bias", "[N] (zeros when the layer has none)", 1, {{1, {{3, 0}}}}},
    {"out_scale", "[N] (per row; ignored when out_int8 = 0)", 1, {{1, {{3, 0}}}}},
};
inline constexpr PortSpec kOutputs[] = {
    {"y", "[B, L, N]", 1, {{3, {{0, 0}, {1, 0}, {3, 0}}}}},
};
inline constexpr DType kVariants[2 * 7] = {
    DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kFLOAT32, DType::kFLOAT32, DType::kINT8,
    DType::kINT8, DType::kFLOAT32, DType::kINT8, DType::kFLOAT32, DType::kFLOAT32, DType::kFLOAT32, DType::kFLOAT16,
};
inline constexpr DimSource kOutputDims[1 * kMaxRank] = {
    {0, 0, 0}, {0, 1, 0}, {2, 0, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0}, {-1, -1, 0},
};
inline constexpr OpSpec kSpec = {kName, kVersion, kModule, inputs::kCount, outputs::kCount, fields::kCount, syms::kCount, 2, kInputs, kOutputs, kFields, kSymbols, kVariants, kOutputDims};
}  // namespace W8A8Linear

// Every op with a plugin, by name.
inline constexpr const OpSpec* kOps[] = {&QuantAddRMSNorm::kSpec, &QuantCausalConv1d::kSpec, &QuantEmbedding::kSpec, &QuantGatedRMSNorm::kSpec, &QuantHadamard::kSpec, &QuantSSD::kSpec, &QuantSelectiveScan::kSpec, &SSD::kSpec, &SelectiveScan::kSpec, &W4A16Linear::kSpec, &W4A8Linear::kSpec, &W8A8Linear::kSpec};
inline constexpr int32_t kNbOps = 12;

// +-1 base matrices H_b of the QuantHadamard sizes b * 2^k (quamba_edge.quant.hadamard.base_hadamard);
// the orthonormal matrix is M = kron(H_b, H_{2^k}) * fl32(1 / sqrt(n)), the kernel's base factor
// M[i * 2^k, j * 2^k] = H_b[i][j] * fl32(1 / sqrt(n)).
inline constexpr int32_t kHadamardBases[] = {12, 40};
inline constexpr int8_t kHadamardBase12[12 * 12] = {
     1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,
    -1,  1,  1, -1,  1,  1,  1, -1, -1, -1,  1, -1,
    -1, -1,  1,  1, -1,  1,  1,  1, -1, -1, -1,  1,
    -1,  1, -1,  1,  1, -1,  1,  1,  1, -1, -1, -1,
    -1, -1,  1, -1,  1,  1, -1,  1,  1,  1, -1, -1,
    -1, -1, -1,  1, -1,  1,  1, -1,  1,  1,  1, -1,
    -1, -1, -1, -1,  1, -1,  1,  1, -1,  1,  1,  1,
    -1,  1, -1, -1, -1,  1, -1,  1,  1, -1,  1,  1,
    -1,  1,  1, -1, -1, -1,  1, -1,  1,  1, -1,  1,
    -1,  1,  1,  1, -1, -1, -1,  1, -1,  1,  1, -1,
    -1, -1,  1,  1,  1, -1, -1, -1,  1, -1,  1,  1,
    -1,  1, -1,  1,  1,  1, -1, -1, -1,  1, -1,  1};
inline constexpr int8_t kHadamardBase40[40 * 40] = {
     1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,
    -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,
    -1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1,
    -1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1, -1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,
    -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,
    -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1,
    -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1,
    -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1,
    -1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1,
    -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,
    -1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1,
    -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,
    -1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1,
    -1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1, -1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,
    -1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1, -1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,
    -1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1, -1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,
    -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,
    -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1,
    -1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1,
    -1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1, -1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,
     1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1,  1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1, -1, -1,  1,  1, -1, -1, -1, -1,  1, -1,  1, -1,  1,  1,  1,  1, -1, -1,  1,
    -1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1,  1,  1, -1, -1,  1,  1, -1, -1, -1, -1,  1, -1,  1, -1,  1,  1,  1,  1, -1, -1,
    -1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1, -1, -1,  1,  1, -1, -1, -1, -1,  1, -1,  1, -1,  1,  1,  1,  1, -1,
    -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1, -1, -1,  1, -1, -1,  1,  1, -1, -1, -1, -1,  1, -1,  1, -1,  1,  1,  1,  1,
    -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1,  1,  1, -1, -1,  1, -1, -1,  1,  1, -1, -1, -1, -1,  1, -1,  1, -1,  1,  1,  1,
    -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1,  1,  1,  1, -1, -1,  1, -1, -1,  1,  1, -1, -1, -1, -1,  1, -1,  1, -1,  1,  1,
    -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1,  1,  1,  1,  1, -1, -1,  1, -1, -1,  1,  1, -1, -1, -1, -1,  1, -1,  1, -1,  1,
    -1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1,  1,  1,  1,  1,  1, -1, -1,  1, -1, -1,  1,  1, -1, -1, -1, -1,  1, -1,  1, -1,
    -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1,  1,  1,  1,  1, -1, -1,  1, -1, -1,  1,  1, -1, -1, -1, -1,  1, -1,  1,
    -1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1,  1,  1, -1,  1,  1,  1,  1, -1, -1,  1, -1, -1,  1,  1, -1, -1, -1, -1,  1, -1,
    -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1,  1,  1,  1,  1, -1, -1,  1, -1, -1,  1,  1, -1, -1, -1, -1,  1,
    -1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1,  1,  1, -1,  1, -1,  1,  1,  1,  1, -1, -1,  1, -1, -1,  1,  1, -1, -1, -1, -1,
    -1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1,  1,  1,  1,  1, -1, -1,  1, -1, -1,  1,  1, -1, -1, -1,
    -1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1,  1, -1, -1,  1, -1,  1, -1,  1,  1,  1,  1, -1, -1,  1, -1, -1,  1,  1, -1, -1,
    -1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1,  1, -1, -1, -1,  1, -1,  1, -1,  1,  1,  1,  1, -1, -1,  1, -1, -1,  1,  1, -1,
    -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1, -1,  1, -1, -1, -1, -1,  1, -1,  1, -1,  1,  1,  1,  1, -1, -1,  1, -1, -1,  1,  1,
    -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1,  1,  1, -1, -1, -1, -1,  1, -1,  1, -1,  1,  1,  1,  1, -1, -1,  1, -1, -1,  1,
    -1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1,  1,  1,  1, -1, -1, -1, -1,  1, -1,  1, -1,  1,  1,  1,  1, -1, -1,  1, -1, -1,
    -1,  1, -1, -1,  1,  1,  1,  1, -1,  1, -1,  1, -1, -1, -1, -1,  1,  1, -1,  1,  1, -1,  1,  1, -1, -1, -1, -1,  1, -1,  1, -1,  1,  1,  1,  1, -1, -1,  1, -1};

}  // namespace gen
}  // namespace quamba_trt
