// TensorRT plugin of QuantSSD (quamba_edge/ops/quant_ssd.py): Mamba2's quantized SSD. One node serves
// prefill and decode, as in the record: L > 1 runs quamba_quant_ssd (plugins/kernels/quant_ssd.cu), L = 1 the
// decode kernel quamba_quant_ssd_state_update (plugins/kernels/quant_ssd_state_update.cu).
//
// State variants (S in {int8, T = float16}) map onto the kernels' QUAMBA_SSD_STATE_INT8 / _F16 directly.
// x / B / C scales, dt_bias and the int8 state's [H, P, N] scales are device tensors; dt_scale, A_log_scale
// and D_scale are host floats of the C ABI and arrive as fields (fields.h).
#include "plugin_common.h"
#include "quamba_kernels/quant_ssd.h"
#include "quamba_kernels/quant_ssd_state_update.h"

namespace quamba_trt {
namespace {

namespace op = gen::QuantSSD;
namespace in = op::inputs;
namespace fl = op::fields;

class QuantSSDPlugin final : public Plugin {
 public:
  static constexpr const gen::OpSpec& spec() { return op::kSpec; }
  QuantSSDPlugin(std::string layer, Fields f) : Plugin(op::kSpec, std::move(layer), std::move(f)) {}

  static std::string validate(const Fields& f) {
    if (f.i(fl::chunk_size) < 1) return cat("chunk_size must be >= 1, got ", f.i(fl::chunk_size));
    const float lo = f.f(fl::dt_limit_lo), hi = f.f(fl::dt_limit_hi);
    if (!(lo <= hi)) return cat("dt_limit_lo ", lo, " must not exceed dt_limit_hi ", hi);
    return {};
  }

 protected:
  std::string check(const Bound& b) const override {
    using namespace op::syms;
    if (b.known(N)) {
      const int64_t n = b[N];
      if (n != 16 && n != 32 && n != 64 && n != 128 && n != 256)
        return cat("d_state N = ", n, " is not one of the kernels' 16, 32, 64, 128, 256");
    }
    if (b.known(G) && b[G] < 1) return "ngroups G must be >= 1";
    if (b.known(G) && b.known(H) && b[H] % b[G] != 0)
      return cat("nheads H = ", b[H], " is not a multiple of ngroups G = ", b[G]);
    // an int8 state needs its [H, P, N] scales; a float state ignores the (scalar) input
    if (b.type[in::state_in] == nv::DataType::kINT8 && b.alt[in::state_scale] != 0)
      return "an int8 state needs state_scale of shape [H, P, N]";
    return {};
  }

  std::string run(const Launch& l) override {
    using namespace op::syms;
    const int64_t Bz = l.b[B], Ln = l.b[L], Hn = l.b[H], Pn = l.b[P], Nn = l.b[N];
    const bool int8_state = l.b.type[in::state_in] == nv::DataType::kINT8;
    const int64_t n_state = Bz * Hn * Pn * Nn;
    if (n_state == 0) return {};
    if (Ln == 0)  // no tokens: the state passes through unchanged
      return cuda_status(cudaMemcpyAsync(l.out[op::outputs::state_out], l.in[in::state_in],
                                         static_cast<size_t>(n_state) * (int8_state ? 1 : 2),
                                         cudaMemcpyDeviceToDevice, l.stream),
                         "cudaMemcpyAsync (state)");
    return Ln == 1 ? decode(l, int8_state) : prefill(l, int8_state);
  }

  Plugin* copy() const override { return new QuantSSDPlugin(*this); }

 private:
  template <class Pm>
  void common(const Launch& l, bool int8_state, Pm& p) const {
    using namespace op::syms;
    p.batch = static_cast<int>(l.b[B]);
    p.nheads = static_cast<int>(l.b[H]);
    p.headdim = static_cast<int>(l.b[P]);
    p.ngroups = static_cast<int>(l.b[G]);
    p.dstate = static_cast<int>(l.b[N]);
    p.x = l.input<int8_t>(in::x_q);
    p.x_scale = l.input<float>(in::x_scale);
    p.dt = l.input<int8_t>(in::dt_q);
    p.dt_scale = fields().f(fl::dt_scale);
    p.dt_bias = l.input<float>(in::dt_bias);
    p.A_log = l.input<int8_t>(in::A_log_q);
    p.A_log_scale = fields().f(fl::A_log_scale);
    p.B = l.input<int8_t>(in::B_q);
    p.B_scale = l.input<float>(in::B_scale);
    p.C = l.input<int8_t>(in::C_q);
    p.C_scale = l.input<float>(in::C_scale);
    p.D = l.input<int8_t>(in::D_q);  // zeros when the layer has no D: adding 0 is exact
    p.D_scale = fields().f(fl::D_scale);
    p.dt_limit_lo = fields().f(fl::dt_limit_lo);
    p.dt_limit_hi = fields().f(fl::dt_limit_hi);
    p.state_type = int8_state ? QUAMBA_SSD_STATE_INT8 : QUAMBA_SSD_STATE_F16;
    p.state_in = l.in[in::state_in];
    p.state_out = l.out[op::outputs::state_out];
    p.state_scale = int8_state ? l.input<float>(in::state_scale) : nullptr;
    p.state_scale_row = nullptr;  // the graph carries the expanded [H, P, N] scales
    p.y = l.output<uint16_t>(op::outputs::y);
  }

  std::string prefill(const Launch& l, bool int8_state) const {
    using namespace op::syms;
    const int64_t Ln = l.b[L], HP = l.b[H] * l.b[P], GN = l.b[G] * l.b[N];
    QuambaQuantSSDParams p{};
    common(l, int8_state, p);
    p.seqlen = static_cast<int>(Ln);
    p.chunk_size = fields().i(fl::chunk_size);
    p.x_batch_stride = Ln * HP;
    p.x_seq_stride = HP;
    p.dt_batch_stride = Ln * l.b[H];
    p.dt_seq_stride = l.b[H];
    p.B_batch_stride = Ln * GN;
    p.B_seq_stride = GN;
    p.C_batch_stride = Ln * GN;
    p.C_seq_stride = GN;
    p.y_batch_stride = Ln * HP;
    p.y_seq_stride = HP;
    return cuda_status(quamba_quant_ssd(&p, l.stream), "quamba_quant_ssd");
  }

  std::string decode(const Launch& l, bool int8_state) const {
    using namespace op::syms;
    const int64_t HP = l.b[H] * l.b[P], GN = l.b[G] * l.b[N];
    QuambaQuantSSDStateUpdateParams p{};
    common(l, int8_state, p);
    p.x_batch_stride = HP;  // [B, 1, H, P]
    p.dt_batch_stride = l.b[H];
    p.B_batch_stride = GN;
    p.C_batch_stride = GN;
    p.y_batch_stride = HP;
    return cuda_status(quamba_quant_ssd_state_update(&p, l.stream), "quamba_quant_ssd_state_update");
  }
};

}  // namespace
}  // namespace quamba_trt

QUAMBA_TRT_PLUGIN(quamba_trt::QuantSSDPlugin)
