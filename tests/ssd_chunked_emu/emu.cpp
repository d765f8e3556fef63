// CPU emulation of the chunked SSD kernel (quamba_kernels/ssd_chunked.cuh, ssdc::chunked_kernel, as quant_ssd.cu
// and ssd.cu instantiate it: int8 and fp16 inputs): the
// kernel's own source compiled as host C++ (QUAMBA_SSD_EMULATE), one block at a time, its 128 threads as
// cooperative fibers (ucontext) scheduled in a random order between barriers. The warp primitives it uses
// are stand-ins written from the PTX ISA fragment tables (mma.m16n8k16 .f16, mma.m16n8k32 .s8,
// ldmatrix .x4 / .x4.trans, shfl, cp.async with deferred completion: its destination holds garbage
// until the thread's cp.async.wait_group). Two schedules: any ready thread at random (even seeds), or
// warp-greedy (odd seeds: a random warp order, redrawn at every __syncthreads, and the first warp with a
// ready thread runs, so one warp gets ahead of the others as far as the barriers let it: a missing barrier
// shows as stale shared data). Checks: ldmatrix / cp.async addresses (alignment, shared bounds, global
// source ranges), barrier deadlocks and barriers with exited threads.
// Built and driven by tests/test_quant_ssd_chunked_emu.py (int8) and tests/test_ssd_chunked_emu.py (fp16).
#define QUAMBA_SSD_EMULATE 1
#define __host__
#define __device__
#define __global__
#define __shared__
#define __forceinline__ inline
#define __launch_bounds__(...)

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace emu {

constexpr int kMaxThreads = 128;
constexpr size_t kStack = 256 * 1024;

struct Fiber {
  ucontext_t ctx;
  std::vector<char> stack;
  bool done = false, waiting = false;
  int wait_id = -1;  // 0 = block barrier, 1 + w = warp w
  unsigned wait_gen = 0;
  struct Copy {
    void* dst;
    unsigned char bytes[16];
    bool valid;
  };
  std::vector<Copy> pending;
};

struct Barrier {
  int count = 0;
  unsigned gen = 0;
};

struct Range {
  const char* lo;
  const char* hi;
};

ucontext_t sched_ctx;
Fiber fibers[kMaxThreads];
int nthreads = 0, cur = 0;
Barrier bars[1 + kMaxThreads / 32];
dim3 block_idx, grid_dim, block_dim;
std::vector<unsigned char> smem;
std::vector<Range> gmem;
std::string error;
std::mt19937 rng;
bool greedy = false;          // schedule: false = any ready thread at random; true = warp-greedy
int warp_rank[kMaxThreads / 32];  // warp-greedy: the lowest-ranked warp with a ready thread runs
bool redraw = true;               // new warp ranks after every block barrier

[[noreturn]] void fail(const std::string& msg) {
  if (error.empty()) error = msg;
  throw std::runtime_error(msg);
}

void arrive(int id, int target) {
  Barrier& br = bars[id];
  if (id == 0) {
    for (int i = 0; i < nthreads; ++i) {
      if (fibers[i].done) fail("__syncthreads with exited threads");
    }
  }
  if (++br.count == target) {
    br.count = 0;
    if (id == 0) redraw = true;
    const unsigned g = br.gen++;
    for (int i = 0; i < nthreads; ++i) {
      if (fibers[i].waiting && fibers[i].wait_id == id && fibers[i].wait_gen == g) fibers[i].waiting = false;
    }
    return;
  }
  Fiber& f = fibers[cur];
  f.waiting = true;
  f.wait_id = id;
  f.wait_gen = br.gen;
  swapcontext(&f.ctx, &sched_ctx);
  if (!error.empty()) throw std::runtime_error(error);
}

inline int lane() { return cur & 31; }
inline int warp() { return cur >> 5; }
void warp_sync() { arrive(1 + warp(), 32); }

// slots for warp collectives: 32 lanes x up to 16 words
uint64_t slots[kMaxThreads / 32][32][16];

template <class T>
T shfl(T v, int src) {
  static_assert(sizeof(T) <= 8, "");
  uint64_t u = 0;
  memcpy(&u, &v, sizeof(T));
  slots[warp()][lane()][0] = u;
  warp_sync();
  T r;
  uint64_t s = slots[warp()][src & 31][0];
  memcpy(&r, &s, sizeof(T));
  warp_sync();
  return r;
}

const unsigned char* smem_check(const void* p, size_t bytes, size_t align, const char* what) {
  const unsigned char* c = static_cast<const unsigned char*>(p);
  if (c < smem.data() || c + bytes > smem.data() + smem.size()) fail(std::string(what) + ": address outside shared memory");
  if ((c - smem.data()) % align != 0) fail(std::string(what) + ": misaligned shared address");
  return c;
}

float h2f(uint16_t b) { return __half2float(__ushort_as_half(b)); }
uint16_t f2h(float f) { return __half_as_ushort(__float2half_rn(f)); }

void fiber_main(void (*kernel)(const void*), const void* params) {
  kernel(params);
  fibers[cur].done = true;
}

}  // namespace emu

struct EmuIdx {
  unsigned x, y, z;
};
inline EmuIdx emu_thread_idx() { return {unsigned(emu::cur), 0u, 0u}; }
inline EmuIdx emu_block_idx() { return {emu::block_idx.x, emu::block_idx.y, emu::block_idx.z}; }
inline EmuIdx emu_block_dim() { return {unsigned(emu::nthreads), 1u, 1u}; }
#define threadIdx (emu_thread_idx())
#define blockIdx (emu_block_idx())
#define blockDim (emu_block_dim())

inline void __syncthreads() { emu::arrive(0, emu::nthreads); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::warp_sync(); }
template <class T>
T __shfl_sync(unsigned, T v, int src, int = 32) { return emu::shfl(v, src); }
template <class T>
T __shfl_xor_sync(unsigned, T v, int m, int = 32) { return emu::shfl(v, emu::lane() ^ m); }
template <class T>
T __shfl_up_sync(unsigned, T v, unsigned d, int = 32) {
  const int l = emu::lane();
  return emu::shfl(v, l >= int(d) ? l - int(d) : l);
}
template <class T>
T __shfl_down_sync(unsigned, T v, unsigned d, int = 32) {
  const int l = emu::lane();
  return emu::shfl(v, l + int(d) < 32 ? l + int(d) : l);
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const uint64_t v = (uint64_t(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) {
    const unsigned sel = (s >> (4 * i)) & 0xfu;
    unsigned byte = (v >> (8 * (sel & 7))) & 0xffu;
    if (sel & 8) byte = (byte & 0x80u) ? 0xffu : 0u;  // sign-replicate mode
    r |= byte << (8 * i);
  }
  return r;
}
inline unsigned __umulhi(unsigned a, unsigned b) { return unsigned((uint64_t(a) * b) >> 32); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }  // the shared norm helpers (not emulated)
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __int2float_rn(int i) { return static_cast<float>(i); }
inline int __float2int_rn(float f) { return static_cast<int>(std::nearbyint(f)); }
inline void __trap() { emu::fail("__trap"); }

namespace quamba {
namespace ssdc {

inline unsigned char* dyn_smem() { return emu::smem.data(); }

inline void cp_async16(void* dst, const void* src, bool valid) {
  emu::smem_check(dst, 16, 16, "cp.async dst");
  emu::Fiber::Copy c;
  c.dst = dst;
  c.valid = valid;
  if (valid) {
    const char* s = static_cast<const char*>(src);
    if (reinterpret_cast<uintptr_t>(s) % 16 != 0) emu::fail("cp.async: misaligned global source");
    bool in = false;
    for (const auto& r : emu::gmem) in = in || (s >= r.lo && s + 16 <= r.hi);
    if (!in) emu::fail("cp.async: global source outside every input tensor");
    memcpy(c.bytes, s, 16);
  }
  memset(dst, 0xA5, 16);  // in flight: garbage until the wait
  emu::fibers[emu::cur].pending.push_back(c);
}
inline void cp_async_commit() {}
inline void cp_async_wait_all() {
  for (auto& c : emu::fibers[emu::cur].pending) {
    if (c.valid) {
      memcpy(c.dst, c.bytes, 16);
    } else {
      memset(c.dst, 0, 16);
    }
  }
  emu::fibers[emu::cur].pending.clear();
}

// ldmatrix .x4 (.trans): lanes 8m..8m+7 address the rows of matrix m; lane l receives, from matrix m,
// row l/4 words (l%4) (plain) or the halves (2(l%4)+e, l/4) (trans, e = 0 in the low half).
template <bool TRANS>
inline void ldsm(uint32_t (&r)[4], const void* row) {
  const int l = emu::lane(), w = emu::warp();
  emu::smem_check(row, 16, 16, TRANS ? "ldmatrix.trans" : "ldmatrix");
  emu::slots[w][l][0] = reinterpret_cast<uintptr_t>(row);
  emu::warp_sync();
  for (int m = 0; m < 4; ++m) {
    if (!TRANS) {
      const unsigned char* a = reinterpret_cast<const unsigned char*>(emu::slots[w][8 * m + l / 4][0]);
      memcpy(&r[m], a + 4 * (l % 4), 4);
    } else {
      uint16_t hh[2];
      for (int e = 0; e < 2; ++e) {
        const unsigned char* a = reinterpret_cast<const unsigned char*>(emu::slots[w][8 * m + 2 * (l % 4) + e][0]);
        memcpy(&hh[e], a + 2 * (l / 4), 2);
      }
      r[m] = uint32_t(hh[0]) | (uint32_t(hh[1]) << 16);
    }
  }
  emu::warp_sync();
}
inline void ldsm_x4(uint32_t (&r)[4], const void* row) { ldsm<false>(r, row); }
inline void ldsm_x4_t(uint32_t (&r)[4], const void* row) { ldsm<true>(r, row); }

// mma.m16n8k32 s8: A r(i) rows g / g+8 (i odd), k 4q + 16 (i >= 2) + byte; B r0 k 4q + byte, r1 + 16; col g.
inline void mma_s8(int (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  const int l = emu::lane(), w = emu::warp();
  uint64_t* s = emu::slots[w][l];
  for (int i = 0; i < 4; ++i) s[i] = a[i];
  s[4] = b0;
  s[5] = b1;
  emu::warp_sync();
  int A[16][32], B[32][8];
  for (int t = 0; t < 32; ++t) {
    const int g = t / 4, q = t % 4;
    for (int i = 0; i < 4; ++i) {
      for (int by = 0; by < 4; ++by) {
        const int8_t v = static_cast<int8_t>((emu::slots[w][t][i] >> (8 * by)) & 0xff);
        A[g + 8 * (i & 1)][4 * q + 16 * (i >> 1) + by] = v;
      }
    }
    for (int i = 0; i < 2; ++i) {
      for (int by = 0; by < 4; ++by) {
        B[4 * q + 16 * i + by][g] = static_cast<int8_t>((emu::slots[w][t][4 + i] >> (8 * by)) & 0xff);
      }
    }
  }
  const int g = l / 4, q = l % 4;
  for (int r = 0; r < 4; ++r) {
    const int row = g + 8 * (r >> 1), col = 2 * q + (r & 1);
    int sum = 0;
    for (int k = 0; k < 32; ++k) sum += A[row][k] * B[k][col];
    c[r] += sum;
  }
  emu::warp_sync();
}

// mma.m16n8k16 f16 -> f32: A r0 (g, 2q..), r1 (g+8, 2q..), r2 (g, 8+2q..), r3 (g+8, 8+2q..); B r0 (k 2q.., col g),
// r1 (k 8+2q..); the low half holds the smaller index. Products exact; sum in fp32, k ascending.
inline void mma_f16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  const int l = emu::lane(), w = emu::warp();
  uint64_t* s = emu::slots[w][l];
  for (int i = 0; i < 4; ++i) s[i] = a[i];
  s[4] = b0;
  s[5] = b1;
  emu::warp_sync();
  float A[16][16], B[16][8];
  for (int t = 0; t < 32; ++t) {
    const int g = t / 4, q = t % 4;
    for (int i = 0; i < 4; ++i) {
      const uint32_t v = uint32_t(emu::slots[w][t][i]);
      for (int e = 0; e < 2; ++e) A[g + 8 * (i & 1)][2 * q + 8 * (i >> 1) + e] = emu::h2f(uint16_t(v >> (16 * e)));
    }
    for (int i = 0; i < 2; ++i) {
      const uint32_t v = uint32_t(emu::slots[w][t][4 + i]);
      for (int e = 0; e < 2; ++e) B[2 * q + 8 * i + e][g] = emu::h2f(uint16_t(v >> (16 * e)));
    }
  }
  const int g = l / 4, q = l % 4;
  for (int r = 0; r < 4; ++r) {
    const int row = g + 8 * (r >> 1), col = 2 * q + (r & 1);
    float sum = c[r];
    for (int k = 0; k < 16; ++k) sum += A[row][k] * B[k][col];
    c[r] = sum;
  }
  emu::warp_sync();
}

inline uint32_t hsub2_bits(uint32_t a, uint32_t b) {
  uint32_t r = 0;
  for (int e = 0; e < 2; ++e) {
    const float d = emu::h2f(uint16_t(a >> (16 * e))) - emu::h2f(uint16_t(b >> (16 * e)));
    r |= uint32_t(emu::f2h(d)) << (16 * e);
  }
  return r;
}

}  // namespace ssdc
}  // namespace quamba

#include "../../plugins/kernels/quant_ssd.cu"
#include "../../plugins/kernels/ssd.cu"

namespace {

template <int N, int PT, class Prm>
void kernel_entry(const void* prm) {
  quamba::ssdc::chunked_kernel<N, PT, Prm>(*static_cast<const Prm*>(prm));
}

void trampoline(unsigned lo, unsigned hi, unsigned plo, unsigned phi) {
  auto k = reinterpret_cast<void (*)(const void*)>((uintptr_t(hi) << 32) | lo);
  const void* prm = reinterpret_cast<const void*>((uintptr_t(phi) << 32) | plo);
  try {
    emu::fiber_main(k, prm);
  } catch (const std::exception&) {
    emu::fibers[emu::cur].done = true;  // error recorded; the scheduler stops
  }
}

void run_block(void (*k)(const void*), const void* prm, int threads) {
  emu::nthreads = threads;
  for (auto& b : emu::bars) b = emu::Barrier{};
  for (int i = 0; i < threads; ++i) {
    emu::Fiber& f = emu::fibers[i];
    f.done = f.waiting = false;
    f.pending.clear();
    f.stack.resize(emu::kStack);
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.data();
    f.ctx.uc_stack.ss_size = f.stack.size();
    f.ctx.uc_link = &emu::sched_ctx;
    const uintptr_t kp = reinterpret_cast<uintptr_t>(k), pp = reinterpret_cast<uintptr_t>(prm);
    makecontext(&f.ctx, reinterpret_cast<void (*)()>(trampoline), 4, unsigned(kp), unsigned(kp >> 32), unsigned(pp),
                unsigned(pp >> 32));
  }
  std::vector<int> ready;
  emu::redraw = true;
  for (;;) {
    if (emu::redraw) {  // warp-greedy: a random warp order until the next block barrier
      const int nw = (threads + 31) / 32;
      for (int w = 0; w < nw; ++w) emu::warp_rank[w] = w;
      for (int w = nw - 1; w > 0; --w) std::swap(emu::warp_rank[w], emu::warp_rank[emu::rng() % (w + 1)]);
      emu::redraw = false;
    }
    ready.clear();
    int done = 0;
    for (int i = 0; i < threads; ++i) {
      if (emu::fibers[i].done) {
        ++done;
      } else if (!emu::fibers[i].waiting) {
        ready.push_back(i);
      }
    }
    if (!emu::error.empty()) return;
    if (done == threads) return;
    if (ready.empty()) {
      emu::error = "deadlock: every live thread waits at a barrier";
      return;
    }
    if (emu::greedy) {  // keep only the ready threads of the best-ranked warp: it runs ahead of the others
      int best = 1 << 30;
      for (int i : ready) best = std::min(best, emu::warp_rank[i >> 5]);
      size_t k = 0;
      for (int i : ready) {
        if (emu::warp_rank[i >> 5] == best) ready[k++] = i;
      }
      ready.resize(k);
    }
    emu::cur = ready[emu::rng() % ready.size()];
    swapcontext(&emu::sched_ctx, &emu::fibers[emu::cur].ctx);
  }
}

}  // namespace

extern "C" {

// offsets of QuambaQuantSSDParams' fields, in declaration order, then its size (checked by the ctypes mirror)
int emu_params_layout(long long* out, int cap) {
  const long long v[] = {
#define OFF(f) (long long)offsetof(QuambaQuantSSDParams, f)
      OFF(batch), OFF(seqlen), OFF(nheads), OFF(headdim), OFF(ngroups), OFF(dstate), OFF(chunk_size), OFF(x),
      OFF(x_batch_stride), OFF(x_seq_stride), OFF(x_scale), OFF(dt), OFF(dt_batch_stride), OFF(dt_seq_stride),
      OFF(dt_scale), OFF(dt_bias), OFF(A_log), OFF(A_log_scale), OFF(B), OFF(B_batch_stride), OFF(B_seq_stride),
      OFF(B_scale), OFF(C), OFF(C_batch_stride), OFF(C_seq_stride), OFF(C_scale), OFF(D), OFF(D_scale),
      OFF(dt_limit_lo), OFF(dt_limit_hi), OFF(state_type), OFF(state_in), OFF(state_out), OFF(state_scale),
      OFF(state_scale_row), OFF(y), OFF(y_batch_stride), OFF(y_seq_stride), OFF(p_tile), OFF(staging),
#undef OFF
      (long long)sizeof(QuambaQuantSSDParams)};
  const int n = int(sizeof(v) / sizeof(v[0]));
  for (int i = 0; i < n && i < cap; ++i) out[i] = v[i];
  return n;
}

int emu_smem_bytes(int n, int pt) {
  using namespace quamba::ssdc;
  if (n == 64) return pt == 32 ? Cfg<64, 32>::SMEM_BYTES : Cfg<64, 64>::SMEM_BYTES;
  if (n == 128) return pt == 32 ? Cfg<128, 32>::SMEM_BYTES : Cfg<128, 64>::SMEM_BYTES;
  return Cfg<256, 32>::SMEM_BYTES;
}

}  // extern "C"

namespace {

// Runs the whole grid. ranges: [lo, hi) byte ranges of the input tensors cp.async may read. Returns 0, or
// 1 with the message in emu_error().
template <class Prm>
int run_grid(const Prm* p, int pt, const void* const* range_lo, const void* const* range_hi, int nranges,
             unsigned seed) {
  using namespace quamba::ssdc;
  constexpr bool f16 = IsF16<Prm>::value;
  emu::error.clear();
  emu::rng.seed(seed);
  emu::greedy = (seed & 1) != 0;  // odd seeds: warp-greedy (exposes missing barriers), even: uniform
  emu::gmem.clear();
  for (int i = 0; i < nranges; ++i) {
    emu::gmem.push_back({static_cast<const char*>(range_lo[i]), static_cast<const char*>(range_hi[i])});
  }
  void (*k)(const void*) = nullptr;
  int smem = 0;
  if (p->dstate == 64) {
    k = pt == 32 ? kernel_entry<64, 32, Prm> : kernel_entry<64, 64, Prm>;
    smem = pt == 32 ? Cfg<64, 32, f16>::SMEM_BYTES : Cfg<64, 64, f16>::SMEM_BYTES;
  }
  if (p->dstate == 128) {
    k = pt == 32 ? kernel_entry<128, 32, Prm> : kernel_entry<128, 64, Prm>;
    smem = pt == 32 ? Cfg<128, 32, f16>::SMEM_BYTES : Cfg<128, 64, f16>::SMEM_BYTES;
  }
  if (p->dstate == 256 && pt == 32) {
    k = kernel_entry<256, 32, Prm>;
    smem = Cfg<256, 32, f16>::SMEM_BYTES;
  }
  if (k == nullptr) {
    emu::error = "unsupported d_state / tile";
    return 1;
  }
  emu::smem.assign(size_t(smem), 0xEE);
  const int gx = (p->headdim + pt - 1) / pt;
  for (int bz = 0; bz < p->batch; ++bz) {
    for (int by = 0; by < p->nheads; ++by) {
      for (int bx = 0; bx < gx; ++bx) {
        emu::block_idx = dim3(bx, by, bz);
        std::fill(emu::smem.begin(), emu::smem.end(), 0xEE);  // stale shared memory: garbage
        run_block(k, p, kThreads);
        if (!emu::error.empty()) return 1;
      }
    }
  }
  return 0;
}

}  // namespace

extern "C" {

int emu_run(const QuambaQuantSSDParams* p, int pt, const void* const* range_lo, const void* const* range_hi,
            int nranges, unsigned seed) {
  return run_grid(p, pt, range_lo, range_hi, nranges, seed);
}

// the float op (QuambaSSDParams, fp16 rows; ssd.cu's instantiation)
int emu_run_f16(const QuambaSSDParams* p, int pt, const void* const* range_lo, const void* const* range_hi,
                int nranges, unsigned seed) {
  return run_grid(p, pt, range_lo, range_hi, nranges, seed);
}

// offsets of QuambaSSDParams' fields, in declaration order, then its size
int emu_f16_params_layout(long long* out, int cap) {
  const long long v[] = {
#define OFF(f) (long long)offsetof(QuambaSSDParams, f)
      OFF(batch), OFF(seqlen), OFF(nheads), OFF(headdim), OFF(ngroups), OFF(dstate), OFF(chunk_size), OFF(x),
      OFF(x_batch_stride), OFF(x_seq_stride), OFF(dt), OFF(dt_type), OFF(dt_batch_stride), OFF(dt_seq_stride),
      OFF(A), OFF(B), OFF(B_batch_stride), OFF(B_seq_stride), OFF(C), OFF(C_batch_stride), OFF(C_seq_stride),
      OFF(D), OFF(state_type), OFF(state_in), OFF(state_out), OFF(y), OFF(y_batch_stride), OFF(y_seq_stride),
#undef OFF
      (long long)sizeof(QuambaSSDParams)};
  const int n = int(sizeof(v) / sizeof(v[0]));
  for (int i = 0; i < n && i < cap; ++i) out[i] = v[i];
  return n;
}

const char* emu_error() { return emu::error.c_str(); }

}  // extern "C"
