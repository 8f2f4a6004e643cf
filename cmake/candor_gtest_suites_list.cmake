# Script mode (cmake -P), run after each build of a test executable by candor_discover_suites:
# lists EXE's suites and writes OUT, one add_test per suite. Inputs: EXE, OUT, WORKDIR, PROPS
# (extra test properties, name;value;...).
execute_process(COMMAND "${EXE}" --gtest_list_tests
                WORKING_DIRECTORY "${WORKDIR}" TIMEOUT 60
                OUTPUT_VARIABLE listing ERROR_VARIABLE errors RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${EXE} --gtest_list_tests failed (${rc}): ${errors}")
endif()
# A suite line is "Suite." (a typed suite adds "  # TypeParam = ..."); its tests follow,
# indented by two spaces. Test names hold no ';', so the listing splits into lines safely.
# No COST is set: on a fresh clone CTest then starts the suites in the order they are listed,
# which puts the longest single test (the LFW regression, in the first executable) first;
# once CTest has timed a run, it starts the longest suites first by itself.
string(REPLACE "\n" ";" lines "${listing}")
set(suites "")
foreach(line IN LISTS lines)
  if(line MATCHES "^([^ #][^ ]*)\\.( .*)?$")
    set(suite "${CMAKE_MATCH_1}")
    list(APPEND suites "${suite}")
  endif()
endforeach()
set(props "")
foreach(p IN LISTS PROPS)
  string(APPEND props " [==[${p}]==]")
endforeach()
set(content "")
foreach(suite IN LISTS suites)
  string(APPEND content
         "add_test([==[${suite}]==] [==[${EXE}]==] [==[--gtest_filter=${suite}.*]==])\n"
         "set_tests_properties([==[${suite}]==] PROPERTIES WORKING_DIRECTORY [==[${WORKDIR}]==]"
         " SKIP_RETURN_CODE 77${props})\n")
endforeach()
file(WRITE "${OUT}" "${content}")
