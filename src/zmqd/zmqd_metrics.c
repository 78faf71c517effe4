/*
 * zmqd --metrics: the Prometheus text exposition (version 0.0.4) of
 *
 *   zmqd_messages_total{channel,result}  counter  acked, retried,
 *                                        dead_lettered, rejected
 *   zmqd_service_duration_seconds{channel}  histogram  one service
 *                                        call
 *   zmqd_connection_up{def,transport}    gauge  the consuming
 *                                        connection(s) of an amqp_def
 *                                        ("amqp") or stomp_def ("stomp")
 *   zmqd_invocations_total{service,result}  counter  succeeded, failed:
 *                                        invocations of invoke services
 *                                        done (their target's outcome)
 *
 * served at any path by libmicrohttpd's own thread. Tables are fixed:
 * the loop claims a slot for a name the first time it counts it (name
 * first, then "used" with release order); the reader takes "used" with
 * acquire order, so it never sees half a name.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "zmqd_metrics.h"


#define ZMQD_METRICS_NAME     256
#define ZMQD_METRICS_BUCKETS  15        /* 14 bounds and +Inf */


typedef struct {
    int        used;
    char       name[ZMQD_METRICS_NAME];
    uint64_t   count[ZMQD_METRICS_RESULTS];
    uint64_t   buckets[ZMQD_METRICS_BUCKETS];      /* each, not summed */
    uint64_t   sum_us;
} zmqd_metrics_channel_t;

typedef struct {
    int        used;
    char       name[ZMQD_METRICS_NAME];
    int        stomp;
    int        up;
} zmqd_metrics_def_t;

typedef struct {
    int        used;
    char       name[ZMQD_METRICS_NAME];
    uint64_t   count[2];                           /* failed, succeeded */
} zmqd_metrics_service_t;


static struct {
    zmqd_metrics_channel_t    channels[ZMQD_METRICS_CHANNELS];
    zmqd_metrics_channel_t    overflow;          /* "_overflow" */
    zmqd_metrics_def_t        defs[ZMQD_METRICS_DEFS];
    zmqd_metrics_service_t    services[ZMQD_METRICS_SERVICES];
    zmqd_metrics_service_t    services_overflow;
} zmqd_m;

static struct MHD_Daemon  *zmqd_metrics_daemon;

static const double  zmqd_metrics_bounds[] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1, 2.5, 5, 10
};

static const char  *zmqd_metrics_le[] = {
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"
};

static const char  *zmqd_metrics_results[] = {
    "acked", "retried", "dead_lettered", "rejected"
};


#define zmqd_add(p)     __atomic_fetch_add((p), 1, __ATOMIC_RELAXED)
#define zmqd_load(p)    __atomic_load_n((p), __ATOMIC_RELAXED)


/* the channel's slot, claimed on first use; "_overflow" when full */
static zmqd_metrics_channel_t *
zmqd_metrics_channel(const char *channel)
{
    int                      i;
    zmqd_metrics_channel_t  *c;

    for (i = 0; i < ZMQD_METRICS_CHANNELS; i++) {
        c = &zmqd_m.channels[i];

        if (!__atomic_load_n(&c->used, __ATOMIC_ACQUIRE)) {
            snprintf(c->name, sizeof(c->name), "%s", channel);
            __atomic_store_n(&c->used, 1, __ATOMIC_RELEASE);
            return c;
        }

        if (strncmp(c->name, channel, sizeof(c->name) - 1) == 0) {
            return c;
        }
    }

    return &zmqd_m.overflow;
}


void
zmqd_metrics_message(const char *channel, zmqd_metrics_result_e result)
{
    zmqd_add(&zmqd_metrics_channel(channel)->count[result]);
}


void
zmqd_metrics_service(const char *channel, double seconds)
{
    int                      i;
    zmqd_metrics_channel_t  *c;

    c = zmqd_metrics_channel(channel);

    for (i = 0; i < ZMQD_METRICS_BUCKETS - 1; i++) {
        if (seconds <= zmqd_metrics_bounds[i]) {
            break;
        }
    }

    zmqd_add(&c->buckets[i]);
    __atomic_fetch_add(&c->sum_us,
                       (uint64_t) (seconds > 0 ? seconds * 1e6 + 0.5 : 0),
                       __ATOMIC_RELAXED);
}


static void
zmqd_metrics_up(const char *def, int stomp, int up)
{
    int                  i;
    zmqd_metrics_def_t  *d;

    for (i = 0; i < ZMQD_METRICS_DEFS; i++) {
        d = &zmqd_m.defs[i];

        if (!__atomic_load_n(&d->used, __ATOMIC_ACQUIRE)) {
            snprintf(d->name, sizeof(d->name), "%s", def);
            d->stomp = stomp;
            __atomic_store_n(&d->up, up, __ATOMIC_RELAXED);
            __atomic_store_n(&d->used, 1, __ATOMIC_RELEASE);
            return;
        }

        if (d->stomp == stomp
            && strncmp(d->name, def, sizeof(d->name) - 1) == 0)
        {
            __atomic_store_n(&d->up, up, __ATOMIC_RELAXED);
            return;
        }
    }
}


void
zmqd_metrics_def_up(const char *def, int up)
{
    zmqd_metrics_up(def, 0, up);
}


void
zmqd_metrics_stomp_up(const char *def, int up)
{
    zmqd_metrics_up(def, 1, up);
}


void
zmqd_metrics_invocation(const char *service, int ok)
{
    int                      i;
    zmqd_metrics_service_t  *s;

    for (i = 0; i < ZMQD_METRICS_SERVICES; i++) {
        s = &zmqd_m.services[i];

        if (!__atomic_load_n(&s->used, __ATOMIC_ACQUIRE)) {
            snprintf(s->name, sizeof(s->name), "%s", service);
            __atomic_store_n(&s->used, 1, __ATOMIC_RELEASE);
            break;
        }

        if (strncmp(s->name, service, sizeof(s->name) - 1) == 0) {
            break;
        }
    }

    if (i == ZMQD_METRICS_SERVICES) {
        s = &zmqd_m.services_overflow;
    }

    zmqd_add(&s->count[ok ? 1 : 0]);
}


/* ------------------------------------------------------------ the text */


typedef struct {
    char    *buf;
    size_t   len;
    size_t   size;
    int      failed;
} zmqd_metrics_out_t;


static void
zmqd_metrics_printf(zmqd_metrics_out_t *out, const char *fmt, ...)
{
    int       n;
    char     *p;
    size_t    size;
    va_list   args;

    for ( ;; ) {
        if (out->failed) {
            return;
        }

        va_start(args, fmt);
        n = vsnprintf(out->buf + out->len, out->size - out->len, fmt, args);
        va_end(args);

        if (n < 0) {
            out->failed = 1;
            return;
        }

        if ((size_t) n < out->size - out->len) {
            out->len += n;
            return;
        }

        size = out->size * 2 + n;
        p = realloc(out->buf, size);
        if (p == NULL) {
            out->failed = 1;
            return;
        }
        out->buf = p;
        out->size = size;
    }
}


/* a label value: backslash, double quote and line feed escaped */
static void
zmqd_metrics_escape(const char *s, char *out)
{
    for ( ; *s; s++) {
        switch (*s) {
        case '\\':
            *out++ = '\\';
            *out++ = '\\';
            break;
        case '"':
            *out++ = '\\';
            *out++ = '"';
            break;
        case '\n':
            *out++ = '\\';
            *out++ = 'n';
            break;
        default:
            *out++ = *s;
        }
    }
    *out = '\0';
}


/* the channels in use and "_overflow" when it counted anything */
static zmqd_metrics_channel_t *
zmqd_metrics_nth(int i, char *name)
{
    int                      r;
    zmqd_metrics_channel_t  *c;

    if (i < ZMQD_METRICS_CHANNELS) {
        c = &zmqd_m.channels[i];
        if (!__atomic_load_n(&c->used, __ATOMIC_ACQUIRE)) {
            return NULL;
        }
        zmqd_metrics_escape(c->name, name);
        return c;
    }

    c = &zmqd_m.overflow;
    for (r = 0; r < ZMQD_METRICS_RESULTS; r++) {
        if (zmqd_load(&c->count[r]) != 0) {
            strcpy(name, "_overflow");
            return c;
        }
    }
    for (r = 0; r < ZMQD_METRICS_BUCKETS; r++) {
        if (zmqd_load(&c->buckets[r]) != 0) {
            strcpy(name, "_overflow");
            return c;
        }
    }

    return NULL;
}


static void
zmqd_metrics_render(zmqd_metrics_out_t *out)
{
    int                      i, r;
    char                     name[2 * ZMQD_METRICS_NAME];
    uint64_t                 cum, v;
    zmqd_metrics_channel_t  *c;
    zmqd_metrics_service_t  *s;

    zmqd_metrics_printf(out, "# HELP zmqd_messages_total Messages zmqd "
                        "consumed, by channel and how each attempt "
                        "ended.\n# TYPE zmqd_messages_total counter\n");

    for (i = 0; i <= ZMQD_METRICS_CHANNELS; i++) {
        c = zmqd_metrics_nth(i, name);
        if (c == NULL) {
            if (i < ZMQD_METRICS_CHANNELS) {
                i = ZMQD_METRICS_CHANNELS - 1;  /* then the overflow */
            }
            continue;
        }

        for (r = 0; r < ZMQD_METRICS_RESULTS; r++) {
            zmqd_metrics_printf(out, "zmqd_messages_total{channel=\"%s\","
                                "result=\"%s\"} %llu\n", name,
                                zmqd_metrics_results[r],
                                (unsigned long long) zmqd_load(&c->count[r]));
        }
    }

    zmqd_metrics_printf(out, "# HELP zmqd_service_duration_seconds One "
                        "call of a channel's service.\n# TYPE "
                        "zmqd_service_duration_seconds histogram\n");

    for (i = 0; i <= ZMQD_METRICS_CHANNELS; i++) {
        c = zmqd_metrics_nth(i, name);
        if (c == NULL) {
            if (i < ZMQD_METRICS_CHANNELS) {
                i = ZMQD_METRICS_CHANNELS - 1;
            }
            continue;
        }

        cum = 0;
        for (r = 0; r < ZMQD_METRICS_BUCKETS; r++) {
            cum += zmqd_load(&c->buckets[r]);
            zmqd_metrics_printf(out, "zmqd_service_duration_seconds_bucket"
                                "{channel=\"%s\",le=\"%s\"} %llu\n", name,
                                zmqd_metrics_le[r], (unsigned long long) cum);
        }

        v = zmqd_load(&c->sum_us);
        zmqd_metrics_printf(out, "zmqd_service_duration_seconds_sum"
                            "{channel=\"%s\"} %llu.%06llu\n", name,
                            (unsigned long long) (v / 1000000),
                            (unsigned long long) (v % 1000000));
        zmqd_metrics_printf(out, "zmqd_service_duration_seconds_count"
                            "{channel=\"%s\"} %llu\n", name,
                            (unsigned long long) cum);
    }

    zmqd_metrics_printf(out, "# HELP zmqd_connection_up 1 when zmqd's "
                        "consuming connection of the amqp_def is open (of "
                        "a stomp_def: those of all its stomp_channels).\n"
                        "# TYPE zmqd_connection_up gauge\n");

    for (i = 0; i < ZMQD_METRICS_DEFS; i++) {
        if (!__atomic_load_n(&zmqd_m.defs[i].used, __ATOMIC_ACQUIRE)) {
            break;
        }
        zmqd_metrics_escape(zmqd_m.defs[i].name, name);
        zmqd_metrics_printf(out, "zmqd_connection_up{def=\"%s\","
                            "transport=\"%s\"} %d\n", name,
                            zmqd_m.defs[i].stomp ? "stomp" : "amqp",
                            __atomic_load_n(&zmqd_m.defs[i].up,
                                            __ATOMIC_RELAXED));
    }

    zmqd_metrics_printf(out, "# HELP zmqd_invocations_total Invocations of "
                        "invoke services zmqd finished, by whether their "
                        "target succeeded.\n"
                        "# TYPE zmqd_invocations_total counter\n");

    for (i = 0; i <= ZMQD_METRICS_SERVICES; i++) {
        if (i < ZMQD_METRICS_SERVICES) {
            s = &zmqd_m.services[i];
            if (!__atomic_load_n(&s->used, __ATOMIC_ACQUIRE)) {
                i = ZMQD_METRICS_SERVICES - 1;      /* then the overflow */
                continue;
            }
            zmqd_metrics_escape(s->name, name);

        } else {
            s = &zmqd_m.services_overflow;
            if (zmqd_load(&s->count[0]) == 0 && zmqd_load(&s->count[1]) == 0)
            {
                break;
            }
            strcpy(name, "_overflow");
        }

        zmqd_metrics_printf(out, "zmqd_invocations_total{service=\"%s\","
                            "result=\"succeeded\"} %llu\n"
                            "zmqd_invocations_total{service=\"%s\","
                            "result=\"failed\"} %llu\n", name,
                            (unsigned long long) zmqd_load(&s->count[1]),
                            name,
                            (unsigned long long) zmqd_load(&s->count[0]));
    }
}


static enum MHD_Result
zmqd_metrics_answer(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
    int                   rc;
    zmqd_metrics_out_t    out;
    struct MHD_Response  *resp;

    (void) cls;
    (void) url;
    (void) version;
    (void) upload_data;
    (void) upload_data_size;
    (void) con_cls;

    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        resp = MHD_create_response_from_buffer(0, (void *) "",
                                               MHD_RESPMEM_PERSISTENT);
        if (resp == NULL) {
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Allow", "GET, HEAD");
        rc = MHD_queue_response(conn, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
        MHD_destroy_response(resp);
        return rc;
    }

    memset(&out, 0, sizeof(out));
    out.size = 16384;
    out.buf = malloc(out.size);
    if (out.buf == NULL) {
        return MHD_NO;
    }

    zmqd_metrics_render(&out);

    if (out.failed) {
        free(out.buf);
        return MHD_NO;
    }

    resp = MHD_create_response_from_buffer(out.len, out.buf,
                                           MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(out.buf);
        return MHD_NO;
    }

    MHD_add_response_header(resp, "Content-Type",
                            "text/plain; version=0.0.4; charset=utf-8");
    rc = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);

    return rc;
}


int
zmqd_metrics_start(const char *addr, char *err, size_t len)
{
    char                      host[64], *end;
    long                      port;
    const char               *colon;
    unsigned int              flags;
    struct sockaddr_in        sin;
    struct sockaddr_in6       sin6;
    struct sockaddr          *sa;

    colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr
        || (size_t) (colon - addr) >= sizeof(host))
    {
        snprintf(err, len, "--metrics %s: expected ADDRESS:PORT, such as "
                 "127.0.0.1:9464", addr);
        return -1;
    }

    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || end == colon + 1 || port < 1
        || port > 65535)
    {
        snprintf(err, len, "--metrics %s: the port must be 1-65535", addr);
        return -1;
    }

    memcpy(host, addr, colon - addr);
    host[colon - addr] = '\0';

    memset(&sin, 0, sizeof(sin));
    memset(&sin6, 0, sizeof(sin6));
    flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        host[strlen(host) - 1] = '\0';
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons((uint16_t) port);
        if (inet_pton(AF_INET6, host + 1, &sin6.sin6_addr) != 1) {
            snprintf(err, len, "--metrics %s: not an IPv6 address", addr);
            return -1;
        }
        sa = (struct sockaddr *) &sin6;
        flags |= MHD_USE_IPv6;

    } else {
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t) port);
        if (inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
            snprintf(err, len, "--metrics %s: not an IPv4 address (or "
                     "[IPv6])", addr);
            return -1;
        }
        sa = (struct sockaddr *) &sin;
    }

    zmqd_metrics_daemon = MHD_start_daemon(flags, (uint16_t) port, NULL, NULL,
                                           zmqd_metrics_answer, NULL,
                                           MHD_OPTION_SOCK_ADDR, sa,
                                           MHD_OPTION_CONNECTION_LIMIT,
                                           (unsigned int) 64,
                                           MHD_OPTION_CONNECTION_TIMEOUT,
                                           (unsigned int) 10,
                                           MHD_OPTION_END);
    if (zmqd_metrics_daemon == NULL) {
        snprintf(err, len, "--metrics %s: cannot listen (%s)", addr,
                 strerror(errno));
        return -1;
    }

    return 0;
}


void
zmqd_metrics_stop(void)
{
    if (zmqd_metrics_daemon != NULL) {
        MHD_stop_daemon(zmqd_metrics_daemon);
        zmqd_metrics_daemon = NULL;
    }
}
