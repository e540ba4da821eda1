# Fuzz targets (fuzz/, see fuzz/fuzz.h): each fuzz/fuzz_<name>.c defines
# LLVMFuzzerTestOneInput and is built twice.
#   - Always, with the normal compiler, linked with fuzz/replay.c as
#     replay_<name>: CTest replays the checked-in corpus fuzz/corpus/<corpus>/
#     with it (test c.fuzz.<name>, label c, so the sanitizer build replays
#     it under ASan), and again under valgrind in the regular build.
#   - With -DAC_FUZZ=ON only (a clang build of its own, made by
#     tools/fuzz.sh), linked with libFuzzer as fuzz_<name>.
# A new target is its file, one ac_add_fuzz_target line below, and one
# entry in tools/fuzz.sh's TARGETS.

function(ac_add_fuzz_target name corpus lib)
  set(src ${CMAKE_SOURCE_DIR}/fuzz/fuzz_${name}.c)
  add_executable(replay_${name} ${CMAKE_SOURCE_DIR}/fuzz/replay.c ${src})
  target_include_directories(replay_${name} PRIVATE ${CMAKE_SOURCE_DIR}/fuzz
                             ${CMAKE_SOURCE_DIR}/runtime ${CMAKE_SOURCE_DIR}/bindings)
  target_compile_options(replay_${name} PRIVATE ${AC_WARNINGS})
  target_link_libraries(replay_${name} PRIVATE ${lib})
  add_test(NAME c.fuzz.${name}
           COMMAND replay_${name} ${CMAKE_SOURCE_DIR}/fuzz/corpus/${corpus})
  set_tests_properties(c.fuzz.${name} PROPERTIES TIMEOUT 120 LABELS c)
  if(VALGRIND AND NOT AC_SANITIZE)
    add_test(NAME valgrind.fuzz.${name}
             COMMAND ${AC_VALGRIND} $<TARGET_FILE:replay_${name}>
                     ${CMAKE_SOURCE_DIR}/fuzz/corpus/${corpus})
    set_tests_properties(valgrind.fuzz.${name} PROPERTIES TIMEOUT 300 LABELS valgrind)
  endif()
  if(AC_FUZZ)
    add_executable(fuzz_${name} ${src})
    target_include_directories(fuzz_${name} PRIVATE ${CMAKE_SOURCE_DIR}/fuzz
                               ${CMAKE_SOURCE_DIR}/runtime ${CMAKE_SOURCE_DIR}/bindings)
    target_link_libraries(fuzz_${name} PRIVATE ${lib})
    target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
  endif()
endfunction()

#                    name       corpus  library
ac_add_fuzz_target(codec       codec   asynccache_static)
ac_add_fuzz_target(lua_codec   codec   asynccache_lua_static)
ac_add_fuzz_target(snapshot    snapshot asynccache_static)

# The seeds in fuzz/corpus/codec/ are what fuzz/make_seeds.lua writes
# (inputs kept from fuzzing runs, which it does not know, aside).
add_test(NAME fuzz.seeds
         COMMAND ${LUA54} ${CMAKE_SOURCE_DIR}/fuzz/make_seeds.lua --check)
set_tests_properties(fuzz.seeds PROPERTIES TIMEOUT 60 LABELS lua
  ENVIRONMENT "${AC_LUA_ENV};ACACHE_BUILD_DIR=${CMAKE_BINARY_DIR}")
