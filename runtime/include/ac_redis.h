/* Redis as a cache's second level: an ac_backend_t over hiredis's async
 * API and its libuv adapter, on the scheduler's loop (no thread, no
 * blocking call).
 *
 * Each backend holds two connections to the server: one for commands
 * (GET, SET ... PX, DEL, SCAN + UNLINK for clear, PUBLISH), one subscribed
 * to the invalidation channel, prefix .. "invalidate".  It is up once both
 * are connected, authenticated and subscribed.
 *
 * Keys are prefix .. the cache's key (its tag byte, then its bytes).  A
 * value is "A", its wall-clock expiry in milliseconds since the epoch (8
 * bytes, big-endian; 0 for none), then the value's bytes: a hit knows the
 * time it has left without a PTTL round trip.  Anything else under such a
 * key (a value some other program wrote) is an error, and a miss.
 *
 * Failures.  Every command has a timeout (command_timeout): the cache's
 * callback then gets AC_ETIMEDOUT, and the late reply is dropped.  A
 * connection that fails, is lost, cannot authenticate, or lets three
 * commands in a row time out is closed (the circuit opens: state DOWN);
 * while it is, operations are refused at once (AC_EIO), without a
 * network call.  The backend retries after a backoff that doubles from
 * 0.1 s to 5 s (state PROBING while it connects, connect_timeout bounding
 * it) and is UP again once the handshake succeeds.
 *
 * Invalidation.  set, delete and clear publish the key (or "everything")
 * with this backend's random id; a message with another id makes the
 * backend call `invalidated` (the owner drops the key from its L1: see
 * ac_cache_forget), its own are ignored.  When the subscription is lost or
 * comes back after a loss, messages may have been missed: `invalidated` is
 * called with no key (drop everything).  Redis pub/sub delivers at most
 * once: an instance that is disconnected when a message is published
 * misses it, hence the clear on reconnection. */
#ifndef AC_REDIS_H
#define AC_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "ac_backend.h"
#include "ac_export.h"
#include "ac_sched.h"

typedef struct {
  const char *host;       /* "127.0.0.1" when NULL */
  int port;               /* 6379 when 0 */
  const char *unix_path;  /* a Unix socket instead of host and port */
  int db;                 /* SELECT db (0) */
  const char *username;   /* AUTH username password (Redis 6 ACLs) */
  const char *password;   /* AUTH password; NULL: no AUTH */
  const char *prefix;     /* of every key and of the channel ("ac:" when NULL) */
  double connect_timeout; /* seconds (1 when 0) */
  double command_timeout; /* seconds (0.25 when 0) */
  ac_sched_t *sched;      /* required */
  /* Another instance changed key (len bytes, as the cache gave it to the
   * backend), or, with key NULL, everything may have changed.  Runs on the
   * loop, never inside a backend call; must not free the backend. */
  void (*invalidated)(void *ud, const char *key, size_t len);
  /* Something worth telling a person: the connection failed or was lost
   * (msg says why: "connect 127.0.0.1:6379: Connection refused", "AUTH:
   * WRONGPASS ..."), or it is back ("connected").  Optional. */
  void (*event)(void *ud, const char *msg);
  void *ud;
} ac_redis_options_t;

typedef enum { AC_REDIS_DOWN = 0, AC_REDIS_PROBING, AC_REDIS_UP } ac_redis_state_t;

typedef struct {
  ac_redis_state_t state;
  uint64_t timeouts;      /* commands that timed out */
  uint64_t errors;        /* error replies, lost connections, refused calls */
  uint64_t connects;      /* handshakes that succeeded */
  uint64_t invalidations; /* messages from other instances acted upon */
  char last_error[160];   /* the last failure, "" when none */
} ac_redis_stats_t;

/* A backend (connecting in the background), or NULL with *err (AC_EINVAL:
 * bad options; AC_ENOMEM).  Free it with ac_backend_free after the caches
 * using it. */
AC_EXPORT ac_backend_t *ac_redis_new(const ac_redis_options_t *o, int *err);
/* 0 and *out, or AC_EINVAL when b is not a Redis backend. */
AC_EXPORT int ac_redis_stats(const ac_backend_t *b, ac_redis_stats_t *out);
AC_EXPORT const char *ac_redis_state_name(ac_redis_state_t s);

#endif
