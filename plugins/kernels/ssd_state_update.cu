// ssd_state_update: one decode token of the float Mamba2 recurrence, fp16 x / B / C in, fp16 y out, fp16 or
// fp32 dt, fp32 math, fp32 or fp16 state (in place allowed). Contract: quamba_edge/ops/ssd.py at L = 1
// (reference quamba_edge.models.ssm.ssd_state_update); ABI: include/quamba_kernels/ssd_state_update.h.
// The float sibling of quant_ssd_state_update.cu ("dequantize int8 x scale" -> "load fp16").
//
// Supported: any batch (batch * ceil(headdim / channels per block) < 2^31), nheads 1..65535 with
// nheads % ngroups == 0, any headdim, d_state 1..256 (Mamba2: 16..256, multiples of 16), batch strides free
// (any value, in elements), D optional (NULL), state_out may be state_in (each element is read and written by
// one thread). Returns cudaErrorInvalidValue for a NULL params / x / dt / A / B / C / state_in / state_out / y
// pointer, a non-positive size, nheads % ngroups != 0, nheads > 65535, nheads * headdim > INT32_MAX, a dt_type
// other than QUAMBA_DT_F16 / _F32, a state_type other than QUAMBA_SSD_STATE_F32 / _F16;
// cudaErrorNotSupported for d_state > 256; otherwise the launch error.
//
// Memory bound (the state is read once and written once) and at batch 1 latency bound, so this follows
// quant_ssd_state_update's batch-1 kernel (ssd_update_row) for every batch: no shared memory, no barrier.
// - A thread owns one batch row b of one channel (h, p) and NC chunks of 4 states; the LN lanes of a channel
//   interleave their chunks (chunk j of lane l: n = (j * LN + l) * 4 .. +3), so every warp-wide access of the
//   state and of B / C is contiguous; the lanes sum their y partials with shuffles.
// - Every global load is issued first (state chunks, B / C chunks of the row's group, dt, A, x, D); each
//   thread then computes exp(dt A) itself (the same warp instructions as one thread doing it for the block,
//   but no barrier: each warp starts as soon as its own loads land). B / C rows are shared by the H / G heads
//   of a group and the P channels of a head, so they come from L1 / L2.
// - Grid: x = batch row x channel block (256 threads, 256 / LN channels), y = head; group g = h / (H / G) by
//   a multiply-high (m2::group_of).
// - Vector accesses (template VEC: 16-byte fp32 / 8-byte fp16 state chunks, 8-byte B / C chunks) when
//   d_state % 4 == 0, state_in / state_out are 16-byte (fp32) or 8-byte (fp16) aligned and B / C 8-byte
//   aligned with batch strides % 4 == 0; otherwise element accesses (any d_state, any alignment).
// Numerics: fp32 as the reference: dA = expf(dt A); S = S_prev dA + (dt x) B with a separate fp32 multiply and
// add; y = sum_n S C (fp32 FMAs, then shuffles: a different summation order than the reference's matmul)
// + D x (one FMA), rounded to fp16. A fp16 state is rounded to nearest even after the update.
#include "quamba_kernels/common.cuh"
#include "quamba_kernels/mamba2_common.cuh"
#include "quamba_kernels/ssd_state_update.h"

namespace quamba {
namespace {

constexpr int kThreads = 256;

template <int ST, int LN, int NC, bool VEC>
__global__ void __launch_bounds__(kThreads)
ssd_state_update_f16_kernel(const QuambaSSDStateUpdateParams p, const uint32_t gdiv, const int pblocks) {
  static_assert(LN >= 1 && LN <= 32 && (LN & (LN - 1)) == 0 && NC >= 1, "layout");
  constexpr int CPB = kThreads / LN;  // channels per block
  const int tid = threadIdx.x, ln = tid % LN;
  const int b = blockIdx.x / pblocks;
  const int pb = blockIdx.x - b * pblocks;
  const int h = blockIdx.y, g = m2::group_of(h, gdiv);
  const int P = p.headdim, N = p.dstate;
  const int pch = pb * CPB + tid / LN;
  const bool valid = pch < P;  // invalid lanes work on channel 0 and store nothing
  const int ch = h * P + (valid ? pch : 0);
  const int64_t st = (static_cast<int64_t>(b) * p.nheads * P + ch) * N;  // state row of (b, h, p)

  // ---- every global load first
  const uint16_t* Bp = p.B + b * p.B_batch_stride + static_cast<int64_t>(g) * N;
  const uint16_t* Cp = p.C + b * p.C_batch_stride + static_cast<int64_t>(g) * N;
  m2::StateRegs<ST, 4> s[NC];
  F16Regs<4> bq[NC], cq[NC];
#pragma unroll
  for (int j = 0; j < NC; ++j) {
    const int n = (j * LN + ln) * 4;
    const int nv = max(0, min(4, N - n));  // states of the chunk inside N
    if constexpr (VEC) {
      if (nv > 0) {
        s[j].load_vec(p.state_in, st + n);
        bq[j].load_vec(Bp + n);
        cq[j].load_vec(Cp + n);
      } else {
        s[j].zero();
        bq[j].zero();
        cq[j].zero();
      }
    } else {
      s[j].load_n(p.state_in, st + n, nv);
      bq[j].load_n(Bp + n, nv);
      cq[j].load_n(Cp + n, nv);
    }
  }
  const float dt = m2::load_float(p.dt, b * p.dt_batch_stride + h, p.dt_type);
  const float A = p.A[h];
  const float x = f16_bits_to_f32(p.x[b * p.x_batch_stride + ch]);
  const float Dv = (ln == 0 && p.D != nullptr) ? p.D[h] : 0.0f;

  // S = S_prev * exp(dt A) + (dt x) B (separate fp32 multiply and add, as the reference)
  const float dA = expf(dt * A);
  const float dx = dt * x;
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  float v[NC][4];
#pragma unroll
  for (int j = 0; j < NC; ++j) {
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      // past N: S_prev = B = C = 0, the term adds exactly 0 (finite inputs)
      v[j][k] = __fadd_rn(__fmul_rn(s[j].get(k), dA), __fmul_rn(dx, bq[j].get(k)));
      acc[k] = fmaf(v[j][k], cq[j].get(k), acc[k]);
    }
  }
  const float y = m2::group_sum<LN>((acc[0] + acc[1]) + (acc[2] + acc[3]));

  if (!valid) return;  // after the last shuffle
  if (ln == 0) p.y[b * p.y_batch_stride + ch] = f32_to_f16_bits(fmaf(Dv, x, y));
#pragma unroll
  for (int j = 0; j < NC; ++j) {
    const int n = (j * LN + ln) * 4;
    const int nv = max(0, min(4, N - n));
    if (nv > 0) m2::store_states<ST, 4, VEC>(p.state_out, st + n, v[j], nv);
  }
}

template <int ST, int LN, int NC, bool VEC>
cudaError_t launch(const QuambaSSDStateUpdateParams& p, cudaStream_t stream) {
  constexpr int CPB = kThreads / LN;
  const int pblocks = ceil_div(p.headdim, CPB);
  QUAMBA_CHECK_ARG(static_cast<int64_t>(pblocks) * p.batch <= INT32_MAX);
  const uint32_t gdiv = m2::group_magic(p.nheads / p.ngroups);
  const dim3 grid(static_cast<unsigned>(pblocks) * static_cast<unsigned>(p.batch),
                  static_cast<unsigned>(p.nheads));
  ssd_state_update_f16_kernel<ST, LN, NC, VEC><<<grid, kThreads, 0, stream>>>(p, gdiv, pblocks);
  return cudaGetLastError();
}

template <int ST, bool VEC>
cudaError_t dispatch_n(const QuambaSSDStateUpdateParams& p, cudaStream_t stream) {
  // (lanes per channel, chunks of 4 per lane) as the float path of quant_ssd_state_update; a d_state between
  // two sizes takes the larger one, its chunks past d_state masked
  const int N = p.dstate;
  if (N <= 16) return launch<ST, 4, 1, VEC>(p, stream);
  if (N <= 32) return launch<ST, 4, 2, VEC>(p, stream);
  if (N <= 64) return launch<ST, 8, 2, VEC>(p, stream);
  if (N <= 128) return launch<ST, 16, 2, VEC>(p, stream);
  return launch<ST, 16, 4, VEC>(p, stream);  // N <= 256
}

template <int ST>
cudaError_t dispatch(const QuambaSSDStateUpdateParams& p, cudaStream_t stream) {
  const unsigned sa = ST == QUAMBA_SSD_STATE_F32 ? 16u : 8u;  // one state chunk of 4
  const bool vec = p.dstate % 4 == 0 && m2::aligned(p.state_in, sa) && m2::aligned(p.state_out, sa) &&
                   m2::aligned(p.B, 8) && m2::aligned(p.C, 8) && p.B_batch_stride % 4 == 0 &&
                   p.C_batch_stride % 4 == 0;
  return vec ? dispatch_n<ST, true>(p, stream) : dispatch_n<ST, false>(p, stream);
}

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_ssd_state_update(const QuambaSSDStateUpdateParams* p,
                                                          cudaStream_t stream) {
  QUAMBA_CHECK_ARG(p != nullptr);
  QUAMBA_CHECK_ARG(p->batch >= 1 && p->nheads >= 1 && p->headdim >= 1 && p->ngroups >= 1 && p->dstate >= 1);
  QUAMBA_CHECK_ARG(p->nheads % p->ngroups == 0 && p->nheads <= 65535);
  QUAMBA_CHECK_ARG(int64_t(p->nheads) * p->headdim <= INT32_MAX);  // channel index h * P + p is an int
  QUAMBA_CHECK_ARG(p->x && p->dt && p->A && p->B && p->C && p->y && p->state_in && p->state_out);
  QUAMBA_CHECK_ARG(p->dt_type == QUAMBA_DT_F16 || p->dt_type == QUAMBA_DT_F32);
  QUAMBA_CHECK_ARG(p->state_type == QUAMBA_SSD_STATE_F32 || p->state_type == QUAMBA_SSD_STATE_F16);
  if (p->dstate > 256) return cudaErrorNotSupported;
  if (p->state_type == QUAMBA_SSD_STATE_F16) return quamba::dispatch<QUAMBA_SSD_STATE_F16>(*p, stream);
  return quamba::dispatch<QUAMBA_SSD_STATE_F32>(*p, stream);
}
