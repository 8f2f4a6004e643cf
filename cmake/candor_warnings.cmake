# Warnings for Candor's own targets. Third-party headers (OpenCV, FAISS) are
# included as SYSTEM so that their warnings under C++20 do not fail the build.
add_library(candor_warnings INTERFACE)
target_compile_options(candor_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
  -Wcast-align -Woverloaded-virtual -Wnull-dereference -Wimplicit-fallthrough)
if(CANDOR_WERROR)
  target_compile_options(candor_warnings INTERFACE -Werror)
endif()
