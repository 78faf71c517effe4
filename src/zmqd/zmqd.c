/*
 * zmqd: the channel sidecar of ngx_zmq.
 *
 *   zmqd [--config redis://host:port/db | redis-sentinel://host:port,.../master/db
 *         | file:PATH] [--key-file PATH]
 *        [--workers N] [--check] [--verbose]
 *
 * One consuming connection per amqp_def in use (and one for publishing,
 * opened when a service or a dead letter needs it), `consumers` AMQP
 * channels per amqp_channel with basic.qos(prefetch). A message is acked
 * only after its service succeeded; a failure is retried later (the
 * message stays unacked, other messages go on), then dead-lettered with
 * x-zmq-error, x-zmq-attempts and x-zmq-channel headers, then acked.
 *
 * This file is the loop: connections, consumers, acks, retries, dead
 * letters and the applying of a new configuration. The other parts:
 *
 *   zmqd_amqp.c       rabbitmq-c connections, each call bounded, and the
 *                     heartbeat thread
 *   zmqd_follow.c     loading and following the configuration (a thread)
 *   zmqd_service.c    the services, given a zmqd_env_t
 *   zmqd_publisher.c  the publishing connections, and what is published
 *                     again (dead letters, the publish service)
 *   zmqd_heap.c       the retries, by due time
 *   zmqd_master.c     --workers: the master process
 *   zmqd_startup.c    startup services, and the cluster membership that
 *                     tells a cluster start ("first" ones) from a join
 *   zmqd_log.c        the log and the clock
 *   zmqd_stomp*.c     stomp_channel objects: a STOMP 1.2 client and its
 *                     consumers (zmqd_stomp_channel.c says how)
 */

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "zgw_jms.h"
#include "zgw_redis_url.h"
#include "zgw_store.h"
#include "zmqd.h"
#include "zmqd_metrics.h"


#define ZMQD_CHANNELS_MAX   64
#define ZMQD_DEFS_MAX       32
#define ZMQD_ACK_BATCH      64
/* the most messages one AMQP channel of a consumer holds (prefetch) */
#define ZMQD_PREFETCH_MAX   1000
/*
 * Startup services run once every definition in use is connected, or
 * this long after the start if one is not (they run anyway then)
 */
#define ZMQD_STARTUP_WAIT_S 30
/*
 * The invocations one zmqd process holds per invocation queue, those
 * waiting for a retry included; more wait in the queue
 */
#define ZMQD_INVOKE_PREFETCH 100
/* the largest --max-hold: above 2 x 99 x 600 s, the longest schedule */
#define ZMQD_HOLD_LIMIT_S   172800


typedef struct zmqd_ctx_s       zmqd_ctx_t;
typedef struct zmqd_def_s       zmqd_def_t;
typedef struct zmqd_consumer_s  zmqd_consumer_t;
typedef struct zmqd_retry_s     zmqd_retry_t;
typedef struct zmqd_inv_s       zmqd_inv_t;


struct zmqd_def_s {
    char              *name;
    char              *fingerprint;
    zmqd_amqp_t       *consume;       /* NULL while down */
    double             next_attempt;
    double             backoff;
    int                next_channel;
    int                used;          /* by a consumer of this config */
};


struct zmqd_consumer_s {
    char              *name;
    char              *fingerprint;
    zmqd_def_t        *def;
    int                channels[ZMQD_CHANNELS_MAX];
    uint64_t           deferred[ZMQD_CHANNELS_MAX];  /* done, not acked */
    int                ndeferred[ZMQD_CHANNELS_MAX];
    int                nretries[ZMQD_CHANNELS_MAX];  /* held for a retry */
    int                ack_batch;     /* well under prefetch */
    int                nchannels;
    int                running;
    double             next_attempt;
    int                seen;
    /*
     * an internal consumer of invocations: its channel object, made by
     * zmqd (name "invoke/<def>/<queue>", which no object name can be);
     * NULL for an amqp_channel of the configuration
     */
    json_t            *internal;
};


/* an invocation in progress: what a retry must remember */
#define ZMQD_INV_TARGET    0
#define ZMQD_INV_CALLBACK  1

struct zmqd_inv_s {
    int                phase;
    int                mode;          /* ZMQD_SYNC ... */
    int                tries;         /* in this phase */
    int                replied;       /* the caller has its answer */
    int                ok;            /* the target succeeded (metrics) */
    char              *doc;           /* the callback's document */
};


/*
 * A message that waits for a retry, unacked, in ctx->retries. Every retry
 * of a consumer is dropped when it stops (zmqd_consumer_stop, zmqd_def_
 * down), so the pointer to it stays good while the retry is held.
 */
struct zmqd_retry_s {
    zmqd_consumer_t   *consumer;
    int                index;         /* of its AMQP channel */
    zmqd_def_t        *def;
    amqp_envelope_t    env;
    int                attempts;
    double             since;         /* first received */
    zmqd_inv_t        *inv;           /* an invocation's state, or NULL */
};


struct zmqd_ctx_s {
    const char        *source;
    char               redis_url[2048];
    zgw_key_t          key;
    int                has_key;
    zgw_config_t      *cfg;
    zmqd_follower_t    follow;
    zmqd_def_t         defs[ZMQD_DEFS_MAX];
    zmqd_consumer_t   *consumers[256];
    int                nconsumers;
    zmqd_heap_t        retries;       /* zmqd_retry_t by due time */
    zmqd_publishers_t  publishers;
    int                verbose;
    int                max_hold;      /* s a message may wait for retries */
    unsigned long      done;
    zmqd_cluster_t     cluster;
    int                in_cluster;
};


static void zmqd_flush_acks(zmqd_def_t *d, zmqd_consumer_t *c, int i);
static void zmqd_flush_all_acks(zmqd_ctx_t *ctx, zmqd_def_t *d);
static int zmqd_all_connected(zmqd_ctx_t *ctx);


static volatile sig_atomic_t  zmqd_stop;
static volatile sig_atomic_t  zmqd_reload;


static const zgw_key_t *
zmqd_key(zmqd_ctx_t *ctx)
{
    return ctx->has_key ? &ctx->key : NULL;
}


/* what services and dead letters get: no way back into the loop */
static void
zmqd_env(zmqd_ctx_t *ctx, zmqd_env_t *env)
{
    env->cfg = ctx->cfg;
    env->key = zmqd_key(ctx);
    env->redis_url = ctx->redis_url[0] ? ctx->redis_url : ZGW_REDIS_DEFAULT;
    env->publishers = &ctx->publishers;
}


static zmqd_def_t *
zmqd_def(zmqd_ctx_t *ctx, const char *name, int create)
{
    int  i, free_slot;

    free_slot = -1;

    for (i = 0; i < ZMQD_DEFS_MAX; i++) {
        if (ctx->defs[i].name && strcmp(ctx->defs[i].name, name) == 0) {
            return &ctx->defs[i];
        }
        if (ctx->defs[i].name == NULL && free_slot < 0) {
            free_slot = i;
        }
    }

    if (!create || free_slot < 0) {
        return NULL;
    }

    memset(&ctx->defs[free_slot], 0, sizeof(zmqd_def_t));
    ctx->defs[free_slot].name = strdup(name);
    if (ctx->defs[free_slot].name == NULL) {
        return NULL;
    }
    ctx->defs[free_slot].backoff = 0.1;
    ctx->defs[free_slot].next_channel = 2;
    return &ctx->defs[free_slot];
}


/* ------------------------------------------------------- configuration */


static char *
zmqd_fingerprint(int kind, const json_t *obj, int kind2, const json_t *obj2)
{
    char    *a, *b, *out;
    size_t   len;

    a = zgw_object_dump(kind, obj);
    b = obj2 ? zgw_object_dump(kind2, obj2) : strdup("");
    if (a == NULL || b == NULL) {
        free(a);
        free(b);
        return NULL;
    }

    len = strlen(a) + strlen(b) + 2;
    out = malloc(len);
    if (out != NULL) {
        snprintf(out, len, "%s|%s", a, b);
    }

    free(a);
    free(b);
    return out;
}


static void
zmqd_inv_free(zmqd_inv_t *inv)
{
    if (inv != NULL) {
        free(inv->doc);
        free(inv);
    }
}


static void
zmqd_retry_free(zmqd_retry_t *r)
{
    amqp_destroy_envelope(&r->env);
    zmqd_inv_free(r->inv);
    free(r);
}


/* the channel object of a consumer: the configuration's, or its own */
static json_t *
zmqd_channel_obj(zmqd_ctx_t *ctx, zmqd_consumer_t *c)
{
    if (c->internal != NULL) {
        return c->internal;
    }

    return zgw_config_get(ctx->cfg, ZGW_KIND_AMQP_CHANNEL, c->name);
}


typedef struct {
    zmqd_consumer_t  *consumer;
    zmqd_def_t       *def;
} zmqd_drop_t;


static int
zmqd_retry_keep(void *item, void *arg)
{
    zmqd_retry_t  *r = item;
    zmqd_drop_t   *drop = arg;

    if (r->consumer == drop->consumer || r->def == drop->def) {
        /* still unacked: the broker delivers it again */
        r->consumer->nretries[r->index]--;
        zmqd_retry_free(r);
        return 0;
    }

    return 1;
}


/* the retries of a consumer, or of every consumer of a definition */
static void
zmqd_drop_retries(zmqd_ctx_t *ctx, zmqd_consumer_t *c, zmqd_def_t *def)
{
    zmqd_drop_t  drop;

    drop.consumer = c;
    drop.def = def;
    zmqd_heap_filter(&ctx->retries, zmqd_retry_keep, &drop);
}


static void
zmqd_consumer_stop(zmqd_ctx_t *ctx, zmqd_consumer_t *c)
{
    int  i;

    if (c->running && c->def->consume != NULL) {
        zmqd_amqp_lock(c->def->consume);
        for (i = 0; i < c->nchannels; i++) {
            zmqd_flush_acks(c->def, c, i);
            (void) amqp_channel_close(c->def->consume->conn, c->channels[i],
                                      AMQP_REPLY_SUCCESS);
        }
        zmqd_amqp_unlock(c->def->consume);
    }

    zmqd_drop_retries(ctx, c, NULL);
    c->running = 0;
    c->nchannels = 0;
}


static void
zmqd_def_down(zmqd_ctx_t *ctx, zmqd_def_t *d, const char *why)
{
    int  i;

    if (d->consume != NULL) {
        zmqd_log("warn", "amqp_def '%s': connection lost: %s; reconnecting "
                 "in %.1f s", d->name, why, d->backoff);
        zmqd_amqp_close(d->consume);
        d->consume = NULL;
    }

    for (i = 0; i < ctx->nconsumers; i++) {
        if (ctx->consumers[i]->def == d) {
            ctx->consumers[i]->running = 0;
            ctx->consumers[i]->nchannels = 0;
            memset(ctx->consumers[i]->ndeferred, 0,
                   sizeof(ctx->consumers[i]->ndeferred));
        }
    }

    zmqd_drop_retries(ctx, NULL, d);
    d->next_attempt = zmqd_now() + d->backoff;
    d->backoff = fmin(d->backoff * 2, 10.0);
    d->next_channel = 2;
}


static void
zmqd_consumer_free(zmqd_consumer_t *c)
{
    free(c->name);
    free(c->fingerprint);
    json_decref(c->internal);
    free(c);
}


/*
 * The consumer named name, with fingerprint fp (taken) on definition d:
 * kept when unchanged, restarted when changed, else made. internal: an
 * internal consumer's channel object (taken).
 */
static void
zmqd_consumer_sync(zmqd_ctx_t *ctx, const char *name, char *fp,
    zmqd_def_t *d, json_t *internal, int *started, int *restarted)
{
    int               j;
    zmqd_consumer_t  *c;

    for (j = 0; j < ctx->nconsumers; j++) {
        if (strcmp(ctx->consumers[j]->name, name) == 0) {
            break;
        }
    }

    if (j < ctx->nconsumers) {
        c = ctx->consumers[j];
        c->seen = 1;

        if (strcmp(c->fingerprint, fp) == 0 && c->def == d) {
            free(fp);
            json_decref(internal);
            return;
        }

        zmqd_consumer_stop(ctx, c);
        free(c->fingerprint);
        c->fingerprint = fp;
        json_decref(c->internal);
        c->internal = internal;
        c->def = d;
        c->next_attempt = 0;
        (*restarted)++;
        return;
    }

    c = ctx->nconsumers == 256 ? NULL : calloc(1, sizeof(zmqd_consumer_t));
    if (c == NULL) {
        zmqd_log("error", "channel '%s': not started: %s", name,
                 ctx->nconsumers == 256 ? "more than 256 channels"
                                        : "out of memory");
        free(fp);
        json_decref(internal);
        return;
    }

    c->name = strdup(name);
    if (c->name == NULL) {
        free(fp);
        json_decref(internal);
        free(c);
        return;
    }
    c->fingerprint = fp;
    c->internal = internal;
    c->def = d;
    c->seen = 1;
    ctx->consumers[ctx->nconsumers++] = c;
    (*started)++;
}


/*
 * An active invoke service: its queue on its outconn's amqp_def is
 * consumed by an internal consumer (one per definition and queue, shared
 * by the services that use it), with a channel object of zmqd's own.
 */
static void
zmqd_apply_invoke(zmqd_ctx_t *ctx, zgw_config_t *cfg, const char *name,
    const json_t *svc, int *started, int *restarted)
{
    int          j;
    long         hold;
    char        *fp, cname[600];
    json_t      *oc, *def, *obj;
    zmqd_def_t  *d;
    const char  *defname, *queue, *kind;

    kind = json_string_value(json_object_get(svc, "kind"));
    if (kind == NULL || strcmp(kind, "invoke") != 0
        || !json_is_true(json_object_get(svc, "is_active")))
    {
        return;
    }

    oc = zgw_config_get(cfg, ZGW_KIND_AMQP_OUTCONN,
                        json_string_value(json_object_get(svc, "outconn")));
    defname = json_string_value(json_object_get(oc, "def"));
    def = zgw_config_get(cfg, ZGW_KIND_AMQP_DEF, defname);
    queue = json_string_value(json_object_get(svc, "queue"));

    if (oc == NULL || def == NULL || queue == NULL
        || !json_is_true(json_object_get(oc, "is_active"))
        || !json_is_true(json_object_get(def, "is_active")))
    {
        zmqd_log("warn", "service '%s': its invocations are not consumed: "
                 "its amqp_outconn or amqp_def is not active", name);
        return;
    }

    /*
     * An invocation waits unacked for its retries: the broker's
     * consumer_timeout must not end it, so --max-hold must cover them
     */
    hold = zmqd_invoke_hold(svc);
    if (hold > ctx->max_hold) {
        zmqd_log("error", "service '%s': repeats %lld every %lld s may "
                 "hold an invocation unacked for %ld s (the target's "
                 "retries, then the callback's), more than --max-hold %d: "
                 "its invocations are refused (dead-lettered); raise "
                 "--max-hold (up to %d) and the broker's consumer_timeout "
                 "above it, or lower repeats or seconds", name,
                 (long long) json_integer_value(json_object_get(svc,
                                                                "repeats")),
                 (long long) json_integer_value(json_object_get(svc,
                                                                "seconds")),
                 hold, ctx->max_hold, ZMQD_HOLD_LIMIT_S);
    }

    snprintf(cname, sizeof(cname), "invoke/%s/%s", defname, queue);

    for (j = 0; j < ctx->nconsumers; j++) {
        if (ctx->consumers[j]->seen
            && strcmp(ctx->consumers[j]->name, cname) == 0)
        {
            return;                     /* another service's queue too */
        }
    }

    d = zmqd_def(ctx, defname, 1);
    obj = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:i}", "name", cname,
                    "def", defname, "queue", queue,
                    "prefetch", ZMQD_INVOKE_PREFETCH, "ack_mode", "ack",
                    "data_format", "none", "consumers", 1);
    fp = obj ? json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

    if (d == NULL || fp == NULL) {
        zmqd_log("error", "service '%s': its invocations are not consumed: "
                 "out of memory", name);
        free(fp);
        json_decref(obj);
        return;
    }

    if (d->fingerprint == NULL) {
        d->fingerprint = zmqd_fingerprint(ZGW_KIND_AMQP_DEF, def, 0, NULL);
    }

    d->used = 1;
    zmqd_consumer_sync(ctx, cname, fp, d, obj, started, restarted);
}


/* applies cfg: only consumers and connections whose objects changed */
static void
zmqd_apply(zmqd_ctx_t *ctx, zgw_config_t *cfg)
{
    int               i, restarted, started, stopped;
    char             *fp;
    json_t           *ch, *def;
    zmqd_def_t       *d;
    const char       *name, *defname;
    zmqd_consumer_t  *c;

    restarted = started = stopped = 0;

    /* definitions whose object changed: their connections start over */
    for (i = 0; i < ZMQD_DEFS_MAX; i++) {
        d = &ctx->defs[i];
        if (d->name == NULL) {
            continue;
        }

        def = zgw_config_get(cfg, ZGW_KIND_AMQP_DEF, d->name);
        fp = def ? zmqd_fingerprint(ZGW_KIND_AMQP_DEF, def, 0, NULL) : NULL;

        if (fp == NULL || d->fingerprint == NULL
            || strcmp(fp, d->fingerprint) != 0)
        {
            if (d->consume != NULL) {
                /* a healthy connection: what is done is acked first */
                zmqd_flush_all_acks(ctx, d);
                zmqd_def_down(ctx, d, "its definition changed");
                d->next_attempt = 0;
                d->backoff = 0.1;
            }
        }

        free(d->fingerprint);
        d->fingerprint = fp;
        d->used = 0;
    }

    for (i = 0; i < ctx->nconsumers; i++) {
        ctx->consumers[i]->seen = 0;
    }

    json_object_foreach(cfg->objs[ZGW_KIND_AMQP_CHANNEL], name, ch) {
        defname = json_string_value(json_object_get(ch, "def"));
        def = zgw_config_get(cfg, ZGW_KIND_AMQP_DEF, defname);

        if (!json_is_true(json_object_get(ch, "is_active"))
            || !json_is_true(json_object_get(def, "is_active")))
        {
            continue;
        }

        fp = zmqd_fingerprint(ZGW_KIND_AMQP_CHANNEL, ch, 0, NULL);
        d = zmqd_def(ctx, defname, 1);
        if (fp == NULL || d == NULL) {
            free(fp);
            continue;
        }

        if (d->fingerprint == NULL) {
            d->fingerprint = zmqd_fingerprint(ZGW_KIND_AMQP_DEF, def, 0,
                                              NULL);
        }

        d->used = 1;
        zmqd_consumer_sync(ctx, name, fp, d, NULL, &started, &restarted);
    }

    /* the invocation queues of the invoke services: internal consumers */
    json_object_foreach(cfg->objs[ZGW_KIND_SERVICE], name, ch) {
        zmqd_apply_invoke(ctx, cfg, name, ch, &started, &restarted);
    }

    /* channels that went away */
    for (i = 0; i < ctx->nconsumers; i++) {
        c = ctx->consumers[i];
        if (c->seen) {
            continue;
        }

        zmqd_consumer_stop(ctx, c);
        zmqd_consumer_free(c);
        ctx->consumers[i] = ctx->consumers[--ctx->nconsumers];
        i--;
        stopped++;
    }

    /* connections nobody consumes on any more */
    for (i = 0; i < ZMQD_DEFS_MAX; i++) {
        d = &ctx->defs[i];
        if (d->name != NULL && !d->used && d->consume != NULL) {
            zmqd_amqp_close(d->consume);
            d->consume = NULL;
        }
    }

    /* what zmqd will not wait for, said once per configuration */
    json_object_foreach(cfg->objs[ZGW_KIND_HTTP_OUTCONN], name, ch) {
        if (json_integer_value(json_object_get(ch, "timeout"))
            > ZMQD_SERVICE_MAX_MS)
        {
            zmqd_log("warn", "http_outconn '%s': timeout %lld ms is more "
                     "than zmqd waits for a service: zmqd uses %d ms",
                     name, (long long) json_integer_value(
                         json_object_get(ch, "timeout")),
                     ZMQD_SERVICE_MAX_MS);
        }
    }

    /* publishing connections whose definition changed start over */
    zmqd_publishers_apply(&ctx->publishers, cfg);

    zmqd_stomp_channels_apply(cfg, &started, &restarted, &stopped);

    zgw_config_free(ctx->cfg);
    ctx->cfg = cfg;

    zmqd_log("info", "configuration version %lld applied: %d channel(s) "
             "started, %d restarted, %d stopped", cfg->version, started,
             restarted, stopped);
}


/*
 * A new worker of --workers: the configuration as it is now. The one the
 * master loaded (cfg) is only the fallback while the store cannot be read,
 * and it wins over a store below it (regressed).
 */
static zgw_config_t *
zmqd_fresh(zmqd_ctx_t *ctx, zgw_config_t *cfg)
{
    int            redis;
    zgw_config_t  *now;

    redis = strncmp(ctx->source, "file:", 5) != 0;

    now = zmqd_follow_load(&ctx->follow, 0);
    if (now == NULL) {
        zmqd_log("warn", "starting on configuration version %lld, loaded "
                 "by the master; following %s", cfg->version, ctx->source);
        return cfg;
    }

    if (redis && now->version < cfg->version) {
        zmqd_log("warn", "configuration store %s is regressed: at version "
                 "%lld, lower than version %lld that the master loaded; "
                 "starting on version %lld", ctx->source, now->version,
                 cfg->version, cfg->version);
        zgw_config_free(now);
        return cfg;
    }

    zgw_config_free(cfg);
    return now;
}


/* ------------------------------------------------------------ messages */


static int
zmqd_channel_index(zmqd_consumer_t *c, int channel)
{
    int  i;

    for (i = 0; i < c->nchannels; i++) {
        if (c->channels[i] == channel) {
            return i;
        }
    }

    return -1;
}


/* acks, with one basic.ack (multiple), what succeeded on one channel */
static void
zmqd_flush_acks(zmqd_def_t *d, zmqd_consumer_t *c, int i)
{
    if (c->ndeferred[i] == 0) {
        return;
    }

    if (d->consume != NULL) {
        zmqd_amqp_lock(d->consume);
        (void) amqp_basic_ack(d->consume->conn, c->channels[i],
                              c->deferred[i], 1);
        zmqd_amqp_unlock(d->consume);
    }

    c->ndeferred[i] = 0;
}


static void
zmqd_flush_all_acks(zmqd_ctx_t *ctx, zmqd_def_t *d)
{
    int  i, j;

    for (i = 0; i < ctx->nconsumers; i++) {
        if (ctx->consumers[i]->def != d) {
            continue;
        }
        for (j = 0; j < ctx->consumers[i]->nchannels; j++) {
            zmqd_flush_acks(d, ctx->consumers[i], j);
        }
    }
}


/*
 * A message succeeded. Its ack may wait to be sent together with the
 * next ones (basic.ack with multiple), unless an earlier message of the
 * channel is still unacked for a retry: "multiple" would ack that too.
 */
static void
zmqd_ack_done(zmqd_def_t *d, zmqd_consumer_t *c, amqp_envelope_t *env)
{
    int  i;

    i = zmqd_channel_index(c, env->channel);

    if (i < 0 || d->consume == NULL) {
        return;
    }

    if (c->nretries[i] > 0) {
        zmqd_flush_acks(d, c, i);
        zmqd_amqp_lock(d->consume);
        (void) amqp_basic_ack(d->consume->conn, env->channel,
                              env->delivery_tag, 0);
        zmqd_amqp_unlock(d->consume);
        return;
    }

    c->deferred[i] = env->delivery_tag;

    if (++c->ndeferred[i] >= c->ack_batch) {
        zmqd_flush_acks(d, c, i);
    }
}


/* before any other answer for a message: send the acks that wait */
static void
zmqd_ack_before(zmqd_def_t *d, zmqd_consumer_t *c, int channel)
{
    int  i;

    i = zmqd_channel_index(c, channel);
    if (i >= 0) {
        zmqd_flush_acks(d, c, i);
    }
}


static void
zmqd_ack(zmqd_def_t *d, amqp_envelope_t *env)
{
    if (d->consume != NULL) {
        zmqd_amqp_lock(d->consume);
        (void) amqp_basic_ack(d->consume->conn, env->channel,
                              env->delivery_tag, 0);
        zmqd_amqp_unlock(d->consume);
    }
}


static zmqd_consumer_t *
zmqd_consumer_by_channel(zmqd_ctx_t *ctx, zmqd_def_t *d, int channel)
{
    int  i, j;

    for (i = 0; i < ctx->nconsumers; i++) {
        if (ctx->consumers[i]->def != d || !ctx->consumers[i]->running) {
            continue;
        }
        for (j = 0; j < ctx->consumers[i]->nchannels; j++) {
            if (ctx->consumers[i]->channels[j] == channel) {
                return ctx->consumers[i];
            }
        }
    }

    return NULL;
}


static void
zmqd_message_id(amqp_envelope_t *env, char *out, size_t len)
{
    if (env->message.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
        snprintf(out, len, "%.*s",
                 (int) env->message.properties.message_id.len,
                 (char *) env->message.properties.message_id.bytes);
    } else {
        snprintf(out, len, "tag %llu",
                 (unsigned long long) env->delivery_tag);
    }
}


/* publishes to the dead-letter target; 0 when the broker confirmed it */
static int
zmqd_dead_letter(zmqd_ctx_t *ctx, zmqd_def_t *d, const json_t *ch,
    const char *chname, amqp_envelope_t *env, int attempts,
    const char *error, char *err, size_t errlen)
{
    int            rc;
    char           rk[300];
    json_t        *dl, *oc;
    zmqd_env_t     senv;
    zmqd_amqp_t   *a;
    const char    *defname, *exchange;
    zmqd_props_t   props;

    dl = json_object_get(ch, "dead_letter");
    defname = d->name;

    if (dl != NULL && json_object_get(dl, "outconn") != NULL) {
        oc = zgw_config_get(ctx->cfg, ZGW_KIND_AMQP_OUTCONN,
                            json_string_value(json_object_get(dl,
                                                              "outconn")));
        defname = json_string_value(json_object_get(oc, "def"));
    }

    zmqd_env(ctx, &senv);

    a = zmqd_publisher(&senv, defname, err, errlen);
    if (a == NULL) {
        return -1;
    }

    if (dl != NULL) {
        exchange = json_string_value(json_object_get(dl, "exchange"));
        snprintf(rk, sizeof(rk), "%s",
                 json_string_value(json_object_get(dl, "routing_key")));

    } else {
        /* no target configured: "<queue>.dead", declared durable */
        exchange = "";
        snprintf(rk, sizeof(rk), "%s.dead",
                 json_string_value(json_object_get(ch, "queue")));
        zmqd_amqp_lock(a);
        (void) amqp_queue_declare(a->conn, 1, amqp_cstring_bytes(rk), 0, 1,
                                  0, 0, amqp_empty_table);
        rc = amqp_get_rpc_reply(a->conn).reply_type == AMQP_RESPONSE_NORMAL;
        zmqd_amqp_unlock(a);

        if (!rc) {
            snprintf(err, errlen, "cannot declare dead-letter queue '%s'",
                     rk);
            zmqd_publisher_close(&ctx->publishers, defname);
            return -1;
        }
    }

    if (zmqd_props_init(&props, &env->message.properties, 5) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    zmqd_props_string(&props, "x-zmq-error", amqp_cstring_bytes(error));
    zmqd_props_int(&props, "x-zmq-attempts", attempts);
    zmqd_props_string(&props, "x-zmq-channel", amqp_cstring_bytes(chname));
    zmqd_props_dead_letter(&props, a->user);

    rc = zmqd_amqp_publish(a, exchange, rk, 1, &props.props,
                           env->message.body, err, errlen);
    zmqd_props_free(&props);

    if (rc != 0 && strstr(err, "unroutable") == NULL) {
        zmqd_publisher_close(&ctx->publishers, defname);
    }

    return rc;
}


static double
zmqd_delay(const json_t *retry, int attempts)
{
    double  initial, mult, max, d;

    initial = (double) json_integer_value(json_object_get(retry,
                                                          "initial_delay"));
    mult = json_number_value(json_object_get(retry, "multiplier"));
    max = (double) json_integer_value(json_object_get(retry, "max_delay"));

    d = initial * pow(mult, attempts - 1);
    return fmin(d, max) / 1000.0;
}


/* the request carries reply_to: it is answered */
static int
zmqd_wants_reply(const amqp_envelope_t *env)
{
    return (env->message.properties._flags & AMQP_BASIC_REPLY_TO_FLAG)
           && env->message.properties.reply_to.len > 0;
}


/*
 * Answers a request that carried reply_to, on the publishing connection
 * of its definition; a reply that cannot go is logged, never holds the
 * message (it is acked or dead-lettered as it would be without it).
 */
static void
zmqd_answer(zmqd_ctx_t *ctx, zmqd_def_t *d, zmqd_consumer_t *c,
    amqp_envelope_t *env, const zmqd_resp_t *resp)
{
    int         rc;
    char        id[300], err[512], trace[ZMQD_TRACE_LOG_LEN];
    zmqd_env_t  senv;

    if (!zmqd_wants_reply(env)) {
        return;
    }

    zmqd_env(ctx, &senv);

    /*
     * An invocation's caller waits on direct reply-to (PROTO14): its
     * reply goes nowhere else, so that whoever may publish invocations
     * cannot make zmqd write into a queue of its choice. Queue names
     * starting with "amq." are the broker's: no client declares one.
     */
    if (c->internal != NULL
        && (env->message.properties.reply_to.len < sizeof(ZMQD_REPLY_TO) - 1
            || memcmp(env->message.properties.reply_to.bytes, ZMQD_REPLY_TO,
                      sizeof(ZMQD_REPLY_TO) - 1) != 0))
    {
        snprintf(err, sizeof(err), "an invocation's reply_to is not "
                 ZMQD_REPLY_TO "...");
        rc = -1;

    } else {
        rc = zmqd_reply(&senv, d->name, &env->message.properties, resp, err,
                        sizeof(err));
    }

    if (rc != 0) {
        zmqd_message_id(env, id, sizeof(id));
        zmqd_log("warn", "channel '%s': message '%s'%s: the reply (status "
                 "%d) to '%.*s' was not sent: %s", c->name, id,
                 zmqd_trace_log(&env->message.properties, trace,
                                sizeof(trace)),
                 resp->status,
                 (int) env->message.properties.reply_to.len,
                 (char *) env->message.properties.reply_to.bytes, err);
    }
}


/* an error answer: status, {"error": code, "message": error} */
static void
zmqd_answer_error(zmqd_ctx_t *ctx, zmqd_def_t *d, zmqd_consumer_t *c,
    amqp_envelope_t *env, int status, const char *code, const char *error)
{
    zmqd_resp_t  resp;

    if (!zmqd_wants_reply(env)) {
        return;
    }

    memset(&resp, 0, sizeof(resp));
    if (zmqd_resp_error(&resp, status, code, error) == 0) {
        zmqd_answer(ctx, d, c, env, &resp);
    }
    zmqd_resp_free(&resp);
}


/*
 * Keeps env unacked for another attempt in delay s (ctx->retries), with
 * inv (taken). Returns 1 when kept; 0 when it could not be (out of
 * memory: it went back to the queue, inv freed).
 */
static int
zmqd_hold(zmqd_ctx_t *ctx, zmqd_def_t *d, zmqd_consumer_t *c,
    amqp_envelope_t *env, int attempts, double since, zmqd_inv_t *inv,
    double delay)
{
    int            i;
    char           id[300], trace[ZMQD_TRACE_LOG_LEN];
    zmqd_retry_t  *r;

    i = zmqd_channel_index(c, env->channel);

    r = i < 0 ? NULL : calloc(1, sizeof(zmqd_retry_t));
    if (r != NULL) {
        r->consumer = c;
        r->index = i;
        r->def = d;
        r->env = *env;
        r->attempts = attempts;
        r->since = since;
        r->inv = inv;

        if (zmqd_heap_push(&ctx->retries, zmqd_now() + delay, r) == 0) {
            c->nretries[i]++;
            return 1;
        }

        free(r);
    }

    zmqd_inv_free(inv);

    /* cannot hold it: back to the queue, never dropped */
    zmqd_amqp_lock(d->consume);
    (void) amqp_basic_nack(d->consume->conn, env->channel,
                           env->delivery_tag, 0, 1);
    zmqd_amqp_unlock(d->consume);
    zmqd_message_id(env, id, sizeof(id));
    zmqd_log("error", "channel '%s': message '%s'%s: out of memory for a "
             "retry: requeued", c->name, id,
             zmqd_trace_log(&env->message.properties, trace, sizeof(trace)));
    return 0;
}


/*
 * A message that failed for good: rejected (ack_mode reject) or
 * dead-lettered and acked, then answered (answer, else 502 service_failed)
 * when it carries reply_to and answer is not "none"; requeued when the
 * dead letter cannot be published.
 */
static void
zmqd_give_up(zmqd_ctx_t *ctx, zmqd_def_t *d, zmqd_consumer_t *c,
    amqp_envelope_t *env, int attempts, const char *error,
    const zmqd_resp_t *answer, int reply)
{
    char     id[300], err[512], trace[ZMQD_TRACE_LOG_LEN];
    json_t  *ch;

    ch = zmqd_channel_obj(ctx, c);
    zmqd_message_id(env, id, sizeof(id));
    (void) zmqd_trace_log(&env->message.properties, trace, sizeof(trace));

    if (strcmp(json_string_value(json_object_get(ch, "ack_mode")), "reject")
        == 0)
    {
        zmqd_amqp_lock(d->consume);
        (void) amqp_basic_reject(d->consume->conn, env->channel,
                                 env->delivery_tag, 0);
        zmqd_amqp_unlock(d->consume);
        zmqd_log("error", "channel '%s': message '%s'%s rejected to the "
                 "queue's dead-letter exchange after %d attempt(s): %s",
                 c->name, id, trace, attempts, error);
        zmqd_metrics_message(c->name, ZMQD_METRICS_REJECTED);

    } else if (zmqd_dead_letter(ctx, d, ch, c->name, env, attempts, error,
                                err, sizeof(err))
               != 0)
    {
        /* never dropped: back to the queue, to be tried again */
        zmqd_amqp_lock(d->consume);
        (void) amqp_basic_nack(d->consume->conn, env->channel,
                               env->delivery_tag, 0, 1);
        zmqd_amqp_unlock(d->consume);
        zmqd_log("error", "channel '%s': message '%s'%s could not be "
                 "dead-lettered (%s); requeued", c->name, id, trace, err);
        return;

    } else {
        zmqd_ack(d, env);
        zmqd_log("error", "channel '%s': message '%s'%s dead-lettered "
                 "after %d attempt(s): %s", c->name, id, trace, attempts,
                 error);
        zmqd_metrics_message(c->name, ZMQD_METRICS_DEAD_LETTERED);
    }

    if (!reply) {
        return;
    }

    if (answer != NULL) {
        zmqd_answer(ctx, d, c, env, answer);
    } else {
        zmqd_answer_error(ctx, d, c, env, 502, "service_failed", error);
    }
}


/*
 * After a failed attempt: retry later, or give up (dead-letter and ack,
 * or reject to the queue's own dead-letter exchange). Returns 1 when env
 * was kept for a retry (the caller must not free it).
 */
static int
zmqd_failed(zmqd_ctx_t *ctx, zmqd_def_t *d, zmqd_consumer_t *c,
    amqp_envelope_t *env, int attempts, double since, const char *error,
    int final)
{
    int      max;
    char     id[300], why[1200], trace[ZMQD_TRACE_LOG_LEN];
    double   delay;
    json_t  *ch, *retry;

    ch = zmqd_channel_obj(ctx, c);
    retry = json_object_get(ch, "retry");
    max = retry ? (int) json_integer_value(json_object_get(retry,
                                                           "attempts"))
                : 3;
    zmqd_message_id(env, id, sizeof(id));

    /* earlier successes are acked before this message is kept or settled */
    zmqd_ack_before(d, c, env->channel);

    delay = retry ? zmqd_delay(retry, attempts) : 1.0 * attempts;

    /*
     * The broker closes a channel whose delivery stays unacked past its
     * consumer_timeout, and the message comes back with its attempts
     * counted from 1 again, forever: a retry that would keep it past
     * --max-hold is not made.
     */
    if (!final && attempts <= max
        && zmqd_now() + delay - since > ctx->max_hold)
    {
        snprintf(why, sizeof(why), "%s (not retried: a retry in %.1f s "
                 "would keep the message unacked for more than %d s, "
                 "--max-hold)", error, delay, ctx->max_hold);
        error = why;
        final = 1;
    }

    if (!final && attempts <= max) {
        if (zmqd_hold(ctx, d, c, env, attempts, since, NULL, delay)) {
            zmqd_log("warn", "channel '%s': message '%s'%s failed "
                     "(attempt %d): %s; retrying in %.2f s", c->name, id,
                     zmqd_trace_log(&env->message.properties, trace,
                                    sizeof(trace)),
                     attempts, error, delay);
            zmqd_metrics_message(c->name, ZMQD_METRICS_RETRIED);
            return 1;
        }
        return 0;
    }

    zmqd_give_up(ctx, d, c, env, attempts, error, NULL, 1);
    return 0;
}


/* ---------------------------------------------------------- invocations */


/*
 * One step of an invocation (PROTO14): an attempt of the target, or of
 * the callback. inv is NULL on delivery. Returns 1 when env was kept for
 * a retry (with inv), else 0 (settled, inv freed).
 *
 *   sync        the target up to repeats times, seconds apart; the reply
 *               is its first success or its last error (502)
 *   sync_async  the reply after the first attempt: its success, or 202
 *               {"accepted": true, "cid"} and the rest in the background
 *   async       background only
 *   background  retries stop at the first success; then the callback (if
 *               any) once with Zato's fields, retried the same way; the
 *               invocation is acked once it is done, dead-lettered when
 *               the callback never succeeded
 */
static int
zmqd_invocation(zmqd_ctx_t *ctx, zmqd_def_t *d, zmqd_consumer_t *c,
    amqp_envelope_t *env, int attempts, double since, zmqd_inv_t *inv)
{
    int                       rc, mode, repeats;
    char                      name[256], mname[32], cid[300], ts[64];
    char                      err[1024], why[2400], channel[300];
    char                      trace[ZMQD_TRACE_LOG_LEN];
    double                    seconds, started;
    json_t                   *svc;
    zmqd_env_t                senv;
    zmqd_msg_t                msg;
    zmqd_resp_t               resp;
    const char               *target, *callback, *kind, *req_ts;
    amqp_bytes_t              body;
    amqp_basic_properties_t   props;

    zmqd_message_id(env, cid, sizeof(cid));
    (void) zmqd_trace_log(&env->message.properties, trace, sizeof(trace));
    zmqd_env(ctx, &senv);

    svc = NULL;
    if (zmqd_header_str(&env->message.properties, "x-zmq-invoke", name,
                        sizeof(name))
        != NULL)
    {
        svc = zgw_config_get(ctx->cfg, ZGW_KIND_SERVICE, name);
        kind = json_string_value(json_object_get(svc, "kind"));
        if (kind == NULL || strcmp(kind, "invoke") != 0
            || !json_is_true(json_object_get(svc, "is_active")))
        {
            svc = NULL;
        }
    } else {
        snprintf(name, sizeof(name), "(no x-zmq-invoke header)");
    }

    zmqd_ack_before(d, c, env->channel);

    if (svc == NULL) {
        snprintf(why, sizeof(why), "invocation '%s': no active invoke "
                 "service '%s'", cid, name);
        memset(&resp, 0, sizeof(resp));
        rc = zmqd_resp_error(&resp, 404, "unknown_service", why);
        zmqd_give_up(ctx, d, c, env, attempts, why, rc == 0 ? &resp : NULL,
                     1);
        zmqd_resp_free(&resp);
        zmqd_inv_free(inv);
        return 0;
    }

    repeats = (int) json_integer_value(json_object_get(svc, "repeats"));
    seconds = (double) json_integer_value(json_object_get(svc, "seconds"));
    target = json_string_value(json_object_get(svc, "target"));
    callback = json_string_value(json_object_get(svc, "callback"));

    if (inv == NULL) {
        if (zmqd_invoke_hold(svc) > ctx->max_hold) {
            snprintf(why, sizeof(why), "invocation '%s' of '%s': refused: "
                     "its retries may hold it unacked for %ld s, more than "
                     "--max-hold %d", cid, name, zmqd_invoke_hold(svc),
                     ctx->max_hold);
            memset(&resp, 0, sizeof(resp));
            rc = zmqd_resp_error(&resp, 500, "schedule_too_long", why);
            zmqd_give_up(ctx, d, c, env, attempts, why,
                         rc == 0 ? &resp : NULL, 1);
            zmqd_resp_free(&resp);
            return 0;
        }

        inv = calloc(1, sizeof(zmqd_inv_t));
        if (inv == NULL) {
            return zmqd_hold(ctx, d, c, env, attempts, since, NULL, 1.0);
        }

        /* as the caller was told when it published */
        mode = zmqd_invoke_mode(zmqd_header_str(&env->message.properties,
                                                "x-zmq-mode", mname,
                                                sizeof(mname)));
        inv->mode = mode >= 0 ? mode
                    : zmqd_invoke_mode(json_string_value(
                          json_object_get(svc, "mode")));
        if (inv->mode < 0) {
            inv->mode = ZMQD_SYNC;
        }
    }

    /* the target and the callback never see the caller's reply_to */
    props = env->message.properties;
    props._flags &= ~AMQP_BASIC_REPLY_TO_FLAG;
    props.reply_to = amqp_empty_bytes;

    memset(&msg, 0, sizeof(msg));
    snprintf(channel, sizeof(channel), "invoke:%s", name);
    msg.channel = channel;
    zmqd_message_id(env, msg.message_id, sizeof(msg.message_id));

    if (inv->phase == ZMQD_INV_TARGET) {
        inv->tries++;
        msg.body = &env->message.body;
        msg.props = &props;

        started = zmqd_now();
        rc = zmqd_service_call(&senv, target, &msg, &resp, err, sizeof(err));
        zmqd_metrics_service(c->name, zmqd_now() - started);
        inv->ok = rc == 0;

        if (rc == 0 && (inv->mode == ZMQD_SYNC || !inv->replied)
            && inv->mode != ZMQD_ASYNC)
        {
            /* sync, or sync_async at its first attempt: the answer */
            zmqd_answer(ctx, d, c, env, &resp);
            zmqd_resp_free(&resp);
            zmqd_log("info", "invocation '%s'%s of '%s': target '%s' "
                     "done (attempt %d), replied", cid, trace, name, target,
                     inv->tries);
            zmqd_ack_done(d, c, env);
            ctx->done++;
            zmqd_metrics_message(c->name, ZMQD_METRICS_ACKED);
            zmqd_metrics_invocation(name, 1);
            zmqd_inv_free(inv);
            return 0;
        }

        if (rc != 0 && inv->tries < repeats) {
            zmqd_resp_free(&resp);

            if (inv->mode == ZMQD_SYNC_ASYNC && !inv->replied) {
                inv->replied = 1;
                if (zmqd_resp_accepted(&resp, cid) == 0) {
                    zmqd_answer(ctx, d, c, env, &resp);
                }
                zmqd_resp_free(&resp);
            }

            zmqd_log("warn", "invocation '%s'%s of '%s': target '%s' "
                     "failed (attempt %d of %d): %s; retrying in %.0f s",
                     cid, trace, name, target, inv->tries, repeats, err,
                     seconds);
            zmqd_metrics_message(c->name, ZMQD_METRICS_RETRIED);
            return zmqd_hold(ctx, d, c, env, attempts, since, inv, seconds);
        }

        if (rc != 0 && inv->mode == ZMQD_SYNC) {
            /* the last error, and the caller is told */
            zmqd_resp_free(&resp);
            zmqd_log("error", "invocation '%s'%s of '%s': target '%s' "
                     "failed %d time(s): %s; replied 502", cid, trace, name,
                     target, inv->tries, err);
            zmqd_answer_error(ctx, d, c, env, 502, "target_failed", err);
            zmqd_ack_done(d, c, env);
            ctx->done++;
            zmqd_metrics_message(c->name, ZMQD_METRICS_ACKED);
            zmqd_metrics_invocation(name, 0);
            zmqd_inv_free(inv);
            return 0;
        }

        /* the end of the background work: the callback's document */
        if (rc != 0 && inv->mode == ZMQD_SYNC_ASYNC && !inv->replied) {
            /* repeats 1: the first attempt was the last */
            inv->replied = 1;
            zmqd_resp_free(&resp);
            if (zmqd_resp_accepted(&resp, cid) == 0) {
                zmqd_answer(ctx, d, c, env, &resp);
            }
        }

        if (rc == 0) {
            zmqd_log("info", "invocation '%s'%s of '%s': target '%s' "
                     "done (attempt %d)", cid, trace, name, target,
                     inv->tries);
        } else {
            zmqd_log("error", "invocation '%s'%s of '%s': target '%s' "
                     "failed %d time(s): %s", cid, trace, name, target,
                     inv->tries, err);
        }

        if (callback == NULL) {
            zmqd_resp_free(&resp);
            zmqd_ack_done(d, c, env);
            ctx->done++;
            zmqd_metrics_message(c->name, ZMQD_METRICS_ACKED);
            zmqd_metrics_invocation(name, rc == 0);
            zmqd_inv_free(inv);
            return 0;
        }

        req_ts = zmqd_header_str(&env->message.properties, "x-zmq-req-ts",
                                 ts, sizeof(ts));
        inv->doc = zmqd_callback_doc(svc, name, rc == 0, cid, req_ts, &resp,
                                     err);
        zmqd_resp_free(&resp);

        if (inv->doc == NULL) {
            /* out of memory: from the start again, later */
            zmqd_inv_free(inv);
            return zmqd_hold(ctx, d, c, env, attempts, since, NULL, 1.0);
        }

        inv->phase = ZMQD_INV_CALLBACK;
        inv->tries = 0;
    }

    /* the callback: its document as a JSON message */
    inv->tries++;
    body = amqp_cstring_bytes(inv->doc);
    props._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props._flags &= ~AMQP_BASIC_CONTENT_ENCODING_FLAG;
    msg.body = &body;
    msg.props = &props;

    started = zmqd_now();
    rc = zmqd_service_call(&senv, callback, &msg, NULL, err, sizeof(err));
    zmqd_metrics_service(c->name, zmqd_now() - started);
    if (rc == 0) {
        zmqd_log("info", "invocation '%s'%s of '%s': callback '%s' done "
                 "(attempt %d)", cid, trace, name, callback, inv->tries);
        zmqd_ack_done(d, c, env);
        ctx->done++;
        zmqd_metrics_message(c->name, ZMQD_METRICS_ACKED);
        zmqd_metrics_invocation(name, inv->ok);
        zmqd_inv_free(inv);
        return 0;
    }

    if (inv->tries < repeats) {
        zmqd_log("warn", "invocation '%s'%s of '%s': callback '%s' "
                 "failed (attempt %d of %d): %s; retrying in %.0f s", cid,
                 trace, name, callback, inv->tries, repeats, err, seconds);
        zmqd_metrics_message(c->name, ZMQD_METRICS_RETRIED);
        return zmqd_hold(ctx, d, c, env, attempts, since, inv, seconds);
    }

    snprintf(why, sizeof(why), "invocation '%s' of '%s': callback '%s' "
             "failed %d time(s): %s", cid, name, callback, inv->tries, err);
    zmqd_metrics_invocation(name, inv->ok);
    zmqd_inv_free(inv);
    /* the caller has its answer already, or waits for none */
    zmqd_give_up(ctx, d, c, env, attempts, why, NULL, 0);
    return 0;
}


/* one attempt; returns 1 when env was kept for a retry */
static int
zmqd_attempt(zmqd_ctx_t *ctx, zmqd_def_t *d, zmqd_consumer_t *c,
    amqp_envelope_t *env, int attempts, double since, zmqd_inv_t *inv)
{
    int           rc, reply;
    char          err[1024], trace[ZMQD_TRACE_LOG_LEN];
    double        started;
    json_t       *ch;
    zmqd_env_t    senv;
    const char   *service;
    zmqd_msg_t    msg;
    zmqd_resp_t   resp;
    zgw_jms_in_t  jms;

    if (c->internal != NULL) {
        return zmqd_invocation(ctx, d, c, env, attempts, since, inv);
    }

    ch = zmqd_channel_obj(ctx, c);

    if (zmqd_format_check(json_string_value(json_object_get(ch,
                                                            "data_format")),
                          &env->message.body, err, sizeof(err))
        != 0)
    {
        /* a bad document stays bad: no retries */
        return zmqd_failed(ctx, d, c, env, attempts, since, err, 1);
    }

    memset(&msg, 0, sizeof(msg));
    msg.channel = c->name;
    msg.body = &env->message.body;
    msg.props = &env->message.properties;
    zmqd_message_id(env, msg.message_id, sizeof(msg.message_id));

    /*
     * use_jms: the service sees the message without the JMS client's
     * headers, and with what they carry as properties (src/core/zgw_jms.h)
     */
    memset(&jms, 0, sizeof(jms));

    if (json_is_true(json_object_get(zgw_config_get(ctx->cfg,
                                                    ZGW_KIND_AMQP_DEF,
                                                    d->name),
                                     "use_jms")))
    {
        if (zgw_jms_unmap(&env->message.properties, &jms) != 0) {
            return zmqd_failed(ctx, d, c, env, attempts, since,
                               "out of memory", 0);
        }

        msg.props = &jms.props;

        if (jms.props._flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
            snprintf(msg.message_id, sizeof(msg.message_id), "%.*s",
                     (int) jms.props.message_id.len,
                     (char *) jms.props.message_id.bytes);
        }
    }

    service = json_string_value(json_object_get(ch, "service"));
    reply = zmqd_wants_reply(env);

    zmqd_env(ctx, &senv);
    started = zmqd_now();
    rc = zmqd_service_call(&senv, service, &msg, reply ? &resp : NULL, err,
                           sizeof(err));
    zmqd_metrics_service(c->name, zmqd_now() - started);
    zgw_jms_in_free(&jms);

    if (rc != 0) {
        if (reply) {
            zmqd_resp_free(&resp);
        }
        /* a message a retry cannot fix is dead-lettered at once */
        return zmqd_failed(ctx, d, c, env, attempts, since, err,
                           rc == ZMQD_PERMANENT);
    }

    if (reply) {
        zmqd_answer(ctx, d, c, env, &resp);
        zmqd_resp_free(&resp);
    }

    zmqd_ack_done(d, c, env);
    ctx->done++;
    zmqd_metrics_message(c->name, ZMQD_METRICS_ACKED);

    if (ctx->verbose) {
        zmqd_log("info", "channel '%s': message '%s'%s done by service "
                 "'%s'%s", c->name, msg.message_id,
                 zmqd_trace_log(&env->message.properties, trace,
                                sizeof(trace)),
                 service, attempts > 1 ? " after a retry" : "");
    }

    return 0;
}


static void
zmqd_run_retries(zmqd_ctx_t *ctx)
{
    double            now;
    zmqd_retry_t     *r;
    zmqd_consumer_t  *c;

    now = zmqd_now();

    /* only what is due: O(log n) each, however many are held */
    while ((r = zmqd_heap_pop_due(&ctx->retries, now)) != NULL) {
        c = r->consumer;
        c->nretries[r->index]--;

        if (!c->running || r->def->consume == NULL) {
            zmqd_inv_free(r->inv);
            amqp_destroy_envelope(&r->env);

        } else if (zmqd_attempt(ctx, r->def, c, &r->env, r->attempts + 1,
                                r->since, r->inv)
                   == 0)
        {
            amqp_destroy_envelope(&r->env);
        }

        free(r);
    }
}


/* ----------------------------------------------------------- the loop */


/* every definition in use has its consuming connection */
static int
zmqd_all_connected(zmqd_ctx_t *ctx)
{
    int  i;

    for (i = 0; i < ZMQD_DEFS_MAX; i++) {
        if (ctx->defs[i].name != NULL && ctx->defs[i].used
            && ctx->defs[i].consume == NULL)
        {
            return 0;
        }
    }

    return 1;
}


static void
zmqd_connect(zmqd_ctx_t *ctx, zmqd_def_t *d)
{
    int               i, j, n, prefetch, ok;
    char              err[512], rbuf[256];
    json_t           *def, *ch;
    zmqd_consumer_t  *c;
    amqp_rpc_reply_t  r;

    if (d->consume == NULL) {
        if (zmqd_now() < d->next_attempt) {
            return;
        }

        def = zgw_config_get(ctx->cfg, ZGW_KIND_AMQP_DEF, d->name);
        d->consume = def ? zmqd_amqp_open(def, zmqd_key(ctx), 0, err,
                                          sizeof(err))
                         : NULL;
        if (d->consume == NULL) {
            zmqd_log("warn", "amqp_def '%s': %s; retrying in %.1f s",
                     d->name, def ? err : "no such definition", d->backoff);
            d->next_attempt = zmqd_now() + d->backoff;
            d->backoff = fmin(d->backoff * 2, 10.0);
            return;
        }

        zmqd_log("info", "amqp_def '%s': connected to %s%s%s", d->name,
                 d->consume->peer, d->consume->tls[0] ? " over " : "",
                 d->consume->tls);
        d->backoff = 0.1;
        d->next_channel = 2;
    }

    for (i = 0; i < ctx->nconsumers; i++) {
        c = ctx->consumers[i];
        if (c->def != d || c->running || zmqd_now() < c->next_attempt) {
            continue;
        }

        ch = zmqd_channel_obj(ctx, c);
        n = (int) json_integer_value(json_object_get(ch, "consumers"));
        prefetch = (int) json_integer_value(json_object_get(ch,
                                                            "prefetch"));

        /*
         * What zmqd holds is bounded: prefetch 0 (no limit) would let the
         * broker push the whole queue into memory while a service fails.
         */
        if (prefetch == 0 || prefetch > ZMQD_PREFETCH_MAX) {
            zmqd_log("warn", "channel '%s': prefetch %d %s; zmqd uses %d",
                     c->name, prefetch,
                     prefetch == 0 ? "(no limit) would hold a whole queue in "
                                     "memory"
                                   : "is more than zmqd holds",
                     ZMQD_PREFETCH_MAX);
            prefetch = ZMQD_PREFETCH_MAX;
        }

        ok = 1;
        c->nchannels = 0;
        memset(c->ndeferred, 0, sizeof(c->ndeferred));

        /* acks must go out long before the broker stops at prefetch */
        c->ack_batch = prefetch / 2 < 1 ? 1
                       : prefetch / 2 > ZMQD_ACK_BATCH ? ZMQD_ACK_BATCH
                       : prefetch / 2;

        zmqd_amqp_lock(d->consume);

        for (j = 0; j < n && ok; j++) {
            int  cn = d->next_channel++;

            if (amqp_channel_open(d->consume->conn, cn) == NULL
                || amqp_basic_qos(d->consume->conn, cn, 0,
                                  (uint16_t) prefetch, 0) == NULL)
            {
                ok = 0;
                break;
            }

            c->channels[c->nchannels++] = cn;

            /* zmqd's own invocation queues are declared by zmqd */
            if (c->internal != NULL
                && amqp_queue_declare(d->consume->conn, cn,
                                      amqp_cstring_bytes(json_string_value(
                                          json_object_get(ch, "queue"))),
                                      0, 1, 0, 0, amqp_empty_table)
                   == NULL)
            {
                ok = 0;
                break;
            }

            if (amqp_basic_consume(d->consume->conn, cn,
                                   amqp_cstring_bytes(json_string_value(
                                       json_object_get(ch, "queue"))),
                                   amqp_empty_bytes, 0, 0, 0,
                                   amqp_empty_table)
                == NULL)
            {
                ok = 0;
            }
        }

        if (ok) {
            zmqd_amqp_unlock(d->consume);
            c->running = 1;
            zmqd_log("info", "channel '%s': consuming queue '%s' (%d "
                     "consumer(s), prefetch %d)", c->name,
                     json_string_value(json_object_get(ch, "queue")), n,
                     prefetch);
            continue;
        }

        r = amqp_get_rpc_reply(d->consume->conn);
        zmqd_log("error", "channel '%s': cannot consume queue '%s': %s; "
                 "retrying in 5 s", c->name,
                 json_string_value(json_object_get(ch, "queue")),
                 zmqd_amqp_reply_error(r, rbuf, sizeof(rbuf)));

        if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION
            && r.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
        {
            amqp_channel_close_ok_t  ok_m = { 0 };

            (void) amqp_send_method(d->consume->conn,
                                    (amqp_channel_t) (d->next_channel - 1),
                                    AMQP_CHANNEL_CLOSE_OK_METHOD, &ok_m);
            for (j = 0; j < c->nchannels - 1; j++) {
                (void) amqp_channel_close(d->consume->conn, c->channels[j],
                                          AMQP_REPLY_SUCCESS);
            }
            c->nchannels = 0;
            c->next_attempt = zmqd_now() + 5;
            zmqd_amqp_unlock(d->consume);

        } else {
            zmqd_amqp_unlock(d->consume);
            zmqd_def_down(ctx, d, rbuf);
            return;
        }
    }
}


static void
zmqd_consume(zmqd_ctx_t *ctx, zmqd_def_t *d, int wait_ms)
{
    int               rc;
    char              rbuf[256];
    amqp_method_number_t  method;
    amqp_frame_t      frame;
    struct timeval    tv;
    amqp_envelope_t   env;
    amqp_rpc_reply_t  r;
    zmqd_consumer_t  *c;

    tv.tv_sec = 0;
    tv.tv_usec = wait_ms * 1000;

    zmqd_amqp_lock(d->consume);
    amqp_maybe_release_buffers(d->consume->conn);
    r = amqp_consume_message(d->consume->conn, &env, &tv, 0);
    zmqd_amqp_unlock(d->consume);

    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        c = zmqd_consumer_by_channel(ctx, d, env.channel);
        if (c == NULL) {
            /* its consumer was stopped: the broker requeues it */
            amqp_destroy_envelope(&env);
            return;
        }

        if (zmqd_attempt(ctx, d, c, &env, 1, zmqd_now(), NULL) == 0) {
            amqp_destroy_envelope(&env);
        }
        return;
    }

    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
        && r.library_error == AMQP_STATUS_TIMEOUT)
    {
        zmqd_flush_all_acks(ctx, d);        /* idle: nothing waits */
        return;
    }

    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
        && r.library_error == AMQP_STATUS_UNEXPECTED_STATE)
    {
        /* a frame that is not a delivery: read it */
        zmqd_amqp_lock(d->consume);
        rc = amqp_simple_wait_frame_noblock(d->consume->conn, &frame, &tv);
        method = rc == AMQP_STATUS_OK && frame.frame_type == AMQP_FRAME_METHOD
                 ? frame.payload.method.id : 0;
        zmqd_amqp_unlock(d->consume);

        if (method != 0) {
            if (method == AMQP_CHANNEL_CLOSE_METHOD
                || method == AMQP_CONNECTION_CLOSE_METHOD
                || method == AMQP_BASIC_CANCEL_METHOD)
            {
                zmqd_def_down(ctx, d, "the broker closed a channel or "
                              "cancelled a consumer");
            }
        }
        return;
    }

    zmqd_def_down(ctx, d, zmqd_amqp_reply_error(r, rbuf, sizeof(rbuf)));
}


static void
zmqd_signal(int signo)
{
    if (signo == SIGHUP) {
        zmqd_reload = 1;
    } else {
        zmqd_stop = 1;
    }
}


/* a worker's signals: set before any can reach it, flags clean */
static void
zmqd_signals(void)
{
    struct sigaction  sa;

    zmqd_stop = 0;
    zmqd_reload = 0;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = zmqd_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}


static void
zmqd_usage(FILE *out)
{
    fprintf(out,
            "usage: zmqd [--config redis://host:port/db | "
            "redis-sentinel://host:port,.../master/db | file:PATH] "
            "[--key-file PATH]\n"
            "            [--workers N] [--max-hold SECONDS] "
            "[--metrics ADDR:PORT]\n"
            "            [--instance NAME] [--fleet-interval SECONDS] "
            "[--check] [--verbose]\n"
            "\n"
            "Consumes the queues of the amqp_channel objects of the "
            "configuration\nand invokes each message's service.\n"
            "\n"
            "  --config SOURCE   default $ZMQ_REDIS, else %s\n"
            "  --key-file PATH   opens sealed secrets; default "
            "$ZMQ_KEY_FILE\n"
            "  --workers N       N processes sharing the channels as "
            "competing\n"
            "                    consumers (default 1)\n"
            "  --max-hold S      the longest a message waits unacked for "
            "its retries\n"
            "                    (default %d; keep it below the broker's "
            "consumer_timeout\n"
            "                    minus %d s, the longest service call; at "
            "most %d).\n"
            "                    An invoke service whose retries (2 x "
            "(repeats - 1) x\n"
            "                    seconds: the target's, then the "
            "callback's) need more\n"
            "                    is refused: its invocations are "
            "dead-lettered\n"
            "  --metrics A:P     serve Prometheus metrics on A:P (such as "
            "127.0.0.1:9464;\n"
            "                    needs --workers 1)\n"
            "  --instance NAME   this zmqd's name in the fleet (default: "
            "host/PID;\n"
            "                    with --workers, NAME/PID per worker)\n"
            "  --fleet-interval S  report into the store every S seconds "
            "(default 5,\n"
            "                    0: not at all; a redis:// source only)\n"
            "  --check           validate the configuration and exit "
            "(0 valid)\n"
            "  --verbose         a log line for every message done\n"
            "\n"
            "Signals: SIGTERM/SIGINT stop consuming and exit 0 (messages "
            "not yet\ndone go back to their queues); SIGHUP reloads the "
            "configuration.\n", ZGW_REDIS_DEFAULT, ZMQD_HOLD_MAX_S,
            ZMQD_SERVICE_MAX_MS / 1000, ZMQD_HOLD_LIMIT_S);
}


int
main(int argc, char **argv)
{
    int                 c, i, check, busy, workers, rc, in_worker;
    int                 startup_done;
    char                err[256], shown[ZGW_URL_SHOW_MAX];
    double              startup_due;
    int                 fleet_interval;
    const char         *env, *key_file, *metrics, *instance;
    zmqd_ctx_t          ctx;
    zmqd_env_t          senv;
    zgw_errors_t        errs;
    zgw_config_t       *cfg;

    static const struct option  longopts[] = {
        { "config", required_argument, NULL, 'c' },
        { "key-file", required_argument, NULL, 'k' },
        { "check", no_argument, NULL, 'C' },
        { "verbose", no_argument, NULL, 'v' },
        { "workers", required_argument, NULL, 'w' },
        { "max-hold", required_argument, NULL, 'm' },
        { "metrics", required_argument, NULL, 'M' },
        { "instance", required_argument, NULL, 'I' },
        { "fleet-interval", required_argument, NULL, 'F' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };

    memset(&ctx, 0, sizeof(ctx));
    check = 0;
    workers = 1;
    metrics = NULL;
    instance = NULL;
    fleet_interval = 5;
    ctx.max_hold = ZMQD_HOLD_MAX_S;

    env = getenv("ZMQ_REDIS");
    ctx.source = env && *env ? env : ZGW_REDIS_DEFAULT;
    env = getenv("ZMQ_KEY_FILE");
    key_file = env && *env ? env : NULL;

    while ((c = getopt_long(argc, argv, "hv", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            ctx.source = optarg;
            break;
        case 'k':
            key_file = optarg;
            break;
        case 'C':
            check = 1;
            break;
        case 'v':
            ctx.verbose = 1;
            break;
        case 'w':
            workers = atoi(optarg);
            if (workers < 1 || workers > 64) {
                fprintf(stderr, "zmqd: --workers must be 1-64\n");
                return 2;
            }
            break;
        case 'm':
            ctx.max_hold = atoi(optarg);
            if (ctx.max_hold < 1 || ctx.max_hold > ZMQD_HOLD_LIMIT_S) {
                fprintf(stderr, "zmqd: --max-hold must be 1-%d "
                        "seconds\n", ZMQD_HOLD_LIMIT_S);
                return 2;
            }
            break;
        case 'M':
            metrics = optarg;
            break;
        case 'I':
            instance = optarg;
            break;
        case 'F':
            fleet_interval = atoi(optarg);
            if (fleet_interval < 0 || fleet_interval > 3600
                || strspn(optarg, "0123456789") != strlen(optarg))
            {
                fprintf(stderr, "zmqd: --fleet-interval must be 0-3600 "
                        "seconds\n");
                return 2;
            }
            break;
        case 'h':
            zmqd_usage(stdout);
            return 0;
        default:
            zmqd_usage(stderr);
            return 2;
        }
    }

    if (optind != argc) {
        zmqd_usage(stderr);
        return 2;
    }

    if (metrics != NULL && workers > 1) {
        /* each worker counts its own: one listener could show one only */
        fprintf(stderr, "zmqd: --metrics needs --workers 1\n");
        return 2;
    }

    /* redis services without a url use the configuration's Redis */
    if (strncmp(ctx.source, "file:", 5) != 0) {
        snprintf(ctx.redis_url, sizeof(ctx.redis_url), "%s", ctx.source);
        /* logged from here on: the source without its password */
        ctx.source = zgw_url_redact(ctx.source, shown, sizeof(shown));

    } else {
        env = getenv("ZMQ_REDIS");
        snprintf(ctx.redis_url, sizeof(ctx.redis_url), "%s",
                 env && *env ? env : ZGW_REDIS_DEFAULT);
    }

    zgw_errors_init(&errs);

    if (key_file != NULL) {
        if (zgw_key_load(&ctx.key, key_file, &errs) != ZGW_OK) {
            zmqd_log("error", "%s", zgw_errors_first(&errs));
            zgw_errors_free(&errs);
            return 1;
        }
        ctx.has_key = 1;
    }

    if (zmqd_fleet_init(&ctx.follow, instance,
                        strncmp(ctx.source, "file:", 5) == 0
                        ? 0 : fleet_interval, workers, err, sizeof(err))
        != 0)
    {
        fprintf(stderr, "zmqd: %s\n", err);
        return 2;
    }

    ctx.follow.source = ctx.source;
    ctx.follow.url = strncmp(ctx.source, "file:", 5) == 0 ? ctx.source
                                                         : ctx.redis_url;

    cfg = zmqd_follow_load(&ctx.follow, 0);
    if (cfg == NULL) {
        zgw_store_close(ctx.follow.store);
        return 1;
    }

    if (check) {
        printf("%s: valid (%zu objects, %zu channel(s))\n", ctx.source,
               zgw_config_total(cfg),
               zgw_config_count(cfg, ZGW_KIND_AMQP_CHANNEL));
        zgw_config_free(cfg);
        zgw_store_close(ctx.follow.store);
        return 0;
    }

    curl_global_init(CURL_GLOBAL_DEFAULT);
    signal(SIGPIPE, SIG_IGN);

    if (workers > 1) {
        /* each worker makes its own connections, Redis's included */
        zgw_store_close(ctx.follow.store);
        ctx.follow.store = NULL;

        rc = zmqd_master(workers, zmqd_signals, &in_worker);
        if (!in_worker) {
            zgw_config_free(cfg);
            curl_global_cleanup();
            return rc;                      /* the master's own exit */
        }

        /*
         * A worker starts on the configuration that is current now, not
         * on the one the master loaded at start-up: a replacement for a
         * worker that died may come long after.
         */
        cfg = zmqd_fresh(&ctx, cfg);

    } else {
        zmqd_signals();
    }

    if (zmqd_heartbeat_start(err, sizeof(err)) != 0) {
        zmqd_log("error", "%s", err);
        zgw_config_free(cfg);
        return 1;
    }

    if (metrics != NULL && zmqd_metrics_start(metrics, err, sizeof(err)) != 0)
    {
        zmqd_log("error", "%s", err);
        zmqd_heartbeat_stop();
        zgw_config_free(cfg);
        return 1;
    }

    ctx.cfg = zgw_config_new();
    zmqd_apply(&ctx, cfg);

    if (zmqd_follow_start(&ctx.follow, ctx.cfg->version, err, sizeof(err))
        != 0)
    {
        zmqd_log("error", "%s", err);
        zmqd_heartbeat_stop();
        return 1;
    }

    zmqd_log("info", "started with configuration version %lld from %s",
             ctx.cfg->version, ctx.source);

    /*
     * Every zmqd following Redis is a cluster member, so that a process
     * joining later knows the cluster runs; with a file, only when a
     * startup service needs the cluster lock.
     */
    if (strncmp(ctx.source, "file:", 5) != 0
        || zmqd_startup_count(ctx.cfg, 1) > 0)
    {
        ctx.in_cluster = zmqd_cluster_join(&ctx.cluster, ctx.redis_url) == 0
                         || ctx.cluster.joined;
    }

    startup_done = 0;
    startup_due = zmqd_now() + ZMQD_STARTUP_WAIT_S;

    while (!zmqd_stop) {
        if (zmqd_reload) {
            zmqd_reload = 0;
            zmqd_follow_reload(&ctx.follow);
        }

        /* followed on its own thread: a hanging Redis never stalls this */
        cfg = zmqd_follow_take(&ctx.follow);
        if (cfg != NULL) {
            zmqd_apply(&ctx, cfg);
        }

        zmqd_run_retries(&ctx);

        busy = 0;
        for (i = 0; i < ZMQD_DEFS_MAX && !zmqd_stop; i++) {
            if (ctx.defs[i].name == NULL || !ctx.defs[i].used) {
                continue;
            }

            zmqd_connect(&ctx, &ctx.defs[i]);
            zmqd_metrics_def_up(ctx.defs[i].name,
                                ctx.defs[i].consume != NULL);

            if (ctx.defs[i].consume != NULL) {
                zmqd_consume(&ctx, &ctx.defs[i], 20);
                busy = 1;
            }
        }

        zmqd_env(&ctx, &senv);
        busy |= zmqd_stomp_channels_poll(&senv, ctx.max_hold, ctx.verbose,
                                         busy ? 0 : 20, &zmqd_stop);

        /* after the configuration loaded and the connections made */
        if (!startup_done && !zmqd_stop
            && (zmqd_all_connected(&ctx) || zmqd_now() >= startup_due))
        {
            startup_done = 1;
            zmqd_env(&ctx, &senv);
            zmqd_startup_run(&senv, ctx.in_cluster ? &ctx.cluster : NULL,
                             &zmqd_stop);
            continue;
        }

        if (!busy) {
            usleep(20000);
        }
    }

    zmqd_log("info", "stopping: %lu message(s) done; messages not done go "
             "back to their queues", ctx.done);

    /* unacked messages (pending retries too) are requeued on close */
    while (ctx.retries.n > 0) {
        zmqd_retry_free(ctx.retries.a[--ctx.retries.n].item);
    }
    zmqd_heap_free(&ctx.retries);

    for (i = 0; i < ZMQD_DEFS_MAX; i++) {
        if (ctx.defs[i].consume) {
            zmqd_flush_all_acks(&ctx, &ctx.defs[i]);
            zmqd_amqp_close(ctx.defs[i].consume);
        }
        free(ctx.defs[i].name);
        free(ctx.defs[i].fingerprint);
    }

    for (i = 0; i < ctx.nconsumers; i++) {
        zmqd_consumer_free(ctx.consumers[i]);
    }

    zmqd_stomp_channels_close();

    zmqd_cluster_leave(&ctx.cluster);

    if (zmqd_follow_stop(&ctx.follow) != 0) {
        zmqd_log("warn", "the configuration thread is still waiting for %s; "
                 "exiting without it", ctx.source);
    }
    zmqd_publishers_close(&ctx.publishers);
    zmqd_heartbeat_stop();
    zmqd_metrics_stop();
    zmqd_services_reset();
    zgw_config_free(ctx.cfg);
    curl_global_cleanup();
    return 0;
}
