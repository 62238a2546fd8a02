/* Session tickets with process-wide keys. See tls_ticket.h.
 *
 * A ticket is name (16 bytes, the key's) | nonce (12) | the session as
 * mbedtls_ssl_session_save writes it, sealed | tag (16), the name being
 * the additional data. Keys live in sets guarded by a read-write lock:
 * sealing and opening copy the key under the read lock, a rotation or a
 * reload replaces keys under the write lock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/gcm.h>
#include <mbedtls/sha256.h>
#include <mbedtls/ssl.h>
#include <uv.h>

#include "tls_ticket.h"

#define NAME 16
#define NONCE 12
#define TAG 16

typedef struct {
  unsigned char name[NAME];
  unsigned char key[32];
} tkey_t;

struct rill_ticket_keys_s {
  rill_ticket_keys_t *next;
  char *path; /* NULL: made here, rotated */
  uv_rwlock_t lock;
  tkey_t keys[RILL_TICKET_KEYS_MAX]; /* [0] seals */
  int nkeys;
  time_t made; /* when keys[0] was made (a set without a file) */
};

/* Every set made, for lookups by path and reloads. */
static uv_once_t once = UV_ONCE_INIT;
static uv_mutex_t sets_lock;
static rill_ticket_keys_t *sets;

static void init_once(void) {
  uv_mutex_init(&sets_lock);
}

static int random_key(tkey_t *k) {
  return uv_random(NULL, NULL, k, sizeof(*k), 0, NULL);
}

/* Reads the keys of path into keys[]: name = the first 16 bytes of each
 * 80-byte key, the AES key = SHA-256 of its other 64. Returns the number
 * of keys, or -1 with a message. */
static int read_file(const char *path, tkey_t *keys, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    snprintf(err, errlen, "cannot read TLS ticket keys %s", path);
    return -1;
  }
  unsigned char buf[RILL_TICKET_KEY_FILE_BYTES * RILL_TICKET_KEYS_MAX + 1];
  size_t n = fread(buf, 1, sizeof(buf), f);
  fclose(f);
  if (n == 0 || n % RILL_TICKET_KEY_FILE_BYTES != 0 || n >= sizeof(buf)) {
    snprintf(err, errlen,
             "TLS ticket keys %s: %zu bytes; the file holds 1 to %d keys of %d bytes",
             path, n, RILL_TICKET_KEYS_MAX, RILL_TICKET_KEY_FILE_BYTES);
    return -1;
  }
  int nk = (int)(n / RILL_TICKET_KEY_FILE_BYTES);
  for (int i = 0; i < nk; i++) {
    const unsigned char *k = buf + i * RILL_TICKET_KEY_FILE_BYTES;
    memcpy(keys[i].name, k, NAME);
    mbedtls_sha256_ret(k + NAME, RILL_TICKET_KEY_FILE_BYTES - NAME, keys[i].key, 0);
  }
  memset(buf, 0, sizeof(buf));
  return nk;
}

rill_ticket_keys_t *rill__ticket_keys(const char *path, char *err, size_t errlen) {
  uv_once(&once, init_once);
  uv_mutex_lock(&sets_lock);
  rill_ticket_keys_t *ks;
  for (ks = sets; ks; ks = ks->next)
    if (path ? ks->path && strcmp(ks->path, path) == 0 : ks->path == NULL) break;
  if (ks == NULL && (ks = calloc(1, sizeof(*ks))) != NULL) {
    int n = 0;
    if (path) {
      n = read_file(path, ks->keys, err, errlen);
      if (n > 0 && (ks->path = strdup(path)) == NULL) n = -1;
    } else if (random_key(&ks->keys[0]) == 0) {
      n = 1;
      ks->made = time(NULL);
    }
    if (n <= 0) {
      if (n == 0) snprintf(err, errlen, "cannot make TLS ticket keys");
      free(ks->path);
      free(ks);
      ks = NULL;
    } else {
      ks->nkeys = n;
      uv_rwlock_init(&ks->lock);
      ks->next = sets;
      sets = ks;
    }
  } else if (ks == NULL) {
    snprintf(err, errlen, "out of memory");
  }
  uv_mutex_unlock(&sets_lock);
  return ks;
}

int rill__ticket_keys_reload(char *err, size_t errlen) {
  uv_once(&once, init_once);
  int r = 0;
  uv_mutex_lock(&sets_lock);
  for (rill_ticket_keys_t *ks = sets; ks; ks = ks->next) {
    if (ks->path == NULL) continue;
    tkey_t keys[RILL_TICKET_KEYS_MAX];
    char msg[256];
    int n = read_file(ks->path, keys, msg, sizeof(msg));
    if (n < 0 && r == 0) snprintf(err, errlen, "%s", msg);
    if (n < 0) {
      r = -1;
      continue;
    }
    uv_rwlock_wrlock(&ks->lock);
    memcpy(ks->keys, keys, sizeof(keys[0]) * (size_t)n);
    ks->nkeys = n;
    uv_rwlock_wrunlock(&ks->lock);
    memset(keys, 0, sizeof(keys));
  }
  uv_mutex_unlock(&sets_lock);
  return r;
}

/* A set without a file gets a new sealing key every lifetime; the one
 * before opens the tickets it sealed until they expire. */
static void rotate(rill_ticket_keys_t *ks, time_t now) {
  tkey_t k;
  if (random_key(&k) != 0) return;
  uv_rwlock_wrlock(&ks->lock);
  if (now - ks->made >= RILL_TICKET_LIFETIME) {
    ks->keys[1] = ks->keys[0];
    ks->keys[0] = k;
    ks->nkeys = 2;
    ks->made = now;
  }
  uv_rwlock_wrunlock(&ks->lock);
  memset(&k, 0, sizeof(k));
}

int rill__ticket_write(void *p, const mbedtls_ssl_session *session, unsigned char *start,
                       const unsigned char *end, size_t *tlen, uint32_t *lifetime) {
  rill_ticket_ctx_t *ctx = p;
  rill_ticket_keys_t *ks = ctx->keys;
  time_t now = time(NULL);
  if (ks->path == NULL && now - ks->made >= RILL_TICKET_LIFETIME) rotate(ks, now);
  if (end - start < NAME + NONCE + TAG) return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
  size_t room = (size_t)(end - start) - NAME - NONCE - TAG, slen;
  unsigned char *body = start + NAME + NONCE;
  int r = mbedtls_ssl_session_save(session, body, room, &slen);
  if (r) return r;
  if ((r = ctx->f_rng(ctx->p_rng, start + NAME, NONCE)) != 0) return r;
  tkey_t k;
  uv_rwlock_rdlock(&ks->lock);
  k = ks->keys[0];
  uv_rwlock_rdunlock(&ks->lock);
  memcpy(start, k.name, NAME);
  mbedtls_gcm_context gcm;
  mbedtls_gcm_init(&gcm);
  r = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, k.key, 256);
  if (r == 0)
    r = mbedtls_gcm_crypt_and_tag(&gcm, MBEDTLS_GCM_ENCRYPT, slen, start + NAME, NONCE,
                                  start, NAME, body, body, TAG, body + slen);
  mbedtls_gcm_free(&gcm);
  memset(&k, 0, sizeof(k));
  if (r) return r;
  *tlen = NAME + NONCE + slen + TAG;
  *lifetime = RILL_TICKET_LIFETIME;
  return 0;
}

int rill__ticket_parse(void *p, mbedtls_ssl_session *s, unsigned char *buf, size_t len) {
  rill_ticket_ctx_t *ctx = p;
  rill_ticket_keys_t *ks = ctx->keys;
  if (len < NAME + NONCE + TAG) return MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
  tkey_t k;
  int found = 0;
  uv_rwlock_rdlock(&ks->lock);
  for (int i = 0; i < ks->nkeys && !found; i++)
    if (memcmp(ks->keys[i].name, buf, NAME) == 0) {
      k = ks->keys[i];
      found = 1;
    }
  uv_rwlock_rdunlock(&ks->lock);
  if (!found) return MBEDTLS_ERR_SSL_INVALID_MAC;
  size_t clen = len - NAME - NONCE - TAG;
  unsigned char *body = buf + NAME + NONCE;
  mbedtls_gcm_context gcm;
  mbedtls_gcm_init(&gcm);
  int r = mbedtls_gcm_setkey(&gcm, MBEDTLS_CIPHER_ID_AES, k.key, 256);
  if (r == 0)
    r = mbedtls_gcm_auth_decrypt(&gcm, clen, buf + NAME, NONCE, buf, NAME, body + clen,
                                 TAG, body, body);
  mbedtls_gcm_free(&gcm);
  memset(&k, 0, sizeof(k));
  if (r) return MBEDTLS_ERR_SSL_INVALID_MAC;
  if ((r = mbedtls_ssl_session_load(s, body, clen)) != 0) return r;
  time_t now = time(NULL);
  if (s->start > now || now - s->start > RILL_TICKET_LIFETIME)
    return MBEDTLS_ERR_SSL_SESSION_TICKET_EXPIRED;
  return 0;
}
