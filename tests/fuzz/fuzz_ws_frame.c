/* Fuzzes the WebSocket frame layer (ws_frame.c) the way ws_conn.c reads:
 * frame headers (rill__ws_header_parse), payload unmasked in place in slices
 * (rill__ws_payload), text checked incrementally (rill__utf8_feed and
 * rill__utf8_complete), control frames gathered and close frames parsed
 * (rill__ws_close_parse).
 *
 * Input: one byte of settings (bit 0: a server, which expects masked frames,
 * or a client; then max_frame, max_message and the RSV bits allowed), then
 * the bytes of the peer.
 *
 * Besides the split check it checks what the layer promises: a header
 * parsed is re-encoded to the same bytes by rill__ws_header_write (lengths
 * must be minimal, so the encoding is unique); rill__ws_payload never touches
 * bytes past the frame; the incremental UTF-8 check fails exactly at the
 * first byte after which no valid text can follow, as a plain reference
 * decoder says, and the whole-buffer check agrees with it; a close payload
 * that parses is written back the same by rill__ws_close_write.
 *
 * Split check: once with every byte available at once; once with them
 * arriving in pieces (each call gets a fresh copy of what has arrived and
 * not been consumed). Frames, messages, control frames, the close and the
 * error must be the same. */
#include "fuzz_common.h"
#include "ws_frame.h"

#define T "fuzz_ws_frame"

static const uint64_t max_frame_of[] = {0, 125, 126, 127, 65535, 65536, 1000, 1};
static const uint64_t max_message_of[] = {0, 1, 200, 70000};

/* ---- a reference UTF-8 decoder (RFC 3629), written plainly ---- */

/* Returns 1 if p[0..n) is valid, 0 if not, or 2 if it is valid but for a
 * sequence cut short at the end, whose start goes to *tail. */
static int ref_utf8(const uint8_t *p, size_t n, size_t *tail) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    unsigned k;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) {
      k = 1, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      k = 2, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      k = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return 0;
    }
    if (n - i - 1 < k) {
      for (size_t j = i + 1; j < n; j++)
        if ((p[j] & 0xc0) != 0x80) return 0;
      *tail = i;
      return 2;
    }
    for (unsigned j = 1; j <= k; j++) {
      if ((p[i + j] & 0xc0) != 0x80) return 0;
      cp = cp << 6 | (p[i + j] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    i += k + 1;
  }
  return 1;
}

/* 1 if some bytes can follow p[0..n) to make valid UTF-8. */
static int ref_prefix_ok(const uint8_t *p, size_t n) {
  size_t tail;
  int r = ref_utf8(p, n, &tail);
  if (r != 2) return r;
  /* Complete the cut sequence every way its next byte could go (the later
   * ones are free within 80-BF) and see if one is valid. */
  uint8_t seq[4];
  size_t have = n - tail;
  uint8_t c = p[tail];
  size_t len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
  memcpy(seq, p + tail, have);
  for (unsigned v = 0x80; v <= 0xbf; v++) {
    for (size_t j = have; j < len; j++)
      seq[j] = j == have ? (uint8_t)v : 0x80;
    if (ref_utf8(seq, len, &tail) == 1) return 1;
    if (have > 1) break; /* nothing left to choose */
  }
  return 0;
}

/* ---- one run ---- */

typedef struct {
  fz_rec_t *rec;
  rill_ws_header_t h;
  rill_utf8_t u;
  uint8_t *msg; /* the data message so far, unmasked */
  size_t mlen, mcap;
  int mtype; /* TEXT or BINARY while a message is open */
  uint8_t ctl[RILL_WS_CONTROL_MAX];
  size_t clen;
  int stop;
} st_t;

static void msg_put(st_t *s, const uint8_t *p, size_t n) {
  if (s->mlen + n > s->mcap) {
    size_t cap = s->mcap ? s->mcap : 256;
    while (cap < s->mlen + n)
      cap *= 2;
    if ((s->msg = realloc(s->msg, cap)) == NULL) abort();
    s->mcap = cap;
  }
  memcpy(s->msg + s->mlen, p, n);
  s->mlen += n;
}

/* A header is complete: check and record it. */
static void on_header(st_t *s) {
  rill_ws_header_t *h = &s->h;
  uint8_t out[RILL_WS_HEADER_MAX];
  size_t k = rill__ws_header_write(out, (int)h->fin, (int)(h->opcode | h->rsv), h->len,
                                   h->masked ? h->mask : NULL);
  FZ_ASSERT(T, k == h->need && memcmp(out, h->buf, k) == 0,
            "the header read (%u bytes) is not the one written back (%zu bytes)", h->need,
            k);
  FZ_ASSERT(T, h->masked == (unsigned)h->expect_masked, "mask bit %u accepted",
            h->masked);
  FZ_ASSERT(T, h->max_frame == 0 || h->len <= h->max_frame, "a frame past max_frame");
  FZ_ASSERT(T, (h->rsv & ~h->rsv_allowed) == 0, "RSV bits %x accepted", h->rsv);
  FZ_ASSERT(T, h->pos == 0, "a new frame at payload offset %llu",
            (unsigned long long)h->pos);
  if (h->opcode >= 8) {
    FZ_ASSERT(T,
              h->fin && h->len <= RILL_WS_CONTROL_MAX &&
                  (h->opcode == RILL_WS_CLOSE || h->opcode == RILL_WS_PING ||
                   h->opcode == RILL_WS_PONG),
              "control frame %x fin %u len %llu accepted", h->opcode, h->fin,
              (unsigned long long)h->len);
    s->clen = 0;
  } else {
    FZ_ASSERT(T, h->opcode <= 2, "opcode %x accepted", h->opcode);
    FZ_ASSERT(T, (h->opcode == RILL_WS_CONT) == (s->mtype != 0),
              "opcode %x with a message %s", h->opcode, s->mtype ? "open" : "closed");
    FZ_ASSERT(T, h->msg_open == !h->fin, "msg_open %d after a frame with fin %u",
              h->msg_open, h->fin);
    if (h->opcode != RILL_WS_CONT) {
      s->mtype = (int)h->opcode;
      s->mlen = 0;
      rill__utf8_init(&s->u);
    }
    FZ_ASSERT(T, (int)h->msg_opcode == s->mtype, "msg_opcode %u, message %d",
              h->msg_opcode, s->mtype);
    /* A compressed message (RSV1, RFC 7692) may pass max_message by
     * deflate's worst-case growth: its inflated size is held to it above. */
    uint64_t limit = h->max_message;
    if (limit && (h->msg_rsv & RILL_WS_RSV1)) limit += (limit >> 10) + 1024;
    FZ_ASSERT(T, limit == 0 || h->msg_len <= limit, "a message past max_message");
    FZ_ASSERT(T, !(h->rsv & RILL_WS_RSV1) || h->opcode != RILL_WS_CONT,
              "RSV1 on a continuation frame accepted");
  }
  fz_put_tag(s->rec, 'f');
  fz_put(s->rec, h->buf, h->need);
}

/* Payload bytes p[0..n) of a data frame, unmasked. */
static void on_data(st_t *s, const uint8_t *p, size_t n) {
  size_t before = s->mlen;
  msg_put(s, p, n);
  if (s->mtype != RILL_WS_TEXT) return;
  int bad = rill__utf8_feed(&s->u, p, n);
  if (s->mlen <= 8192) {
    /* It fails exactly when no valid text can follow. */
    int ok = ref_prefix_ok(s->msg, s->mlen);
    FZ_ASSERT(T, ok == (bad == 0), "utf8_feed says %s, the reference %s",
              bad ? "invalid" : "valid so far", ok ? "valid so far" : "invalid");
    if (bad) {
      size_t at = before + s->u.err_at;
      FZ_ASSERT(T, s->u.err_at < n, "err_at %zu of %zu", s->u.err_at, n);
      FZ_ASSERT(T, ref_prefix_ok(s->msg, at) && !ref_prefix_ok(s->msg, at + 1),
                "err_at %zu is not the first bad byte", at);
    }
  }
  if (bad) {
    fz_put_tag(s->rec, 'u');
    fz_put_u64(s->rec, before + s->u.err_at); /* the first bad byte of the message */
    s->stop = 1;
  }
}

/* The current frame's payload is complete. */
static void on_frame_end(st_t *s) {
  rill_ws_header_t *h = &s->h;
  if (h->opcode >= 8) {
    fz_put_tag(s->rec, 'c');
    fz_put_bytes(s->rec, s->ctl, s->clen);
    if (h->opcode == RILL_WS_CLOSE) {
      unsigned code;
      const uint8_t *reason;
      size_t rlen;
      int r = rill__ws_close_parse(s->ctl, s->clen, &code, &reason, &rlen);
      fz_put_u64(s->rec, (uint64_t)r);
      fz_put_u64(s->rec, code);
      if (r == 0) {
        FZ_ASSERT(
            T, code == RILL_WS_NO_STATUS ? s->clen == 0 : rill__ws_close_code_valid(code),
            "close code %u accepted", code);
        FZ_ASSERT(T, rill__utf8_valid(reason ? reason : (const uint8_t *)"", rlen),
                  "a close reason that is not UTF-8");
        if (code != RILL_WS_NO_STATUS) {
          uint8_t out[RILL_WS_CONTROL_MAX];
          ssize_t k = rill__ws_close_write(out, code, reason, rlen);
          FZ_ASSERT(T, k == (ssize_t)s->clen && memcmp(out, s->ctl, s->clen) == 0,
                    "the close payload written back differs");
        }
        fz_put_bytes(s->rec, reason, rlen);
      } else {
        FZ_ASSERT(T, code == RILL_WS_PROTOCOL_ERROR || code == RILL_WS_INVALID_DATA,
                  "close parse failed with %u", code);
      }
      s->stop = 1; /* nothing is read after a close */
    }
  } else if (h->fin) {
    if (s->mtype == RILL_WS_TEXT) {
      size_t t;
      int ref = ref_utf8(s->msg, s->mlen, &t) == 1;
      FZ_ASSERT(T, rill__utf8_complete(&s->u) == ref, "utf8_complete %d, reference %d",
                rill__utf8_complete(&s->u), ref);
      FZ_ASSERT(T, rill__utf8_valid(s->msg, s->mlen) == ref,
                "utf8_valid %d, reference %d", rill__utf8_valid(s->msg, s->mlen), ref);
      if (!ref) {
        fz_put_tag(s->rec, 'U');
        s->stop = 1;
        return;
      }
    }
    fz_put_tag(s->rec, 'm');
    fz_put_u64(s->rec, (uint64_t)s->mtype);
    fz_put_bytes(s->rec, s->msg, s->mlen);
    s->mtype = 0;
    s->mlen = 0;
  }
}

static void run(fz_rec_t *rec, const uint8_t *data, size_t n, uint8_t cfg, int split) {
  fz_rng_t g;
  fz_rng_init(&g, data, n);
  st_t s = {.rec = rec};
  rill__ws_header_init(&s.h, cfg & 1, max_frame_of[(cfg >> 1) & 7]);
  s.h.max_message = max_message_of[(cfg >> 4) & 3];
  s.h.rsv_allowed = (cfg & 0x40) ? RILL_WS_RSV1 : 0;
  size_t pos = 0, avail = 0;
  int in_header = 1;
  while (!s.stop) {
    if (pos == avail && !(!in_header && s.h.pos == s.h.len)) {
      if (avail == n) break;
      avail = split ? avail + fz_piece(&g, n - avail) : n;
    }
    uint8_t *buf = fz_dup(data + pos, avail - pos);
    size_t len = avail - pos;
    if (in_header) {
      int done;
      ssize_t k = rill__ws_header_parse(&s.h, buf, len, &done);
      if (k < 0) {
        FZ_ASSERT(T, s.h.close_code == 1002 || s.h.close_code == 1009, "failed with %u",
                  s.h.close_code);
        fz_put_tag(rec, 'x');
        fz_put_u64(rec, s.h.close_code);
        fz_put_str(rec, s.h.error);
        /* It keeps failing. */
        FZ_ASSERT(T,
                  rill__ws_header_parse(&s.h, (const uint8_t *)"\x82\x00", 2, &done) < 0,
                  "a parser that failed took more");
        free(buf);
        break;
      }
      FZ_ASSERT(T, (size_t)k <= len && (done || (size_t)k == len),
                "took %zd of %zu, done %d", k, len, done);
      FZ_ASSERT(T, !done || s.h.have == s.h.need, "done with %u of %u bytes", s.h.have,
                s.h.need);
      pos += (size_t)k;
      if (done) {
        on_header(&s);
        in_header = 0;
        if (s.h.opcode >= 8) s.clen = 0;
      }
    } else if (s.h.pos < s.h.len) {
      uint64_t left = s.h.len - s.h.pos;
      size_t k = rill__ws_payload(&s.h, buf, len);
      FZ_ASSERT(T, k == (len < left ? len : (size_t)left),
                "payload took %zu of %zu (%llu left)", k, len, (unsigned long long)left);
      FZ_ASSERT(T, memcmp(buf + k, data + pos + k, len - k) == 0,
                "the payload call changed bytes past its frame");
      if (s.h.opcode >= 8) {
        memcpy(s.ctl + s.clen, buf, k);
        s.clen += k;
      } else {
        on_data(&s, buf, k);
      }
      pos += k;
    }
    free(buf);
    if (!in_header && s.h.pos == s.h.len && !s.stop) {
      on_frame_end(&s);
      rill__ws_header_reset(&s.h);
      in_header = 1;
    }
  }
  /* Where the input ended: within a header, or a payload. (After a failure
   * the position depends on the cut: the parser stops at the bad byte, but
   * took the bytes it was given before it.) */
  fz_put_tag(rec, 'e');
  if (!s.stop && !s.h.close_code) {
    fz_put_u64(rec, (uint64_t)in_header);
    fz_put_u64(rec, s.h.have);
    fz_put_u64(rec, s.h.pos);
  }
  free(s.msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fz_whole_and_split(T, run, data, size);
}
