// quant_causal_conv1d: int8 depthwise causal conv1d + bias + SiLU + int8 requant (prefill and decode).
// Contract: quamba_edge/ops/quant_causal_conv1d.py; ABI: include/quamba_kernels/quant_causal_conv1d.h.
//
// One thread owns VEC consecutive channels (VEC = 4: one 32-bit load/store per token, a warp covers 128
// contiguous bytes of a [B, L, C] row) and kTokens consecutive tokens. It first issues every load it needs
// (the K-1 inputs before its first token, from x or the conv state, and its kTokens inputs) into
// registers, then computes and stores: no load waits behind a store. The block holding the last token
// also writes the new conv state from the same registers. Decode (L = 1) is the same kernel.
#include "quamba_kernels/common.cuh"
#include "quamba_kernels/quant_causal_conv1d.h"

namespace quamba {
namespace {

constexpr int kThreads = 128;
constexpr int kTokens = 16;

template <int VEC>
struct I8Vec;
template <>
struct I8Vec<1> {
  __device__ static void load(const int8_t* p, int (&v)[1]) { v[0] = p[0]; }
  __device__ static void store(int8_t* p, const int8_t (&v)[1]) { p[0] = v[0]; }
};
template <>
struct I8Vec<4> {
  __device__ static void load(const int8_t* p, int (&v)[4]) {
    const char4 c = *reinterpret_cast<const char4*>(p);
    v[0] = c.x; v[1] = c.y; v[2] = c.z; v[3] = c.w;
  }
  __device__ static void store(int8_t* p, const int8_t (&v)[4]) {
    *reinterpret_cast<char4*>(p) = make_char4(v[0], v[1], v[2], v[3]);
  }
};

// kDecode: L == 1 known at compile time, so every load below is straight-line code (one round trip).
template <int K, int VEC, bool kDecode>
__global__ void __launch_bounds__(kThreads)
quamba_causal_conv1d_kernel(const QuambaCausalConv1dParams p) {
  constexpr int TOK = kDecode ? 1 : kTokens;  // tokens per thread
  constexpr int W = K - 1 + TOK;              // inputs this thread reads: times t0-(K-1) .. t0+TOK-1
  const int cg = blockIdx.x * kThreads + threadIdx.x;  // channel group
  const int c0 = cg * VEC;
  if (c0 >= p.channels) return;
  const int b = blockIdx.z;
  const int t0 = kDecode ? 0 : blockIdx.y * kTokens;
  const int L = kDecode ? 1 : p.seqlen;

  const int8_t* x = p.x + b * p.x_stride_b + c0;
  const int8_t* st = p.conv_state ? p.conv_state + (static_cast<int64_t>(b) * p.channels + c0) * (K - 1) : nullptr;

  int xs[W][VEC];
#pragma unroll
  for (int j = 0; j < W; ++j) {
    const int t = t0 - (K - 1) + j;
    if (t >= 0 && t < L) {
      I8Vec<VEC>::load(x + t * p.x_stride_l, xs[j]);
    } else if (t < 0 && st) {
#pragma unroll
      for (int v = 0; v < VEC; ++v) xs[j][v] = st[v * (K - 1) + (K - 1) + t];
    } else {
#pragma unroll
      for (int v = 0; v < VEC; ++v) xs[j][v] = 0;
    }
  }
  int w[VEC][K];
  float alpha[VEC], bias[VEC], oscale[VEC];
#pragma unroll
  for (int v = 0; v < VEC; ++v) {
    const int c = c0 + v;
#pragma unroll
    for (int k = 0; k < K; ++k) w[v][k] = p.w[c * K + k];
    // (x_scale * w_scale) first, as the reference does
    alpha[v] = p.x_scale[c * p.x_scale_stride] * p.w_scale[c * p.w_scale_stride];
    bias[v] = p.bias ? dequant(p.bias[c], p.b_scale[c * p.b_scale_stride]) : 0.0f;
    oscale[v] = p.out_scale[c * p.out_scale_stride];
  }

  // the last tile writes the new state (xx at times L-(K-1) .. L-1, all inside this thread's window);
  // written before y so that an aliased conv_state (L == 1) has already been read above
  if (K > 1 && p.new_conv_state && t0 + TOK >= L) {
    int8_t* o = p.new_conv_state + (static_cast<int64_t>(b) * p.channels + c0) * (K - 1);
    const int first = L - t0;  // window index of time L-(K-1) is first + 0
#pragma unroll
    for (int jj = 0; jj < W; ++jj) {
      const int j = jj - first;
      if (j >= 0 && j < K - 1)
#pragma unroll
        for (int v = 0; v < VEC; ++v) o[v * (K - 1) + j] = static_cast<int8_t>(xs[jj][v]);
    }
  }

  int8_t* y = p.y + b * p.y_stride_b + c0;
#pragma unroll
  for (int i = 0; i < TOK; ++i) {
    const int t = t0 + i;
    if (t >= L) break;
    int8_t out[VEC];
#pragma unroll
    for (int v = 0; v < VEC; ++v) {
      int acc = 0;
#pragma unroll
      for (int k = 0; k < K; ++k) acc += w[v][k] * xs[i + k][v];
      // separate IEEE multiply and add (no FMA contraction), exactly the reference's two fp32 ops
      float yv = __fmul_rn(acc_to_f32(acc), alpha[v]);
      if (p.bias) yv = __fadd_rn(yv, bias[v]);
      if (p.silu) yv = silu(yv);
      out[v] = quantize_int8(yv, oscale[v]);
    }
    I8Vec<VEC>::store(y + t * p.y_stride_l, out);
  }
}

template <int K, int VEC>
cudaError_t launch(const QuambaCausalConv1dParams& p, cudaStream_t stream) {
  const int groups = p.channels / VEC;
  if (p.seqlen == 1) {
    quamba_causal_conv1d_kernel<K, VEC, true><<<dim3(ceil_div(groups, kThreads), 1, p.batch), kThreads, 0, stream>>>(p);
  } else {
    const dim3 grid(ceil_div(groups, kThreads), ceil_div(p.seqlen, kTokens), p.batch);
    quamba_causal_conv1d_kernel<K, VEC, false><<<grid, kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

template <int VEC>
cudaError_t dispatch_k(const QuambaCausalConv1dParams& p, cudaStream_t stream) {
  switch (p.width) {
    case 1: return launch<1, VEC>(p, stream);
    case 2: return launch<2, VEC>(p, stream);
    case 3: return launch<3, VEC>(p, stream);
    case 4: return launch<4, VEC>(p, stream);
    case 5: return launch<5, VEC>(p, stream);
    case 6: return launch<6, VEC>(p, stream);
    case 7: return launch<7, VEC>(p, stream);
    case 8: return launch<8, VEC>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

bool aligned4(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 3u) == 0; }

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_quant_causal_conv1d(const QuambaCausalConv1dParams* p,
                                                             cudaStream_t stream) {
  QUAMBA_CHECK_ARG(p != nullptr);
  QUAMBA_CHECK_ARG(p->batch >= 1 && p->seqlen >= 1 && p->channels >= 1 && p->width >= 1 && p->width <= 8);
  QUAMBA_CHECK_ARG(p->batch <= 65535 && quamba::ceil_div(p->seqlen, quamba::kTokens) <= 65535);
  QUAMBA_CHECK_ARG(p->x && p->w && p->y && p->x_scale && p->w_scale && p->out_scale);
  QUAMBA_CHECK_ARG(!p->bias || p->b_scale);
  const bool vec4 = p->channels % 4 == 0 && quamba::aligned4(p->x) && quamba::aligned4(p->y) &&
                    p->x_stride_b % 4 == 0 && p->x_stride_l % 4 == 0 && p->y_stride_b % 4 == 0 &&
                    p->y_stride_l % 4 == 0;
  return vec4 ? quamba::dispatch_k<4>(*p, stream) : quamba::dispatch_k<1>(*p, stream);
}
