// Device helpers of the quantized linear kernels (w8a8_linear, w4a8_linear, w4a16_linear). CUDA C++17,
// sm_80+ (mma.sync only: the Orin's sm_87 has no wgmma). Builds on common.cuh; no fast-math.
//
// The decode GEMV (M = B * L <= 16 rows of activations) of all three runs on tensor cores with the roles
// swapped: the WEIGHT is the mma's A operand (16 output features per tile = the mma's M) and the
// activations are its B operand (8 or 16 token rows = one or two n8 tiles). Lane (g = lane / 4,
// t = lane % 4) of a warp loads 16 contiguous bytes of weight rows g and g + 8 of its tile at K offset
// (k-step base + t * chunk) and, for its token row g, the activation bytes at the same K positions. The
// reduction over K does not care in which order the K positions enter an mma, so each lane feeds its own
// contiguous chunk into the fragment slots the PTX layout assigns to it: the weights need no repacking and
// every weight byte is read exactly once, with 16-byte copies, coalesced per 4 lanes.
// The K range is split over the warps of a block (no atomics: the int32 partial sums are added in shared
// memory, exact in any order); the weights stream through cp.async rings in shared memory (gemv_kernel).
#pragma once

#include <cuda_fp16.h>
#include <stdint.h>

#include <atomic>

#include "quamba_kernels/common.cuh"

#include "quamba_kernels/dtype_codes.h"

namespace quamba {
namespace lin {

constexpr int kWarps = 8;          // warps per block: they split K
constexpr int kTileRows = 16;      // output features per block (the mma's M)
constexpr int kThreads = 32 * kWarps;

// D = A(16x32 int8, row) * B(32x8 int8, col) + C, exact int32.
__device__ __forceinline__ void mma_s8(int (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// D = A(16x16 fp16, row) * B(16x8 fp16, col) + C, fp32 accumulation.
__device__ __forceinline__ void mma_f16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Activations: re-read by every block, so they go through L1 (the weights stream through cp.async).
__device__ __forceinline__ uint4 ld_cached(const void* p) { return __ldg(static_cast<const uint4*>(p)); }

__device__ __forceinline__ uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : (i == 1 ? v.y : (i == 2 ? v.z : v.w));  // i is a compile-time constant after unrolling
}

__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) { return __byte_perm(a, b, sel); }

__device__ __forceinline__ uint32_t lop3_and_or(uint32_t a, uint32_t mask, uint32_t bits) {
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;\n" : "=r"(d) : "r"(a), "r"(mask), "r"(bits));  // (a & mask) | bits
  return d;
}

__device__ __forceinline__ __half2 as_h2(uint32_t u) {
  __half2 h;
  memcpy(&h, &u, sizeof(h));
  return h;
}
__device__ __forceinline__ uint32_t h2_bits(__half2 h) {
  uint32_t u;
  memcpy(&u, &h, sizeof(u));
  return u;
}

// The 16-entry int8 table of one W4A8 group: v[c] = clamp(round_half_even(fp16(fp16(c - 8) * s)), -128, 127)
// (quamba_edge.ops.w4a8_linear.w4a8_int8_weight: one IEEE fp16 multiply, then fp16 -> int8 half to even,
// saturating). Rounding to an integer is an fp16 add of 1536: in [1024, 2048) the fp16 spacing is 1, so
// the add rounds half to even, and the low byte of 1536 + q is q's two's complement byte (512 + q mod 256).
struct Lut16 {
  uint32_t lo0, lo1, hi0, hi1;  // bytes v[0..3], v[4..7], v[8..11], v[12..15]
};

__device__ __forceinline__ Lut16 w4a8_lut(uint16_t s_bits) {
  const __half2 s = as_h2(static_cast<uint32_t>(s_bits) * 0x10001u);
  const __half2 lo = as_h2(0xD800D800u), hi = as_h2(0x57F057F0u);  // -128, 127
  const __half2 magic = as_h2(0x66006600u);                        // 1536
  // (c - 8) for c = 0..15 as fp16 pairs {c, c + 1}: -8 -7 | -6 -5 | -4 -3 | -2 -1 | 0 1 | 2 3 | 4 5 | 6 7
  constexpr uint32_t kPairs[8] = {0xC700C800u, 0xC500C600u, 0xC200C400u, 0xBC00C000u,
                                  0x3C000000u, 0x42004000u, 0x45004400u, 0x47004600u};
  // |s| <= 18.125: only c = 0 (value -8) can leave [-128.5, 127.5) (7 * 18.125 = 126.875), so only the first
  // pair needs the clamp; larger scales (not produced by the quantizer, but legal inputs) clamp every entry.
  const bool small = (s_bits & 0x7FFFu) <= 0x4C88u;  // 18.125
  uint32_t q[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    // __hmul2_rn: the product is rounded to fp16 on its own; nvcc would otherwise contract it with the add
    // below into one HFMA2 (one rounding), which differs from the reference where (c - 8) * s lies near .5
    __half2 p = __hmul2_rn(as_h2(kPairs[i]), s);
    if (i == 0 || !small) p = __hmin2(__hmax2(p, lo), hi);
    q[i] = h2_bits(__hadd2(p, magic));
  }
  Lut16 t;
  t.lo0 = prmt(q[0], q[1], 0x6420);
  t.lo1 = prmt(q[2], q[3], 0x6420);
  t.hi0 = prmt(q[4], q[5], 0x6420);
  t.hi1 = prmt(q[6], q[7], 0x6420);
  return t;
}

// Codes c0..c7 of one packed word (nibble i = code i, offset binary) -> int8 words {v(c0..c3)}, {v(c4..c7)}.
// Selector nibbles keep bit 3 clear (PRMT's sign-replicate flag): the low three bits pick the byte in the low
// or high half of the table, and a second PRMT picks per byte between the two by the code's bit 3.
__device__ __forceinline__ void w4a8_lookup(const Lut16& t, uint32_t w, uint32_t& out_lo, uint32_t& out_hi) {
  const uint32_t idx = w & 0x77777777u;
  const uint32_t pick = lop3_and_or(w >> 1, 0x44444444u, 0x32103210u);
  out_lo = prmt(prmt(t.lo0, t.lo1, idx), prmt(t.hi0, t.hi1, idx), pick);
  const uint32_t idx2 = idx >> 16, pick2 = pick >> 16;
  out_hi = prmt(prmt(t.lo0, t.lo1, idx2), prmt(t.hi0, t.hi1, idx2), pick2);
}

// Codes c0..c7 of one packed word -> exact fp16 (c - 8) pairs {c0,c4} {c1,c5} {c2,c6} {c3,c7}: OR-ing a nibble
// into the mantissa of 1024.0 gives 1024 + c exactly; subtracting 1032 leaves c - 8.
__device__ __forceinline__ void w4_to_f16(uint32_t w, uint32_t (&h)[4]) {
  const __half2 bias = as_h2(0x64086408u);  // 1032
  h[0] = h2_bits(__hsub2(as_h2(lop3_and_or(w, 0x000F000Fu, 0x64006400u)), bias));
  h[1] = h2_bits(__hsub2(as_h2(lop3_and_or(w >> 4, 0x000F000Fu, 0x64006400u)), bias));
  h[2] = h2_bits(__hsub2(as_h2(lop3_and_or(w >> 8, 0x000F000Fu, 0x64006400u)), bias));
  h[3] = h2_bits(__hsub2(as_h2(lop3_and_or(w >> 12, 0x000F000Fu, 0x64006400u)), bias));
}

// Split-K reduction: every warp's C fragments (NT n8 tiles x 4 registers per lane) -> shared memory
// [warp][nt][reg][lane]; afterwards thread (row r in 0..15, token nn in 0..8*NT-1) sums its element over
// the warps. Returns false for threads without an output element.
template <typename Acc, int NT>
struct SplitK {
  Acc buf[kWarps][NT][4][32];

  __device__ __forceinline__ void put(int warp, int lane, const Acc (&c)[NT][4]) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) buf[warp][nt][i][lane] = c[nt][i];
    }
  }

  // Output element of thread `tid` (call after __syncthreads): row r (0..15) of the tile, token nn.
  __device__ __forceinline__ bool get(int tid, int& r, int& nn, Acc& sum) const {
    if (tid >= kTileRows * 8 * NT) return false;
    r = tid % kTileRows;
    nn = tid / kTileRows;
    const int nt = nn / 8, nl = nn % 8;
    const int lane = (r % 8) * 4 + nl / 2, reg = (r / 8) * 2 + (nl & 1);
    sum = buf[0][nt][reg][lane];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) sum += buf[w][nt][reg][lane];
    return true;
  }
};

// y[row] = int8 or float of an fp32 value.
__device__ __forceinline__ void store_y(void* y, int64_t i, int dtype, float v, float out_scale) {
  if (dtype == QUAMBA_DT_I8) {
    static_cast<int8_t*>(y)[i] = quantize_int8(v, out_scale);
  } else if (dtype == QUAMBA_DT_F16) {
    static_cast<uint16_t*>(y)[i] = f32_to_f16_bits(v);
  } else {
    static_cast<float*>(y)[i] = v;
  }
}

// Integer epilogue of W8A8 / W4A8 (quamba_edge.ops.w8a8_linear steps 2-4): y = float(acc) * (x_scale * w_scale)
// [+ bias], each a separate fp32 operation (never contracted into an FMA), then the output quantizer.
__device__ __forceinline__ float int_epilogue(int acc, float x_scale, float w_scale, const float* bias, int row) {
  float y = __fmul_rn(acc_to_f32(acc), __fmul_rn(x_scale, w_scale));
  if (bias != nullptr) y = __fadd_rn(y, bias[row]);
  return y;
}

// ---- the GEMV kernel shared by the three formats -------------------------------------------------------
//
// Work: row tiles of 16 output features x the K range; a block owns one token tile (blockIdx.y) and a strided
// set of row tiles (blockIdx.x, + gridDim.x, ...: persistent blocks, one resident wave); its 8 warps split K
// into equal slices of k-steps (the last warps may get padding steps that load zeros and skip the math), and
// every warp walks the same sequence of (tile, step) units, so tile boundaries are block-uniform points where
// the partial sums are added in shared memory and the epilogue runs.
// Weights: each lane copies its two 16-byte chunks of a unit with cp.async into a private ring of kDepth
// stages in shared memory (bytes in flight cost no registers, and the ring keeps streaming across tiles);
// per-unit side data (group scales) rides in a register ring; activations are read through L1 one unit ahead.

constexpr int kDepth = 6;  // units of weight bytes in flight per warp (6 KB): a small layer's whole slice

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, asynchronously; zero-filled (nothing read) when !valid. The "memory" clobbers keep
// the compiler from moving this thread's shared-memory reads of a stage across the copy that refills it or
// above the wait that completes it.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// floor(v / d) for 0 <= v < 2^16 and 1 <= d <= 2^16 with magic = ceil(2^32 / d) (exact in that range:
// the error term magic * d - 2^32 < d, times v < 2^16, stays below 2^32).
__host__ __device__ __forceinline__ uint32_t div_magic(uint32_t d) {
  return static_cast<uint32_t>(((1ull << 32) + d - 1) / d);
}

// A lane's place: g = lane / 4 picks weight rows g and g + 8 of a tile and token rows g (+ 8) of the block's
// token tile; t = lane % 4 its chunk of a k-step.
template <int NT>
struct GemvLane {
  int lane, warp, g, t;
  int64_t tok[NT];
  bool tin[NT];

  __device__ __forceinline__ explicit GemvLane(int64_t m) {
    lane = threadIdx.x & 31;
    warp = threadIdx.x >> 5;
    g = lane >> 2;
    t = lane & 3;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      tok[nt] = static_cast<int64_t>(blockIdx.y) * 8 * NT + nt * 8 + g;
      tin[nt] = tok[nt] < m;
    }
  }
};

// A format F provides
//   using Params; using Acc (int / float); static constexpr int kStepK (K per k-step);
//   struct Side (register data of one unit, e.g. group scales); template <int NT> struct X (activations);
//   __device__ F(const Params&, const GemvLane<NT>&);
//   __device__ void issue(int row0, int step, bool valid, uint4* dst0, uint4* dst1, Side&) const
//       cp.async this lane's 16 bytes of weight rows row0 and row0 + 8 at `step` (zeros when !valid or past N);
//   __device__ void load_x(int step, bool valid, X<NT>&) const;
//   __device__ void compute(uint4 w0, uint4 w1, const Side&, const X<NT>&, Acc (&acc)[NT][4]) const;
//   __device__ static void store(const Params&, Acc sum, int row, int64_t token)   one output's epilogue.
template <class F, int NT>
__global__ void __launch_bounds__(kThreads, 2) gemv_kernel(const typename F::Params p) {
  using Acc = typename F::Acc;
  extern __shared__ uint4 smem[];
  uint4* ring = smem + (threadIdx.x >> 5) * (kDepth * 64);  // this warp's [kDepth][2][32] chunks
  auto* red = reinterpret_cast<SplitK<Acc, NT>*>(smem + kWarps * kDepth * 64);
  const GemvLane<NT> ln(p.m);
  const F f(p, ln);
  const int tiles = ceil_div(p.n, kTileRows);
  const int per_warp = ceil_div(ceil_div(p.k, F::kStepK), kWarps);  // k-steps per warp (uniform)
  const int steps = ceil_div(p.k, F::kStepK);
  const int step0 = ln.warp * per_warp;

  // issue side (runs kDepth units ahead of the compute side)
  int tile_i = blockIdx.x, j_i = 0;
  typename F::Side side[kDepth];
  auto issue_next = [&](int d) {
    const bool live = tile_i < tiles;
    const int step = step0 + j_i;
    f.issue(tile_i * kTileRows + ln.g, step, live && step < steps, ring + d * 64 + ln.lane,
            ring + d * 64 + 32 + ln.lane, side[d]);
    cp_async_commit();
    if (++j_i == per_warp) {
      j_i = 0;
      tile_i += gridDim.x;
    }
  };
#pragma unroll
  for (int d = 0; d < kDepth; ++d) issue_next(d);

  int tile_c = blockIdx.x, j_c = 0;
  typename F::template X<NT> x;
  f.load_x(step0, step0 < steps, x);
  Acc acc[NT][4] = {};
  while (tile_c < tiles) {
#pragma unroll
    for (int d = 0; d < kDepth; ++d) {
      if (tile_c < tiles) {  // block-uniform: every warp walks the same units
        cp_async_wait<kDepth - 1>();
        const uint4 w0 = ring[d * 64 + ln.lane], w1 = ring[d * 64 + 32 + ln.lane];
        const typename F::template X<NT> xc = x;
        const int step = step0 + j_c;
        const int jn = j_c + 1 == per_warp ? 0 : j_c + 1;  // the next unit's step: load its activations now
        f.load_x(step0 + jn, step0 + jn < steps, x);
        if (step < steps) f.compute(w0, w1, side[d], xc, acc);
        issue_next(d);  // refill this stage (its chunks are in registers and used above)
        if (++j_c == per_warp) {  // tile done: add the warps' partial sums, epilogue
          red->put(ln.warp, ln.lane, acc);
          __syncthreads();
          int r, nn;
          Acc sum;
          if (red->get(threadIdx.x, r, nn, sum)) {
            const int row = tile_c * kTileRows + r;
            const int64_t token = static_cast<int64_t>(blockIdx.y) * 8 * NT + nn;
            if (row < p.n && token < p.m) F::store(p, sum, row, token);
          }
          __syncthreads();
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
            for (int i = 0; i < 4; ++i) acc[nt][i] = Acc(0);
          }
          j_c = 0;
          tile_c += gridDim.x;
        }
      }
    }
  }
  cp_async_wait<0>();  // no copy may outlive the block
}

template <int NT, class Acc>
constexpr size_t gemv_smem() {
  return sizeof(uint4) * kWarps * kDepth * 64 + sizeof(SplitK<Acc, NT>);
}

// Launch F's GEMV for p.m token rows: one n8 token tile per block up to 8 rows, else two; as many persistent
// blocks as fit in one wave (occupancy x SMs, queried once per device and variant).
template <class F, int NT>
cudaError_t launch_gemv_nt(const typename F::Params& p, cudaStream_t stream) {
  auto kernel = gemv_kernel<F, NT>;
  constexpr size_t smem = gemv_smem<NT, typename F::Acc>();
  static std::atomic<int> resident[64];  // per device; 0 = not queried yet
  int dev = 0, fit = 0;
  QUAMBA_CUDA_TRY(cudaGetDevice(&dev));
  std::atomic<int>* slot = dev < 64 ? &resident[dev] : nullptr;
  if (slot) fit = slot->load(std::memory_order_relaxed);
  if (fit <= 0) {
    int sms = 0, per_sm = 0;
    QUAMBA_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    QUAMBA_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    QUAMBA_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem));
    fit = per_sm * sms > 0 ? per_sm * sms : 1;
    if (slot) slot->store(fit, std::memory_order_relaxed);
  }
  const int tiles = ceil_div(p.n, kTileRows);
  const int64_t ytiles = ceil_div<int64_t>(p.m, 8 * NT);
  if (ytiles > 65535) return cudaErrorInvalidValue;
  const int64_t per_y = fit / ytiles > 1 ? fit / ytiles : 1;
  const dim3 grid(static_cast<unsigned>(tiles < per_y ? tiles : per_y), static_cast<unsigned>(ytiles));
  kernel<<<grid, kThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

template <class F>
cudaError_t launch_gemv(const typename F::Params& p, cudaStream_t stream) {
  return p.m <= 8 ? launch_gemv_nt<F, 1>(p, stream) : launch_gemv_nt<F, 2>(p, stream);
}

// The A8 formats' epilogue of one output (int_epilogue, then store_y with the row's output scale).
template <class P>
__device__ __forceinline__ void a8_store(const P& p, int acc, int row, int64_t token, float w_scale) {
  const float y = int_epilogue(acc, __ldg(p.x_scale), w_scale, p.bias, row);
  const float os = p.y_dtype == QUAMBA_DT_I8 ? __ldg(p.out_scale + row * p.out_scale_stride) : 1.0f;
  store_y(p.y, token * p.y_row_stride + row, p.y_dtype, y, os);
}

// Host side: a pointer and row stride (bytes) fit for the 16-byte vector loads.
inline bool aligned16(const void* ptr, int64_t row_stride_bytes) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && row_stride_bytes % 16 == 0;
}

}  // namespace lin
}  // namespace quamba
