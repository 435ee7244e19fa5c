// Compatibility header, used only where libtorch's headers lack this file (Debian's libtorch-dev leaves out the
// distributed-autograd headers but keeps c10d's reducer.hpp, which includes this one). reducer.hpp needs two names
// from it: DistAutogradContext::GradCallback (a std::function type it static_asserts against) and ContextPtr (a
// shared_ptr it holds but which this addon never sets). Both are declared here exactly as libtorch declares them, so
// the Reducer's layout is the library's; nothing else of distributed autograd is declared or used.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>

namespace torch {
namespace distributed {
namespace autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor&)>;
};

using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace autograd
}  // namespace distributed
}  // namespace torch
