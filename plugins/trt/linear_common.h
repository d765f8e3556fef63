// What the three linear plugins (w8a8_linear.cpp, w4a8_linear.cpp, w4a16_linear.cpp) share: the output dtype
// that out_int8 fixes, the int4 weights' packing and group rules of the kernels' C ABI, and their alignment.
#pragma once

#include <cstdint>
#include <string>

#include "plugin_common.h"
#include "quamba_kernels/dtype_codes.h"

namespace quamba_trt {
namespace lin {

// Largest K the kernels take (their C ABI refuses more; int32 sums are exact up to 2^17).
inline constexpr int64_t kMaxK = 65536;

inline std::string check_out_int8(int32_t v) {
  if (v != 0 && v != 1) return cat("out_int8 must be 0 (float16 output) or 1 (int8 output), got ", v);
  return {};
}

// The variants whose output `y` is int8 when out_int8 = 1, float16 (T) when 0. Y appears in no input, so
// only the field can decide it; the record's two variants differ in y alone.
inline uint32_t y_mask(const gen::OpSpec& spec, int y_output, bool out_int8) {
  const int n_io = spec.nb_inputs + spec.nb_outputs;
  const gen::DType want = out_int8 ? gen::DType::kINT8 : gen::DType::kFLOAT16;
  uint32_t m = 0;
  for (int v = 0; v < spec.nb_variants; ++v)
    if (spec.variants[static_cast<size_t>(v) * n_io + spec.nb_inputs + y_output] == want) m |= 1u << v;
  return m;
}

inline int y_code(bool out_int8) { return out_int8 ? QUAMBA_DT_I8 : QUAMBA_DT_F16; }

// The record's group rule (quamba_edge.ops.w4a8_linear.expand_group_scales): group_size <= 0 or >= K is one
// group per row. This is also the `group_size` the kernels take.
inline int64_t effective_group(int64_t group_size, int64_t k) {
  return group_size <= 0 || group_size >= k ? k : group_size;
}
inline int64_t group_count(int64_t group_size, int64_t k) {
  const int64_t g = effective_group(group_size, k);
  return (k + g - 1) / g;
}

// Creation-time limits of the int4 kernels (w4a8_linear.h / w4a16_linear.h): K % 32 == 0, K <= 65536, and
// a group size that is a multiple of 32 or covers the row.
inline std::string check_w4_fields(int64_t k, int64_t group_size) {
  if (k < 32 || k > kMaxK || k % 32 != 0)
    return cat("in_features K = ", k, " is not supported: the int4 kernels need K % 32 == 0 and K <= ", kMaxK);
  const int64_t g = effective_group(group_size, k);
  if (g < k && g % 32 != 0)
    return cat("group_size = ", group_size, " is not supported: the int4 kernels need a multiple of 32, or "
               ">= K (or <= 0) for one group per row");
  return {};
}

// The int4 weight's shape symbols against K = in_features: ceil(K/2) packed bytes and ceil(K/group_size)
// scales per row (unknown symbols, -1 at build time, are skipped).
inline std::string check_w4_shapes(const Bound& b, int sym_k, int sym_bytes, int sym_groups, int64_t k,
                                   int64_t group_size, const char* x_name, const char* scale_name) {
  if (b.known(sym_k) && b[sym_k] != k)
    return cat("input '", x_name, "' has K = ", b[sym_k], " features, but the node's in_features is ", k);
  if (b.known(sym_bytes) && b[sym_bytes] != (k + 1) / 2)
    return cat("input 'qweight' has ", b[sym_bytes], " bytes per row; K = ", k, " packs into ", (k + 1) / 2);
  const int64_t ng = group_count(group_size, k);
  if (b.known(sym_groups) && b[sym_groups] != ng)
    return cat("input '", scale_name, "' has ", b[sym_groups], " scales per row; K = ", k, " with group_size = ",
               group_size, " has ", ng, " groups");
  return {};
}

// The int4 kernels read x and qweight in 16-byte chunks (cp.async): their starts must be 16-byte aligned (the
// row strides are, since K % 32 == 0). TensorRT's buffers normally are; a view at an odd offset is refused
// here rather than by the kernel's bare cudaErrorInvalidValue.
inline std::string check_aligned16(const void* p, const char* name) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0)
    return cat("input '", name, "' at ", p, " is not 16-byte aligned, which the int4 kernels need");
  return {};
}

}  // namespace lin
}  // namespace quamba_trt
