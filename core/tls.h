/* TLS (mbedTLS 2.28) as a stream layered over any rill stream.
 *
 * The handshake is a state machine driven by MBEDTLS_ERR_SSL_WANT_READ: when
 * mbedTLS wants bytes the lower stream is asked to fill, and the step runs
 * again when they come, so a slow handshake never blocks the loop. Records
 * are read from the lower stream only as far as mbedTLS asks, so bytes after
 * a record stay below. Plaintext is handed out of mbedTLS's record buffer
 * without a copy; writes are gathered into records of up to 16 KiB. No Lua. */
#ifndef RILL_TLS_H
#define RILL_TLS_H

#include "stream.h"

typedef struct rill_tls_conf_s rill_tls_conf_t;

typedef struct {
  const char *cert; /* PEM files */
  const char *key;
} rill_tls_pair_t;

/* A server configuration: the first pair is the default certificate, the
 * others are chosen by SNI against their names (CN and subjectAltName DNS
 * names, wildcards too). alpn: NULL-terminated protocols, or NULL. Returns 0
 * or an error with a one-line message naming the file in err. */
int rill__tls_server_conf(rill_worker_t *w, const rill_tls_pair_t *pairs, size_t n,
                          const char *const *alpn, unsigned handshake_timeout_ms,
                          rill_tls_conf_t **out, char *err, size_t errlen);

/* Makes a server configuration seal and open session tickets with the keys
 * of a key file (tls_ticket.h) instead of the process's own. Returns 0 or
 * UV_EINVAL with a message naming the file in err. */
int rill__tls_conf_ticket_keys(rill_tls_conf_t *c, const char *path, char *err,
                               size_t errlen);

/* Makes a server configuration ask clients for a certificate signed by a CA
 * of ca_file (parsed once per worker): RILL_TLS_VERIFY_REQUIRED fails the
 * handshake without a valid one, RILL_TLS_VERIFY_OPTIONAL fails it only
 * when a certificate given does not verify. Such a configuration issues and
 * takes no session tickets (a resumed session skips the check). Returns 0 or
 * UV_EINVAL with a message in err. */
enum {
  RILL_TLS_VERIFY_NONE = 0,
  RILL_TLS_VERIFY_OPTIONAL = 1,
  RILL_TLS_VERIFY_REQUIRED = 2
};
int rill__tls_conf_verify_client(rill_tls_conf_t *c, const char *ca_file, int mode,
                                 char *err, size_t errlen);

/* A client configuration: verify the peer against ca_file (NULL: the system
 * bundle) unless verify is 0. */
int rill__tls_client_conf(rill_worker_t *w, const char *ca_file, int verify,
                          const char *const *alpn, unsigned handshake_timeout_ms,
                          rill_tls_conf_t **out, char *err, size_t errlen);

void rill__tls_conf_ref(rill_tls_conf_t *c);
void rill__tls_conf_unref(rill_tls_conf_t *c);

/* Wraps lower in TLS: the new stream binds to lower and owns it (closing
 * the TLS stream closes lower). server_name: for a client, the name sent by
 * SNI and checked against the certificate. Returns NULL when out of memory
 * (lower is then closed). The handshake timer starts at once. A client
 * resumes only sessions made under the same trust (CA and verify mode), for
 * the same name at the same address. */
rill_stream_t *rill__tls_new(rill_tls_conf_t *conf, rill_stream_t *lower,
                             const char *server_name);

/* Drives the handshake, as a fill does: returns 0 once done, an error, or
 * RILL_EAGAIN, and then the stream's readable() follows (bind first); call
 * again then. Reading a TLS stream drives the handshake too, so a server
 * need not call this. */
int rill__tls_handshake(rill_stream_t *s);

int rill__tls_is(rill_stream_t *s);
/* The stream a TLS stream runs over, or NULL for other streams. */
rill_stream_t *rill__tls_lower(rill_stream_t *s);
/* After the handshake: the negotiated ALPN protocol, the version, the
 * ciphersuite, the name the client asked for by SNI (servers). NULL if none. */
const char *rill__tls_alpn(rill_stream_t *s);
const char *rill__tls_version(rill_stream_t *s);
const char *rill__tls_cipher(rill_stream_t *s);
const char *rill__tls_sni(rill_stream_t *s);
/* A verified client certificate: its subject and issuer ("CN=..., O=..."),
 * its first subjectAltName DNS name and e-mail address ("" when none), and
 * the SHA-256 of its DER encoding in lower-case hex (as `openssl x509
 * -fingerprint -sha256` gives it, without colons). */
typedef struct {
  char subject[512], issuer[512];
  char dns[256], email[256];
  char sha256[65];
} rill_tls_peer_t;
/* A server stream that checks client certificates, after the handshake: 1
 * and *out, or 0 when the client gave none. */
int rill__tls_client_cert(rill_stream_t *s, rill_tls_peer_t *out);

#endif
