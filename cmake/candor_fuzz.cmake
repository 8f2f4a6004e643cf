# The fuzzing build (CANDOR_FUZZ=ON, the `fuzz` preset; see fuzz/ and README "Hardening").
# Every Candor translation unit gets libFuzzer's coverage instrumentation
# (-fsanitize=fuzzer-no-link) together with ASan and UBSan, so that the fuzzer is guided
# through our own code and any memory error or undefined behaviour in it aborts the
# run. Only the fuzz executables link libFuzzer's main (fuzz/CMakeLists.txt).
# Dependencies come from Debian uninstrumented: inside them ASan sees only what its
# interceptors see (memcpy, malloc...), and libFuzzer gets no coverage from them.
if(CANDOR_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "CANDOR_FUZZ needs clang (cmake --preset fuzz sets CMAKE_CXX_COMPILER=clang++)")
  endif()
  if(CANDOR_SANITIZE OR CANDOR_SANITIZE_THREAD)
    message(FATAL_ERROR "CANDOR_FUZZ brings its own sanitizers; turn CANDOR_SANITIZE* off")
  endif()
  # UBSan findings must stop the run like ASan's do, or libFuzzer never saves the input.
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
                      -fno-omit-frame-pointer -gline-tables-only)
  add_link_options(-fsanitize=address,undefined)
endif()
