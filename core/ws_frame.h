/* The WebSocket protocol (RFC 6455) as pure code: an incremental frame-header
 * parser that never reads past the header, in-place (un)masking of payload
 * slices, frame-header writing, incremental UTF-8 validation, close frames and
 * the handshake's accept key. No I/O and no Lua: usable and testable alone.
 *
 * Reading, as the WebSocket layer does it: feed bytes to rill__ws_header_parse
 * until it says done; then take the payload as slices of the input buffer with
 * rill__ws_payload (it unmasks them in place), feeding text to rill__utf8_feed;
 * when h->pos == h->len, rill__ws_header_reset and go on. Nothing is buffered
 * here beyond the 14 header bytes, so a message of any size flows through.
 *
 * Writing: rill__ws_header_write gives the header bytes; the payload follows as
 * a separate buffer of the same vectored write. A client masks the payload
 * (rill__ws_mask_copy into its output buffer, or rill__ws_mask in place on bytes
 * it owns). */
#ifndef RILL_WS_H
#define RILL_WS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Opcodes */
enum {
  RILL_WS_CONT = 0x0,
  RILL_WS_TEXT = 0x1,
  RILL_WS_BINARY = 0x2,
  RILL_WS_CLOSE = 0x8,
  RILL_WS_PING = 0x9,
  RILL_WS_PONG = 0xA,
};

/* The RSV bits, where they sit in a frame's first byte. */
enum { RILL_WS_RSV1 = 0x40, RILL_WS_RSV2 = 0x20, RILL_WS_RSV3 = 0x10 };

/* Close codes this layer fails a connection with. */
enum {
  RILL_WS_NORMAL = 1000,
  RILL_WS_PROTOCOL_ERROR = 1002,
  RILL_WS_NO_STATUS = 1005, /* a close frame without a code; never sent */
  RILL_WS_INVALID_DATA = 1007,
  RILL_WS_TOO_BIG = 1009,
  RILL_WS_INTERNAL_ERROR = 1011, /* the server cannot go on (a message it began cannot end) */
};

/* The largest frame header: 2 bytes, 8 of extended length, 4 of mask. */
#define RILL_WS_HEADER_MAX 14
/* The largest control-frame payload, and of a close reason within it. */
#define RILL_WS_CONTROL_MAX 125
#define RILL_WS_REASON_MAX 123

typedef struct {
  /* settings, kept by reset */
  int expect_masked;    /* 1 on a server: every frame must be masked; 0 on a client:
                           none may be */
  unsigned rsv_allowed; /* RILL_WS_RSV* bits an extension negotiated: RSV1 with
                           permessage-deflate (RFC 7692), allowed on a message's
                           first frame only */
  uint64_t max_frame;   /* a larger payload length fails with 1009; 0: no limit */
  uint64_t max_message; /* a data message whose frames add up to more fails with
                           1009; 0: no limit. Set it after init. A compressed
                           message (RSV1) may pass it by deflate's worst-case
                           growth: its inflated size is checked above. */
  /* the data message in progress (RFC 6455 §5.4), kept by reset */
  unsigned msg_opcode; /* TEXT or BINARY: the message the last data frame is part
                          of (a continuation frame's type is found here) */
  unsigned msg_rsv;    /* the RSV bits of that message's first frame */
  int msg_open;        /* 1 while a fragmented message awaits its final frame */
  uint64_t msg_len;    /* payload bytes of that message, through the last frame */
  /* the header being read */
  uint8_t buf[RILL_WS_HEADER_MAX];
  unsigned have, need;
  /* the parsed header, valid once complete */
  unsigned fin, rsv, opcode, masked; /* rsv: RILL_WS_RSV* bits */
  uint64_t len;
  uint8_t mask[4];
  uint64_t pos; /* payload bytes taken so far (rill__ws_payload) */
  /* on error */
  unsigned close_code; /* 1002 protocol error, 1009 too big */
  const char *error;   /* a short reason */
} rill_ws_header_t;

/* Sets up a parser: expect_masked is 1 on a server, 0 on a client. */
void rill__ws_header_init(rill_ws_header_t *h, int expect_masked, uint64_t max_frame);
/* Ready for the next frame; keeps the settings and the message state. */
void rill__ws_header_reset(rill_ws_header_t *h);

/* Reads header bytes from p[0..n). Returns how many it consumed (never past the
 * header) and sets *done when the header is complete; or -1 with close_code and
 * error, as soon as the byte that breaks the rules arrives. Once complete it
 * returns 0 with *done set until reset; after an error it keeps returning -1
 * (reset clears the error, but a connection that saw one should be closed).
 * Rejects (1002): RSV bits not allowed (RSV1 even when allowed, on a control
 * or continuation frame: RFC 7692 §6.1), unknown opcodes (3-7, 0xB-0xF), control
 * frames that are fragmented or longer than 125, a 64-bit length with the top
 * bit set, lengths not in their minimal encoding (§5.2), a mask bit that does
 * not match expect_masked, a continuation frame with no message in progress, a
 * new text or binary frame inside a fragmented message. Rejects (1009): len
 * over max_frame, a message over max_message. On completion it updates the
 * message state (msg_opcode, msg_open, msg_len). */
ssize_t rill__ws_header_parse(rill_ws_header_t *h, const uint8_t *p, size_t n, int *done);

/* Takes up to n bytes of the current frame's payload at p[0..n), unmasking
 * them in place; advances h->pos. Returns how many bytes were payload (the
 * rest of p belongs to the next frame); the frame ends when h->pos == h->len. */
size_t rill__ws_payload(rill_ws_header_t *h, uint8_t *p, size_t n);

/* XORs p[0..n) in place with mask, as payload bytes starting at payload offset
 * `offset` (so the mask phase continues across slices). */
void rill__ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset);
/* The same from src into dst (for a client's output buffer); dst may be src. */
void rill__ws_mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4],
                       uint64_t offset);

/* Writes a frame header for a payload of len bytes (len < 2^63); mask NULL
 * for an unmasked frame. opcode may carry RILL_WS_RSV* bits. Returns the
 * header's length (2..14). */
size_t rill__ws_header_write(uint8_t out[RILL_WS_HEADER_MAX], int fin, int opcode,
                            uint64_t len, const uint8_t *mask);

/* ---- UTF-8 (RFC 3629) ---- */

/* Incremental validation: no overlongs, no surrogates U+D800..U+DFFF, nothing
 * above U+10FFFF. Zero it or rill__utf8_init it before use. */
typedef struct {
  uint8_t need;   /* continuation bytes still to come */
  uint8_t lo, hi; /* the range the next continuation byte must fall in */
  uint8_t bad;    /* 1 once invalid: every later feed fails */
  size_t err_at;  /* after a failed feed: the index in p of the offending byte */
} rill_utf8_t;

void rill__utf8_init(rill_utf8_t *u);
/* Validates p[0..n) as the continuation of what was fed before. Returns 0 if
 * valid so far (a character may continue in the next call), or -1 on the
 * first byte that cannot continue a valid sequence; u->err_at says which. */
int rill__utf8_feed(rill_utf8_t *u, const uint8_t *p, size_t n);
/* 1 if the bytes so far are valid and end on a character boundary. */
int rill__utf8_complete(const rill_utf8_t *u);
/* Whole-buffer check: 1 if p[0..n) is valid UTF-8. */
int rill__utf8_valid(const uint8_t *p, size_t n);

/* ---- close frames ---- */

/* 1 if an endpoint may send code in a close frame: 1000-1003, 1007-1014,
 * 3000-4999. */
int rill__ws_close_code_valid(unsigned code);
/* Parses a close payload: empty (code 1005, no reason) or a 2-byte code and a
 * UTF-8 reason. Returns 0 with *code, *reason (points into p) and *rlen; or -1
 * with *code set to the close code to fail with: 1002 for a 1-byte payload or
 * an invalid code, 1007 for a reason that is not UTF-8. */
int rill__ws_close_parse(const uint8_t *p, size_t n, unsigned *code,
                        const uint8_t **reason, size_t *rlen);
/* Writes a close payload to out: nothing for code 0 (a close without status),
 * else the code and the reason, cut to 123 bytes at a character boundary.
 * Returns the payload's length, or -1 if code may not be sent. */
ssize_t rill__ws_close_write(uint8_t out[RILL_WS_CONTROL_MAX], unsigned code,
                            const uint8_t *reason, size_t rlen);

/* ---- the opening handshake ---- */

/* Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (without surrounding
 * whitespace): base64(SHA-1(key "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")),
 * 28 characters and a NUL in out. Returns 0, or -1 when key is not the base64
 * of exactly 16 bytes (a server answers 400 then). */
int rill__ws_accept(const char *key, size_t klen, char out[29]);
/* A client's Sec-WebSocket-Key from 16 random bytes: 24 characters and a NUL. */
void rill__ws_key(const uint8_t nonce[16], char out[25]);

#endif
