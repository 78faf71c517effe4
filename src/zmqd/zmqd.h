/*
 * zmqd: the channel sidecar of ngx_zmq.
 *
 * Consumes the queues of amqp_channel objects and invokes each message's
 * service; acks only after the service succeeded, retries failures without
 * holding up other messages, then dead-letters. Blocking calls, each with
 * a bound.
 */

#ifndef ZMQD_H
#define ZMQD_H

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <jansson.h>

#include "zgw_crypto.h"
#include "zgw_model.h"
#include "zgw_store.h"


#define ZMQD_TIMEOUT_MS     5000

/*
 * The longest a service call may take: an http_outconn's timeout is
 * capped to it. RabbitMQ closes a channel whose delivery stays unacked
 * past its consumer_timeout (30 min by default in 3.10), and the message
 * then comes back; 10 min leaves room for retries and for the messages
 * prefetched behind it.
 */
#define ZMQD_SERVICE_MAX_MS 600000

/*
 * How long a message may wait unacked for its retries, from its delivery
 * (--max-hold): with a service call of at most 10 min it stays under 30.
 */
#define ZMQD_HOLD_MAX_S     900


/*
 * One AMQP connection (blocking rabbitmq-c). rabbitmq-c is not thread-safe
 * and heartbeats only inside its own calls: the main thread holds lock
 * around every call, and the heartbeat thread, which sends a heartbeat
 * frame every heartbeat/2 seconds on each connection whose lock it can
 * take, keeps the broker from dropping a connection while a service runs
 * or a publishing connection idles.
 */
typedef struct zmqd_amqp_s  zmqd_amqp_t;

struct zmqd_amqp_s {
    amqp_connection_state_t  conn;
    pthread_mutex_t          lock;           /* recursive */
    zmqd_amqp_t             *next;           /* in the heartbeat list */
    double                   heartbeat;      /* negotiated, s; 0 none */
    double                   next_beat;
    char                     peer[300];
    char                     user[256];      /* the login */
    int                      confirm;        /* channel 1 in confirm mode */
    int                      replies;        /* channel 1 consumes
                                                amq.rabbitmq.reply-to */
    int                      broken;         /* a heartbeat failed */
    uint64_t                 next_tag;
    char                     tls[64];        /* "TLSv1.3, certificate
                                                verified"; "" plain */
};


/* a message as a service sees it */
typedef struct {
    const char                     *channel;     /* amqp_channel name */
    const amqp_bytes_t             *body;
    const amqp_basic_properties_t  *props;
    char                            message_id[256];
} zmqd_msg_t;


void zmqd_log(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * A message's W3C trace context (zmqd_log.c): the headers traceparent and
 * tracestate of its table (names in any case, string or byte-array
 * values), checked as the gateway checks them (zgw_trace.h). A malformed
 * traceparent (or one given twice) counts as none, and its tracestate
 * with it; an invalid tracestate (or one given twice) is dropped alone.
 * The values point into the message's properties.
 */
typedef struct {
    amqp_bytes_t  traceparent;       /* len 0: none */
    amqp_bytes_t  tracestate;        /* len 0: none */
} zmqd_trace_t;

#define ZMQD_TRACE_PARENT  1
#define ZMQD_TRACE_STATE   2
/* ZMQD_TRACE_PARENT, ZMQD_TRACE_STATE for a header name of either, or 0 */
int zmqd_trace_name(const void *name, size_t len);
void zmqd_trace_get(const amqp_basic_properties_t *p, zmqd_trace_t *t);
/*
 * What a log line about the message shows after its id: " (trace=<the
 * 32 hex digits of its trace-id>)", or "" without a valid traceparent;
 * written into buf (at least ZMQD_TRACE_LOG_LEN bytes), which it returns
 */
#define ZMQD_TRACE_LOG_LEN  48
const char *zmqd_trace_log(const amqp_basic_properties_t *p, char *buf,
    size_t size);
/*
 * Adds the valid trace context of p to the table entries e (room for 2
 * more): returns how many were added
 */
int zmqd_trace_entries(const amqp_basic_properties_t *p,
    amqp_table_entry_t *e);
/* seconds on the monotonic clock */
double zmqd_now(void);

/*
 * --workers N (zmqd_master.c): forks N workers and supervises them. In a
 * worker it returns 0 with *in_worker set, after worker_init set up the
 * worker's signals; in the master it returns its exit code once every
 * worker has exited after a stop.
 */
int zmqd_master(int n, void (*worker_init)(void), int *in_worker);
/* this worker's index under --workers N (0..N-1, the same when it is
   restarted); 0 without --workers */
extern int zmqd_worker;

/*
 * connect, log in, open channel 1; NULL with err filled on failure. Tries
 * the definition's addresses (host:port, then each of hosts) once round,
 * from the one after the address its last connection of the same kind
 * (confirm or not) used, or the first time from zmqd_worker mod their
 * number.
 */
zmqd_amqp_t *zmqd_amqp_open(const json_t *def, const zgw_key_t *key,
    int confirm, char *err, size_t errlen);
void zmqd_amqp_close(zmqd_amqp_t *a);
/* 1 when the heartbeat thread found the connection broken */
int zmqd_amqp_broken(zmqd_amqp_t *a);
/* around every rabbitmq-c call on a->conn (recursive) */
void zmqd_amqp_lock(zmqd_amqp_t *a);
void zmqd_amqp_unlock(zmqd_amqp_t *a);
/* the thread that heartbeats every open connection */
int zmqd_heartbeat_start(char *err, size_t errlen);
void zmqd_heartbeat_stop(void);
/* publish on channel 1 and wait for the confirm; 0 ok, -1 err filled */
int zmqd_amqp_publish(zmqd_amqp_t *a, const char *exchange,
    const char *routing_key, int mandatory, amqp_basic_properties_t *props,
    amqp_bytes_t body, char *err, size_t errlen);
/*
 * rabbitmq-c's SSL socket on conn, set up with the TLS options of def
 * (zgw_tls.h); NULL with err filled. For a failed open or login on it,
 * the reason in words (OpenSSL's when there is one), and once open,
 * "TLSv1.3, certificate verified" (or "not verified (verify is false)").
 */
amqp_socket_t *zmqd_amqp_tls_socket(amqp_connection_state_t conn,
    const json_t *def, const char *host, char *err, size_t errlen);
const char *zmqd_amqp_tls_error(amqp_socket_t *sock, int status, char *buf,
    size_t len);
const char *zmqd_amqp_tls_info(amqp_socket_t *sock, const json_t *def,
    char *buf, size_t len);
const char *zmqd_amqp_reply_error(amqp_rpc_reply_t r, char *buf,
    size_t len);

/* what a service answered (zmqd_service_call) */
typedef struct {
    int      status;             /* 100..599; 0 when there is none */
    char     content_type[256];  /* "" when none */
    char    *body;               /* malloc'd, NUL-terminated, or NULL */
    size_t   len;
} zmqd_resp_t;

/* the largest answer zmqd takes from an http endpoint or an rpc reply */
#define ZMQD_RESP_MAX  16777216

void zmqd_resp_free(zmqd_resp_t *r);
/* a copy of len bytes as the body; 0, or -1 (memory) */
int zmqd_resp_set(zmqd_resp_t *r, int status, const char *content_type,
    const void *body, size_t len);

/*
 * Publishes on channel 1 with props (their reply_to must be
 * "amq.rabbitmq.reply-to" and correlation_id set), having made channel 1
 * consume amq.rabbitmq.reply-to (no-ack) first, waits for the confirm and
 * for the reply with the same correlation_id, timeout_ms in all; resp
 * (may be NULL) gets its status (x-zmq-status), content_type and body.
 * 0, or -1 with err filled (unroutable, refused, no reply in time).
 */
int zmqd_amqp_rpc(zmqd_amqp_t *a, const char *exchange,
    const char *routing_key, int mandatory, amqp_basic_properties_t *props,
    amqp_bytes_t body, int timeout_ms, zmqd_resp_t *resp, char *err,
    size_t errlen);

/* the publishing connections, one per amqp_def (zmqd_publisher.c) */
#define ZMQD_PUBLISHERS_MAX  32

typedef struct {
    char           *def;
    char           *fingerprint;     /* the def it was opened with */
    zmqd_amqp_t    *amqp;
} zmqd_publisher_slot_t;

/* a STOMP publishing connection, one per stomp_def (zmqd_publisher.c) */
typedef struct {
    char                 *def;
    char                 *fingerprint;
    struct zmqd_stomp_s  *conn;
    int                   next_host;
} zmqd_stomp_slot_t;

typedef struct {
    zmqd_publisher_slot_t  slots[ZMQD_PUBLISHERS_MAX];
    zmqd_stomp_slot_t      stomp[ZMQD_PUBLISHERS_MAX];
} zmqd_publishers_t;

/* what a service (and a dead letter) needs, and nothing of the loop */
typedef struct {
    const zgw_config_t   *cfg;
    const zgw_key_t      *key;          /* NULL without a key file */
    const char           *redis_url;    /* the configuration's Redis */
    zmqd_publishers_t    *publishers;
    /*
     * a service of kind invoke with mode sync or sync_async waits for
     * zmqd's reply (zmqctl invoke); else it is a hand-off (202)
     */
    int                   wait_invocations;
} zmqd_env_t;

/* the publishing connection of an amqp_def, opened on demand */
zmqd_amqp_t *zmqd_publisher(const zmqd_env_t *env, const char *def,
    char *err, size_t errlen);
/* closes it: it failed (the next publish opens another) */
void zmqd_publisher_close(zmqd_publishers_t *p, const char *def);
/* closes those whose amqp_def (stomp_def) changed or went away in cfg */
void zmqd_publishers_apply(zmqd_publishers_t *p, const zgw_config_t *cfg);
void zmqd_publishers_close(zmqd_publishers_t *p);

/*
 * The properties of a message published again (zmqd_publisher.c): its
 * own, with headers added or replaced; free with zmqd_props_free.
 */
typedef struct {
    amqp_basic_properties_t  props;
    amqp_table_entry_t      *entries;
    int                      n;
    int                      cap;
} zmqd_props_t;

/* a copy of src with room for extra more headers; 0, or -1 (memory) */
int zmqd_props_init(zmqd_props_t *p, const amqp_basic_properties_t *src,
    int extra);
void zmqd_props_free(zmqd_props_t *p);
/* a header, replaced if present; the value must outlive the publish */
void zmqd_props_string(zmqd_props_t *p, const char *key,
    amqp_bytes_t value);
void zmqd_props_int(zmqd_props_t *p, const char *key, int32_t value);
/* a user_id other than login moves to x-zmq-original-user-id (1 header) */
void zmqd_props_user_id(zmqd_props_t *p, const char *login);
/*
 * a dead letter: persistent, no expiration (moved to x-zmq-original-
 * expiration), the user_id rule (2 headers)
 */
void zmqd_props_dead_letter(zmqd_props_t *p, const char *login);

/* the configuration's source, followed on a thread (zmqd_follow.c) */
typedef struct {
    const char        *source;       /* as logged: no password */
    const char        *url;          /* redis://... or file:PATH */
    zgw_store_t       *store;
    long long          version;      /* what runs (handed to the loop) */
    int                regressed;    /* the store is below what runs */
    long long          store_version; /* then: its version */
    long long          refused;      /* the version last refused, or -1 */
    int                down;         /* the store's loss was logged */

    /* the fleet (zmqd_fleet.c): reported from the configuration thread */
    int                fleet_interval; /* seconds, 0: not reported */
    double             fleet_next;
    long long          fleet_started;
    int                fleet_warned;
    int                fleet_named;  /* --instance, one process */
    char               fleet_name[128];
    char               fleet_host[128];

    /* a file: what it was when last read, to notice every change */
    int                file_seen;
    dev_t              file_dev;
    ino_t              file_ino;
    off_t              file_size;
    struct timespec    file_mtim;
    struct timespec    file_ctim;
    unsigned char      file_hash[32];  /* SHA-256 of what was read */
    int                file_racy;    /* read within 2 s of its mtime */
    int                file_errno;   /* the failure to read it last logged */

    pthread_t          thread;
    pthread_mutex_t    lock;
    pthread_cond_t     cond;
    zgw_config_t      *slot;         /* for the loop to take */
    int                reload;
    int                stop;
    int                done;
    int                running;
} zmqd_follower_t;

/* the whole configuration now (before the thread runs); NULL logged */
zgw_config_t *zmqd_follow_load(zmqd_follower_t *f, int quiet);
/* follows from version on, every 0.5 s or when asked */
int zmqd_follow_start(zmqd_follower_t *f, long long version, char *err,
    size_t errlen);
/* SIGHUP: read the source now */
void zmqd_follow_reload(zmqd_follower_t *f);
/* a new configuration to apply, or NULL; the caller owns it */
zgw_config_t *zmqd_follow_take(zmqd_follower_t *f);
/* 0 when stopped, -1 when still inside a call after 1 s */
int zmqd_follow_stop(zmqd_follower_t *f);

/* zmqd_fleet.c: --instance, --fleet-interval; a report when it is due */
int zmqd_fleet_init(zmqd_follower_t *f, const char *instance, int interval,
    int workers, char *err, size_t errlen);
void zmqd_fleet_tick(zmqd_follower_t *f);

/* a min-heap by due time (zmqd_heap.c) */
typedef struct {
    double  due;
    void   *item;
} zmqd_heap_entry_t;

typedef struct {
    zmqd_heap_entry_t  *a;
    size_t              n;
    size_t              cap;
} zmqd_heap_t;

/* 0, or -1 when out of memory */
int zmqd_heap_push(zmqd_heap_t *h, double due, void *item);
/* the item due first if it is due by now, taken out; else NULL */
void *zmqd_heap_pop_due(zmqd_heap_t *h, double now);
/* keeps only the items keep() says yes to (O(n)) */
void zmqd_heap_filter(zmqd_heap_t *h, int (*keep)(void *item, void *arg),
    void *arg);
void zmqd_heap_free(zmqd_heap_t *h);

/*
 * services: 0 on success, -1 with err filled (retried per the channel's
 * policy), ZMQD_PERMANENT with err filled when the message itself is at
 * fault and a retry cannot help (dead-lettered at once)
 */
#define ZMQD_PERMANENT  -2

int zmqd_service_invoke(const zmqd_env_t *env, const char *name,
    const zmqd_msg_t *msg, char *err, size_t errlen);
/*
 * As zmqd_service_invoke, with the service's answer in resp (NULL: not
 * wanted; else always freed with zmqd_resp_free): http the endpoint's
 * status, content type and body; rpc the reply; invoke 202
 * {"accepted": true, "cid": ...} (with env->wait_invocations, sync modes:
 * zmqd's reply); the others 200 {"ok": true}. On failure resp keeps what
 * the service answered (an http status that is not 2xx), if anything.
 */
int zmqd_service_call(const zmqd_env_t *env, const char *name,
    const zmqd_msg_t *msg, zmqd_resp_t *resp, char *err, size_t errlen);
/* a body in a data format: 0 valid, -1 with err filled */
int zmqd_format_check(const char *format, const amqp_bytes_t *body,
    char *err, size_t errlen);
/* closes the connections services keep (HTTP, Redis) */
void zmqd_services_reset(void);

/*
 * The cluster membership (zmqd_startup.c): every zmqd is a member of
 * zmq:zmqd:members in the configuration's Redis while it runs; the one
 * that joins when no other is alive starts the cluster and runs the
 * startup services with when "first".
 */
typedef struct {
    char               url[2048];
    char               shown[ZGW_URL_SHOW_MAX];  /* no password */
    char               id[320];       /* host:pid:random */
    zgw_store_t       *store;         /* the renewing thread's */
    int                joined;        /* the join (the lock) succeeded */
    int                starter;       /* no other member was alive */
    long long          others;        /* members alive at the join */
    char               err[1024];     /* why the join failed */
    int                lost;          /* a failure to renew was logged */
    pthread_t          thread;
    pthread_mutex_t    lock;
    pthread_cond_t     cond;
    int                stop;
    int                inited;
    int                running;
} zmqd_cluster_t;

/* joins (bounded: 2 s to connect, 2 s to answer) and starts renewing */
int zmqd_cluster_join(zmqd_cluster_t *c, const char *url);
/* stops renewing and leaves */
void zmqd_cluster_leave(zmqd_cluster_t *c);
/* active startup objects with when "first" (first 1) or "each" (0) */
int zmqd_startup_count(const zgw_config_t *cfg, int first);
/*
 * invokes the active startup services in name order, each once and
 * bounded as a channel's message; cluster NULL: "first" ones are not run
 */
void zmqd_startup_run(const zmqd_env_t *env, const zmqd_cluster_t *cluster,
    const volatile sig_atomic_t *stop);

/*
 * stomp_channel objects (zmqd_stomp_channel.c): one STOMP connection each,
 * their messages into their services, retries held unacked, then the
 * dead-letter destination.
 */

/* starts, restarts and stops channels as cfg says (counted) */
void zmqd_stomp_channels_apply(const zgw_config_t *cfg, int *started,
    int *restarted, int *stopped);
/*
 * Connects what is due, runs due retries, handles the frames that came;
 * when none came waits up to wait_ms for one. 1 when a channel is
 * connected (it waited), else 0.
 */
int zmqd_stomp_channels_poll(const zmqd_env_t *env, int max_hold,
    int verbose, int wait_ms, const volatile sig_atomic_t *stop);
/* every connection closed (DISCONNECT), retries dropped (redelivered) */
void zmqd_stomp_channels_close(void);

/*
 * Replies and invocations (zmqd_invoke.c), the parts that need no loop.
 */

/* "YYYY-MM-DDTHH:MM:SS.ffffff", UTC, now */
void zmqd_utc_now(char *out, size_t size);
/* x-zmq-status of a reply: 100..599; absent 200; unreadable -1 */
int zmqd_reply_status(const amqp_basic_properties_t *p);
/* a header of type longstr/bytes as a C string into out, or NULL */
const char *zmqd_header_str(const amqp_basic_properties_t *p,
    const char *key, char *out, size_t size);
/* resp: 202 {"accepted": true, "cid": cid}, cid escaped */
int zmqd_resp_accepted(zmqd_resp_t *r, const char *cid);
/* resp: status and a JSON body {"error": code, "message": message} */
int zmqd_resp_error(zmqd_resp_t *r, int status, const char *code,
    const char *message);
/*
 * Publishes the reply to a request that carried reply_to (exchange "",
 * routing key reply_to, the request's correlation_id, x-zmq-status) on
 * the publishing connection of amqp_def def; 0, or -1 with err filled
 * (the caller logs it and goes on)
 */
int zmqd_reply(const zmqd_env_t *env, const char *def,
    const amqp_basic_properties_t *req, const zmqd_resp_t *resp, char *err,
    size_t errlen);

/* where an invocation's reply may go: this, or a name it starts */
#define ZMQD_REPLY_TO    "amq.rabbitmq.reply-to"

/* the mode of an invocation: ZMQD_SYNC..., or -1 */
#define ZMQD_SYNC        0
#define ZMQD_SYNC_ASYNC  1
#define ZMQD_ASYNC       2

int zmqd_invoke_mode(const char *mode);
/*
 * The callback's document (Zato's fields): ok, cid, source, target,
 * retry_seconds, retry_repeats, context, req_ts_utc, resp_ts_utc (now),
 * response (the target's: JSON if its content type is JSON and it
 * parses, else a string; on failure {"error": "target_failed", ...}).
 * malloc'd text, or NULL (memory).
 */
char *zmqd_callback_doc(const json_t *svc, const char *source, int ok,
    const char *cid, const char *req_ts, const zmqd_resp_t *resp,
    const char *error);
/* publishes an invocation of the invoke service svc (name): PROTO14 */
int zmqd_invocation_publish(const zmqd_env_t *env, const char *name,
    const json_t *svc, const zmqd_msg_t *msg, zmqd_resp_t *resp, char *err,
    size_t errlen);
/*
 * The longest an invocation of svc waits unacked for its retries (the
 * target's, then the callback's): 2 x (repeats - 1) x seconds
 */
long zmqd_invoke_hold(const json_t *svc);

#endif /* ZMQD_H */
