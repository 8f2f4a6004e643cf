// Run-time choice of the scan kernels (see kernels.h).
#include "kernels.h"

namespace candor::index_detail {

bool cpu_has_avx2() {
  // __builtin_cpu_supports checks CPUID and that the OS saves the YMM state.
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

const Kernels& kernels() {
  static const Kernels& chosen = cpu_has_avx2() ? avx2_kernels() : scalar_kernels();
  return chosen;
}

}  // namespace candor::index_detail
