// Helpers of the torch bindings of the float SSM kernels (ssd.cpp, ssd_state_update.cpp, selective_scan.cpp,
// selective_state_update.cpp): fp16 activations, fp32 per-channel parameters, fp32 / fp16 states.
#pragma once

#include "m2_binding_utils.h"
#include "quamba_kernels/dtype_codes.h"

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

#include "quamba_kernels/dtype_codes.h"  // QUAMBA_SSD_STATE_*

namespace quamba_float {

inline const uint16_t* f16(const at::Tensor& t) {
  return reinterpret_cast<const uint16_t*>(t.data_ptr<at::Half>());
}
inline uint16_t* f16_out(at::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr<at::Half>()); }

// An fp16 activation of `shape` whose trailing `dense` dims are packed (e.g. the (H, P) plane of x
// [B, L, H, P]); other strides are free. An input that is not packed so is copied; an output must be.
inline at::Tensor act(const at::Tensor& t, const char* name, at::IntArrayRef shape, int64_t dense, bool output,
                      const at::Tensor& like) {
  quamba_torch::check_tensor(t, name, at::kHalf, static_cast<int64_t>(shape.size()));
  quamba_torch::check_shape(t, name, shape);
  quamba_torch::check_same_device(like, t, name);
  const int64_t nd = t.dim();
  bool packed = true;
  int64_t expect = 1;
  for (int64_t i = nd - 1; i >= nd - dense; --i) {
    if (t.size(i) != 1 && t.stride(i) != expect) packed = false;
    expect *= t.size(i);
  }
  if (packed) return t;
  QM2_CHECK(!output, name, " must have its last ", dense, " dims packed (strides ", t.strides(), ")");
  return t.contiguous();
}

// A float [sizes] device parameter (A, D, delta_bias) as contiguous fp32 (converted / copied when it is not).
inline at::Tensor fp32_param(const at::Tensor& t, const char* name, at::IntArrayRef shape, const at::Tensor& like) {
  TORCH_CHECK(t.is_cuda(), std::string(name) + " must be a CUDA tensor");
  quamba_torch::check_same_device(like, t, name);
  QM2_CHECK(t.is_floating_point(), name, " must be a float tensor, got ", c10::toString(t.scalar_type()));
  int64_t numel = 1;
  for (auto d : shape) numel *= d;
  QM2_CHECK(t.numel() == numel, name, " must have shape ", shape, ", got ", t.sizes());
  if (t.scalar_type() == at::kFloat && t.is_contiguous() && t.sizes() == shape) return t;
  return t.to(at::kFloat).contiguous().view(shape);
}

inline at::Tensor opt_fp32_param(const std::optional<at::Tensor>& t, const char* name, at::IntArrayRef shape,
                                 const at::Tensor& like) {
  return t.has_value() ? fp32_param(*t, name, shape, like) : at::Tensor();
}

// dt / delta of a float dtype as the kernels take it: fp16 or fp32 (QUAMBA_DT_F16 / _F32 in *code), last dim
// packed; other float dtypes are converted to fp32.
inline at::Tensor dt_tensor(const at::Tensor& t, const char* name, at::IntArrayRef shape, const at::Tensor& like,
                            int* code) {
  TORCH_CHECK(t.is_cuda(), std::string(name) + " must be a CUDA tensor");
  quamba_torch::check_same_device(like, t, name);
  QM2_CHECK(t.is_floating_point(), name, " must be a float tensor, got ", c10::toString(t.scalar_type()));
  quamba_torch::check_shape(t, name, shape);
  at::Tensor r = (t.scalar_type() == at::kHalf || t.scalar_type() == at::kFloat) ? t : t.to(at::kFloat);
  if (r.stride(-1) != 1 && r.size(-1) != 1) r = r.contiguous();
  *code = r.scalar_type() == at::kHalf ? QUAMBA_DT_F16 : QUAMBA_DT_F32;
  return r;
}

inline const float* fptr(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// The state pair: state_out fp32 or fp16 contiguous [shape] (QUAMBA_SSD_STATE_F32 / _F16 returned), state_in
// (optional here; callers that need it check has_value) of the same dtype, shape and contiguity.
inline int float_states(const at::Tensor* state_in, const char* in_name, const at::Tensor& state_out,
                        const char* out_name, at::IntArrayRef shape, const at::Tensor& like) {
  TORCH_CHECK(state_out.is_cuda(), std::string(out_name) + " must be a CUDA tensor");
  QM2_CHECK(state_out.scalar_type() == at::kFloat || state_out.scalar_type() == at::kHalf, out_name,
            " must be float32 or float16, got ", c10::toString(state_out.scalar_type()));
  quamba_torch::check_same_device(like, state_out, out_name);
  quamba_torch::check_shape(state_out, out_name, shape);
  QM2_CHECK(state_out.is_contiguous(), out_name, " must be contiguous");
  if (state_in != nullptr) {
    TORCH_CHECK(state_in->is_cuda(), std::string(in_name) + " must be a CUDA tensor");
    quamba_torch::check_same_device(like, *state_in, in_name);
    QM2_CHECK(state_in->scalar_type() == state_out.scalar_type(), in_name, " must have ", out_name, "'s dtype ",
              c10::toString(state_out.scalar_type()), ", got ", c10::toString(state_in->scalar_type()));
    quamba_torch::check_shape(*state_in, in_name, shape);
    QM2_CHECK(state_in->is_contiguous(), in_name, " must be contiguous");
  }
  return state_out.scalar_type() == at::kFloat ? QUAMBA_SSD_STATE_F32 : QUAMBA_SSD_STATE_F16;
}

}  // namespace quamba_float
