#include "candor/platform.h"

#include <dlfcn.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <string_view>

namespace candor {

std::string blas_core() {
  // Looked up at run time: the BLAS behind libblas.so.3 is chosen by Debian's alternatives
  // and may be the reference BLAS, which has no such function.
  using CoreName = char* (*)();
  const auto corename = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  const char* name = corename ? corename() : nullptr;
  return name ? std::string(name) : std::string();
}

std::string best_blas_coretype() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  // OpenBLAS's SkylakeX kernels use AVX-512 F, CD, BW, DQ and VL (its cpuid_x86.c checks
  // these before choosing them); Haswell's use AVX2 and FMA3.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return {};
}

namespace {

// OpenBLAS 0.3.21's x86-64 kernel families with AVX2 or AVX-512 code (its DYNAMIC_ARCH list).
bool has_vector_kernels(std::string_view core) {
  constexpr std::array<std::string_view, 6> kVector = {"Haswell",    "SkylakeX", "Cooperlake",
                                                       "SapphireRapids", "Zen", "Excavator"};
  for (std::string_view v : kVector)
    if (core == v) return true;
  return false;
}

}  // namespace

void ensure_vector_blas_kernel(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;  // the operator's choice, or ours
  const std::string core = blas_core();
  if (core.empty() || has_vector_kernels(core)) return;
  const std::string best = best_blas_coretype();
  if (best.empty()) return;
  // The binary's own path, not /proc/self/exe: the kernel names a process after the file
  // it executes, and `ps`, `top` and the package test look for "candor", not "exe".
  std::array<char, 4096> self{};
  const ssize_t n = readlink("/proc/self/exe", self.data(), self.size() - 1);
  if (n <= 0 || static_cast<std::size_t>(n) >= self.size() - 1) return;
  if (setenv("OPENBLAS_CORETYPE", best.c_str(), 1) != 0) return;
  execv(self.data(), argv);
  unsetenv("OPENBLAS_CORETYPE");  // exec failed: carry on as we were
}

}  // namespace candor
