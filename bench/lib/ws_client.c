/* ws_client HOST PORT PATH echo CONNS BYTES SECONDS [deflate]
 * ws_client HOST PORT PATH idle CONNS
 *
 * A WebSocket (RFC 6455) load client for the bench harness, single-threaded
 * on epoll. Each connection does the opening handshake (a random
 * Sec-WebSocket-Key, the server's Sec-WebSocket-Accept checked); at most
 * MAX_PENDING connections are connecting or waiting for their 101 at a time,
 * so that the server's accept backlog never overflows.
 *
 * echo: once every connection is open, each keeps one binary message of
 * BYTES bytes in flight for SECONDS seconds: it sends the message as one
 * masked frame (a new masking key per frame from a xorshift generator seeded
 * from /dev/urandom), reads the whole echo -- in as many frames as the server
 * likes: continuation frames, and control frames between them, are handled;
 * a ping gets its pong -- and sends the next. The first echo on each
 * connection is compared byte for byte with what was sent, every echo's
 * length is checked. Then it prints
 *   RESULT round_trips=N seconds=S bytes=BYTES conns=CONNS frames=F
 * where N counts the echoes completed within the SECONDS, and F the data
 * frames they came in (F > N: the server fragments its echoes); exits 0.
 *
 * deflate: the handshake offers permessage-deflate (RFC 7692) with
 * client_no_context_takeover, and the server must accept it. The message is
 * then compressible text (JSON-like records with random numbers), deflated
 * once (zlib's default level: without context takeover it compresses the
 * same every time) and sent as one compressed frame; echoes are inflated
 * (with the server's context, unless it declared server_no_context_takeover)
 * whether they come compressed or not, and their inflated length checked.
 * The RESULT line then adds zbytes=Z, the compressed size sent.
 *
 * idle: once every connection is open, prints "ready N", holds them until its
 * standard input closes, prints "closed K" -- how many the server closed
 * meanwhile -- and exits 0 (the protocol of idle_client.c).
 *
 * Any failure prints a message to stderr and exits 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_PENDING 256
#define HEAD_MAX 4096
#define READ_BUF (256 * 1024)
#define STALL_MS 10000

enum { CONNECTING, UPGRADING, OPEN };

typedef struct {
  int fd;
  int state;
  int events; /* what epoll waits for */
  char accept[29]; /* the Sec-WebSocket-Accept the server must answer */
  char head[HEAD_MAX];
  size_t head_len;
  /* What is being written: a data frame and a pong; neither is cut into
   * by the other (a pong waits for the frame being written, if any). */
  uint8_t *out;
  size_t out_len, out_off;
  uint8_t pong[2 + 4 + 125];
  size_t pong_len, pong_off;
  /* The frame being read: its header so far, then its payload. */
  uint8_t hdr[10];
  size_t hdr_len;
  int in_payload;
  uint64_t payload_left;
  int opcode;       /* of the current frame */
  int fin;          /* of the current frame */
  int in_message;   /* a data message has started and not finished */
  uint64_t msg_got; /* payload bytes of the current echo so far */
  uint8_t ctrl[125];
  size_t ctrl_len;
  z_stream inf;    /* deflate: the server's messages inflated */
  int compressed;  /* the echo being read came compressed */
  int verified; /* the first echo has been compared */
  int sending;  /* a message is in flight */
} conn_t;

static size_t msg_bytes;
static uint8_t *plain; /* the payload every message carries */
static int deflate_on;      /* permessage-deflate negotiated */
static int server_reset;    /* the server declared server_no_context_takeover */
static uint8_t *zplain;     /* plain deflated, the tail dropped */
static size_t zplain_len;
static uint8_t *zout;       /* inflated bytes, a buffer at a time */
#define ZOUT (256 * 1024)
static uint64_t rng;
static int ep;
static int stopping;
static uint64_t round_trips;
static uint64_t data_frames; /* received, of the echoes counted */

static void die(const char *what) {
  fprintf(stderr, "ws_client: %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
  exit(1);
}

static void fail(const char *what) {
  errno = 0;
  die(what);
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* xorshift64*: masking keys need not be cryptographic, only unpredictable
 * to the server, and this costs a few instructions per frame. */
static uint32_t random32(void) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (uint32_t)((rng * 0x2545F4914F6CDD1DULL) >> 32);
}

/* ---- SHA-1 (FIPS 180-4) and base64, for the handshake's accept value ---- */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1(const uint8_t *data, size_t len, uint8_t out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  size_t total = ((len + 8) / 64 + 1) * 64;
  uint8_t msg[256];
  if (total > sizeof(msg)) fail("sha1: input too long");
  memset(msg, 0, total);
  memcpy(msg, data, len);
  msg[len] = 0x80;
  uint64_t bits = (uint64_t)len * 8;
  for (int i = 0; i < 8; i++)
    msg[total - 1 - i] = (uint8_t)(bits >> (8 * i));
  for (size_t off = 0; off < total; off += 64) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
      w[i] = (uint32_t)msg[off + 4 * i] << 24 | (uint32_t)msg[off + 4 * i + 1] << 16 |
             (uint32_t)msg[off + 4 * i + 2] << 8 | msg[off + 4 * i + 3];
    for (int i = 16; i < 80; i++)
      w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
      uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5A827999;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ED9EBA1;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8F1BBCDC;
      } else {
        f = b ^ c ^ d;
        k = 0xCA62C1D6;
      }
      uint32_t t = rol(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = rol(b, 30);
      b = a;
      a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
  }
  for (int i = 0; i < 20; i++)
    out[i] = (uint8_t)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static void base64(const uint8_t *in, size_t len, char *out) {
  static const char abc[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < len) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < len) v |= in[i + 2];
    out[o++] = abc[v >> 18];
    out[o++] = abc[(v >> 12) & 63];
    out[o++] = i + 1 < len ? abc[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < len ? abc[v & 63] : '=';
  }
  out[o] = 0;
}

/* ---- connections ---- */

static void watch(conn_t *c, int events) {
  if (c->events == events) return;
  struct epoll_event ev = {.events = (uint32_t)events, .data.ptr = c};
  if (epoll_ctl(ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) < 0)
    die("epoll_ctl");
  c->events = events;
}

static conn_t *open_conn(const struct sockaddr_in *addr) {
  conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) die("calloc");
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0) die("socket (raise ulimit -n?)");
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(c->fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0 &&
      errno != EINPROGRESS)
    die("connect");
  watch(c, EPOLLOUT);
  return c;
}

/* Sends the upgrade request (small enough for an empty socket buffer). */
static void send_upgrade(conn_t *c, const char *host, const char *path) {
  int err = 0;
  socklen_t len = sizeof(err);
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  errno = err;
  if (err) die("connect");
  uint8_t nonce[16];
  for (int i = 0; i < 16; i += 4) {
    uint32_t r = random32();
    memcpy(nonce + i, &r, 4);
  }
  char key[25], request[1024];
  base64(nonce, 16, key);
  char concat[64];
  snprintf(concat, sizeof(concat), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
  uint8_t digest[20];
  sha1((const uint8_t *)concat, strlen(concat), digest);
  base64(digest, 20, c->accept);
  int n = snprintf(request, sizeof(request),
                   "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n%s\r\n",
                   path, host, key,
                   deflate_on ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                "client_no_context_takeover; client_max_window_bits\r\n"
                              : "");
  if (write(c->fd, request, (size_t)n) != n) die("write (upgrade)");
  c->state = UPGRADING;
  watch(c, EPOLLIN);
}

/* Reads the 101 answer; returns the length of the head once it is whole
 * (bytes after it, if any, stay in c->head past that), 0 before. */
static size_t read_upgrade(conn_t *c) {
  ssize_t n = read(c->fd, c->head + c->head_len, HEAD_MAX - 1 - c->head_len);
  if (n < 0 && errno == EAGAIN) return 0;
  if (n <= 0) {
    if (n == 0) errno = ECONNRESET;
    die("read (upgrade)");
  }
  c->head_len += (size_t)n;
  c->head[c->head_len] = 0;
  char *end = strstr(c->head, "\r\n\r\n");
  if (end == NULL) {
    if (c->head_len == HEAD_MAX - 1) fail("upgrade answer too large");
    return 0;
  }
  if (strncmp(c->head, "HTTP/1.1 101", 12) != 0) {
    fprintf(stderr, "ws_client: expected 101 Switching Protocols, got: %.200s\n", c->head);
    exit(1);
  }
  int accepted = 0, extension = 0;
  for (char *line = strstr(c->head, "\r\n"); line && line < end;
       line = strstr(line + 2, "\r\n")) {
    if (strncasecmp(line + 2, "sec-websocket-accept:", 21) == 0) {
      char *v = line + 23;
      while (*v == ' ' || *v == '\t')
        v++;
      accepted = strncmp(v, c->accept, 28) == 0;
    }
    if (strncasecmp(line + 2, "sec-websocket-extensions:", 25) == 0) {
      char *eol = strstr(line + 2, "\r\n");
      char value[512];
      snprintf(value, sizeof(value), "%.*s", (int)(eol - line - 2), line + 2);
      if (!deflate_on || strstr(value, "permessage-deflate") == NULL)
        fail("an extension we did not offer");
      extension = 1;
      if (strstr(value, "server_no_context_takeover")) server_reset = 1;
    }
  }
  if (!accepted) fail("wrong or missing Sec-WebSocket-Accept");
  if (deflate_on && !extension) fail("the server declined permessage-deflate");
  if (deflate_on && inflateInit2(&c->inf, -15) != Z_OK) fail("inflateInit2");
  c->state = OPEN;
  return (size_t)(end + 4 - c->head);
}

/* Writes what is pending; returns when done or the socket is full. */
static void flush(conn_t *c) {
  for (;;) {
    int frame_started = c->out_off > 0 && c->out_off < c->out_len;
    uint8_t *p;
    size_t *off, len;
    if (c->pong_len && !frame_started) {
      p = c->pong, off = &c->pong_off, len = c->pong_len;
    } else if (c->out_off < c->out_len) {
      p = c->out, off = &c->out_off, len = c->out_len;
    } else {
      break;
    }
    ssize_t n = write(c->fd, p + *off, len - *off);
    if (n < 0) {
      if (errno == EAGAIN) break;
      die("write");
    }
    *off += (size_t)n;
    if (p == c->pong && c->pong_off == c->pong_len) c->pong_len = c->pong_off = 0;
  }
  int pending = c->pong_len || c->out_off < c->out_len;
  watch(c, pending ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

/* Writes a masked frame header for len payload bytes at p; returns its size. */
static size_t frame_header(uint8_t *p, int opcode, uint64_t len, uint32_t key) {
  size_t h = 0;
  p[h++] = (uint8_t)(0x80 | opcode);
  if (len < 126) {
    p[h++] = (uint8_t)(0x80 | len);
  } else if (len < 65536) {
    p[h++] = 0x80 | 126;
    p[h++] = (uint8_t)(len >> 8);
    p[h++] = (uint8_t)len;
  } else {
    p[h++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
      p[h++] = (uint8_t)(len >> (8 * i));
  }
  memcpy(p + h, &key, 4);
  return h + 4;
}

/* Masks n bytes of src into dst with key, starting at key byte 0 (RFC 6455
 * 5.3), eight bytes at a time. */
static void mask(uint8_t *dst, const uint8_t *src, size_t n, uint32_t key) {
  uint64_t k8 = (uint64_t)key << 32 | key;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, src + i, 8);
    v ^= k8;
    memcpy(dst + i, &v, 8);
  }
  const uint8_t *kb = (const uint8_t *)&key;
  for (; i < n; i++)
    dst[i] = src[i] ^ kb[i & 3];
}

static void send_message(conn_t *c) {
  uint32_t key = random32();
  const uint8_t *p = deflate_on ? zplain : plain;
  size_t n = deflate_on ? zplain_len : msg_bytes;
  size_t h = frame_header(c->out, deflate_on ? 0x40 | 2 : 2, n, key);
  mask(c->out + h, p, n, key);
  c->out_len = h + n;
  c->out_off = 0;
  c->sending = 1;
  c->msg_got = 0;
  flush(c);
}

/* Answers a ping (a pong still unsent is replaced: only the latest counts). */
static void queue_pong(conn_t *c) {
  if (c->pong_off > 0) return; /* one is being written: it will do */
  uint32_t key = random32();
  size_t h = frame_header(c->pong, 10, c->ctrl_len, key);
  mask(c->pong + h, c->ctrl, c->ctrl_len, key);
  c->pong_len = h + c->ctrl_len;
  flush(c);
}

/* Payload bytes of the echo: counted, and the first echo compared. */
static void echo_plain(conn_t *c, const uint8_t *p, size_t take) {
  if (!c->verified && c->msg_got + take <= msg_bytes &&
      memcmp(plain + c->msg_got, p, take) != 0)
    fail("the echo differs from the message sent");
  c->msg_got += take;
}

/* Payload bytes of an echo: inflated first when it came compressed. */
static void echo_bytes(conn_t *c, const uint8_t *p, size_t n) {
  if (!c->compressed) {
    echo_plain(c, p, n);
    return;
  }
  c->inf.next_in = (Bytef *)p;
  c->inf.avail_in = (uInt)n;
  do {
    c->inf.next_out = zout;
    c->inf.avail_out = ZOUT;
    int r = inflate(&c->inf, Z_SYNC_FLUSH);
    if (r != Z_OK && r != Z_BUF_ERROR) fail("an echo that does not inflate");
    echo_plain(c, zout, ZOUT - c->inf.avail_out);
  } while (c->inf.avail_out == 0);
}

/* A frame has ended (its payload is read). */
static void frame_done(conn_t *c) {
  if (c->opcode >= 8) {
    if (c->opcode == 8) fail("the server closed a connection");
    if (c->opcode == 9) queue_pong(c);
    return; /* a pong: ignored */
  }
  if (!stopping) data_frames++;
  if (!c->fin) return;
  if (c->compressed) {
    static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
    echo_bytes(c, tail, 4);
    if (server_reset) inflateReset(&c->inf);
  }
  c->in_message = 0;
  if (!c->sending) fail("an unasked-for message");
  if (c->msg_got != msg_bytes) {
    fprintf(stderr, "ws_client: sent %zu bytes, the echo has %llu\n", msg_bytes,
            (unsigned long long)c->msg_got);
    exit(1);
  }
  c->verified = 1;
  c->sending = 0;
  if (stopping) return;
  round_trips++;
  send_message(c);
}

/* How many bytes the header of the frame being read has: 2 until its
 * length byte is known, then 2, 4 or 10 (a server's frames are unmasked). */
static size_t header_need(const conn_t *c) {
  if (c->hdr_len < 2) return 2;
  if (c->hdr[1] & 0x80) fail("a masked frame from the server");
  uint8_t len7 = c->hdr[1] & 0x7f;
  return len7 == 126 ? 4 : len7 == 127 ? 10 : 2;
}

/* Checks the whole header in c->hdr and starts the frame's payload. */
static void header_parse(conn_t *c) {
  uint64_t len = c->hdr[1] & 0x7f;
  if (len == 126) len = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
  if (len == 127) {
    len = 0;
    for (int i = 2; i < 10; i++)
      len = len << 8 | c->hdr[i];
  }
  c->fin = c->hdr[0] >> 7;
  c->opcode = c->hdr[0] & 0x0f;
  int rsv1 = (c->hdr[0] & 0x40) != 0;
  if ((c->hdr[0] & 0x30) || (rsv1 && (!deflate_on || c->opcode != 2)))
    fail("reserved bits set in a frame");
  if (c->opcode == 2) c->compressed = rsv1;
  if (c->opcode >= 8) {
    if (!c->fin || len > 125) fail("a bad control frame");
    c->ctrl_len = 0;
  } else if (c->opcode == 0) {
    if (!c->in_message) fail("a continuation frame outside a message");
  } else if (c->opcode == 2) {
    if (c->in_message) fail("a new message inside a fragmented one");
    c->in_message = 1;
  } else {
    fail("an unexpected frame opcode (text or reserved)");
  }
  c->payload_left = len;
  c->in_payload = 1;
}

/* Consumes n received bytes at p: frame headers and payloads. */
static void received(conn_t *c, const uint8_t *p, size_t n) {
  for (;;) {
    if (!c->in_payload) {
      while (c->hdr_len < header_need(c) && n > 0) {
        c->hdr[c->hdr_len++] = *p++;
        n--;
      }
      if (c->hdr_len < header_need(c)) return;
      header_parse(c);
    }
    size_t take = c->payload_left < n ? (size_t)c->payload_left : n;
    if (c->opcode >= 8) {
      memcpy(c->ctrl + c->ctrl_len, p, take);
      c->ctrl_len += take;
    } else {
      echo_bytes(c, p, take);
    }
    p += take;
    n -= take;
    c->payload_left -= take;
    if (c->payload_left > 0) return; /* n is 0: the rest comes later */
    c->in_payload = 0;
    c->hdr_len = 0;
    frame_done(c);
    if (n == 0) return;
  }
}

static void read_frames(conn_t *c, uint8_t *buf) {
  ssize_t n = read(c->fd, buf, READ_BUF);
  if (n < 0 && errno == EAGAIN) return;
  if (n <= 0) {
    if (n == 0) errno = ECONNRESET;
    die("read");
  }
  received(c, buf, (size_t)n);
}

int main(int argc, char **argv) {
  int echo = (argc == 8 || (argc == 9 && strcmp(argv[8], "deflate") == 0)) &&
             strcmp(argv[4], "echo") == 0;
  deflate_on = argc == 9;
  int idle = argc == 6 && strcmp(argv[4], "idle") == 0;
  if (!echo && !idle) {
    fprintf(stderr, "usage: ws_client HOST PORT PATH echo CONNS BYTES SECONDS [deflate]\n"
                    "       ws_client HOST PORT PATH idle CONNS\n");
    return 2;
  }
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(argv[2]))};
  if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) fail("bad host");
  int n = atoi(argv[5]);
  msg_bytes = echo ? strtoull(argv[6], NULL, 10) : 0;
  double seconds = echo ? atof(argv[7]) : 0;
  if (n <= 0) fail("CONNS must be > 0");

  int urandom = open("/dev/urandom", O_RDONLY);
  if (urandom < 0 || read(urandom, &rng, sizeof(rng)) != sizeof(rng)) die("/dev/urandom");
  rng |= 1;
  plain = malloc(msg_bytes + 1);
  if (plain == NULL) die("malloc");
  for (size_t i = 0; i < msg_bytes; i++)
    plain[i] = (uint8_t)random32();
  close(urandom);
  if (deflate_on) {
    /* JSON-like records, their numbers random: text that deflates about
     * as an application's messages do. */
    size_t at = 0;
    while (at < msg_bytes) {
      char rec[160];
      int k = snprintf(rec, sizeof(rec),
                       "{\"id\":%u,\"user\":\"user-%u\",\"score\":%u.%02u,"
                       "\"tags\":[\"alpha\",\"beta\"],\"active\":%s},",
                       random32() % 1000000, random32() % 10000, random32() % 1000,
                       random32() % 100, random32() & 1 ? "true" : "false");
      size_t take = msg_bytes - at < (size_t)k ? msg_bytes - at : (size_t)k;
      memcpy(plain + at, rec, take);
      at += take;
    }
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
      fail("deflateInit2");
    size_t cap = deflateBound(&z, msg_bytes) + 16;
    zplain = malloc(cap);
    zout = malloc(ZOUT);
    if (zplain == NULL || zout == NULL) die("malloc");
    z.next_in = plain;
    z.avail_in = (uInt)msg_bytes;
    z.next_out = zplain;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_SYNC_FLUSH) != Z_OK || z.avail_in != 0) fail("deflate");
    zplain_len = cap - z.avail_out - 4; /* the 00 00 ff ff tail dropped */
    deflateEnd(&z);
  }

  conn_t **conns = calloc((size_t)n, sizeof(*conns));
  uint8_t *buf = malloc(READ_BUF);
  ep = epoll_create1(0);
  if (conns == NULL || buf == NULL || ep < 0) die("setup");

  /* Open and upgrade every connection, MAX_PENDING at a time. */
  int opened = 0, open_count = 0;
  struct epoll_event events[MAX_PENDING];
  while (open_count < n) {
    while (opened < n && opened - open_count < MAX_PENDING)
      conns[opened++] = open_conn(&addr);
    int k = epoll_wait(ep, events, MAX_PENDING, STALL_MS);
    if (k < 0 && errno != EINTR) die("epoll_wait");
    if (k == 0) fail("no progress for 10 s while connecting");
    for (int i = 0; i < k; i++) {
      conn_t *c = events[i].data.ptr;
      if (c->state == CONNECTING) {
        send_upgrade(c, argv[1], argv[3]);
      } else if (c->state == UPGRADING) {
        size_t head = read_upgrade(c);
        if (head == 0) continue;
        open_count++;
        if (c->head_len > head) fail("data before the first message");
        if (idle) {
          if (epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL) < 0) die("epoll_ctl");
          c->events = 0;
        } else {
          watch(c, EPOLLIN);
        }
      }
    }
  }

  if (idle) {
    printf("ready %d\n", n);
    fflush(stdout);
    char sink[256];
    while (read(0, sink, sizeof(sink)) > 0) {
    }
    /* A connection the server closed reads as end of file (or a reset). */
    int closed = 0;
    for (int i = 0; i < n; i++) {
      ssize_t r = recv(conns[i]->fd, sink, 1, MSG_PEEK | MSG_DONTWAIT);
      if (r == 0 || (r < 0 && errno != EAGAIN)) closed++;
    }
    printf("closed %d\n", closed);
    return 0;
  }

  for (int i = 0; i < n; i++) {
    conns[i]->out = malloc(14 + msg_bytes + sizeof(conns[i]->pong));
    if (conns[i]->out == NULL) die("malloc");
  }
  double start = now(), deadline = start + seconds;
  for (int i = 0; i < n; i++)
    send_message(conns[i]);
  for (;;) {
    double left = deadline - now();
    if (left <= 0) break;
    int k = epoll_wait(ep, events, MAX_PENDING, left < 0.05 ? 1 : 50);
    if (k < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < k; i++) {
      conn_t *c = events[i].data.ptr;
      if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) read_frames(c, buf);
      if (events[i].events & EPOLLOUT) flush(c);
    }
  }
  double elapsed = now() - start;
  stopping = 1;
  if (round_trips == 0) fail("no echo came back");
  /* A close frame (1000) where the socket has room, then the end: the
   * servers see a closing client, not a reset. */
  for (int i = 0; i < n; i++) {
    uint8_t frame[8];
    uint32_t key = random32();
    size_t h = frame_header(frame, 8, 2, key);
    uint8_t code[2] = {0x03, 0xe8};
    mask(frame + h, code, 2, key);
    if (conns[i]->out_off == conns[i]->out_len && write(conns[i]->fd, frame, h + 2) < 0) {
    }
    close(conns[i]->fd);
  }
  printf("RESULT round_trips=%llu seconds=%.6f bytes=%zu conns=%d frames=%llu",
         (unsigned long long)round_trips, elapsed, msg_bytes, n,
         (unsigned long long)data_frames);
  if (deflate_on) printf(" zbytes=%zu", zplain_len);
  printf("\n");
  return 0;
}
