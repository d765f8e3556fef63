// Entry points of libquamba_trt_plugins.so, the two a dynamically loaded TensorRT plugin library exports
// (IPluginRegistry::loadLibrary, trtexec --dynamicPlugins, builder_config.plugins_to_serialize):
//   getCreators      every plugin creator of the library (IPluginCreatorV3One, namespace "quamba");
//   setLoggerFinder  how the plugins reach the engine's logger.
// Nothing else leaves the library (exports.map).
#include <algorithm>
#include <cstring>
#include <mutex>

#include "plugin_common.h"

#define QUAMBA_TRT_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

std::vector<nvinfer1::IPluginCreatorInterface*>& sorted_creators() {
  static std::vector<nvinfer1::IPluginCreatorInterface*> list;
  static std::once_flag once;
  std::call_once(once, [] {
    list = quamba_trt::creator_list();
    auto name = [](nvinfer1::IPluginCreatorInterface* c) {
      return static_cast<quamba_trt::CreatorBase*>(c)->getPluginName();
    };
    std::sort(list.begin(), list.end(), [&](auto* a, auto* b) { return std::strcmp(name(a), name(b)) < 0; });
    // every op the registry gives a plugin must have its creator linked in (one plugins/trt/<module>.cpp each)
    for (const quamba_trt::gen::OpSpec* op : quamba_trt::gen::kOps) {
      const bool found = std::any_of(list.begin(), list.end(), [&](auto* c) { return std::strcmp(name(c), op->name) == 0; });
      if (!found)
        quamba_trt::log(nvinfer1::ILogger::Severity::kERROR,
                        quamba_trt::cat("no plugin creator for ", op->name, " (plugins/trt/", op->module,
                                        ".cpp not linked into the library)"));
    }
  });
  return list;
}

}  // namespace

QUAMBA_TRT_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
  const auto& list = sorted_creators();
  nbCreators = static_cast<int32_t>(list.size());
  return list.data();
}

QUAMBA_TRT_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) { quamba_trt::set_logger_finder(finder); }
