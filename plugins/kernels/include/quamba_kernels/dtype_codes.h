/* Element-type codes of the C ABI, for the ops whose tensors come in several dtypes: QUAMBA_DT_* (activations,
 * weights) and QUAMBA_SSD_STATE_* (SSM state storage: int8 with a per-element fp32 scale, or a float state).
 * Every header that needs them includes this one. */
#ifndef QUAMBA_DT_F32
#define QUAMBA_DT_F32 0
#define QUAMBA_DT_F16 1
#define QUAMBA_DT_BF16 2
#endif
#ifndef QUAMBA_DT_I8
#define QUAMBA_DT_I8 3
#endif
#ifndef QUAMBA_SSD_STATE_INT8
#define QUAMBA_SSD_STATE_INT8 1
#define QUAMBA_SSD_STATE_F32 2
#define QUAMBA_SSD_STATE_F16 3
#endif
