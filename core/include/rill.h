/* rill — a scriptable server runtime: libuv, LuaJIT, llhttp, mbedTLS.
 *
 * The public C interface. Functions return 0 or a negative error code; libuv's
 * codes pass through unchanged and rill adds its own below. rill_strerror()
 * turns any of them into a message.
 */
#ifndef RILL_H
#define RILL_H

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RILL_VERSION_MAJOR 0
#define RILL_VERSION_MINOR 1
#define RILL_VERSION_PATCH 0

/* Errors of rill's own, below libuv's range. */
#define RILL_EOF UV_EOF             /* end of stream */
#define RILL_EAGAIN UV_EAGAIN       /* would block: wait and try again */
#define RILL_ETIMEDOUT UV_ETIMEDOUT /* a deadline passed */
#define RILL_ECLOSED (-30001)       /* the stream or connection is closed */
#define RILL_ETOOLONG (-30002)      /* read_until found no separator within max */
#define RILL_EBODY (-30003)         /* a body is larger than its limit */
#define RILL_EPROTO (-30004)        /* the peer broke the protocol */

/* Returns a static message for err: "timeout", "closed", or "ENAME: text". */
const char *rill_strerror(int err);

/* Returns the version as "MAJOR.MINOR.PATCH". */
const char *rill_version(void);

/* The command line: rill serve|run|test|version. Returns the exit status. */
int rill_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif /* RILL_H */
