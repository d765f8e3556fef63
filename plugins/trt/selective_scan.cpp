// TensorRT plugin of SelectiveScan (quamba_edge/ops/selective_scan.py): Mamba1's float selective scan (fp16
// baseline and W4A16 models). One node serves prefill and decode, as in the record: L > 1 runs
// quamba_selective_scan (plugins/kernels/selective_scan.cu), L = 1 the decode kernel quamba_selective_state_update
// (plugins/kernels/selective_state_update.cu); L = 0 copies the state through.
//
// Dtypes: exactly the record's variant with T = float16 (u, delta, B, C, z, y and the state fp16; A, D,
// delta_bias fp32), which is what the kernels take (fp16 activations, QUAMBA_SSD_STATE_F16). T = float32 (the ONNX
// Runtime graph) is not offered: the kernels have no fp32 activations. Unlike the quantized Mamba1 kernels, these
// keep an fp16 state themselves (fp32 math), so the state goes to them as it is: no conversion passes, no
// workspace. Should the record ever give the state a float32 variant, it maps onto QUAMBA_SSD_STATE_F32.
//
// Limits: d_state N in 1..256 (selective_scan.h), checked at configurePlugin and again in enqueue.
#include "plugin_common.h"
#include "quamba_kernels/selective_scan.h"
#include "quamba_kernels/selective_state_update.h"

namespace quamba_trt {
namespace {

namespace op = gen::SelectiveScan;
namespace in = op::inputs;
namespace fl = op::fields;

class SelectiveScanPlugin final : public Plugin {
 public:
  static constexpr const gen::OpSpec& spec() { return op::kSpec; }
  SelectiveScanPlugin(std::string layer, Fields f) : Plugin(op::kSpec, std::move(layer), std::move(f)) {}

  static std::string validate(const Fields& f) {
    const int32_t s = f.i(fl::delta_softplus);
    if (s != 0 && s != 1) return cat("delta_softplus must be 0 or 1, got ", s);
    return {};
  }

 protected:
  std::string check(const Bound& b) const override {
    if (b.known(op::syms::N) && (b[op::syms::N] < 1 || b[op::syms::N] > 256))
      return cat("d_state N = ", b[op::syms::N], " is outside the kernels' 1..256");
    return {};
  }

  std::string run(const Launch& l) override {
    const int64_t B = l.b[op::syms::B], L = l.b[op::syms::L], E = l.b[op::syms::E], N = l.b[op::syms::N];
    const int64_t n_state = B * E * N;
    if (n_state == 0) return {};
    if (L == 0)  // no tokens: the state passes through unchanged
      return cuda_status(cudaMemcpyAsync(l.out[op::outputs::state_out], l.in[in::state_in],
                                         static_cast<size_t>(n_state) * (f32_state(l.b) ? 4 : 2),
                                         cudaMemcpyDeviceToDevice, l.stream),
                         "cudaMemcpyAsync (state)");
    return L == 1 ? decode(l) : prefill(l);
  }

  Plugin* copy() const override { return new SelectiveScanPlugin(*this); }

 private:
  static bool f32_state(const Bound& b) { return b.type[in::state_in] == nv::DataType::kFLOAT; }
  static int state_type(const Bound& b) { return f32_state(b) ? QUAMBA_SSD_STATE_F32 : QUAMBA_SSD_STATE_F16; }

  std::string prefill(const Launch& l) const {
    const int64_t L = l.b[op::syms::L], E = l.b[op::syms::E], N = l.b[op::syms::N];
    QuambaFloatSelectiveScanParams p{};
    p.batch = static_cast<int>(l.b[op::syms::B]);
    p.seqlen = static_cast<int>(L);
    p.dim = static_cast<int>(E);
    p.dstate = static_cast<int>(N);
    p.u = l.input<uint16_t>(in::u);
    p.u_stride_b = L * E;
    p.u_stride_l = E;
    p.delta = l.input<uint16_t>(in::delta);
    p.delta_stride_b = L * E;
    p.delta_stride_l = E;
    p.A = l.input<float>(in::A);
    p.Bm = l.input<uint16_t>(in::B);
    p.B_stride_b = L * N;
    p.B_stride_l = N;
    p.Cm = l.input<uint16_t>(in::C);
    p.C_stride_b = L * N;
    p.C_stride_l = N;
    p.D = l.input<float>(in::D);  // D and delta_bias arrive as zeros when the layer has none
    p.z = l.input<uint16_t>(in::z);
    p.z_stride_b = L * E;
    p.z_stride_l = E;
    p.delta_bias = l.input<float>(in::delta_bias);
    p.delta_softplus = fields().i(fl::delta_softplus);
    p.state_type = state_type(l.b);
    p.state_in = l.in[in::state_in];
    p.state_out = l.out[op::outputs::state_out];
    p.y = l.output<uint16_t>(op::outputs::y);
    p.y_stride_b = L * E;
    p.y_stride_l = E;
    return cuda_status(quamba_selective_scan(&p, l.stream), "quamba_selective_scan");
  }

  std::string decode(const Launch& l) const {
    const int64_t E = l.b[op::syms::E], N = l.b[op::syms::N];
    QuambaFloatSelectiveStateUpdateParams p{};
    p.batch = static_cast<int>(l.b[op::syms::B]);
    p.dim = static_cast<int>(E);
    p.dstate = static_cast<int>(N);
    p.u = l.input<uint16_t>(in::u);  // [B, 1, E]: batch stride E
    p.u_stride_b = E;
    p.delta = l.input<uint16_t>(in::delta);
    p.delta_stride_b = E;
    p.A = l.input<float>(in::A);
    p.Bm = l.input<uint16_t>(in::B);
    p.B_stride_b = N;
    p.Cm = l.input<uint16_t>(in::C);
    p.C_stride_b = N;
    p.D = l.input<float>(in::D);
    p.z = l.input<uint16_t>(in::z);
    p.z_stride_b = E;
    p.delta_bias = l.input<float>(in::delta_bias);
    p.delta_softplus = fields().i(fl::delta_softplus);
    p.state_type = state_type(l.b);
    p.state_in = l.in[in::state_in];
    p.state_out = l.out[op::outputs::state_out];
    p.y = l.output<uint16_t>(op::outputs::y);
    p.y_stride_b = E;
    return cuda_status(quamba_selective_state_update(&p, l.stream), "quamba_selective_state_update");
  }
};

}  // namespace
}  // namespace quamba_trt

QUAMBA_TRT_PLUGIN(quamba_trt::SelectiveScanPlugin)
