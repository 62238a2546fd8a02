/* Shared dicts: named key/value stores in memory that every worker of the
 * process sees (rill.shared.dict). No Lua here, and no Lua value crosses a
 * thread: a value is copied in under the dict's lock and copied out into the
 * caller's buffer under it.
 *
 * The registry. rill__sdict_open(name, cap) makes a dict the first time a
 * name is used, with a byte cap; later calls with the same name, from any
 * thread, return the same dict and keep the first cap (the caller may read
 * it with rill__sdict_capacity). Dicts live as long as the process: a
 * pointer to one never dangles, so the Lua face can hold it as a light
 * userdata and a reload keeps the data.
 *
 * A dict is a hash table (SipHash with a key drawn per dict, so that a peer
 * choosing keys cannot make the chains long) of key → value, where a value
 * is a string (bytes), a number (a double) or a boolean, with an optional
 * expiry on the monotonic clock (ms). Entries are kept in order of use.
 * Every entry costs sizeof its record + key bytes + value bytes; the sum
 * never passes the cap. When a store needs room, expired entries at the
 * least recently used end go first; then `set` and `replace` evict live
 * ones, least recently used first, and say so (return 1), while
 * `safe_set` and `add` fail with RILL_SD_ENOMEM instead.
 *
 * Locking: one mutex per dict, held only to find and copy. Entries are
 * allocated before the lock is taken and those a store removes are freed
 * after it is dropped; nothing is called back under it. */
#ifndef RILL_SHARED_DICT_H
#define RILL_SHARED_DICT_H

#include "rill_int.h"

typedef struct rill_sdict_s rill_sdict_t;

/* Value types, as rill__sdict_get returns them. */
enum { RILL_SD_NONE = 0, RILL_SD_STRING = 1, RILL_SD_NUMBER = 2, RILL_SD_BOOLEAN = 3 };
/* How rill__sdict_set stores. */
enum { RILL_SD_SET = 0, RILL_SD_SAFE_SET = 1, RILL_SD_ADD = 2, RILL_SD_REPLACE = 3 };

#define RILL_SD_KEY_MAX 65535 /* bytes in a key */
#define RILL_SD_MIN_CAP 4096  /* the smallest cap a dict may have */

/* Errors (messages from rill__sdict_errmsg). */
#define RILL_SD_ENOMEM (-30101)    /* "no memory": no room without evicting */
#define RILL_SD_EEXISTS (-30102)   /* "exists": add found a live value */
#define RILL_SD_ENOTFOUND (-30103) /* "not found" */
#define RILL_SD_ENOTNUM (-30104)   /* "not a number": incr on another type */
/* "too large": a key past RILL_SD_KEY_MAX, an entry larger than the cap */
#define RILL_SD_ETOOLARGE (-30105)

/* The message for an error of this file ("no memory", ...), else
 * rill__errmsg's. */
const char *rill__sdict_errmsg(int err);

/* The dict named name (nlen bytes), made with cap bytes (at least
 * RILL_SD_MIN_CAP) if it does not exist yet. *created (if not NULL) says
 * whether this call made it. NULL when out of memory. Thread-safe. */
rill_sdict_t *rill__sdict_open(const char *name, size_t nlen, size_t cap, int *created);

/* Looks key up. Returns the value's type, RILL_SD_NONE when there is none
 * (or it expired), and the value: a number or a boolean (0 or 1) in *num; a
 * string's length in *len, its bytes copied into buf when they fit in
 * bufcap (when *len > bufcap nothing is copied: ask again with a buffer
 * that large). A hit makes the entry the most recently used. */
int rill__sdict_get(rill_sdict_t *d, const char *key, size_t klen, char *buf,
                    size_t bufcap, size_t *len, double *num);

/* Stores key → a value of type (RILL_SD_STRING: the len bytes at s;
 * RILL_SD_NUMBER: num; RILL_SD_BOOLEAN: num != 0) that expires after
 * ttl_ms (<= 0: never), as mode says (see the top). Returns 0, 1 when room
 * was made by evicting live entries, or RILL_SD_ENOMEM, RILL_SD_EEXISTS
 * (add), RILL_SD_ENOTFOUND (replace), RILL_SD_ETOOLARGE, UV_ENOMEM,
 * UV_EINVAL (a bad type or mode). */
int rill__sdict_set(rill_sdict_t *d, const char *key, size_t klen, int type,
                    const char *s, size_t len, double num, double ttl_ms, int mode);

/* Adds by to the number at key, keeping its expiry; the result in *out.
 * A key with no value: with has_init, it becomes init + by, expiring after
 * init_ttl_ms (<= 0: never), evicting as `set` does; else
 * RILL_SD_ENOTFOUND. A value that is not a number: RILL_SD_ENOTNUM.
 * Returns 0, 1 (made room by evicting) or an error. */
int rill__sdict_incr(rill_sdict_t *d, const char *key, size_t klen, double by,
                     int has_init, double init, double init_ttl_ms, double *out);

/* Removes key. Returns 0, or RILL_SD_ENOTFOUND if it held no value. */
int rill__sdict_delete(rill_sdict_t *d, const char *key, size_t klen);

/* The time key has left in *ms_left (0: it never expires). Returns 0, or
 * RILL_SD_ENOTFOUND. */
int rill__sdict_ttl(rill_sdict_t *d, const char *key, size_t klen, double *ms_left);

/* Sets key's expiry to ttl_ms from now (<= 0: never). Returns 0, or
 * RILL_SD_ENOTFOUND. */
int rill__sdict_expire(rill_sdict_t *d, const char *key, size_t klen, double ttl_ms);

/* Removes every entry. */
void rill__sdict_flush_all(rill_sdict_t *d);

/* Removes expired entries, at most max of them (0: all). Returns how many. */
int rill__sdict_flush_expired(rill_sdict_t *d, int max);

/* The keys with live values, most recently used first, at most max (0:
 * all): *out is one malloc'd block (the caller frees it) of *count records,
 * each a 2-byte big-endian length and the key's bytes. Returns 0 or
 * UV_ENOMEM. */
int rill__sdict_keys(rill_sdict_t *d, int max, char **out, size_t *count);

/* The cap, and the bytes left under it (both in bytes). */
double rill__sdict_capacity(rill_sdict_t *d);
double rill__sdict_free_space(rill_sdict_t *d);
/* The number of entries (expired ones not yet removed included). */
double rill__sdict_count(rill_sdict_t *d);

/* For tests: checks the dict's bookkeeping (every entry in its bucket and in
 * the list once, the bytes and the count summed, within the cap). Returns
 * 0, or the number of the first check that failed. */
int rill__sdict_verify(rill_sdict_t *d);

#endif /* RILL_SHARED_DICT_H */
