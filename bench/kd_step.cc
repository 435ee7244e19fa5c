// The engine benchmark's reference: the same knowledge-distillation step as bench/engine.ts, written in C++ against
// the same libtorch. Frozen LeNet-5 teacher under no-grad, student conv(1->3,k5) ReLU maxpool2 linear(432->10),
// loss 0.3*CE + 0.7*T^2*KL at T=4, SGD momentum 0.9, batch 64. Prints one JSON line.
#include <torch/torch.h>

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

int main(int argc, char** argv) {
  int steps = argc > 1 ? std::atoi(argv[1]) : 300;
  int warmup = argc > 2 ? std::atoi(argv[2]) : 50;
  int threads = argc > 3 ? std::atoi(argv[3]) : 1;
  torch::set_num_threads(threads);
  torch::manual_seed(0);
  auto teacher = std::make_shared<LeNet5>();
  teacher->eval();
  for (auto& p : teacher->parameters()) p.requires_grad_(false);
  auto student = std::make_shared<Student>();
  torch::optim::SGD opt(student->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  auto x = torch::randn({64, 1, 28, 28});
  auto y = torch::randint(0, 10, {64}, torch::kLong);
  const double T = 4.0, alpha = 0.3;

  std::vector<double> times;
  for (int i = 0; i < warmup + steps; i++) {
    double t0 = nowMs();
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
    opt.zero_grad();
    loss.backward();
    opt.step();
    double t1 = nowMs();
    if (i >= warmup) times.push_back(t1 - t0);
  }
  std::sort(times.begin(), times.end());
  double kd = times[times.size() / 2];

  // Per-op cost of a small out-of-place add through the typed C++ API.
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
  std::printf("{\"kd_step_cpp_ms\":%.4f,\"op_overhead_cpp_us\":%.4f,\"threads\":%d}\n", kd, reps[reps.size() / 2], threads);
  return 0;
}
