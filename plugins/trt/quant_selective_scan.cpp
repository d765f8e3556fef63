// TensorRT plugin of QuantSelectiveScan (quamba_edge/ops/quant_selective_scan.py): Mamba1's quantized
// selective scan. One node serves prefill and decode, as in the record: L > 1 runs quamba_quant_selective_scan
// (plugins/kernels/quant_selective_scan.cu), L = 1 the decode kernel quamba_quant_selective_state_update
// (plugins/kernels/quant_selective_state_update.cu).
//
// State variants (S in {int8, T = float16}): int8 goes to the kernels as is; the Mamba1 kernels keep a float
// state in fp32 only, so an fp16 state (the paper-faithful Quamba recipe) is widened into the workspace,
// updated there in place and narrowed back (round to nearest even, what the reference's .to(float16) does).
// Every per-tensor scale is a host float of the kernels' C ABI: it arrives as a field (fields.h).
#include "plugin_common.h"
#include "quamba_kernels/quant_selective_scan.h"
#include "quamba_kernels/quant_selective_state_update.h"
#include "state_convert.h"

namespace quamba_trt {
namespace {

namespace op = gen::QuantSelectiveScan;
namespace in = op::inputs;
namespace fl = op::fields;

class QuantSelectiveScanPlugin final : public Plugin {
 public:
  static constexpr const gen::OpSpec& spec() { return op::kSpec; }
  QuantSelectiveScanPlugin(std::string layer, Fields f) : Plugin(op::kSpec, std::move(layer), std::move(f)) {}

  static std::string validate(const Fields& f) {
    if (!(f.f(fl::state_scale) > 0.f)) return cat("state_scale must be > 0, got ", f.f(fl::state_scale));
    return {};
  }

 protected:
  std::string check(const Bound& b) const override {
    if (b.known(op::syms::N) && (b[op::syms::N] < 1 || b[op::syms::N] > 256))
      return cat("d_state N = ", b[op::syms::N], " is outside the kernels' 1..256");
    return {};
  }

  size_t workspace(const Bound& max) const override {
    if (!fp16_state(max)) return 0;
    return static_cast<size_t>(max[op::syms::B] * max[op::syms::E] * max[op::syms::N]) * sizeof(float);
  }

  std::string run(const Launch& l) override {
    const int64_t B = l.b[op::syms::B], L = l.b[op::syms::L], E = l.b[op::syms::E], N = l.b[op::syms::N];
    const int64_t n_state = B * E * N;
    if (n_state == 0) return {};
    const bool f16 = fp16_state(l.b);
    const void* state_in = l.in[in::state_in];
    void* state_out = l.out[op::outputs::state_out];
    if (L == 0)  // no tokens: the state passes through unchanged (same dtype in and out)
      return cuda_status(cudaMemcpyAsync(state_out, state_in, static_cast<size_t>(n_state) * (f16 ? 2 : 1),
                                         cudaMemcpyDeviceToDevice, l.stream),
                         "cudaMemcpyAsync (state)");
    float* wide = static_cast<float*>(l.workspace);
    if (f16) {
      if (wide == nullptr) return "no workspace for the fp32 copy of the fp16 state";
      std::string why = cuda_status(half_to_float(static_cast<const uint16_t*>(state_in), wide, n_state, l.stream),
                                    "fp16 -> fp32 state");
      if (!why.empty()) return why;
    }
    const void* k_in = f16 ? wide : state_in;  // both kernels may update the state in place
    void* k_out = f16 ? static_cast<void*>(wide) : state_out;
    std::string why = L == 1 ? decode(l, k_in, k_out, !f16) : prefill(l, k_in, k_out, !f16);
    if (why.empty() && f16)
      why = cuda_status(float_to_half(wide, static_cast<uint16_t*>(state_out), n_state, l.stream),
                        "fp32 -> fp16 state");
    return why;
  }

  Plugin* copy() const override { return new QuantSelectiveScanPlugin(*this); }

 private:
  static bool fp16_state(const Bound& b) { return b.type[in::state_in] == nv::DataType::kHALF; }

  template <class P>
  void scales(P& p) const {
    const Fields& f = fields();
    p.u_scale = f.f(fl::u_scale);
    p.dt_scale = f.f(fl::dt_scale);
    p.A_log_scale = f.f(fl::A_log_scale);
    p.B_scale = f.f(fl::B_scale);
    p.C_scale = f.f(fl::C_scale);
    p.D_scale = f.f(fl::D_scale);  // D and dt_bias arrive as zeros when the layer has none
    p.z_scale = f.f(fl::z_scale);
    p.dt_bias_scale = f.f(fl::dt_bias_scale);
  }

  std::string prefill(const Launch& l, const void* st_in, void* st_out, bool int8_state) const {
    const int64_t L = l.b[op::syms::L], E = l.b[op::syms::E], N = l.b[op::syms::N];
    QuambaSelectiveScanParams p{};
    p.batch = static_cast<int>(l.b[op::syms::B]);
    p.seqlen = static_cast<int>(L);
    p.dim = static_cast<int>(E);
    p.dstate = static_cast<int>(N);
    p.u = l.input<int8_t>(in::u_q);
    p.u_stride_b = L * E;
    p.u_stride_l = E;
    p.dt = l.input<int8_t>(in::dt_q);
    p.dt_stride_b = L * E;
    p.dt_stride_l = E;
    p.A_log = l.input<int8_t>(in::A_log_q);
    p.Bm = l.input<int8_t>(in::B_q);
    p.B_stride_b = L * N;
    p.B_stride_l = N;
    p.Cm = l.input<int8_t>(in::C_q);
    p.C_stride_b = L * N;
    p.C_stride_l = N;
    p.D = l.input<int8_t>(in::D_q);
    p.z = l.input<int8_t>(in::z_q);
    p.z_stride_b = L * E;
    p.z_stride_l = E;
    p.dt_bias = l.input<int8_t>(in::dt_bias_q);
    scales(p);
    p.state_is_int8 = int8_state ? 1 : 0;
    p.state_scale = int8_state ? fields().f(fl::state_scale) : 1.f;
    p.state_in = st_in;
    p.state_out = st_out;
    p.y = l.output<uint16_t>(op::outputs::y);
    p.y_stride_b = L * E;
    p.y_stride_l = E;
    return cuda_status(quamba_quant_selective_scan(&p, l.stream), "quamba_quant_selective_scan");
  }

  std::string decode(const Launch& l, const void* st_in, void* st_out, bool int8_state) const {
    const int64_t E = l.b[op::syms::E], N = l.b[op::syms::N];
    QuambaSelectiveStateUpdateParams p{};
    p.batch = static_cast<int>(l.b[op::syms::B]);
    p.dim = static_cast<int>(E);
    p.dstate = static_cast<int>(N);
    p.u = l.input<int8_t>(in::u_q);  // [B, 1, E]: batch stride E
    p.u_stride_b = E;
    p.dt = l.input<int8_t>(in::dt_q);
    p.dt_stride_b = E;
    p.A_log = l.input<int8_t>(in::A_log_q);
    p.Bm = l.input<int8_t>(in::B_q);
    p.B_stride_b = N;
    p.Cm = l.input<int8_t>(in::C_q);
    p.C_stride_b = N;
    p.D = l.input<int8_t>(in::D_q);
    p.z = l.input<int8_t>(in::z_q);
    p.z_stride_b = E;
    p.dt_bias = l.input<int8_t>(in::dt_bias_q);
    scales(p);
    p.state_is_int8 = int8_state ? 1 : 0;
    p.state_scale = int8_state ? fields().f(fl::state_scale) : 1.f;
    p.state = st_in;
    p.new_state = st_out;
    p.y = l.output<uint16_t>(op::outputs::y);
    p.y_stride_b = E;
    return cuda_status(quamba_quant_selective_state_update(&p, l.stream), "quamba_quant_selective_state_update");
  }
};

}  // namespace
}  // namespace quamba_trt

QUAMBA_TRT_PLUGIN(quamba_trt::QuantSelectiveScanPlugin)
