/* Element-type codes of the C ABI (QUAMBA_DT_*), for the ops whose tensors come in several dtypes. The older
 * op headers define the float codes under the same guard, with the same values. */
#ifndef QUAMBA_DT_F32
#define QUAMBA_DT_F32 0
#define QUAMBA_DT_F16 1
#define QUAMBA_DT_BF16 2
#endif
#ifndef QUAMBA_DT_I8
#define QUAMBA_DT_I8 3
#endif
