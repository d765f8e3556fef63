// causal_conv1d: float depthwise causal conv1d + bias + SiLU (prefill and decode) of the FP / W4A16 mixers.
// Contract: quamba_edge.models.ssm.causal_conv1d; ABI: include/quamba_kernels/causal_conv1d.h. The float
// sibling of quant_causal_conv1d.cu (same work split; fp16 / fp32 activations instead of int8 codes).
//
// Work: one thread owns VEC consecutive channels (VEC = 4 where x / y rows allow: one 8-byte fp16 or 16-byte
// fp32 access per token) and TOK consecutive tokens (16 for prefill, 1 for decode, where L = 1 is a compile-time
// constant). It issues every load first (the K-1 inputs before its first token, from x or the conv state, and its
// TOK inputs) into fp32 registers, then computes and stores y.
// New state: the threads of token tile 0 (the only ones that read the old state) also load the last K-1 columns of
// concat(state, x^T) with their other loads and write them after every load: the old state is read and the new
// one written by the same thread, in that order, so new_conv_state may be conv_state for every L.
// Numerics: acc = sum_k w[k] x[t+k] (fp32 FMAs, k ascending) + bias (fp32 add), silu (common.cuh: true fp32
// division), one rounding to x's dtype. w / bias / state are read as stored (fp16 or fp32), never rounded first.
#include "quamba_kernels/causal_conv1d.h"
#include "quamba_kernels/common.cuh"

namespace quamba {
namespace {

constexpr int kConvThreads = 128;
constexpr int kConvTokens = 16;

template <typename T, int VEC>
__device__ __forceinline__ void load_vec_f32(const T* p, float (&v)[VEC]) {
  const VecPack<T, VEC> pk = *reinterpret_cast<const VecPack<T, VEC>*>(p);
#pragma unroll
  for (int i = 0; i < VEC; ++i) v[i] = to_f32(pk.v[i]);
}

template <typename T, int VEC>
__device__ __forceinline__ void store_vec_f32(T* p, const float (&v)[VEC]) {
  VecPack<T, VEC> pk;
#pragma unroll
  for (int i = 0; i < VEC; ++i) pk.v[i] = from_f32<T>(v[i]);
  *reinterpret_cast<VecPack<T, VEC>*>(p) = pk;
}

// T: activation type (uint16_t = fp16 bits, or float). kDecode: L == 1.
template <typename T, int K, int VEC, bool kDecode>
__global__ void __launch_bounds__(kConvThreads)
float_causal_conv1d_kernel(const QuambaFloatCausalConv1dParams p) {
  constexpr int TOK = kDecode ? 1 : kConvTokens;  // tokens per thread
  constexpr int W = K - 1 + TOK;                  // window: times t0-(K-1) .. t0+TOK-1
  const int c0 = (blockIdx.x * kConvThreads + threadIdx.x) * VEC;
  if (c0 >= p.channels) return;
  const int b = blockIdx.z;
  const int t0 = kDecode ? 0 : blockIdx.y * kConvTokens;
  const int L = kDecode ? 1 : p.seqlen;
  const bool w16 = p.w_type == QUAMBA_DT_F16, b16 = p.bias_type == QUAMBA_DT_F16;
  const bool s16 = p.state_type == QUAMBA_DT_F16;

  const T* x = static_cast<const T*>(p.x) + b * p.x_stride_b + c0;
  const int64_t st_off = (static_cast<int64_t>(b) * p.channels + c0) * (K - 1);  // element of (b, c0, 0)

  float xs[W][VEC];
#pragma unroll
  for (int j = 0; j < W; ++j) {
    const int t = t0 - (K - 1) + j;
    if (t >= 0 && t < L) {
      load_vec_f32<T, VEC>(x + t * p.x_stride_l, xs[j]);
    } else if (t < 0 && p.conv_state) {
#pragma unroll
      for (int v = 0; v < VEC; ++v) xs[j][v] = load_f16_or_f32(p.conv_state, st_off + v * (K - 1) + (K - 1) + t, s16);
    } else {
#pragma unroll
      for (int v = 0; v < VEC; ++v) xs[j][v] = 0.0f;
    }
  }
  // tile 0 also loads the new state: times L-(K-1) .. L-1 from x, or (L < K-1) the old state's last columns
  const bool writes_state = K > 1 && p.new_conv_state != nullptr && t0 == 0;
  float tail[K > 1 ? K - 1 : 1][VEC];
  if (writes_state) {
#pragma unroll
    for (int j = 0; j < K - 1; ++j) {
      const int t = L - (K - 1) + j;
      if (t >= 0) {
        load_vec_f32<T, VEC>(x + t * p.x_stride_l, tail[j]);
      } else if (p.conv_state) {
#pragma unroll
        for (int v = 0; v < VEC; ++v) tail[j][v] = load_f16_or_f32(p.conv_state, st_off + v * (K - 1) + (K - 1) + t, s16);
      } else {
#pragma unroll
        for (int v = 0; v < VEC; ++v) tail[j][v] = 0.0f;
      }
    }
  }
  float w[VEC][K], bias[VEC];
#pragma unroll
  for (int v = 0; v < VEC; ++v) {
#pragma unroll
    for (int k = 0; k < K; ++k) w[v][k] = load_f16_or_f32(p.w, static_cast<int64_t>(c0 + v) * K + k, w16);
    bias[v] = p.bias ? load_f16_or_f32(p.bias, c0 + v, b16) : 0.0f;
  }

  // every read of the old state is above: an aliased new state is written only now
  if (writes_state) {
    T* o = static_cast<T*>(p.new_conv_state) + st_off;
#pragma unroll
    for (int j = 0; j < K - 1; ++j) {
#pragma unroll
      for (int v = 0; v < VEC; ++v) o[v * (K - 1) + j] = from_f32<T>(tail[j][v]);
    }
  }

  T* y = static_cast<T*>(p.y) + b * p.y_stride_b + c0;
#pragma unroll
  for (int i = 0; i < TOK; ++i) {
    const int t = t0 + i;
    if (t >= L) break;
    float out[VEC];
#pragma unroll
    for (int v = 0; v < VEC; ++v) {
      float acc = 0.0f;
#pragma unroll
      for (int k = 0; k < K; ++k) acc = fmaf(w[v][k], xs[i + k][v], acc);
      if (p.bias) acc = __fadd_rn(acc, bias[v]);
      out[v] = p.silu ? silu(acc) : acc;
    }
    store_vec_f32<T, VEC>(y + t * p.y_stride_l, out);
  }
}

template <typename T, int K, int VEC>
cudaError_t launch_conv(const QuambaFloatCausalConv1dParams& p, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>(ceil_div(ceil_div(p.channels, VEC), kConvThreads));
  if (p.seqlen == 1) {
    float_causal_conv1d_kernel<T, K, VEC, true><<<dim3(blocks, 1, p.batch), kConvThreads, 0, stream>>>(p);
  } else {
    const dim3 grid(blocks, static_cast<unsigned>(ceil_div(p.seqlen, kConvTokens)), p.batch);
    float_causal_conv1d_kernel<T, K, VEC, false><<<grid, kConvThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

template <typename T, int VEC>
cudaError_t conv_width(const QuambaFloatCausalConv1dParams& p, cudaStream_t stream) {
  switch (p.width) {
    case 1: return launch_conv<T, 1, VEC>(p, stream);
    case 2: return launch_conv<T, 2, VEC>(p, stream);
    case 3: return launch_conv<T, 3, VEC>(p, stream);
    case 4: return launch_conv<T, 4, VEC>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

// VEC = 4 when every row of x / y starts on a 4-element boundary (4 * element bytes aligned)
template <typename T>
cudaError_t conv_dtype(const QuambaFloatCausalConv1dParams& p, cudaStream_t stream) {
  const uintptr_t align = 4 * sizeof(T) - 1;
  const bool vec4 = p.channels % 4 == 0 && (reinterpret_cast<uintptr_t>(p.x) & align) == 0 &&
                    (reinterpret_cast<uintptr_t>(p.y) & align) == 0 && p.x_stride_b % 4 == 0 &&
                    p.x_stride_l % 4 == 0 && p.y_stride_b % 4 == 0 && p.y_stride_l % 4 == 0;
  return vec4 ? conv_width<T, 4>(p, stream) : conv_width<T, 1>(p, stream);
}

bool float_code(int t) { return t == QUAMBA_DT_F16 || t == QUAMBA_DT_F32; }

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_causal_conv1d(const QuambaFloatCausalConv1dParams* p, cudaStream_t stream) {
  QUAMBA_CHECK_ARG(p != nullptr);
  QUAMBA_CHECK_ARG(p->batch >= 1 && p->seqlen >= 1 && p->channels >= 1 && p->width >= 1 && p->width <= 4);
  QUAMBA_CHECK_ARG(p->batch <= 65535 && quamba::ceil_div(p->seqlen, quamba::kConvTokens) <= 65535);
  QUAMBA_CHECK_ARG(p->x && p->w && p->y);
  QUAMBA_CHECK_ARG(quamba::float_code(p->x_type) && quamba::float_code(p->w_type));
  QUAMBA_CHECK_ARG(!p->bias || quamba::float_code(p->bias_type));
  QUAMBA_CHECK_ARG(!p->conv_state || quamba::float_code(p->state_type));
  // in place: the state is rewritten in x's dtype
  QUAMBA_CHECK_ARG(!p->conv_state || p->conv_state != p->new_conv_state || p->state_type == p->x_type);
  return p->x_type == QUAMBA_DT_F16 ? quamba::conv_dtype<uint16_t>(*p, stream) : quamba::conv_dtype<float>(*p, stream);
}
