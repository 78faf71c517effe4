/*
 * zmqd: the blocking STOMP 1.2 client (zmqd_stomp.c), every wait bounded
 * by ZMQD_TIMEOUT_MS.
 */

#ifndef ZMQD_STOMP_CLIENT_H
#define ZMQD_STOMP_CLIENT_H

#include <jansson.h>

#include "zgw_crypto.h"
#include "zmqd.h"
#include "zmqd_stomp.h"


typedef struct zmqd_stomp_s  zmqd_stomp_t;


/*
 * Connects to a stomp_def's host:port, else (failover) each of its hosts,
 * starting at *next_host (0: host:port), which is left at the host that
 * answered, or after the last that failed. NULL with err filled (every
 * host's failure).
 */
zmqd_stomp_t *zmqd_stomp_open(const json_t *def, const zgw_key_t *key,
    int *next_host, char *err, size_t errlen);
/* graceful: DISCONNECT with a receipt first (bounded) */
void zmqd_stomp_close(zmqd_stomp_t *s, int graceful);
/* stops the heart-beat thread (started by the first open) */
void zmqd_stomp_shutdown(void);

/* 1 frame, 0 none within timeout_ms, -1 broken (err filled) */
int zmqd_stomp_read(zmqd_stomp_t *s, zmqd_stomp_frame_t *f, int timeout_ms,
    char *err, size_t errlen);
/* the whole frame written (bounded), or -1 broken */
int zmqd_stomp_send_out(zmqd_stomp_t *s, zmqd_stomp_out_t *o, char *err,
    size_t errlen);
/* o carries "receipt:id": sent, and its RECEIPT awaited (bounded) */
int zmqd_stomp_request(zmqd_stomp_t *s, zmqd_stomp_out_t *o, const char *id,
    char *err, size_t errlen);
void zmqd_stomp_receipt_id(zmqd_stomp_t *s, const char *prefix, char *out,
    size_t size);

/* frames already read (during a receipt's wait), not yet returned */
int zmqd_stomp_pending(const zmqd_stomp_t *s);
int zmqd_stomp_fd(const zmqd_stomp_t *s);
int zmqd_stomp_broken(const zmqd_stomp_t *s);
const char *zmqd_stomp_peer(const zmqd_stomp_t *s);
const char *zmqd_stomp_server(const zmqd_stomp_t *s);
/* over TLS: "TLSv1.3, certificate verified" (or "... not verified ..."); "" */
const char *zmqd_stomp_tls(const zmqd_stomp_t *s);

/*
 * The publishing connection of a stomp_def (zmqd_publisher.c), opened on
 * demand; one idle since its last use is checked first (what the broker
 * sent meanwhile is read: a closed connection or an ERROR opens another).
 */
zmqd_stomp_t *zmqd_stomp_publisher(const zmqd_env_t *env, const char *def,
    char *err, size_t errlen);
/* closes it: it failed (the next publish opens another) */
void zmqd_stomp_publisher_close(zmqd_publishers_t *p, const char *def);

/*
 * A publish service with a stomp_outconn (zmqd_stomp_publish.c): one SEND
 * with a receipt, awaited. 0 after the RECEIPT; -1 with err filled (no
 * connection, an ERROR, no RECEIPT in time: retried per the channel);
 * ZMQD_PERMANENT when the message cannot be a STOMP frame (a NUL in a
 * property or header).
 */
int zmqd_stomp_publish(const zmqd_env_t *env, const json_t *svc,
    const zmqd_msg_t *msg, char *err, size_t errlen);

#endif /* ZMQD_STOMP_CLIENT_H */
