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
    int                      broken;         /* a heartbeat failed */
    uint64_t                 next_tag;
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
/* seconds on the monotonic clock */
double zmqd_now(void);

/*
 * --workers N (zmqd_master.c): forks N workers and supervises them. In a
 * worker it returns 0 with *in_worker set, after worker_init set up the
 * worker's signals; in the master it returns its exit code once every
 * worker has exited after a stop.
 */
int zmqd_master(int n, void (*worker_init)(void), int *in_worker);

/* connect, log in, open channel 1; NULL with err filled on failure */
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
const char *zmqd_amqp_reply_error(amqp_rpc_reply_t r, char *buf,
    size_t len);

/* the publishing connections, one per amqp_def (zmqd_publisher.c) */
#define ZMQD_PUBLISHERS_MAX  32

typedef struct {
    char           *def;
    char           *fingerprint;     /* the def it was opened with */
    zmqd_amqp_t    *amqp;
} zmqd_publisher_slot_t;

typedef struct {
    zmqd_publisher_slot_t  slots[ZMQD_PUBLISHERS_MAX];
} zmqd_publishers_t;

/* what a service (and a dead letter) needs, and nothing of the loop */
typedef struct {
    const zgw_config_t   *cfg;
    const zgw_key_t      *key;          /* NULL without a key file */
    const char           *redis_url;    /* the configuration's Redis */
    zmqd_publishers_t    *publishers;
} zmqd_env_t;

/* the publishing connection of an amqp_def, opened on demand */
zmqd_amqp_t *zmqd_publisher(const zmqd_env_t *env, const char *def,
    char *err, size_t errlen);
/* closes it: it failed (the next publish opens another) */
void zmqd_publisher_close(zmqd_publishers_t *p, const char *def);
/* closes those whose amqp_def changed or went away in cfg */
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

#endif /* ZMQD_H */
