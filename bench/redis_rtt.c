/* The floor for an L2 hit: sequential GET round trips with hiredis's
 * async API on a libuv loop, in C, against the server bench_redis.lua
 * starts.  Prints the median and p99 in microseconds.
 *
 *   ./build/redis_rtt PORT [COUNT]
 */
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

static double *samples;
static int count, done;
static uint64_t started;

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void on_reply(redisAsyncContext *c, void *reply, void *privdata) {
  (void)privdata;
  if (reply == NULL) return;
  samples[done++] = (double)(uv_hrtime() - started) / 1e3;
  if (done == count) {
    redisAsyncDisconnect(c);
    return;
  }
  started = uv_hrtime();
  redisAsyncCommand(c, on_reply, NULL, "GET bench:rtt");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: redis_rtt PORT [COUNT]\n");
    return 2;
  }
  int port = atoi(argv[1]);
  count = argc > 2 ? atoi(argv[2]) : 20000;
  samples = malloc(sizeof *samples * (size_t)count);
  uv_loop_t *loop = uv_default_loop();
  redisAsyncContext *c = redisAsyncConnect("127.0.0.1", port);
  if (samples == NULL || c == NULL || c->err) {
    fprintf(stderr, "redis_rtt: cannot connect\n");
    return 1;
  }
  redisLibuvAttach(c, loop);
  redisAsyncCommand(c, NULL, NULL, "SET bench:rtt %b", "0123456789012345678901234567890123456789", (size_t)40);
  started = uv_hrtime();
  redisAsyncCommand(c, on_reply, NULL, "GET bench:rtt");
  uv_run(loop, UV_RUN_DEFAULT);
  qsort(samples, (size_t)done, sizeof *samples, cmp);
  printf("%.2f %.2f %d\n", samples[done / 2], samples[(size_t)(done * 0.99)], done);
  free(samples);
  return 0;
}
