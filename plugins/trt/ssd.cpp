// TensorRT plugin of SSD (quamba_edge/ops/ssd.py): Mamba2's float SSD (fp16 baseline and W4A16 models). One node
// serves prefill and decode, as in the record: L > 1 runs quamba_ssd (plugins/kernels/ssd.cu), L = 1 the decode
// kernel quamba_ssd_state_update (plugins/kernels/ssd_state_update.cu); L = 0 copies the state through.
//
// Dtypes: exactly the record's variant with T = float16 (x, dt, B, C, y and the state fp16; A, D fp32), which is
// what the kernels take (fp16 activations, QUAMBA_DT_F16 dt, QUAMBA_SSD_STATE_F16). T = float32 (the ONNX Runtime
// graph) is not offered: the kernels have no fp32 activations. The state goes to the kernels as it is (they
// update an fp16 state with fp32 math and may work in place); should the record ever give the state a float32
// variant, it maps onto QUAMBA_SSD_STATE_F32 (the kernels take that too).
//
// Limits (the kernels' headers): both kernels need nheads % ngroups == 0 and d_state N a multiple of 16 in
// 16..256; the prefill kernel takes only N in {64, 128, 256} and headdim P % 16 == 0 (it returns
// cudaErrorNotSupported otherwise, and a TensorRT engine has no reference to fall back on). A node whose profile
// allows L > 1 with other shapes is refused at configurePlugin (build time), naming the limit; enqueue re-checks
// and also refuses x / B / C not starting on 16 bytes or y on 4 bytes (the prefill kernel's row alignment).
// chunk_size is validated (>= 1) and passed on; the kernel's own chunk length only changes fp32 rounding.
#include "plugin_common.h"
#include "quamba_kernels/ssd.h"
#include "quamba_kernels/ssd_state_update.h"

namespace quamba_trt {
namespace {

namespace op = gen::SSD;
namespace in = op::inputs;
namespace fl = op::fields;

class SSDPlugin final : public Plugin {
 public:
  static constexpr const gen::OpSpec& spec() { return op::kSpec; }
  SSDPlugin(std::string layer, Fields f) : Plugin(op::kSpec, std::move(layer), std::move(f)) {}

  static std::string validate(const Fields& f) {
    if (f.i(fl::chunk_size) < 1) return cat("chunk_size must be >= 1, got ", f.i(fl::chunk_size));
    return {};
  }

 protected:
  std::string check(const Bound& b) const override {
    using namespace op::syms;
    if (b.known(N)) {
      const int64_t n = b[N];
      if (n < 16 || n > 256 || n % 16 != 0)
        return cat("d_state N = ", n, " is not supported: the SSD kernels take a multiple of 16 in 16..256");
    }
    if (b.known(G) && b[G] < 1) return "ngroups G must be >= 1";
    if (b.known(G) && b.known(H) && b[H] % b[G] != 0)
      return cat("nheads H = ", b[H], " is not a multiple of ngroups G = ", b[G]);
    // prefill (L > 1) runs quamba_ssd, whose shapes are narrower; L is known at the profile's extremes (configure)
    // and at run time, so an engine that may see L > 1 is refused at build time, not at its first prefill
    if (b.known(L) && b[L] > 1) {
      if (b.known(N) && b[N] != 64 && b[N] != 128 && b[N] != 256)
        return cat("prefill (L = ", b[L], " > 1) runs quamba_ssd, which takes d_state N in {64, 128, 256}; this node "
                   "has N = ", b[N], " (only decode, L = 1, takes N = 16..256: build the engine with an L = 1 profile "
                   "or run this model elsewhere)");
      if (b.known(P) && b[P] % 16 != 0)
        return cat("prefill (L = ", b[L], " > 1) runs quamba_ssd, which takes headdim P a multiple of 16; this node "
                   "has P = ", b[P]);
    }
    return {};
  }

  std::string run(const Launch& l) override {
    using namespace op::syms;
    const int64_t Ln = l.b[L];
    const int64_t n_state = l.b[B] * l.b[H] * l.b[P] * l.b[N];
    if (n_state == 0) return {};
    if (Ln == 0)  // no tokens: the state passes through unchanged
      return cuda_status(cudaMemcpyAsync(l.out[op::outputs::state_out], l.in[in::state_in],
                                         static_cast<size_t>(n_state) * state_bytes(l.b), cudaMemcpyDeviceToDevice,
                                         l.stream),
                         "cudaMemcpyAsync (state)");
    return Ln == 1 ? decode(l) : prefill(l);
  }

  Plugin* copy() const override { return new SSDPlugin(*this); }

 private:
  static bool f32_state(const Bound& b) { return b.type[in::state_in] == nv::DataType::kFLOAT; }
  static size_t state_bytes(const Bound& b) { return f32_state(b) ? 4 : 2; }

  static std::string aligned(const void* p, size_t bytes, const char* what) {
    if (reinterpret_cast<uintptr_t>(p) % bytes != 0)
      return cat(what, " at ", p, " is not ", bytes, "-byte aligned, which quamba_ssd (prefill) needs");
    return {};
  }

  template <class Pm>
  void common(const Launch& l, Pm& p) const {
    using namespace op::syms;
    p.batch = static_cast<int>(l.b[B]);
    p.nheads = static_cast<int>(l.b[H]);
    p.headdim = static_cast<int>(l.b[P]);
    p.ngroups = static_cast<int>(l.b[G]);
    p.dstate = static_cast<int>(l.b[N]);
    p.x = l.input<uint16_t>(in::x);
    p.dt = l.in[in::dt];
    p.dt_type = l.b.type[in::dt] == nv::DataType::kFLOAT ? QUAMBA_DT_F32 : QUAMBA_DT_F16;
    p.A = l.input<float>(in::A);
    p.B = l.input<uint16_t>(in::B);
    p.C = l.input<uint16_t>(in::C);
    p.D = l.input<float>(in::D);  // zeros when the layer has no D: adding 0 is exact
    p.state_type = f32_state(l.b) ? QUAMBA_SSD_STATE_F32 : QUAMBA_SSD_STATE_F16;
    p.state_in = l.in[in::state_in];
    p.state_out = l.out[op::outputs::state_out];
    p.y = l.output<uint16_t>(op::outputs::y);
  }

  std::string prefill(const Launch& l) const {
    using namespace op::syms;
    std::string why = aligned(l.in[in::x], 16, "input 'x'");
    if (why.empty()) why = aligned(l.in[in::B], 16, "input 'B'");
    if (why.empty()) why = aligned(l.in[in::C], 16, "input 'C'");
    if (why.empty()) why = aligned(l.out[op::outputs::y], 4, "output 'y'");
    if (!why.empty()) return why;
    const int64_t Ln = l.b[L], HP = l.b[H] * l.b[P], GN = l.b[G] * l.b[N];
    QuambaSSDParams p{};
    common(l, p);
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
    return cuda_status(quamba_ssd(&p, l.stream), "quamba_ssd");
  }

  std::string decode(const Launch& l) const {
    using namespace op::syms;
    const int64_t HP = l.b[H] * l.b[P], GN = l.b[G] * l.b[N];
    QuambaSSDStateUpdateParams p{};
    common(l, p);
    p.x_batch_stride = HP;  // [B, 1, H, P]
    p.dt_batch_stride = l.b[H];
    p.B_batch_stride = GN;
    p.C_batch_stride = GN;
    p.y_batch_stride = HP;
    return cuda_status(quamba_ssd_state_update(&p, l.stream), "quamba_ssd_state_update");
  }
};

}  // namespace
}  // namespace quamba_trt

QUAMBA_TRT_PLUGIN(quamba_trt::SSDPlugin)
