// QuantEmbedding: gather one quantized table row per token and dequantize it (W8, or packed W4 unpacked in
// registers). Contract: quamba_edge/ops/quant_embedding.py (see quamba_kernels/quant_embedding.h).
//
// One block per (token, slice of the row): each thread reads 4 table bytes at a time (8 int4 or 4 int8
// values) when the row is 4-byte aligned, else single bytes; the row's scale is read once per thread. The
// work is a few KB per token, so a decode step is launch-bound: the point is one launch instead of the torch
// gather + unpack + multiply chain, and reading V/2 .. V bytes per row instead of a dequantized table.
#include "quamba_kernels/quant_embedding.h"

#include "quamba_kernels/common.cuh"
#include "quamba_kernels/mamba2_common.cuh"

namespace quamba {
namespace {

constexpr int kThreads = 128;
constexpr int kBytesPerBlock = kThreads * 4;  // table bytes one block covers (one 4-byte word per thread)

__device__ __forceinline__ float code_value(uint32_t byte, int bits, int half) {
  if (bits == 8) return static_cast<float>(static_cast<int8_t>(byte));
  return static_cast<float>(static_cast<int>(half ? (byte >> 4) : (byte & 15u)) - 8);
}

__global__ void __launch_bounds__(kThreads) quant_embedding_kernel(const QuambaQuantEmbeddingParams p) {
  const int64_t t = blockIdx.x;
  const int64_t id = p.ids_int64 ? static_cast<const int64_t*>(p.ids)[t] : static_cast<const int32_t*>(p.ids)[t];
  const int row_bytes = p.bits == 8 ? p.dim : (p.dim + 1) / 2;
  const int per_byte = p.bits == 8 ? 1 : 2;
  const int b0 = blockIdx.y * kBytesPerBlock + threadIdx.x * 4;  // this thread's first byte of the row
  if (b0 >= row_bytes) return;
  const int64_t oo = t * p.out_row_stride;
  const bool valid = id >= 0 && id < p.vocab;
  const float s = valid ? f16_bits_to_f32(p.row_scale[id]) : 0.0f;
  const uint8_t* row = p.table + (valid ? id : 0) * p.table_row_stride;
  uint32_t word = 0;
  const int nb = row_bytes - b0 < 4 ? row_bytes - b0 : 4;
  if (valid) {
    if (nb == 4 && (reinterpret_cast<uintptr_t>(row + b0) & 3u) == 0) {
      word = *reinterpret_cast<const uint32_t*>(row + b0);
    } else {
      for (int k = 0; k < nb; ++k) word |= uint32_t(row[b0 + k]) << (8 * k);
    }
  }
  for (int k = 0; k < nb; ++k) {
    const uint32_t byte = (word >> (8 * k)) & 0xffu;
    for (int h = 0; h < per_byte; ++h) {
      const int j = (b0 + k) * per_byte + h;
      if (j < p.dim) {
        // value * scale in fp32 (exact for fp16 scales), then one rounding to the output dtype; an invalid id
        // stores +0 (s = 0 and the value is not read)
        m2::store_float(p.out, oo + j, p.out_dtype, valid ? __fmul_rn(code_value(byte, p.bits, h), s) : 0.0f);
      }
    }
  }
}

}  // namespace
}  // namespace quamba

extern "C" QUAMBA_API cudaError_t quamba_quant_embedding(const QuambaQuantEmbeddingParams* p, cudaStream_t stream) {
  QUAMBA_CHECK_ARG(p != nullptr && p->ids != nullptr && p->table != nullptr && p->row_scale != nullptr &&
                   p->out != nullptr);
  QUAMBA_CHECK_ARG(p->bits == 8 || p->bits == 4);
  QUAMBA_CHECK_ARG(p->tokens >= 0 && p->tokens <= 0x7fffffffLL && p->vocab >= 1 && p->dim >= 1);
  QUAMBA_CHECK_ARG(p->out_dtype == QUAMBA_DT_F32 || p->out_dtype == QUAMBA_DT_F16 || p->out_dtype == QUAMBA_DT_BF16);
  const int row_bytes = p->bits == 8 ? p->dim : (p->dim + 1) / 2;
  QUAMBA_CHECK_ARG(p->table_row_stride >= row_bytes && p->out_row_stride >= p->dim);
  if (p->tokens == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(p->tokens),
                  static_cast<unsigned>(quamba::ceil_div(row_bytes, quamba::kBytesPerBlock)));
  quamba::quant_embedding_kernel<<<grid, quamba::kThreads, 0, stream>>>(*p);
  return cudaGetLastError();
}
