/* Unit tests of the shared TLS ticket keys (core/tls_ticket.c): a ticket
 * sealed by one configuration opens in another that shares the key set
 * (another worker); a key file's first key seals and the others open; a
 * reload swaps keys; a ticket under a key no longer listed, or tampered
 * with, is refused; bad key files are refused with a message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>

#include "tls_ticket.h"

#include "check.h"

static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;

static void write_keys(const char *path, const unsigned char *keys, size_t n) {
  FILE *f = fopen(path, "wb");
  fwrite(keys, 1, n, f);
  fclose(f);
}

/* Seals a session whose ciphersuite is cs; returns the ticket's length. */
static size_t seal(rill_ticket_ctx_t *ctx, int cs, unsigned char *buf, size_t cap) {
  mbedtls_ssl_session s;
  mbedtls_ssl_session_init(&s);
  s.ciphersuite = cs;
  s.start = time(NULL);
  size_t len = 0;
  uint32_t life = 0;
  int r = rill__ticket_write(ctx, &s, buf, buf + cap, &len, &life);
  CHECK(r == 0, "write: -0x%x", (unsigned)-r);
  CHECK(life == RILL_TICKET_LIFETIME, "lifetime %u", (unsigned)life);
  mbedtls_ssl_session_free(&s);
  return len;
}

/* Opens a copy of the ticket; returns the result, *cs the ciphersuite. */
static int open_copy(rill_ticket_ctx_t *ctx, const unsigned char *t, size_t len,
                     int *cs) {
  unsigned char copy[4096];
  memcpy(copy, t, len);
  mbedtls_ssl_session s;
  mbedtls_ssl_session_init(&s);
  int r = rill__ticket_parse(ctx, &s, copy, len);
  *cs = s.ciphersuite;
  mbedtls_ssl_session_free(&s);
  return r;
}

int main(void) {
  mbedtls_entropy_init(&entropy);
  mbedtls_ctr_drbg_init(&drbg);
  mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0);
  char err[256];
  unsigned char t[4096];
  int cs;

  /* The process's own keys: one set, whoever asks. */
  rill_ticket_keys_t *own = rill__ticket_keys(NULL, err, sizeof(err));
  CHECK(own != NULL && own == rill__ticket_keys(NULL, err, sizeof(err)), "one own set");
  rill_ticket_ctx_t w0 = {own, mbedtls_ctr_drbg_random, &drbg};
  rill_ticket_ctx_t w1 = {own, mbedtls_ctr_drbg_random, &drbg};
  size_t len = seal(&w0, 0xC02B, t, sizeof(t));
  CHECK(len > 16 + 12 + 16, "ticket of %zu bytes", len);
  CHECK(open_copy(&w1, t, len, &cs) == 0 && cs == 0xC02B, "another worker opens it");
  t[len / 2] ^= 1;
  CHECK(open_copy(&w1, t, len, &cs) == MBEDTLS_ERR_SSL_INVALID_MAC, "tampered: refused");
  CHECK(open_copy(&w1, t, 20, &cs) != 0, "cut short: refused");

  /* Key files. */
  char dir[] = "/tmp/rill-ticket-XXXXXX";
  if (!mkdtemp(dir)) return 1;
  char path[300], bad[300];
  snprintf(path, sizeof(path), "%s/keys", dir);
  snprintf(bad, sizeof(bad), "%s/bad", dir);
  unsigned char k[3][80];
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 80; j++)
      k[i][j] = (unsigned char)(i * 80 + j * 7 + 1);
  write_keys(path, k[0], 80);
  rill_ticket_keys_t *fk = rill__ticket_keys(path, err, sizeof(err));
  CHECK(fk != NULL && fk != own, "a file's set");
  CHECK(rill__ticket_keys(path, err, sizeof(err)) == fk, "read once per path");
  rill_ticket_ctx_t f0 = {fk, mbedtls_ctr_drbg_random, &drbg};
  unsigned char t1[4096];
  size_t len1 = seal(&f0, 0xCCA9, t1, sizeof(t1));
  CHECK(memcmp(t1, k[0], 16) == 0, "named by the key's first 16 bytes");
  CHECK(open_copy(&w0, t1, len1, &cs) == MBEDTLS_ERR_SSL_INVALID_MAC,
        "the own set does not open the file's tickets");

  /* Reload: a new key first, the old one still opens. */
  unsigned char two[160];
  memcpy(two, k[1], 80);
  memcpy(two + 80, k[0], 80);
  write_keys(path, two, 160);
  CHECK(rill__ticket_keys_reload(err, sizeof(err)) == 0, "reload: %s", err);
  CHECK(open_copy(&f0, t1, len1, &cs) == 0 && cs == 0xCCA9,
        "old ticket opens after reload");
  unsigned char t2[4096];
  size_t len2 = seal(&f0, 0xC02F, t2, sizeof(t2));
  CHECK(memcmp(t2, k[1], 16) == 0, "the new first key seals");
  /* The old key dropped: its tickets are refused, the new one's open. */
  write_keys(path, k[1], 80);
  CHECK(rill__ticket_keys_reload(err, sizeof(err)) == 0, "reload: %s", err);
  CHECK(open_copy(&f0, t1, len1, &cs) == MBEDTLS_ERR_SSL_INVALID_MAC,
        "dropped key: refused");
  CHECK(open_copy(&f0, t2, len2, &cs) == 0 && cs == 0xC02F, "kept key opens");
  /* A bad file at reload keeps the old keys. */
  write_keys(path, k[2], 48);
  CHECK(rill__ticket_keys_reload(err, sizeof(err)) != 0 && strstr(err, "48 bytes"),
        "a bad file at reload: %s", err);
  CHECK(open_copy(&f0, t2, len2, &cs) == 0, "the old keys stay");

  /* Bad files at start. */
  write_keys(bad, k[2], 79);
  CHECK(rill__ticket_keys(bad, err, sizeof(err)) == NULL && strstr(err, "79 bytes"),
        "79 bytes: %s", err);
  CHECK(rill__ticket_keys("/nonexistent/keys", err, sizeof(err)) == NULL &&
            strstr(err, "cannot read"),
        "no file: %s", err);
  unsigned char many[80 * 17];
  memset(many, 1, sizeof(many));
  write_keys(bad, many, sizeof(many));
  CHECK(rill__ticket_keys(bad, err, sizeof(err)) == NULL, "17 keys: refused");

  remove(path);
  remove(bad);
  rmdir(dir);
  mbedtls_ctr_drbg_free(&drbg);
  mbedtls_entropy_free(&entropy);
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
