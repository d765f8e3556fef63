// W4A8Linear: int4 weights (two-level scales) x int8 activations on int8 tensor cores, exact int32 sums.
// Contract: quamba_edge/ops/w4a8_linear.py (see quamba_kernels/w4a8_linear.h).
//
// Tensor-core GEMV (gemv_kernel in linear_common.cuh): per k-step of 128, lane (g, t) streams 16 bytes (32 codes)
// of weight rows g and g + 8 at K offset 32 t, loads their fp16 group scales, and reads 32 activation bytes of
// token row g. The int4 -> int8 step of the reference (an fp16 multiply by the group scale, rounded half to
// even, saturated) is done once per lane and group as a 16-entry table (w4a8_lut) and applied with byte
// permutes (w4a8_lookup), so the int8 weights are bit-identical to the reference's and the int32 sums exact.
#include "quamba_kernels/w4a8_linear.h"

#include "quamba_kernels/linear_common.cuh"

namespace quamba {
namespace {

using namespace lin;

struct W4A8 {
  using Params = QuambaW4A8LinearParams;
  using Acc = int;
  static constexpr int kStepK = 128;  // 4 lanes x 32 codes
  struct Side {
    uint32_t s;  // group scales (fp16 bits) of rows g (low half) and g + 8 (high half)
  };
  template <int NT>
  struct X {
    uint4 v[NT][2];  // 32 activation bytes of token rows g (+ 8)
  };

  const uint8_t* w;
  const uint16_t* sg;
  int64_t ldw, lds;
  const int8_t* xr[2];
  bool tin[2];
  int n, k, k0;
  uint32_t group_magic;  // floor(kk / group_size) = umulhi(kk, group_magic) for kk < 2^16

  template <int NT>
  __device__ __forceinline__ W4A8(const Params& p, const GemvLane<NT>& ln)
      : w(p.qweight), sg(p.s_group), ldw(p.w_row_stride), lds(p.s_group_row_stride), n(p.n), k(p.k),
        k0(32 * ln.t), group_magic(div_magic(static_cast<uint32_t>(p.group_size >= p.k ? p.k : p.group_size))) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      tin[nt] = ln.tin[nt];
      xr[nt] = p.x + (ln.tin[nt] ? ln.tok[nt] : 0) * p.x_row_stride + k0;
    }
  }

  // Out-of-range chunks copy zero bytes: code 0 decodes to a non-zero weight, but its activations are zero.
  __device__ __forceinline__ void issue(int row0, int step, bool valid, uint4* dst0, uint4* dst1, Side& side) const {
    const int kk = step * kStepK + k0;
    const bool ok = valid && kk < k;
    const bool ok0 = ok && row0 < n, ok1 = ok && row0 + 8 < n;
    cp_async16(dst0, w + (ok0 ? row0 * ldw + kk / 2 : 0), ok0);
    cp_async16(dst1, w + (ok1 ? (row0 + 8) * ldw + kk / 2 : 0), ok1);
    const uint32_t grp = __umulhi(static_cast<uint32_t>(ok ? kk : 0), group_magic);
    const uint32_t s0 = ok0 ? __ldg(sg + row0 * lds + grp) : 0u, s1 = ok1 ? __ldg(sg + (row0 + 8) * lds + grp) : 0u;
    side.s = s0 | (s1 << 16);
  }

  template <int NT>
  __device__ __forceinline__ void load_x(int step, bool valid, X<NT>& x) const {
    const int off = step * kStepK;
    const bool ok = valid && off + k0 < k;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      x.v[nt][0] = ok && tin[nt] ? ld_cached(xr[nt] + off) : make_uint4(0, 0, 0, 0);
      x.v[nt][1] = ok && tin[nt] ? ld_cached(xr[nt] + off + 16) : make_uint4(0, 0, 0, 0);
    }
  }

  template <int NT>
  __device__ __forceinline__ void compute(uint4 w0, uint4 w1, const Side& side, const X<NT>& x,
                                          int (&acc)[NT][4]) const {
    const Lut16 la = w4a8_lut(static_cast<uint16_t>(side.s)), lb = w4a8_lut(static_cast<uint16_t>(side.s >> 16));
#pragma unroll
    for (int j = 0; j < 4; ++j) {  // packed word j = codes 8j .. 8j + 7 of each row's chunk
      uint32_t a[4];
      w4a8_lookup(la, word(w0, j), a[0], a[2]);
      w4a8_lookup(lb, word(w1, j), a[1], a[3]);
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const uint4& xv = x.v[nt][j / 2];
        mma_s8(acc[nt], a, word(xv, (2 * j) % 4), word(xv, (2 * j + 1) % 4));
      }
    }
  }

  __device__ static __forceinline__ void store(const Params& p, int acc, int row, int64_t token) {
    a8_store(p, acc, row, token, __ldg(p.s_channel + row));
  }
};

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_w4a8_linear(const QuambaW4A8LinearParams* p, cudaStream_t stream) {
  using namespace quamba;
  QUAMBA_CHECK_ARG(p != nullptr && p->x != nullptr && p->qweight != nullptr && p->y != nullptr);
  QUAMBA_CHECK_ARG(p->x_scale != nullptr && p->s_group != nullptr && p->s_channel != nullptr);
  QUAMBA_CHECK_ARG(p->m >= 1 && p->n >= 1 && p->k >= 32 && p->k % 32 == 0 && p->k <= 65536);
  QUAMBA_CHECK_ARG(p->group_size >= p->k || (p->group_size >= 32 && p->group_size % 32 == 0));
  QUAMBA_CHECK_ARG(p->w_row_stride >= p->k / 2 && p->s_group_row_stride >= (p->k + p->group_size - 1) / p->group_size);
  QUAMBA_CHECK_ARG(lin::aligned16(p->x, p->x_row_stride) && lin::aligned16(p->qweight, p->w_row_stride));
  QUAMBA_CHECK_ARG(p->y_dtype == QUAMBA_DT_I8 || p->y_dtype == QUAMBA_DT_F32 || p->y_dtype == QUAMBA_DT_F16);
  QUAMBA_CHECK_ARG(p->y_dtype != QUAMBA_DT_I8 ||
                   (p->out_scale != nullptr && (p->out_scale_stride == 0 || p->out_scale_stride == 1)));
  return lin::launch_gemv<W4A8>(*p, stream);
}
