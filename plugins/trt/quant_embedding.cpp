// TensorRT plugin of QuantEmbedding (quamba_edge/ops/quant_embedding.py) over quamba_quant_embedding
// (plugins/kernels/quant_embedding.cu): ids int64 [B, L] -> rows of a per-row quantized table, dequantized into
// out float16 [B, L, d]. bits 8: table int8 [V, d]; bits 4: table uint8 [V, ceil(d/2)] (packed int4) carried
// as int8, the same bytes (TensorRT plugins take no uint8 tensors; trt_fields.prepare_trt_graph retypes the
// initializer).
//
// The record's table rule names [V, d] (bits 8) and, in prose, [V, ceil(d/2)] (bits 4); the generated spec
// has the first, so a bits-4 node checks its shapes against a copy of the spec where the packed row width is
// a symbol of its own that check() relates to embedding_dim (the W4 linears' ceil(K/2) convention), and out's
// d is the node's embedding_dim (getOutputShapes), not the table's width.
#include <limits>

#include "plugin_common.h"
#include "quamba_kernels/quant_embedding.h"

namespace quamba_trt {
namespace {

namespace op = gen::QuantEmbedding;
namespace fl = op::fields;

static_assert(op::inputs::table == 1 && op::syms::kCount == 4, "kPackedSpec follows the generated QuantEmbedding spec");

// The bits-4 spec: table [V, ceil(d/2)] with the row width as the extra symbol kPackedRow.
constexpr int kPackedRow = op::syms::kCount;
constexpr const char* kPackedSymbols[] = {op::kSymbols[0], op::kSymbols[1], op::kSymbols[2], op::kSymbols[3],
                                          "ceil(d/2)"};
constexpr gen::PortSpec kPackedInputs[] = {
    op::kInputs[op::inputs::ids],
    {"table", op::kInputs[op::inputs::table].rule, 1, {{2, {{op::syms::V, 0}, {kPackedRow, 0}}}}},
    op::kInputs[op::inputs::row_scale],
};
constexpr gen::OpSpec packed_spec() {
  gen::OpSpec s = op::kSpec;
  s.nb_symbols = kPackedRow + 1;
  s.inputs = kPackedInputs;
  s.symbols = kPackedSymbols;
  return s;
}
constexpr gen::OpSpec kPackedSpec = packed_spec();
static_assert(kPackedSpec.nb_symbols <= kMaxSymbols, "too many shape symbols");

class QuantEmbeddingPlugin final : public Plugin {
 public:
  static constexpr const gen::OpSpec& spec() { return op::kSpec; }
  // f is copied, not moved: the spec choice reads it in the same call
  QuantEmbeddingPlugin(std::string layer, Fields f)
      : Plugin(f.i(fl::bits) == 4 ? kPackedSpec : op::kSpec, std::move(layer), f) {}

  static std::string validate(const Fields& f) {
    const int32_t bits = f.i(fl::bits), d = f.i(fl::embedding_dim);
    if (bits != 8 && bits != 4) return cat("bits must be 8 or 4, got ", bits);
    if (d < 1) return cat("embedding_dim must be >= 1, got ", d);
    return {};
  }

  int32_t getOutputShapes(const nv::DimsExprs* inputs, int32_t nbInputs, const nv::DimsExprs* shapeInputs,
                          int32_t nbShapeInputs, nv::DimsExprs* outputs, int32_t nbOutputs,
                          nv::IExprBuilder& exprBuilder) noexcept override {
    const int32_t r =
        Plugin::getOutputShapes(inputs, nbInputs, shapeInputs, nbShapeInputs, outputs, nbOutputs, exprBuilder);
    if (r != 0) return r;
    const nv::IDimensionExpr* d = exprBuilder.constant(fields().i(fl::embedding_dim));
    if (d == nullptr) {
      error("could not build the expression of output 'out' dim 2");
      return -1;
    }
    outputs[op::outputs::out].d[2] = d;
    return 0;
  }

 protected:
  std::string check(const Bound& b) const override {
    const int64_t d = fields().i(fl::embedding_dim);
    // bits 8: d is bound from the table first; bits 4: from out only
    if (b.known(op::syms::d) && b[op::syms::d] != d)
      return cat("'", bits() == 8 ? "table" : "out", "' has d = ", b[op::syms::d], " but the node's embedding_dim is ",
                 d);
    if (bits() == 4 && b.known(kPackedRow) && b[kPackedRow] != (d + 1) / 2)
      return cat("'table' has ", b[kPackedRow], " bytes per row; embedding_dim = ", d, " packs into ", (d + 1) / 2);
    if (b.known(op::syms::V) && b[op::syms::V] < 1) return "'table' has no rows (V = 0)";
    if (b.known(op::syms::B) && b.known(op::syms::L) &&
        b[op::syms::B] * b[op::syms::L] > std::numeric_limits<int32_t>::max())  // one block row per token
      return cat("B * L = ", b[op::syms::B] * b[op::syms::L], " tokens exceed the kernel's 2^31 - 1");
    return {};
  }

  std::string run(const Launch& l) override {
    const int64_t d = fields().i(fl::embedding_dim);
    QuambaQuantEmbeddingParams p{};
    p.tokens = l.b[op::syms::B] * l.b[op::syms::L];
    if (p.tokens == 0) return {};
    p.vocab = l.b[op::syms::V];
    p.dim = static_cast<int>(d);
    p.bits = bits();
    p.ids = l.in[op::inputs::ids];
    p.ids_int64 = 1;  // the record's ids are int64 (TensorRT 10 keeps them so)
    p.table = l.input<uint8_t>(op::inputs::table);  // int8 in TensorRT; bits 4: the packed bytes unchanged
    p.table_row_stride = bits() == 8 ? d : (d + 1) / 2;
    p.row_scale = l.input<uint16_t>(op::inputs::row_scale);
    p.out_dtype = QUAMBA_DT_F16;  // T = float16, the only variant
    p.out = l.out[op::outputs::out];
    p.out_row_stride = d;
    return cuda_status(quamba_quant_embedding(&p, l.stream), "quamba_quant_embedding");
  }

  Plugin* copy() const override { return new QuantEmbeddingPlugin(*this); }

 private:
  int bits() const { return fields().i(fl::bits); }
};

}  // namespace
}  // namespace quamba_trt

QUAMBA_TRT_PLUGIN(quamba_trt::QuantEmbeddingPlugin)
