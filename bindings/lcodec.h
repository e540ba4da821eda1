/* Lua values to MessagePack bytes and back (internal).
 *
 * The mapping (docs/disk.md, "How values are encoded"):
 *   nil, booleans          nil, true/false
 *   integers               MessagePack integers (the smallest form)
 *   floats                 float 64, always, so 1.0 stays a float and
 *                          -0.0, NaN and the infinities survive
 *   strings                str when valid UTF-8, bin otherwise; both
 *                          decode to Lua strings
 *   tables                 an array when its keys are exactly 1..n (the
 *                          empty table is the empty array), a map
 *                          otherwise (sparse arrays, integer keys mixed
 *                          with others); metatables are not kept
 *   functions, userdata,   refused: "cannot encode a function value"
 *   threads, cycles,       ("a cyclic table", "tables nested deeper than
 *   deep nesting           32 levels")
 * Decoding: unsigned integers above 2^63 - 1 become floats; a map key that
 * is nil or NaN (which Lua tables cannot hold) and ext types are errors.
 *
 * Encoding goes through the walker (lwalk.h) with LWALK_DATA; decoding
 * through ac_codec_read, building the value on the Lua stack. */
#ifndef AC_LCODEC_H
#define AC_LCODEC_H

#include <lua.h>

#include "ac_codec.h"

/* Encodes the value at idx, appending to w (reset it first).  0, or an
 * error with *why a static sentence ("cannot encode a function value",
 * ...; "out of memory" for AC_ENOMEM).  Never raises. */
int ac__lcodec_encode(lua_State *L, int idx, ac_codec_writer_t *w, const char **why);
/* Decodes bytes and pushes the value: 0, or an error with the message
 * pushed instead ("MessagePack: truncated data", ...).  Never raises
 * (memory errors included): runs protected.  Needs 3 free stack slots. */
int ac__lcodec_decode(lua_State *L, const char *bytes, size_t len);

/* Pushes the table { encode = f, decode = f } of cache.core. */
void ac__lcodec_open(lua_State *L);

#endif
