# Sanitizer and fuzzing builds; see README "Hardening: fuzzing and sanitizers".
#
# CANDOR_SANITIZE: AddressSanitizer + UBSan on every Candor translation unit (the `asan`
#   preset, clang). UBSan findings abort like ASan's (-fno-sanitize-recover), so neither a
#   test nor a fuzz run can pass over one.
# CANDOR_FUZZ: in that same tree, libFuzzer's coverage instrumentation on all of Candor's
#   code (-fsanitize=fuzzer-no-link) and the fuzz executables (fuzz/CMakeLists.txt links
#   libFuzzer's main into those only). The test executables link without libFuzzer:
#   sanitizer_common supplies the coverage callbacks, so the whole suite runs from the tree
#   the fuzzers use and the libraries are compiled once for both.
# CANDOR_SANITIZE_THREAD: ThreadSanitizer (the `tsan` preset, its own tree; TSan cannot be
#   combined with ASan).
# Dependencies come from Debian uninstrumented: inside them ASan sees only what its
# interceptors see (memcpy, malloc...), and libFuzzer gets no coverage from them.
if(CANDOR_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "CANDOR_FUZZ needs clang (cmake --preset asan sets CMAKE_CXX_COMPILER=clang++)")
  endif()
  if(NOT CANDOR_SANITIZE)
    message(FATAL_ERROR "CANDOR_FUZZ runs under ASan+UBSan: turn CANDOR_SANITIZE on too")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

if(CANDOR_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    # One known over-read inside hnswlib is exempted; the file says why.
    add_compile_options(-fsanitize-ignorelist=${CMAKE_CURRENT_LIST_DIR}/asan_ignorelist.txt)
  endif()
endif()

option(CANDOR_SANITIZE_THREAD "Build with ThreadSanitizer" OFF)
if(CANDOR_SANITIZE_THREAD)
  if(CANDOR_SANITIZE OR CANDOR_FUZZ)
    message(FATAL_ERROR "CANDOR_SANITIZE_THREAD cannot be combined with CANDOR_SANITIZE or CANDOR_FUZZ")
  endif()
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
endif()
