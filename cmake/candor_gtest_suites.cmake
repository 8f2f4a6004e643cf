# candor_discover_suites(target [PROPERTIES name value ...]): register one CTest test per
# GoogleTest suite of `target` (named after the suite, run as `target --gtest_filter=Suite.*`).
#
# Why not gtest_discover_tests' one test per TEST: every test process loads what its suite
# shares (the networks, a server, a store), and that load was the larger part of the suite's
# time: server_test's 28 tests took 40.1 CPU-s as 28 processes and 27.3 CPU-s as one (GCC
# build, session 8), and under ASan each process's start costs more again. A suite is the
# unit GoogleTest shares fixtures over (SetUpTestSuite), so it is the unit run per process.
# A failing run prints GoogleTest's [  FAILED  ] lines, which name the test.
#
# Like gtest_discover_tests, the list is taken after each build of the executable
# (`--gtest_list_tests`) into a file CTest includes, so adding a suite needs no re-configure.

function(candor_discover_suites target)
  cmake_parse_arguments(D "" "" "PROPERTIES" ${ARGN})
  set(list_file "${CMAKE_CURRENT_BINARY_DIR}/${target}_suites.cmake")
  add_custom_command(TARGET ${target} POST_BUILD
    COMMAND "${CMAKE_COMMAND}" -D "EXE=$<TARGET_FILE:${target}>" -D "OUT=${list_file}"
            -D "WORKDIR=${CMAKE_CURRENT_BINARY_DIR}" -D "PROPS=${D_PROPERTIES}"
            -P "${PROJECT_SOURCE_DIR}/cmake/candor_gtest_suites_list.cmake"
    BYPRODUCTS "${list_file}"
    VERBATIM)
  # CTest reads this at run time; an executable that was never built shows as a failing test.
  set(include_file "${CMAKE_CURRENT_BINARY_DIR}/${target}_suites_include.cmake")
  file(WRITE "${include_file}"
       "if(EXISTS \"${list_file}\")\n  include(\"${list_file}\")\n"
       "else()\n  add_test(${target}_NOT_BUILT ${target}_NOT_BUILT)\nendif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${include_file}")
endfunction()
