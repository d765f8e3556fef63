// SSD: the float Mamba2 SSD prefill (fp16 x / B / C / y, delta given, fp32 math; fp32 or fp16 state).
// Contract: quamba_kernels/ssd.h (reference quamba_edge.models.ssm.ssd_chunked). The kernel is the chunked
// tensor-core kernel QuantSSD uses (quamba_kernels/ssd_chunked.cuh), instantiated for fp16 rows: design,
// numerics and the shapes it takes are described there. There is no sequential float kernel: calls it does
// not take return cudaErrorNotSupported (torch-cuda runs the reference op; the TensorRT plugin refuses the
// shape when the engine is built).
#include "quamba_kernels/ssd.h"

#include "quamba_kernels/ssd_chunked.cuh"

#ifndef QUAMBA_SSD_EMULATE
extern "C" QUAMBA_API cudaError_t quamba_ssd(const QuambaSSDParams* p, cudaStream_t stream) {
  QUAMBA_CHECK_ARG(p != nullptr);
  QUAMBA_CHECK_ARG(p->batch >= 1 && p->seqlen >= 1 && p->nheads >= 1 && p->headdim >= 1 && p->ngroups >= 1);
  QUAMBA_CHECK_ARG(p->nheads % p->ngroups == 0 && p->chunk_size >= 1 && p->dstate >= 1);
  QUAMBA_CHECK_ARG(p->batch <= 65535 && p->nheads <= 65535);
  QUAMBA_CHECK_ARG(p->x && p->dt && p->A && p->B && p->C && p->y && p->state_out);
  QUAMBA_CHECK_ARG(p->dt_type == QUAMBA_DT_F16 || p->dt_type == QUAMBA_DT_F32);
  QUAMBA_CHECK_ARG(p->state_type == QUAMBA_SSD_STATE_F32 || p->state_type == QUAMBA_SSD_STATE_F16);
  const int pt = quamba::ssdc::tile_for(*p, 32);
  if (pt == 0) return cudaErrorNotSupported;
  return quamba::ssdc::dispatch(*p, pt, stream);
}
#endif  // !QUAMBA_SSD_EMULATE
