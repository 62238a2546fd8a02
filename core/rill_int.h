/* Internal basics every layer of the core shares: sizes, error messages,
 * container_of. The layers and who owns what are described in core/README.md.
 * Nothing here (or in any C layer) includes a Lua header. */
#ifndef RILL_INT_H
#define RILL_INT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rill.h"

typedef struct rill_worker_s rill_worker_t;
typedef struct rill_obj_s rill_obj_t;
typedef struct rill_stream_s rill_stream_t;

#define RILL_BUF_SIZE 65536   /* a pooled input buffer */
#define RILL_WRITE_HIGH 65536 /* queued bytes above which a writer waits */
#define RILL_WRITE_LOW 16384  /* ... until the queue falls to this */

#define rill__container_of(ptr, type, field)                                             \
  ((type *)((char *)(ptr)-offsetof(type, field)))

/* A file ended before the range being sent from it (it shrank meanwhile). */
#define RILL_EFILE (-30064)

/* Error codes as the messages Lua sees: "timeout", "closed", "ENAME: text". */
const char *rill__errmsg(int err);

/* Sets what rill_last_error(r) returns (rill.c): the reason a call of the
 * host's on r failed. */
void rill__set_error(rill_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* RILL_INT_H */
