/* libquamba_trt_harness.so: drives a plugin of a TensorRT plugin library through TensorRT's documented call
 * sequence without libnvinfer (only the plugins' own virtual methods are called), for tests and bring-up.
 * C ABI, called from Python through ctypes (quamba_edge/trt_harness.py).
 *
 * qth_run: dlopen(library) -> setLoggerFinder(harness logger) -> getCreators -> the V3 creator named `op`
 *   -> createPlugin(op, fields, kBUILD) -> getCapabilityInterface(kCORE / kBUILD / kRUNTIME)
 *   -> getOutputDataTypes (must give the outputs' dtypes) -> getOutputShapes (symbolic: dims flagged in
 *      dynamic_mask are non-constant expressions; the result must evaluate to the outputs' dims)
 *   -> supportsFormatCombination (true for the given dtypes in kLINEAR at every position; false for kINT32 /
 *      kBF16 and for kCHW32) -> configurePlugin (runtime dims as -1, min = opt = max = the given dims)
 *   -> getWorkspaceSize -> getFieldsToSerialize
 *   then, unless QTH_BUILD_ONLY: onShapeChange + enqueue of the build-phase plugin into outputs[i].data, and
 *   createPlugin(op, serialized fields, kRUNTIME) -> attachToContext -> onShapeChange -> enqueue into
 *   outputs[i].data2 (the caller compares both with its reference); stream synchronized at the end.
 *   With QTH_BUILD_ONLY (no GPU needed): the runtime plugin is created from the serialized fields, attached,
 *   and must serialize to the same fields.
 *   With QTH_RAW_ENQUEUE: createPlugin(kRUNTIME) from the given fields, attachToContext, enqueue with the given
 *   descriptors and pointers, nothing else (to see that enqueue itself refuses bad shapes).
 *   With QTH_HOST_MEMORY (for libquamba_trt_plugins_fake.so, whose kernels only record their parameters): the
 *   full sequence, but the workspace is host memory and the stream is not synchronized.
 * Returns 0 on success, else nonzero; `log` receives the steps that failed and every message the plugins logged.
 */
#ifndef QUAMBA_TRT_HARNESS_H
#define QUAMBA_TRT_HARNESS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QTH_MAX_RANK 8

typedef struct QthField {
  const char* name;
  int32_t type;   /* nvinfer1::PluginFieldType value: kFLOAT32 1, kFLOAT64 2, kINT32 5, kCHAR 6, kINT64 10 */
  int32_t length; /* elements (kCHAR: bytes) */
  const void* data;
} QthField;

typedef struct QthTensor {
  int32_t dtype;          /* nvinfer1::DataType value: kFLOAT 0, kHALF 1, kINT8 2, kINT32 3, kUINT8 5, kINT64 8 */
  int32_t rank;
  int64_t dims[QTH_MAX_RANK];
  uint32_t dynamic_mask;  /* bit k: dim k is a runtime dimension (inputs only) */
  int32_t reserved;
  void* data;             /* device pointer */
  void* data2;            /* outputs: where the runtime-phase plugin writes */
} QthTensor;

enum { QTH_BUILD_ONLY = 1, QTH_RAW_ENQUEUE = 2, QTH_HOST_MEMORY = 4 };

int32_t qth_run(const char* library, const char* op, const QthField* fields, int32_t nb_fields,
                const QthTensor* inputs, int32_t nb_inputs, const QthTensor* outputs, int32_t nb_outputs,
                int32_t flags, void* stream, char* log, int32_t log_len);

/* One line per creator of the library: "name version namespace field:type,field:type,...". */
int32_t qth_list(const char* library, char* out, int32_t out_len);

#ifdef __cplusplus
}
#endif

#endif /* QUAMBA_TRT_HARNESS_H */
