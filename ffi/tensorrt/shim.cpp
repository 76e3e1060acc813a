// jetwatch TensorRT shim: see shim.h for the rules of this C ABI.
//
// Only TensorRT's inline C++ wrappers are used; they dispatch through the library's vtables,
// so the only symbols we need from libnvinfer/libnvonnxparser are the factory entry points,
// which are looked up with dlsym. tools/trt-compile-check.sh verifies with `nm -u` that the
// object file references no TensorRT symbol.
//
// Version handling (compile time): NV_TENSORRT_MAJOR selects the 10.x or 11.x code paths.
//  - 10.x: weakly typed networks, BuilderFlag::kFP16 requests FP16 kernels.
//  - 11.x: networks are strongly typed (BuilderFlag::kFP16 no longer exists): precision
//    comes from the model's tensor types; DLA is supported only from 11.4.1 (AGX Orin).
// Run time: getInferLibVersion() must report the same major as the headers (vtable layouts
// differ between majors), and at least the headers' minor (methods are appended to vtables
// in minor releases, so an older library may lack one the headers call).

#include "shim.h"

#include <NvInfer.h>
#include <NvOnnxParser.h>

#include <dlfcn.h>

#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#if !defined(NV_TENSORRT_MAJOR) || NV_TENSORRT_MAJOR < 10
#error "jetwatch's TensorRT shim needs TensorRT 10.x or 11.x headers (NV_TENSORRT_MAJOR >= 10)"
#endif
#if NV_TENSORRT_MAJOR > 11
#error "jetwatch's TensorRT shim has not been checked against TensorRT 12 or newer headers"
#endif

#define JW_STR2(x) #x
#define JW_STR(x) JW_STR2(x)

namespace
{

using namespace nvinfer1;

thread_local std::string tl_error;

jw_trt_status fail(jw_trt_status status, std::string msg)
{
    try
    {
        tl_error = std::move(msg);
    }
    catch (...)
    {
        // Out of memory while recording the message: keep the status, lose the text.
    }
    return status;
}

// Runs `body` with every C++ exception turned into a status.
template <typename F>
jw_trt_status guard(F&& body) noexcept
{
    try
    {
        tl_error.clear();
        return body();
    }
    catch (std::bad_alloc const&)
    {
        return fail(JW_TRT_ERR_INTERNAL, "out of host memory in the TensorRT shim");
    }
    catch (std::exception const& e)
    {
        return fail(JW_TRT_ERR_INTERNAL, std::string("C++ exception in the TensorRT shim: ") + e.what());
    }
    catch (...)
    {
        return fail(JW_TRT_ERR_INTERNAL, "unknown C++ exception in the TensorRT shim");
    }
}

// Forwards TensorRT's log to the Rust callback and remembers the last error message, which
// is appended to failures that TensorRT reports only through its logger.
class Logger final : public ILogger
{
public:
    Logger(jw_trt_log_fn fn, void* user, int32_t minSeverity)
        : mFn(fn)
        , mUser(user)
        , mMin(minSeverity)
    {
    }

    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        int32_t const sev = static_cast<int32_t>(severity);
        if (sev <= JW_TRT_SEV_ERROR && msg != nullptr)
        {
            try
            {
                std::lock_guard<std::mutex> lock(mMutex);
                mLastError = msg;
            }
            catch (...)
            {
            }
        }
        if (mFn != nullptr && sev <= mMin)
        {
            mFn(mUser, sev, msg != nullptr ? msg : "");
        }
    }

    std::string lastError()
    {
        std::lock_guard<std::mutex> lock(mMutex);
        return mLastError;
    }

    void clearLastError()
    {
        std::lock_guard<std::mutex> lock(mMutex);
        mLastError.clear();
    }

private:
    jw_trt_log_fn mFn;
    void* mUser;
    int32_t mMin;
    std::mutex mMutex;
    std::string mLastError;
};

class ProgressMonitor final : public IProgressMonitor
{
public:
    ProgressMonitor(jw_trt_progress_fn fn, void* user)
        : mFn(fn)
        , mUser(user)
    {
    }

    void phaseStart(char const* phaseName, char const* parentPhase, int32_t nbSteps) noexcept override
    {
        if (mFn != nullptr)
        {
            mFn(mUser, JW_TRT_PHASE_START, phaseName != nullptr ? phaseName : "",
                parentPhase != nullptr ? parentPhase : "", nbSteps);
        }
    }

    bool stepComplete(char const* phaseName, int32_t step) noexcept override
    {
        if (mFn == nullptr)
        {
            return true;
        }
        int32_t const cancel = mFn(mUser, JW_TRT_PHASE_STEP, phaseName != nullptr ? phaseName : "", "", step);
        if (cancel != 0)
        {
            mCancelled = true;
        }
        return cancel == 0;
    }

    void phaseFinish(char const* phaseName) noexcept override
    {
        if (mFn != nullptr)
        {
            mFn(mUser, JW_TRT_PHASE_FINISH, phaseName != nullptr ? phaseName : "", "", 0);
        }
    }

    void set(jw_trt_progress_fn fn, void* user)
    {
        mFn = fn;
        mUser = user;
        mCancelled = false;
    }

    bool cancelled() const
    {
        return mCancelled;
    }

private:
    jw_trt_progress_fn mFn;
    void* mUser;
    bool mCancelled{false};
};

struct DlHandle
{
    void* handle{nullptr};
    DlHandle() = default;
    DlHandle(DlHandle const&) = delete;
    DlHandle& operator=(DlHandle const&) = delete;
    ~DlHandle()
    {
        if (handle != nullptr)
        {
            dlclose(handle);
        }
    }
};

std::string dlerrorText()
{
    char const* e = dlerror();
    return e != nullptr ? std::string(e) : std::string("unknown dlopen error");
}

jw_trt_status openLibrary(DlHandle& lib, char const* path, char const* fallback, char const* package)
{
    char const* name = path != nullptr ? path : fallback;
    lib.handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib.handle == nullptr)
    {
        return fail(JW_TRT_ERR_UNAVAILABLE,
            std::string("cannot open ") + name + ": " + dlerrorText() + " (install " + package + ")");
    }
    return JW_TRT_OK;
}

template <typename Fn>
jw_trt_status lookup(DlHandle& lib, char const* libName, char const* symbol, Fn& out)
{
    dlerror();
    void* sym = dlsym(lib.handle, symbol);
    if (sym == nullptr)
    {
        return fail(JW_TRT_ERR_UNAVAILABLE, std::string(libName) + " has no entry point " + symbol + ": " + dlerrorText());
    }
    static_assert(sizeof(Fn) == sizeof(void*), "function pointer size");
    std::memcpy(&out, &sym, sizeof(out));
    return JW_TRT_OK;
}

std::string versionText(int32_t v)
{
    return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
}

char const* const kNvinferDefault = "libnvinfer.so." JW_STR(NV_TENSORRT_MAJOR);
char const* const kParserDefault = "libnvonnxparser.so." JW_STR(NV_TENSORRT_MAJOR);
char const* const kNvinferPackage
    = "TensorRT " JW_STR(NV_TENSORRT_MAJOR) ".x: JetPack's nvidia-tensorrt / libnvinfer" JW_STR(
        NV_TENSORRT_MAJOR) " packages, or libnvinfer" JW_STR(NV_TENSORRT_MAJOR) " from NVIDIA's CUDA repository";
char const* const kParserPackage = "libnvonnxparsers" JW_STR(NV_TENSORRT_MAJOR) " (TensorRT's ONNX parser)";

using CreateFn = void* (*) (void*, int32_t);
using VersionFn = int32_t (*)();
using CreateParserFn = void* (*) (void*, void*, int);

template <typename T>
struct Deleter
{
    void operator()(T* p) const noexcept
    {
        delete p;
    }
};
template <typename T>
using Owned = std::unique_ptr<T, Deleter<T>>;

Dims64 toDims(int32_t nbDims, int64_t const* dims)
{
    Dims64 d{};
    d.nbDims = nbDims;
    for (int32_t i = 0; i < nbDims; ++i)
    {
        d.d[i] = dims[i];
    }
    return d;
}

void fromDims(Dims64 const& d, int32_t* nbDims, int64_t* dims)
{
    int32_t const n = d.nbDims < 0 ? 0 : (d.nbDims > JW_TRT_MAX_DIMS ? JW_TRT_MAX_DIMS : d.nbDims);
    *nbDims = d.nbDims < 0 ? -1 : n;
    for (int32_t i = 0; i < JW_TRT_MAX_DIMS; ++i)
    {
        dims[i] = i < n ? d.d[i] : 0;
    }
}

std::string dimsText(Dims64 const& d)
{
    std::string s = "[";
    for (int32_t i = 0; i < d.nbDims; ++i)
    {
        if (i > 0)
        {
            s += ", ";
        }
        s += std::to_string(d.d[i]);
    }
    return s + "]";
}

} // namespace

// The runtime owns the library handle, the logger and the IRuntime. Declared in order of
// construction; members are destroyed in reverse (runtime, then logger, then the library).
struct jw_trt_runtime
{
    DlHandle lib;
    std::unique_ptr<Logger> logger;
    CreateFn createBuilder{nullptr};
    std::string noBuilderReason;
    int32_t libVersion{0};
    Owned<IRuntime> runtime;
};

struct jw_trt_blob
{
    Owned<IHostMemory> mem;
    std::string text;
};

struct jw_trt_build
{
    jw_trt_runtime* rt{nullptr};
    DlHandle parserLib;
    std::unique_ptr<ProgressMonitor> monitor;
    int32_t dlaCore{-1};
    Owned<IBuilder> builder;
    Owned<INetworkDefinition> network;
    Owned<nvonnxparser::IParser> parser;
    Owned<IBuilderConfig> config;
    Owned<ITimingCache> cache;
};

struct jw_trt_engine
{
    jw_trt_runtime* rt{nullptr};
    Owned<ICudaEngine> engine;
};

struct jw_trt_context
{
    jw_trt_engine* engine{nullptr};
    Owned<IExecutionContext> ctx;
};

extern "C" {

const char* jw_trt_last_error(void)
{
    return tl_error.c_str();
}

int32_t jw_trt_header_version(void)
{
    return static_cast<int32_t>(NV_TENSORRT_VERSION);
}

jw_trt_status jw_trt_runtime_open(
    const char* nvinfer_path, jw_trt_log_fn log, void* log_user, int32_t min_severity, jw_trt_runtime** out)
{
    return guard([&]() -> jw_trt_status {
        if (out == nullptr)
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_runtime_open: out is null");
        }
        *out = nullptr;
        std::unique_ptr<jw_trt_runtime> rt(new jw_trt_runtime());
        char const* libName = nvinfer_path != nullptr ? nvinfer_path : kNvinferDefault;
        jw_trt_status st = openLibrary(rt->lib, nvinfer_path, kNvinferDefault, kNvinferPackage);
        if (st != JW_TRT_OK)
        {
            return st;
        }
        VersionFn version = nullptr;
        CreateFn createRuntime = nullptr;
        if ((st = lookup(rt->lib, libName, "getInferLibVersion", version)) != JW_TRT_OK
            || (st = lookup(rt->lib, libName, "createInferRuntime_INTERNAL", createRuntime)) != JW_TRT_OK)
        {
            return st;
        }
        // The builder entry point is optional here: a runtime-only library (libnvinfer_lean)
        // can still deserialize and run plans; jw_trt_build_begin reports its absence.
        if (lookup(rt->lib, libName, "createInferBuilder_INTERNAL", rt->createBuilder) != JW_TRT_OK)
        {
            rt->createBuilder = nullptr;
            rt->noBuilderReason = tl_error;
        }
        rt->libVersion = version();
        int32_t const header = static_cast<int32_t>(NV_TENSORRT_VERSION);
        if (rt->libVersion / 10000 != NV_TENSORRT_MAJOR || rt->libVersion / 100 < header / 100)
        {
            return fail(JW_TRT_ERR_VERSION,
                std::string(libName) + " is TensorRT " + versionText(rt->libVersion) + " but jetwatch was built against "
                    + versionText(header) + " headers: the library must have the same major version and at least the same minor");
        }
        rt->logger.reset(new Logger(log, log_user, min_severity));
        rt->runtime.reset(static_cast<IRuntime*>(createRuntime(static_cast<ILogger*>(rt->logger.get()), header)));
        if (!rt->runtime)
        {
            return fail(JW_TRT_ERR_RUNTIME, "createInferRuntime failed: " + rt->logger->lastError());
        }
        *out = rt.release();
        return JW_TRT_OK;
    });
}

void jw_trt_runtime_destroy(jw_trt_runtime* rt)
{
    try
    {
        delete rt;
    }
    catch (...)
    {
    }
}

jw_trt_status jw_trt_runtime_lib_version(const jw_trt_runtime* rt, int32_t* out)
{
    if (rt == nullptr || out == nullptr)
    {
        return fail(JW_TRT_ERR_INVALID, "jw_trt_runtime_lib_version: null argument");
    }
    *out = rt->libVersion;
    return JW_TRT_OK;
}

jw_trt_status jw_trt_runtime_dla_cores(const jw_trt_runtime* rt, int32_t* out)
{
    return guard([&]() -> jw_trt_status {
        if (rt == nullptr || out == nullptr)
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_runtime_dla_cores: null argument");
        }
        *out = rt->runtime->getNbDLACores();
        return JW_TRT_OK;
    });
}

jw_trt_status jw_trt_blob_data(const jw_trt_blob* blob, const uint8_t** data, size_t* len)
{
    if (blob == nullptr || data == nullptr || len == nullptr)
    {
        return fail(JW_TRT_ERR_INVALID, "jw_trt_blob_data: null argument");
    }
    if (blob->mem)
    {
        *data = static_cast<uint8_t const*>(blob->mem->data());
        *len = blob->mem->size();
    }
    else
    {
        *data = reinterpret_cast<uint8_t const*>(blob->text.data());
        *len = blob->text.size();
    }
    return JW_TRT_OK;
}

void jw_trt_blob_destroy(jw_trt_blob* blob)
{
    try
    {
        delete blob;
    }
    catch (...)
    {
    }
}

jw_trt_status jw_trt_build_begin(jw_trt_runtime* rt, const jw_trt_build_options* opts, jw_trt_build** out)
{
    return guard([&]() -> jw_trt_status {
        if (rt == nullptr || opts == nullptr || out == nullptr || opts->onnx == nullptr || opts->onnx_len == 0)
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_build_begin: null argument or empty model");
        }
        *out = nullptr;
        if (opts->min_batch < 1 || opts->min_batch > opts->opt_batch || opts->opt_batch > opts->max_batch)
        {
            return fail(JW_TRT_ERR_INVALID,
                "batch profile must satisfy 1 <= min <= opt <= max, got " + std::to_string(opts->min_batch) + "/"
                    + std::to_string(opts->opt_batch) + "/" + std::to_string(opts->max_batch));
        }
        if (rt->createBuilder == nullptr)
        {
            return fail(JW_TRT_ERR_UNAVAILABLE,
                rt->noBuilderReason
                    + " (a runtime-only TensorRT library cannot build engines: build the plan with `jetwatch "
                      "engine build` where the full libnvinfer is installed)");
        }
        std::unique_ptr<jw_trt_build> b(new jw_trt_build());
        b->rt = rt;
        rt->logger->clearLastError();

        char const* parserName = opts->onnxparser_path != nullptr ? opts->onnxparser_path : kParserDefault;
        jw_trt_status st = openLibrary(b->parserLib, opts->onnxparser_path, kParserDefault, kParserPackage);
        if (st != JW_TRT_OK)
        {
            return st;
        }
        CreateParserFn createParser = nullptr;
        if ((st = lookup(b->parserLib, parserName, "createNvOnnxParser_INTERNAL", createParser)) != JW_TRT_OK)
        {
            return st;
        }

        int32_t const header = static_cast<int32_t>(NV_TENSORRT_VERSION);
        b->builder.reset(static_cast<IBuilder*>(rt->createBuilder(static_cast<ILogger*>(rt->logger.get()), header)));
        if (!b->builder)
        {
            return fail(JW_TRT_ERR_BUILD, "createInferBuilder failed: " + rt->logger->lastError());
        }
        // 10.x: explicit batch is the only mode (kEXPLICIT_BATCH is deprecated and ignored);
        // the network is weakly typed so kFP16 below lets the builder choose FP16 kernels.
        // 11.x: every network is strongly typed (kSTRONGLY_TYPED is deprecated: always on).
        b->network.reset(b->builder->createNetworkV2(0U));
        if (!b->network)
        {
            return fail(JW_TRT_ERR_BUILD, "createNetworkV2 failed: " + rt->logger->lastError());
        }
        b->parser.reset(static_cast<nvonnxparser::IParser*>(
            createParser(b->network.get(), static_cast<ILogger*>(rt->logger.get()), NV_ONNX_PARSER_VERSION)));
        if (!b->parser)
        {
            return fail(JW_TRT_ERR_PARSE, "createNvOnnxParser failed: " + rt->logger->lastError());
        }
        if (!b->parser->parse(opts->onnx, opts->onnx_len))
        {
            std::string msg = "the ONNX parser rejected the model:";
            for (int32_t i = 0; i < b->parser->getNbErrors(); ++i)
            {
                nvonnxparser::IParserError const* e = b->parser->getError(i);
                msg += std::string("\n  node ") + std::to_string(e->node()) + " (" + (e->nodeName() ? e->nodeName() : "")
                    + "): " + (e->desc() ? e->desc() : "");
            }
            return fail(JW_TRT_ERR_PARSE, msg);
        }

        b->config.reset(b->builder->createBuilderConfig());
        if (!b->config)
        {
            return fail(JW_TRT_ERR_BUILD, "createBuilderConfig failed: " + rt->logger->lastError());
        }
#if NV_TENSORRT_MAJOR < 11
        if (opts->fp16 != 0)
        {
            b->config->setFlag(BuilderFlag::kFP16);
        }
#endif
        b->config->setProfilingVerbosity(ProfilingVerbosity::kDETAILED);
        if (opts->workspace_bytes > 0)
        {
            b->config->setMemoryPoolLimit(MemoryPoolType::kWORKSPACE, static_cast<std::size_t>(opts->workspace_bytes));
        }

        if (opts->dla_core >= 0)
        {
#if NV_TENSORRT_MAJOR >= 11
            if (rt->libVersion < 110401)
            {
                return fail(JW_TRT_ERR_VERSION,
                    "DLA needs TensorRT 11.4.1 or newer on the 11.x line (AGX Orin); this library is "
                        + versionText(rt->libVersion));
            }
#endif
            int32_t const cores = b->builder->getNbDLACores();
            if (opts->dla_core >= cores)
            {
                return fail(JW_TRT_ERR_INVALID,
                    "DLA core " + std::to_string(opts->dla_core) + " requested but this device has "
                        + std::to_string(cores) + " DLA core(s)");
            }
            b->config->setDefaultDeviceType(DeviceType::kDLA);
            b->config->setDLACore(opts->dla_core);
            b->dlaCore = opts->dla_core;
        }

        // Batch profile: every input whose first dimension is dynamic gets min/opt/max batch;
        // any other dynamic dimension is not supported (the pipeline binds fixed buffers).
        IOptimizationProfile* profile = b->builder->createOptimizationProfile();
        bool dynamic = false;
        for (int32_t i = 0; i < b->network->getNbInputs(); ++i)
        {
            ITensor* t = b->network->getInput(i);
            Dims64 const d = t->getDimensions();
            char const* name = t->getName();
            for (int32_t k = 1; k < d.nbDims; ++k)
            {
                if (d.d[k] < 0)
                {
                    return fail(JW_TRT_ERR_INVALID,
                        std::string("input ") + name + " has shape " + dimsText(d)
                            + ": only the batch dimension may be dynamic; export the ONNX with a fixed input size");
                }
            }
            if (d.nbDims == 0)
            {
                continue;
            }
            if (d.d[0] < 0)
            {
                dynamic = true;
                Dims64 lo = d;
                Dims64 opt = d;
                Dims64 hi = d;
                lo.d[0] = opts->min_batch;
                opt.d[0] = opts->opt_batch;
                hi.d[0] = opts->max_batch;
                if (!profile->setDimensions(name, OptProfileSelector::kMIN, lo)
                    || !profile->setDimensions(name, OptProfileSelector::kOPT, opt)
                    || !profile->setDimensions(name, OptProfileSelector::kMAX, hi))
                {
                    return fail(JW_TRT_ERR_INVALID,
                        std::string("cannot set the batch profile of input ") + name + ": " + rt->logger->lastError());
                }
            }
            else if (d.d[0] != opts->max_batch)
            {
                return fail(JW_TRT_ERR_INVALID,
                    std::string("input ") + name + " has a fixed batch of " + std::to_string(d.d[0])
                        + " but a batch of " + std::to_string(opts->max_batch)
                        + " was asked for: set the batch size to it, or export the ONNX with a dynamic batch axis");
            }
        }
        if (dynamic && b->config->addOptimizationProfile(profile) < 0)
        {
            return fail(JW_TRT_ERR_INVALID, "invalid optimisation profile: " + rt->logger->lastError());
        }

        b->cache.reset(b->config->createTimingCache(opts->timing_cache, opts->timing_cache != nullptr ? opts->timing_cache_len : 0));
        if (b->cache && opts->timing_cache != nullptr && !b->config->setTimingCache(*b->cache, false))
        {
            // A cache from another TensorRT version or device: start from an empty one.
            rt->logger->log(ILogger::Severity::kWARNING, "jetwatch: timing cache does not match this TensorRT/device; starting a new one");
            b->cache.reset(b->config->createTimingCache(nullptr, 0));
            if (b->cache)
            {
                b->config->setTimingCache(*b->cache, false);
            }
        }
        else if (b->cache && opts->timing_cache == nullptr)
        {
            b->config->setTimingCache(*b->cache, false);
        }

        b->monitor.reset(new ProgressMonitor(opts->progress, opts->progress_user));
        b->config->setProgressMonitor(b->monitor.get());

        *out = b.release();
        return JW_TRT_OK;
    });
}

void jw_trt_build_destroy(jw_trt_build* b)
{
    try
    {
        if (b != nullptr)
        {
            // Parser before network, network before builder; the parser library last.
            b->parser.reset();
            b->cache.reset();
            b->config.reset();
            b->network.reset();
            b->builder.reset();
            delete b;
        }
    }
    catch (...)
    {
    }
}

jw_trt_status jw_trt_build_layer_count(const jw_trt_build* b, int32_t* out)
{
    return guard([&]() -> jw_trt_status {
        if (b == nullptr || out == nullptr)
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_build_layer_count: null argument");
        }
        *out = b->network->getNbLayers();
        return JW_TRT_OK;
    });
}

jw_trt_status jw_trt_build_layer(
    const jw_trt_build* b, int32_t index, const char** name, int32_t* can_run_on_dla, int32_t* output_type)
{
    return guard([&]() -> jw_trt_status {
        if (b == nullptr || name == nullptr || can_run_on_dla == nullptr || output_type == nullptr)
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_build_layer: null argument");
        }
        if (index < 0 || index >= b->network->getNbLayers())
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_build_layer: index " + std::to_string(index) + " out of range");
        }
        ILayer const* layer = b->network->getLayer(index);
        *name = layer->getName();
        *can_run_on_dla = (b->dlaCore >= 0 && b->config->canRunOnDLA(layer)) ? 1 : 0;
        ITensor const* o = layer->getNbOutputs() > 0 ? layer->getOutput(0) : nullptr;
        *output_type = o != nullptr ? static_cast<int32_t>(o->getType()) : -1;
        return JW_TRT_OK;
    });
}

jw_trt_status jw_trt_build_set_gpu_fallback(jw_trt_build* b, int32_t allow)
{
    return guard([&]() -> jw_trt_status {
        if (b == nullptr)
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_build_set_gpu_fallback: null argument");
        }
        if (allow != 0)
        {
            b->config->setFlag(BuilderFlag::kGPU_FALLBACK);
        }
        else
        {
            b->config->clearFlag(BuilderFlag::kGPU_FALLBACK);
        }
        return JW_TRT_OK;
    });
}

jw_trt_status jw_trt_build_set_progress(jw_trt_build* b, jw_trt_progress_fn progress, void* user)
{
    if (b == nullptr || !b->monitor)
    {
        return fail(JW_TRT_ERR_INVALID, "jw_trt_build_set_progress: null argument");
    }
    b->monitor->set(progress, user);
    return JW_TRT_OK;
}

jw_trt_status jw_trt_build_run(jw_trt_build* b, jw_trt_blob** plan)
{
    return guard([&]() -> jw_trt_status {
        if (b == nullptr || plan == nullptr)
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_build_run: null argument");
        }
        *plan = nullptr;
        b->rt->logger->clearLastError();
        std::unique_ptr<jw_trt_blob> out(new jw_trt_blob());
        out->mem.reset(b->builder->buildSerializedNetwork(*b->network, *b->config));
        if (!out->mem || out->mem->size() == 0)
        {
            if (b->monitor && b->monitor->cancelled())
            {
                return fail(JW_TRT_ERR_BUILD, "engine build cancelled");
            }
            return fail(JW_TRT_ERR_BUILD, "buildSerializedNetwork failed: " + b->rt->logger->lastError());
        }
        *plan = out.release();
        return JW_TRT_OK;
    });
}

jw_trt_status jw_trt_build_timing_cache(const jw_trt_build* b, jw_trt_blob** out)
{
    return guard([&]() -> jw_trt_status {
        if (b == nullptr || out == nullptr)
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_build_timing_cache: null argument");
        }
        *out = nullptr;
        ITimingCache const* cache = b->config->getTimingCache();
        if (cache == nullptr)
        {
            return fail(JW_TRT_ERR_BUILD, "the builder has no timing cache");
        }
        std::unique_ptr<jw_trt_blob> blob(new jw_trt_blob());
        blob->mem.reset(cache->serialize());
        if (!blob->mem)
        {
            return fail(JW_TRT_ERR_BUILD, "ITimingCache::serialize failed: " + b->rt->logger->lastError());
        }
        *out = blob.release();
        return JW_TRT_OK;
    });
}

jw_trt_status jw_trt_engine_deserialize(
    jw_trt_runtime* rt, const uint8_t* plan, size_t len, int32_t dla_core, jw_trt_engine** out)
{
    return guard([&]() -> jw_trt_status {
        if (rt == nullptr || plan == nullptr || len == 0 || out == nullptr)
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_engine_deserialize: null argument or empty plan");
        }
        *out = nullptr;
        rt->logger->clearLastError();
        if (dla_core >= 0)
        {
            rt->runtime->setDLACore(dla_core);
        }
        std::unique_ptr<jw_trt_engine> e(new jw_trt_engine());
        e->rt = rt;
        e->engine.reset(rt->runtime->deserializeCudaEngine(plan, len));
        if (!e->engine)
        {
            return fail(JW_TRT_ERR_RUNTIME, "deserializeCudaEngine failed: " + rt->logger->lastError());
        }
        *out = e.release();
        return JW_TRT_OK;
    });
}

void jw_trt_engine_destroy(jw_trt_engine* e)
{
    try
    {
        delete e;
    }
    catch (...)
    {
    }
}

jw_trt_status jw_trt_engine_io_count(const jw_trt_engine* e, int32_t* out)
{
    return guard([&]() -> jw_trt_status {
        if (e == nullptr || out == nullptr)
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_engine_io_count: null argument");
        }
        *out = e->engine->getNbIOTensors();
        return JW_TRT_OK;
    });
}

jw_trt_status jw_trt_engine_io(const jw_trt_engine* e, int32_t index, const char** name, int32_t* is_input,
    int32_t* dtype, int32_t* nb_dims, int64_t* dims, int64_t* max_dims)
{
    return guard([&]() -> jw_trt_status {
        if (e == nullptr || name == nullptr || is_input == nullptr || dtype == nullptr || nb_dims == nullptr
            || dims == nullptr || max_dims == nullptr)
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_engine_io: null argument");
        }
        ICudaEngine const& eng = *e->engine;
        if (index < 0 || index >= eng.getNbIOTensors())
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_engine_io: index " + std::to_string(index) + " out of range");
        }
        char const* n = eng.getIOTensorName(index);
        *name = n;
        bool const input = eng.getTensorIOMode(n) == TensorIOMode::kINPUT;
        *is_input = input ? 1 : 0;
        *dtype = static_cast<int32_t>(eng.getTensorDataType(n));
        Dims64 const d = eng.getTensorShape(n);
        fromDims(d, nb_dims, dims);
        int32_t ignored = 0;
        bool dynamic = false;
        for (int32_t k = 0; k < d.nbDims; ++k)
        {
            dynamic = dynamic || d.d[k] < 0;
        }
        if (input && dynamic && eng.getNbOptimizationProfiles() > 0)
        {
            fromDims(eng.getProfileShape(n, 0, OptProfileSelector::kMAX), &ignored, max_dims);
        }
        else
        {
            fromDims(d, &ignored, max_dims);
        }
        return JW_TRT_OK;
    });
}

jw_trt_status jw_trt_engine_inspect_json(const jw_trt_engine* e, jw_trt_blob** out)
{
    return guard([&]() -> jw_trt_status {
        if (e == nullptr || out == nullptr)
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_engine_inspect_json: null argument");
        }
        *out = nullptr;
        Owned<IEngineInspector> inspector(e->engine->createEngineInspector());
        if (!inspector)
        {
            return fail(JW_TRT_ERR_RUNTIME, "createEngineInspector failed: " + e->rt->logger->lastError());
        }
        char const* info = inspector->getEngineInformation(LayerInformationFormat::kJSON);
        if (info == nullptr)
        {
            return fail(JW_TRT_ERR_RUNTIME, "IEngineInspector::getEngineInformation returned nothing");
        }
        std::unique_ptr<jw_trt_blob> blob(new jw_trt_blob());
        blob->text = info;
        *out = blob.release();
        return JW_TRT_OK;
    });
}

jw_trt_status jw_trt_context_create(jw_trt_engine* e, jw_trt_context** out)
{
    return guard([&]() -> jw_trt_status {
        if (e == nullptr || out == nullptr)
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_context_create: null argument");
        }
        *out = nullptr;
        e->rt->logger->clearLastError();
        std::unique_ptr<jw_trt_context> c(new jw_trt_context());
        c->engine = e;
        // Default strategy kSTATIC: the activation memory is allocated here, once.
        c->ctx.reset(e->engine->createExecutionContext());
        if (!c->ctx)
        {
            return fail(JW_TRT_ERR_RUNTIME, "createExecutionContext failed: " + e->rt->logger->lastError());
        }
        *out = c.release();
        return JW_TRT_OK;
    });
}

void jw_trt_context_destroy(jw_trt_context* c)
{
    try
    {
        delete c;
    }
    catch (...)
    {
    }
}

jw_trt_status jw_trt_context_set_input_shape(jw_trt_context* c, const char* name, int32_t nb_dims, const int64_t* dims)
{
    return guard([&]() -> jw_trt_status {
        if (c == nullptr || name == nullptr || dims == nullptr || nb_dims < 0 || nb_dims > JW_TRT_MAX_DIMS)
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_context_set_input_shape: bad argument");
        }
        if (!c->ctx->setInputShape(name, toDims(nb_dims, dims)))
        {
            return fail(JW_TRT_ERR_INVALID,
                std::string("setInputShape(") + name + ") rejected: " + c->engine->rt->logger->lastError());
        }
        return JW_TRT_OK;
    });
}

jw_trt_status jw_trt_context_tensor_shape(const jw_trt_context* c, const char* name, int32_t* nb_dims, int64_t* dims)
{
    return guard([&]() -> jw_trt_status {
        if (c == nullptr || name == nullptr || nb_dims == nullptr || dims == nullptr)
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_context_tensor_shape: null argument");
        }
        fromDims(c->ctx->getTensorShape(name), nb_dims, dims);
        return JW_TRT_OK;
    });
}

jw_trt_status jw_trt_context_set_tensor_address(jw_trt_context* c, const char* name, void* ptr)
{
    return guard([&]() -> jw_trt_status {
        if (c == nullptr || name == nullptr || ptr == nullptr)
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_context_set_tensor_address: null argument");
        }
        if (!c->ctx->setTensorAddress(name, ptr))
        {
            return fail(JW_TRT_ERR_INVALID,
                std::string("setTensorAddress(") + name + ") rejected: " + c->engine->rt->logger->lastError());
        }
        return JW_TRT_OK;
    });
}

jw_trt_status jw_trt_context_enqueue(jw_trt_context* c, void* stream)
{
    // No allocation on success: the guard's clear() of an already empty string is free, and
    // nothing else here allocates.
    return guard([&]() -> jw_trt_status {
        if (c == nullptr)
        {
            return fail(JW_TRT_ERR_INVALID, "jw_trt_context_enqueue: null context");
        }
        if (!c->ctx->enqueueV3(static_cast<cudaStream_t>(stream)))
        {
            return fail(JW_TRT_ERR_RUNTIME, "enqueueV3 failed: " + c->engine->rt->logger->lastError());
        }
        return JW_TRT_OK;
    });
}

} // extern "C"
