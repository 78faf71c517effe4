/*
 * zmqd: startup services, and the cluster membership that tells a cluster
 * start from a zmqd joining a running cluster.
 *
 * A startup object names a service and a payload (inline, or read from
 * payload_file: a path or Zato's file://path). zmqd invokes it once, after
 * it loaded its configuration and connected its definitions, through the
 * same services a channel's messages go to, the payload as the body:
 *
 *   when: each   in every zmqd process (every worker of --workers N)
 *   when: first  once per cluster start: only in the process that found
 *                no other zmqd alive when it joined
 *
 * Membership: every zmqd is a member of the sorted set zmq:zmqd:members
 * in the configuration's Redis, scored by when its membership expires
 * (Redis's clock, ms): it joins at start, renews every 2 s on a thread of
 * its own, and leaves on a clean stop. Joining is one Lua script (drop the
 * expired members, count the others, add itself), so of several processes
 * starting together exactly one finds the set empty: that one is the
 * cluster's starter and runs the "first" services. A process killed
 * without leaving stays a member for ZMQD_MEMBER_TTL_MS.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "zmqd.h"


#define ZMQD_MEMBERS_KEY       "zmq:zmqd:members"
#define ZMQD_MEMBER_TTL_MS     10000
#define ZMQD_MEMBER_RENEW_MS   2000
#define ZMQD_MEMBER_TIMEOUT_MS 2000
/* the largest payload: as the model's inline payload */
#define ZMQD_PAYLOAD_MAX       16777216


/*
 * KEYS[1] the members, ARGV[1] this member, ARGV[2] the TTL in ms.
 * Returns how many other members are alive. Redis's own clock, so the
 * hosts' clocks do not matter.
 */
static const char  zmqd_member_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "local n = redis.call('ZCARD', KEYS[1])\n"
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "return n\n";


static int zmqd_member(zmqd_cluster_t *c, long long *others, char *err,
    size_t errlen);
static void *zmqd_cluster_thread(void *arg);
static int zmqd_startup_cmp(const void *a, const void *b);
static char *zmqd_startup_payload(const json_t *st, size_t *len,
    const char **path, char *err, size_t errlen);


/* ----------------------------------------------------------- membership */


/* joins (or renews): 0 with others set, or -1 with err filled */
static int
zmqd_member(zmqd_cluster_t *c, long long *others, char *err, size_t errlen)
{
    char               ttl[32], shown[ZGW_SHOW_SIZE];
    redisReply        *r;
    zgw_errors_t       errs;
    zgw_redis_conn_t  *rc;

    if (c->store != NULL && zgw_redis_error(zgw_store_context(c->store))) {
        zgw_store_close(c->store);
        c->store = NULL;
    }

    if (c->store == NULL) {
        zgw_errors_init(&errs);
        c->store = zgw_store_connect(c->url, ZMQD_MEMBER_TIMEOUT_MS, &errs);
        if (c->store == NULL) {
            snprintf(err, errlen, "%s", zgw_errors_first(&errs));
            zgw_errors_free(&errs);
            return -1;
        }
        zgw_errors_free(&errs);
    }

    rc = zgw_store_context(c->store);
    snprintf(ttl, sizeof(ttl), "%d", ZMQD_MEMBER_TTL_MS);

    r = zgw_redis_command(rc, "EVAL %s 1 %s %s %s", zmqd_member_lua,
                          ZMQD_MEMBERS_KEY, c->id, ttl);

    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        snprintf(err, errlen, "redis %s: %s", c->shown,
                 r == NULL ? zgw_redis_error(rc)
                 : r->type == REDIS_REPLY_ERROR
                   ? zgw_show(shown, sizeof(shown), r->str, r->len)
                 : "unexpected reply");
        if (r != NULL) {
            freeReplyObject(r);
        }
        /* a connection that failed a command is not used again */
        zgw_store_close(c->store);
        c->store = NULL;
        return -1;
    }

    *others = r->integer;
    freeReplyObject(r);
    return 0;
}


int
zmqd_cluster_join(zmqd_cluster_t *c, const char *url)
{
    char                 host[256], shown[ZGW_URL_SHOW_MAX];
    unsigned char        rnd[8];
    pthread_condattr_t   attr;

    memset(c, 0, sizeof(*c));
    snprintf(c->url, sizeof(c->url), "%s", url);
    snprintf(c->shown, sizeof(c->shown), "%s",
             zgw_url_redact(url, shown, sizeof(shown)));

    if (gethostname(host, sizeof(host)) != 0) {
        snprintf(host, sizeof(host), "?");
    }
    host[sizeof(host) - 1] = '\0';

    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd)) {
        memset(rnd, 0, sizeof(rnd));
    }

    snprintf(c->id, sizeof(c->id), "%s:%d:%02x%02x%02x%02x%02x%02x%02x%02x",
             host, (int) getpid(), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4],
             rnd[5], rnd[6], rnd[7]);

    if (zmqd_member(c, &c->others, c->err, sizeof(c->err)) == 0) {
        c->joined = 1;
        c->starter = c->others == 0;

        if (c->starter) {
            zmqd_log("info", "cluster: no other zmqd alive in %s: this one "
                     "starts the cluster (member %s)", c->shown, c->id);
        } else {
            zmqd_log("info", "cluster: joined %lld other zmqd process(es) "
                     "alive in %s (member %s)", c->others, c->shown, c->id);
        }

    } else {
        c->lost = 1;
        zmqd_log("warn", "cluster: cannot join: %s; retrying every %d s",
                 c->err, ZMQD_MEMBER_RENEW_MS / 1000);
    }

    /* renews the membership, or keeps trying to join */
    if (pthread_mutex_init(&c->lock, NULL) != 0
        || pthread_condattr_init(&attr) != 0)
    {
        return -1;
    }
    (void) pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (pthread_cond_init(&c->cond, &attr) != 0) {
        pthread_condattr_destroy(&attr);
        pthread_mutex_destroy(&c->lock);
        return -1;
    }
    pthread_condattr_destroy(&attr);

    c->inited = 1;

    if (pthread_create(&c->thread, NULL, zmqd_cluster_thread, c) != 0) {
        zmqd_log("warn", "cluster: cannot start the thread that renews the "
                 "membership: %s", strerror(errno));
        return -1;
    }

    c->running = 1;
    return 0;
}


static void *
zmqd_cluster_thread(void *arg)
{
    zmqd_cluster_t   *c = arg;
    char              err[1024];
    long long         others;
    struct timespec   ts;

    pthread_mutex_lock(&c->lock);

    while (!c->stop) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += ZMQD_MEMBER_RENEW_MS / 1000;
        ts.tv_nsec += (ZMQD_MEMBER_RENEW_MS % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }

        while (!c->stop
               && pthread_cond_timedwait(&c->cond, &c->lock, &ts) == 0)
        {
            /* woken early: stop, or spurious */
        }

        if (c->stop) {
            break;
        }

        /* the Redis calls are bounded (2 s each), outside the lock */
        pthread_mutex_unlock(&c->lock);

        if (zmqd_member(c, &others, err, sizeof(err)) == 0) {
            if (c->lost) {
                c->lost = 0;
                zmqd_log("info", "cluster: member again in %s (%lld other "
                         "zmqd process(es) alive)", c->shown, others);
            }

        } else if (!c->lost) {
            c->lost = 1;
            zmqd_log("warn", "cluster: cannot renew the membership: %s; "
                     "retrying every %d s", err,
                     ZMQD_MEMBER_RENEW_MS / 1000);
        }

        pthread_mutex_lock(&c->lock);
    }

    pthread_mutex_unlock(&c->lock);
    return NULL;
}


void
zmqd_cluster_leave(zmqd_cluster_t *c)
{
    char         shown[ZGW_SHOW_SIZE];
    redisReply  *r;

    if (c->running) {
        pthread_mutex_lock(&c->lock);
        c->stop = 1;
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->lock);

        /* at most one renewal in progress: 2 s to connect, 2 s to answer */
        pthread_join(c->thread, NULL);
        c->running = 0;
    }

    if (c->inited) {
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->lock);
        c->inited = 0;
    }

    /* a clean stop leaves at once: a restart of all is a cluster start */
    if (c->store != NULL && !zgw_redis_error(zgw_store_context(c->store))) {
        r = zgw_redis_command(zgw_store_context(c->store), "ZREM %s %s",
                              ZMQD_MEMBERS_KEY, c->id);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            zmqd_log("warn", "cluster: cannot leave (the membership expires "
                     "in %d s): redis %s: %s", ZMQD_MEMBER_TTL_MS / 1000,
                     c->shown,
                     r ? zgw_show(shown, sizeof(shown), r->str, r->len)
                       : zgw_redis_error(zgw_store_context(c->store)));
        }
        if (r != NULL) {
            freeReplyObject(r);
        }
    }

    zgw_store_close(c->store);
    c->store = NULL;
}


/* ------------------------------------------------------ startup services */


/* how many active startup objects run when "first" (first) or "each" */
int
zmqd_startup_count(const zgw_config_t *cfg, int first)
{
    int          n;
    json_t      *st;
    const char  *name, *when;

    n = 0;

    json_object_foreach(cfg->objs[ZGW_KIND_STARTUP], name, st) {
        when = json_string_value(json_object_get(st, "when"));
        if (json_is_true(json_object_get(st, "is_active"))
            && (strcmp(when ? when : "first", "first") == 0) == first)
        {
            n++;
        }
    }

    return n;
}


static int
zmqd_startup_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}


/*
 * The payload: inline, or the contents of payload_file (a path, or
 * file://path as Zato writes it; an inline payload "file://path" is read
 * from the file too, as Zato does). Empty without either. NULL with err
 * filled (and *path set) when the file cannot be read.
 */
static char *
zmqd_startup_payload(const json_t *st, size_t *len, const char **path,
    char *err, size_t errlen)
{
    int           fd;
    char         *buf;
    size_t        got;
    ssize_t       n;
    const char   *text, *file;
    struct stat   sb;

    *path = NULL;
    text = json_string_value(json_object_get(st, "payload"));
    file = json_string_value(json_object_get(st, "payload_file"));

    if (file == NULL && text != NULL && strncmp(text, "file://", 7) == 0
        && text[7] != '\0')
    {
        file = text;
    }

    if (file == NULL) {
        text = text ? text : "";
        *len = strlen(text);
        buf = malloc(*len + 1);
        if (buf == NULL) {
            snprintf(err, errlen, "out of memory");
            return NULL;
        }
        memcpy(buf, text, *len + 1);
        return buf;
    }

    if (strncmp(file, "file://", 7) == 0) {
        file += 7;
    }

    *path = file;

    /* never blocks: a FIFO or a device is refused, not waited on */
    fd = open(file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd == -1) {
        snprintf(err, errlen, "%s", strerror(errno));
        return NULL;
    }

    if (fstat(fd, &sb) != 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        close(fd);
        return NULL;
    }

    if (!S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "not a regular file");
        close(fd);
        return NULL;
    }

    if (sb.st_size > ZMQD_PAYLOAD_MAX) {
        snprintf(err, errlen, "%lld bytes, more than %d",
                 (long long) sb.st_size, ZMQD_PAYLOAD_MAX);
        close(fd);
        return NULL;
    }

    buf = malloc((size_t) sb.st_size + 1);
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory");
        close(fd);
        return NULL;
    }

    /* what the file holds now, up to the size it had */
    got = 0;
    while (got < (size_t) sb.st_size) {
        n = read(fd, buf + got, (size_t) sb.st_size - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            snprintf(err, errlen, "%s", strerror(errno));
            free(buf);
            close(fd);
            return NULL;
        }
        if (n == 0) {
            break;
        }
        got += (size_t) n;
    }

    close(fd);
    buf[got] = '\0';
    *len = got;
    return buf;
}


void
zmqd_startup_run(const zmqd_env_t *env, const zmqd_cluster_t *cluster,
    const volatile sig_atomic_t *stop)
{
    int                       first;
    char                      err[1024], channel[300], *payload;
    size_t                    i, n, len;
    double                    t0;
    json_t                   *st, *all;
    const char              **names, *name, *when, *service, *path;
    zmqd_msg_t                msg;
    amqp_bytes_t              body;
    amqp_basic_properties_t   props;

    all = env->cfg->objs[ZGW_KIND_STARTUP];
    n = json_object_size(all);
    if (n == 0) {
        return;
    }

    names = calloc(n, sizeof(char *));
    if (names == NULL) {
        zmqd_log("error", "startup services not run: out of memory");
        return;
    }

    i = 0;
    json_object_foreach(all, name, st) {
        names[i++] = name;
    }

    /* in name order, one after the other */
    qsort(names, n, sizeof(char *), zmqd_startup_cmp);

    for (i = 0; i < n && !*stop; i++) {
        name = names[i];
        st = json_object_get(all, name);

        if (!json_is_true(json_object_get(st, "is_active"))) {
            continue;
        }

        when = json_string_value(json_object_get(st, "when"));
        when = when ? when : "first";
        first = strcmp(when, "first") == 0;
        service = json_string_value(json_object_get(st, "service"));

        if (first && cluster == NULL) {
            zmqd_log("error", "startup '%s' (when first): not run: no "
                     "cluster lock", name);
            continue;
        }

        if (first && !cluster->joined) {
            zmqd_log("error", "startup '%s' (when first): not run: the "
                     "cluster lock could not be taken (%s)", name,
                     cluster->err);
            continue;
        }

        if (first && !cluster->starter) {
            zmqd_log("info", "startup '%s' (when first): not run here: "
                     "%lld other zmqd process(es) were alive when this one "
                     "joined (it runs once per cluster start)", name,
                     cluster->others);
            continue;
        }

        payload = zmqd_startup_payload(st, &len, &path, err, sizeof(err));
        if (payload == NULL) {
            if (path != NULL) {
                zmqd_log("error", "startup '%s' (when %s): service '%s' not "
                         "invoked: payload_file '%s' cannot be read: %s",
                         name, when, service, path, err);
            } else {
                zmqd_log("error", "startup '%s' (when %s): service '%s' not "
                         "invoked: %s", name, when, service, err);
            }
            continue;
        }

        /* a message as a channel would hand it over, without a broker */
        memset(&props, 0, sizeof(props));
        memset(&msg, 0, sizeof(msg));
        snprintf(channel, sizeof(channel), "startup:%s", name);
        snprintf(msg.message_id, sizeof(msg.message_id), "startup:%s", name);
        props._flags = AMQP_BASIC_MESSAGE_ID_FLAG;
        props.message_id = amqp_cstring_bytes(msg.message_id);
        body.bytes = payload;
        body.len = len;
        msg.channel = channel;
        msg.body = &body;
        msg.props = &props;

        t0 = zmqd_now();

        /* each service call is bounded as for a channel's message */
        if (zmqd_service_invoke(env, service, &msg, err, sizeof(err)) == 0)
        {
            zmqd_log("info", "startup '%s' (when %s): service '%s' done in "
                     "%.0f ms (payload: %zu bytes%s%s)", name, when, service,
                     (zmqd_now() - t0) * 1000, len,
                     path ? " from " : "", path ? path : "");
        } else {
            zmqd_log("error", "startup '%s' (when %s): service '%s' failed "
                     "after %.0f ms: %s", name, when, service,
                     (zmqd_now() - t0) * 1000, err);
        }

        free(payload);
    }

    free(names);
}
