// The engine benchmark's reference: the same knowledge-distillation step as bench/engine.ts, written in C++ against
// the same libtorch. Built as a Node addon (-DKD_BENCH_ADDON) it runs inside the benchmark's process; built alone it
// is a program printing one JSON line. Frozen LeNet-5 teacher under no-grad, student conv(1->3,k5) ReLU maxpool2 linear(432->10),
// loss 0.3*CE + 0.7*T^2*KL at T=4, SGD momentum 0.9, batch 64. Prints one JSON line.
#include <torch/torch.h>

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

struct LeNet5 : torch::nn::Module {
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::Linear fc1{nullptr}, fc2{nullptr}, fc3{nullptr};
  LeNet5() {
    conv1 = register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 6, 5).padding(2)));
    conv2 = register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(6, 16, 5)));
    fc1 = register_module("fc1", torch::nn::Linear(400, 120));
    fc2 = register_module("fc2", torch::nn::Linear(120, 84));
    fc3 = register_module("fc3", torch::nn::Linear(84, 10));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(conv1->forward(x)), 2);
    x = torch::max_pool2d(torch::relu(conv2->forward(x)), 2);
    x = x.flatten(1);
    x = torch::relu(fc1->forward(x));
    x = torch::relu(fc2->forward(x));
    return fc3->forward(x);
  }
};

struct Student : torch::nn::Module {
  torch::nn::Conv2d conv{nullptr};
  torch::nn::Linear fc{nullptr};
  Student() {
    conv = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 3, 5)));
    fc = register_module("fc", torch::nn::Linear(432, 10));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(conv->forward(x)), 2);
    return fc->forward(x.flatten(1));
  }
};

static double nowMs() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct KdBench {
  std::shared_ptr<LeNet5> teacher;
  std::shared_ptr<Student> student;
  std::unique_ptr<torch::optim::SGD> opt;
  torch::Tensor x, y;
  const double T = 4.0, alpha = 0.3;
  KdBench() {
    torch::manual_seed(0);
    teacher = std::make_shared<LeNet5>();
    teacher->eval();
    for (auto& p : teacher->parameters()) p.requires_grad_(false);
    student = std::make_shared<Student>();
    opt = std::make_unique<torch::optim::SGD>(student->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
    x = torch::randn({64, 1, 28, 28});
    y = torch::randint(0, 10, {64}, torch::kLong);
  }
  void step() {
    torch::Tensor tlogits;
    {
      torch::NoGradGuard ng;
      tlogits = teacher->forward(x);
    }
    auto slogits = student->forward(x);
    auto ce = torch::cross_entropy_loss(slogits, y);
    auto kl = torch::kl_div(torch::log_softmax(slogits / T, 1), torch::log_softmax(tlogits / T, 1),
                            at::Reduction::Sum, /*log_target=*/true) / 64.0;
    auto loss = alpha * ce + (1 - alpha) * T * T * kl;
    opt->zero_grad();
    loss.backward();
    opt->step();
  }
};

static void setThreads(int threads) {
  torch::set_num_threads(threads);
  // Debian's libtorch uses OpenBLAS, whose pool ignores torch::set_num_threads; set it the same way the addon does.
  if (auto fn = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) fn(threads);
}

// Per-op cost of a small out-of-place add through the typed C++ API (median of 5 runs, µs).
static double opOverheadUs() {
  auto a = torch::randn({10}), b = torch::randn({10});
  const int N = 200000;
  std::vector<double> reps;
  for (int r = 0; r < 5; r++) {
    double t0 = nowMs();
    for (int i = 0; i < N; i++) {
      auto c = at::add(a, b);
    }
    reps.push_back((nowMs() - t0) * 1000.0 / N);
  }
  std::sort(reps.begin(), reps.end());
  return reps[reps.size() / 2];
}

#ifdef KD_BENCH_ADDON
// Built as a Node addon, the step runs in the benchmark's own process, interleaved with the Node step.
#include <napi.h>
static KdBench* g_bench = nullptr;
static Napi::Value Init(const Napi::CallbackInfo& info) {
  setThreads(info[0].As<Napi::Number>().Int32Value());
  delete g_bench;
  g_bench = new KdBench();
  return info.Env().Undefined();
}
// steps(n) -> per-step times in ms
static Napi::Value Steps(const Napi::CallbackInfo& info) {
  int n = info[0].As<Napi::Number>().Int32Value();
  auto out = Napi::Array::New(info.Env(), n);
  for (int i = 0; i < n; i++) {
    double t0 = nowMs();
    g_bench->step();
    out.Set(static_cast<uint32_t>(i), Napi::Number::New(info.Env(), nowMs() - t0));
  }
  return out;
}
static Napi::Value OpOverhead(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), opOverheadUs()); }
// checksums() -> [sum of x, sum of the teacher's parameters, sum of the student's], to check that every side starts
// from the same data
static Napi::Value Checksums(const Napi::CallbackInfo& info) {
  auto total = [](const std::vector<torch::Tensor>& ps) {
    double s = 0;
    for (auto& p : ps) s += p.sum().item<double>();
    return s;
  };
  auto out = Napi::Array::New(info.Env(), 3);
  out.Set(0u, Napi::Number::New(info.Env(), g_bench->x.sum().item<double>()));
  out.Set(1u, Napi::Number::New(info.Env(), total(g_bench->teacher->parameters())));
  out.Set(2u, Napi::Number::New(info.Env(), total(g_bench->student->parameters())));
  return out;
}
static Napi::Object Register(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, Init));
  exports.Set("steps", Napi::Function::New(env, Steps));
  exports.Set("opOverheadUs", Napi::Function::New(env, OpOverhead));
  exports.Set("checksums", Napi::Function::New(env, Checksums));
  return exports;
}
NODE_API_MODULE(kd_bench, Register)
#else
int main(int argc, char** argv) {
  int steps = argc > 1 ? std::atoi(argv[1]) : 300;
  int warmup = argc > 2 ? std::atoi(argv[2]) : 50;
  int threads = argc > 3 ? std::atoi(argv[3]) : 1;
  setThreads(threads);
  KdBench bench;
  std::vector<double> times;
  for (int i = 0; i < warmup + steps; i++) {
    double t0 = nowMs();
    bench.step();
    if (i >= warmup) times.push_back(nowMs() - t0);
  }
  std::sort(times.begin(), times.end());
  std::printf("{\"kd_step_cpp_ms\":%.4f,\"op_overhead_cpp_us\":%.4f,\"threads\":%d}\n", times[times.size() / 2], opOverheadUs(),
              threads);
  return 0;
}
#endif
