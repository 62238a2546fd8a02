/* TLS streams over rill streams, with mbedTLS 2.28. See tls.h. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include "stream.h"
#include "tls.h"
#include "tls_ticket.h"

#if MBEDTLS_VERSION_NUMBER >= 0x03000000
#error "rill reads plaintext out of mbedTLS 2.x's record buffer; port tls.c for 3.x"
#endif

#define SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"
#define RECORD 16384     /* plaintext gathered into one record */
#define SESSION_CACHE 64 /* client sessions kept for resumption */

/* TLS 1.2, ECDHE key exchange, AEAD ciphers only. ChaCha20-Poly1305 first:
 * mbedTLS 2.28 seals it at about 1.8 times the speed of its AES-GCM (378
 * against 208 MB/s for 16 KiB records on this machine's AES-NI CPU), and
 * OpenSSL, browsers and curl are as fast at either. The server's order
 * decides. */
static const int suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    0,
};

/* Key exchange groups, fastest first: X25519, then P-256; P-384 for peers
 * that offer nothing else. mbedTLS would otherwise prefer P-521, at ten
 * times the cost of a handshake. */
static const mbedtls_ecp_group_id curves[] = {
    MBEDTLS_ECP_DP_CURVE25519,
    MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_NONE,
};

/* ---- per-worker state ---- */

typedef struct ca_s {
  struct ca_s *next;
  char *path;
  mbedtls_x509_crt crt;
} ca_t;

typedef struct session_s {
  struct session_s *next;
  char *key; /* see session_key() */
  mbedtls_ssl_session s;
} session_t;

typedef struct {
  rill_service_t svc; /* freed with the worker */
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  ca_t *cas;
  session_t *sessions;
  unsigned nsessions;
} tls_worker_t;

static void tls_worker_free(rill_service_t *svc, rill_worker_t *w);

static tls_worker_t *worker_tls(rill_worker_t *w) {
  if (w->tls) return w->tls;
  tls_worker_t *tw = calloc(1, sizeof(*tw));
  if (tw == NULL) return NULL;
  mbedtls_entropy_init(&tw->entropy);
  mbedtls_ctr_drbg_init(&tw->drbg);
  static const char pers[] = "rill worker";
  if (mbedtls_ctr_drbg_seed(&tw->drbg, mbedtls_entropy_func, &tw->entropy,
                            (const unsigned char *)pers, sizeof(pers) - 1) != 0) {
    mbedtls_ctr_drbg_free(&tw->drbg);
    mbedtls_entropy_free(&tw->entropy);
    free(tw);
    return NULL;
  }
  w->tls = tw;
  tw->svc.free = tls_worker_free;
  rill__worker_add_service(w, &tw->svc);
  return tw;
}

static void tls_worker_free(rill_service_t *svc, rill_worker_t *w) {
  tls_worker_t *tw = rill__container_of(svc, tls_worker_t, svc);
  for (ca_t *c = tw->cas, *next; c; c = next) {
    next = c->next;
    mbedtls_x509_crt_free(&c->crt);
    free(c->path);
    free(c);
  }
  for (session_t *s = tw->sessions, *next; s; s = next) {
    next = s->next;
    mbedtls_ssl_session_free(&s->s);
    free(s->key);
    free(s);
  }
  mbedtls_ctr_drbg_free(&tw->drbg);
  mbedtls_entropy_free(&tw->entropy);
  free(tw);
  w->tls = NULL;
}

/* A CA chain is parsed once per worker and file. */
static mbedtls_x509_crt *ca_chain(tls_worker_t *tw, const char *path, char *err,
                                  size_t errlen) {
  for (ca_t *c = tw->cas; c; c = c->next)
    if (strcmp(c->path, path) == 0) return &c->crt;
  ca_t *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  mbedtls_x509_crt_init(&c->crt);
  struct stat st;
  int r = stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? mbedtls_x509_crt_parse_path(&c->crt, path)
                                                      : mbedtls_x509_crt_parse_file(&c->crt, path);
  if (r < 0 || c->crt.version == 0) {
    char msg[128];
    mbedtls_strerror(r, msg, sizeof(msg));
    snprintf(err, errlen, "cannot load CA certificates %s: %s", path, msg);
    mbedtls_x509_crt_free(&c->crt);
    free(c);
    return NULL;
  }
  c->path = strdup(path);
  if (c->path == NULL) {
    snprintf(err, errlen, "out of memory");
    mbedtls_x509_crt_free(&c->crt);
    free(c);
    return NULL;
  }
  c->next = tw->cas;
  tw->cas = c;
  return &c->crt;
}

static session_t *session_find(tls_worker_t *tw, const char *key) {
  for (session_t *s = tw->sessions; s; s = s->next)
    if (strcmp(s->key, key) == 0) return s;
  return NULL;
}

static void session_save(tls_worker_t *tw, const char *key, mbedtls_ssl_context *ssl) {
  session_t *s = session_find(tw, key);
  if (s == NULL) {
    if (tw->nsessions >= SESSION_CACHE) return;
    s = calloc(1, sizeof(*s));
    if (s == NULL) return;
    s->key = strdup(key);
    mbedtls_ssl_session_init(&s->s);
    s->next = tw->sessions;
    tw->sessions = s;
    tw->nsessions++;
  } else {
    mbedtls_ssl_session_free(&s->s);
    mbedtls_ssl_session_init(&s->s);
  }
  mbedtls_ssl_get_session(ssl, &s->s);
}

/* ---- configurations ---- */

typedef struct {
  mbedtls_x509_crt crt;
  mbedtls_pk_context key;
} cert_t;

struct rill_tls_conf_s {
  int refs;
  int server;
  rill_worker_t *w;
  mbedtls_ssl_config conf;
  cert_t *certs;
  size_t ncerts;
  const char **alpn;
  unsigned timeout_ms;
  /* A client's trust, for session_key(): whether it verifies the peer, and
   * against which CA file. cert_path is the client certificate it would
   * present (none yet: always NULL). */
  int verify;
  char *ca_path;
  char *cert_path;
  /* A server's client-certificate check: RILL_TLS_VERIFY_* */
  int verify_client;
  /* A server's ticket keys: the process's (every worker's configuration
   * for every listener shares them), or a key file's (rill__tls_conf_ticket_keys). */
  rill_ticket_ctx_t ticket;
};

void rill__tls_conf_ref(rill_tls_conf_t *c) {
  c->refs++;
}

void rill__tls_conf_unref(rill_tls_conf_t *c) {
  if (c == NULL || --c->refs > 0) return;
  mbedtls_ssl_config_free(&c->conf);
  for (size_t i = 0; i < c->ncerts; i++) {
    mbedtls_x509_crt_free(&c->certs[i].crt);
    mbedtls_pk_free(&c->certs[i].key);
  }
  free(c->certs);
  free(c->ca_path);
  free(c->cert_path);
  if (c->alpn) {
    for (size_t i = 0; c->alpn[i]; i++)
      free((char *)c->alpn[i]);
    free(c->alpn);
  }
  free(c);
}

static int copy_alpn(rill_tls_conf_t *c, const char *const *alpn) {
  if (alpn == NULL || alpn[0] == NULL) return 0;
  size_t n = 0;
  while (alpn[n])
    n++;
  c->alpn = calloc(n + 1, sizeof(char *));
  if (c->alpn == NULL) return UV_ENOMEM;
  for (size_t i = 0; i < n; i++)
    if ((c->alpn[i] = strdup(alpn[i])) == NULL) return UV_ENOMEM;
  return mbedtls_ssl_conf_alpn_protocols(&c->conf, c->alpn) == 0 ? 0 : UV_EINVAL;
}

static rill_tls_conf_t *conf_new(rill_worker_t *w, int server, unsigned timeout_ms) {
  tls_worker_t *tw = worker_tls(w);
  if (tw == NULL) return NULL;
  rill_tls_conf_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  c->refs = 1;
  c->server = server;
  c->w = w;
  c->timeout_ms = timeout_ms ? timeout_ms : 10000;
  mbedtls_ssl_config_init(&c->conf);
  if (mbedtls_ssl_config_defaults(
          &c->conf, server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
          MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT)) {
    rill__tls_conf_unref(c);
    return NULL;
  }
  mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &tw->drbg);
  mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                               MBEDTLS_SSL_MINOR_VERSION_3);
  mbedtls_ssl_conf_ciphersuites(&c->conf, suites);
  mbedtls_ssl_conf_curves(&c->conf, curves);
  mbedtls_ssl_conf_renegotiation(&c->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
  return c;
}

/* Does host match the certificate name pattern (a "*." wildcard takes one
 * label)? Case-insensitive. */
static int name_matches(const char *pat, size_t plen, const char *host, size_t hlen) {
  if (plen > 2 && pat[0] == '*' && pat[1] == '.') {
    const char *dot = memchr(host, '.', hlen);
    if (dot == NULL || dot == host) return 0;
    size_t rest = hlen - (size_t)(dot - host);
    return rest == plen - 1 && strncasecmp(dot, pat + 1, rest) == 0;
  }
  return plen == hlen && strncasecmp(pat, host, hlen) == 0;
}

static int cert_matches(const mbedtls_x509_crt *crt, const char *host, size_t hlen) {
  const mbedtls_x509_sequence *san = &crt->subject_alt_names;
  int has_dns = 0;
  for (; san && san->buf.p; san = san->next) {
    if (san->buf.tag != (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_DNS_NAME))
      continue;
    has_dns = 1;
    if (name_matches((const char *)san->buf.p, san->buf.len, host, hlen)) return 1;
  }
  if (has_dns) return 0;
  for (const mbedtls_x509_name *n = &crt->subject; n; n = n->next)
    if (n->oid.p && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0 &&
        name_matches((const char *)n->val.p, n->val.len, host, hlen))
      return 1;
  return 0;
}

static void sni_remember(mbedtls_ssl_context *ssl, const unsigned char *name, size_t len);

static int sni_cb(void *p, mbedtls_ssl_context *ssl, const unsigned char *name,
                  size_t len) {
  rill_tls_conf_t *c = p;
  sni_remember(ssl, name, len);
  for (size_t i = 0; i < c->ncerts; i++)
    if (cert_matches(&c->certs[i].crt, (const char *)name, len))
      return mbedtls_ssl_set_hs_own_cert(ssl, &c->certs[i].crt, &c->certs[i].key);
  return 0; /* an unknown name gets the default certificate */
}

int rill__tls_server_conf(rill_worker_t *w, const rill_tls_pair_t *pairs, size_t n,
                          const char *const *alpn, unsigned handshake_timeout_ms,
                          rill_tls_conf_t **out, char *err, size_t errlen) {
  if (n == 0) {
    snprintf(err, errlen, "TLS needs a certificate and a key");
    return UV_EINVAL;
  }
  rill_tls_conf_t *c = conf_new(w, 1, handshake_timeout_ms);
  if (c == NULL) {
    snprintf(err, errlen, "cannot set up TLS");
    return UV_ENOMEM;
  }
  c->certs = calloc(n, sizeof(cert_t));
  if (c->certs == NULL) {
    snprintf(err, errlen, "out of memory");
    rill__tls_conf_unref(c);
    return UV_ENOMEM;
  }
  char msg[128];
  int r;
  for (size_t i = 0; i < n; i++) {
    cert_t *ct = &c->certs[i];
    mbedtls_x509_crt_init(&ct->crt);
    mbedtls_pk_init(&ct->key);
    c->ncerts = i + 1;
    r = mbedtls_x509_crt_parse_file(&ct->crt, pairs[i].cert);
    if (r != 0) {
      mbedtls_strerror(r, msg, sizeof(msg));
      snprintf(err, errlen, "cannot load certificate %s: %s", pairs[i].cert, msg);
      rill__tls_conf_unref(c);
      return UV_EINVAL;
    }
    r = mbedtls_pk_parse_keyfile(&ct->key, pairs[i].key, NULL);
    if (r != 0) {
      mbedtls_strerror(r, msg, sizeof(msg));
      snprintf(err, errlen, "cannot load key %s: %s", pairs[i].key, msg);
      rill__tls_conf_unref(c);
      return UV_EINVAL;
    }
    if (mbedtls_pk_check_pair(&ct->crt.pk, &ct->key) != 0) {
      snprintf(err, errlen, "key %s does not match certificate %s", pairs[i].key,
               pairs[i].cert);
      rill__tls_conf_unref(c);
      return UV_EINVAL;
    }
  }
  mbedtls_ssl_conf_own_cert(&c->conf, &c->certs[0].crt, &c->certs[0].key);
  if (n > 1)
    mbedtls_ssl_conf_sni(&c->conf, sni_cb, c);
  else
    mbedtls_ssl_conf_sni(&c->conf, sni_cb, c); /* only to remember the name asked for */
  tls_worker_t *tw = w->tls;
  c->ticket.f_rng = mbedtls_ctr_drbg_random;
  c->ticket.p_rng = &tw->drbg;
  /* Without them, sessions resume by ticket on no worker: not an error. */
  c->ticket.keys = rill__ticket_keys(NULL, msg, sizeof(msg));
  if (c->ticket.keys)
    mbedtls_ssl_conf_session_tickets_cb(&c->conf, rill__ticket_write, rill__ticket_parse,
                                        &c->ticket);
  if ((r = copy_alpn(c, alpn)) != 0) {
    snprintf(err, errlen, r == UV_ENOMEM ? "out of memory" : "bad ALPN protocol list");
    rill__tls_conf_unref(c);
    return r;
  }
  *out = c;
  return 0;
}

int rill__tls_conf_ticket_keys(rill_tls_conf_t *c, const char *path, char *err,
                               size_t errlen) {
  rill_ticket_keys_t *ks = rill__ticket_keys(path, err, errlen);
  if (ks == NULL) return UV_EINVAL;
  if (c->ticket.keys == NULL)
    mbedtls_ssl_conf_session_tickets_cb(&c->conf, rill__ticket_write, rill__ticket_parse,
                                        &c->ticket);
  c->ticket.keys = ks;
  return 0;
}

int rill__tls_conf_verify_client(rill_tls_conf_t *c, const char *ca_file, int mode,
                                 char *err, size_t errlen) {
  if (!c->server || mode < RILL_TLS_VERIFY_NONE || mode > RILL_TLS_VERIFY_REQUIRED) {
    snprintf(err, errlen, "verify_client must be \"optional\" or \"required\"");
    return UV_EINVAL;
  }
  if (mode == RILL_TLS_VERIFY_NONE) return 0;
  if (ca_file == NULL) {
    snprintf(err, errlen, "verify_client needs client_ca (a CA file)");
    return UV_EINVAL;
  }
  mbedtls_x509_crt *ca = ca_chain(c->w->tls, ca_file, err, errlen);
  if (ca == NULL) return UV_EINVAL;
  mbedtls_ssl_conf_ca_chain(&c->conf, ca, NULL);
  mbedtls_ssl_conf_authmode(&c->conf, mode == RILL_TLS_VERIFY_REQUIRED
                                          ? MBEDTLS_SSL_VERIFY_REQUIRED
                                          : MBEDTLS_SSL_VERIFY_OPTIONAL);
  /* A session resumed skips the certificate request: tickets sealed with
   * keys the whole process shares could carry a session made where no
   * certificate (or another CA's) was asked for. No tickets here. */
  mbedtls_ssl_conf_session_tickets_cb(&c->conf, NULL, NULL, NULL);
  mbedtls_ssl_conf_session_tickets(&c->conf, MBEDTLS_SSL_SESSION_TICKETS_DISABLED);
  c->verify_client = mode;
  return 0;
}

int rill__tls_client_conf(rill_worker_t *w, const char *ca_file, int verify,
                          const char *const *alpn, unsigned handshake_timeout_ms,
                          rill_tls_conf_t **out, char *err, size_t errlen) {
  rill_tls_conf_t *c = conf_new(w, 0, handshake_timeout_ms);
  if (c == NULL) {
    snprintf(err, errlen, "cannot set up TLS");
    return UV_ENOMEM;
  }
  if (verify) {
    /* The system's store, unless the environment names another, as
     * OpenSSL's clients read it (a file wins over a directory). */
    if (ca_file == NULL) ca_file = getenv("SSL_CERT_FILE");
    if (ca_file == NULL || *ca_file == 0) ca_file = getenv("SSL_CERT_DIR");
    if (ca_file == NULL || *ca_file == 0) ca_file = SYSTEM_CA;
    mbedtls_x509_crt *ca = ca_chain(w->tls, ca_file, err, errlen);
    if (ca != NULL && (c->ca_path = strdup(ca_file)) == NULL)
      snprintf(err, errlen, "out of memory");
    if (ca == NULL || c->ca_path == NULL) {
      rill__tls_conf_unref(c);
      return ca == NULL ? UV_EINVAL : UV_ENOMEM;
    }
    c->verify = 1;
    mbedtls_ssl_conf_ca_chain(&c->conf, ca, NULL);
    mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
  } else {
    mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_NONE);
  }
  int r = copy_alpn(c, alpn);
  if (r != 0) {
    snprintf(err, errlen, r == UV_ENOMEM ? "out of memory" : "bad ALPN protocol list");
    rill__tls_conf_unref(c);
    return r;
  }
  *out = c;
  return 0;
}

/* The key a client keeps its session under, for resumption: the peer (the
 * name asked for, its address and port) and the trust it was accepted with
 * (verify mode, CA file, the client certificate presented). Resuming skips
 * the certificate check, so a session is only offered where the same
 * certificate would have been accepted: one made with verify = false never
 * on a verifying connection, one verified against a CA file never where
 * another is trusted. Formatted
 *
 *   "verify=V ca=N:PATH cert=N:PATH peer=ADDRESS:PORT name=NAME"
 *
 * (V 0 or 1; N the length of the PATH after it, 0 and nothing for none;
 * "peer=-" when lower has no address); the lengths and the name last make
 * every key stand for one tuple only. Returns a malloc'd string or NULL. */
static char *session_key(const rill_tls_conf_t *c, rill_stream_t *lower,
                         const char *name) {
  const char *ca = c->ca_path ? c->ca_path : "";
  const char *cert = c->cert_path ? c->cert_path : "";
  char addr[64], peer[80];
  int port = rill__stream_addr(lower, 1, addr, sizeof(addr));
  if (port > 0)
    snprintf(peer, sizeof(peer), "%s:%d", addr, port);
  else
    snprintf(peer, sizeof(peer), "-");
  /* 80: the fixed text, a digit and two lengths of up to 20 digits, the NUL. */
  size_t len = strlen(ca) + strlen(cert) + strlen(peer) + strlen(name) + 80;
  char *key = malloc(len);
  if (key)
    snprintf(key, len, "verify=%d ca=%zu:%s cert=%zu:%s peer=%s name=%s", c->verify,
             strlen(ca), ca, strlen(cert), cert, peer, name);
  return key;
}

/* ---- the stream ---- */

enum { S_HANDSHAKE, S_OPEN };

typedef struct {
  rill_stream_t base;
  rill_obj_t obj;
  rill_binding_t lower_b; /* bound to lower, which this stream owns */
  rill_tls_conf_t *conf;
  rill_stream_t *lower; /* NULL once gone */
  mbedtls_ssl_context ssl;
  uv_timer_t timer; /* the handshake's deadline */
  int state;
  int err;
  char errmsg[448];
  char name_msg[256]; /* a verifying client: why the name did not match */
  char *session_key; /* clients: where to keep the session */
  char sni[256];
  char *stage; /* plaintext gathered to become a record, RECORD bytes */
  size_t staged;
  rill_flush_t fl; /* listed while stage holds bytes */
  /* lower_full: the lower stream is above its high-water mark; rblocked: a
   * reader stopped for it (records we have not read may make mbedTLS write:
   * alerts, refusals of renegotiation), until the lower stream drains. */
  unsigned want : 1, lower_full : 1, drain_wait : 1, closing : 1, timer_on : 1,
      read_eof : 1, rblocked : 1;
} tls_t;

#define T(s) rill__container_of((s), tls_t, base)

static const rill_stream_vt tls_vt;
static void tls_release(tls_t *t, int abort);

static void sni_remember(mbedtls_ssl_context *ssl, const unsigned char *name,
                         size_t len) {
  tls_t *t = ssl->p_bio;
  if (len >= sizeof(t->sni)) len = sizeof(t->sni) - 1;
  memcpy(t->sni, name, len);
  t->sni[len] = 0;
}

/* mbedTLS pulls record bytes: exactly what it asks for, never more. */
static int bio_recv(void *ctx, unsigned char *buf, size_t len) {
  tls_t *t = ctx;
  if (t->lower == NULL) return MBEDTLS_ERR_NET_RECV_FAILED;
  const char *p;
  size_t n;
  int r = t->lower->vt->peek(t->lower, &p, &n);
  if (r == RILL_EOF) return 0;
  if (r < 0) return MBEDTLS_ERR_NET_RECV_FAILED;
  if (n == 0) return MBEDTLS_ERR_SSL_WANT_READ;
  if (n > len) n = len;
  memcpy(buf, p, n);
  t->lower->vt->consume(t->lower, n);
  return (int)n;
}

/* The lower stream takes every record; past its high-water mark we note it
 * and make our writer wait for its drain. */
static int bio_send(void *ctx, const unsigned char *buf, size_t len) {
  tls_t *t = ctx;
  if (t->lower == NULL) return MBEDTLS_ERR_NET_SEND_FAILED;
  uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
  int r = t->lower->vt->write(t->lower, &b, 1);
  if (r == RILL_EAGAIN) {
    t->lower_full = 1;
    return (int)len;
  }
  if (r < 0) return MBEDTLS_ERR_NET_SEND_FAILED;
  return (int)len;
}

static void timer_stop(tls_t *t) {
  if (!t->timer_on) return;
  uv_timer_stop(&t->timer);
  t->timer_on = 0;
}

/* ---- the peer's name ---- */

/* Whether the certificate has an iPAddress name equal to the literal
 * address name (mbedTLS 2.28 matches DNS names only). */
static int ip_matches(const mbedtls_x509_crt *crt, const char *name) {
  unsigned char ip[16];
  size_t len;
  if (inet_pton(AF_INET, name, ip) == 1)
    len = 4;
  else if (inet_pton(AF_INET6, name, ip) == 1)
    len = 16;
  else
    return 0;
  for (const mbedtls_x509_sequence *san = &crt->subject_alt_names; san && san->buf.p;
       san = san->next)
    if (san->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_IP_ADDRESS) &&
        san->buf.len == len && memcmp(san->buf.p, ip, len) == 0)
      return 1;
  return 0;
}

/* Appends the names the certificate is for to out: its DNS and IP
 * subject alternative names, else its Common Name. */
static void cert_names(const mbedtls_x509_crt *crt, char *out, size_t len) {
  size_t n = 0;
  int any = 0;
  out[0] = 0;
  for (const mbedtls_x509_sequence *san = &crt->subject_alt_names; san && san->buf.p;
       san = san->next) {
    char one[INET6_ADDRSTRLEN + 8];
    if (san->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_DNS_NAME)) {
      snprintf(one, sizeof(one), "%.*s", (int)(san->buf.len < 60 ? san->buf.len : 60),
               (const char *)san->buf.p);
    } else if (san->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_IP_ADDRESS) &&
               (san->buf.len == 4 || san->buf.len == 16)) {
      inet_ntop(san->buf.len == 4 ? AF_INET : AF_INET6, san->buf.p, one, sizeof(one));
    } else {
      continue;
    }
    int k = snprintf(out + n, len - n, "%s%s", any ? ", " : "", one);
    if (k < 0 || (size_t)k >= len - n) return;
    n += (size_t)k;
    any = 1;
  }
  if (any) {
    snprintf(out + n, len - n, " (its subject alternative names)");
    return;
  }
  for (const mbedtls_x509_name *cn = &crt->subject; cn; cn = cn->next)
    if (cn->oid.p && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &cn->oid) == 0) {
      snprintf(out, len, "%.*s (its Common Name; it has no subject alternative names)",
               (int)(cn->val.len < 60 ? cn->val.len : 60), (const char *)cn->val.p);
      return;
    }
  snprintf(out, len, "no name");
}

/* A verifying client's check of the server's certificate, after mbedTLS's
 * own: an address is matched against iPAddress names, and a name that does
 * not match is said with the names the certificate has. */
static int verify_cb(void *p, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
  tls_t *t = p;
  const char *name = t->ssl.hostname;
  if (depth != 0 || name == NULL || !(*flags & MBEDTLS_X509_BADCERT_CN_MISMATCH)) return 0;
  if (ip_matches(crt, name)) {
    *flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
  }
  char names[150];
  cert_names(crt, names, sizeof(names));
  snprintf(t->name_msg, sizeof(t->name_msg), "the certificate is for %s, not %.60s", names, name);
  return 0;
}

/* Records a failure, with a message for Lua. */
static int tls_fail(tls_t *t, int mbed, int err) {
  if (t->err) return t->err;
  t->err = err;
  if (mbed == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
    char info[160];
    uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
    if ((flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) && t->name_msg[0] &&
        !(flags & ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH)) {
      snprintf(t->errmsg, sizeof(t->errmsg), "certificate verify failed: %s", t->name_msg);
      timer_stop(t);
      return err;
    }
    /* The name's failure, said with names, after the first other one. */
    const char *also = "";
    if ((flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) && t->name_msg[0]) {
      flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
      also = t->name_msg;
    }
    int n = mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
    if (n > 0 && info[n - 1] == '\n') info[n - 1] = 0;
    char *nl = strchr(info, '\n');
    if (nl) *nl = 0;
    snprintf(t->errmsg, sizeof(t->errmsg), "certificate verify failed: %s%s%s", info,
             *also ? "; and " : "", also);
  } else if (mbed) {
    char m[160];
    mbedtls_strerror(mbed, m, sizeof(m));
    snprintf(t->errmsg, sizeof(t->errmsg), "TLS: %s", m);
  }
  timer_stop(t);
  return err;
}

static const char *tls_strerror(rill_stream_t *s, int err) {
  tls_t *t = T(s);
  if (err == t->err && t->errmsg[0]) return t->errmsg;
  return NULL;
}

/* One step of the handshake. Returns 0 once done, RILL_EAGAIN when mbedTLS
 * has taken all the lower stream holds, or an error. */
static int hs_step(tls_t *t) {
  if (t->err) return t->err;
  if (t->state == S_OPEN) return 0;
  int r = mbedtls_ssl_handshake(&t->ssl);
  if (r == 0 && t->conf->verify_client) {
    /* optional: a certificate given must verify; required: mbedTLS has
     * checked it (and here it cannot be missing, resumed or not) */
    const mbedtls_x509_crt *peer = mbedtls_ssl_get_peer_cert(&t->ssl);
    if ((peer || t->conf->verify_client == RILL_TLS_VERIFY_REQUIRED) &&
        mbedtls_ssl_get_verify_result(&t->ssl) != 0) {
      mbedtls_ssl_send_alert_message(&t->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                     MBEDTLS_SSL_ALERT_MSG_BAD_CERT);
      rill__log(t->base.w, RILL_LOG_DEBUG,
                "TLS: a client certificate that does not verify");
      return tls_fail(t, MBEDTLS_ERR_X509_CERT_VERIFY_FAILED, RILL_EPROTO);
    }
  }
  if (r == 0) {
    t->state = S_OPEN;
    timer_stop(t);
    if (t->session_key) session_save(t->conf->w->tls, t->session_key, &t->ssl);
    return 0;
  }
  if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) return RILL_EAGAIN;
  rill__log(t->base.w, RILL_LOG_DEBUG, "TLS handshake failed: -0x%04x", (unsigned)-r);
  if (r == MBEDTLS_ERR_NET_RECV_FAILED || r == MBEDTLS_ERR_NET_SEND_FAILED ||
      r == MBEDTLS_ERR_SSL_CONN_EOF)
    return tls_fail(t, 0, RILL_ECLOSED);
  return tls_fail(t, r, RILL_EPROTO);
}

/* Tells our reader, if one asked (fill or handshake), that it may go on. */
static void wake_reader(tls_t *t, int status) {
  if (!t->want) return;
  t->want = 0;
  rill__stream_readable(&t->base, status);
}

static void timer_cb(uv_timer_t *h) {
  tls_t *t = h->data;
  t->timer_on = 0;
  if (t->state != S_HANDSHAKE || t->err) return;
  rill__log(t->base.w, RILL_LOG_DEBUG, "TLS handshake timed out");
  tls_fail(t, 0, UV_ETIMEDOUT);
  snprintf(t->errmsg, sizeof(t->errmsg), "TLS handshake timeout");
  wake_reader(t, UV_ETIMEDOUT);
}

static void lower_readable(rill_binding_t *b, int status) {
  tls_t *t = rill__container_of(b, tls_t, lower_b);
  wake_reader(t, status);
}

static void lower_drained(rill_binding_t *b, int status) {
  tls_t *t = rill__container_of(b, tls_t, lower_b);
  t->lower_full = 0;
  if (t->rblocked) {
    t->rblocked = 0;
    wake_reader(t, status);
  }
  if (!t->drain_wait) return;
  t->drain_wait = 0;
  rill__stream_drained(&t->base, status);
}

/* The stream below closed under us (a worker's teardown): so do we. */
static void lower_gone(rill_binding_t *b) {
  tls_t *t = rill__container_of(b, tls_t, lower_b);
  t->lower = NULL;
  if (!t->err) t->err = RILL_ECLOSED;
  tls_release(t, 1);
}

static const rill_binding_ops_t lower_ops = {
    .readable = lower_readable,
    .drained = lower_drained,
    .gone = lower_gone,
};

/* Asks the lower stream for more. Returns 0 if mbedTLS may go on now (the
 * lower stream had bytes at once), RILL_EAGAIN if lower_readable follows,
 * or an error. */
static int fill_lower(tls_t *t) {
  if (t->lower == NULL) return RILL_ECLOSED;
  int r = rill__stream_fill(t->lower);
  if (r < 0) return r == RILL_EOF ? RILL_ECLOSED : r;
  const char *p;
  size_t n;
  if (t->lower->vt->peek(t->lower, &p, &n) == 0 && n > 0) return 0;
  return RILL_EAGAIN;
}

static int tls_peek(rill_stream_t *s, const char **p, size_t *n) {
  tls_t *t = T(s);
  *p = NULL;
  *n = 0;
  if (t->err) return t->err;
  if (t->read_eof) return RILL_EOF;
  if (t->state == S_HANDSHAKE) {
    int r = hs_step(t);
    if (r == RILL_EAGAIN) return 0;
    if (r < 0) return r;
  }
  for (;;) {
    if (t->ssl.in_offt != NULL && t->ssl.in_msglen > 0) {
      *p = (const char *)t->ssl.in_offt;
      *n = t->ssl.in_msglen;
      return 0;
    }
    /* Reading a record may make mbedTLS answer it (an alert): not while
     * the lower stream is above its high-water mark. */
    if (t->lower_full) {
      t->rblocked = 1;
      return 0;
    }
    /* A read of length 0 decrypts the next record in place and leaves its
     * plaintext at in_offt. */
    unsigned char dummy;
    int r = mbedtls_ssl_read(&t->ssl, &dummy, 0);
    if (r == 0 && t->ssl.in_offt != NULL) continue;
    if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) return 0;
    /* mbedTLS reports the end of the lower stream as a read of 0 bytes, and
     * an empty record (which peers may send, several in a row) too: only
     * the lower stream can tell which. */
    if (r == 0 && t->lower) {
      const char *lp;
      size_t ln;
      if (t->lower->vt->peek(t->lower, &lp, &ln) != RILL_EOF) continue;
    }
    if (r == 0 || r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY ||
        r == MBEDTLS_ERR_SSL_CONN_EOF) {
      t->read_eof = 1; /* we may still write: a half-close, as with TCP */
      return RILL_EOF;
    }
    if (r == MBEDTLS_ERR_NET_RECV_FAILED) {
      const char *lp;
      size_t ln;
      int lr = t->lower ? t->lower->vt->peek(t->lower, &lp, &ln) : RILL_ECLOSED;
      return tls_fail(t, 0, lr < 0 ? lr : RILL_ECLOSED);
    }
    return tls_fail(t, r, RILL_EPROTO);
  }
}

static void tls_consume(rill_stream_t *s, size_t n) {
  tls_t *t = T(s);
  assert(t->ssl.in_offt != NULL && n <= t->ssl.in_msglen);
  /* What mbedtls_ssl_read() does after copying n bytes out. */
  t->ssl.in_msglen -= n;
  if (t->ssl.in_msglen == 0) {
    t->ssl.in_offt = NULL;
    t->ssl.keep_current_message = 0;
  } else {
    t->ssl.in_offt += n;
  }
}

/* mbedTLS takes what the lower stream holds first (a record may be complete
 * already); only when the lower stream is empty is it filled. */
static int tls_fill(rill_stream_t *s) {
  tls_t *t = T(s);
  for (;;) {
    const char *p;
    size_t n;
    int r = tls_peek(s, &p, &n);
    if (r < 0) return r;
    if (n > 0) return 0;
    if (t->rblocked) {
      t->want = 1; /* the lower stream's drain wakes us */
      return 0;
    }
    r = fill_lower(t);
    if (r == RILL_EAGAIN) {
      t->want = 1;
      return 0;
    }
    if (r < 0) return tls_fail(t, 0, r);
  }
}

static int flush_stage(tls_t *t, const char *p, size_t len) {
  size_t off = 0;
  while (off < len) {
    int r = mbedtls_ssl_write(&t->ssl, (const unsigned char *)p + off, len - off);
    if (r < 0)
      return tls_fail(t, r,
                      r == MBEDTLS_ERR_NET_SEND_FAILED ? RILL_ECLOSED : RILL_EPROTO);
    off += (size_t)r;
  }
  return 0;
}

/* Seals what the writes of a burst gathered, in one record. */
static int seal(tls_t *t) {
  rill__flush_remove(t->base.w, &t->fl);
  if (t->staged == 0) return t->err;
  size_t n = t->staged;
  t->staged = 0;
  int r = t->err ? t->err : flush_stage(t, t->stage, n);
  free(t->stage);
  t->stage = NULL;
  return r;
}

static void seal_listed(rill_flush_t *f) {
  seal(rill__container_of(f, tls_t, fl));
}

static int tls_write(rill_stream_t *s, const uv_buf_t *bufs, unsigned nbufs) {
  tls_t *t = T(s);
  if (t->err) return t->err;
  if (t->state != S_OPEN || t->closing) return RILL_ECLOSED;
  for (unsigned i = 0; i < nbufs; i++) {
    const char *p = bufs[i].base;
    size_t len = bufs[i].len;
    while (len > 0) {
      if (t->staged == 0 && len >= RECORD) {
        /* Whole records straight from the caller's bytes. */
        size_t whole = len - len % RECORD;
        int r = flush_stage(t, p, whole);
        if (r) return r;
        p += whole;
        len -= whole;
        continue;
      }
      if (t->stage == NULL && (t->stage = malloc(RECORD)) == NULL) return UV_ENOMEM;
      size_t take = RECORD - t->staged < len ? RECORD - t->staged : len;
      memcpy(t->stage + t->staged, p, take);
      t->staged += take;
      p += take;
      len -= take;
      if (t->staged == RECORD) {
        t->staged = 0;
        int r = flush_stage(t, t->stage, RECORD);
        if (r) return r;
      }
    }
  }
  if (t->staged) rill__flush_add(s->w, &t->fl);
  if (t->lower_full) {
    t->drain_wait = 1;
    return RILL_EAGAIN;
  }
  return 0;
}

static int tls_shutdown(rill_stream_t *s) {
  tls_t *t = T(s);
  if (t->lower == NULL) return RILL_ECLOSED;
  if (t->state == S_OPEN && !t->err && seal(t) == 0) mbedtls_ssl_close_notify(&t->ssl);
  return t->lower->vt->shutdown ? t->lower->vt->shutdown(t->lower) : 0;
}

static void timer_closed(uv_handle_t *h) {
  tls_t *t = h->data;
  mbedtls_ssl_free(&t->ssl);
  rill__tls_conf_unref(t->conf);
  free(t->stage);
  free(t->session_key);
  free(t);
}

/* Tells our bindings, then closes (or resets) the stream below, which is
 * ours. */
static void tls_release(tls_t *t, int abort) {
  if (t->closing) return;
  t->closing = 1;
  t->want = 0;
  rill__stream_gone(&t->base);
  timer_stop(t);
  rill__obj_unlink(&t->obj);
  rill_stream_t *lower = t->lower;
  if (!abort && lower && t->state == S_OPEN) seal(t);
  rill__flush_remove(t->base.w, &t->fl);
  if (lower) {
    if (!abort && t->state == S_OPEN && !t->err) mbedtls_ssl_close_notify(&t->ssl);
    rill__stream_unbind(&t->lower_b);
    t->lower = NULL;
    if (abort)
      lower->vt->abort(lower);
    else
      lower->vt->close(lower); /* after an error too: the peer gets our alert and a FIN */
  }
  uv_close((uv_handle_t *)&t->timer, timer_closed);
}

static void tls_close(rill_stream_t *s) {
  tls_release(T(s), 0);
}

static void tls_abort(rill_stream_t *s) {
  tls_release(T(s), 1);
}

static int tls_addr(rill_stream_t *s, int peer, char *host, size_t hostlen) {
  tls_t *t = T(s);
  return t->lower ? rill__stream_addr(t->lower, peer, host, hostlen) : RILL_ECLOSED;
}

static int tls_ref(rill_stream_t *s, int ref) {
  tls_t *t = T(s);
  return t->lower ? rill__stream_ref(t->lower, ref) : RILL_ECLOSED;
}

static int tls_flush(rill_stream_t *s) {
  tls_t *t = T(s);
  int r = seal(t);
  if (r) return r;
  return t->lower ? rill__stream_flush(t->lower) : RILL_ECLOSED;
}

static const rill_stream_vt tls_vt = {
    .name = "tls",
    .peek = tls_peek,
    .consume = tls_consume,
    .fill = tls_fill,
    .write = tls_write,
    .flush = tls_flush,
    .shutdown = tls_shutdown,
    .close = tls_close,
    .abort = tls_abort,
    .strerror = tls_strerror,
    .addr = tls_addr,
    .ref = tls_ref,
};

static void tls_destroy(rill_obj_t *o) {
  tls_release(rill__container_of(o, tls_t, obj), 1);
}

rill_stream_t *rill__tls_new(rill_tls_conf_t *conf, rill_stream_t *lower,
                             const char *server_name) {
  rill_worker_t *w = conf->w;
  tls_t *t = calloc(1, sizeof(*t));
  if (t == NULL) {
    lower->vt->abort(lower);
    return NULL;
  }
  rill__stream_init(&t->base, &tls_vt, w);
  t->fl.flush = seal_listed;
  t->fl.level = RILL_FLUSH_ABOVE;
  t->lower = lower;
  rill__stream_bind(lower, &t->lower_b, &lower_ops);
  t->conf = conf;
  rill__tls_conf_ref(conf);
  mbedtls_ssl_init(&t->ssl);
  uv_timer_init(w->loop, &t->timer);
  t->timer.data = t;
  rill__obj_link(w, &t->obj, tls_destroy);
  if (mbedtls_ssl_setup(&t->ssl, &conf->conf) != 0) {
    tls_release(t, 1);
    return NULL;
  }
  mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
  if (!conf->server && server_name) {
    mbedtls_ssl_set_hostname(&t->ssl, server_name);
    if (conf->verify) mbedtls_ssl_set_verify(&t->ssl, verify_cb, t);
    t->session_key = session_key(conf, lower, server_name);
    session_t *saved = t->session_key ? session_find(conf->w->tls, t->session_key) : NULL;
    /* Belt and braces: a verifying client resumes only what was verified. */
    if (saved && (!conf->verify || saved->s.verify_result == 0))
      mbedtls_ssl_set_session(&t->ssl, &saved->s);
  }
  t->state = S_HANDSHAKE;
  uv_update_time(w->loop);
  uv_timer_start(&t->timer, timer_cb, conf->timeout_ms, 0);
  t->timer_on = 1;
  return &t->base;
}

int rill__tls_handshake(rill_stream_t *s) {
  tls_t *t = T(s);
  assert(s->top != NULL && "bind to a TLS stream before its handshake");
  for (;;) {
    int r = hs_step(t);
    if (r != RILL_EAGAIN) return r;
    r = fill_lower(t);
    if (r == RILL_EAGAIN) {
      t->want = 1;
      return RILL_EAGAIN;
    }
    if (r < 0) return tls_fail(t, 0, r);
  }
}

rill_stream_t *rill__tls_lower(rill_stream_t *s) {
  return rill__tls_is(s) ? T(s)->lower : NULL;
}

int rill__tls_is(rill_stream_t *s) {
  return s->vt == &tls_vt;
}

const char *rill__tls_alpn(rill_stream_t *s) {
  return rill__tls_is(s) ? mbedtls_ssl_get_alpn_protocol(&T(s)->ssl) : NULL;
}

const char *rill__tls_version(rill_stream_t *s) {
  return rill__tls_is(s) && T(s)->state == S_OPEN ? mbedtls_ssl_get_version(&T(s)->ssl)
                                                  : NULL;
}

const char *rill__tls_cipher(rill_stream_t *s) {
  return rill__tls_is(s) && T(s)->state == S_OPEN
             ? mbedtls_ssl_get_ciphersuite(&T(s)->ssl)
             : NULL;
}

int rill__tls_client_cert(rill_stream_t *s, rill_tls_peer_t *out) {
  if (!rill__tls_is(s) || T(s)->state != S_OPEN || !T(s)->conf->server ||
      !T(s)->conf->verify_client)
    return 0;
  const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(&T(s)->ssl);
  if (crt == NULL || mbedtls_ssl_get_verify_result(&T(s)->ssl) != 0) return 0;
  if (mbedtls_x509_dn_gets(out->subject, sizeof(out->subject), &crt->subject) < 0)
    out->subject[0] = 0;
  if (mbedtls_x509_dn_gets(out->issuer, sizeof(out->issuer), &crt->issuer) < 0)
    out->issuer[0] = 0;
  out->dns[0] = out->email[0] = 0;
  for (const mbedtls_x509_sequence *san = &crt->subject_alt_names; san && san->buf.p;
       san = san->next) {
    int tag = san->buf.tag & ~MBEDTLS_ASN1_CONTEXT_SPECIFIC;
    char *dst = tag == MBEDTLS_X509_SAN_DNS_NAME      ? out->dns
                : tag == MBEDTLS_X509_SAN_RFC822_NAME ? out->email
                                                      : NULL;
    size_t len = dst == out->dns ? sizeof(out->dns) : sizeof(out->email);
    if (dst == NULL || dst[0] || san->buf.len >= len || memchr(san->buf.p, 0, san->buf.len))
      continue; /* the first of each kind, whole */
    memcpy(dst, san->buf.p, san->buf.len);
    dst[san->buf.len] = 0;
  }
  unsigned char sum[32];
  out->sha256[0] = 0;
  if (mbedtls_sha256_ret(crt->raw.p, crt->raw.len, sum, 0) == 0)
    for (int i = 0; i < 32; i++)
      snprintf(out->sha256 + 2 * i, 3, "%02x", sum[i]);
  return 1;
}

const char *rill__tls_sni(rill_stream_t *s) {
  return rill__tls_is(s) && T(s)->sni[0] ? T(s)->sni : NULL;
}
