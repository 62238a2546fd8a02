/* Unix socket files a process listens on, shared by its listeners on the
 * same path (one per worker): the first makes the socket, the others listen
 * on dups of it, and the last to close removes the file, if it is still the
 * one made. Thread-safe (one process-wide lock). No Lua. */
#ifndef RILL_UNIX_SOCK_H
#define RILL_UNIX_SOCK_H

#include <uv.h>

typedef struct rill_unix_sock_s rill_unix_sock_t;

/* A bound (not yet listening) unix socket for path: the first on the path
 * in this process replaces a stale socket file that nothing listens on,
 * leaves any other file alone (UV_EEXIST; UV_EADDRINUSE for a socket
 * something listens on), binds and sets the file's permission bits to mode
 * (0: as the umask leaves them); later ones get a dup of it. Returns the
 * descriptor, the caller's to close, and *us to release; or an error. */
int rill__unix_open(const char *path, unsigned mode, rill_unix_sock_t **us);

/* A listener on the path is done: the last one removes the file. */
void rill__unix_release(rill_unix_sock_t *us);

#endif
