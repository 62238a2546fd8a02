/* The hashes a database client needs, from mbedTLS: SHA-256, MD5, PBKDF2
 * with HMAC-SHA-256 (SCRAM's Hi()), and base64. They are functions of
 * rill.core (core.sha256, ...) that rill.crypto names; none waits, none
 * keeps state. HMAC-SHA-256 and random bytes are in lua_core.c and
 * lua_ws.c (core.hmac_sha256, core.random). */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <mbedtls/base64.h>
#include <mbedtls/md.h>
#include <mbedtls/md5.h>
#include <mbedtls/pkcs5.h>
#include <mbedtls/sha256.h>

#include "lua_core.h"

/* The most iterations pbkdf2_sha256 runs: a SCRAM server picks the count,
 * and each iteration is CPU time of the worker's loop. */
#define PBKDF2_MAX_ITER 1000000

/* core.sha256(s) → the 32 raw bytes of SHA-256(s) */
static int l_sha256(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  unsigned char out[32];
  if (mbedtls_sha256_ret((const unsigned char *)s, len, out, 0) != 0)
    return luaL_error(L, "sha256: mbedTLS failed");
  lua_pushlstring(L, (const char *)out, sizeof(out));
  return 1;
}

/* core.md5(s) → the 16 raw bytes of MD5(s) (Postgres's md5 password
 * exchange; not for anything new) */
static int l_md5(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  unsigned char out[16];
  if (mbedtls_md5_ret((const unsigned char *)s, len, out) != 0)
    return luaL_error(L, "md5: mbedTLS failed");
  lua_pushlstring(L, (const char *)out, sizeof(out));
  return 1;
}

/* core.pbkdf2_sha256(password, salt, iterations [, length]) → length raw
 * bytes (default 32) of PBKDF2-HMAC-SHA-256 (RFC 8018). iterations 1 to
 * PBKDF2_MAX_ITER, length 1 to 1024; others raise. */
static int l_pbkdf2_sha256(lua_State *L) {
  size_t plen, slen;
  const char *pw = luaL_checklstring(L, 1, &plen);
  const char *salt = luaL_checklstring(L, 2, &slen);
  lua_Integer iter = luaL_checkinteger(L, 3);
  lua_Integer olen = luaL_optinteger(L, 4, 32);
  luaL_argcheck(L, iter >= 1 && iter <= PBKDF2_MAX_ITER, 3, "1..1000000");
  luaL_argcheck(L, olen >= 1 && olen <= 1024, 4, "1..1024");
  unsigned char out[1024];
  mbedtls_md_context_t ctx;
  mbedtls_md_init(&ctx);
  const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
  int r = md ? mbedtls_md_setup(&ctx, md, 1) : -1;
  if (r == 0)
    r = mbedtls_pkcs5_pbkdf2_hmac(&ctx, (const unsigned char *)pw, plen,
                                  (const unsigned char *)salt, slen, (unsigned int)iter,
                                  (uint32_t)olen, out);
  mbedtls_md_free(&ctx);
  if (r != 0) return luaL_error(L, "pbkdf2_sha256: mbedTLS error %d", r);
  lua_pushlstring(L, (const char *)out, (size_t)olen);
  return 1;
}

/* core.base64_encode(s) → s in base64 (RFC 4648 4, with padding) */
static int l_base64_encode(lua_State *L) {
  size_t len, olen = 0;
  const char *s = luaL_checklstring(L, 1, &len);
  luaL_argcheck(L, len <= (64u << 20), 1, "at most 64 MiB");
  size_t cap = 4 * ((len + 2) / 3) + 1;
  char stackbuf[512];
  char *out = cap <= sizeof(stackbuf) ? stackbuf : lua_newuserdata(L, cap);
  if (mbedtls_base64_encode((unsigned char *)out, cap, &olen, (const unsigned char *)s,
                            len) != 0)
    return luaL_error(L, "base64_encode: mbedTLS failed");
  lua_pushlstring(L, out, olen);
  return 1;
}

/* core.base64_decode(s) → the bytes, or nil for text that is not base64 */
static int l_base64_decode(lua_State *L) {
  size_t len, olen = 0;
  const char *s = luaL_checklstring(L, 1, &len);
  luaL_argcheck(L, len <= (64u << 20), 1, "at most 64 MiB");
  size_t cap = 3 * (len / 4) + 3;
  char stackbuf[512];
  char *out = cap <= sizeof(stackbuf) ? stackbuf : lua_newuserdata(L, cap);
  if (mbedtls_base64_decode((unsigned char *)out, cap, &olen, (const unsigned char *)s,
                            len) != 0)
    return 0;
  lua_pushlstring(L, out, olen);
  return 1;
}

void rill__open_crypto(lua_State *L, rill_worker_t *w) {
  static const luaL_Reg funcs[] = {{"sha256", l_sha256},
                                   {"md5", l_md5},
                                   {"pbkdf2_sha256", l_pbkdf2_sha256},
                                   {"base64_encode", l_base64_encode},
                                   {"base64_decode", l_base64_decode},
                                   {NULL, NULL}};
  rill__register(L, w, funcs);
}
