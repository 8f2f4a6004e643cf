// Candor: what the process runs on, and the one start-up fix it needs.
//
// Debian 12's OpenBLAS (0.3.21, built with DYNAMIC_ARCH) picks its kernels from the CPU
// model it reads at load time. It does not know recent Intel server models (this project's
// machines report family 6, model 207) and then falls back to its generic SSE3 "Prescott"
// kernels: a 1024 x 1024 sgemm ran at 3.4 GFLOP/s instead of 13-16 GFLOP/s on one core
// here (README "Speed of the engine"). FAISS's exact and IVF search, its k-means training
// and the photo-library grouping all go through that sgemm. OpenBLAS reads its choice
// once, from OPENBLAS_CORETYPE, before main() runs, so the only fix a program can make is
// to start itself again with that variable set; the CLI and the server do (at the top of
// main). A program that links libcandor can set OPENBLAS_CORETYPE itself.
//
// Thread safety: call ensure_vector_blas_kernel() first thing in main, before any thread
// starts; the other functions are safe from any thread.
#pragma once

#include <string>

namespace candor {

// The kernel family OpenBLAS chose in this process ("SkylakeX", "Haswell", "Prescott", ...),
// or "" when the BLAS loaded is not OpenBLAS.
std::string blas_core();

// The OPENBLAS_CORETYPE this CPU can run with vector kernels: "SkylakeX" (AVX-512 F, CD, BW,
// DQ and VL), "Haswell" (AVX2 and FMA), or "" (neither: the generic kernels are right).
std::string best_blas_coretype();

// requires: argv is main's argv (argv[0] and a terminating nullptr).
// ensures: if OPENBLAS_CORETYPE is unset, OpenBLAS chose a kernel without vector (AVX2 or
//   AVX-512) support and best_blas_coretype() is not empty, the process replaces itself by
//   the same program with the same arguments and OPENBLAS_CORETYPE set (execv of the
//   binary /proc/self/exe names: nothing is printed, the pid and the process name stay).
//   Otherwise, or when the exec fails, it returns and nothing has changed. It never
//   loops: the new process finds the variable set.
void ensure_vector_blas_kernel(char** argv);

}  // namespace candor
