# Warnings for Candor's own targets. Third-party headers (OpenCV, FAISS) are
# included as SYSTEM so that their warnings under C++20 do not fail the build.
add_library(candor_warnings INTERFACE)
target_compile_options(candor_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
  -Wcast-align -Woverloaded-virtual -Wnull-dereference -Wimplicit-fallthrough)
if(CANDOR_WERROR)
  target_compile_options(candor_warnings INTERFACE -Werror)
endif()
if(CANDOR_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# ThreadSanitizer (the tsan preset) for the concurrency tests. It cannot be combined with
# ASan, and instruments only Candor's own code: races TSan reports inside uninstrumented
# libraries are judged in cmake/tsan_suppressions.txt.
option(CANDOR_SANITIZE_THREAD "Build with ThreadSanitizer" OFF)
if(CANDOR_SANITIZE_THREAD)
  if(CANDOR_SANITIZE)
    message(FATAL_ERROR "CANDOR_SANITIZE_THREAD and CANDOR_SANITIZE cannot be combined")
  endif()
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
endif()
