// Tiled tensor-core GEMM of the quantized linears (w8a8_linear, w4a8_linear, w4a16_linear) for M > 16 token
// rows (prefill); the GEMV of linear_common.cuh keeps M <= 16. CUDA C++17, sm_80+: mma.sync, ldmatrix and
// cp.async only (the Orin's sm_87 has no wgmma / TMA). No fast-math.
// Status: GPU tests pass on an H200 (bash plugins/gemm_check.sh); sanitizers and per-kernel timing still to run.
//
// y[M, N] = x[M, K] . w[N, K]^T with the activations as the mma's A operand (token rows = the mma's M) and the
// weights as its B operand ([N, K] rows, K contiguous = the "col" layout), so both operands' tiles are
// K-contiguous rows copied verbatim from global memory. A block computes a BM x BN tile of y, each warp a
// WM x WN sub-tile (MT m16 x NT n8 mma tiles).
//   - One k-tile = 128 bytes of every activation row of the tile (128 int8 or 64 fp16 values) and the weight
//     bytes of the same K range (128 int8, or 64 / 32 bytes of packed int4). cp.async (16 bytes, zero-filled
//     past M, N and K: zeros add nothing to any product) fills a ring of STAGES k-tiles; one barrier per
//     k-tile; STAGES - 1 k-tiles are in flight while one is consumed.
//   - The 16-byte chunks of a shared-memory row are XOR-swizzled, phys = c ^ ((row / (8 / CH)) % CH) for CH
//     chunks per row: 8 consecutive rows read at one logical chunk (an ldmatrix phase, or 8 rows x 16 bytes of
//     an LDS.128) land in 8 distinct 4-bank groups, and a row written by 8 lanes of cp.async stays
//     conflict-free too.
//   - Activation fragments: ldmatrix.x4, the same addressing for int8 m16n8k32 and fp16 m16n8k16 (one step =
//     32 bytes of K; a0/a1 from 16-byte chunk 2s, a2/a3 from 2s + 1). The format policy (in each op's .cu)
//     builds the weight fragments for the same K positions (ldmatrix for int8, LDS + byte permutes and the
//     exact int4 conversions of linear_common.cuh for the packed formats) and issues the mmas.
//   - Epilogue from the accumulator fragments: lane (g, t) holds columns 2t, 2t + 1 of each n8 tile for rows
//     g, g + 8 of each m16 tile; per-column scales / bias are read once per n8 tile, adjacent columns leave as
//     one paired store where y's alignment allows, every store predicated on M and N.
// Format policy F (see gemm_kernel): Params; T (a Tiling); kBRowBytes; static x / w pointers and byte extents;
// F(p, m0, n0) (per-lane setup); compute(sA, sB, kt, KT) (one k-tile from shared memory); epilogue(p, m0, n0,
// pairs).
#pragma once

#include <atomic>

#include "quamba_kernels/linear_common.cuh"

namespace quamba {
namespace lin {
namespace gemm {

// ---- PTX wrappers (sm_80+) -------------------------------------------------------------------------------
// cp_async_commit / cp_async_wait / smem_addr are linear_common.cuh's (with their "memory" clobbers).

// 16 bytes global -> shared at a shared-window address (the GEMM precomputes them; linear_common's cp_async16
// takes a generic pointer); !valid reads nothing and writes 16 zero bytes.
__device__ __forceinline__ void cp_async16_s(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(valid ? 16 : 0)
               : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ uint4 lds128(uint32_t addr) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr));
  return v;
}

// ---- tiling ----------------------------------------------------------------------------------------------

template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, int MIN_BLOCKS>
struct Tiling {
  static constexpr int kBM = BM, kBN = BN, kWarpsM = WARPS_M, kWarpsN = WARPS_N;
  static constexpr int kThreads = 32 * WARPS_M * WARPS_N;
  static constexpr int kWM = BM / WARPS_M, kWN = BN / WARPS_N;  // warp tile
  static constexpr int kMT = kWM / 16, kNT = kWN / 8;            // m16 / n8 mma tiles per warp
  static constexpr int kStages = STAGES, kMinBlocks = MIN_BLOCKS;
  static_assert(kWM % 16 == 0 && kWN % 8 == 0 && STAGES >= 2, "tiling");
};

constexpr int kARowBytes = 128;  // bytes of K per activation row and k-tile

// Physical 16-byte chunk of logical chunk c in row r of a tile with CH chunks per row (period: 8 rows = 1 KiB).
template <int CH>
__device__ __forceinline__ constexpr int swz(int r, int c) {
  return c ^ ((r / (8 / CH)) % CH);
}

// Where a lane sits: warp (wm, wn) of the block, mma lane coordinates g = lane / 4, t = lane % 4.
struct WarpPos {
  int lane, wm, wn, g, t;
  template <class T>
  __device__ __forceinline__ static WarpPos make() {
    WarpPos w;
    w.lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    w.wm = warp / T::kWarpsN;
    w.wn = warp % T::kWarpsN;
    w.g = w.lane >> 2;
    w.t = w.lane & 3;
    return w;
  }
};

// Activation ldmatrix.x4 of m16 tile mt at k-step s (32 bytes of K): lanes 0-15 address rows 0-15 at chunk 2s,
// lanes 16-31 the same rows at chunk 2s + 1 -> registers a0..a3 of the m16n8k32 (s8) / m16n8k16 (f16) A fragment.
template <class T>
struct AFrag {
  uint32_t row_off;  // (wm * WM + lane % 16) * 128
  int x, h;          // swizzle term (row % 8 = lane % 8: tile rows start at multiples of 8) and chunk half
  __device__ __forceinline__ explicit AFrag(const WarpPos& w)
      : row_off(static_cast<uint32_t>((w.wm * T::kWM + (w.lane & 15)) * kARowBytes)), x(w.lane & 7), h(w.lane >> 4) {}
  __device__ __forceinline__ void load(uint32_t (&a)[4], uint32_t sA, int mt, int s) const {
    ldsm_x4(a, sA + row_off + static_cast<uint32_t>(mt * 16 * kARowBytes + (((2 * s + h) ^ x) << 4)));
  }
};

// ---- global -> shared tile copies ------------------------------------------------------------------------

// Rows [row0, row0 + ROWS) x bytes [kt * ROW_BYTES, (kt + 1) * ROW_BYTES) of a row-major matrix into a swizzled
// shared tile. Thread `tid` always copies chunk tid % CH of rows tid / CH + i * (THREADS / CH); the swizzle
// period (8 rows) divides that stride, so its physical chunk is the same in every pass.
template <int ROWS, int ROW_BYTES, int THREADS>
struct TileCopy {
  static constexpr int kCh = ROW_BYTES / 16;
  static constexpr int kRowStep = THREADS / kCh;
  static constexpr int kPasses = ROWS / kRowStep;
  static_assert(THREADS % kCh == 0 && ROWS % kRowStep == 0 && kRowStep % 8 == 0, "tile copy");

  const uint8_t* base;  // the matrix (a safe address for the zero-filling copies)
  const uint8_t* src;   // this thread's chunk in its first row at k-tile 0
  int64_t step;         // bytes between the rows of two passes
  uint32_t dst;         // this thread's first chunk in the tile
  uint32_t rows_ok;     // bit i: the row of pass i exists
  int kb0;              // this thread's byte offset inside a k-tile row

  __device__ __forceinline__ TileCopy(const void* matrix, int64_t row_stride_bytes, int64_t row0, int64_t rows,
                                      int tid) {
    base = static_cast<const uint8_t*>(matrix);
    const int c = tid % kCh, r = tid / kCh;
    kb0 = 16 * c;
    step = row_stride_bytes * kRowStep;
    const int64_t left = rows - row0;
    rows_ok = 0;
#pragma unroll
    for (int i = 0; i < kPasses; ++i) rows_ok |= (r + i * kRowStep < left ? 1u : 0u) << i;
    src = (rows_ok & 1u) ? base + (row0 + r) * row_stride_bytes + kb0 : base;
    dst = static_cast<uint32_t>(r * ROW_BYTES + (swz<kCh>(r, c) << 4));
  }

  // k-tile kt into the tile at shared address s_tile; bytes at or past `kbytes` of a row are zero-filled.
  __device__ __forceinline__ void copy(uint32_t s_tile, int kt, int kbytes) const {
    const bool kin = kt * ROW_BYTES + kb0 < kbytes;
    const uint8_t* q = src + kt * ROW_BYTES;  // walked by `step`: one 64-bit add per pass
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const bool ok = kin && ((rows_ok >> i) & 1u);
      cp_async16_s(s_tile + dst + static_cast<uint32_t>(i * kRowStep * ROW_BYTES), ok ? q : base, ok);
      q += step;
    }
  }
};

// ---- the kernel ------------------------------------------------------------------------------------------

template <class F>
constexpr int smem_bytes() {
  return F::T::kStages * (F::T::kBM * kARowBytes + F::T::kBN * F::kBRowBytes);
}

// Blocks: x = BM-row token tiles (fastest: the blocks resident together share weight tiles and sweep all of x,
// which stays in L2), y = BN-column output tiles.
template <class F>
__global__ void __launch_bounds__(F::T::kThreads, F::T::kMinBlocks) gemm_kernel(const typename F::Params p, bool pairs) {
  using T = typename F::T;
  extern __shared__ __align__(128) uint8_t smem[];
  constexpr int kABytes = T::kBM * kARowBytes;
  constexpr int kStageBytes = kABytes + T::kBN * F::kBRowBytes;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * T::kBM;
  const int n0 = static_cast<int>(blockIdx.y) * T::kBN;
  const TileCopy<T::kBM, kARowBytes, T::kThreads> ca(F::x_ptr(p), F::x_row_bytes(p), m0, p.m, threadIdx.x);
  const TileCopy<T::kBN, F::kBRowBytes, T::kThreads> cb(F::w_ptr(p), F::w_row_bytes(p), n0, p.n, threadIdx.x);
  const int ka = F::x_kbytes(p), kb = F::w_kbytes(p);
  const int KT = ceil_div(ka, kARowBytes);
  const uint32_t s0 = smem_addr(smem);
  F f(p, m0, n0);

#pragma unroll
  for (int s = 0; s < T::kStages - 1; ++s) {
    if (s < KT) {
      ca.copy(s0 + s * kStageBytes, s, ka);
      cb.copy(s0 + s * kStageBytes + kABytes, s, kb);
    }
    cp_async_commit();
  }
  int rd = 0, wr = T::kStages - 1;
  for (int kt = 0; kt < KT; ++kt) {
    cp_async_wait<T::kStages - 2>();  // k-tile kt has landed (this thread's copies) ...
    __syncthreads();                  // ... everyone's; and stage wr (read at kt - 1) is free
    if (kt + T::kStages - 1 < KT) {
      ca.copy(s0 + wr * kStageBytes, kt + T::kStages - 1, ka);
      cb.copy(s0 + wr * kStageBytes + kABytes, kt + T::kStages - 1, kb);
    }
    cp_async_commit();
    f.compute(s0 + rd * kStageBytes, s0 + rd * kStageBytes + kABytes, kt, KT);
    rd = rd + 1 == T::kStages ? 0 : rd + 1;
    wr = wr + 1 == T::kStages ? 0 : wr + 1;
  }
  f.epilogue(p, m0, n0, pairs);
}

// ---- epilogue --------------------------------------------------------------------------------------------

// Two adjacent outputs y[row, c], y[row, c + 1] (ok1: c + 1 < N); `pairs`: one 2-element store is aligned.
__device__ __forceinline__ void store_y2(void* y, int64_t i, int dtype, float v0, float v1, float os0, float os1,
                                         bool ok1, bool pairs) {
  if (dtype == QUAMBA_DT_I8) {
    const int8_t q0 = quantize_int8(v0, os0);
    if (ok1 && pairs) {
      const int8_t q1 = quantize_int8(v1, os1);
      *reinterpret_cast<uint16_t*>(static_cast<int8_t*>(y) + i) =
          static_cast<uint16_t>(static_cast<uint8_t>(q0) | (static_cast<uint32_t>(static_cast<uint8_t>(q1)) << 8));
      return;
    }
    static_cast<int8_t*>(y)[i] = q0;
    if (ok1) static_cast<int8_t*>(y)[i + 1] = quantize_int8(v1, os1);
  } else if (dtype == QUAMBA_DT_F16) {
    const uint16_t h0 = f32_to_f16_bits(v0);
    if (ok1 && pairs) {
      *reinterpret_cast<uint32_t*>(static_cast<uint16_t*>(y) + i) =
          static_cast<uint32_t>(h0) | (static_cast<uint32_t>(f32_to_f16_bits(v1)) << 16);
      return;
    }
    static_cast<uint16_t*>(y)[i] = h0;
    if (ok1) static_cast<uint16_t*>(y)[i + 1] = f32_to_f16_bits(v1);
  } else {
    if (ok1 && pairs) {
      *reinterpret_cast<float2*>(static_cast<float*>(y) + i) = make_float2(v0, v1);
      return;
    }
    static_cast<float*>(y)[i] = v0;
    if (ok1) static_cast<float*>(y)[i + 1] = v1;
  }
}

// Stores a warp's accumulators. Col (per output column): `Col::State at(int n)` (loads, n < N) and
// `float value(Acc acc, const State&)`, `float quant_scale(const State&)` (the int8 quantizer's scale).
template <class T, class Acc, class Col>
__device__ __forceinline__ void store_tile(const Acc (&acc)[T::kMT][T::kNT][4], const Col& col, void* y,
                                           int64_t y_row_stride, int dtype, int64_t m, int n, int64_t m0, int n0,
                                           bool pairs) {
  const WarpPos w = WarpPos::make<T>();
  const int64_t r0 = m0 + w.wm * T::kWM + w.g;
  const int c00 = n0 + w.wn * T::kWN + 2 * w.t;
#pragma unroll
  for (int nt = 0; nt < T::kNT; ++nt) {
    const int c0 = c00 + nt * 8;
    if (c0 >= n) continue;
    const bool ok1 = c0 + 1 < n;
    const typename Col::State s0 = col.at(c0);
    const typename Col::State s1 = col.at(ok1 ? c0 + 1 : c0);
    const float os0 = col.quant_scale(s0), os1 = col.quant_scale(s1);
#pragma unroll
    for (int mt = 0; mt < T::kMT; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {  // C fragment registers {0, 1}: row g, {2, 3}: row g + 8
        const int64_t r = r0 + mt * 16 + 8 * h;
        if (r >= m) continue;
        store_y2(y, r * y_row_stride + c0, dtype, col.value(acc[mt][nt][2 * h], s0), col.value(acc[mt][nt][2 * h + 1], s1),
                 os0, os1, ok1, pairs);
      }
    }
  }
}

// The integer epilogue of W8A8 / W4A8 per column n: alpha = x_scale * w_scale[n], bias[n], out_scale[n]; the
// value is int_epilogue's (float(acc) * alpha [+ bias], separate fp32 operations).
struct IntCol {
  struct State {
    float alpha, bias, os;
  };
  float x_scale;
  const float* w_scale;
  int w_scale_stride;
  const float* bias;
  const float* out_scale;  // nullptr: float output
  int out_scale_stride;
  __device__ __forceinline__ State at(int n) const {
    State s;
    s.alpha = __fmul_rn(x_scale, __ldg(w_scale + static_cast<int64_t>(n) * w_scale_stride));
    s.bias = bias != nullptr ? __ldg(bias + n) : 0.0f;
    s.os = out_scale != nullptr ? __ldg(out_scale + static_cast<int64_t>(n) * out_scale_stride) : 1.0f;
    return s;
  }
  __device__ __forceinline__ float value(int acc, const State& s) const {
    const float y = __fmul_rn(acc_to_f32(acc), s.alpha);
    return bias != nullptr ? __fadd_rn(y, s.bias) : y;
  }
  __device__ __forceinline__ float quant_scale(const State& s) const { return s.os; }
};

// ---- host side -------------------------------------------------------------------------------------------

// y's alignment allows one store for two adjacent elements (even element offsets in every row).
inline bool pair_stores(const void* y, int dtype, int64_t y_row_stride) {
  const uintptr_t es = dtype == QUAMBA_DT_I8 ? 1 : (dtype == QUAMBA_DT_F16 ? 2 : 4);
  return reinterpret_cast<uintptr_t>(y) % (2 * es) == 0 && y_row_stride % 2 == 0;
}

// Per device and kernel, done once (the GEMV's pattern): raise the dynamic shared-memory limit, remember the SM
// count. Later calls, e.g. those a CUDA graph captures, make no attribute calls.
template <class F>
cudaError_t prepare(int dev, int& sms) {
  static std::atomic<int> cached[64];  // SM count; 0 = not prepared yet
  std::atomic<int>* slot = dev < 64 ? &cached[dev] : nullptr;
  sms = slot ? slot->load(std::memory_order_relaxed) : 0;
  if (sms > 0) return cudaSuccess;
  constexpr int smem = smem_bytes<F>();
  if (smem > 48 * 1024) {
    QUAMBA_CUDA_TRY(cudaFuncSetAttribute(gemm_kernel<F>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  }
  QUAMBA_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  if (sms < 1) sms = 1;
  if (slot) slot->store(sms, std::memory_order_relaxed);
  return cudaSuccess;
}

template <class F>
cudaError_t launch_one(const typename F::Params& p, bool pairs, cudaStream_t stream) {
  using T = typename F::T;
  const int64_t gx = ceil_div<int64_t>(p.m, T::kBM);
  const int gy = ceil_div(p.n, T::kBN);
  if (gx > 0x7fffffffLL || gy > 65535) return cudaErrorInvalidValue;
  gemm_kernel<F><<<dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), T::kThreads, smem_bytes<F>(), stream>>>(
      p, pairs);
  return cudaGetLastError();
}

// Big tiles (fewest bytes moved per MAC) unless they would leave multiprocessors without a block; then the
// small tiles (4x the blocks: narrow layers such as x_proj, or a few hundred token rows).
template <class Big, class Small>
cudaError_t launch(const typename Big::Params& p, bool pairs, cudaStream_t stream) {
  int dev = 0, sms = 0, sms_small = 0;
  QUAMBA_CUDA_TRY(cudaGetDevice(&dev));
  QUAMBA_CUDA_TRY(prepare<Big>(dev, sms));
  QUAMBA_CUDA_TRY(prepare<Small>(dev, sms_small));
  const int64_t big_tiles = ceil_div<int64_t>(p.m, Big::T::kBM) * ceil_div(p.n, Big::T::kBN);
  if (big_tiles >= sms) return launch_one<Big>(p, pairs, stream);
  return launch_one<Small>(p, pairs, stream);
}

}  // namespace gemm
}  // namespace lin
}  // namespace quamba
