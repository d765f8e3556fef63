// TensorRT plugin of W4A8Linear (quamba_edge/ops/w4a8_linear.py) over quamba_w4a8_linear
// (plugins/kernels/w4a8_linear.cu): int8 x [B, L, K] times int4 weights with Marlin-QQQ two-level scales
// (fp16 s_group [N, ceil(K/group_size)], fp32 s_channel [N]) on int8 tensor cores; y int8 (out_int8 = 1) or
// float16. One call serves prefill and decode (the kernel's GEMV for M = B * L <= 16, else its tiled GEMM).
//
// qweight is the record's uint8 [N, ceil(K/2)] (two codes per byte, low nibble first) carried as int8, the same
// bytes: TensorRT plugins take no uint8 tensors (trt_fields.prepare_trt_graph retypes the initializer). x_scale
// and every per-row scale are device arrays of the kernel's C ABI. The kernel needs K % 32 == 0, K <= 65536, a
// group size that is a multiple of 32 or covers the row (checked at createPlugin), and x / qweight 16-byte
// aligned (checked in enqueue).
#include "linear_common.h"
#include "plugin_common.h"
#include "quamba_kernels/w4a8_linear.h"

namespace quamba_trt {
namespace {

namespace op = gen::W4A8Linear;
namespace in = op::inputs;
namespace fl = op::fields;

class W4A8LinearPlugin final : public Plugin {
 public:
  static constexpr const gen::OpSpec& spec() { return op::kSpec; }
  W4A8LinearPlugin(std::string layer, Fields f) : Plugin(op::kSpec, std::move(layer), std::move(f)) {}

  static std::string validate(const Fields& f) {
    std::string why = lin::check_out_int8(f.i(fl::out_int8));
    if (why.empty()) why = lin::check_w4_fields(f.i(fl::in_features), f.i(fl::group_size));
    return why;
  }

 protected:
  uint32_t variant_mask() const override { return lin::y_mask(op::kSpec, op::outputs::y, out_int8()); }

  std::string check(const Bound& b) const override {
    return lin::check_w4_shapes(b, op::syms::K, op::syms::ceil_K_2, op::syms::ceil_K_group_size, k(),
                                fields().i(fl::group_size), "x_q", "s_group");
  }

  std::string run(const Launch& l) override {
    const int64_t K = k(), N = l.b[op::syms::N];
    QuambaW4A8LinearParams p{};
    p.m = l.b[op::syms::B] * l.b[op::syms::L];
    if (p.m == 0 || N == 0) return {};  // nothing to write (the kernel takes M, N >= 1)
    std::string why = lin::check_aligned16(l.in[in::x_q], "x_q");
    if (why.empty()) why = lin::check_aligned16(l.in[in::qweight], "qweight");
    if (!why.empty()) return why;
    p.n = static_cast<int>(N);
    p.k = static_cast<int>(K);
    p.x = l.input<int8_t>(in::x_q);
    p.x_row_stride = K;
    p.x_scale = l.input<float>(in::x_scale);
    p.qweight = l.input<uint8_t>(in::qweight);  // int8 in TensorRT, the packed bytes unchanged
    p.w_row_stride = (K + 1) / 2;
    p.s_group = l.input<uint16_t>(in::s_group);
    p.s_group_row_stride = lin::group_count(fields().i(fl::group_size), K);
    p.group_size = static_cast<int>(lin::effective_group(fields().i(fl::group_size), K));
    p.s_channel = l.input<float>(in::s_channel);
    p.bias = l.input<float>(in::bias);  // zeros when the layer has none: adding 0 is exact
    if (out_int8()) {
      p.out_scale = l.input<float>(in::out_scale);
      p.out_scale_stride = 1;
    }
    p.y_dtype = lin::y_code(out_int8());
    p.y = l.out[op::outputs::y];
    p.y_row_stride = N;
    return cuda_status(quamba_w4a8_linear(&p, l.stream), "quamba_w4a8_linear");
  }

  Plugin* copy() const override { return new W4A8LinearPlugin(*this); }

 private:
  bool out_int8() const { return fields().i(fl::out_int8) != 0; }
  int64_t k() const { return fields().i(fl::in_features); }
};

}  // namespace
}  // namespace quamba_trt

QUAMBA_TRT_PLUGIN(quamba_trt::W4A8LinearPlugin)
