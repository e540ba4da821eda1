/* The walker over Lua values (see lwalk.h).
 *
 * A recursive descent over the value, with the tables on the current path
 * in w->path (cycle detection: a linear scan, the path being at most
 * LWALK_MAX_DEPTH long).  A table is read in one or two lua_next passes:
 * the first counts its pairs and tells an array (keys exactly 1..n) from a
 * map; an array is then read with lua_rawgeti, an unsorted map with a
 * second lua_next pass that visits each pair as it comes.  A sorted map
 * of two pairs or more is gathered instead: the second pass leaves every
 * key and value on the stack (2n slots above the walk's base) and notes a
 * sort entry for each key; the entries are sorted (no allocation for a
 * few pairs, ac__malloc beyond), then the pairs are visited from their
 * slots in that order.  Table keys are sorted by a hash of their contents,
 * computed by walking them with this same walker (same path: a key that
 * leads back to the table is a cycle) and an internal hashing visitor.
 *
 * Invariant of every function here: the stack is as it found it when it
 * returns, whatever it returns, and nothing it calls raises (lua_next on
 * keys it did not touch, lua_checkstack, pushes within checked space, raw
 * reads): so errors are returned, and scratch memory is freed on every
 * path. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "lkey.h"
#include "lwalk.h"

/* Entries sorted on the C stack; bigger maps sort in ac__malloc memory. */
#define SMALL_MAP 8
/* Unsorted tables of up to this many pairs are read in one lua_next pass
 * (gathered on the stack); bigger ones in two (count, then visit). */
#define GATHER_MAX 64

typedef struct {
  const void *p; /* string bytes, or the address (identity, tie-break) */
  union {
    lua_Integer i; /* integer keys, booleans */
    lua_Number d;  /* float keys */
    size_t len;    /* string keys */
    uint64_t h;    /* table keys: hash of their contents */
  } u;
  uint64_t pre; /* strings: their first 8 bytes, big-endian, zero-padded */
  int type;  /* LUA_T* of the key */
  int isint; /* numbers: u.i rather than u.d */
  int slot;  /* stack index of the key; its value is at slot + 1 */
} entry;

static int visit(lwalk *w, int idx);
static int visit_table(lwalk *w, int t);

void ac__lwalk_init(lwalk *w, lua_State *L, const lwalk_visitor *v, void *ud,
                int flags) {
  w->L = L;
  w->v = v;
  w->ud = ud;
  w->flags = flags;
  w->depth = 0;
  w->bad_type = LUA_TNONE;
  w->opaque = 0;
}

int ac__lwalk_value(lwalk *w, int idx) {
  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(w->L) + idx + 1;
  return visit(w, idx);
}

const char *ac__lwalk_strerror(int rc) {
  switch (rc) {
    case LWALK_OK: return "no error";
    case LWALK_ECYCLE: return "cyclic table";
    case LWALK_EDEPTH: return "table nested too deeply";
    case LWALK_ETOOBIG: return "table too large";
    case LWALK_EOPAQUE: return "value cannot be encoded (function, userdata or thread)";
    case LWALK_ENOMEM: return "not enough memory";
    default: return "walk stopped by its visitor";
  }
}

/* ---- the hash of a key table's contents ---------------------------------
 * FNV-1a over a tagged stream of what a sorted, canonical walk visits: the
 * same for equal contents, in every process. */

static void mix(uint64_t *h, int tag, const void *p, size_t len) {
  const unsigned char *s = p;
  uint64_t x = (*h ^ (unsigned char)tag) * 0x100000001b3u;
  for (size_t i = 0; i < len; i++) x = (x ^ s[i]) * 0x100000001b3u;
  *h = x;
}

static int h_nil(void *ud) { mix(ud, 'N', NULL, 0); return 0; }
static int h_boolean(void *ud, int b) { mix(ud, b ? 'T' : 'F', NULL, 0); return 0; }
static int h_integer(void *ud, lua_Integer i) { mix(ud, 'I', &i, sizeof i); return 0; }
static int h_number(void *ud, lua_Number n) { mix(ud, 'D', &n, sizeof n); return 0; }
static int h_array(void *ud, size_t n) { mix(ud, '[', &n, sizeof n); return 0; }
static int h_map(void *ud, size_t n) { mix(ud, '{', &n, sizeof n); return 0; }
static int h_end(void *ud) { mix(ud, '}', NULL, 0); return 0; }

static int h_string(void *ud, const char *s, size_t len) {
  mix(ud, 'S', &len, sizeof len);
  mix(ud, 0, s, len);
  return 0;
}

static int h_opaque(void *ud, int type, const void *p) {
  mix(ud, 'R', &p, sizeof p);
  mix(ud, type, NULL, 0);
  return 0;
}

static const lwalk_visitor hasher = {h_nil, h_boolean, h_integer, h_number,
                                     h_string, h_array, h_map, h_end,
                                     h_opaque};

/* The hash of the table at t, walked as a part of the current walk (its
 * path, its depth), but sorted and canonical whatever the client asked. */
static int hash_table(lwalk *w, int t, uint64_t *h) {
  const lwalk_visitor *v = w->v;
  void *ud = w->ud;
  int flags = w->flags;
  size_t opaque = w->opaque; /* counted when the key is visited for real */
  *h = 0xcbf29ce484222325u;
  w->v = &hasher;
  w->ud = h;
  w->flags = LWALK_SORTED | LWALK_CANONICAL | (flags & LWALK_DATA);
  int rc = visit_table(w, t);
  w->v = v;
  w->ud = ud;
  w->flags = flags;
  w->opaque = opaque;
  return rc;
}

/* ---- sorting map keys ------------------------------------------------------- */

/* The sign of i - f, for a float key f (never NaN; never integral inside
 * the int64 range, as Lua stores those as integers). */
static int cmp_int_float(lua_Integer i, lua_Number f) {
  if (f >= 9223372036854775808.0) return -1;
  if (f < -9223372036854775808.0) return 1;
  lua_Integer t = (lua_Integer)f; /* truncated: exact, in range */
  if (i != t) return i < t ? -1 : 1;
  lua_Number ft = (lua_Number)t;
  return f > ft ? -1 : f < ft ? 1 : 0;
}

static int cmp_number(const entry *a, const entry *b) {
  if (a->isint && b->isint) return (a->u.i > b->u.i) - (a->u.i < b->u.i);
  if (a->isint) return cmp_int_float(a->u.i, b->u.d);
  if (b->isint) return -cmp_int_float(b->u.i, a->u.d);
  return (a->u.d > b->u.d) - (a->u.d < b->u.d);
}

static int cmp_entry(const entry *a, const entry *b) {
  if (a->type != b->type) return a->type < b->type ? -1 : 1;
  int c = 0;
  switch (a->type) {
    case LUA_TBOOLEAN:
      return (a->u.i > b->u.i) - (a->u.i < b->u.i);
    case LUA_TNUMBER:
      return cmp_number(a, b);
    case LUA_TSTRING: { /* most keys differ in their first 8 bytes */
      if (a->pre != b->pre) return a->pre < b->pre ? -1 : 1;
      size_t n = a->u.len < b->u.len ? a->u.len : b->u.len;
      if (n > 8 && (c = memcmp((const char *)a->p + 8, (const char *)b->p + 8, n - 8)) != 0)
        return c;
      return (a->u.len > b->u.len) - (a->u.len < b->u.len);
    }
    case LUA_TTABLE:
      if (a->u.h != b->u.h) return a->u.h < b->u.h ? -1 : 1;
      break; /* equal hashes: by address, below */
    default:
      break;
  }
  uintptr_t x = (uintptr_t)a->p, y = (uintptr_t)b->p;
  return (x > y) - (x < y);
}

static void insertion_sort(entry *e, size_t n) {
  for (size_t i = 1; i < n; i++) {
    entry x = e[i];
    size_t j = i;
    for (; j > 0 && cmp_entry(&e[j - 1], &x) > 0; j--) e[j] = e[j - 1];
    e[j] = x;
  }
}

/* Sorts e[0..n) with tmp[0..n) as scratch: a merge sort over insertion
 * sorted runs (fewer comparisons than a heapsort; the C library's qsort
 * may call malloc, outside the allocator hook). */
static void merge_sort(entry *e, entry *tmp, size_t n) {
  if (n <= 12) {
    insertion_sort(e, n);
    return;
  }
  size_t h = n / 2;
  merge_sort(e, tmp, h);
  merge_sort(e + h, tmp, n - h);
  if (cmp_entry(&e[h - 1], &e[h]) <= 0) return; /* already in order */
  memcpy(tmp, e, h * sizeof *e);
  size_t i = 0, j = h, o = 0;
  while (i < h && j < n) e[o++] = cmp_entry(&e[j], &tmp[i]) < 0 ? e[j++] : tmp[i++];
  while (i < h) e[o++] = tmp[i++];
}

/* Describes the key at slot for sorting; a table key gets its hash. */
static int describe_key(lwalk *w, int slot, entry *e) {
  lua_State *L = w->L;
  e->type = lua_type(L, slot);
  e->slot = slot;
  e->isint = 0;
  e->p = NULL;
  switch (e->type) {
    case LUA_TBOOLEAN:
      e->u.i = lua_toboolean(L, slot);
      return 0;
    case LUA_TNUMBER:
      e->isint = lua_isinteger(L, slot);
      if (e->isint) e->u.i = lua_tointeger(L, slot);
      else e->u.d = lua_tonumber(L, slot);
      return 0;
    case LUA_TSTRING: {
      const char *str = lua_tolstring(L, slot, &e->u.len);
      size_t m = e->u.len < 8 ? e->u.len : 8;
      e->p = str;
      e->pre = 0;
      for (size_t i = 0; i < m; i++)
        e->pre |= (uint64_t)(unsigned char)str[i] << (56 - 8 * i);
      return 0;
    }
    case LUA_TTABLE:
      e->p = lua_topointer(L, slot);
      return hash_table(w, slot, &e->u.h);
    default:
      e->p = lua_topointer(L, slot);
      return 0;
  }
}

/* Visits a sorted key from what describe_key read of it. */
static int visit_key(lwalk *w, const entry *e) {
  const lwalk_visitor *v = w->v;
  switch (e->type) {
    case LUA_TBOOLEAN:
      return v->boolean ? v->boolean(w->ud, (int)e->u.i) : 0;
    case LUA_TNUMBER: /* never NaN nor integral when a float: canonical */
      if (e->isint) return v->integer ? v->integer(w->ud, e->u.i) : 0;
      return v->number ? v->number(w->ud, e->u.d) : 0;
    case LUA_TSTRING:
      return v->string ? v->string(w->ud, e->p, e->u.len) : 0;
    default:
      return visit(w, e->slot);
  }
}

/* ---- tables ------------------------------------------------------------------ */

/* Counts the pairs of the table at t; is it an array (keys exactly 1..n)?
 * Distinct keys, all integers in 1..n, are 1..n. */
static int count_pairs(lua_State *L, int t, size_t *np) {
  size_t n = 0;
  int array = 1;
  lua_Integer max = 0;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    n++;
    if (array) {
      if (lua_isinteger(L, -2)) {
        lua_Integer k = lua_tointeger(L, -2);
        if (k < 1) array = 0;
        else if (k > max) max = k;
      } else {
        array = 0;
      }
    }
    lua_pop(L, 1);
  }
  *np = n;
  return array && (lua_Unsigned)max == n;
}

static int visit_array(lwalk *w, int t, size_t n) {
  lua_State *L = w->L;
  int rc = w->v->array ? w->v->array(w->ud, n) : 0;
  for (size_t i = 1; rc == 0 && i <= n; i++) {
    lua_rawgeti(L, t, (lua_Integer)i);
    rc = visit(w, lua_gettop(L));
    lua_pop(L, 1);
  }
  return rc;
}

/* Pairs in lua_next order. */
static int visit_pairs(lwalk *w, int t, size_t n) {
  lua_State *L = w->L;
  int rc = w->v->map ? w->v->map(w->ud, n) : 0;
  if (rc != 0) return rc;
  int base = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    int top = lua_gettop(L);
    if ((rc = visit(w, top - 1)) != 0 || (rc = visit(w, top)) != 0) {
      lua_settop(L, base);
      return rc;
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* Pairs in canonical key order (n >= 2). */
static int visit_sorted(lwalk *w, int t, size_t n) {
  lua_State *L = w->L;
  if (n > (size_t)(INT32_MAX / 2 - 8) || !lua_checkstack(L, (int)(2 * n + 3)))
    return LWALK_ETOOBIG;
  entry small[SMALL_MAP];
  entry *e = small; /* beyond SMALL_MAP: n entries, then n of scratch */
  if (n > SMALL_MAP) {
    if (n > SIZE_MAX / (2 * sizeof *e) || (e = ac__malloc(2 * n * sizeof *e)) == NULL)
      return LWALK_ENOMEM;
  }
  int base = lua_gettop(L), rc = 0;
  size_t got = 0;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) { /* key, value stay; a copy of the key goes on */
    if (got == n) { /* cannot happen: nothing runs that could add a key */
      rc = LWALK_ETOOBIG;
      break;
    }
    int slot = lua_gettop(L) - 1;
    if ((rc = describe_key(w, slot, &e[got++])) != 0) break;
    lua_pushvalue(L, slot);
  }
  if (rc == 0) {
    if (e == small) insertion_sort(e, got);
    else merge_sort(e, e + n, got);
    rc = w->v->map ? w->v->map(w->ud, got) : 0;
    for (size_t i = 0; rc == 0 && i < got; i++)
      if ((rc = visit_key(w, &e[i])) == 0) rc = visit(w, e[i].slot + 1);
  }
  lua_settop(L, base);
  if (e != small) ac__free(e);
  return rc;
}

/* An unsorted table in one lua_next pass: every key and value is left on
 * the stack (2 slots a pair above base) while counting the pairs and
 * telling an array from a map, then visited from there.  An array whose
 * keys came in index order (the array part first: the usual case) is
 * visited from the stack too; one whose keys came in another order, with
 * lua_rawgeti.  Returns 1 (with *rc set) when done, 0 when the table has
 * more than GATHER_MAX pairs (the stack as it was: the caller reads it in
 * two passes). */
static int visit_gathered(lwalk *w, int t, int *rc) {
  lua_State *L = w->L;
  if (!lua_checkstack(L, 2 * GATHER_MAX + 3)) return 0;
  int base = lua_gettop(L);
  size_t n = 0;
  int array = 1, in_order = 1;
  lua_Integer max = 0;
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    if (++n > GATHER_MAX) {
      lua_settop(L, base);
      return 0;
    }
    if (array) {
      if (lua_isinteger(L, -2)) {
        lua_Integer k = lua_tointeger(L, -2);
        if (k < 1) array = 0;
        else if (k > max) max = k;
        if (k != (lua_Integer)n) in_order = 0;
      } else {
        array = 0;
      }
    }
    lua_pushvalue(L, -2); /* the key lua_next goes on from */
  }
  if (array && (lua_Unsigned)max == n) {
    if (in_order) {
      *rc = w->v->array ? w->v->array(w->ud, n) : 0;
      for (size_t i = 0; *rc == 0 && i < n; i++) *rc = visit(w, base + 2 + 2 * (int)i);
    } else {
      lua_settop(L, base);
      *rc = visit_array(w, t, n);
    }
  } else {
    *rc = w->v->map ? w->v->map(w->ud, n) : 0;
    for (size_t i = 0; *rc == 0 && i < n; i++) {
      int k = base + 1 + 2 * (int)i;
      if ((*rc = visit(w, k)) == 0) *rc = visit(w, k + 1);
    }
  }
  lua_settop(L, base);
  return 1;
}

static int visit_table(lwalk *w, int t) {
  lua_State *L = w->L;
  const void *self = lua_topointer(L, t);
  for (int i = 0; i < w->depth; i++)
    if (w->path[i] == self) return LWALK_ECYCLE;
  /* Three slots: a key, its value and a copy, or an element. */
  if (w->depth == LWALK_MAX_DEPTH || !lua_checkstack(L, 3))
    return LWALK_EDEPTH;
  w->path[w->depth++] = self;
  size_t n;
  int rc;
  if (!(w->flags & LWALK_SORTED) && visit_gathered(w, t, &rc)) {
    /* done in one pass */
  } else if (count_pairs(L, t, &n)) rc = visit_array(w, t, n);
  else if ((w->flags & LWALK_SORTED) && n > 1) rc = visit_sorted(w, t, n);
  else rc = visit_pairs(w, t, n);
  if (rc == 0 && w->v->end) rc = w->v->end(w->ud);
  w->depth--;
  return rc;
}

static int visit_number(lwalk *w, int idx) {
  lua_State *L = w->L;
  const lwalk_visitor *v = w->v;
  if (lua_isinteger(L, idx))
    return v->integer ? v->integer(w->ud, lua_tointeger(L, idx)) : 0;
  lua_Number n = lua_tonumber(L, idx);
  if (w->flags & LWALK_CANONICAL) {
    int64_t i;
    if (lkey_integral(n, &i))
      return v->integer ? v->integer(w->ud, (lua_Integer)i) : 0;
    if (isnan(n)) n = (lua_Number)NAN;
  }
  return v->number ? v->number(w->ud, n) : 0;
}

static int visit(lwalk *w, int idx) {
  lua_State *L = w->L;
  const lwalk_visitor *v = w->v;
  int type = lua_type(L, idx);
  switch (type) {
    case LUA_TNONE:
    case LUA_TNIL:
      return v->nil ? v->nil(w->ud) : 0;
    case LUA_TBOOLEAN:
      return v->boolean ? v->boolean(w->ud, lua_toboolean(L, idx)) : 0;
    case LUA_TNUMBER:
      return visit_number(w, idx);
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      return v->string ? v->string(w->ud, s, len) : 0;
    }
    case LUA_TTABLE:
      return visit_table(w, idx);
    default: /* function, userdata, light userdata, thread */
      if ((w->flags & LWALK_DATA) || v->opaque == NULL) {
        w->bad_type = type;
        return LWALK_EOPAQUE;
      }
      w->opaque++;
      return v->opaque(w->ud, type, lua_topointer(L, idx));
  }
}
