// TensorRT plugin of QuantHadamard (quamba_edge/ops/quant_hadamard.py) over quamba_quant_hadamard
// (plugins/kernels/quant_hadamard.cu): the online orthonormal transform of x fp16 [B, L, n] fused with int8
// quantization. The node carries only `size`; the kernel needs the b x b base factor of M = H_n / sqrt(n)
// on the device, which this plugin builds from the generated +-1 base (the very matrix the offline fusion
// used) and uploads once per plugin object, outside enqueue (onShapeChange).
#include <cmath>
#include <memory>
#include <vector>

#include "plugin_common.h"
#include "quamba_kernels/quant_hadamard.h"

namespace quamba_trt {
namespace {

namespace op = gen::QuantHadamard;

bool pow2(int64_t v) { return v >= 1 && (v & (v - 1)) == 0; }

// n = b * 2^k, b chosen in the order of quamba_edge.quant.hadamard.hadamard_factors (12, 40, then 2^k); 0 if
// the record does not support n.
int base_of(int64_t n) {
  if (n % 12 == 0 && pow2(n / 12)) return 12;
  if (n % 40 == 0 && pow2(n / 40)) return 40;
  if (pow2(n)) return 1;
  return 0;
}

// M[i * 2^k, j * 2^k] = H_b[i][j] * fl32(1 / sqrt(n)) (hadamard_matrix: kron(H_b, H_2^k) * (1.0 / sqrt(n)),
// a double rounded once to fp32; the +-1 entries make the product exact).
std::vector<float> base_factor(int n) {
  const int b = base_of(n);
  const float s = static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
  const int8_t* h = b == 12 ? gen::kHadamardBase12 : b == 40 ? gen::kHadamardBase40 : nullptr;
  std::vector<float> m(static_cast<size_t>(b * b));
  for (int i = 0; i < b * b; ++i) m[static_cast<size_t>(i)] = (h ? h[i] : 1) * s;
  return m;
}

// The device copy of the base factor, freed with its plugin object.
struct DeviceBase {
  float* ptr = nullptr;
  int device = -1;
  ~DeviceBase() {
    if (ptr != nullptr) cudaFree(ptr);  // at process exit the context may be gone: nothing to report
  }
};

class QuantHadamardPlugin final : public Plugin {
 public:
  static constexpr const gen::OpSpec& spec() { return op::kSpec; }
  QuantHadamardPlugin(std::string layer, Fields f) : Plugin(op::kSpec, std::move(layer), std::move(f)) {}
  QuantHadamardPlugin(const QuantHadamardPlugin& o) : Plugin(o) {}  // a clone uploads its own copy when needed

  static std::string validate(const Fields& f) {
    const int32_t n = f.i(op::fields::size);
    if (n < 1 || n > 32768 || base_of(n) == 0)
      return cat("size = ", n, " is not a supported Hadamard size (12*2^k, 40*2^k or 2^k, at most 32768)");
    if (!(f.f(op::fields::out_scale) > 0.f)) return cat("out_scale must be > 0, got ", f.f(op::fields::out_scale));
    return {};
  }

 protected:
  std::string check(const Bound& b) const override {
    if (b.known(op::syms::n) && b[op::syms::n] != fields().i(op::fields::size))
      return cat("x has n = ", b[op::syms::n], " channels but the node's size is ", fields().i(op::fields::size));
    return {};
  }

  std::string prepare() override { return upload(nullptr); }

  std::string run(const Launch& l) override {
    const int n = fields().i(op::fields::size);
    QuambaQuantHadamardParams p{};
    p.rows = l.b[op::syms::B] * l.b[op::syms::L];
    if (p.rows == 0) return {};
    std::string why = upload(l.stream);
    if (!why.empty()) return why;
    p.n = n;
    p.base = base_of(n);
    p.base_matrix = base_->ptr;
    p.x_dtype = QUAMBA_DT_F16;
    p.x = l.in[op::inputs::x];
    p.x_row_stride = n;
    p.out_scale = fields().f(op::fields::out_scale);
    p.y = l.output<int8_t>(op::outputs::y);
    p.y_row_stride = n;
    return cuda_status(quamba_quant_hadamard(&p, l.stream), "quamba_quant_hadamard");
  }

  Plugin* copy() const override { return new QuantHadamardPlugin(*this); }

 private:
  // Make the device copy once (stream == nullptr: from onShapeChange, synchronously; else the enqueue
  // fallback, stream-ordered and refused while the stream is being captured into a CUDA graph).
  std::string upload(cudaStream_t stream) {
    int dev = 0;
    std::string why = cuda_status(cudaGetDevice(&dev), "cudaGetDevice");
    if (!why.empty()) return why;
    if (base_ && base_->device == dev) return {};
    if (base_) return cat("plugin object prepared on device ", base_->device, ", now used on device ", dev);
    if (stream != nullptr) {
      cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
      why = cuda_status(cudaStreamIsCapturing(stream, &cap), "cudaStreamIsCapturing");
      if (!why.empty()) return why;
      if (cap != cudaStreamCaptureStatusNone)
        return "the Hadamard base factor is not on the device yet and the stream is being captured; run one "
               "enqueue (or onShapeChange) before capturing a CUDA graph";
    }
    const std::vector<float> m = base_factor(fields().i(op::fields::size));
    auto b = std::make_unique<DeviceBase>();
    const size_t bytes = m.size() * sizeof(float);
    why = cuda_status(cudaMalloc(reinterpret_cast<void**>(&b->ptr), bytes), "cudaMalloc (Hadamard base factor)");
    if (why.empty())
      why = stream == nullptr
                ? cuda_status(cudaMemcpy(b->ptr, m.data(), bytes, cudaMemcpyHostToDevice), "cudaMemcpy")
                // pageable source: the call returns once the bytes are staged, so `m` may go out of scope
                : cuda_status(cudaMemcpyAsync(b->ptr, m.data(), bytes, cudaMemcpyHostToDevice, stream),
                              "cudaMemcpyAsync");
    if (!why.empty()) return why;
    b->device = dev;
    base_ = std::move(b);
    return {};
  }

  std::unique_ptr<DeviceBase> base_;
};

}  // namespace
}  // namespace quamba_trt

QUAMBA_TRT_PLUGIN(quamba_trt::QuantHadamardPlugin)
