# Tests, registered with CTest:
#   - C tests of the core (runtime/test/test_*.c), one process per test case;
#   - busted specs (spec/*_spec.lua) run with lua5.4 against the build tree;
#   - the examples, run as a user would.

# Registers each case of a C test binary (a TEST(name) at the start of a
# line, see runtime/test/test_harness.h) as its own CTest test, run in its
# own process with a timeout.
function(ac_add_c_test src lib timeout)
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/runtime
                             ${CMAKE_SOURCE_DIR}/runtime/test ${CMAKE_SOURCE_DIR}/bindings)
  target_compile_definitions(${name} PRIVATE AC_LUA_SRC_DIR="${CMAKE_SOURCE_DIR}/lua")
  target_compile_options(${name} PRIVATE ${AC_WARNINGS})
  target_link_libraries(${name} PRIVATE ${lib})
  execute_process(COMMAND grep -oE "^TEST\\(([a-z0-9_]+)\\)" ${src}
                  OUTPUT_VARIABLE cases)
  string(REGEX MATCHALL "TEST\\(([a-z0-9_]+)\\)" cases "${cases}")
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${src})
  foreach(c ${cases})
    string(REGEX REPLACE "TEST\\(([a-z0-9_]+)\\)" "\\1" case ${c})
    add_test(NAME c.${name}.${case} COMMAND ${name} ${case})
    set_tests_properties(c.${name}.${case} PROPERTIES TIMEOUT ${timeout} LABELS c)
  endforeach()
endfunction()

# The core's tests link the core alone; the binding's, the embedding library.
file(GLOB AC_C_TESTS ${CMAKE_SOURCE_DIR}/runtime/test/test_*.c)
foreach(src ${AC_C_TESTS})
  ac_add_c_test(${src} asynccache_static 60)
endforeach()
file(GLOB AC_BINDING_TESTS ${CMAKE_SOURCE_DIR}/bindings/test/test_*.c)
foreach(src ${AC_BINDING_TESTS})
  ac_add_c_test(${src} asynccache_lua_static 300)
endforeach()

find_program(LUA54 NAMES lua5.4 REQUIRED)
find_program(BUSTED NAMES busted REQUIRED)
set(AC_LUA_ENV
  "LUA_PATH=${CMAKE_SOURCE_DIR}/lua/?.lua\;${CMAKE_SOURCE_DIR}/lua/?/init.lua\;${CMAKE_SOURCE_DIR}/spec/?.lua\;\;"
  "LUA_CPATH=${CMAKE_BINARY_DIR}/lua/?.so\;${CMAKE_BINARY_DIR}/bench/?.so\;\;")

if(AC_SANITIZE)
  # lua5.4 itself is not instrumented: the sanitizer runtimes must be loaded
  # first for the instrumented cache.core module.
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libasan.so
                  OUTPUT_VARIABLE AC_LIBASAN OUTPUT_STRIP_TRAILING_WHITESPACE)
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libubsan.so
                  OUTPUT_VARIABLE AC_LIBUBSAN OUTPUT_STRIP_TRAILING_WHITESPACE)
  list(APPEND AC_LUA_ENV "LD_PRELOAD=${AC_LIBASAN}:${AC_LIBUBSAN}"
       "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0"
       "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
endif()

file(GLOB AC_SPECS ${CMAKE_SOURCE_DIR}/spec/*_spec.lua)
foreach(spec ${AC_SPECS})
  get_filename_component(name ${spec} NAME_WE)
  # busted's runner script starts with "#!/usr/bin/env lua", which may be
  # another Lua: run it with lua5.4 explicitly.
  add_test(NAME spec.${name}
           COMMAND ${LUA54} ${BUSTED} --output=utfTerminal ${spec}
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(spec.${name} PROPERTIES ENVIRONMENT "${AC_LUA_ENV}"
                       TIMEOUT 300 LABELS lua)
endforeach()

add_test(NAME example.quickstart
         COMMAND acache ${CMAKE_SOURCE_DIR}/examples/quickstart.lua)
add_test(NAME example.quickstart_lua54
         COMMAND ${LUA54} ${CMAKE_SOURCE_DIR}/examples/quickstart.lua)
set_tests_properties(example.quickstart_lua54 PROPERTIES ENVIRONMENT "${AC_LUA_ENV}")
add_test(NAME example.host_step COMMAND host_step)
add_test(NAME example.host_uv COMMAND host_uv)
add_test(NAME example.decorators
         COMMAND acache ${CMAKE_SOURCE_DIR}/examples/decorators.lua)
add_test(NAME example.batching
         COMMAND acache ${CMAKE_SOURCE_DIR}/examples/batching.lua)
add_test(NAME example.custom_backend
         COMMAND acache ${CMAKE_SOURCE_DIR}/examples/custom_backend.lua)
# The README's Lua quickstart, run as written (keeps the README true).
add_test(NAME example.readme_quickstart
         COMMAND sh ${CMAKE_SOURCE_DIR}/tools/readme-quickstart.sh
                 ${CMAKE_SOURCE_DIR}/README.md ${CMAKE_BINARY_DIR}/readme_quickstart.lua
                 $<TARGET_FILE:acache>)
set_tests_properties(example.readme_quickstart PROPERTIES TIMEOUT 60 LABELS example
  PASS_REGULAR_EXPRESSION "^0\\.2")
set_tests_properties(example.quickstart example.quickstart_lua54 example.host_step
  example.host_uv example.decorators example.batching example.custom_backend
  PROPERTIES TIMEOUT 120 LABELS example)
# Two caches sharing a Redis L2 and invalidating each other, against a
# redis-server of the test's own.
add_test(NAME example.redis_two_instances
         COMMAND bash ${CMAKE_SOURCE_DIR}/tools/with-redis.sh $<TARGET_FILE:acache>
                 ${CMAKE_SOURCE_DIR}/examples/redis_two_instances.lua)
set_tests_properties(example.redis_two_instances PROPERTIES TIMEOUT 60 LABELS example
  PASS_REGULAR_EXPRESSION "b:get\\(1\\) after a:set ->.renamed by a.queries:.1.*contains\\(1\\) after b:delete ->.false")
set_tests_properties(example.custom_backend PROPERTIES PASS_REGULAR_EXPRESSION
  "L2 lookups: 1, queries: 2.*written by a.*remote_errors 3, reported 3")
set_tests_properties(example.decorators PROPERTIES
  PASS_REGULAR_EXPRESSION "100 concurrent get_user\\(2\\) calls -> queries:.3")
set_tests_properties(example.batching PROPERTIES
  PASS_REGULAR_EXPRESSION "2 batch loader calls of sizes 50, 50")
set_tests_properties(example.host_step PROPERTIES
  PASS_REGULAR_EXPRESSION "loader ran 1 time")

# The examples again under valgrind (regular build only: it cannot run with
# the sanitizers), for what they do not catch: reads of uninitialised
# memory, and leaks at exit in the C hosts.
find_program(VALGRIND valgrind)
if(VALGRIND AND NOT AC_SANITIZE)
  set(AC_VALGRIND ${VALGRIND} -q --error-exitcode=9 --leak-check=full
      --errors-for-leak-kinds=definite,indirect)
  foreach(ex quickstart decorators batching custom_backend)
    add_test(NAME valgrind.${ex}
             COMMAND ${AC_VALGRIND} $<TARGET_FILE:acache> ${CMAKE_SOURCE_DIR}/examples/${ex}.lua)
  endforeach()
  foreach(host host_step host_uv)
    add_test(NAME valgrind.${host} COMMAND ${AC_VALGRIND} $<TARGET_FILE:${host}>)
  endforeach()
  add_test(NAME valgrind.redis_two_instances
           COMMAND bash ${CMAKE_SOURCE_DIR}/tools/with-redis.sh ${AC_VALGRIND}
                   $<TARGET_FILE:acache> ${CMAKE_SOURCE_DIR}/examples/redis_two_instances.lua)
  set_tests_properties(valgrind.redis_two_instances PROPERTIES TIMEOUT 300 LABELS valgrind)
  set_tests_properties(valgrind.quickstart valgrind.decorators valgrind.batching valgrind.custom_backend
    valgrind.host_step valgrind.host_uv PROPERTIES TIMEOUT 300 LABELS valgrind)
endif()

# acache exits 1 when its script can never finish, saying where it waits.
add_test(NAME example.acache_never_finishes
         COMMAND sh ${CMAKE_SOURCE_DIR}/tools/expect-exit.sh 1
                 "the script is waiting for something that can never happen.*never_finishes.lua:7: in main chunk"
                 $<TARGET_FILE:acache> ${CMAKE_SOURCE_DIR}/examples/never_finishes.lua)
set_tests_properties(example.acache_never_finishes PROPERTIES TIMEOUT 60 LABELS example)
# The README's C host: examples/host_readme.c is the README's ```c block
# (checked), built like the other hosts and run where scripts/game.lua is.
add_executable(host_readme ${CMAKE_SOURCE_DIR}/examples/host_readme.c)
target_compile_options(host_readme PRIVATE ${AC_WARNINGS})
target_link_libraries(host_readme PRIVATE asynccache_lua_static)
add_test(NAME example.readme_host_block
         COMMAND sh ${CMAKE_SOURCE_DIR}/tools/readme-block.sh c
                 ${CMAKE_SOURCE_DIR}/README.md ${CMAKE_SOURCE_DIR}/examples/host_readme.c)
add_test(NAME example.host_readme COMMAND host_readme
         WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/examples)
set_tests_properties(example.readme_host_block example.host_readme
  PROPERTIES TIMEOUT 60 LABELS example)
set_tests_properties(example.host_readme PROPERTIES
  PASS_REGULAR_EXPRESSION "game: asset:hero.png for 3 entities, 1 load")
if(VALGRIND AND NOT AC_SANITIZE)
  add_test(NAME valgrind.host_readme COMMAND ${AC_VALGRIND} $<TARGET_FILE:host_readme>
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR}/examples)
  set_tests_properties(valgrind.host_readme PROPERTIES TIMEOUT 300 LABELS valgrind)
endif()

# The README's commands for the Lua quickstart (build/acache and the stock
# lua5.4 with LUA_PATH/LUA_CPATH), run as written from a copy of the
# repository root's layout.  Only the sanitizer settings of AC_LUA_ENV are
# passed on, LD_PRELOAD renamed so that only the commands get it.
set(AC_README_ENV ${AC_LUA_ENV})
list(FILTER AC_README_ENV INCLUDE REGEX "^(LD_PRELOAD|ASAN_OPTIONS|UBSAN_OPTIONS)=")
list(TRANSFORM AC_README_ENV REPLACE "^LD_PRELOAD=" "AC_LUA_PRELOAD=")
add_test(NAME example.readme_lua_commands
         COMMAND sh ${CMAKE_SOURCE_DIR}/tools/readme-lua-run.sh ${CMAKE_SOURCE_DIR}
                 ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/readme-lua-run)
set_tests_properties(example.readme_lua_commands PROPERTIES TIMEOUT 60 LABELS example)
if(AC_README_ENV)
  set_tests_properties(example.readme_lua_commands PROPERTIES ENVIRONMENT "${AC_README_ENV}")
endif()

# The build installed into a fresh prefix and used from there: the README's
# C host (compiled with the README's pkg-config line, run without ldconfig
# or LD_LIBRARY_PATH), the installed acache and the stock lua5.4.  In the
# sanitizer build the host is compiled with the sanitizers too.
set(AC_INSTALL_ENV "CC=${CMAKE_C_COMPILER}" ${AC_README_ENV})
if(AC_SANITIZE)
  list(APPEND AC_INSTALL_ENV "AC_HOST_CFLAGS=-fsanitize=address,undefined")
endif()
add_test(NAME example.install
         COMMAND sh ${CMAKE_SOURCE_DIR}/tools/install-check.sh ${CMAKE_COMMAND}
                 ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR} ${CMAKE_BINARY_DIR}/install-check)
set_tests_properties(example.install PROPERTIES TIMEOUT 300 LABELS example
  ENVIRONMENT "${AC_INSTALL_ENV}")
# The C host of the core alone (no Lua): one load for five waiters, the
# values freed through ops.removed, the loop closed at the end.
add_test(NAME example.host_c COMMAND host_c)
set_tests_properties(example.host_c PROPERTIES TIMEOUT 60 LABELS example
  PASS_REGULAR_EXPRESSION "5 requests for user:7 -> loader ran 1 time, 5 answers.*closed cleanly")
if(VALGRIND AND NOT AC_SANITIZE)
  add_test(NAME valgrind.host_c COMMAND ${AC_VALGRIND} $<TARGET_FILE:host_c>)
  # No PASS_REGULAR_EXPRESSION here: it would override valgrind's exit
  # status (9 on an error or a leak).
  set_tests_properties(valgrind.host_c PROPERTIES TIMEOUT 300 LABELS valgrind)
endif()

# The static archives define no global symbol outside the ac_ namespace.
add_test(NAME c.symbols_prefixed
         COMMAND sh ${CMAKE_SOURCE_DIR}/tools/check-symbols.sh
                 $<TARGET_FILE:asynccache_static> $<TARGET_FILE:asynccache_lua_static>)
set_tests_properties(c.symbols_prefixed PROPERTIES TIMEOUT 60 LABELS c)

# The documentation (docs/*.md, see docs/index.md "Examples that run"):
# each page's examples run with their output checked (tools/docs-run.lua;
# C examples are compiled with the project's warnings against the build
# tree's headers and libasynccache-lua.a), every relative link resolves
# (tools/docs-links.lua) and every public name is mentioned
# (tools/docs-api.lua, which derives the list from the code).  Labelled
# "example" too, so the sanitizer build runs them; -L docs selects them.
file(GLOB AC_DOC_PAGES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/docs/*.md)
set(AC_DOCS_ARGS --src ${CMAKE_SOURCE_DIR} --build ${CMAKE_BINARY_DIR}
    --work ${CMAKE_BINARY_DIR}/docs-run --acache $<TARGET_FILE:acache>
    --lua ${LUA54} --cc ${CMAKE_C_COMPILER})
foreach(flag ${AC_WARNINGS} -std=gnu11 -I${CMAKE_SOURCE_DIR}/runtime/include
        -I${CMAKE_SOURCE_DIR}/bindings/include ${LUA_CFLAGS} ${LIBUV_CFLAGS})
  list(APPEND AC_DOCS_ARGS --cflag ${flag})
endforeach()
if(AC_SANITIZE)
  list(APPEND AC_DOCS_ARGS --cflag -fsanitize=address,undefined --cflag -fno-omit-frame-pointer)
endif()
foreach(lib $<TARGET_FILE:asynccache_lua_static> $<TARGET_FILE:asynccache_static>
        ${LUA_LDFLAGS} ${LIBUV_LDFLAGS} ${MSGPACK_LDFLAGS} ${ZLIB_LDFLAGS} ${HIREDIS_LDFLAGS} -lm)
  list(APPEND AC_DOCS_ARGS --lib ${lib})
endforeach()
foreach(page ${AC_DOC_PAGES})
  get_filename_component(name ${page} NAME_WE)
  add_test(NAME docs.run.${name}
           COMMAND ${LUA54} ${CMAKE_SOURCE_DIR}/tools/docs-run.lua ${AC_DOCS_ARGS} ${page})
  set_tests_properties(docs.run.${name} PROPERTIES TIMEOUT 300 LABELS "example;docs")
  if(AC_README_ENV) # the sanitizer settings, LD_PRELOAD only for lua5.4
    set_tests_properties(docs.run.${name} PROPERTIES ENVIRONMENT "${AC_README_ENV}")
  endif()
endforeach()
# The C examples again under valgrind (regular build only), as the C hosts
# of examples/ are: uninitialised reads, and leaks at exit.
if(VALGRIND AND NOT AC_SANITIZE)
  set(AC_DOCS_VALGRIND_ARGS ${AC_DOCS_ARGS})
  list(TRANSFORM AC_DOCS_VALGRIND_ARGS REPLACE "/docs-run$" "/docs-valgrind")
  foreach(w ${AC_VALGRIND})
    list(APPEND AC_DOCS_VALGRIND_ARGS --wrap ${w})
  endforeach()
  foreach(page ${AC_DOC_PAGES})
    get_filename_component(name ${page} NAME_WE)
    file(STRINGS ${page} c_runs REGEX "^```c run")
    if(c_runs)
      add_test(NAME valgrind.docs.${name}
               COMMAND ${LUA54} ${CMAKE_SOURCE_DIR}/tools/docs-run.lua ${AC_DOCS_VALGRIND_ARGS}
                       --only c ${page})
      set_tests_properties(valgrind.docs.${name} PROPERTIES TIMEOUT 300 LABELS "valgrind;docs")
    endif()
  endforeach()
endif()
add_test(NAME docs.links
         COMMAND ${LUA54} ${CMAKE_SOURCE_DIR}/tools/docs-links.lua ${CMAKE_SOURCE_DIR})
add_test(NAME docs.api
         COMMAND acache ${CMAKE_SOURCE_DIR}/tools/docs-api.lua ${CMAKE_SOURCE_DIR})
set_tests_properties(docs.links docs.api PROPERTIES TIMEOUT 60 LABELS "example;docs")

# The agent_cache examples (examples/agent/): the seed's five use cases
# against in-process fake APIs, and a rule loaded from a directory with
# --load.  Each checks what the script prints (one regular expression: no
# ";" in it, which would make it a list of alternatives); an error
# reaching the default hook ("async-cache: ...") fails it too.
function(ac_agent_example name expected)
  add_test(NAME example.agent.${name} COMMAND acache ${ARGN}
           ${CMAKE_SOURCE_DIR}/examples/agent/${name}.lua)
  set_tests_properties(example.agent.${name} PROPERTIES TIMEOUT 60 LABELS example
    PASS_REGULAR_EXPRESSION "${expected}" FAIL_REGULAR_EXPRESSION "async-cache: ")
endfunction()
ac_agent_example(shopping_cart
  "API calls: get_cart 3, get_product 1, add_to_cart 1, checkout 1\nsession: hits 2, misses 4, invalidations 2")
ac_agent_example(support_tickets
  "agent-A sees T-100 in_progress \\(hits 1, misses 2, invalidations 1\\), API gets so far: 2\nagent-B sees T-100 in_progress \\(misses 1\\), API gets so far: 3\nagent-C: hits 1, misses 1. agent-D: hits 0, misses 2, invalidations 1. API gets: 3")
ac_agent_example(research_search
  "3 searches, 1 search API call, 2 page fetches\nfalse\ttrue\trepeats\tsearch_web\n.*search API calls: 1. session: calls 6, hits 2, misses 3, loop_detections 1")
ac_agent_example(inventory_oscillation
  "false\tcycle\tupdate_stock\nAgentLoopDetectedError: Cycle detected: check_stock -> update_stock\ninventory API: get_stock 2, adjust 1. stock now 9")
ac_agent_example(payment_retry
  "attempt 3: PaymentError: gateway timeout, retrying\nattempt 4: Tool charge_payment called 4 times with the same arguments \\(max_tool_repeats = 3\\)\nstopped by AgentLoopDetectedError \\(kind repeats, tool charge_payment\\). payment API calls: 3")
ac_agent_example(payment_budget
  "order 3: stopped: Payment budget exceeded: 299.97 charged in session shopper-1 \\(max_amount = 250.00\\) \\(kind payment_budget\\)\npayment API calls: 2, loop_detections: 1\n.*payment API calls in all: 3"
  --load ${CMAKE_SOURCE_DIR}/examples/agent/rules)
if(VALGRIND AND NOT AC_SANITIZE)
  add_test(NAME valgrind.agent_support_tickets
           COMMAND ${AC_VALGRIND} $<TARGET_FILE:acache> ${CMAKE_SOURCE_DIR}/examples/agent/support_tickets.lua)
  set_tests_properties(valgrind.agent_support_tickets PROPERTIES TIMEOUT 300 LABELS valgrind)
endif()
