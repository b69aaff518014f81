# Unit tests: every tests/unit/test_<module>.c is one cmocka executable and one ctest entry.
file(GLOB UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/test_*.c)
foreach(src ${UNIT_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_link_libraries(${name} PRIVATE passkit_common PkgConfig::CMOCKA)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME unit/${name} COMMAND ${name})
endforeach()

# Integration tests: every tests/integration/test_*.py starts its own redis-server, services and
# APNs stand-in (see tests/integration/harness.py) and talks to them over real sockets.
find_program(PYTHON3 python3 REQUIRED)
file(GLOB INTEGRATION_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/integration/test_*.py)
foreach(src ${INTEGRATION_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_test(NAME integration/${name} COMMAND ${PYTHON3} ${src})
  set_tests_properties(integration/${name} PROPERTIES
    ENVIRONMENT "PASSKIT_BUILD_DIR=${CMAKE_BINARY_DIR};PASSKIT_SOURCE_DIR=${CMAKE_SOURCE_DIR}"
    TIMEOUT 600 SKIP_RETURN_CODE 77)
endforeach()

# The APNs stand-in checks itself: every Apple status it claims to imitate, exactly.
add_test(NAME standin/selftest COMMAND ${PYTHON3} ${CMAKE_SOURCE_DIR}/tests/apns-standin/selftest.py
         $<TARGET_FILE:apns-standin>)
set_tests_properties(standin/selftest PROPERTIES
  ENVIRONMENT "PASSKIT_SOURCE_DIR=${CMAKE_SOURCE_DIR}" TIMEOUT 300 SKIP_RETURN_CODE 77)
