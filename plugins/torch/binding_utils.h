// Helpers shared by the torch bindings in plugins/torch/*.cpp (header only: each .cpp stays independent).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace quamba_torch {

inline void check_tensor(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t dim) {
  TORCH_CHECK(t.is_cuda(), std::string(name) + " must be a CUDA tensor");
  TORCH_CHECK(t.scalar_type() == dtype, std::string(name) + " must be " + c10::toString(dtype) + ", got " +
                                            c10::toString(t.scalar_type()));
  TORCH_CHECK(dim < 0 || t.dim() == dim,
              std::string(name) + " must have " + std::to_string(dim) + " dims, got " + std::to_string(t.dim()));
}

inline void check_same_device(const at::Tensor& a, const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device() == a.device(), std::string(name) + " is on " + t.device().str() + ", expected " +
                                            a.device().str());
}

inline std::string shape_str(c10::IntArrayRef s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

inline void check_shape(const at::Tensor& t, const char* name, c10::IntArrayRef want) {
  const c10::IntArrayRef got = t.sizes();
  bool ok = got.size() == want.size();
  for (size_t i = 0; ok && i < want.size(); ++i) ok = got[i] == want[i];
  TORCH_CHECK(ok, std::string(name) + " must have shape " + shape_str(want) + ", got " + shape_str(got));
}

// braced shapes ({B, L, C}) are copied into a vector that outlives the check
inline void check_shape(const at::Tensor& t, const char* name, std::initializer_list<int64_t> shape) {
  const std::vector<int64_t> want(shape);
  check_shape(t, name, c10::IntArrayRef(want));
}

// Error messages as ONE std::string: with torch 2.11 on the GPU machine, a TORCH_CHECK message that streams a
// number or a shape (`TORCH_CHECK(c, "n = ", n)`, `..., t.sizes()`) segfaults while it is formatted (seen
// 2026-11-22; plain strings are fine). Write TORCH_CHECK(cond, quamba_torch::msg("n = ", n, " shape ", t.sizes())).
inline std::string piece(const char* s) { return s; }
inline std::string piece(const std::string& s) { return s; }
inline std::string piece(c10::IntArrayRef s) { return shape_str(s); }
template <class T, std::enable_if_t<std::is_arithmetic_v<T>, int> = 0>
inline std::string piece(T v) { return std::to_string(v); }
template <class... A>
inline std::string msg(const A&... a) {
  std::string r;
  ((r += piece(a)), ...);
  return r;
}

// An optional int8 per-channel parameter [C] (D, dt_bias) that comes with its scale.
inline void check_channel_param(const std::optional<at::Tensor>& t, const char* name, int64_t C, bool has_scale,
                                const char* scale_name) {
  if (!t.has_value()) return;
  check_tensor(*t, name, at::kChar, 1);
  TORCH_CHECK(t->size(0) == C && t->is_contiguous() && has_scale,
              msg(name, " must be [E] with ", scale_name));
}

inline const int8_t* i8(const at::Tensor& t) { return t.data_ptr<int8_t>(); }
inline const int8_t* i8(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<int8_t>() : nullptr;
}

inline void check_cuda(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, std::string(op) + " failed: " + cudaGetErrorString(err));
}

inline cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

}  // namespace quamba_torch
