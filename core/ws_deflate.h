/* permessage-deflate (RFC 7692): one direction's zlib state, as the
 * WebSocket layer uses it. No I/O, no framing, no Lua.
 *
 * An inflater takes a message's compressed payload in whatever slices the
 * transport holds and inflates into an output buffer the caller lends (a
 * pooled RILL_BUF_SIZE buffer): so a message is inflated as it is read, as
 * far as the reader pulls, and a decompression bomb never costs more than
 * that buffer. The caller appends the 00 00 ff ff tail (RFC 7692 §7.2.2) at
 * the message's end, through the same call.
 *
 * A deflater compresses a frame's payload with Z_SYNC_FLUSH into the output
 * buffer; the caller frames what comes out and strips the 00 00 ff ff tail
 * of a message's last frame (§7.2.1).
 *
 * Memory, from zlib's zconf.h: a deflater costs (1 << (bits + 2)) +
 * (1 << (mem_level + 9)) bytes (256 KiB at bits 15, mem_level 8; 8 KiB at
 * 9 and 1), an inflater 32 KiB plus about 7 KiB whatever the peer's
 * window (see rill__wsz_inflater). */
#ifndef RILL_WS_DEFLATE_H
#define RILL_WS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#include <zlib.h>

#include "worker.h"

typedef struct {
  z_stream z;
  int deflating;              /* 1: a deflater, 0: an inflater */
  int ended;                  /* an inflater saw a final block: it resets before more */
  int bits, level, mem_level; /* as made */
} rill_wsz_t;

/* The 4 bytes a sync flush ends with: stripped from a message's last frame
 * by its sender, appended by its receiver. */
extern const uint8_t rill__wsz_tail[4];

/* An inflater for a peer whose window is 2^bits bytes (8..15), fresh or
 * from the cache (see rill__wsz_release), or NULL when out of memory. It
 * reads with a 32 KiB window whatever bits is (see ws_deflate.c). */
rill_wsz_t *rill__wsz_inflater(rill_worker_t *w, int bits);
/* A deflater with window 2^bits (9..15), level (0..9) and mem_level
 * (1..9), fresh or from the cache, or NULL when out of memory or for bits
 * zlib cannot do. */
rill_wsz_t *rill__wsz_deflater(rill_worker_t *w, int bits, int level, int mem_level);
void rill__wsz_free(rill_wsz_t *z);
/* Gives z back at a message's end without context takeover: reset, it
 * waits in w's small cache (at most 8, freed with the worker) for the next
 * message that needs one of its kind (this connection's or another's), so
 * that a connection holds no zlib state between messages and a message
 * allocates none. Frees it when the cache is full. NULL: nothing. */
void rill__wsz_release(rill_worker_t *w, rill_wsz_t *z);
/* Forgets the context (no context takeover): the next message starts afresh. */
void rill__wsz_reset(rill_wsz_t *z);

/* Inflates in[0..n) into out[0..cap). Sets *used to the input bytes taken
 * and *made to the output bytes written; one of them is non-zero unless n is
 * 0 or the input ends inside a block. Returns 0, or -1 when the data is not
 * deflate (a final block followed by more data is taken as a new stream, as
 * RFC 7692 §7.2.3.4 allows). */
int rill__wsz_inflate(rill_wsz_t *z, const uint8_t *in, size_t n, size_t *used,
                      uint8_t *out, size_t cap, size_t *made);

/* Deflates in[0..n) into out[0..cap), with a sync flush if flush. Sets
 * *used and *made as above. Returns 1 when all of in went (and, with flush,
 * the flush is complete), 0 when out filled first (call again with the
 * rest, and fresh room), or -1 on a zlib error. */
int rill__wsz_deflate(rill_wsz_t *z, const uint8_t *in, size_t n, size_t *used,
                      uint8_t *out, size_t cap, size_t *made, int flush);

#endif
