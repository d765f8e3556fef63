/* Element-type codes of the C ABI (QUAMBA_DT_*), for the ops whose tensors come in several dtypes: every header
 * that needs them includes this one. */
#ifndef QUAMBA_DT_F32
#define QUAMBA_DT_F32 0
#define QUAMBA_DT_F16 1
#define QUAMBA_DT_BF16 2
#endif
#ifndef QUAMBA_DT_I8
#define QUAMBA_DT_I8 3
#endif
