/* async-cache core: the umbrella header.
 *
 *   ac_error.h   error codes, ac_strerror
 *   ac_alloc.h   the allocator hook
 *   ac_clock.h   clocks used for TTL
 *   ac_store.h   the bounded store: keys to slots, with TTL
 *   ac_policy.h  eviction policies behind the store (LRU)
 *   ac_flight.h  single-flight load coalescing
 *   ac_sched.h   the libuv loop, the ready queue and the runtime's clock
 *   ac_timer.h   timers that count from now
 *   ac_cache.h   the cache: store + single-flight loads + batches + backend
 *   ac_backend.h the interface of a second-level backend
 *   ac_codec.h   MessagePack bytes: a writer, a reader into callbacks
 *   ac_snapshot.h snapshot files: every entry, written crash-safely
 *   ac_redis.h   Redis as a backend (hiredis on the loop) */
#ifndef AC_H
#define AC_H

#include "ac_alloc.h"
#include "ac_backend.h"
#include "ac_cache.h"
#include "ac_clock.h"
#include "ac_codec.h"
#include "ac_error.h"
#include "ac_flight.h"
#include "ac_policy.h"
#include "ac_redis.h"
#include "ac_sched.h"
#include "ac_snapshot.h"
#include "ac_store.h"
#include "ac_timer.h"

#define AC_VERSION_MAJOR 0
#define AC_VERSION_MINOR 1
#define AC_VERSION_PATCH 0
#define AC_VERSION_STRING "0.1.0"

#endif
