// tsdistill native addon: tensor handles, one generic operator call through the c10 dispatcher, and a few
// helpers (autograd, grad mode, RNG, threads, version, TorchScript modules). Everything else lives in TypeScript.
#include <napi.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/record_function.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/function_schema.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/generated/variable_factories.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/serialization/import.h>
#include <torch/version.h>

#ifdef TSD_C10D
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#include <torch/csrc/autograd/custom_function.h>
#endif

#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

// ---------------------------------------------------------------- tensor handles

struct Holder {
  at::Tensor t;
  int64_t bytes = 0;
  bool disposed = false;
};

std::atomic<int64_t> g_live{0};

int64_t accountedBytes(const at::Tensor& t) {
  return t.defined() ? static_cast<int64_t>(t.numel()) * static_cast<int64_t>(t.element_size()) : 0;
}

// Tensor bytes are reported to V8 as external memory so that the garbage collector, the backstop for wrappers that
// were never disposed, feels their weight. They are reported in batches, not per tensor: a training step creates and
// disposes gigabytes of short-lived activations (resnet56 at batch 128: ~1.3 GB), and V8 answers every 64 MB of
// reported growth with a full mark-compact (~25 per step there, most of the step's time on a GPU). The live total is
// reported when JavaScript yields to the event loop (syncExternalMemory, called by nextTick) and whenever it has moved
// by more than kUnreportedLimit since the last report, which still catches a synchronous loop that leaks.
std::atomic<int64_t> g_liveBytes{0};
int64_t g_reportedBytes = 0;  // touched on the JavaScript thread only
constexpr int64_t kUnreportedLimit = int64_t(1) << 30;

void reportExternalMemory(Napi::Env env) {
  const int64_t d = g_liveBytes.load() - g_reportedBytes;
  if (d == 0) return;
  Napi::MemoryManagement::AdjustExternalMemory(env, d);
  g_reportedBytes += d;
}

void trackBytes(Napi::Env env, int64_t delta) {
  if (delta == 0) return;
  const int64_t d = (g_liveBytes += delta) - g_reportedBytes;
  if (d > kUnreportedLimit || d < -kUnreportedLimit) reportExternalMemory(env);
}

void finalizeHolder(Napi::Env env, Holder* h) {
  if (!h->disposed) {
    g_live--;
    trackBytes(env, -h->bytes);
  }
  delete h;
}

Napi::Value wrapTensor(Napi::Env env, at::Tensor t) {
  if (!t.defined()) return env.Null();
  auto* h = new Holder();
  h->t = std::move(t);
  h->bytes = accountedBytes(h->t);
  g_live++;
  trackBytes(env, h->bytes);
  return Napi::External<Holder>::New(env, h, finalizeHolder);
}

std::string jsTypeName(const Napi::Value& v) {
  switch (v.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "boolean";
    case napi_number: return "number";
    case napi_string: return "string";
    case napi_symbol: return "symbol";
    case napi_object: return v.IsArray() ? "array" : "object";
    case napi_function: return "function";
    case napi_external: return "tensor handle";
    case napi_bigint: return "bigint";
  }
  return "unknown";
}

Holder* holderOf(const Napi::Value& v, const char* what) {
  if (!v.IsExternal()) throw std::invalid_argument(std::string(what) + ": expected a Tensor, got " + jsTypeName(v));
  auto* h = v.As<Napi::External<Holder>>().Data();
  if (h->disposed) throw std::invalid_argument(std::string(what) + ": Tensor used after dispose()");
  return h;
}

at::Tensor& tensorOf(const Napi::Value& v, const char* what = "tensor") { return holderOf(v, what)->t; }

// ---------------------------------------------------------------- names

at::ScalarType parseDtype(const std::string& s) {
  if (s == "float32" || s == "float") return at::kFloat;
  if (s == "float64" || s == "double") return at::kDouble;
  if (s == "float16" || s == "half") return at::kHalf;
  if (s == "bfloat16") return at::kBFloat16;
  if (s == "int64" || s == "long") return at::kLong;
  if (s == "int32" || s == "int") return at::kInt;
  if (s == "int16" || s == "short") return at::kShort;
  if (s == "int8") return at::kChar;
  if (s == "uint8") return at::kByte;
  if (s == "bool") return at::kBool;
  if (s == "complex64") return at::kComplexFloat;
  if (s == "complex128") return at::kComplexDouble;
  throw std::invalid_argument("unknown dtype '" + s +
                              "' (expected one of float32, float64, float16, bfloat16, int64, int32, int16, int8, "
                              "uint8, bool, complex64, complex128)");
}

const char* dtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kShort: return "int16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    case at::kComplexFloat: return "complex64";
    case at::kComplexDouble: return "complex128";
    default: return c10::toString(t);
  }
}

at::Layout parseLayout(const std::string& s) {
  if (s == "strided") return at::kStrided;
  if (s == "sparse_coo" || s == "sparse") return at::kSparse;
  throw std::invalid_argument("unknown layout '" + s + "' (expected strided or sparse_coo)");
}

at::MemoryFormat parseMemoryFormat(const std::string& s) {
  if (s == "contiguous") return at::MemoryFormat::Contiguous;
  if (s == "channels_last") return at::MemoryFormat::ChannelsLast;
  if (s == "channels_last_3d") return at::MemoryFormat::ChannelsLast3d;
  if (s == "preserve") return at::MemoryFormat::Preserve;
  throw std::invalid_argument("unknown memory format '" + s +
                              "' (expected contiguous, channels_last, channels_last_3d or preserve)");
}

// ---------------------------------------------------------------- warnings -> process.emitWarning

class CollectingWarningHandler : public c10::WarningHandler {
 public:
#if TORCH_VERSION_MAJOR >= 2
  // libtorch 2.x hands over a Warning object
  void process(const c10::Warning& w) override {
    std::lock_guard<std::mutex> lock(mu);
    pending.push_back(w.msg());
  }
#else
  void process(const c10::SourceLocation&, const std::string& msg, const bool) override {
    std::lock_guard<std::mutex> lock(mu);
    pending.push_back(msg);
  }
#endif
  std::mutex mu;
  std::vector<std::string> pending;
};

CollectingWarningHandler g_warnings;
std::atomic<bool> g_hasWarnings{false};

struct WarningScope {
  // The handler is global; flushing happens on the JS thread after each call.
  void flush(Napi::Env env) {
    std::vector<std::string> msgs;
    {
      std::lock_guard<std::mutex> lock(g_warnings.mu);
      if (g_warnings.pending.empty()) return;
      msgs.swap(g_warnings.pending);
    }
    Napi::Object process = env.Global().Get("process").As<Napi::Object>();
    Napi::Function emit = process.Get("emitWarning").As<Napi::Function>();
    for (auto& m : msgs) emit.Call(process, {Napi::String::New(env, m), Napi::String::New(env, "TorchWarning")});
  }
};

// ---------------------------------------------------------------- operator table

enum class Kind : uint8_t {
  Tensor, Int, Float, Bool, Scalar, Str, Device, ScalarType, Layout, MemoryFormat, Generator,
  IntList, FloatList, BoolList, TensorList, OptTensorList, Unsupported
};

struct ArgInfo {
  std::string name;
  Kind kind = Kind::Unsupported;
  bool optional = false;
  int64_t n = -1;  // fixed list length (int[2]) or -1
  bool hasDefault = false;
  c10::IValue defaultValue;
};

struct RetInfo {
  bool mutatedAlias = false;  // Tensor(a!) return: the caller already holds it
};

struct OpInfo {
  c10::OperatorHandle handle;
  std::string display;
  std::vector<ArgInfo> args;
  std::vector<RetInfo> rets;
};

std::vector<std::unique_ptr<OpInfo>> g_ops;

Kind baseKind(const c10::TypePtr& t, bool* isList, bool* elemOptional) {
  using c10::TypeKind;
  *isList = false;
  *elemOptional = false;
  switch (t->kind()) {
    case TypeKind::TensorType: return Kind::Tensor;
    case TypeKind::IntType:
    case TypeKind::SymIntType: return Kind::Int;
    case TypeKind::FloatType:
    case TypeKind::SymFloatType: return Kind::Float;
    case TypeKind::BoolType: return Kind::Bool;
    case TypeKind::NumberType: return Kind::Scalar;
    case TypeKind::StringType: return Kind::Str;
    case TypeKind::DeviceObjType: return Kind::Device;
    case TypeKind::ScalarTypeType: return Kind::ScalarType;
    case TypeKind::LayoutType: return Kind::Layout;
    case TypeKind::MemoryFormatType: return Kind::MemoryFormat;
    case TypeKind::GeneratorType: return Kind::Generator;
    case TypeKind::ListType: {
      *isList = true;
      auto elem = t->expectRef<c10::ListType>().getElementType();
      switch (elem->kind()) {
        case TypeKind::IntType:
        case TypeKind::SymIntType: return Kind::IntList;
        case TypeKind::FloatType: return Kind::FloatList;
        case TypeKind::BoolType: return Kind::BoolList;
        case TypeKind::TensorType: return Kind::TensorList;
        case TypeKind::OptionalType:
          if (elem->expectRef<c10::OptionalType>().getElementType()->kind() == TypeKind::TensorType) {
            *elemOptional = true;
            return Kind::OptTensorList;
          }
          return Kind::Unsupported;
        default: return Kind::Unsupported;
      }
    }
    default: return Kind::Unsupported;
  }
}

ArgInfo describeArg(const c10::Argument& a) {
  ArgInfo info;
  info.name = a.name();
  c10::TypePtr t = a.real_type();
  if (t->kind() == c10::TypeKind::OptionalType) {
    info.optional = true;
    t = t->expectRef<c10::OptionalType>().getElementType();
  }
  bool isList, elemOpt;
  info.kind = baseKind(t, &isList, &elemOpt);
  if (a.N()) info.n = *a.N();
  if (a.default_value()) {
    info.hasDefault = true;
    info.defaultValue = *a.default_value();
  }
  return info;
}

const char* kindName(Kind k) {
  switch (k) {
    case Kind::Tensor: return "Tensor";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Bool: return "bool";
    case Kind::Scalar: return "Scalar";
    case Kind::Str: return "str";
    case Kind::Device: return "Device";
    case Kind::ScalarType: return "ScalarType";
    case Kind::Layout: return "Layout";
    case Kind::MemoryFormat: return "MemoryFormat";
    case Kind::Generator: return "Generator";
    case Kind::IntList: return "int[]";
    case Kind::FloatList: return "float[]";
    case Kind::BoolList: return "bool[]";
    case Kind::TensorList: return "Tensor[]";
    case Kind::OptTensorList: return "Tensor?[]";
    case Kind::Unsupported: return "unsupported";
  }
  return "?";
}

// ---------------------------------------------------------------- JS -> IValue

[[noreturn]] void badArg(const OpInfo& op, const ArgInfo& a, const std::string& expected, const Napi::Value& v) {
  throw std::invalid_argument(op.display + ": argument '" + a.name + "' expected " + expected + ", got " +
                              jsTypeName(v));
}

int64_t toInt(const OpInfo& op, const ArgInfo& a, const Napi::Value& v) {
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::nearbyint(d) != d || !std::isfinite(d))
      throw std::invalid_argument(op.display + ": argument '" + a.name + "' expected an integer, got " +
                                  std::to_string(d));
    return static_cast<int64_t>(d);
  }
  if (v.IsBigInt()) {
    bool lossless;
    return v.As<Napi::BigInt>().Int64Value(&lossless);
  }
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? 1 : 0;
  badArg(op, a, "int", v);
}

c10::Scalar toScalar(const OpInfo& op, const ArgInfo& a, const Napi::Value& v) {
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::isfinite(d) && std::nearbyint(d) == d && std::fabs(d) < 9007199254740992.0)
      return c10::Scalar(static_cast<int64_t>(d));
    return c10::Scalar(d);
  }
  if (v.IsBoolean()) return c10::Scalar(v.As<Napi::Boolean>().Value());
  if (v.IsBigInt()) {
    bool lossless;
    return c10::Scalar(v.As<Napi::BigInt>().Int64Value(&lossless));
  }
  badArg(op, a, "a number (Scalar)", v);
}

at::Tensor toTensorArg(const OpInfo& op, const ArgInfo& a, const Napi::Value& v) {
  if (v.IsExternal()) {
    auto* h = v.As<Napi::External<Holder>>().Data();
    if (h->disposed)
      throw std::invalid_argument(op.display + ": argument '" + a.name + "' is a Tensor used after dispose()");
    return h->t;
  }
  if (v.IsNumber() || v.IsBoolean() || v.IsBigInt()) {
    // A plain number where a Tensor is expected becomes a wrapped number, as in PyTorch, so that
    // type promotion treats it like a Python scalar.
    at::Tensor t = c10::scalar_to_tensor(toScalar(op, a, v));
    t.unsafeGetTensorImpl()->set_wrapped_number(true);
    return t;
  }
  badArg(op, a, "a Tensor", v);
}

c10::IValue toIValue(const OpInfo& op, const ArgInfo& a, const Napi::Value& v) {
  if (v.IsUndefined()) {
    if (a.hasDefault) return a.defaultValue;
    if (a.optional) return c10::IValue();
    throw std::invalid_argument(op.display + ": missing required argument '" + a.name + "' (" + kindName(a.kind) +
                                ")");
  }
  if (v.IsNull()) {
    if (a.optional) return c10::IValue();
    throw std::invalid_argument(op.display + ": argument '" + a.name + "' is not optional, got null");
  }
  switch (a.kind) {
    case Kind::Tensor: return toTensorArg(op, a, v);
    case Kind::Int: return toInt(op, a, v);
    case Kind::Float:
      if (v.IsNumber()) return v.As<Napi::Number>().DoubleValue();
      badArg(op, a, "a number", v);
    case Kind::Bool:
      if (v.IsBoolean()) return v.As<Napi::Boolean>().Value();
      badArg(op, a, "a boolean", v);
    case Kind::Scalar: return toScalar(op, a, v);
    case Kind::Str:
      if (v.IsString()) return v.As<Napi::String>().Utf8Value();
      badArg(op, a, "a string", v);
    case Kind::Device:
      if (v.IsString()) return c10::Device(v.As<Napi::String>().Utf8Value());
      badArg(op, a, "a device string ('cpu', 'cuda', 'cuda:1')", v);
    case Kind::ScalarType:
      if (v.IsString()) return static_cast<int64_t>(parseDtype(v.As<Napi::String>().Utf8Value()));
      badArg(op, a, "a dtype string", v);
    case Kind::Layout:
      if (v.IsString()) return static_cast<int64_t>(parseLayout(v.As<Napi::String>().Utf8Value()));
      badArg(op, a, "a layout string", v);
    case Kind::MemoryFormat:
      if (v.IsString()) return static_cast<int64_t>(parseMemoryFormat(v.As<Napi::String>().Utf8Value()));
      badArg(op, a, "a memory format string", v);
    case Kind::Generator: badArg(op, a, "nothing (generators are not supported; use manualSeed)", v);
    case Kind::IntList: {
      if (v.IsNumber() && a.n > 0) return std::vector<int64_t>(a.n, toInt(op, a, v));
      if (!v.IsArray()) badArg(op, a, a.n > 0 ? "an int or int[" + std::to_string(a.n) + "]" : "an int[]", v);
      auto arr = v.As<Napi::Array>();
      std::vector<int64_t> out(arr.Length());
      for (uint32_t i = 0; i < arr.Length(); i++) out[i] = toInt(op, a, arr.Get(i));
      return out;
    }
    case Kind::FloatList: {
      if (v.IsNumber() && a.n > 0) return std::vector<double>(a.n, v.As<Napi::Number>().DoubleValue());
      if (!v.IsArray()) badArg(op, a, "a float[]", v);
      auto arr = v.As<Napi::Array>();
      std::vector<double> out(arr.Length());
      for (uint32_t i = 0; i < arr.Length(); i++) out[i] = arr.Get(i).As<Napi::Number>().DoubleValue();
      return out;
    }
    case Kind::BoolList: {
      if (!v.IsArray()) badArg(op, a, "a bool[]", v);
      auto arr = v.As<Napi::Array>();
      c10::List<bool> out;
      for (uint32_t i = 0; i < arr.Length(); i++) out.push_back(arr.Get(i).ToBoolean().Value());
      return out;
    }
    case Kind::TensorList: {
      if (!v.IsArray()) badArg(op, a, "a Tensor[]", v);
      auto arr = v.As<Napi::Array>();
      std::vector<at::Tensor> out;
      out.reserve(arr.Length());
      for (uint32_t i = 0; i < arr.Length(); i++) out.push_back(toTensorArg(op, a, arr.Get(i)));
      return out;
    }
    case Kind::OptTensorList: {
      if (!v.IsArray()) badArg(op, a, "a (Tensor|null)[]", v);
      auto arr = v.As<Napi::Array>();
      c10::List<c10::optional<at::Tensor>> out;
      for (uint32_t i = 0; i < arr.Length(); i++) {
        Napi::Value e = arr.Get(i);
        if (e.IsNull() || e.IsUndefined()) out.push_back(c10::nullopt);
        else out.push_back(toTensorArg(op, a, e));
      }
      return out;
    }
    case Kind::Unsupported: break;
  }
  throw std::invalid_argument(op.display + ": argument '" + a.name + "' has a type the binding does not support");
}

// ---------------------------------------------------------------- IValue -> JS

Napi::Value fromIValue(Napi::Env env, c10::IValue&& v) {
  if (v.isTensor()) return wrapTensor(env, std::move(v).toTensor());
  if (v.isNone()) return env.Undefined();
  if (v.isDouble()) return Napi::Number::New(env, v.toDouble());
  if (v.isInt()) return Napi::Number::New(env, static_cast<double>(v.toInt()));
  if (v.isBool()) return Napi::Boolean::New(env, v.toBool());
  if (v.isTensorList()) {
    auto list = v.toTensorList();
    auto arr = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); i++) arr.Set(static_cast<uint32_t>(i), wrapTensor(env, list.get(i)));
    return arr;
  }
  if (v.isIntList()) {
    auto list = v.toIntVector();
    auto arr = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); i++) arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, list[i]));
    return arr;
  }
  if (v.isDoubleList()) {
    auto list = v.toDoubleVector();
    auto arr = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); i++) arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, list[i]));
    return arr;
  }
  if (v.isTuple()) {
    auto elems = v.toTupleRef().elements();
    auto arr = Napi::Array::New(env, elems.size());
    for (size_t i = 0; i < elems.size(); i++) arr.Set(static_cast<uint32_t>(i), fromIValue(env, c10::IValue(elems[i])));
    return arr;
  }
  if (v.isString()) return Napi::String::New(env, v.toStringRef());
  if (v.isList()) {
    auto list = v.toList();
    auto arr = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); i++) arr.Set(static_cast<uint32_t>(i), fromIValue(env, c10::IValue(list.get(i))));
    return arr;
  }
  if (v.isDevice()) return Napi::String::New(env, v.toDevice().str());
  if (v.isComplexDouble()) return Napi::Number::New(env, v.toComplexDouble().real());
  throw std::runtime_error(std::string("cannot convert a result of type ") + v.tagKind() + " to JavaScript");
}

// ---------------------------------------------------------------- error handling

std::string describeArgsForError(const OpInfo& op, const Napi::CallbackInfo& info) {
  std::ostringstream os;
  os << op.display << "(";
  bool first = true;
  for (size_t i = 0; i < op.args.size() && i + 1 < info.Length(); i++) {
    Napi::Value v = info[i + 1];
    if (!v.IsExternal()) continue;
    auto* h = v.As<Napi::External<Holder>>().Data();
    if (h->disposed || !h->t.defined()) continue;
    if (!first) os << ", ";
    first = false;
    os << op.args[i].name << ": " << dtypeName(h->t.scalar_type()) << h->t.sizes();
    if (!h->t.device().is_cpu()) os << " on " << h->t.device();
  }
  os << ")";
  return os.str();
}

template <typename F>
Napi::Value guarded(const Napi::CallbackInfo& info, F&& f) {
  Napi::Env env = info.Env();
  try {
    Napi::Value out = f();
    if (!g_warnings.pending.empty()) WarningScope().flush(env);
    return out;
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& e) {
    WarningScope().flush(env);
    throw Napi::Error::New(env, e.what_without_backtrace());
  } catch (const std::exception& e) {
    WarningScope().flush(env);
    throw Napi::Error::New(env, e.what());
  }
}

// ---------------------------------------------------------------- exported functions

// op(name, overload) -> id
Napi::Value OpLookup(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    std::string name = info[0].As<Napi::String>().Utf8Value();
    std::string overload = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
    auto handle = c10::Dispatcher::singleton().findSchema({name, overload});
    if (!handle) {
      std::ostringstream os;
      os << "unknown operator " << name << (overload.empty() ? "" : "." + overload);
      std::vector<std::string> candidates;
      for (const auto& on : c10::Dispatcher::singleton().getAllOpNames())
        if (on.name == name) candidates.push_back(on.overload_name.empty() ? "(default)" : on.overload_name);
      if (!candidates.empty()) {
        os << "; overloads of " << name << ":";
        for (auto& c : candidates) os << " " << c;
      }
      throw std::invalid_argument(os.str());
    }
    auto op = std::make_unique<OpInfo>(OpInfo{*handle, name + (overload.empty() ? "" : "." + overload), {}, {}});
    const auto& schema = handle->schema();
    for (const auto& a : schema.arguments()) op->args.push_back(describeArg(a));
    for (const auto& r : schema.returns()) op->rets.push_back(RetInfo{r.alias_info() && r.alias_info()->isWrite()});
    g_ops.push_back(std::move(op));
    return Napi::Number::New(info.Env(), static_cast<double>(g_ops.size() - 1));
  });
}

// call(id, ...args) -> result (single value, array for several returns, undefined for none).
// Returns that alias a mutated argument (Tensor(a!)) come back as undefined: the caller already holds them.
Napi::Value Call(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const OpInfo* opp = nullptr;
  try {
    uint32_t id = info[0].As<Napi::Number>().Uint32Value();
    if (id >= g_ops.size()) throw std::invalid_argument("invalid operator id " + std::to_string(id));
    const OpInfo& op = *g_ops[id];
    opp = &op;
    if (info.Length() - 1 > op.args.size())
      throw std::invalid_argument(op.display + ": expected at most " + std::to_string(op.args.size()) +
                                  " arguments, got " + std::to_string(info.Length() - 1));
    torch::jit::Stack stack;
    stack.reserve(op.args.size());
    for (size_t i = 0; i < op.args.size(); i++) {
      Napi::Value v = i + 1 < info.Length() ? info[i + 1] : env.Undefined();
      stack.push_back(toIValue(op, op.args[i], v));
    }
    op.handle.callBoxed(&stack);
    if (!g_warnings.pending.empty()) WarningScope().flush(env);
    size_t nret = op.rets.size();
    if (nret == 0) return env.Undefined();
    if (nret == 1) return op.rets[0].mutatedAlias ? env.Undefined() : fromIValue(env, std::move(stack[0]));
    auto arr = Napi::Array::New(env, nret);
    for (size_t i = 0; i < nret; i++)
      arr.Set(static_cast<uint32_t>(i), op.rets[i].mutatedAlias ? env.Undefined() : fromIValue(env, std::move(stack[i])));
    return arr;
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& e) {
    WarningScope().flush(env);
    std::string prefix = opp ? describeArgsForError(*opp, info) + ": " : "";
    throw Napi::Error::New(env, prefix + e.what_without_backtrace());
  } catch (const std::invalid_argument& e) {
    WarningScope().flush(env);
    throw Napi::TypeError::New(env, e.what());
  } catch (const std::exception& e) {
    WarningScope().flush(env);
    std::string prefix = opp ? describeArgsForError(*opp, info) + ": " : "";
    throw Napi::Error::New(env, prefix + e.what());
  }
}

Napi::Value ivalueToJsLiteral(Napi::Env env, const c10::IValue& v) {
  if (v.isNone()) return env.Null();
  if (v.isBool()) return Napi::Boolean::New(env, v.toBool());
  if (v.isInt()) return Napi::Number::New(env, static_cast<double>(v.toInt()));
  if (v.isDouble()) return Napi::Number::New(env, v.toDouble());
  if (v.isString()) return Napi::String::New(env, v.toStringRef());
  if (v.isIntList()) {
    auto l = v.toIntVector();
    auto arr = Napi::Array::New(env, l.size());
    for (size_t i = 0; i < l.size(); i++) arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, l[i]));
    return arr;
  }
  if (v.isDoubleList()) {
    auto l = v.toDoubleVector();
    auto arr = Napi::Array::New(env, l.size());
    for (size_t i = 0; i < l.size(); i++) arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, l[i]));
    return arr;
  }
  if (v.isBoolList()) {
    auto l = v.toBoolList();
    auto arr = Napi::Array::New(env, l.size());
    for (size_t i = 0; i < l.size(); i++) arr.Set(static_cast<uint32_t>(i), Napi::Boolean::New(env, l.get(i)));
    return arr;
  }
  if (v.isList() && v.toListRef().empty()) return Napi::Array::New(env, 0);
  std::ostringstream os;
  os << v;
  return Napi::String::New(env, "<" + os.str() + ">");
}

// schemas() -> every registered operator schema, for the op generator.
Napi::Value Schemas(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    auto names = c10::Dispatcher::singleton().getAllOpNames();
    auto out = Napi::Array::New(env);
    uint32_t k = 0;
    for (const auto& on : names) {
      auto handle = c10::Dispatcher::singleton().findSchema(on);
      if (!handle || !handle->hasSchema()) continue;
      const auto& schema = handle->schema();
      auto o = Napi::Object::New(env);
      o.Set("name", on.name);
      o.Set("overload", on.overload_name);
      std::ostringstream os;
      os << schema;
      o.Set("schema", os.str());
      auto args = Napi::Array::New(env);
      uint32_t ai = 0;
      for (const auto& a : schema.arguments()) {
        ArgInfo d = describeArg(a);
        auto ao = Napi::Object::New(env);
        ao.Set("name", a.name());
        ao.Set("type", a.real_type()->str());
        ao.Set("kind", kindName(d.kind));
        ao.Set("optional", d.optional);
        if (d.n > 0) ao.Set("n", Napi::Number::New(env, static_cast<double>(d.n)));
        ao.Set("kwargOnly", a.kwarg_only());
        ao.Set("hasDefault", d.hasDefault);
        if (d.hasDefault) ao.Set("default", ivalueToJsLiteral(env, d.defaultValue));
        ao.Set("mutated", a.alias_info() != nullptr && a.alias_info()->isWrite());
        if (a.alias_info() && !a.alias_info()->beforeSets().empty())
          ao.Set("alias", a.alias_info()->beforeSets().begin()->toUnqualString());
        args.Set(ai++, ao);
      }
      o.Set("args", args);
      auto rets = Napi::Array::New(env);
      uint32_t ri = 0;
      for (const auto& r : schema.returns()) {
        auto ro = Napi::Object::New(env);
        ro.Set("name", r.name());
        ro.Set("type", r.real_type()->str());
        ro.Set("mutated", r.alias_info() != nullptr && r.alias_info()->isWrite());
        if (r.alias_info() && !r.alias_info()->beforeSets().empty())
          ro.Set("alias", r.alias_info()->beforeSets().begin()->toUnqualString());
        rets.Set(ri++, ro);
      }
      o.Set("returns", rets);
      o.Set("isVararg", schema.is_vararg());
      out.Set(k++, o);
    }
    return out;
  });
}

// fromBuffer(view: ArrayBufferView, shape: number[], dtype: string) -> handle. Copies the bytes.
Napi::Value FromBuffer(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    if (!info[0].IsTypedArray() && !info[0].IsDataView() && !info[0].IsBuffer())
      throw std::invalid_argument("fromBuffer: expected a TypedArray, got " + jsTypeName(info[0]));
    auto ta = info[0].As<Napi::TypedArray>();
    size_t byteLength = ta.ByteLength();
    auto* src = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    auto shapeArr = info[1].As<Napi::Array>();
    std::vector<int64_t> shape(shapeArr.Length());
    int64_t numel = 1;
    for (uint32_t i = 0; i < shapeArr.Length(); i++) {
      shape[i] = shapeArr.Get(i).As<Napi::Number>().Int64Value();
      if (shape[i] < 0) throw std::invalid_argument("fromBuffer: negative dimension in shape");
      numel *= shape[i];
    }
    at::ScalarType dt = parseDtype(info[2].As<Napi::String>().Utf8Value());
    size_t need = static_cast<size_t>(numel) * c10::elementSize(dt);
    if (need != byteLength) {
      std::ostringstream os;
      os << "fromBuffer: shape " << c10::IntArrayRef(shape) << " of " << dtypeName(dt) << " needs " << need
         << " bytes, got " << byteLength;
      throw std::invalid_argument(os.str());
    }
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dt));
    if (need) std::memcpy(t.data_ptr(), src, need);
    return wrapTensor(info.Env(), std::move(t));
  });
}

// toBuffer(handle) -> ArrayBuffer holding the tensor's elements, contiguous, on the CPU.
Napi::Value ToBuffer(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    at::Tensor t = tensorOf(info[0]);
    t = t.detach().to(at::kCPU).contiguous();
    size_t n = t.numel() * t.element_size();
    auto buf = Napi::ArrayBuffer::New(info.Env(), n);
    if (n) std::memcpy(buf.Data(), t.data_ptr(), n);
    return buf;
  });
}

// meta(handle) -> [shape, dtype, device, requiresGrad]
Napi::Value Meta(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const at::Tensor& t = tensorOf(info[0]);
    auto sizes = t.sizes();
    auto shape = Napi::Array::New(env, sizes.size());
    for (size_t i = 0; i < sizes.size(); i++) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, sizes[i]));
    auto out = Napi::Array::New(env, 4);
    out.Set(0u, shape);
    out.Set(1u, Napi::String::New(env, dtypeName(t.scalar_type())));
    out.Set(2u, Napi::String::New(env, t.device().str()));
    out.Set(3u, Napi::Boolean::New(env, t.requires_grad()));
    return out;
  });
}

Napi::Value Shape(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    auto sizes = tensorOf(info[0]).sizes();
    auto shape = Napi::Array::New(env, sizes.size());
    for (size_t i = 0; i < sizes.size(); i++) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, sizes[i]));
    return shape;
  });
}

Napi::Value Dtype(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    return Napi::String::New(info.Env(), dtypeName(tensorOf(info[0]).scalar_type()));
  });
}

void disposeHolder(Napi::Env env, Holder* h) {
  if (h->disposed) return;
  h->disposed = true;
  h->t.reset();
  g_live--;
  trackBytes(env, -h->bytes);
}

// dispose(handle | handle[]): releases the handles' tensors (an array in one call: scopes free many at once).
Napi::Value Dispose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info[0].IsArray()) {
    auto arr = info[0].As<Napi::Array>();
    const uint32_t n = arr.Length();
    for (uint32_t i = 0; i < n; i++) {
      Napi::Value v = arr[i];
      if (!v.IsExternal()) throw Napi::TypeError::New(env, "dispose: expected tensor handles, got " + jsTypeName(v) + " at index " + std::to_string(i));
      disposeHolder(env, v.As<Napi::External<Holder>>().Data());
    }
    return env.Undefined();
  }
  if (!info[0].IsExternal()) throw Napi::TypeError::New(env, "dispose: expected a tensor handle");
  disposeHolder(env, info[0].As<Napi::External<Holder>>().Data());
  return env.Undefined();
}

Napi::Value IsDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), info[0].As<Napi::External<Holder>>().Data()->disposed);
}

Napi::Value SyncExternalMemory(const Napi::CallbackInfo& info) {
  reportExternalMemory(info.Env());
  return Napi::Number::New(info.Env(), static_cast<double>(g_liveBytes.load()));
}

Napi::Value LiveTensors(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(g_live.load()));
}

// ---------------------------------------------------------------- autograd

Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    tensorOf(info[0]).set_requires_grad(info[1].ToBoolean().Value());
    return info.Env().Undefined();
  });
}

Napi::Value Grad(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value { return wrapTensor(info.Env(), tensorOf(info[0]).grad()); });
}

Napi::Value SetGrad(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    at::Tensor& t = tensorOf(info[0]);
    if (info[1].IsNull() || info[1].IsUndefined()) t.mutable_grad() = at::Tensor();
    else t.mutable_grad() = tensorOf(info[1], "grad");
    return info.Env().Undefined();
  });
}

Napi::Value AutogradInfo(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    const at::Tensor& t = tensorOf(info[0]);
    auto out = Napi::Array::New(env, 2);
    out.Set(0u, Napi::Boolean::New(env, t.is_leaf()));
    auto fn = t.grad_fn();
    out.Set(1u, fn ? Napi::Value(Napi::String::New(env, fn->name())) : env.Null());
    return out;
  });
}

// backward(tensor, grad | null, retainGraph, createGraph, inputs[] | null)
Napi::Value Backward(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    at::Tensor t = tensorOf(info[0], "backward: tensor");
    std::vector<at::Tensor> grads;
    if (!info[1].IsNull() && !info[1].IsUndefined()) grads.push_back(tensorOf(info[1], "backward: gradient"));
    c10::optional<bool> retain;
    if (info[2].IsBoolean()) retain = info[2].As<Napi::Boolean>().Value();
    bool create = info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value();
    std::vector<at::Tensor> inputs;
    if (info.Length() > 4 && info[4].IsArray()) {
      auto arr = info[4].As<Napi::Array>();
      for (uint32_t i = 0; i < arr.Length(); i++) inputs.push_back(tensorOf(arr.Get(i), "backward: inputs"));
    }
    if (!t.requires_grad())
      throw std::invalid_argument(
          "backward: the tensor does not require grad and has no grad_fn (was it computed under noGrad, or from "
          "tensors that do not require grad?)");
    torch::autograd::backward({t}, grads, retain, create, inputs);
    return info.Env().Undefined();
  });
}

Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  bool prev = at::GradMode::is_enabled();
  at::GradMode::set_enabled(info[0].ToBoolean().Value());
  return Napi::Boolean::New(info.Env(), prev);
}

Napi::Value IsGradEnabled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), at::GradMode::is_enabled());
}

// ---------------------------------------------------------------- runtime

Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    at::manual_seed(static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value()));
    return info.Env().Undefined();
  });
}

using openblas_set_fn = void (*)(int);
using openblas_get_fn = int (*)();

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    int n = info[0].As<Napi::Number>().Int32Value();
    if (n < 1) throw std::invalid_argument("setNumThreads: expected a positive integer, got " + std::to_string(n));
    at::set_num_threads(n);
    bool blas = false;
    for (const char* sym : {"openblas_set_num_threads", "goto_set_num_threads"}) {
      if (auto fn = reinterpret_cast<openblas_set_fn>(dlsym(RTLD_DEFAULT, sym))) {
        fn(n);
        blas = true;
        break;
      }
    }
    return Napi::Boolean::New(info.Env(), blas);
  });
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto out = Napi::Object::New(env);
  out.Set("torch", at::get_num_threads());
  out.Set("interop", at::get_num_interop_threads());
  if (auto fn = reinterpret_cast<openblas_get_fn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads")))
    out.Set("openblas", fn());
  else
    out.Set("openblas", env.Null());
  return out;
}

Napi::Value Version(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    auto out = Napi::Object::New(env);
    out.Set("built", std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                         std::to_string(TORCH_VERSION_PATCH));
    std::string cfg = at::show_config();
    std::string runtime;
    auto pos = cfg.find("TORCH_VERSION=");
    if (pos != std::string::npos) {
      auto end = cfg.find_first_of(", \n", pos);
      runtime = cfg.substr(pos + 14, end == std::string::npos ? std::string::npos : end - pos - 14);
    }
    out.Set("runtime", runtime.empty() ? env.Null() : Napi::Value(Napi::String::New(env, runtime)));
    out.Set("config", cfg);
    out.Set("cuda", at::hasCUDA());
    Dl_info dl;
    if (dladdr(reinterpret_cast<void*>(&at::show_config), &dl) && dl.dli_fname)
      out.Set("library", std::string(dl.dli_fname));
    return out;
  });
}

Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    return Napi::Number::New(info.Env(), at::hasCUDA() ? static_cast<double>(at::detail::getCUDAHooks().getNumGPUs()) : 0);
  });
}

// ---------------------------------------------------------------- TorchScript modules (teachers)

struct ScriptHolder {
  torch::jit::Module m;
  std::string file;
  bool disposed = false;
};

ScriptHolder* scriptOf(const Napi::Value& v, const char* what) {
  if (!v.IsExternal()) throw std::invalid_argument(std::string(what) + ": expected a TorchScript module handle, got " + jsTypeName(v));
  auto* s = v.As<Napi::External<ScriptHolder>>().Data();
  if (s->disposed) throw std::invalid_argument(std::string(what) + ": TorchScript module " + s->file + " used after dispose()");
  return s;
}

// jitLoad(file) -> handle to the module, loaded on the CPU in eval mode. Errors name the file.
Napi::Value JitLoad(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    std::string file = info[0].As<Napi::String>().Utf8Value();
    auto* s = new ScriptHolder();
    s->file = file;
    try {
      s->m = torch::jit::load(file, c10::Device(c10::kCPU));
      s->m.eval();
    } catch (const c10::Error& e) {
      delete s;
      throw std::runtime_error(file + ": cannot load the TorchScript module: " + e.what_without_backtrace());
    } catch (const std::exception& e) {
      delete s;
      throw std::runtime_error(file + ": cannot load the TorchScript module: " + e.what());
    }
    return Napi::External<ScriptHolder>::New(info.Env(), s, [](Napi::Env, ScriptHolder* p) { delete p; });
  });
}

// Flattens a forward result into (name, tensor) pairs: a tensor is `prefix`, tuple and list elements `prefix.i`,
// dict entries `key` at the top level (`prefix.key` below it).
void flattenOutput(const c10::IValue& v, const std::string& prefix, bool top, std::vector<std::pair<std::string, at::Tensor>>& out) {
  if (v.isTensor()) {
    out.emplace_back(prefix, v.toTensor());
    return;
  }
  if (v.isTuple()) {
    const auto& elems = v.toTupleRef().elements();
    for (size_t i = 0; i < elems.size(); i++) flattenOutput(elems[i], prefix + "." + std::to_string(i), false, out);
    return;
  }
  if (v.isList()) {
    auto list = v.toList();
    for (size_t i = 0; i < list.size(); i++) flattenOutput(list.get(i), prefix + "." + std::to_string(i), false, out);
    return;
  }
  if (v.isGenericDict()) {
    for (const auto& kv : v.toGenericDict()) {
      std::string key;
      if (kv.key().isString()) key = kv.key().toStringRef();
      else if (kv.key().isInt()) key = std::to_string(kv.key().toInt());
      else throw std::runtime_error("forward returned a dict with " + std::string(kv.key().tagKind()) + " keys; expected str or int keys");
      flattenOutput(kv.value(), top ? key : prefix + "." + key, false, out);
    }
    return;
  }
  if (v.isNone()) return;
  throw std::runtime_error("forward returned a value of type " + std::string(v.tagKind()) + " at '" + prefix +
                           "'; expected tensors (alone, or in tuples, lists and dicts)");
}

// jitForward(handle, inputs: Tensor[]) -> [name, tensor][] (no gradients recorded).
Napi::Value JitForward(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    ScriptHolder* s = scriptOf(info[0], "jitForward");
    auto arr = info[1].As<Napi::Array>();
    std::vector<c10::IValue> inputs;
    for (uint32_t i = 0; i < arr.Length(); i++) inputs.emplace_back(tensorOf(arr.Get(i), "jitForward: input"));
    std::vector<std::pair<std::string, at::Tensor>> outs;
    {
      at::NoGradGuard ng;
      c10::IValue r = s->m.forward(inputs);
      flattenOutput(r, "output", true, outs);
    }
    auto result = Napi::Array::New(env, outs.size());
    for (size_t i = 0; i < outs.size(); i++) {
      auto pair = Napi::Array::New(env, 2);
      pair.Set(0u, Napi::String::New(env, outs[i].first));
      pair.Set(1u, wrapTensor(env, std::move(outs[i].second)));
      result.Set(static_cast<uint32_t>(i), pair);
    }
    return result;
  });
}

// jitTo(handle, device): moves the module's parameters and buffers.
Napi::Value JitTo(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    scriptOf(info[0], "jitTo")->m.to(c10::Device(info[1].As<Napi::String>().Utf8Value()));
    return info.Env().Undefined();
  });
}

// jitInfo(handle) -> { schema: forward's schema, parameters: count of parameter tensors }
Napi::Value JitInfo(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    ScriptHolder* s = scriptOf(info[0], "jitInfo");
    auto out = Napi::Object::New(env);
    std::ostringstream os;
    os << s->m.get_method("forward").function().getSchema();
    out.Set("schema", os.str());
    int64_t n = 0;
    for (const auto& p : s->m.parameters()) n += p.numel();
    out.Set("parameters", Napi::Number::New(env, static_cast<double>(n)));
    return out;
  });
}

Napi::Value JitDispose(const Napi::CallbackInfo& info) {
  if (!info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "jitDispose: expected a TorchScript module handle");
  auto* s = info[0].As<Napi::External<ScriptHolder>>().Data();
  if (!s->disposed) {
    s->disposed = true;
    s->m = torch::jit::Module();
  }
  return info.Env().Undefined();
}


// ---------------------------------------------------------------- op profile
//
// Counts and times every operator call and autograd node that libtorch records (the RecordFunction hooks PyTorch's
// own profiler uses), on every thread, between opProfile(true) and opProfile(false). Per name: calls, total µs and
// self µs (total minus the recorded calls nested inside it on the same thread). A diagnostic: the hooks cost about a
// microsecond per call while on, nothing while off.

struct OpStat {
  int64_t count = 0;
  double totalUs = 0;
  double selfUs = 0;
};
std::mutex g_profMu;
std::unordered_map<std::string, OpStat> g_prof;
bool g_profOn = false;
at::CallbackHandle g_profHandle = 0;

struct ProfCtx : at::ObserverContext {
  std::chrono::steady_clock::time_point t0;
  double childUs = 0;
  ProfCtx* parent = nullptr;
};
thread_local ProfCtx* tl_profTop = nullptr;

std::unique_ptr<at::ObserverContext> profStart(const at::RecordFunction&) {
  auto c = std::make_unique<ProfCtx>();
  c->parent = tl_profTop;
  tl_profTop = c.get();
  c->t0 = std::chrono::steady_clock::now();
  return c;
}

void profEnd(const at::RecordFunction& fn, at::ObserverContext* ctx) {
  auto* c = static_cast<ProfCtx*>(ctx);
  double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - c->t0).count();
  if (tl_profTop == c) tl_profTop = c->parent;
  if (c->parent) c->parent->childUs += us;
  std::lock_guard<std::mutex> lock(g_profMu);
  OpStat& s = g_prof[fn.name()];
  s.count++;
  s.totalUs += us;
  s.selfUs += us - c->childUs;
}

// opProfile(true): clears the counts and starts recording. opProfile(false): stops and returns
// [[name, calls, total µs, self µs], ...].
Napi::Value OpProfile(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    bool on = info[0].As<Napi::Boolean>().Value();
    if (on) {
      if (!g_profOn) {
        {
          std::lock_guard<std::mutex> lock(g_profMu);
          g_prof.clear();
        }
        g_profHandle = at::addGlobalCallback(at::RecordFunctionCallback(&profStart, &profEnd));
        g_profOn = true;
      }
      return env.Undefined();
    }
    if (g_profOn) {
      at::removeCallback(g_profHandle);
      g_profOn = false;
    }
    std::lock_guard<std::mutex> lock(g_profMu);
    auto out = Napi::Array::New(env, g_prof.size());
    uint32_t i = 0;
    for (const auto& [name, s] : g_prof) {
      auto row = Napi::Array::New(env, 4);
      row.Set(0u, Napi::String::New(env, name));
      row.Set(1u, Napi::Number::New(env, static_cast<double>(s.count)));
      row.Set(2u, Napi::Number::New(env, s.totalUs));
      row.Set(3u, Napi::Number::New(env, s.selfUs));
      out.Set(i++, row);
    }
    g_prof.clear();
    return out;
  });
}


// ---------------------------------------------------------------- process groups (c10d, Gloo)
//
// PyTorch's own collective layer: a store (TCPStore served by rank 0, or a FileStore on a shared file system) where
// the ranks meet, and a Gloo process group over it. The collectives run in place on CPU tensors and block until they
// complete or `timeoutMs` passes. Built only where the libtorch headers include c10d and the Gloo headers exist
// (find-libtorch.js --c10d); elsewhere distAvailable() is false and the other functions are absent.

#ifdef TSD_C10D
struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  int rank = 0;
  int size = 1;
  std::chrono::milliseconds timeout{0};
  bool destroyed = false;
};

Group* groupOf(const Napi::Value& v) {
  if (!v.IsExternal()) throw std::invalid_argument("expected a process group handle");
  auto* g = v.As<Napi::External<Group>>().Data();
  if (g->destroyed) throw std::invalid_argument("the process group was destroyed");
  return g;
}

std::vector<at::Tensor> tensorsOf(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw std::invalid_argument(std::string(what) + ": expected an array of tensors");
  auto arr = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    at::Tensor t = tensorOf(arr.Get(i), what);
    if (!t.is_contiguous()) throw std::invalid_argument(std::string(what) + ": tensor " + std::to_string(i) + " is not contiguous");
    out.push_back(t);
  }
  return out;
}

std::string formatSeconds(std::chrono::milliseconds t) {
  std::ostringstream os;
  os << t.count() / 1000.0;
  return os.str();
}

void waitWork(Group* g, const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
  try {
    work->wait(g->timeout);
  } catch (const c10::Error& e) {
    throw std::runtime_error("rank " + std::to_string(g->rank) + " of " + std::to_string(g->size) + ": " + what + " failed: " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw std::runtime_error("rank " + std::to_string(g->rank) + " of " + std::to_string(g->size) + ": " + what + " failed: " + e.what());
  }
}

// distInit({store: 'tcp'|'file', host, port, path, rank, size, timeoutMs, iface, prefix}) -> group handle
Napi::Value DistInit(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    auto o = info[0].As<Napi::Object>();
    const int rank = o.Get("rank").As<Napi::Number>().Int32Value();
    const int size = o.Get("size").As<Napi::Number>().Int32Value();
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o.Get("timeoutMs").As<Napi::Number>().DoubleValue()));
    const std::string kind = o.Get("store").As<Napi::String>().Utf8Value();
    const std::string prefix = o.Has("prefix") && o.Get("prefix").IsString() ? o.Get("prefix").As<Napi::String>().Utf8Value() : std::string("tsdistill");
    auto* g = new Group();
    g->rank = rank;
    g->size = size;
    g->timeout = timeout;
    std::string where;
    try {
      c10::intrusive_ptr<c10d::Store> base;
      if (kind == "file") {
        where = o.Get("path").As<Napi::String>().Utf8Value();
        base = c10::make_intrusive<c10d::FileStore>(where, size);
        base->setTimeout(timeout);
      } else {
        const std::string host = o.Get("host").As<Napi::String>().Utf8Value();
        const int port = o.Get("port").As<Napi::Number>().Int32Value();
        where = host + ":" + std::to_string(port);
        c10d::TCPStoreOptions so;
        so.port = static_cast<std::uint16_t>(port);
        so.isServer = rank == 0;
        so.numWorkers = static_cast<std::size_t>(size);
        so.waitWorkers = true;
        so.timeout = timeout;
        base = c10::make_intrusive<c10d::TCPStore>(host, so);
      }
      g->store = c10::make_intrusive<c10d::PrefixStore>(prefix, base);
    } catch (const std::exception& e) {
      delete g;
      std::string msg = dynamic_cast<const c10::Error*>(&e) ? static_cast<const c10::Error&>(e).what_without_backtrace() : e.what();
      throw std::runtime_error("rank " + std::to_string(rank) + " of " + std::to_string(size) + ": could not reach the " + kind + " store at " + where + " within " +
                               formatSeconds(timeout) + " s: " + msg);
    }
    try {
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      const std::string iface = o.Has("iface") && o.Get("iface").IsString() ? o.Get("iface").As<Napi::String>().Utf8Value() : std::string();
      const std::string bindHost = o.Has("bindHost") && o.Get("bindHost").IsString() ? o.Get("bindHost").As<Napi::String>().Utf8Value() : std::string();
      if (!iface.empty()) opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(iface));
      else if (!bindHost.empty()) opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(bindHost));
      else opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      opts->threads = 1;
      g->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, rank, size, opts);
    } catch (const std::exception& e) {
      delete g;
      std::string msg = dynamic_cast<const c10::Error*>(&e) ? static_cast<const c10::Error&>(e).what_without_backtrace() : e.what();
      throw std::runtime_error("rank " + std::to_string(rank) + " of " + std::to_string(size) + ": could not connect the process group (store " + where + "): " + msg);
    }
    return Napi::External<Group>::New(env, g, [](Napi::Env, Group* g) { delete g; });
  });
}

// distAllReduce(group, tensors): in-place sum over the ranks
Napi::Value DistAllReduce(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Group* g = groupOf(info[0]);
    auto ts = tensorsOf(info[1], "allReduce");
    if (ts.empty()) return info.Env().Undefined();
    // one tensor per call: Gloo's allreduce takes several only as copies of one tensor on several devices
    for (auto& t : ts) {
      std::vector<at::Tensor> one{t};
      waitWork(g, g->pg->allreduce(one), "all-reduce");
    }
    return info.Env().Undefined();
  });
}

// distBroadcast(group, tensors, root): in place from `root`
Napi::Value DistBroadcast(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Group* g = groupOf(info[0]);
    auto ts = tensorsOf(info[1], "broadcast");
    c10d::BroadcastOptions bo;
    bo.rootRank = info[2].As<Napi::Number>().Int32Value();
    for (auto& t : ts) {
      std::vector<at::Tensor> one{t};
      waitWork(g, g->pg->broadcast(one, bo), "broadcast");
    }
    return info.Env().Undefined();
  });
}

// distAllGather(group, tensor) -> [tensor of rank 0, ..., tensor of rank size-1]
Napi::Value DistAllGather(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Napi::Env env = info.Env();
    Group* g = groupOf(info[0]);
    at::Tensor t = tensorOf(info[1], "allGather").contiguous();
    std::vector<at::Tensor> in{t};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < g->size; r++) out[0].push_back(at::empty_like(t));
    waitWork(g, g->pg->allgather(out, in), "all-gather");
    auto arr = Napi::Array::New(env, out[0].size());
    for (size_t i = 0; i < out[0].size(); i++) arr.Set(static_cast<uint32_t>(i), wrapTensor(env, out[0][i]));
    return arr;
  });
}

Napi::Value DistBarrier(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Group* g = groupOf(info[0]);
    waitWork(g, g->pg->barrier(), "barrier");
    return info.Env().Undefined();
  });
}

// distStoreSet(group, key, value) / distStoreGet(group, key) -> string (waits up to the timeout)
Napi::Value DistStoreSet(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Group* g = groupOf(info[0]);
    const std::string v = info[2].As<Napi::String>().Utf8Value();
    g->store->set(info[1].As<Napi::String>().Utf8Value(), std::vector<uint8_t>(v.begin(), v.end()));
    return info.Env().Undefined();
  });
}
Napi::Value DistStoreGet(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Group* g = groupOf(info[0]);
    auto v = g->store->get(info[1].As<Napi::String>().Utf8Value());
    return Napi::String::New(info.Env(), std::string(v.begin(), v.end()));
  });
}

// ---- gradient buckets all-reduced during the backward pass (c10d's Reducer, the engine of PyTorch's DDP)
//
// The Reducer registers a hook on every parameter's gradient accumulator; once prepared for a backward pass, each
// bucket of gradients is all-reduced (asynchronously, on Gloo's thread) as soon as its last gradient is ready, while
// autograd goes on with the earlier layers; at the end of the backward pass it waits for the buckets and writes the
// mean over the ranks into the parameters' gradients. Parameters the pass does not reach are found by walking the
// graph from the loss (find_unused_parameters) and count as zeros in the mean (their gradient stays unset where no
// rank produced one).
struct ReducerBox {
  std::unique_ptr<c10d::Reducer> reducer;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;  // kept alive as long as the hooks may run
  int rank = 0;
  int size = 1;
};

ReducerBox* reducerOf(const Napi::Value& v) {
  if (!v.IsExternal()) throw std::invalid_argument("expected a gradient reducer handle");
  auto* b = v.As<Napi::External<ReducerBox>>().Data();
  if (!b->reducer) throw std::invalid_argument("the gradient reducer was destroyed");
  return b;
}

// Passes every warning on to the addon's handler but the reducer's advice on find_unused_parameters.
class UnusedParametersAdviceFilter : public c10::WarningHandler {
 public:
#if TORCH_VERSION_MAJOR >= 2
  UnusedParametersAdviceFilter() : prev_(c10::WarningUtils::get_warning_handler()) { c10::WarningUtils::set_warning_handler(this); }
  ~UnusedParametersAdviceFilter() override { c10::WarningUtils::set_warning_handler(prev_); }
  void process(const c10::Warning& w) override {
    if (w.msg().rfind("find_unused_parameters=True was specified", 0) != 0) prev_->process(w);
  }
#else
  UnusedParametersAdviceFilter() : prev_(c10::Warning::get_warning_handler()) { c10::Warning::set_warning_handler(this); }
  ~UnusedParametersAdviceFilter() override { c10::Warning::set_warning_handler(prev_); }
  void process(const c10::SourceLocation& loc, const std::string& msg, const bool verbatim) override {
    if (msg.rfind("find_unused_parameters=True was specified", 0) != 0) prev_->process(loc, msg, verbatim);
  }
#endif

 private:
  c10::WarningHandler* prev_;
};

// distReducer(group, params, bucketBytes, firstBucketBytes, names) -> handle
Napi::Value DistReducer(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Group* g = groupOf(info[0]);
    auto params = tensorsOf(info[1], "reducer");
    if (params.empty()) throw std::invalid_argument("reducer: no parameters");
    for (size_t i = 0; i < params.size(); i++)
      if (!params[i].requires_grad()) throw std::invalid_argument("reducer: parameter " + std::to_string(i) + " does not require grad");
    const int64_t cap = static_cast<int64_t>(info[2].As<Napi::Number>().DoubleValue());
    const int64_t first = static_cast<int64_t>(info[3].As<Napi::Number>().DoubleValue());
    std::unordered_map<size_t, std::string> names;
    if (info.Length() > 4 && info[4].IsArray()) {
      auto arr = info[4].As<Napi::Array>();
      for (uint32_t i = 0; i < arr.Length(); i++) names[i] = arr.Get(i).As<Napi::String>().Utf8Value();
    }
    std::vector<bool> sparse(params.size(), false);
    // as DDP: a small first bucket (it is the last gradients' bucket, so its all-reduce starts early), then `cap`;
    // buckets in reverse order of the parameters, the order in which backward produces their gradients
    auto assigned = c10d::compute_bucket_assignment_by_size(params, {static_cast<size_t>(first), static_cast<size_t>(cap)}, sparse);
    auto buckets = std::get<0>(assigned);
    auto limits = std::get<1>(assigned);
    std::reverse(buckets.begin(), buckets.end());
    std::reverse(limits.begin(), limits.end());
    auto* box = new ReducerBox();
    box->pg = g->pg;
    box->rank = g->rank;
    box->size = g->size;
    try {
      box->reducer = std::make_unique<c10d::Reducer>(params, buckets, limits, c10::static_intrusive_pointer_cast<c10d::ProcessGroup>(g->pg), sparse, cap,
                                                     /*find_unused_parameters=*/true, /*gradient_as_bucket_view=*/false, names, first);
    } catch (...) {
      delete box;
      throw;
    }
    return Napi::External<ReducerBox>::New(info.Env(), box, [](Napi::Env, ReducerBox* b) { delete b; });
  });
}

// distReducerPrepare(reducer, outputs): the next backward pass from `outputs` all-reduces the gradients
Napi::Value DistReducerPrepare(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    ReducerBox* b = reducerOf(info[0]);
    std::vector<at::Tensor> outs;
    auto arr = info[1].As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); i++) outs.push_back(tensorOf(arr.Get(i), "reducer outputs"));
    try {
      // the reducer looks for parameters the pass does not reach (find_unused_parameters) because a run's roles and
      // terms may leave some out; its advice to turn that off when none are found is not for the user here
      UnusedParametersAdviceFilter filter;
      b->reducer->prepare_for_forward();
      b->reducer->prepare_for_backward(outs);
    } catch (const c10::Error& e) {
      throw std::runtime_error("rank " + std::to_string(b->rank) + " of " + std::to_string(b->size) + ": gradient all-reduce: " + e.what_without_backtrace());
    }
    return info.Env().Undefined();
  });
}

Napi::Value DistReducerDestroy(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    if (!info[0].IsExternal()) throw std::invalid_argument("expected a gradient reducer handle");
    auto* b = info[0].As<Napi::External<ReducerBox>>().Data();
    b->reducer.reset();
    return info.Env().Undefined();
  });
}

// ---- synchronised batch normalisation: the statistics of the whole global batch, over the ranks
//
// Forward: every rank's per-channel mean, biased variance and row count are all-gathered and combined (Chan et al.'s
// parallel variance, in float64), the input normalised with them, and the running statistics updated with the
// unbiased variance of the global batch, as one process with the whole batch would. Backward: the per-channel sums of
// dy and dy·(x − mean) are all-reduced, so that the input's gradient is the whole batch's; weight and bias gradients
// stay per rank (the gradient all-reduce averages them with the other parameters).
struct SyncBatchNormFn : public torch::autograd::Function<SyncBatchNormFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::Tensor x, at::Tensor w, at::Tensor b, at::Tensor rm, at::Tensor rv, double momentum,
                            double eps, int64_t group) {
    Group* g = reinterpret_cast<Group*>(group);
    const int64_t C = x.size(1);
    std::vector<int64_t> dims{0};
    for (int64_t d = 2; d < x.dim(); d++) dims.push_back(d);
    std::vector<int64_t> bshape(x.dim(), 1);
    bshape[1] = C;
    const double n = static_cast<double>(x.numel() / C);
    const auto dopt = x.options().dtype(at::kDouble);
    at::Tensor mean_l = at::zeros({C}, dopt), var_l = at::zeros({C}, dopt);
    if (n > 0) {
      auto vm = at::var_mean(x, dims, /*unbiased=*/false, /*keepdim=*/false);  // Welford, double accumulators
      var_l = std::get<0>(vm).to(at::kDouble);
      mean_l = std::get<1>(vm).to(at::kDouble);
    }
    at::Tensor mine = at::cat({mean_l, var_l, at::full({1}, n, dopt)});
    std::vector<at::Tensor> in{mine};
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < g->size; r++) out[0].push_back(at::empty_like(mine));
    waitWork(g, g->pg->allgather(out, in), "sync batch norm (statistics)");
    at::Tensor all = at::stack(out[0]);  // [W, 2C+1]
    at::Tensor counts = all.select(1, 2 * C).unsqueeze(1);  // [W, 1]
    const double N = counts.sum().item<double>();
    if (N <= 1) throw std::invalid_argument("sync batch norm: expected more than 1 value per channel over the ranks, got " + std::to_string(static_cast<int64_t>(N)));
    at::Tensor means = all.narrow(1, 0, C), vars = all.narrow(1, C, C);
    at::Tensor mean = (means * counts).sum(0) / N;
    at::Tensor var = ((vars + (means - mean).pow(2)) * counts).sum(0) / N;
    at::Tensor invstd = (var + eps).rsqrt();
    if (rm.defined()) rm.mul_(1 - momentum).add_(mean.to(rm.scalar_type()), momentum);
    if (rv.defined()) rv.mul_(1 - momentum).add_((var * (N / (N - 1))).to(rv.scalar_type()), momentum);
    at::Tensor meanf = mean.to(x.scalar_type()), invstdf = invstd.to(x.scalar_type());
    at::Tensor y = (x - meanf.view(bshape)) * invstdf.view(bshape);
    if (w.defined()) y = y * w.view(bshape);
    if (b.defined()) y = y + b.view(bshape);
    ctx->save_for_backward({x, w, meanf, invstdf});
    ctx->saved_data["N"] = N;
    ctx->saved_data["group"] = group;
    ctx->saved_data["has_b"] = b.defined();
    return y;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    at::Tensor x = saved[0], w = saved[1], mean = saved[2], invstd = saved[3];
    const double N = ctx->saved_data["N"].toDouble();
    Group* g = reinterpret_cast<Group*>(ctx->saved_data["group"].toInt());
    at::Tensor dy = grads[0].contiguous();
    const int64_t C = x.size(1);
    std::vector<int64_t> dims{0};
    for (int64_t d = 2; d < x.dim(); d++) dims.push_back(d);
    std::vector<int64_t> bshape(x.dim(), 1);
    bshape[1] = C;
    at::Tensor xmu = x - mean.view(bshape);
    at::Tensor sum_dy = dy.sum(dims), sum_dy_xmu = (dy * xmu).sum(dims);
    at::Tensor gw, gb, gx;
    if (w.defined() && ctx->needs_input_grad(1)) gw = sum_dy_xmu * invstd;
    if (ctx->saved_data["has_b"].toBool() && ctx->needs_input_grad(2)) gb = sum_dy.clone();
    if (ctx->needs_input_grad(0)) {
      at::Tensor both = at::cat({sum_dy, sum_dy_xmu});
      std::vector<at::Tensor> one{both};
      waitWork(g, g->pg->allreduce(one), "sync batch norm (gradient)");
      at::Tensor gsum_dy = both.narrow(0, 0, C), gsum_dy_xmu = both.narrow(0, C, C);
      at::Tensor scale = w.defined() ? invstd * w : invstd;
      gx = (dy - (gsum_dy / N).view(bshape) - xmu * (invstd * invstd * gsum_dy_xmu / N).view(bshape)) * scale.view(bshape);
    }
    return {gx, gw, gb, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// distSyncBatchNorm(group, x, weight, bias, runningMean, runningVar, momentum, eps) -> y
Napi::Value DistSyncBatchNorm(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Group* g = groupOf(info[0]);
    auto opt = [&](int i) { return info[i].IsNull() || info[i].IsUndefined() ? at::Tensor() : tensorOf(info[i], "syncBatchNorm"); };
    at::Tensor x = tensorOf(info[1], "syncBatchNorm: input");
    if (x.dim() < 2) throw std::invalid_argument("syncBatchNorm: expected input of at least 2 dimensions [N, C, ...]");
    at::Tensor y = SyncBatchNormFn::apply(x, opt(2), opt(3), opt(4), opt(5), info[6].As<Napi::Number>().DoubleValue(), info[7].As<Napi::Number>().DoubleValue(),
                                          reinterpret_cast<int64_t>(g));
    return wrapTensor(info.Env(), y);
  });
}

Napi::Value DistDestroy(const Napi::CallbackInfo& info) {
  return guarded(info, [&]() -> Napi::Value {
    Group* g = groupOf(info[0]);
    g->pg.reset();
    g->store.reset();
    g->destroyed = true;
    return info.Env().Undefined();
  });
}
#endif

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#if TORCH_VERSION_MAJOR >= 2
  c10::WarningUtils::set_warning_handler(&g_warnings);
#else
  c10::Warning::set_warning_handler(&g_warnings);
#endif
  exports.Set("op", Napi::Function::New(env, OpLookup, "op"));
  exports.Set("call", Napi::Function::New(env, Call, "call"));
  exports.Set("schemas", Napi::Function::New(env, Schemas, "schemas"));
  exports.Set("fromBuffer", Napi::Function::New(env, FromBuffer, "fromBuffer"));
  exports.Set("toBuffer", Napi::Function::New(env, ToBuffer, "toBuffer"));
  exports.Set("meta", Napi::Function::New(env, Meta, "meta"));
  exports.Set("shape", Napi::Function::New(env, Shape, "shape"));
  exports.Set("dtype", Napi::Function::New(env, Dtype, "dtype"));
  exports.Set("dispose", Napi::Function::New(env, Dispose, "dispose"));
  exports.Set("isDisposed", Napi::Function::New(env, IsDisposed, "isDisposed"));
  exports.Set("syncExternalMemory", Napi::Function::New(env, SyncExternalMemory, "syncExternalMemory"));
  exports.Set("liveTensors", Napi::Function::New(env, LiveTensors, "liveTensors"));
  exports.Set("setRequiresGrad", Napi::Function::New(env, SetRequiresGrad, "setRequiresGrad"));
  exports.Set("grad", Napi::Function::New(env, Grad, "grad"));
  exports.Set("setGrad", Napi::Function::New(env, SetGrad, "setGrad"));
  exports.Set("autogradInfo", Napi::Function::New(env, AutogradInfo, "autogradInfo"));
  exports.Set("backward", Napi::Function::New(env, Backward, "backward"));
  exports.Set("setGradEnabled", Napi::Function::New(env, SetGradEnabled, "setGradEnabled"));
  exports.Set("isGradEnabled", Napi::Function::New(env, IsGradEnabled, "isGradEnabled"));
  exports.Set("manualSeed", Napi::Function::New(env, ManualSeed, "manualSeed"));
  exports.Set("setNumThreads", Napi::Function::New(env, SetNumThreads, "setNumThreads"));
  exports.Set("getNumThreads", Napi::Function::New(env, GetNumThreads, "getNumThreads"));
  exports.Set("version", Napi::Function::New(env, Version, "version"));
  exports.Set("cudaDeviceCount", Napi::Function::New(env, CudaDeviceCount, "cudaDeviceCount"));
  exports.Set("jitLoad", Napi::Function::New(env, JitLoad, "jitLoad"));
  exports.Set("jitForward", Napi::Function::New(env, JitForward, "jitForward"));
  exports.Set("jitTo", Napi::Function::New(env, JitTo, "jitTo"));
  exports.Set("jitInfo", Napi::Function::New(env, JitInfo, "jitInfo"));
  exports.Set("jitDispose", Napi::Function::New(env, JitDispose, "jitDispose"));
  exports.Set("opProfile", Napi::Function::New(env, OpProfile, "opProfile"));
#ifdef TSD_C10D
  exports.Set("distAvailable", Napi::Boolean::New(env, true));
  exports.Set("distInit", Napi::Function::New(env, DistInit, "distInit"));
  exports.Set("distAllReduce", Napi::Function::New(env, DistAllReduce, "distAllReduce"));
  exports.Set("distBroadcast", Napi::Function::New(env, DistBroadcast, "distBroadcast"));
  exports.Set("distAllGather", Napi::Function::New(env, DistAllGather, "distAllGather"));
  exports.Set("distBarrier", Napi::Function::New(env, DistBarrier, "distBarrier"));
  exports.Set("distStoreSet", Napi::Function::New(env, DistStoreSet, "distStoreSet"));
  exports.Set("distStoreGet", Napi::Function::New(env, DistStoreGet, "distStoreGet"));
  exports.Set("distDestroy", Napi::Function::New(env, DistDestroy, "distDestroy"));
  exports.Set("distReducer", Napi::Function::New(env, DistReducer, "distReducer"));
  exports.Set("distReducerPrepare", Napi::Function::New(env, DistReducerPrepare, "distReducerPrepare"));
  exports.Set("distReducerDestroy", Napi::Function::New(env, DistReducerDestroy, "distReducerDestroy"));
  exports.Set("distSyncBatchNorm", Napi::Function::New(env, DistSyncBatchNorm, "distSyncBatchNorm"));
#else
  exports.Set("distAvailable", Napi::Boolean::New(env, false));
#endif
  // what the TypeScript side may rely on; handle.ts refuses an addon built from other sources (raise it with any
  // change to the functions above: 2 = dispose takes an array, 3 = process groups, 4 = gradient reducer and sync
  // batch norm)
  exports.Set("abi", Napi::Number::New(env, 4));
  return exports;
}

}  // namespace

NODE_API_MODULE(tsdistill_native, Init)
