/* Shared channels: publish/subscribe between the workers of a process
 * (rill.shared.channel). No Lua here.
 *
 * A channel is named and counted: each rill__chan_open and each subscriber
 * holds a reference, and the registry frees the channel when the last goes
 * (so names an app makes from a peer's input do not pile up). Publishing
 * copies the message once into a block with a reference count and appends it
 * to every subscriber's queue; each subscriber takes its messages in the
 * order the channel got them (one lock per channel orders the publishers).
 *
 * A queue is bounded, in messages and in bytes. A publisher never waits for
 * a subscriber: when a message does not fit, the subscriber's queue is
 * dropped and the subscriber marked overflowed; its next take reports the
 * overflow (RILL_CHAN_EOVERFLOW), once, and then the messages published
 * after it (the message that did not fit is the first of them when it fits
 * an empty queue).
 *
 * Waking. A subscriber belongs to a hub, one per loop (per worker). When a
 * subscriber's queue turns non-empty (or it overflows) the publisher lists it
 * in its hub and sends the hub's one uv_async_t (libuv coalesces sends), so
 * the subscriber's notify callback runs later on its own loop's thread, never
 * on the publisher's. A subscriber is used only on its hub's thread:
 * subscribe, take, unsubscribe.
 *
 * Locks: the channel's (its subscribers and their queues) is taken before a
 * hub's (its list of subscribers to notify); nothing takes them the other
 * way. The hub's lock is held around uv_async_send, the one libuv call that
 * is made for any thread and takes no lock of its own, so that a hub that is
 * closing never gets a send after its handle is closed. Callbacks run with no
 * lock held. */
#ifndef RILL_SHARED_CHAN_H
#define RILL_SHARED_CHAN_H

#include "rill_int.h"

typedef struct rill_chan_s rill_chan_t;
typedef struct rill_chan_sub_s rill_chan_sub_t;
typedef struct rill_chan_hub_s rill_chan_hub_t;

/* A message: len bytes at data, shared by the queues holding it. */
typedef struct {
  size_t refs; /* atomic */
  size_t len;
  char data[];
} rill_chan_msg_t;

#define RILL_CHAN_MSG_MAX (16 * 1024 * 1024)       /* bytes in one message */
#define RILL_CHAN_QUEUE_DEFAULT 1024               /* messages a queue holds */
#define RILL_CHAN_QUEUE_MAX (1024 * 1024)          /* ... at most */
#define RILL_CHAN_BYTES_DEFAULT (16 * 1024 * 1024) /* bytes a queue holds */
#define RILL_CHAN_NAME_MAX 1024

#define RILL_CHAN_EOVERFLOW (-30111) /* "overflow": the queue was dropped */
#define RILL_CHAN_ETOOLARGE (-30112) /* "too large": past RILL_CHAN_MSG_MAX */

/* "overflow", "too large", else rill__errmsg's. */
const char *rill__chan_errmsg(int err);

/* The channel named name (nlen bytes, made if new), with a reference the
 * caller gives back with rill__chan_release; NULL when out of memory.
 * Thread-safe. */
rill_chan_t *rill__chan_open(const char *name, size_t nlen);
void rill__chan_release(rill_chan_t *c);
/* How many channels exist (for tests). */
size_t rill__chan_count(void);

/* Appends a copy of the len bytes at p to every subscriber's queue. Returns
 * how many subscribers it reached (those whose queue took it), or
 * RILL_CHAN_ETOOLARGE, UV_ENOMEM. Any thread; never waits for a subscriber. */
int rill__chan_publish(rill_chan_t *c, const void *p, size_t len);

/* How many subscribers the channel has now. */
int rill__chan_subscribers(rill_chan_t *c);

/* ---- hubs ---- */

/* Makes a hub on loop (its uv_async_t is unreferenced: it keeps no loop
 * alive). Returns it, or NULL when out of memory. */
rill_chan_hub_t *rill__chan_hub_new(uv_loop_t *loop);
/* Closes the hub's handle: subscribers left are taken off their channels
 * (they can no longer be reached; unsubscribing them later only frees
 * them). Free the hub with rill__chan_hub_free once the loop has run the
 * close (the next turn). */
void rill__chan_hub_close(rill_chan_hub_t *h);
void rill__chan_hub_free(rill_chan_hub_t *h);
/* The hub of worker w, made (and added to w's services, which close and
 * free it at the worker's end) when first asked for. NULL when out of
 * memory. On w's thread. */
rill_chan_hub_t *rill__chan_hub(rill_worker_t *w);

/* ---- subscribers (on their hub's thread) ---- */

/* Subscribes to c through hub h with a queue of at most max_msgs messages
 * and max_bytes bytes (0: the defaults). notify(data) runs on h's loop
 * after the queue turned non-empty or overflowed (it may find it empty
 * again: someone took the messages meanwhile). Returns the subscriber, or
 * NULL when out of memory or h is closed. */
rill_chan_sub_t *rill__chan_subscribe(rill_chan_t *c, rill_chan_hub_t *h, size_t max_msgs,
                                      size_t max_bytes, void (*notify)(void *data),
                                      void *data);
/* Takes s's next message: returns 1 and *m (the caller's reference: give it
 * back with rill__chan_msg_unref), RILL_CHAN_EOVERFLOW once after an
 * overflow, or 0 when the queue is empty. */
int rill__chan_next(rill_chan_sub_t *s, rill_chan_msg_t **m);
/* How many messages wait in s's queue. */
size_t rill__chan_queued(rill_chan_sub_t *s);
/* Unsubscribes s and frees it with the messages it still held. */
void rill__chan_unsubscribe(rill_chan_sub_t *s);

void rill__chan_msg_unref(rill_chan_msg_t *m);

#endif /* RILL_SHARED_CHAN_H */
