/* host_c: a C program that caches C strings with the async-cache core,
 * without Lua.
 *
 * The cache (ac_cache_t) maps keys to slots, small integers 1..maxsize;
 * the program keeps the values itself, in an array indexed by slot, and
 * the cache tells it when a slot's value must go (ops.removed).  So the
 * cache never copies, frees or even looks at a value.
 *
 * Loads are single-flight: the first caller of a missing key leads (runs
 * the loader), callers that come while it runs join the load and are
 * called back once with its outcome.  Everything runs on one libuv loop,
 * owned here by an ac_sched_t.
 *
 * The program: a miss and a hit on "user:42", five requests for "user:7"
 * whose loader answers later (from a libuv timer: one load, five
 * answers), a delete, and everything freed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ac.h"

#define MAXSIZE 128

typedef struct {
  ac_sched_t *sched;
  ac_cache_t *cache;
  char *values[MAXSIZE + 1]; /* values[slot]; slot 0 means "none" */
  int loader_calls;
} app_t;

/* What a load carries for its loader and waiters.  It lives inside the
 * load (options.load_data_size, ac_load_data), so a load costs the
 * program no allocation of its own. */
typedef struct {
  app_t *app;
  char *unstored; /* the value when the cache did not keep it (slot 0) */
} load_t;

/* A caller waiting for a value.  The waiter must stay valid until its
 * callback has run: here requests live in main's frame. */
typedef struct {
  ac_load_waiter_t waiter;
  char answer[64];
  int answered;
} request_t;

/* ---- values by slot ------------------------------------------------------ */

/* The cache drops an entry (evicted, expired, deleted, cleared): drop its
 * value.  This is the only place values are freed. */
static void on_removed(void *ud, uint32_t slot, int tag, const char *key,
                       size_t len, ac_removed_t why) {
  app_t *app = ud;
  (void)tag;
  if (why == AC_REMOVED_DELETED)
    printf("removed %.*s (deleted)\n", (int)len, key);
  free(app->values[slot]);
  app->values[slot] = NULL;
}

/* ---- the loader ---------------------------------------------------------- */

/* The "database": "user:N" -> "profile of user N" (a new string). */
static char *build_profile(const char *key, size_t len) {
  static const char prefix[] = "profile of ";
  char *v = malloc(sizeof prefix + len);
  if (v == NULL) return NULL;
  memcpy(v, prefix, sizeof prefix - 1);
  memcpy(v + sizeof prefix - 1, key, len); /* keys are bytes, not C strings */
  v[sizeof prefix - 1 + len] = '\0';
  char *colon = strchr(v, ':');
  if (colon != NULL) *colon = ' ';
  return v;
}

/* Hands a loaded value to the cache and wakes every waiter. */
static void finish_load(ac_load_t *ld, char *value) {
  load_t *l = ac_load_data(ld);
  if (value == NULL) { /* out of memory: the waiters get an error */
    ac_load_finish(ld, AC_ELOAD, 0);
    return;
  }
  /* ac_load_store gives the slot for the value, or 0 when the cache will
   * not keep it (the key was written meanwhile, the load timed out): the
   * waiters then read it from the load. */
  int64_t slot = ac_load_store(ld);
  if (slot > 0) {
    l->app->values[slot] = value; /* the cache's now: freed in on_removed */
    value = NULL;
  } else {
    l->unstored = value;
  }
  /* The waiters run inside this call; then the load (and l) is gone. */
  ac_load_finish(ld, 0, slot > 0 ? (uint32_t)slot : 0);
  free(value);
}

/* A slow source: the value arrives from a libuv timer, long after the
 * request that started the load returned. */
static void on_slow_answer(ac_timer_t *t, void *data) {
  ac_load_t *ld = data;
  size_t len;
  const char *key = ac_load_key(ld, NULL, &len);
  ac_timer_free(t); /* allowed from its own callback */
  finish_load(ld, build_profile(key, len));
}

static int run_loader(ac_load_t *ld, int slow) {
  load_t *l = ac_load_data(ld);
  l->app->loader_calls++;
  if (!slow) {
    size_t len;
    const char *key = ac_load_key(ld, NULL, &len);
    finish_load(ld, build_profile(key, len));
    return 0;
  }
  ac_timer_t *t = ac_timer_new(l->app->sched, on_slow_answer, ld);
  if (t == NULL) {
    ac_load_finish(ld, AC_ENOMEM, 0);
    return AC_ENOMEM;
  }
  ac_timer_start(t, 0.02, 0);
  /* The loader finishes later: let the cache bound the waiters' wait by
   * load_timeout, so nobody waits forever if the source never answers. */
  ac_load_background(ld);
  return 0;
}

/* ---- requests ------------------------------------------------------------- */

static void on_answer(ac_load_waiter_t *w, ac_load_t *ld, int status) {
  request_t *req = w->data;
  load_t *l = ac_load_data(ld); /* ld is valid during this call only */
  uint32_t slot = ac_load_slot(ld);
  const char *v = slot ? l->app->values[slot] : l->unstored;
  if (status != 0)
    snprintf(req->answer, sizeof req->answer, "error: %s", ac_strerror(status));
  else
    snprintf(req->answer, sizeof req->answer, "%s", v);
  req->answered = 1;
}

/* Asks for a key: answered now (a hit, or a loader that answers at once)
 * or later, when the loop runs (a slow load). */
static int request(app_t *app, const char *key, int slow, request_t *req) {
  ac_lookup_t r;
  memset(req, 0, sizeof *req);
  req->waiter.cb = on_answer;
  req->waiter.data = req;
  switch (ac_cache_get(app->cache, 0, key, strlen(key), &r)) {
    case AC_HIT: /* no callback, no allocation: the value is right there */
      snprintf(req->answer, sizeof req->answer, "%s", app->values[r.slot]);
      req->answered = 1;
      return 0;
    case AC_JOIN: /* someone is loading it: wait for that load */
      ac_load_join(r.load, &req->waiter);
      return 0;
    default: { /* AC_MISS: load it, and wait like every other caller */
      ac_load_t *ld;
      int rc = ac_cache_lead(app->cache, 0, key, strlen(key), 0, &ld);
      if (rc != 0) return rc;
      load_t *l = ac_load_data(ld);
      l->app = app;
      ac_load_begin(ld); /* without a backend: AC_LEAD, run the loader */
      ac_load_join(ld, &req->waiter);
      return run_loader(ld, slow);
    }
  }
}

int main(void) {
  app_t app;
  memset(&app, 0, sizeof app);
  int err;
  app.sched = ac_sched_new(NULL, &err); /* NULL: its own libuv loop */
  if (app.sched == NULL) {
    fprintf(stderr, "host_c: %s\n", ac_strerror(err));
    return 1;
  }
  ac_cache_options_t o;
  memset(&o, 0, sizeof o); /* every option left out takes its default */
  o.maxsize = MAXSIZE;
  o.default_ttl = 300;  /* seconds */
  o.load_timeout = 1.0; /* no waiter waits longer for a load */
  o.load_data_size = sizeof(load_t);
  o.sched = app.sched;
  o.ops.removed = on_removed;
  o.ud = &app;
  app.cache = ac_cache_new(&o, &err);
  if (app.cache == NULL) {
    fprintf(stderr, "host_c: %s\n", ac_strerror(err));
    ac_sched_free(app.sched);
    return 1;
  }

  /* A miss (the loader answers at once), then a hit. */
  request_t a, b;
  if (request(&app, "user:42", 0, &a) != 0 || request(&app, "user:42", 0, &b) != 0)
    return 1;
  printf("user:42 -> %s (miss, loaded)\n", a.answer);
  printf("user:42 -> %s (hit)\n", b.answer);

  /* Five requests while a slow load runs: the first leads, four join. */
  enum { N = 5 };
  request_t slow[N];
  int before = app.loader_calls;
  for (int i = 0; i < N; i++)
    if (request(&app, "user:7", 1, &slow[i]) != 0) return 1;
  printf("user:7: %d requests waiting, %d answered\n", N, slow[0].answered);
  ac_sched_run(app.sched); /* until idle: the timer fires, all answered */
  int answered = 0;
  for (int i = 0; i < N; i++) answered += slow[i].answered;
  printf("user:7 -> %s\n", slow[N - 1].answer);
  printf("%d requests for user:7 -> loader ran %d time, %d answers\n", N,
         app.loader_calls - before, answered);

  /* A delete: the value is freed (on_removed), the next get misses. */
  ac_cache_delete(app.cache, 0, "user:42", 7);
  ac_lookup_t r;
  printf("user:42 after delete: %s\n",
         ac_cache_get(app.cache, 0, "user:42", 7, &r) == AC_MISS ? "miss" : "?");

  ac_cache_stats_t st;
  ac_cache_stats(app.cache, &st);
  /* A join counts as a miss: the value was not there when asked for. */
  printf("hits %llu, misses %llu, loads %llu, hit rate %.0f%%, size %u\n",
         (unsigned long long)st.hits, (unsigned long long)st.misses,
         (unsigned long long)st.loads,
         100.0 * (double)st.hits / (double)(st.hits + st.misses), st.size);

  /* The cache first (it reports every entry removed: values freed), then
   * the scheduler, which closes the loop: 0 means no handle was left. */
  ac_cache_free(app.cache);
  int rc = ac_sched_free(app.sched);
  printf("closed %s\n", rc == 0 ? "cleanly" : ac_strerror(rc));
  return rc == 0 ? 0 : 1;
}
