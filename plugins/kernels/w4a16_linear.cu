// W4A16Linear: int4 weights with fp16 group scales x fp16 activations, on fp16 tensor cores.
// Contract: quamba_edge/ops/w4a16_linear.py (see quamba_kernels/w4a16_linear.h).
//
// Tensor-core GEMV (gemv_kernel in linear_common.cuh): per k-step of 128, lane (g, t) streams 16 bytes (32 codes)
// of weight rows g and g + 8 at K offset 32 t and loads their group scales; the codes become fp16 and meet the lane's 32 activations
// (fp16, read through L1) in eight m16n8k16 mmas with fp32 accumulation.
//   group_size % 128 == 0 (or one group per row): a k-step is one group, so the codes enter the mma as exact
//     (c - 8) and each step's partial sum is scaled in fp32 (the reference's product up to summation order);
//   other multiples of 32: the four lanes of an mma hold different groups, so each lane scales its codes
//     before the mma, fp16((c - 8) * s) (Marlin's rounding: 2^-11 relative per weight, inside fp16 tolerance).
#include "quamba_kernels/w4a16_linear.h"

#include "quamba_kernels/linear_common.cuh"

namespace quamba {
namespace {

using namespace lin;

template <bool kStepGroups>  // true: a k-step lies in one group (group_size % 128 == 0 or >= K)
struct W4A16 {
  using Params = QuambaW4A16LinearParams;
  using Acc = float;
  static constexpr int kStepK = 128;  // 4 lanes x 32 codes
  struct Side {
    uint32_t s;  // group scales (fp16 bits) of rows g (low half) and g + 8 (high half)
  };
  template <int NT>
  struct X {
    uint4 v[NT][4];  // 32 fp16 activations of token rows g (+ 8)
  };

  const uint8_t* w;
  const uint16_t* sc;
  int64_t ldw, lds;
  const uint16_t* xr[2];
  bool tin[2];
  int n, k, k0;
  uint32_t group_magic;  // floor(kk / group_size) = umulhi(kk, group_magic) for kk < 2^16

  template <int NT>
  __device__ __forceinline__ W4A16(const Params& p, const GemvLane<NT>& ln)
      : w(p.qweight), sc(p.scale), ldw(p.w_row_stride), lds(p.scale_row_stride), n(p.n), k(p.k), k0(32 * ln.t),
        group_magic(div_magic(static_cast<uint32_t>(p.group_size >= p.k ? p.k : p.group_size))) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      tin[nt] = ln.tin[nt];
      xr[nt] = p.x + (ln.tin[nt] ? ln.tok[nt] : 0) * p.x_row_stride + k0;
    }
  }

  // Step groups: the scale is the step's (the four lanes of a quad share the mma's sums, so all need it, also a
  // lane whose own chunk lies past K); else the lane's own chunk's. Out-of-range chunks copy zero codes, which
  // meet zero activations.
  __device__ __forceinline__ void issue(int row0, int step, bool valid, uint4* dst0, uint4* dst1, Side& side) const {
    const int kk = step * kStepK + k0;
    const bool ok = valid && kk < k;
    const bool ok0 = ok && row0 < n, ok1 = ok && row0 + 8 < n;
    cp_async16(dst0, w + (ok0 ? row0 * ldw + kk / 2 : 0), ok0);
    cp_async16(dst1, w + (ok1 ? (row0 + 8) * ldw + kk / 2 : 0), ok1);
    const bool sv0 = valid && row0 < n, sv1 = valid && row0 + 8 < n;
    const uint32_t kg = kStepGroups ? static_cast<uint32_t>(step * kStepK) : static_cast<uint32_t>(ok ? kk : 0);
    const uint32_t grp = valid ? __umulhi(kg, group_magic) : 0u;
    const uint32_t s0 = sv0 ? __ldg(sc + row0 * lds + grp) : 0u, s1 = sv1 ? __ldg(sc + (row0 + 8) * lds + grp) : 0u;
    side.s = s0 | (s1 << 16);
  }

  template <int NT>
  __device__ __forceinline__ void load_x(int step, bool valid, X<NT>& x) const {
    const int off = step * kStepK;
    const bool ok = valid && off + k0 < k;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int q = 0; q < 4; ++q) x.v[nt][q] = ok && tin[nt] ? ld_cached(xr[nt] + off + 8 * q) : make_uint4(0, 0, 0, 0);
    }
  }

  template <int NT>
  __device__ __forceinline__ void compute(uint4 w0, uint4 w1, const Side& side, const X<NT>& x,
                                          float (&acc)[NT][4]) const {
    float part[NT][4] = {};
    float(&sum)[NT][4] = kStepGroups ? part : acc;  // prescaled codes accumulate straight into acc
    const uint32_t sa2 = (side.s & 0xFFFFu) * 0x10001u, sb2 = (side.s >> 16) * 0x10001u;
#pragma unroll
    for (int j = 0; j < 4; ++j) {  // packed word j = codes 8j .. 8j + 7 of each row's chunk
      uint32_t ha[4], hb[4];
      w4_to_f16(word(w0, j), ha);  // {c0,c4} {c1,c5} {c2,c6} {c3,c7}
      w4_to_f16(word(w1, j), hb);
      if (!kStepGroups) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          ha[i] = h2_bits(__hmul2(as_h2(ha[i]), as_h2(sa2)));
          hb[i] = h2_bits(__hmul2(as_h2(hb[i]), as_h2(sb2)));
        }
      }
      const uint32_t a0[4] = {ha[0], hb[0], ha[1], hb[1]};
      const uint32_t a1[4] = {ha[2], hb[2], ha[3], hb[3]};
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const uint4& xv = x.v[nt][j];
        // activation pairs in the codes' order: {x0,x4} {x1,x5} {x2,x6} {x3,x7}
        mma_f16(sum[nt], a0, prmt(xv.x, xv.z, 0x5410), prmt(xv.x, xv.z, 0x7632));
        mma_f16(sum[nt], a1, prmt(xv.y, xv.w, 0x5410), prmt(xv.y, xv.w, 0x7632));
      }
    }
    if (!kStepGroups) return;
    const float sa = f16_bits_to_f32(static_cast<uint16_t>(side.s)), sb = f16_bits_to_f32(static_cast<uint16_t>(side.s >> 16));
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {  // C fragment: registers 0, 1 are row g, 2, 3 row g + 8
      acc[nt][0] = fmaf(part[nt][0], sa, acc[nt][0]);
      acc[nt][1] = fmaf(part[nt][1], sa, acc[nt][1]);
      acc[nt][2] = fmaf(part[nt][2], sb, acc[nt][2]);
      acc[nt][3] = fmaf(part[nt][3], sb, acc[nt][3]);
    }
  }

  __device__ static __forceinline__ void store(const Params& p, float acc, int row, int64_t token) {
    const float y = p.bias != nullptr ? acc + p.bias[row] : acc;
    store_y(p.y, token * p.y_row_stride + row, p.y_dtype, y, 1.0f);
  }
};

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_w4a16_linear(const QuambaW4A16LinearParams* p, cudaStream_t stream) {
  using namespace quamba;
  QUAMBA_CHECK_ARG(p != nullptr && p->x != nullptr && p->qweight != nullptr && p->scale != nullptr && p->y != nullptr);
  QUAMBA_CHECK_ARG(p->m >= 1 && p->n >= 1 && p->k >= 32 && p->k % 32 == 0 && p->k <= 65536);
  QUAMBA_CHECK_ARG(p->group_size >= p->k || (p->group_size >= 32 && p->group_size % 32 == 0));
  QUAMBA_CHECK_ARG(p->w_row_stride >= p->k / 2 && p->scale_row_stride >= (p->k + p->group_size - 1) / p->group_size);
  QUAMBA_CHECK_ARG(lin::aligned16(p->x, p->x_row_stride * 2) && lin::aligned16(p->qweight, p->w_row_stride));
  QUAMBA_CHECK_ARG(p->y_dtype == QUAMBA_DT_F32 || p->y_dtype == QUAMBA_DT_F16);
  if (p->group_size >= p->k || p->group_size % 128 == 0) return lin::launch_gemv<W4A16<true>>(*p, stream);
  return lin::launch_gemv<W4A16<false>>(*p, stream);
}
