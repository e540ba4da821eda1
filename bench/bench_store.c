/* bench_store: the store (runtime/store.c) measured directly, without Lua.
 *
 *   bench_store [--iterations N] [--json FILE]
 *
 * Time: each figure runs N operations in batches of BATCH between two
 * readings of CLOCK_MONOTONIC and reports the median of the batch means
 * (ns/op), after warm-up batches that are not kept.  Keys are formatted
 * into arrays before any timing, so no figure pays for snprintf.
 *
 * Memory: glibc's mallinfo2() (bytes in use in the arenas, uordblks, plus
 * mmapped blocks, hblkhd) before and after filling a store of maxsize
 * 100,000 with keys of one length; the difference over the entries, minus
 * the key length, is the real overhead per entry, malloc's own headers
 * included.  Lengths 8 and 16 fit inside an entry; 32 and 64 are
 * allocated out of line. */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/hash.h" /* ac__hash: the hash alone, for context */
#include "ac_store.h"

#define BATCH 1000
#define HOT_KEYS 1000          /* resident keys of the hit figure (= BATCH) */
#define LARGE_KEYS 100000      /* the hit figure again on a store this large */
#define KEY_STRIDE 16          /* room per precomputed key ("key:123456" fits) */
#define MEM_ENTRIES 100000
#define TARGET_BYTES 64        /* bytes of overhead per entry */

typedef struct {
  const char *name;
  double median, min, p90, mean;
  int batches;
} figure;

typedef struct {
  int len;
  double per_entry, overhead, reported_per_entry;
  size_t bytes;
} memfig;

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void summarize(figure *f, double *means, int n) {
  qsort(means, (size_t)n, sizeof *means, cmp_double);
  double sum = 0;
  for (int i = 0; i < n; i++) sum += means[i];
  f->median = n % 2 ? means[n / 2] : (means[n / 2 - 1] + means[n / 2]) / 2;
  f->min = means[0];
  int p = (int)(0.9 * n + 0.999999);
  f->p90 = means[(p < 1 ? 1 : p) - 1];
  f->mean = sum / n;
  f->batches = n;
}

/* ---- keys ----------------------------------------------------------------- */

typedef struct {
  char *bytes; /* key i at bytes + i * KEY_STRIDE */
  uint32_t *len;
  size_t n;
} keyset;

static keyset keys_new(const char *prefix, size_t n) {
  keyset k = {malloc(n * KEY_STRIDE), malloc(n * sizeof(uint32_t)), n};
  if (k.bytes == NULL || k.len == NULL) {
    fprintf(stderr, "bench_store: out of memory\n");
    exit(1);
  }
  for (size_t i = 0; i < n; i++) {
    int len = snprintf(k.bytes + i * KEY_STRIDE, KEY_STRIDE, "%s%zu", prefix, i + 1);
    k.len[i] = (uint32_t)len;
  }
  return k;
}

static void keys_free(keyset *k) {
  free(k->bytes);
  free(k->len);
}

#define KEY(ks, i) ((ks)->bytes + (size_t)(i) * KEY_STRIDE), (ks)->len[i]

static ac_store_t *store_new(uint32_t maxsize) {
  ac_store_options_t o = {.maxsize = maxsize};
  int err;
  ac_store_t *s = ac_store_new(&o, &err);
  if (s == NULL) {
    fprintf(stderr, "bench_store: ac_store_new failed (%d)\n", err);
    exit(1);
  }
  return s;
}

static volatile uint64_t sink; /* keeps results observable */

/* ---- timed figures ------------------------------------------------------------ */

/* One batch of an operation; b is the batch number (from 0), counting on
 * from the warm-up batches so that "new key" figures never repeat a key. */
typedef void (*batch_fn)(void *ctx, long b);

static void measure(figure *f, const char *name, long warm, long batches,
                    batch_fn fn, void *ctx) {
  double *means = malloc((size_t)batches * sizeof *means);
  if (means == NULL) exit(1);
  for (long b = 0; b < warm; b++) fn(ctx, b);
  for (long b = 0; b < batches; b++) {
    double t0 = now_ns();
    fn(ctx, warm + b);
    means[b] = (now_ns() - t0) / BATCH;
  }
  f->name = name;
  summarize(f, means, (int)batches);
  free(means);
}

typedef struct {
  ac_store_t *s;
  keyset *k;
  const uint32_t *order; /* optional: key index per op */
  size_t norder;
} hit_ctx;

static void batch_get(void *p, long b) {
  hit_ctx *c = p;
  uint64_t acc = 0;
  (void)b;
  for (int j = 0; j < BATCH; j++) acc += ac_store_get(c->s, 1, KEY(c->k, j));
  sink += acc;
}

static void batch_get_order(void *p, long b) {
  hit_ctx *c = p;
  uint64_t acc = 0;
  size_t base = ((size_t)b * BATCH) % c->norder;
  for (int j = 0; j < BATCH; j++) {
    uint32_t i = c->order[(base + (size_t)j) % c->norder];
    acc += ac_store_get(c->s, 1, KEY(c->k, i));
  }
  sink += acc;
}

static void batch_hash(void *p, long b) {
  hit_ctx *c = p;
  uint64_t acc = 0;
  (void)b;
  for (int j = 0; j < BATCH; j++) acc += ac__hash(1, KEY(c->k, j));
  sink += acc;
}

/* Distinct new keys from c->k, BATCH per batch (each evicts when full). */
static void batch_set_new(void *p, long b) {
  hit_ctx *c = p;
  uint64_t acc = 0;
  size_t base = (size_t)b * BATCH;
  for (int j = 0; j < BATCH; j++) {
    int is_new;
    acc += (uint64_t)ac_store_set(c->s, 1, KEY(c->k, base + (size_t)j), 0, &is_new);
  }
  sink += acc;
}

static void batch_get_miss(void *p, long b) {
  hit_ctx *c = p;
  uint64_t acc = 0;
  size_t base = ((size_t)b * BATCH) % (c->k->n - BATCH);
  for (int j = 0; j < BATCH; j++) acc += ac_store_get(c->s, 1, KEY(c->k, base + (size_t)j));
  sink += acc;
}

/* ---- memory ---------------------------------------------------------------- */

static size_t heap_in_use(void) {
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

/* Unique keys of exactly len bytes: a zero-padded number, then filler. */
static void mem_key(char *buf, int len, uint32_t i) {
  char num[16];
  int n = snprintf(num, sizeof num, "%08u", i);
  memset(buf, 'x', (size_t)len);
  memcpy(buf, num, (size_t)(n < len ? n : len));
}

static void measure_memory(memfig *m, int len) {
  char key[64];
  size_t before = heap_in_use();
  ac_store_t *s = store_new(MEM_ENTRIES);
  for (uint32_t i = 0; i < MEM_ENTRIES; i++) {
    mem_key(key, len, i);
    int is_new;
    if (ac_store_set(s, 0, key, (size_t)len, 0, &is_new) <= 0 || !is_new) {
      fprintf(stderr, "bench_store: memory fill failed at %u\n", i);
      exit(1);
    }
  }
  size_t after = heap_in_use();
  ac_store_stats_t st;
  ac_store_stats(s, &st);
  if (st.size != MEM_ENTRIES) exit(1);
  m->len = len;
  m->bytes = after - before;
  m->per_entry = (double)m->bytes / MEM_ENTRIES;
  m->overhead = m->per_entry - len;
  m->reported_per_entry = (double)ac_store_memory(s) / MEM_ENTRIES;
  ac_store_free(s);
}

/* ---- output ---------------------------------------------------------------- */

static void json_figure(FILE *f, const figure *x, int last) {
  fprintf(f,
          "    \"%s\": {\"median_ns\": %.3f, \"min_ns\": %.3f, \"p90_ns\": %.3f, "
          "\"mean_ns\": %.3f, \"batches\": %d, \"batch\": %d}%s\n",
          x->name, x->median, x->min, x->p90, x->mean, x->batches, BATCH, last ? "" : ",");
}

static int usage(FILE *to, int status) {
  fprintf(to,
          "usage: bench_store [--iterations N] [--json FILE]\n"
          "  --iterations N  operations per figure (default 1000000, at least %d)\n"
          "  --json FILE     also write the figures as JSON to FILE\n",
          BATCH);
  return status;
}

int main(int argc, char **argv) {
  long iterations = 1000000;
  const char *json = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
      char *end;
      iterations = strtol(argv[++i], &end, 10);
      if (*end != '\0' || iterations < BATCH) return usage(stderr, 2);
    } else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
      json = argv[++i];
    } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      return usage(stdout, 0);
    } else {
      fprintf(stderr, "bench_store: unknown argument '%s'\n", argv[i]);
      return usage(stderr, 2);
    }
  }
  long batches = iterations / BATCH;
  long warm = batches / 10 > 5 ? batches / 10 : 5;

  /* Memory first, on a heap nothing else has used yet. */
  static const int lens[] = {8, 16, 32, 64};
  enum { NLENS = sizeof lens / sizeof lens[0] };
  memfig mem[NLENS];
  for (int i = 0; i < NLENS; i++) measure_memory(&mem[i], lens[i]);

  figure fig[7];
  int nfig = 0;

  keyset hot = keys_new("key:", HOT_KEYS);
  ac_store_t *s = store_new(HOT_KEYS);
  for (size_t i = 0; i < hot.n; i++) ac_store_set(s, 1, KEY(&hot, i), 0, NULL);
  hit_ctx hc = {s, &hot, NULL, 0};
  for (size_t i = 0; i < hot.n; i++)
    if (ac_store_get(s, 1, KEY(&hot, i)) == 0) return fprintf(stderr, "hit fixture\n"), 1;
  measure(&fig[nfig++], "get_hit_1000", warm, batches, batch_get, &hc);
  measure(&fig[nfig++], "hash_only", warm, batches, batch_hash, &hc);

  /* Misses: absent keys on the same store. */
  keyset absent = keys_new("nokey:", HOT_KEYS * 10);
  hit_ctx mc = {s, &absent, NULL, 0};
  measure(&fig[nfig++], "get_miss", warm, batches, batch_get_miss, &mc);

  /* Set of a new key into a full store: every set evicts the LRU entry. */
  keyset fresh = keys_new("new:", (size_t)(warm + batches) * BATCH);
  hit_ctx sc = {s, &fresh, NULL, 0};
  measure(&fig[nfig++], "set_new_evict", warm, batches, batch_set_new, &sc);
  ac_store_stats_t st;
  ac_store_stats(s, &st);
  if (st.evictions != (uint64_t)(warm + batches) * BATCH) {
    fprintf(stderr, "bench_store: expected every set to evict\n");
    return 1;
  }
  ac_store_free(s);

  /* Set of a new key into a store with room: it grows from empty (slab
   * and buckets doubling, fresh pages), never evicts. */
  s = store_new((uint32_t)fresh.n);
  sc.s = s;
  measure(&fig[nfig++], "set_new_no_evict", warm, batches, batch_set_new, &sc);
  ac_store_free(s);

  /* Hits on a large store in a shuffled order: the entries no longer fit
   * in the CPU caches, so this is closer to a cold hit. */
  keyset large = keys_new("key:", LARGE_KEYS);
  s = store_new(LARGE_KEYS);
  for (size_t i = 0; i < large.n; i++) ac_store_set(s, 1, KEY(&large, i), 0, NULL);
  uint32_t *order = malloc(LARGE_KEYS * sizeof *order);
  if (order == NULL) return 1;
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (uint32_t i = 0; i < LARGE_KEYS; i++) order[i] = i;
  for (uint32_t i = LARGE_KEYS - 1; i > 0; i--) { /* Fisher-Yates, fixed LCG */
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    uint32_t j = (uint32_t)((x >> 33) % (i + 1));
    uint32_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  hit_ctx lc = {s, &large, order, LARGE_KEYS};
  measure(&fig[nfig++], "get_hit_100000_shuffled", warm, batches, batch_get_order, &lc);
  ac_store_free(s);
  free(order);

  printf("async-cache store benchmark (C, no Lua)\n");
  printf("%ld operations per figure in batches of %d, CLOCK_MONOTONIC; each figure is the\n"
         "MEDIAN of the batch means (ns/op) after %ld warm-up batches.\n\n",
         iterations, BATCH, warm);
  static const char *labels[] = {
      "ac_store_get hit, 1000 resident keys \"key:N\", rotating",
      "  of which ac__hash alone (same keys)",
      "ac_store_get miss (absent keys)",
      "ac_store_set new key into a full store (evicts LRU)",
      "ac_store_set new key, store growing from empty",
      "ac_store_get hit, 100000 keys, shuffled order",
  };
  for (int i = 0; i < nfig; i++)
    printf("  %-56s %8.1f ns/op   (min %.1f, p90 %.1f)\n", labels[i], fig[i].median,
           fig[i].min, fig[i].p90);

  printf("\nMemory per entry, store of maxsize %d filled (mallinfo2: uordblks + hblkhd)\n",
         MEM_ENTRIES);
  printf("  %-8s %-12s %12s %14s %16s   %s\n", "key len", "key storage", "bytes/entry",
         "minus key len", "store_memory()", "target");
  int pass = 0;
  for (int i = 0; i < NLENS; i++) {
    int ok = mem[i].overhead <= TARGET_BYTES;
    pass += ok;
    printf("  %-8d %-12s %12.1f %14.1f %16.1f   <= %d B  %s\n", mem[i].len,
           mem[i].len <= 18 ? "inline" : "out of line", mem[i].per_entry, mem[i].overhead,
           mem[i].reported_per_entry, TARGET_BYTES, ok ? "PASS" : "MISS");
  }
  printf("  (store_memory(): what ac_store_memory() reports per entry, for comparison)\n");
  printf("\n%d of %d memory targets met\n", pass, NLENS);

  if (json != NULL) {
    FILE *f = fopen(json, "w");
    if (f == NULL) {
      perror(json);
      return 1;
    }
    fprintf(f, "{\n  \"iterations\": %ld,\n  \"batch\": %d,\n  \"warmup_batches\": %ld,\n",
            iterations, BATCH, warm);
    fprintf(f, "  \"method\": \"median over batches of the batch mean (ns/op), CLOCK_MONOTONIC\",\n");
    fprintf(f, "  \"time\": {\n");
    for (int i = 0; i < nfig; i++) json_figure(f, &fig[i], i == nfig - 1);
    fprintf(f, "  },\n  \"memory\": [\n");
    for (int i = 0; i < NLENS; i++)
      fprintf(f,
              "    {\"key_len\": %d, \"inline\": %s, \"entries\": %d, \"heap_bytes\": %zu, "
              "\"bytes_per_entry\": %.3f, \"overhead_per_entry\": %.3f, "
              "\"store_memory_per_entry\": %.3f, \"target\": %d, \"pass\": %s}%s\n",
              mem[i].len, mem[i].len <= 18 ? "true" : "false", MEM_ENTRIES, mem[i].bytes,
              mem[i].per_entry, mem[i].overhead, mem[i].reported_per_entry, TARGET_BYTES,
              mem[i].overhead <= TARGET_BYTES ? "true" : "false", i == NLENS - 1 ? "" : ",");
    fprintf(f, "  ]\n}\n");
    fclose(f);
    printf("JSON written to %s\n", json);
  }
  keys_free(&hot);
  keys_free(&absent);
  keys_free(&fresh);
  keys_free(&large);
  return 0;
}
