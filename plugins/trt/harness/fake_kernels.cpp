// A recording stand-in for the kernels' C ABI (and the few CUDA runtime calls the plugins make), linked instead
// of the real kernels into libquamba_trt_plugins_fake.so for CPU tests: each call appends one line
// "<call> key=value ..." (pointers in hex, floats as exact hex floats) to a log that qfake_log() returns, so a
// test can check what enqueue passes to each kernel -- dispatch, pointers, strides, scales -- without a GPU.
// Device memory is host memory here (cudaMalloc = malloc), so the Hadamard base factor can be read back.
// Nothing is computed; tensor pointers are never dereferenced.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "quamba_kernels/quant_add_rms_norm.h"
#include "quamba_kernels/quant_causal_conv1d.h"
#include "quamba_kernels/quant_embedding.h"
#include "quamba_kernels/quant_gated_rms_norm.h"
#include "quamba_kernels/quant_hadamard.h"
#include "quamba_kernels/quant_selective_scan.h"
#include "quamba_kernels/quant_selective_state_update.h"
#include "quamba_kernels/quant_ssd.h"
#include "quamba_kernels/quant_ssd_state_update.h"
#include "quamba_kernels/selective_scan.h"
#include "quamba_kernels/selective_state_update.h"
#include "quamba_kernels/ssd.h"
#include "quamba_kernels/ssd_state_update.h"
#include "quamba_kernels/w4a16_linear.h"
#include "quamba_kernels/w4a8_linear.h"
#include "quamba_kernels/w8a8_linear.h"
#include "state_convert.h"

#define FAKE_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

std::mutex g_mu;
std::string g_log;
std::string g_snapshot;

class Line {
 public:
  explicit Line(const char* call) : s_(call) {}
  ~Line() {
    std::lock_guard<std::mutex> g(g_mu);
    g_log += s_ + "\n";
  }
  Line& i(const char* k, long long v) { return put(k, std::to_string(v)); }
  Line& p(const char* k, const void* v) {
    char b[32];
    std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(v)));
    return put(k, b);
  }
  Line& f(const char* k, float v) {
    char b[48];
    std::snprintf(b, sizeof b, "%a", static_cast<double>(v));
    return put(k, b);
  }
  Line& put(const char* k, const std::string& v) {
    s_ += std::string(" ") + k + "=" + v;
    return *this;
  }

 private:
  std::string s_;
};

}  // namespace

FAKE_EXPORT const char* qfake_log() {
  std::lock_guard<std::mutex> g(g_mu);
  g_snapshot = g_log;
  return g_snapshot.c_str();
}

FAKE_EXPORT void qfake_clear() {
  std::lock_guard<std::mutex> g(g_mu);
  g_log.clear();
}

// ---- the kernels' C ABI ------------------------------------------------------------------------------------

FAKE_EXPORT cudaError_t quamba_quant_add_rms_norm(const QuambaQuantAddRMSNormParams* p, cudaStream_t) {
  Line("quant_add_rms_norm").i("rows", p->rows).i("dim", p->dim).i("hidden_dtype", p->hidden_dtype)
      .p("hidden", p->hidden).i("hidden_row_stride", p->hidden_row_stride).i("residual_dtype", p->residual_dtype)
      .p("residual", p->residual).i("residual_row_stride", p->residual_row_stride).p("weight", p->weight)
      .f("eps", p->eps).i("out_int8", p->out_int8).f("out_scale", p->out_scale).p("y", p->y)
      .i("y_row_stride", p->y_row_stride).i("residual_out_dtype", p->residual_out_dtype)
      .p("residual_out", p->residual_out).i("residual_out_row_stride", p->residual_out_row_stride);
  return cudaSuccess;
}

FAKE_EXPORT cudaError_t quamba_quant_causal_conv1d(const QuambaCausalConv1dParams* p, cudaStream_t) {
  Line("quant_causal_conv1d").i("batch", p->batch).i("seqlen", p->seqlen).i("channels", p->channels)
      .i("width", p->width).p("x", p->x).i("x_stride_b", p->x_stride_b).i("x_stride_l", p->x_stride_l)
      .p("w", p->w).p("bias", p->bias).p("x_scale", p->x_scale).i("x_scale_stride", p->x_scale_stride)
      .p("w_scale", p->w_scale).i("w_scale_stride", p->w_scale_stride).p("b_scale", p->b_scale)
      .i("b_scale_stride", p->b_scale_stride).p("out_scale", p->out_scale).i("out_scale_stride", p->out_scale_stride)
      .p("conv_state", p->conv_state).i("silu", p->silu).p("y", p->y).i("y_stride_b", p->y_stride_b)
      .i("y_stride_l", p->y_stride_l).p("new_conv_state", p->new_conv_state);
  return cudaSuccess;
}

FAKE_EXPORT cudaError_t quamba_quant_embedding(const QuambaQuantEmbeddingParams* p, cudaStream_t) {
  Line("quant_embedding").i("tokens", p->tokens).i("vocab", p->vocab).i("dim", p->dim).i("bits", p->bits)
      .p("ids", p->ids).i("ids_int64", p->ids_int64).p("table", p->table).i("table_row_stride", p->table_row_stride)
      .p("row_scale", p->row_scale).i("out_dtype", p->out_dtype).p("out", p->out)
      .i("out_row_stride", p->out_row_stride);
  return cudaSuccess;
}

FAKE_EXPORT cudaError_t quamba_quant_gated_rms_norm(const QuambaQuantGatedRMSNormParams* p, cudaStream_t) {
  Line("quant_gated_rms_norm").i("rows", p->rows).i("dim", p->dim).i("group_size", p->group_size)
      .i("y_dtype", p->y_dtype).p("y", p->y).i("y_row_stride", p->y_row_stride).p("z", p->z)
      .i("z_row_stride", p->z_row_stride).f("z_scale", p->z_scale).p("weight", p->weight).f("eps", p->eps)
      .i("norm_before_gate", p->norm_before_gate).p("out", p->out).i("out_row_stride", p->out_row_stride);
  return cudaSuccess;
}

FAKE_EXPORT cudaError_t quamba_quant_hadamard(const QuambaQuantHadamardParams* p, cudaStream_t) {
  std::string base;
  for (int k = 0; p->base_matrix != nullptr && k < p->base * p->base; ++k) {
    char b[48];
    std::snprintf(b, sizeof b, "%s%a", k ? "," : "", static_cast<double>(p->base_matrix[k]));
    base += b;
  }
  Line("quant_hadamard").i("rows", p->rows).i("n", p->n).i("base", p->base).put("base_matrix", base)
      .i("x_dtype", p->x_dtype).p("x", p->x).i("x_row_stride", p->x_row_stride).f("out_scale", p->out_scale)
      .p("y", p->y).i("y_row_stride", p->y_row_stride);
  return cudaSuccess;
}

FAKE_EXPORT cudaError_t quamba_quant_selective_scan(const QuambaSelectiveScanParams* p, cudaStream_t) {
  Line("quant_selective_scan").i("batch", p->batch).i("seqlen", p->seqlen).i("dim", p->dim).i("dstate", p->dstate)
      .p("u", p->u).i("u_stride_b", p->u_stride_b).i("u_stride_l", p->u_stride_l).p("dt", p->dt)
      .i("dt_stride_b", p->dt_stride_b).i("dt_stride_l", p->dt_stride_l).p("A_log", p->A_log).p("Bm", p->Bm)
      .i("B_stride_b", p->B_stride_b).i("B_stride_l", p->B_stride_l).p("Cm", p->Cm).i("C_stride_b", p->C_stride_b)
      .i("C_stride_l", p->C_stride_l).p("D", p->D).p("z", p->z).i("z_stride_b", p->z_stride_b)
      .i("z_stride_l", p->z_stride_l).p("dt_bias", p->dt_bias).f("u_scale", p->u_scale).f("dt_scale", p->dt_scale)
      .f("A_log_scale", p->A_log_scale).f("B_scale", p->B_scale).f("C_scale", p->C_scale).f("D_scale", p->D_scale)
      .f("z_scale", p->z_scale).f("dt_bias_scale", p->dt_bias_scale).i("state_is_int8", p->state_is_int8)
      .f("state_scale", p->state_scale).p("state_in", p->state_in).p("state_out", p->state_out).p("y", p->y)
      .i("y_stride_b", p->y_stride_b).i("y_stride_l", p->y_stride_l);
  return cudaSuccess;
}

FAKE_EXPORT cudaError_t quamba_quant_selective_state_update(const QuambaSelectiveStateUpdateParams* p, cudaStream_t) {
  Line("quant_selective_state_update").i("batch", p->batch).i("dim", p->dim).i("dstate", p->dstate).p("u", p->u)
      .i("u_stride_b", p->u_stride_b).p("dt", p->dt).i("dt_stride_b", p->dt_stride_b).p("A_log", p->A_log)
      .p("Bm", p->Bm).i("B_stride_b", p->B_stride_b).p("Cm", p->Cm).i("C_stride_b", p->C_stride_b).p("D", p->D)
      .p("z", p->z).i("z_stride_b", p->z_stride_b).p("dt_bias", p->dt_bias).f("u_scale", p->u_scale)
      .f("dt_scale", p->dt_scale).f("A_log_scale", p->A_log_scale).f("B_scale", p->B_scale)
      .f("C_scale", p->C_scale).f("D_scale", p->D_scale).f("z_scale", p->z_scale)
      .f("dt_bias_scale", p->dt_bias_scale).i("state_is_int8", p->state_is_int8).f("state_scale", p->state_scale)
      .p("state_in", p->state).p("state_out", p->new_state).p("y", p->y).i("y_stride_b", p->y_stride_b);
  return cudaSuccess;
}

template <class P>
static Line& ssd_common(Line& l, const P* p) {
  return l.i("batch", p->batch).i("nheads", p->nheads).i("headdim", p->headdim).i("ngroups", p->ngroups)
      .i("dstate", p->dstate).p("x", p->x).i("x_batch_stride", p->x_batch_stride).p("x_scale", p->x_scale)
      .p("dt", p->dt).i("dt_batch_stride", p->dt_batch_stride).f("dt_scale", p->dt_scale).p("dt_bias", p->dt_bias)
      .p("A_log", p->A_log).f("A_log_scale", p->A_log_scale).p("B", p->B).i("B_batch_stride", p->B_batch_stride)
      .p("B_scale", p->B_scale).p("C", p->C).i("C_batch_stride", p->C_batch_stride).p("C_scale", p->C_scale)
      .p("D", p->D).f("D_scale", p->D_scale).f("dt_limit_lo", p->dt_limit_lo).f("dt_limit_hi", p->dt_limit_hi)
      .i("state_type", p->state_type).p("state_in", p->state_in).p("state_out", p->state_out)
      .p("state_scale", p->state_scale).p("state_scale_row", p->state_scale_row).p("y", p->y)
      .i("y_batch_stride", p->y_batch_stride);
}

FAKE_EXPORT cudaError_t quamba_quant_ssd(const QuambaQuantSSDParams* p, cudaStream_t) {
  Line l("quant_ssd");
  ssd_common(l, p).i("seqlen", p->seqlen).i("chunk_size", p->chunk_size).i("x_seq_stride", p->x_seq_stride)
      .i("dt_seq_stride", p->dt_seq_stride).i("B_seq_stride", p->B_seq_stride).i("C_seq_stride", p->C_seq_stride)
      .i("y_seq_stride", p->y_seq_stride).i("p_tile", p->p_tile).i("staging", p->staging);
  return cudaSuccess;
}

FAKE_EXPORT cudaError_t quamba_quant_ssd_state_update(const QuambaQuantSSDStateUpdateParams* p, cudaStream_t) {
  Line l("quant_ssd_state_update");
  ssd_common(l, p);
  return cudaSuccess;
}

template <class P>
static Line& float_ssd_common(Line& l, const P* p) {
  return l.i("batch", p->batch).i("nheads", p->nheads).i("headdim", p->headdim).i("ngroups", p->ngroups)
      .i("dstate", p->dstate).p("x", p->x).i("x_batch_stride", p->x_batch_stride).p("dt", p->dt)
      .i("dt_type", p->dt_type).i("dt_batch_stride", p->dt_batch_stride).p("A", p->A).p("B", p->B)
      .i("B_batch_stride", p->B_batch_stride).p("C", p->C).i("C_batch_stride", p->C_batch_stride).p("D", p->D)
      .i("state_type", p->state_type).p("state_in", p->state_in).p("state_out", p->state_out).p("y", p->y)
      .i("y_batch_stride", p->y_batch_stride);
}

FAKE_EXPORT cudaError_t quamba_ssd(const QuambaSSDParams* p, cudaStream_t) {
  Line l("ssd");
  float_ssd_common(l, p).i("seqlen", p->seqlen).i("chunk_size", p->chunk_size).i("x_seq_stride", p->x_seq_stride)
      .i("dt_seq_stride", p->dt_seq_stride).i("B_seq_stride", p->B_seq_stride).i("C_seq_stride", p->C_seq_stride)
      .i("y_seq_stride", p->y_seq_stride);
  return cudaSuccess;
}

FAKE_EXPORT cudaError_t quamba_ssd_state_update(const QuambaSSDStateUpdateParams* p, cudaStream_t) {
  Line l("ssd_state_update");
  float_ssd_common(l, p);
  return cudaSuccess;
}

template <class P>
static Line& float_scan_common(Line& l, const P* p) {
  return l.i("batch", p->batch).i("dim", p->dim).i("dstate", p->dstate).p("u", p->u).i("u_stride_b", p->u_stride_b)
      .p("delta", p->delta).i("delta_stride_b", p->delta_stride_b).p("A", p->A).p("Bm", p->Bm)
      .i("B_stride_b", p->B_stride_b).p("Cm", p->Cm).i("C_stride_b", p->C_stride_b).p("D", p->D).p("z", p->z)
      .i("z_stride_b", p->z_stride_b).p("delta_bias", p->delta_bias).i("delta_softplus", p->delta_softplus)
      .i("state_type", p->state_type).p("state_in", p->state_in).p("state_out", p->state_out).p("y", p->y)
      .i("y_stride_b", p->y_stride_b);
}

FAKE_EXPORT cudaError_t quamba_selective_scan(const QuambaFloatSelectiveScanParams* p, cudaStream_t) {
  Line l("selective_scan");
  float_scan_common(l, p).i("seqlen", p->seqlen).i("u_stride_l", p->u_stride_l).i("delta_stride_l", p->delta_stride_l)
      .i("B_stride_l", p->B_stride_l).i("C_stride_l", p->C_stride_l).i("z_stride_l", p->z_stride_l)
      .i("y_stride_l", p->y_stride_l);
  return cudaSuccess;
}

FAKE_EXPORT cudaError_t quamba_selective_state_update(const QuambaFloatSelectiveStateUpdateParams* p, cudaStream_t) {
  Line l("selective_state_update");
  float_scan_common(l, p);
  return cudaSuccess;
}

FAKE_EXPORT cudaError_t quamba_w8a8_linear(const QuambaW8A8LinearParams* p, cudaStream_t) {
  Line("w8a8_linear").i("m", p->m).i("n", p->n).i("k", p->k).p("x", p->x).i("x_row_stride", p->x_row_stride)
      .p("x_scale", p->x_scale).p("w", p->w).i("w_row_stride", p->w_row_stride).p("w_scale", p->w_scale)
      .i("w_scale_stride", p->w_scale_stride).p("bias", p->bias).p("out_scale", p->out_scale)
      .i("out_scale_stride", p->out_scale_stride).i("y_dtype", p->y_dtype).p("y", p->y)
      .i("y_row_stride", p->y_row_stride);
  return cudaSuccess;
}

FAKE_EXPORT cudaError_t quamba_w4a8_linear(const QuambaW4A8LinearParams* p, cudaStream_t) {
  Line("w4a8_linear").i("m", p->m).i("n", p->n).i("k", p->k).p("x", p->x).i("x_row_stride", p->x_row_stride)
      .p("x_scale", p->x_scale).p("qweight", p->qweight).i("w_row_stride", p->w_row_stride).p("s_group", p->s_group)
      .i("s_group_row_stride", p->s_group_row_stride).i("group_size", p->group_size).p("s_channel", p->s_channel)
      .p("bias", p->bias).p("out_scale", p->out_scale).i("out_scale_stride", p->out_scale_stride)
      .i("y_dtype", p->y_dtype).p("y", p->y).i("y_row_stride", p->y_row_stride);
  return cudaSuccess;
}

FAKE_EXPORT cudaError_t quamba_w4a16_linear(const QuambaW4A16LinearParams* p, cudaStream_t) {
  Line("w4a16_linear").i("m", p->m).i("n", p->n).i("k", p->k).p("x", p->x).i("x_row_stride", p->x_row_stride)
      .p("qweight", p->qweight).i("w_row_stride", p->w_row_stride).p("scale", p->scale)
      .i("scale_row_stride", p->scale_row_stride).i("group_size", p->group_size).p("bias", p->bias)
      .i("y_dtype", p->y_dtype).p("y", p->y).i("y_row_stride", p->y_row_stride);
  return cudaSuccess;
}

namespace quamba_trt {
cudaError_t half_to_float(const uint16_t* in, float* out, int64_t n, cudaStream_t) {
  Line("half_to_float").p("in", in).p("out", out).i("n", n);
  return cudaSuccess;
}
cudaError_t float_to_half(const float* in, uint16_t* out, int64_t n, cudaStream_t) {
  Line("float_to_half").p("in", in).p("out", out).i("n", n);
  return cudaSuccess;
}
}  // namespace quamba_trt

// ---- the CUDA runtime calls the plugins make (device memory = host memory) ---------------------------------

FAKE_EXPORT cudaError_t cudaMalloc(void** ptr, size_t size) {
  *ptr = std::malloc(size ? size : 1);
  Line("cudaMalloc").i("bytes", static_cast<long long>(size));
  return *ptr ? cudaSuccess : cudaErrorMemoryAllocation;
}

FAKE_EXPORT cudaError_t cudaFree(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}

FAKE_EXPORT cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

FAKE_EXPORT cudaError_t cudaStreamIsCapturing(cudaStream_t, cudaStreamCaptureStatus* status) {
  *status = cudaStreamCaptureStatusNone;
  return cudaSuccess;
}

FAKE_EXPORT cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  if (kind == cudaMemcpyHostToDevice) std::memcpy(dst, src, count);  // into fake (host) device memory
  Line("cudaMemcpy").p("dst", dst).p("src", src).i("bytes", static_cast<long long>(count)).i("kind", kind);
  return cudaSuccess;
}

FAKE_EXPORT cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t) {
  if (kind == cudaMemcpyHostToDevice) std::memcpy(dst, src, count);
  Line("cudaMemcpyAsync").p("dst", dst).p("src", src).i("bytes", static_cast<long long>(count)).i("kind", kind);
  return cudaSuccess;
}

FAKE_EXPORT const char* cudaGetErrorName(cudaError_t) { return "fakeError"; }
FAKE_EXPORT const char* cudaGetErrorString(cudaError_t) { return "error of the fake CUDA runtime"; }
