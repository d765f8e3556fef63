// torch binding of quant_embedding (plugins/kernels/quant_embedding.cu).
// torch.ops.quamba_kernels.quant_embedding(ids, table, row_scale, bits, out) -> ()
// ids int32 / int64 [...]; table int8 [V, d] (bits 8) or uint8 [V, ceil(d/2)] packed int4 (bits 4, low nibble
// first, offset binary), unit element stride, free row stride; row_scale fp16 [V]; out fp32 / fp16 / bf16
// [..., d] with ids' shape in front (d is read from out). An id outside [0, V) gives a row of zeros.
#include "m2_binding_utils.h"
#include "quamba_kernels/quant_embedding.h"

#include <limits>

namespace {

void quant_embedding(const at::Tensor& ids, const at::Tensor& table, const at::Tensor& row_scale, int64_t bits,
                     at::Tensor& out) {
  QM2_CHECK(bits == 8 || bits == 4, "bits must be 8 or 4, got ", bits);
  QM2_CHECK(ids.is_cuda(), "ids must be a CUDA tensor");
  QM2_CHECK(ids.scalar_type() == at::kInt || ids.scalar_type() == at::kLong, "ids must be int32 or int64, got ",
            c10::toString(ids.scalar_type()));
  QM2_CHECK(out.dim() == ids.dim() + 1, "out must be [*ids.shape, d] (", ids.dim() + 1, " dims), got ",
            out.sizes());
  QM2_CHECK(out.sizes().slice(0, ids.dim()) == ids.sizes(), "out must start with ids' shape ", ids.sizes(),
            ", got ", out.sizes());
  const int64_t d = out.size(-1);
  QM2_CHECK(d >= 1 && d <= std::numeric_limits<int>::max(), "embedding dim d must be in [1, 2^31), got ", d);
  const int64_t row_bytes = bits == 8 ? d : (d + 1) / 2;
  quamba_torch::check_tensor(table, "table", bits == 8 ? at::kChar : at::kByte, 2);
  const int64_t v = table.size(0);
  QM2_CHECK(v >= 1 && table.size(1) == row_bytes, "table must be [V >= 1, ", row_bytes, "] for bits ", bits,
            " and d=", d, ", got ", table.sizes());
  // the kernel walks rows by stride (a slice of a wider table is fine) but needs bytes of one row adjacent
  QM2_CHECK(table.stride(1) == 1 && (v == 1 || table.stride(0) >= row_bytes),
            "table must have unit element stride and non-overlapping rows, got strides ", table.strides());
  quamba_torch::check_tensor(row_scale, "row_scale", at::kHalf, 1);
  QM2_CHECK(row_scale.size(0) == v, "row_scale must be [", v, "], got ", row_scale.sizes());
  quamba_torch::check_same_device(ids, table, "table");
  quamba_torch::check_same_device(ids, row_scale, "row_scale");
  quamba_torch::check_same_device(ids, out, "out");
  const at::Tensor idc = ids.contiguous();
  const at::Tensor rs = row_scale.contiguous();
  const at::Tensor orr = quamba_m2::as_rows(out, d, "out", true);
  QM2_CHECK(orr.size(0) <= std::numeric_limits<int>::max(), "at most 2^31 - 1 tokens, got ", orr.size(0));
  c10::cuda::CUDAGuard guard(ids.device());
  QuambaQuantEmbeddingParams p{};
  p.tokens = orr.size(0);
  p.vocab = v;
  p.dim = static_cast<int>(d);
  p.bits = static_cast<int>(bits);
  p.ids = idc.data_ptr();
  p.ids_int64 = ids.scalar_type() == at::kLong ? 1 : 0;
  p.table = static_cast<const uint8_t*>(table.data_ptr());
  p.table_row_stride = v == 1 ? row_bytes : table.stride(0);  // a one-row table's stride may be anything
  p.row_scale = reinterpret_cast<const uint16_t*>(rs.data_ptr<at::Half>());
  p.out_dtype = quamba_m2::float_code(out, "out");
  p.out = orr.data_ptr();
  p.out_row_stride = orr.stride(0);
  if (p.tokens == 0) return;
  quamba_torch::check_cuda(quamba_quant_embedding(&p, quamba_torch::stream()), "quant_embedding");
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(quamba_kernels, m) {
  m.def("quant_embedding(Tensor ids, Tensor table, Tensor row_scale, int bits, Tensor(a!) out) -> ()");
}

TORCH_LIBRARY_IMPL(quamba_kernels, CUDA, m) { m.impl("quant_embedding", &quant_embedding); }
