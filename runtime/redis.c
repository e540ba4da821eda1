/* The Redis backend (see ac_redis.h).
 *
 * State: r->cmd and r->sub are the two hiredis contexts (NULL when there
 * is none); the backend is UP when both have finished their handshake
 * (cmd: AUTH, SELECT, PING answered; sub: AUTH, SUBSCRIBE confirmed).
 * Every failure goes through one function, go_down, which drops both
 * contexts and arms the retry timer: a half-working backend is never left
 * behind.
 *
 * Writes are behind: a set is copied into a queue and the queue goes out
 * on the next turn of the loop (or before any other command, which keeps
 * the order), so that a set costs its caller a copy, not a command.
 *
 * Requests: every command the cache asked for carries a req, on a list
 * in deadline order that one timer watches.  hiredis calls a command's callback exactly once: with
 * the reply, or with NULL when the context goes (redisAsyncFree, a lost
 * connection).  The cache's callback runs exactly once too: from whichever
 * comes first, the reply or the timer (`delivered` says it has run); the
 * req is freed by the hiredis callback, the last one to know about it.
 * A clear is one req through several commands (SCAN pages, then UNLINK).
 *
 * hiredis forbids freeing a context from inside its own callbacks only in
 * that it defers the free (REDIS_IN_CALLBACK): redisAsyncFree is safe to
 * call anywhere, and the pointers are cleared before, so that nothing
 * sends on a context being freed. */
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "ac_clock.h"
#include "ac_error.h"
#include "ac_redis.h"
#include "ac_timer.h"
#include "alloc.h"

#define BACKOFF_FIRST 0.1
#define BACKOFF_MAX 5.0
#define TIMEOUTS_TO_OPEN 3 /* timeouts in a row (each a burst of commands) open the circuit */
#define VALUE_HEAD 9       /* "A" + 8 bytes of expiry */
#define SCAN_COUNT "1000"
#define WINDOW 1024 /* sets in flight at most; the others wait queued */
#define MGET_MAX 1000 /* keys of one MGET */

enum { OP_GET, OP_SET, OP_DEL, OP_CLEAR };

typedef struct ac_redis_s ac_redis_t;
typedef struct req_s req;

/* A get waiting for the next turn of the loop, to go out in an MGET. */
typedef struct {
  req *q;
  char *key; /* the full key */
  size_t klen;
} pending_get;

/* A set waiting for the next turn of the loop (write-behind): the caller
 * pays for a copy, the commands go out together, pipelined. */
typedef struct {
  char *key, *value; /* one block: the full key, then the value with its head */
  size_t klen, vlen;
  size_t ckey, cklen; /* the cache's key (for the message): offset, length */
  long long pxms;     /* 0: no expiry */
  ac_backend_done_cb cb;
  void *arg;
} pending_set;

struct req_s {
  ac_redis_t *r;
  int op;
  ac_backend_get_cb get_cb;
  ac_backend_done_cb done_cb;
  void *arg;
  double deadline;       /* ac_sched_now() past which it has timed out */
  struct req_s *prev, *next; /* the waiting list, in deadline order */
  int delivered;
};

struct ac_redis_s {
  ac_backend_t base; /* first */
  ac_sched_t *sched;
  char *host, *unix_path, *username, *password, *prefix, *channel, *pattern;
  size_t prefix_len;
  int port, db;
  double connect_timeout, command_timeout;
  void (*invalidated)(void *ud, const char *key, size_t len);
  void (*event)(void *ud, const char *msg);
  void *ud;
  redisAsyncContext *cmd, *sub;
  int cmd_ready, sub_ready;
  ac_timer_t *retry, *connecting;
  double backoff;
  int timeouts_in_row;
  int was_up;   /* up at least once: a later handshake means news were missed */
  int freeing;
  pending_set *sets; /* write-behind queue: sets[head..nsets) wait */
  size_t head, nsets, capsets;
  size_t inflight;   /* sets sent, not answered yet */
  pending_get *gets; /* gets of this turn, sent together by `flusher` */
  size_t ngets, capgets;
  ac_timer_t *flusher;
  /* Requests not answered nor timed out, oldest first: every command has
   * the same timeout, so this is deadline order, and one timer (armed
   * for the oldest) times them all out. */
  req *waiting, *waiting_last;
  ac_timer_t *expiry;
  char id[17];  /* this backend's id in invalidation messages */
  ac_redis_stats_t st;
};

static const ac_backend_vtable_t REDIS_VT;

const char *ac_redis_state_name(ac_redis_state_t s) {
  switch (s) {
    case AC_REDIS_UP: return "up";
    case AC_REDIS_PROBING: return "probing";
    default: return "down";
  }
}

static char *dup_str(const char *s) {
  if (s == NULL) return NULL;
  size_t n = strlen(s);
  char *p = ac__malloc(n + 1);
  if (p != NULL) memcpy(p, s, n + 1);
  return p;
}

static void tell(ac_redis_t *r, const char *msg) {
  if (r->event != NULL && !r->freeing) r->event(r->ud, msg);
}

/* ---- the connection ---------------------------------------------------------- */

static void start_connect(ac_redis_t *r);

static void drop_context(redisAsyncContext **pc) {
  redisAsyncContext *c = *pc;
  *pc = NULL;
  if (c != NULL) {
    c->data = NULL; /* its callbacks from now on see no backend */
    redisAsyncFree(c);
  }
}

/* Closes the circuit's connections, says why, and retries later. */
static void fail_sets(ac_redis_t *r, int status);
static void fail_gets(ac_redis_t *r, int status);
static void flush_sets(ac_redis_t *r, int all);

static void go_down(ac_redis_t *r, const char *why) {
  int was = r->st.state;
  fail_sets(r, AC_EIO);
  fail_gets(r, AC_EIO);
  r->st.state = AC_REDIS_DOWN;
  r->cmd_ready = r->sub_ready = 0;
  r->timeouts_in_row = 0;
  snprintf(r->st.last_error, sizeof r->st.last_error, "%s", why);
  ac_timer_stop(r->connecting);
  drop_context(&r->cmd);
  drop_context(&r->sub);
  if (r->freeing) return;
  if (was == AC_REDIS_UP) {
    r->st.errors++;
    char msg[200];
    snprintf(msg, sizeof msg, "Redis connection lost: %s", why);
    tell(r, msg);
    /* Invalidations published from now on are missed. */
    if (r->invalidated != NULL) r->invalidated(r->ud, NULL, 0);
  } else if (r->backoff <= BACKOFF_FIRST) { /* the first failure of a series */
    char msg[200];
    snprintf(msg, sizeof msg, "Redis unavailable: %s", why);
    tell(r, msg);
  }
  ac_timer_start(r->retry, r->backoff, 0);
  r->backoff = r->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : r->backoff * 2;
}

static void maybe_up(ac_redis_t *r) {
  if (!r->cmd_ready || !r->sub_ready) return;
  ac_timer_stop(r->connecting);
  r->st.state = AC_REDIS_UP;
  r->st.connects++;
  r->backoff = BACKOFF_FIRST;
  r->timeouts_in_row = 0;
  if (r->was_up && r->invalidated != NULL) r->invalidated(r->ud, NULL, 0);
  r->was_up = 1;
  tell(r, "Redis connected");
}

static ac_redis_t *owner(const redisAsyncContext *c) { return c->data; }

static void on_connect(const redisAsyncContext *c, int status) {
  ac_redis_t *r = owner(c);
  if (r == NULL || status == REDIS_OK) return;
  char why[160];
  snprintf(why, sizeof why, "connect %s: %s",
           r->unix_path ? r->unix_path : r->host, c->errstr[0] ? c->errstr : "failed");
  /* hiredis frees c after this callback: it must not be freed again. */
  if (c == r->cmd) r->cmd = NULL;
  if (c == r->sub) r->sub = NULL;
  go_down(r, why);
}

static void on_disconnect(const redisAsyncContext *c, int status) {
  ac_redis_t *r = owner(c);
  (void)status;
  if (r == NULL) return; /* one we dropped */
  char why[160];
  snprintf(why, sizeof why, "%s", c->errstr[0] ? c->errstr : "the server closed the connection");
  if (c == r->cmd) r->cmd = NULL;
  if (c == r->sub) r->sub = NULL;
  go_down(r, why);
}

/* A handshake reply (AUTH, SELECT, PING on cmd; AUTH on sub): an error
 * reply fails the connection, naming the command. */
static void on_handshake(redisAsyncContext *c, void *reply, void *privdata) {
  ac_redis_t *r = owner(c);
  redisReply *rep = reply;
  const char *what = privdata;
  if (r == NULL || rep == NULL) return;
  if (rep->type == REDIS_REPLY_ERROR) {
    char why[160];
    snprintf(why, sizeof why, "%s: %s", what, rep->str);
    go_down(r, why);
    return;
  }
  if (c == r->cmd && strcmp(what, "PING") == 0) {
    r->cmd_ready = 1;
    maybe_up(r);
  }
}

/* A key is prefix + what the cache gave; the message is id + 'k' + key,
 * or id + 'c' (everything). */
static void on_message(redisAsyncContext *c, void *reply, void *privdata) {
  ac_redis_t *r = owner(c);
  redisReply *rep = reply;
  (void)privdata;
  if (r == NULL || rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3) return;
  redisReply *kind = rep->element[0];
  if (kind->type != REDIS_REPLY_STRING) return;
  if (strcmp(kind->str, "subscribe") == 0) {
    r->sub_ready = 1;
    maybe_up(r);
    return;
  }
  redisReply *msg = rep->element[2];
  if (strcmp(kind->str, "message") != 0 || msg->type != REDIS_REPLY_STRING || msg->len < 17)
    return;
  if (memcmp(msg->str, r->id, 16) == 0) return; /* our own */
  if (r->invalidated == NULL) return;
  r->st.invalidations++;
  if (msg->str[16] == 'c') r->invalidated(r->ud, NULL, 0);
  else if (msg->str[16] == 'k') r->invalidated(r->ud, msg->str + 17, msg->len - 17);
}

static void on_connect_timeout(ac_timer_t *t, void *data) {
  (void)t;
  ac_redis_t *r = data;
  char why[160];
  snprintf(why, sizeof why, "connect %s: timed out after %g s",
           r->unix_path ? r->unix_path : r->host, r->connect_timeout);
  go_down(r, why);
}

static void on_retry(ac_timer_t *t, void *data) {
  (void)t;
  start_connect(data);
}

static redisAsyncContext *open_context(ac_redis_t *r) {
  redisAsyncContext *c = r->unix_path ? redisAsyncConnectUnix(r->unix_path)
                                      : redisAsyncConnect(r->host, r->port);
  if (c == NULL) return NULL;
  if (c->err) {
    char why[160];
    snprintf(why, sizeof why, "connect %s: %s", r->unix_path ? r->unix_path : r->host, c->errstr);
    redisAsyncFree(c);
    go_down(r, why);
    return NULL;
  }
  if (redisLibuvAttach(c, ac_sched_loop(r->sched)) != REDIS_OK) {
    redisAsyncFree(c);
    go_down(r, "out of memory");
    return NULL;
  }
  /* An open connection alone keeps no script running: a command in
   * flight does, through its timeout timer. */
  uv_unref((uv_handle_t *)&((redisLibuvEvents *)c->ev.data)->handle);
  c->data = r;
  redisAsyncSetConnectCallback(c, on_connect);
  redisAsyncSetDisconnectCallback(c, on_disconnect);
  return c;
}

static void send_auth(ac_redis_t *r, redisAsyncContext *c) {
  if (r->password == NULL) return;
  if (r->username != NULL)
    redisAsyncCommand(c, on_handshake, "AUTH", "AUTH %s %s", r->username, r->password);
  else
    redisAsyncCommand(c, on_handshake, "AUTH", "AUTH %s", r->password);
}

/* Both connections, their handshakes queued at once (hiredis sends them
 * when connected), bounded by connect_timeout. */
static void start_connect(ac_redis_t *r) {
  if (r->freeing) return;
  r->st.state = AC_REDIS_PROBING;
  r->cmd_ready = r->sub_ready = 0;
  ac_timer_start(r->connecting, r->connect_timeout, 0);
  if ((r->cmd = open_context(r)) == NULL) {
    if (r->st.state != AC_REDIS_DOWN) go_down(r, "out of memory");
    return;
  }
  send_auth(r, r->cmd);
  if (r->db != 0) redisAsyncCommand(r->cmd, on_handshake, "SELECT", "SELECT %d", r->db);
  redisAsyncCommand(r->cmd, on_handshake, "PING", "PING");
  if ((r->sub = open_context(r)) == NULL) {
    if (r->st.state != AC_REDIS_DOWN) go_down(r, "out of memory");
    return;
  }
  send_auth(r, r->sub);
  redisAsyncCommand(r->sub, on_message, NULL, "SUBSCRIBE %s", r->channel);
}

/* ---- requests ------------------------------------------------------------------ */

static double wall_ms(void) { return ac_clock_wall() * 1e3; }

static void arm_expiry(ac_redis_t *r) {
  if (r->waiting == NULL) {
    ac_timer_stop(r->expiry);
    return;
  }
  double in = r->waiting->deadline - ac_sched_now(r->sched);
  ac_timer_start(r->expiry, in > 0 ? in : 0, 0);
}

static void unwait(req *q) {
  ac_redis_t *r = q->r;
  if (q->prev) q->prev->next = q->next;
  else if (r->waiting == q) r->waiting = q->next;
  else return; /* not waiting */
  if (q->next) q->next->prev = q->prev;
  else r->waiting_last = q->prev;
  q->prev = q->next = NULL;
}

/* (Re)starts a request's time: it goes last in the waiting list. */
static void wait_reply(req *q) {
  ac_redis_t *r = q->r;
  unwait(q);
  q->deadline = ac_sched_now(r->sched) + r->command_timeout;
  q->prev = r->waiting_last;
  if (r->waiting_last) r->waiting_last->next = q;
  else r->waiting = q;
  r->waiting_last = q;
  if (r->waiting == q) arm_expiry(r);
}

static void deliver(req *q, int status, const char *bytes, size_t len, double ttl) {
  if (q->delivered) return;
  q->delivered = 1;
  int was_first = q->r->waiting == q;
  unwait(q);
  if (was_first) arm_expiry(q->r);
  if (q->op == OP_GET) q->get_cb(q->arg, status, bytes, len, ttl);
  else q->done_cb(q->arg, status);
}

/* The oldest requests' time is up: each gets AC_ETIMEDOUT (its late reply
 * is dropped when it comes). */
static void on_expiry(ac_timer_t *t, void *data) {
  (void)t;
  ac_redis_t *r = data;
  double now = ac_sched_now(r->sched);
  /* The requests timing out together (the keys of one MGET, a pipelined
   * burst) count as one timeout toward opening the circuit. */
  if (r->waiting != NULL && r->waiting->deadline <= now) r->timeouts_in_row++;
  while (r->waiting != NULL && r->waiting->deadline <= now) {
    req *q = r->waiting;
    r->st.timeouts++;
    deliver(q, AC_ETIMEDOUT, NULL, 0, 0);
    if (r->timeouts_in_row >= TIMEOUTS_TO_OPEN && r->st.state == AC_REDIS_UP) {
      char why[160];
      snprintf(why, sizeof why, "%d commands in a row timed out (command_timeout %g s)",
               TIMEOUTS_TO_OPEN, r->command_timeout);
      go_down(r, why); /* the others end now, with the connection */
      return;
    }
  }
  arm_expiry(r);
}

static req *new_req(ac_redis_t *r, int op, ac_backend_get_cb g, ac_backend_done_cb d,
                    void *arg) {
  req *q = ac__calloc(1, sizeof *q);
  if (q == NULL) return NULL;
  q->r = r;
  q->op = op;
  q->get_cb = g;
  q->done_cb = d;
  q->arg = arg;
  wait_reply(q);
  return q;
}

/* After its hiredis callback (the last one to know the request). */
static void free_req(req *q) {
  int was_first = q->r->waiting == q;
  unwait(q);
  if (was_first) arm_expiry(q->r);
  ac__free(q);
}

/* A reply to a request's command; NULL when the context went. */
static int reply_status(ac_redis_t *r, redisReply *rep) {
  if (rep == NULL) return AC_EIO;
  r->timeouts_in_row = 0;
  if (rep->type == REDIS_REPLY_ERROR) {
    r->st.errors++;
    snprintf(r->st.last_error, sizeof r->st.last_error, "%s", rep->str);
    return AC_EIO;
  }
  return 0;
}

/* One key's reply (of a GET, or an element of an MGET). */
static void get_reply(req *q, redisReply *rep) {
  ac_redis_t *r = q->r;
  int rc = reply_status(r, rep);
  if (rc != 0) {
    deliver(q, r->freeing ? AC_ECANCELED : rc, NULL, 0, 0);
  } else if (rep->type == REDIS_REPLY_NIL) {
    deliver(q, AC_ENOENT, NULL, 0, 0);
  } else if (rep->type != REDIS_REPLY_STRING || rep->len < VALUE_HEAD || rep->str[0] != 'A') {
    r->st.errors++;
    snprintf(r->st.last_error, sizeof r->st.last_error,
             "a key under the prefix holds a value this cache did not write");
    deliver(q, AC_EFORMAT, NULL, 0, 0);
  } else {
    uint64_t ms = 0;
    for (int i = 1; i < VALUE_HEAD; i++) ms = ms << 8 | (unsigned char)rep->str[i];
    double ttl = ms == 0 ? HUGE_VAL : ((double)ms - wall_ms()) / 1e3;
    if (!(ttl > 0)) deliver(q, AC_ENOENT, NULL, 0, 0);
    else deliver(q, 0, rep->str + VALUE_HEAD, rep->len - VALUE_HEAD, ttl);
  }
}

/* The reply to an MGET of a batch of gets (reqs[0..n), a block of its
 * own): element i answers reqs[i]. */
typedef struct {
  size_t n;
  req *reqs[];
} mget;

static void on_mget(redisAsyncContext *c, void *reply, void *privdata) {
  mget *m = privdata;
  redisReply *rep = reply;
  (void)c;
  int whole = rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == m->n;
  for (size_t i = 0; i < m->n; i++) {
    /* An error reply, or one that is not an array of n, answers all. */
    get_reply(m->reqs[i], whole ? rep->element[i] : rep);
    free_req(m->reqs[i]);
  }
  ac__free(m);
}

static void on_done(redisAsyncContext *c, void *reply, void *privdata) {
  req *q = privdata;
  ac_redis_t *r = q->r;
  (void)c;
  int rc = reply_status(r, reply);
  deliver(q, rc != 0 && r->freeing ? AC_ECANCELED : rc, NULL, 0, 0);
  int op = q->op;
  free_req(q);
  if (op == OP_SET) {
    r->inflight--;
    if (r->head < r->nsets && r->cmd != NULL) flush_sets(r, 0);
  }
}

/* The key of a command: prefix + the cache's key, in buf when it fits. */
static char *full_key(ac_redis_t *r, const char *key, size_t len, char *buf, size_t size,
                      size_t *out) {
  *out = r->prefix_len + len;
  char *k = *out <= size ? buf : ac__malloc(*out);
  if (k == NULL) return NULL;
  memcpy(k, r->prefix, r->prefix_len);
  if (len) memcpy(k + r->prefix_len, key, len);
  return k;
}

static void publish(ac_redis_t *r, char kind, const char *key, size_t len) {
  size_t n = 17 + len;
  char buf[256];
  char *m = n <= sizeof buf ? buf : ac__malloc(n);
  if (m == NULL) return;
  memcpy(m, r->id, 16);
  m[16] = kind;
  if (len) memcpy(m + 17, key, len);
  const char *argv[3] = {"PUBLISH", r->channel, m};
  size_t argl[3] = {7, strlen(r->channel), n};
  redisAsyncCommandArgv(r->cmd, NULL, NULL, 3, argv, argl);
  if (m != buf) ac__free(m);
}

static int usable(ac_redis_t *r) {
  if (r->st.state == AC_REDIS_UP && r->cmd != NULL) return 1;
  r->st.errors++; /* refused: the circuit is open */
  return 0;
}

/* Gets are coalesced: those asked for in one turn of the loop go out
 * together as MGETs of up to MGET_MAX keys (a get_many of 1,000 keys is
 * one command, not 1,000), on the next turn. */
static int b_get(ac_backend_t *b, const char *key, size_t len, ac_backend_get_cb cb,
                 void *arg) {
  ac_redis_t *r = (ac_redis_t *)b;
  if (!usable(r)) return AC_EIO;
  if (r->ngets == r->capgets) {
    size_t cap = r->capgets ? 2 * r->capgets : 64;
    pending_get *g = ac__realloc(r->gets, cap * sizeof *g);
    if (g == NULL) return AC_ENOMEM;
    r->gets = g;
    r->capgets = cap;
  }
  size_t klen;
  char *k = full_key(r, key, len, NULL, 0, &klen); /* kept until the MGET goes */
  req *q = k ? new_req(r, OP_GET, cb, NULL, arg) : NULL;
  if (q == NULL) {
    ac__free(k);
    return AC_ENOMEM;
  }
  r->gets[r->ngets++] = (pending_get){q, k, klen};
  if (r->ngets == 1) ac_timer_start(r->flusher, 0, 0);
  return 0;
}

/* Sends the queued gets; a get that cannot be sent fails (AC_EIO) now. */
static void flush_gets(ac_redis_t *r) {
  /* Taken out first: a callback below may queue new gets. */
  pending_get *gets = r->gets;
  size_t n = r->ngets;
  r->gets = NULL;
  r->ngets = r->capgets = 0;
  for (size_t at = 0; at < n; at += MGET_MAX) {
    size_t k = n - at < MGET_MAX ? n - at : MGET_MAX;
    mget *m = ac__malloc(sizeof *m + k * sizeof m->reqs[0]);
    const char **argv = ac__malloc((k + 1) * sizeof *argv);
    size_t *argl = ac__malloc((k + 1) * sizeof *argl);
    int sent = 0;
    if (m != NULL && argv != NULL && argl != NULL && r->cmd != NULL) {
      m->n = k;
      argv[0] = "MGET";
      argl[0] = 4;
      for (size_t i = 0; i < k; i++) {
        m->reqs[i] = gets[at + i].q;
        argv[i + 1] = gets[at + i].key;
        argl[i + 1] = gets[at + i].klen;
      }
      sent = redisAsyncCommandArgv(r->cmd, on_mget, m, (int)k + 1, argv, argl) == REDIS_OK;
    }
    if (!sent) {
      ac__free(m);
      for (size_t i = 0; i < k; i++) {
        deliver(gets[at + i].q, AC_EIO, NULL, 0, 0);
        free_req(gets[at + i].q);
      }
    }
    for (size_t i = 0; i < k; i++) ac__free(gets[at + i].key);
    ac__free(argv);
    ac__free(argl);
  }
  ac__free(gets);
}

static void fail_gets(ac_redis_t *r, int status) {
  pending_get *gets = r->gets; /* taken out: callbacks may queue more */
  size_t n = r->ngets;
  r->gets = NULL;
  r->ngets = r->capgets = 0;
  for (size_t i = 0; i < n; i++) {
    deliver(gets[i].q, status, NULL, 0, 0);
    free_req(gets[i].q);
    ac__free(gets[i].key);
  }
  ac__free(gets);
}

static void on_flush(ac_timer_t *t, void *data) {
  (void)t;
  ac_redis_t *r = data;
  /* With gets to send, every queued set goes first (past the window): a
   * get then reads what this instance has written. */
  if (r->ngets) {
    flush_sets(r, 1);
    flush_gets(r);
  } else {
    flush_sets(r, 0);
  }
}

/* Sends queued sets, in order, each with its request and its message:
 * all of them (`all`: before a delete or a clear, which must come after
 * them), or as many as the window of sets in flight allows (WINDOW: a
 * burst of 100,000 sets must not queue 100,000 commands whose timeouts
 * run while they wait their turn in the socket).  Replies send more. */
static void flush_sets(ac_redis_t *r, int all) {
  if (r->ngets == 0) ac_timer_stop(r->flusher); /* else the gets still need it */
  while (r->head < r->nsets && (all || r->inflight < WINDOW)) {
    pending_set *p = &r->sets[r->head++];
    req *q = r->cmd != NULL ? new_req(r, OP_SET, NULL, p->cb, p->arg) : NULL;
    int sent = 0;
    if (q != NULL) {
      char px[32];
      int pl = snprintf(px, sizeof px, "%lld", p->pxms);
      const char *argv[5] = {"SET", p->key, p->value, "PX", px};
      size_t argl[5] = {3, p->klen, p->vlen, 2, (size_t)pl};
      if (redisAsyncCommandArgv(r->cmd, on_done, q, p->pxms ? 5 : 3, argv, argl) == REDIS_OK) {
        sent = 1;
        r->inflight++;
        publish(r, 'k', p->key + p->ckey, p->cklen);
      } else {
        free_req(q);
      }
    }
    ac__free(p->key);
    if (!sent) p->cb(p->arg, AC_EIO);
  }
  if (r->head == r->nsets) r->head = r->nsets = 0; /* keep the memory */
}

static void fail_sets(ac_redis_t *r, int status) {
  while (r->head < r->nsets) {
    pending_set *p = &r->sets[r->head++];
    ac__free(p->key);
    p->cb(p->arg, status);
  }
  r->head = r->nsets = 0;
  if (r->flusher) ac_timer_stop(r->flusher);
}

static int b_set(ac_backend_t *b, const char *key, size_t len, const char *value,
                 size_t vlen, double ttl, ac_backend_done_cb cb, void *arg) {
  ac_redis_t *r = (ac_redis_t *)b;
  if (!usable(r)) return AC_EIO;
  if (r->nsets == r->capsets && r->head > 0) { /* room at the front */
    memmove(r->sets, r->sets + r->head, (r->nsets - r->head) * sizeof *r->sets);
    r->nsets -= r->head;
    r->head = 0;
  }
  if (r->nsets == r->capsets) {
    size_t cap = r->capsets ? 2 * r->capsets : 64;
    pending_set *s = ac__realloc(r->sets, cap * sizeof *s);
    if (s == NULL) return AC_ENOMEM;
    r->sets = s;
    r->capsets = cap;
  }
  size_t klen = r->prefix_len + len, n = VALUE_HEAD + vlen;
  char *block = ac__malloc(klen + n);
  if (block == NULL) return AC_ENOMEM;
  memcpy(block, r->prefix, r->prefix_len);
  if (len) memcpy(block + r->prefix_len, key, len);
  char *v = block + klen;
  int forever = !(ttl < 1e15);
  uint64_t ms = forever ? 0 : (uint64_t)(wall_ms() + ttl * 1e3);
  v[0] = 'A';
  for (int i = 8; i >= 1; i--, ms >>= 8) v[i] = (char)(ms & 0xff);
  if (vlen) memcpy(v + VALUE_HEAD, value, vlen);
  long long pxms = forever ? 0 : (long long)ceil(ttl * 1e3);
  if (!forever && pxms < 1) pxms = 1;
  pending_set *p = &r->sets[r->nsets++];
  *p = (pending_set){block, v, klen, n, r->prefix_len, len, pxms, cb, arg};
  if (r->nsets - r->head == 1 && r->inflight < WINDOW)
    ac_timer_start(r->flusher, 0, 0); /* the next turn of the loop */
  return 0;
}

static int b_del(ac_backend_t *b, const char *key, size_t len, ac_backend_done_cb cb,
                 void *arg) {
  ac_redis_t *r = (ac_redis_t *)b;
  if (!usable(r)) return AC_EIO;
  if (r->nsets) flush_sets(r, 1); /* after the sets asked for before */
  char buf[256];
  size_t klen;
  char *k = full_key(r, key, len, buf, sizeof buf, &klen);
  req *q = k ? new_req(r, OP_DEL, NULL, cb, arg) : NULL;
  int rc = AC_ENOMEM;
  if (q != NULL) {
    const char *argv[2] = {"DEL", k};
    size_t argl[2] = {3, klen};
    if (redisAsyncCommandArgv(r->cmd, on_done, q, 2, argv, argl) == REDIS_OK) {
      rc = 0;
      publish(r, 'k', key, len);
    } else {
      free_req(q);
      rc = AC_EIO; /* refused by hiredis, not out of our memory */
    }
  }
  if (k != buf) ac__free(k);
  return rc;
}

/* clear: SCAN pages of prefix*, each page's keys UNLINKed, until the
 * cursor is back at 0; then the message that everything changed. */
static int scan_from(ac_redis_t *r, req *q, const char *cursor);

static void on_scan(redisAsyncContext *c, void *reply, void *privdata) {
  req *q = privdata;
  ac_redis_t *r = q->r;
  redisReply *rep = reply;
  (void)c;
  int rc = reply_status(r, rep);
  if (rc == 0 && (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
                  rep->element[0]->type != REDIS_REPLY_STRING ||
                  rep->element[1]->type != REDIS_REPLY_ARRAY))
    rc = AC_EIO;
  if (rc != 0 || q->delivered || r->cmd == NULL) {
    deliver(q, rc != 0 && r->freeing ? AC_ECANCELED : rc != 0 ? rc : AC_EIO, NULL, 0, 0);
    free_req(q);
    return;
  }
  redisReply *keys = rep->element[1];
  if (keys->elements > 0) {
    size_t n = keys->elements + 1;
    const char **argv = ac__malloc(n * sizeof *argv);
    size_t *argl = ac__malloc(n * sizeof *argl);
    if (argv != NULL && argl != NULL) {
      argv[0] = "UNLINK";
      argl[0] = 6;
      for (size_t i = 0; i < keys->elements; i++) {
        argv[i + 1] = keys->element[i]->str;
        argl[i + 1] = keys->element[i]->len;
      }
      redisAsyncCommandArgv(r->cmd, NULL, NULL, (int)n, argv, argl);
    }
    ac__free(argv);
    ac__free(argl);
  }
  if (strcmp(rep->element[0]->str, "0") == 0) {
    publish(r, 'c', NULL, 0);
    deliver(q, 0, NULL, 0, 0);
    free_req(q);
    return;
  }
  wait_reply(q); /* each page its own time */
  if (scan_from(r, q, rep->element[0]->str) != 0) {
    deliver(q, AC_EIO, NULL, 0, 0);
    free_req(q);
  }
}

static int scan_from(ac_redis_t *r, req *q, const char *cursor) {
  const char *argv[6] = {"SCAN", cursor, "MATCH", r->pattern, "COUNT", SCAN_COUNT};
  size_t argl[6] = {4, strlen(cursor), 5, strlen(r->pattern), 5, strlen(SCAN_COUNT)};
  return redisAsyncCommandArgv(r->cmd, on_scan, q, 6, argv, argl) == REDIS_OK ? 0 : AC_EIO;
}

static int b_clear(ac_backend_t *b, ac_backend_done_cb cb, void *arg) {
  ac_redis_t *r = (ac_redis_t *)b;
  if (!usable(r)) return AC_EIO;
  if (r->nsets) flush_sets(r, 1); /* after the sets asked for before */
  req *q = new_req(r, OP_CLEAR, NULL, cb, arg);
  if (q == NULL) return AC_ENOMEM;
  if (scan_from(r, q, "0") != 0) {
    free_req(q);
    return AC_EIO;
  }
  return 0;
}

static void b_free(ac_backend_t *b) {
  ac_redis_t *r = (ac_redis_t *)b;
  r->freeing = 1;
  fail_sets(r, AC_ECANCELED);
  fail_gets(r, AC_ECANCELED);
  ac__free(r->sets);
  ac__free(r->gets);
  r->sets = NULL;
  r->gets = NULL;
  /* Pending commands' callbacks run now, with NULL: AC_ECANCELED (the
   * expiry timer is still there for them to stop). */
  drop_context(&r->cmd);
  drop_context(&r->sub);
  ac_timer_free(r->retry);
  ac_timer_free(r->connecting);
  ac_timer_free(r->flusher);
  ac_timer_free(r->expiry);
  ac__free(r->host);
  ac__free(r->unix_path);
  ac__free(r->username);
  ac__free(r->password);
  ac__free(r->prefix);
  ac__free(r->channel);
  ac__free(r->pattern);
  ac__free(r);
}

static const ac_backend_vtable_t REDIS_VT = {"redis", b_get, b_set, b_del, b_clear, b_free};

/* ---- creating ----------------------------------------------------------------- */

/* prefix* for SCAN MATCH, with the glob's special characters escaped. */
static char *match_pattern(const char *prefix) {
  size_t n = strlen(prefix);
  char *p = ac__malloc(2 * n + 2);
  if (p == NULL) return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (strchr("*?[]\\", prefix[i])) p[o++] = '\\';
    p[o++] = prefix[i];
  }
  p[o++] = '*';
  p[o] = '\0';
  return p;
}

ac_backend_t *ac_redis_new(const ac_redis_options_t *o, int *err) {
  *err = AC_EINVAL;
  if (o == NULL || o->sched == NULL || o->port < 0 || o->port > 65535 || o->db < 0 ||
      o->connect_timeout < 0 || o->command_timeout < 0 || isnan(o->connect_timeout) ||
      isnan(o->command_timeout))
    return NULL;
  *err = AC_ENOMEM;
  ac_redis_t *r = ac__calloc(1, sizeof *r);
  if (r == NULL) return NULL;
  r->base.vt = &REDIS_VT;
  r->sched = o->sched;
  r->host = dup_str(o->host ? o->host : "127.0.0.1");
  r->unix_path = dup_str(o->unix_path);
  r->username = dup_str(o->username);
  r->password = dup_str(o->password);
  r->prefix = dup_str(o->prefix ? o->prefix : "ac:");
  r->port = o->port ? o->port : 6379;
  r->db = o->db;
  r->connect_timeout = o->connect_timeout > 0 ? o->connect_timeout : 1;
  r->command_timeout = o->command_timeout > 0 ? o->command_timeout : 0.25;
  r->invalidated = o->invalidated;
  r->event = o->event;
  r->ud = o->ud;
  r->backoff = BACKOFF_FIRST;
  r->retry = ac_timer_new(r->sched, on_retry, r);
  r->connecting = ac_timer_new(r->sched, on_connect_timeout, r);
  r->flusher = ac_timer_new(r->sched, on_flush, r);
  r->expiry = ac_timer_new(r->sched, on_expiry, r);
  if (r->prefix != NULL) {
    r->prefix_len = strlen(r->prefix);
    r->channel = ac__malloc(r->prefix_len + 11);
    if (r->channel != NULL) snprintf(r->channel, r->prefix_len + 11, "%sinvalidate", r->prefix);
    r->pattern = match_pattern(r->prefix);
  }
  if (r->host == NULL || r->prefix == NULL || r->channel == NULL || r->pattern == NULL ||
      r->retry == NULL || r->connecting == NULL || r->flusher == NULL || r->expiry == NULL || (o->unix_path && !r->unix_path) ||
      (o->username && !r->username) || (o->password && !r->password)) {
    b_free(&r->base);
    return NULL;
  }
  /* Neither timer keeps a script alive: a cache with a Redis backend that
   * is down does not stop `acache script.lua` from ending. */
  ac_timer_unref(r->retry);
  ac_timer_unref(r->connecting);
  uint64_t rnd = 0;
  if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
    rnd = (uint64_t)(uintptr_t)r ^ (uint64_t)wall_ms();
  snprintf(r->id, sizeof r->id, "%016llx", (unsigned long long)rnd);
  *err = 0;
  start_connect(r);
  return &r->base;
}

int ac_redis_stats(const ac_backend_t *b, ac_redis_stats_t *out) {
  if (b == NULL || b->vt != &REDIS_VT) return AC_EINVAL;
  *out = ((const ac_redis_t *)b)->st;
  return 0;
}
