/* TLS session tickets whose keys the whole process shares, so that a
 * session made on one worker resumes on any other, and, with a key file,
 * on other instances. A ticket is the session sealed with AES-256-GCM under
 * the current key; the keys before it still open tickets. No Lua. */
#ifndef RILL_TLS_TICKET_H
#define RILL_TLS_TICKET_H

#include <stddef.h>
#include <stdint.h>

#include <mbedtls/ssl.h>

#define RILL_TICKET_KEY_FILE_BYTES 80 /* one key in a key file */
#define RILL_TICKET_KEYS_MAX 16       /* keys in a file */
#define RILL_TICKET_LIFETIME 43200    /* seconds: a ticket, and a made key */

typedef struct rill_ticket_keys_s rill_ticket_keys_t;

/* What mbedTLS's ticket callbacks get (one per TLS configuration): the key
 * set, and the configuration's random generator for the nonces. */
typedef struct {
  rill_ticket_keys_t *keys;
  int (*f_rng)(void *, unsigned char *, size_t);
  void *p_rng;
} rill_ticket_ctx_t;

/* The key set read from path, or (path NULL) the process's own keys, made
 * at random when first asked for and replaced every RILL_TICKET_LIFETIME
 * (the one before still opens tickets). A file holds one or more 80-byte
 * keys; the first seals new tickets. Each set is made once and kept for
 * the process's life; any thread may call this. Returns NULL with a
 * message in err. */
rill_ticket_keys_t *rill__ticket_keys(const char *path, char *err, size_t errlen);

/* Reads every key file again (rill reload, SIGHUP): a file that fails
 * keeps its old keys. Returns 0, or the first error with a message. */
int rill__ticket_keys_reload(char *err, size_t errlen);

/* mbedtls_ssl_conf_session_tickets_cb's callbacks; p is a
 * rill_ticket_ctx_t. A ticket whose key is not in the set, or whose seal
 * does not open, is refused (a full handshake follows). */
int rill__ticket_write(void *p, const mbedtls_ssl_session *session, unsigned char *start,
                       const unsigned char *end, size_t *tlen, uint32_t *lifetime);
int rill__ticket_parse(void *p, mbedtls_ssl_session *session, unsigned char *buf,
                       size_t len);

#endif /* RILL_TLS_TICKET_H */
