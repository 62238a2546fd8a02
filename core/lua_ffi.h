/* The fast paths Lua calls through the FFI (lua_sched.h says what they may
 * and may not do). core.ffi_api is a pointer to this table and core.ffi_cdef
 * its declaration, which lua/rill/ffi.lua hands to the FFI. Each function takes the
 * block of a userdata (a stream face or a websocket) as Lua passes it. */
#ifndef RILL_LUA_FFI_H
#define RILL_LUA_FFI_H

#include <stddef.h>

/* The table's fields, written once: C compiles them, and Lua declares the
 * same text (core.ffi_cdef, RILL_FFI_CDEF) to the FFI. */
#define RILL_FFI_API_FIELDS                                                              \
  size_t size; /* sizeof(rill_ffi_api_t) */                                            \
  int (*stream_peek)(void *face, const char **p);                                      \
  int (*stream_consume)(void *face, size_t n);                                         \
  int (*stream_write)(void *face, const char *p, size_t n);                            \
  int (*ws_next)(void *ws);                                                            \
  int (*ws_send)(void *ws, int opcode, int fin, const char *p, size_t n);              \
  int (*ws_streaming)(void *ws, int set);                                              \
  double (*ws_msg_length)(void *ws);                                                   \
  int (*http_write)(void *conn, unsigned gen, const char *p, size_t n);                \
  int (*http_reqline)(void *conn, unsigned gen, const char **method, const char **target, \
                      int *target_len);                                                \
  int (*http_respond)(void *conn, unsigned gen, int status, const rill_ffi_hdr_t *h, int nh, \
                      const char *body, size_t len);                                     \
  int (*h2_write)(void *conn, unsigned gen, const char *p, size_t n);                  \
  int (*h2_reqline)(void *conn, unsigned gen, const char **method, const char **target, \
                    int *target_len);                                                  \
  int (*h2_respond)(void *conn, unsigned gen, int status, const rill_ffi_hdr_t *h, int nh, \
                    const char *body, size_t len);

/* A header line for http_respond: rill_hdr_t's layout (http_conn.h). */
#define RILL_FFI_HDR_FIELDS const char *name; size_t nlen; const char *value; size_t vlen;

typedef struct {
  RILL_FFI_HDR_FIELDS
} rill_ffi_hdr_t;

typedef struct {
  RILL_FFI_API_FIELDS
} rill_ffi_api_t;

#define RILL_FFI_STR_(x) #x
#define RILL_FFI_STR(x) RILL_FFI_STR_(x)
#define RILL_FFI_CDEF                                                                      \
  "typedef struct { " RILL_FFI_STR(RILL_FFI_HDR_FIELDS) " } rill_ffi_hdr_t; "             \
  "typedef struct { " RILL_FFI_STR(RILL_FFI_API_FIELDS) " } rill_ffi_api_t;"

/* lua_stream.c */
int rill__ffi_stream_peek(void *face, const char **p);
int rill__ffi_stream_consume(void *face, size_t n);
int rill__ffi_stream_write(void *face, const char *p, size_t n);
/* lua_ws.c */
int rill__ffi_ws_next(void *ws);
int rill__ffi_ws_send(void *ws, int opcode, int fin, const char *p, size_t n);
int rill__ffi_ws_streaming(void *ws, int set);
double rill__ffi_ws_msg_length(void *ws);
/* lua_http.c */
int rill__ffi_http_write(void *conn, unsigned gen, const char *p, size_t n);
int rill__ffi_http_reqline(void *conn, unsigned gen, const char **method, const char **target,
                           int *target_len);
int rill__ffi_http_respond(void *conn, unsigned gen, int status, const rill_ffi_hdr_t *h, int nh,
                           const char *body, size_t len);
/* lua_h2.c: the same three for an HTTP/2 request stream (gen: its id) */
int rill__ffi_h2_write(void *conn, unsigned gen, const char *p, size_t n);
int rill__ffi_h2_reqline(void *conn, unsigned gen, const char **method, const char **target,
                         int *target_len);
int rill__ffi_h2_respond(void *conn, unsigned gen, int status, const rill_ffi_hdr_t *h, int nh,
                         const char *body, size_t len);

#endif
