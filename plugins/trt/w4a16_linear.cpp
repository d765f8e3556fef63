// TensorRT plugin of W4A16Linear (quamba_edge/ops/w4a16_linear.py) over quamba_w4a16_linear
// (plugins/kernels/w4a16_linear.cu): float16 x [B, L, K] times int4 weights with fp16 group scales
// [N, ceil(K/group_size)] on fp16 tensor cores (fp32 sums); y float16. One call serves prefill and decode (the
// kernel's GEMV for M = B * L <= 16, else its tiled GEMM).
//
// qweight is the record's uint8 [N, ceil(K/2)] carried as int8, the same bytes (TensorRT plugins take no uint8
// tensors; trt_fields.prepare_trt_graph retypes the initializer). The kernel needs K % 32 == 0, K <= 65536, a
// group size that is a multiple of 32 or covers the row (checked at createPlugin), and x / qweight 16-byte
// aligned (checked in enqueue).
#include "linear_common.h"
#include "plugin_common.h"
#include "quamba_kernels/w4a16_linear.h"

namespace quamba_trt {
namespace {

namespace op = gen::W4A16Linear;
namespace in = op::inputs;
namespace fl = op::fields;

class W4A16LinearPlugin final : public Plugin {
 public:
  static constexpr const gen::OpSpec& spec() { return op::kSpec; }
  W4A16LinearPlugin(std::string layer, Fields f) : Plugin(op::kSpec, std::move(layer), std::move(f)) {}

  static std::string validate(const Fields& f) {
    return lin::check_w4_fields(f.i(fl::in_features), f.i(fl::group_size));
  }

 protected:
  std::string check(const Bound& b) const override {
    return lin::check_w4_shapes(b, op::syms::K, op::syms::ceil_K_2, op::syms::ceil_K_group_size, k(),
                                fields().i(fl::group_size), "x", "scale");
  }

  std::string run(const Launch& l) override {
    const int64_t K = k(), N = l.b[op::syms::N];
    QuambaW4A16LinearParams p{};
    p.m = l.b[op::syms::B] * l.b[op::syms::L];
    if (p.m == 0 || N == 0) return {};  // nothing to write (the kernel takes M, N >= 1)
    std::string why = lin::check_aligned16(l.in[in::x], "x");
    if (why.empty()) why = lin::check_aligned16(l.in[in::qweight], "qweight");
    if (!why.empty()) return why;
    p.n = static_cast<int>(N);
    p.k = static_cast<int>(K);
    p.x = l.input<uint16_t>(in::x);
    p.x_row_stride = K;
    p.qweight = l.input<uint8_t>(in::qweight);  // int8 in TensorRT, the packed bytes unchanged
    p.w_row_stride = (K + 1) / 2;
    p.scale = l.input<uint16_t>(in::scale);
    p.scale_row_stride = lin::group_count(fields().i(fl::group_size), K);
    p.group_size = static_cast<int>(lin::effective_group(fields().i(fl::group_size), K));
    p.bias = l.input<float>(in::bias);  // zeros when the layer has none: adding 0 is exact
    p.y_dtype = QUAMBA_DT_F16;
    p.y = l.out[op::outputs::y];
    p.y_row_stride = N;
    return cuda_status(quamba_w4a16_linear(&p, l.stream), "quamba_w4a16_linear");
  }

  Plugin* copy() const override { return new W4A16LinearPlugin(*this); }

 private:
  int64_t k() const { return fields().i(fl::in_features); }
};

}  // namespace
}  // namespace quamba_trt

QUAMBA_TRT_PLUGIN(quamba_trt::W4A16LinearPlugin)
