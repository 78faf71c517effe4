/*
 * zmqctl: ping of an amqp_def and send through an amqp_outconn, with
 * rabbitmq-c over a fresh blocking connection.
 *
 * Every wait is bounded by --timeout: the TCP connect is ours
 * (zmqctl_tcp_connect(), which tells "Connection refused" from a timeout;
 * rabbitmq-c only says "a socket error occurred") and the socket is handed
 * to rabbitmq-c; the AMQP handshake is bounded by its handshake timeout,
 * every RPC (channel.open, confirm.select, connection.close) by its RPC
 * timeout, the wait for a confirm by amqp_simple_wait_frame_noblock(). Its
 * sends have no deadline (amqp_basic_publish() waits forever for a socket
 * that a broker under a memory or disk alarm stops reading): a watchdog
 * (SIGALRM, four times per timeout) shuts the socket down when the peer
 * acknowledged no byte (TCP_INFO's tcpi_bytes_acked) for a whole timeout,
 * which makes the send fail. A large body on a slow but moving link is
 * not cut short.
 */

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <linux/tcp.h>                  /* tcpi_bytes_acked */

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>

#include <openssl/crypto.h>

#include "zgw_amqp_check.h"
#include "zgw_crypto.h"
#include "zgw_hostport.h"
#include "zmqctl.h"
#include "zmqd.h"


#define ZMQCTL_PEER_MAX   (ZGW_HOST_NAME_MAX + 16)
#define ZMQCTL_ERR_MAX    1024
#define ZMQCTL_WD_TICKS   4               /* watchdog ticks per timeout */


typedef struct {
    amqp_connection_state_t   conn;
    char                      peer[ZMQCTL_PEER_MAX];
    char                      product[64];
    char                      version[64];
    double                    ms;             /* connect to channel.open */
    int                       timeout;
    char                      tls[64];        /* "" plain */
} zmqctl_amqp_t;


/* the properties that send takes, in the order of --help */
typedef enum {
    ZMQCTL_P_CONTENT_TYPE = 0,
    ZMQCTL_P_CONTENT_ENCODING,
    ZMQCTL_P_DELIVERY_MODE,
    ZMQCTL_P_PRIORITY,
    ZMQCTL_P_CORRELATION_ID,
    ZMQCTL_P_REPLY_TO,
    ZMQCTL_P_EXPIRATION,
    ZMQCTL_P_MESSAGE_ID,
    ZMQCTL_P_TIMESTAMP,
    ZMQCTL_P_TYPE,
    ZMQCTL_P_USER_ID,
    ZMQCTL_P_APP_ID,
    ZMQCTL_P_MAX
} zmqctl_prop_e;


static const char *const  zmqctl_prop_names[ZMQCTL_P_MAX] = {
    "content_type", "content_encoding", "delivery_mode", "priority",
    "correlation_id", "reply_to", "expiration", "message_id", "timestamp",
    "type", "user_id", "app_id"
};


static void zmqctl_wd_handler(int sig);
static void zmqctl_wd_arm(int fd, int ms);
static void zmqctl_wd_disarm(void);
static const char *zmqctl_reply_error(amqp_rpc_reply_t r, int timeout,
    char *buf, size_t len);
static char *zmqctl_amqp_password(zmqctl_opts_t *o, const json_t *def);
static int zmqctl_amqp_open_one(zmqctl_amqp_t *a, const json_t *def,
    const zgw_hostport_t *hp, const char *password, char *err,
    size_t errlen);
static int zmqctl_amqp_open(zmqctl_amqp_t *a, const json_t *def,
    const char *password, int timeout, char *err, size_t errlen);
static void zmqctl_amqp_close(zmqctl_amqp_t *a);
static void zmqctl_server_props(zmqctl_amqp_t *a);
static int zmqctl_short(const char *name, const char *v, size_t min);
static int zmqctl_props_parse(zmqctl_opts_t *o,
    amqp_basic_properties_t *props, const char **given);
static int zmqctl_headers_parse(zmqctl_opts_t *o, amqp_table_entry_t *e);
static void zmqctl_props_defaults(const json_t *oc,
    amqp_basic_properties_t *props, const char **given, char *expiration,
    size_t explen, char *id);
static int zmqctl_confirm(zmqctl_amqp_t *a, const char *id);


static volatile sig_atomic_t  zmqctl_wd_fd = -1;
static volatile sig_atomic_t  zmqctl_wd_fired;
static volatile sig_atomic_t  zmqctl_wd_idle;     /* ticks without progress */
static uint64_t               zmqctl_wd_acked;    /* the handler's own */


/*
 * A watchdog tick: the peer acknowledged more bytes since the last one, or
 * this is one more tick without; after a timeout's worth, the socket is
 * shut down and the send under way fails.
 */
static void
zmqctl_wd_handler(int sig)
{
    int              fd;
    socklen_t        len;
    struct tcp_info  ti;

    (void) sig;

    fd = zmqctl_wd_fd;
    if (fd < 0 || zmqctl_wd_fired) {
        return;
    }

    memset(&ti, 0, sizeof(ti));
    len = sizeof(ti);

    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0
        && len >= offsetof(struct tcp_info, tcpi_bytes_acked)
                  + sizeof(ti.tcpi_bytes_acked)
        && ti.tcpi_bytes_acked != zmqctl_wd_acked)
    {
        zmqctl_wd_acked = ti.tcpi_bytes_acked;
        zmqctl_wd_idle = 0;
        return;
    }

    if (++zmqctl_wd_idle < ZMQCTL_WD_TICKS) {
        return;
    }

    (void) shutdown(fd, SHUT_RDWR);
    zmqctl_wd_fired = 1;
}


static void
zmqctl_wd_arm(int fd, int ms)
{
    struct sigaction  sa;
    struct itimerval  it;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = zmqctl_wd_handler;
    sigemptyset(&sa.sa_mask);
    (void) sigaction(SIGALRM, &sa, NULL);

    zmqctl_wd_fired = 0;
    zmqctl_wd_idle = 0;
    zmqctl_wd_acked = 0;
    zmqctl_wd_fd = fd;

    ms = ms / ZMQCTL_WD_TICKS > 0 ? ms / ZMQCTL_WD_TICKS : 1;

    memset(&it, 0, sizeof(it));
    it.it_value.tv_sec = ms / 1000;
    it.it_value.tv_usec = (ms % 1000) * 1000;
    it.it_interval = it.it_value;
    (void) setitimer(ITIMER_REAL, &it, NULL);
}


static void
zmqctl_wd_disarm(void)
{
    struct itimerval  it;

    memset(&it, 0, sizeof(it));
    (void) setitimer(ITIMER_REAL, &it, NULL);
    zmqctl_wd_fd = -1;
}


/* the broker's own words ("ACCESS_REFUSED - Login was refused ...") */
static const char *
zmqctl_reply_error(amqp_rpc_reply_t r, int timeout, char *buf, size_t len)
{
    char                      echo[512];
    amqp_channel_close_t     *ch;
    amqp_connection_close_t  *cc;

    switch (r.reply_type) {

    case AMQP_RESPONSE_NORMAL:
        snprintf(buf, len, "ok");
        break;

    case AMQP_RESPONSE_NONE:
        snprintf(buf, len, "no reply");
        break;

    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        if (r.library_error == AMQP_STATUS_TIMEOUT) {
            snprintf(buf, len, "no answer within %d ms", timeout);

        } else if (r.library_error == AMQP_STATUS_CONNECTION_CLOSED
                   || r.library_error == AMQP_STATUS_SOCKET_ERROR)
        {
            snprintf(buf, len, "%s (not an AMQP 0-9-1 broker, or it "
                     "refused this client)",
                     amqp_error_string2(r.library_error));

        } else {
            snprintf(buf, len, "%s", amqp_error_string2(r.library_error));
        }
        break;

    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            cc = r.reply.decoded;
            snprintf(buf, len, "%s",
                     zmqctl_echo(echo, sizeof(echo), cc->reply_text.bytes,
                                 cc->reply_text.len));

        } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            ch = r.reply.decoded;
            snprintf(buf, len, "%s",
                     zmqctl_echo(echo, sizeof(echo), ch->reply_text.bytes,
                                 ch->reply_text.len));

        } else {
            snprintf(buf, len, "unexpected method 0x%08x", r.reply.id);
        }
        break;
    }

    return buf;
}


/* the definition's password in clear (opened with the key file), malloc'd */
static char *
zmqctl_amqp_password(zmqctl_opts_t *o, const json_t *def)
{
    char          *pw;
    json_t        *v;
    zgw_key_t      key, *keyp;
    zgw_errors_t   errs;

    v = json_object_get(def, "password");
    if (v == NULL) {
        return strdup("");
    }

    zgw_errors_init(&errs);
    keyp = NULL;

    if (json_is_object(v)) {
        if (zgw_key_load(&key, o->key_file, &errs) != ZGW_OK) {
            zmqctl_print_errors("key file", &errs);
            zgw_errors_free(&errs);
            return NULL;
        }
        keyp = &key;
    }

    pw = zgw_object_secret(ZGW_KIND_AMQP_DEF, def, "password", keyp, &errs);
    if (pw == NULL) {
        zmqctl_print_errors("password", &errs);
    }

    OPENSSL_cleanse(&key, sizeof(key));
    zgw_errors_free(&errs);
    return pw;
}


/* one address: TCP connect, AMQP handshake, channel.open */
static int
zmqctl_amqp_open_one(zmqctl_amqp_t *a, const json_t *def,
    const zgw_hostport_t *hp, const char *password, char *err,
    size_t errlen)
{
    int               fd, tls, status;
    double            start;
    amqp_socket_t    *sock;
    struct timeval    tv;
    amqp_rpc_reply_t  r;

    start = zmqctl_now_ms();
    tls = json_is_true(json_object_get(def, "tls"));

    fd = zmqctl_tcp_connect(hp->host, hp->port, a->timeout, err, errlen);
    if (fd == -1) {
        return -1;
    }

    tv.tv_sec = a->timeout / 1000;
    tv.tv_usec = (a->timeout % 1000) * 1000;

    a->conn = amqp_new_connection();
    if (a->conn == NULL) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    if (!tls) {
        sock = amqp_tcp_socket_new(a->conn);
        if (sock == NULL) {
            close(fd);
            snprintf(err, errlen, "out of memory");
            goto failed;
        }

        /* non-blocking: rabbitmq-c then polls with its deadlines */
        amqp_tcp_socket_set_sockfd(sock, fd);

    } else {
        /*
         * rabbitmq-c's TLS socket connects by itself (bounded by tv); the
         * connect above only told a refused port from a silent one
         */
        close(fd);

        sock = zmqd_amqp_tls_socket(a->conn, def, hp->host, err, errlen);
        if (sock == NULL) {
            goto failed;
        }

        status = amqp_socket_open_noblock(sock, hp->host, hp->port, &tv);
        if (status != AMQP_STATUS_OK) {
            if (status == AMQP_STATUS_TIMEOUT) {
                snprintf(err, errlen, "no answer to the TLS handshake "
                         "within %d ms", a->timeout);
            } else {
                zmqd_amqp_tls_error(sock, status, err, errlen);
            }
            goto failed;
        }

        zmqd_amqp_tls_info(sock, def, a->tls, sizeof(a->tls));
    }

    (void) amqp_set_handshake_timeout(a->conn, &tv);
    (void) amqp_set_rpc_timeout(a->conn, &tv);

    r = amqp_login(a->conn, json_string_value(json_object_get(def, "vhost")),
                   0,
                   (int) json_integer_value(json_object_get(def,
                                                            "frame_max")),
                   (int) json_integer_value(json_object_get(def,
                                                            "heartbeat")),
                   AMQP_SASL_METHOD_PLAIN,
                   json_string_value(json_object_get(def, "username")),
                   password);

    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        if (tls && r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
            && r.library_error != AMQP_STATUS_TIMEOUT)
        {
            /* a broker that wants a client certificate says so now */
            zmqd_amqp_tls_error(sock, r.library_error, err, errlen);
        } else {
            zmqctl_reply_error(r, a->timeout, err, errlen);
        }
        goto failed;
    }

    if (amqp_channel_open(a->conn, 1) == NULL) {
        zmqctl_reply_error(amqp_get_rpc_reply(a->conn), a->timeout, err,
                           errlen);
        goto failed;
    }

    a->ms = zmqctl_now_ms() - start;
    zmqctl_server_props(a);
    return 0;

failed:

    amqp_destroy_connection(a->conn);
    a->conn = NULL;
    return -1;
}


/*
 * The definition's 'host' (with 'port'), then each of 'hosts' in turn,
 * as the gateway tries them. err lists every address that failed.
 */
static int
zmqctl_amqp_open(zmqctl_amqp_t *a, const json_t *def, const char *password,
    int timeout, char *err, size_t errlen)
{
    int              port, rc;
    char             one[ZMQCTL_ERR_MAX], where[64];
    size_t           i, n, used;
    json_t          *hosts, *h;
    zgw_errors_t     errs;
    zgw_hostport_t   hp;

    memset(a, 0, sizeof(zmqctl_amqp_t));
    a->timeout = timeout;

    port = (int) json_integer_value(json_object_get(def, "port"));
    hosts = json_object_get(def, "hosts");
    n = 1 + json_array_size(hosts);
    err[0] = '\0';
    used = 0;

    zgw_errors_init(&errs);

    for (i = 0; i < n; i++) {
        h = i == 0 ? json_object_get(def, "host")
                   : json_array_get(hosts, i - 1);

        if (i == 0) {
            snprintf(where, sizeof(where), "host");
            rc = zgw_host_parse(&hp, json_string_value(h),
                                json_string_length(h), where, &errs);
            hp.port = port;

        } else {
            snprintf(where, sizeof(where), "hosts[%zu]", i - 1);
            rc = zgw_hostport_parse(&hp, json_string_value(h),
                                    json_string_length(h), port, where,
                                    &errs);
        }

        if (rc != ZGW_OK) {
            snprintf(one, sizeof(one), "%s", zgw_errors_first(&errs));
            zgw_errors_free(&errs);
            zgw_errors_init(&errs);
            snprintf(a->peer, sizeof(a->peer), "%s", where);

        } else {
            zmqctl_peer(a->peer, sizeof(a->peer), hp.host, hp.port);

            if (zmqctl_amqp_open_one(a, def, &hp, password, one, sizeof(one))
                == 0)
            {
                zgw_errors_free(&errs);
                return 0;
            }
        }

        if (i + 1 < n) {
            fprintf(stderr, "zmqctl: %s: %s; trying the next address\n",
                    a->peer, one);
        }

        if (used < errlen) {
            used += snprintf(err + used, errlen - used, "%s%s: %s",
                             i ? "; " : "", a->peer, one);
        }
    }

    zgw_errors_free(&errs);
    return -1;
}


/* connection.close (bounded by the RPC timeout and the watchdog) */
static void
zmqctl_amqp_close(zmqctl_amqp_t *a)
{
    if (a->conn == NULL) {
        return;
    }

    zmqctl_wd_arm(amqp_get_sockfd(a->conn), a->timeout);
    (void) amqp_connection_close(a->conn, AMQP_REPLY_SUCCESS);
    zmqctl_wd_disarm();

    amqp_destroy_connection(a->conn);
    a->conn = NULL;
}


/* product and version of connection.start's server-properties */
static void
zmqctl_server_props(zmqctl_amqp_t *a)
{
    int                  i;
    char                *out;
    const amqp_table_t  *t;
    amqp_table_entry_t  *e;

    snprintf(a->product, sizeof(a->product), "(unknown product)");
    snprintf(a->version, sizeof(a->version), "(unknown version)");

    t = amqp_get_server_properties(a->conn);
    if (t == NULL) {
        return;
    }

    for (i = 0; i < t->num_entries; i++) {
        e = &t->entries[i];

        if (e->key.len == 7 && memcmp(e->key.bytes, "product", 7) == 0) {
            out = a->product;
        } else if (e->key.len == 7 && memcmp(e->key.bytes, "version", 7)
                   == 0)
        {
            out = a->version;
        } else {
            continue;
        }

        if (e->value.kind == AMQP_FIELD_KIND_UTF8
            || e->value.kind == AMQP_FIELD_KIND_BYTES)
        {
            zmqctl_echo(out, 64, e->value.value.bytes.bytes,
                        e->value.value.bytes.len);
        }
    }
}


int
zmqctl_ping(zmqctl_opts_t *o)
{
    int             kind, rc;
    char           *password, err[ZMQCTL_ERR_MAX];
    json_t         *obj;
    zgw_config_t   *cfg;
    zmqctl_amqp_t   a;

    kind = zmqctl_kind_arg(o->argv[0]);
    if (kind < 0) {
        return ZMQCTL_EXIT_USAGE;
    }

    if (kind != ZGW_KIND_AMQP_DEF && kind != ZGW_KIND_HTTP_OUTCONN) {
        fprintf(stderr, "zmqctl: ping takes an amqp_def or an http_outconn, "
                "not an object of kind %s\n", o->argv[0]);
        return ZMQCTL_EXIT_USAGE;
    }

    cfg = zmqctl_snapshot(o, 1);
    if (cfg == NULL) {
        return ZMQCTL_EXIT_FAIL;
    }

    rc = ZMQCTL_EXIT_FAIL;

    obj = zmqctl_object(cfg, kind, o->argv[1]);
    if (obj == NULL) {
        goto done;
    }

    if (kind == ZGW_KIND_HTTP_OUTCONN) {
        rc = zmqctl_ping_http(o, obj);
        goto done;
    }

    password = zmqctl_amqp_password(o, obj);
    if (password == NULL) {
        goto done;
    }

    if (zmqctl_amqp_open(&a, obj, password, o->timeout, err, sizeof(err))
        != 0)
    {
        printf("failed: %s\n", err);

    } else {
        printf("ok %.1f ms, %s %s%s%s\n", a.ms, a.product, a.version,
               a.tls[0] ? " over " : "", a.tls);
        zmqctl_amqp_close(&a);
        rc = ZMQCTL_EXIT_OK;
    }

    OPENSSL_cleanse(password, strlen(password));
    free(password);

done:

    zgw_config_free(cfg);
    return rc;
}


/* a short string property: min-255 bytes of UTF-8, no control characters */
static int
zmqctl_short(const char *name, const char *v, size_t min)
{
    size_t       len;
    const char  *why;

    len = strlen(v);

    if (len < min || len > ZGW_AMQP_SHORTSTR_MAX) {
        why = min ? "must be 1-255 bytes" : "is longer than 255 bytes";
    } else {
        why = zgw_amqp_header_value_check(v, len);
    }

    if (why != NULL) {
        fprintf(stderr, "zmqctl: --property %s: %s\n", name, why);
        return -1;
    }

    return 0;
}


static amqp_bytes_t
zmqctl_bytes(const char *s)
{
    amqp_bytes_t  b;

    b.len = strlen(s);
    b.bytes = (void *) s;
    return b;
}


/* --property K=V: given[P] is V, checked; props filled */
static int
zmqctl_props_parse(zmqctl_opts_t *o, amqp_basic_properties_t *props,
    const char **given)
{
    int                  i, p;
    char                *end;
    size_t               klen;
    const char          *arg, *v, *why;
    unsigned long long   n;

    for (i = 0; i < o->nprops; i++) {
        arg = o->props[i];
        v = strchr(arg, '=');
        if (v == NULL) {
            fprintf(stderr, "zmqctl: --property needs K=V, not '%s'\n", arg);
            return -1;
        }

        klen = (size_t) (v - arg);
        v++;

        for (p = 0; p < ZMQCTL_P_MAX; p++) {
            if (strlen(zmqctl_prop_names[p]) == klen
                && strncmp(zmqctl_prop_names[p], arg, klen) == 0)
            {
                break;
            }
        }

        if (p == ZMQCTL_P_MAX) {
            fprintf(stderr, "zmqctl: --property: unknown property '%.*s' "
                    "(known: content_type, content_encoding, "
                    "delivery_mode, priority, correlation_id, reply_to, "
                    "expiration, message_id, timestamp, type, user_id, "
                    "app_id; other names go in --header)\n", (int) klen,
                    arg);
            return -1;
        }

        if (given[p] != NULL) {
            fprintf(stderr, "zmqctl: --property %s is given twice\n",
                    zmqctl_prop_names[p]);
            return -1;
        }

        given[p] = v;
        why = NULL;

        switch (p) {

        case ZMQCTL_P_DELIVERY_MODE:
            if (strcmp(v, "1") == 0 || strcasecmp(v, "transient") == 0) {
                props->delivery_mode = 1;
            } else if (strcmp(v, "2") == 0
                       || strcasecmp(v, "persistent") == 0)
            {
                props->delivery_mode = 2;
            } else {
                why = "must be 1, 2, transient or persistent";
            }
            props->_flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
            break;

        case ZMQCTL_P_PRIORITY:
            if (v[0] < '0' || v[0] > '9' || v[1] != '\0') {
                why = "must be an integer 0-9";
            }
            props->priority = (uint8_t) (v[0] - '0');
            props->_flags |= AMQP_BASIC_PRIORITY_FLAG;
            break;

        case ZMQCTL_P_TIMESTAMP:
            errno = 0;
            n = strtoull(v, &end, 10);
            if (errno || *v < '0' || *v > '9' || *end != '\0') {
                why = "must be Unix seconds, an integer of at most 20 digits";
            }
            props->timestamp = (uint64_t) n;
            props->_flags |= AMQP_BASIC_TIMESTAMP_FLAG;
            break;

        case ZMQCTL_P_EXPIRATION:
            why = zgw_amqp_expiration_check(v, strlen(v), NULL);
            props->expiration = zmqctl_bytes(v);
            props->_flags |= AMQP_BASIC_EXPIRATION_FLAG;
            break;

        case ZMQCTL_P_REPLY_TO:
            why = zgw_amqp_header_value_check(v, strlen(v));
            if (why == NULL) {
                why = zgw_amqp_reply_to_check(v, strlen(v));
            }
            props->reply_to = zmqctl_bytes(v);
            props->_flags |= AMQP_BASIC_REPLY_TO_FLAG;
            break;

        default:
            if (zmqctl_short(zmqctl_prop_names[p], v,
                             p == ZMQCTL_P_MESSAGE_ID ? 1 : 0)
                != 0)
            {
                return -1;
            }
        }

        if (why != NULL) {
            fprintf(stderr, "zmqctl: --property %s: %s\n",
                    zmqctl_prop_names[p], why);
            return -1;
        }
    }

    /* the short strings, once each is known to be good */

    if (given[ZMQCTL_P_CONTENT_TYPE] != NULL) {
        props->content_type = zmqctl_bytes(given[ZMQCTL_P_CONTENT_TYPE]);
        props->_flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
    }

    if (given[ZMQCTL_P_CONTENT_ENCODING] != NULL) {
        props->content_encoding =
            zmqctl_bytes(given[ZMQCTL_P_CONTENT_ENCODING]);
        props->_flags |= AMQP_BASIC_CONTENT_ENCODING_FLAG;
    }

    if (given[ZMQCTL_P_CORRELATION_ID] != NULL) {
        props->correlation_id = zmqctl_bytes(given[ZMQCTL_P_CORRELATION_ID]);
        props->_flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    }

    if (given[ZMQCTL_P_MESSAGE_ID] != NULL) {
        props->message_id = zmqctl_bytes(given[ZMQCTL_P_MESSAGE_ID]);
        props->_flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    }

    if (given[ZMQCTL_P_TYPE] != NULL) {
        props->type = zmqctl_bytes(given[ZMQCTL_P_TYPE]);
        props->_flags |= AMQP_BASIC_TYPE_FLAG;
    }

    if (given[ZMQCTL_P_USER_ID] != NULL) {
        props->user_id = zmqctl_bytes(given[ZMQCTL_P_USER_ID]);
        props->_flags |= AMQP_BASIC_USER_ID_FLAG;
    }

    if (given[ZMQCTL_P_APP_ID] != NULL) {
        props->app_id = zmqctl_bytes(given[ZMQCTL_P_APP_ID]);
        props->_flags |= AMQP_BASIC_APP_ID_FLAG;
    }

    return 0;
}


/* --header K=V into e[]: the gateway's rules for X-Zmq-Header-K */
static int
zmqctl_headers_parse(zmqctl_opts_t *o, amqp_table_entry_t *e)
{
    int          i, j;
    char         echo[80];
    size_t       klen;
    const char  *arg, *v, *why;

    for (i = 0; i < o->nheaders; i++) {
        arg = o->headers[i];
        v = strchr(arg, '=');
        if (v == NULL) {
            fprintf(stderr, "zmqctl: --header needs K=V, not '%s'\n",
                    zmqctl_echo(echo, sizeof(echo), arg, strlen(arg)));
            return -1;
        }

        klen = (size_t) (v - arg);
        v++;

        why = zgw_amqp_header_name_check(arg, klen);
        if (why == NULL) {
            why = zgw_amqp_header_value_check(v, strlen(v));
        }

        for (j = 0; why == NULL && j < i; j++) {
            if (e[j].key.len == klen
                && strncasecmp(e[j].key.bytes, arg, klen) == 0)
            {
                why = "is given twice";
            }
        }

        if (why != NULL) {
            fprintf(stderr, "zmqctl: --header '%s': %s\n",
                    zmqctl_echo(echo, sizeof(echo), arg, klen), why);
            return -1;
        }

        e[i].key.bytes = (void *) arg;
        e[i].key.len = klen;
        e[i].value.kind = AMQP_FIELD_KIND_UTF8;
        e[i].value.value.bytes = zmqctl_bytes(v);
    }

    return 0;
}


/*
 * What the command line left out, as the gateway fills it: the outgoing
 * connection's defaults, the time, a new message id.
 */
static void
zmqctl_props_defaults(const json_t *oc, amqp_basic_properties_t *props,
    const char **given, char *expiration, size_t explen, char *id)
{
    json_t  *v;

    if (given[ZMQCTL_P_DELIVERY_MODE] == NULL) {
        v = json_object_get(oc, "delivery_mode");
        props->delivery_mode = (uint8_t) (json_is_integer(v)
                                          ? json_integer_value(v) : 2);
        props->_flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
    }

    v = json_object_get(oc, "priority");
    if (given[ZMQCTL_P_PRIORITY] == NULL && json_is_integer(v)) {
        props->priority = (uint8_t) json_integer_value(v);
        props->_flags |= AMQP_BASIC_PRIORITY_FLAG;
    }

    v = json_object_get(oc, "expiration");
    if (given[ZMQCTL_P_EXPIRATION] == NULL && json_is_integer(v)) {
        snprintf(expiration, explen, "%lld",
                 (long long) json_integer_value(v));
        props->expiration = zmqctl_bytes(expiration);
        props->_flags |= AMQP_BASIC_EXPIRATION_FLAG;
    }

    v = json_object_get(oc, "content_type");
    if (given[ZMQCTL_P_CONTENT_TYPE] == NULL && json_is_string(v)) {
        props->content_type = zmqctl_bytes(json_string_value(v));
        props->_flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
    }

    v = json_object_get(oc, "content_encoding");
    if (given[ZMQCTL_P_CONTENT_ENCODING] == NULL && json_is_string(v)) {
        props->content_encoding = zmqctl_bytes(json_string_value(v));
        props->_flags |= AMQP_BASIC_CONTENT_ENCODING_FLAG;
    }

    v = json_object_get(oc, "user_id");
    if (given[ZMQCTL_P_USER_ID] == NULL && json_is_string(v)) {
        props->user_id = zmqctl_bytes(json_string_value(v));
        props->_flags |= AMQP_BASIC_USER_ID_FLAG;
    }

    /* an empty app_id is none, as in the gateway */
    v = json_object_get(oc, "app_id");
    if (given[ZMQCTL_P_APP_ID] == NULL && json_string_length(v) > 0) {
        props->app_id = zmqctl_bytes(json_string_value(v));
        props->_flags |= AMQP_BASIC_APP_ID_FLAG;
    }

    if (given[ZMQCTL_P_TIMESTAMP] == NULL) {
        props->timestamp = (uint64_t) time(NULL);
        props->_flags |= AMQP_BASIC_TIMESTAMP_FLAG;
    }

    if (given[ZMQCTL_P_MESSAGE_ID] == NULL) {
        props->message_id = zmqctl_bytes(id);
        props->_flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    }
}


/*
 * After basic.publish: the broker's basic.ack or basic.nack, with a
 * basic.return before it when --mandatory found no queue. Frames of the
 * returned message itself (its header and body) are skipped.
 */
static int
zmqctl_confirm(zmqctl_amqp_t *a, const char *id)
{
    int                       rc, returned;
    char                      text[256], blocked[256];
    double                    deadline, left;
    amqp_frame_t              f;
    struct timeval            tv;
    amqp_basic_return_t      *ret;
    amqp_channel_close_t     *ch;
    amqp_connection_close_t  *cc;
    amqp_connection_blocked_t *bl;
    amqp_channel_close_ok_t   chok;
    amqp_connection_close_ok_t ccok;

    returned = 0;
    text[0] = '\0';
    blocked[0] = '\0';
    deadline = zmqctl_now_ms() + a->timeout;

    for ( ;; ) {
        left = deadline - zmqctl_now_ms();
        if (left <= 0) {
            rc = AMQP_STATUS_TIMEOUT;

        } else {
            tv.tv_sec = (long) left / 1000;
            tv.tv_usec = ((long) left % 1000) * 1000 + 1;
            amqp_maybe_release_buffers(a->conn);
            rc = amqp_simple_wait_frame_noblock(a->conn, &f, &tv);
        }

        if (rc == AMQP_STATUS_TIMEOUT) {
            if (returned) {
                printf("returned: %s\n", text);
                return ZMQCTL_EXIT_FAIL;
            }
            printf("failed: no confirm within %d ms%s%s (the message may "
                   "still be delivered)\n", a->timeout,
                   blocked[0] ? ": the broker blocked the connection: "
                              : "", blocked);
            return ZMQCTL_EXIT_FAIL;
        }

        if (rc != AMQP_STATUS_OK) {
            printf("failed: waiting for the confirm: %s\n",
                   amqp_error_string2(rc));
            amqp_destroy_connection(a->conn);
            a->conn = NULL;
            return ZMQCTL_EXIT_FAIL;
        }

        if (f.frame_type != AMQP_FRAME_METHOD) {
            continue;
        }

        switch (f.payload.method.id) {

        case AMQP_BASIC_ACK_METHOD:
            if (returned) {
                printf("returned: %s\n", text);
                return ZMQCTL_EXIT_FAIL;
            }
            printf("confirmed %s\n", id);
            return ZMQCTL_EXIT_OK;

        case AMQP_BASIC_NACK_METHOD:
            printf("nacked\n");
            return ZMQCTL_EXIT_FAIL;

        case AMQP_BASIC_RETURN_METHOD:
            ret = f.payload.method.decoded;
            zmqctl_echo(text, sizeof(text), ret->reply_text.bytes,
                        ret->reply_text.len);
            returned = 1;
            break;

        case AMQP_CONNECTION_BLOCKED_METHOD:
            bl = f.payload.method.decoded;
            zmqctl_echo(blocked, sizeof(blocked), bl->reason.bytes,
                        bl->reason.len);
            break;

        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            blocked[0] = '\0';
            break;

        case AMQP_CHANNEL_CLOSE_METHOD:
            ch = f.payload.method.decoded;
            printf("failed: %s\n", zmqctl_echo(text, sizeof(text),
                                               ch->reply_text.bytes,
                                               ch->reply_text.len));
            memset(&chok, 0, sizeof(chok));
            (void) amqp_send_method(a->conn, f.channel,
                                    AMQP_CHANNEL_CLOSE_OK_METHOD, &chok);
            return ZMQCTL_EXIT_FAIL;

        case AMQP_CONNECTION_CLOSE_METHOD:
            cc = f.payload.method.decoded;
            printf("failed: %s\n", zmqctl_echo(text, sizeof(text),
                                               cc->reply_text.bytes,
                                               cc->reply_text.len));
            memset(&ccok, 0, sizeof(ccok));
            (void) amqp_send_method(a->conn, 0,
                                    AMQP_CONNECTION_CLOSE_OK_METHOD, &ccok);
            amqp_destroy_connection(a->conn);
            a->conn = NULL;
            return ZMQCTL_EXIT_FAIL;

        default:
            break;
        }
    }
}


int
zmqctl_send(zmqctl_opts_t *o)
{
    int                       fd, rc, status;
    char                     *password, id[ZGW_UUID_LEN + 1], echo[80];
    char                      expiration[32], err[ZMQCTL_ERR_MAX];
    size_t                    len;
    json_t                   *oc, *def;
    const char               *name, *file, *why, *given[ZMQCTL_P_MAX];
    zgw_config_t             *cfg;
    zmqctl_amqp_t             a;
    amqp_bytes_t              body;
    unsigned char            *data;
    amqp_table_entry_t       *entries;
    amqp_basic_properties_t   props;

    name = o->argv[0];
    file = o->argv[1];
    cfg = NULL;
    data = NULL;
    password = NULL;
    rc = ZMQCTL_EXIT_USAGE;

    memset(&props, 0, sizeof(props));
    memset(given, 0, sizeof(given));

    /* everything the broker would close the channel for, refused here */

    len = strlen(o->exchange);
    why = len > ZGW_AMQP_SHORTSTR_MAX ? "is longer than 255 bytes"
                                      : zgw_amqp_header_value_check(
                                            o->exchange, len);
    if (why != NULL) {
        fprintf(stderr, "zmqctl: --exchange '%s': %s\n",
                zmqctl_echo(echo, sizeof(echo), o->exchange, len), why);
        return ZMQCTL_EXIT_USAGE;
    }

    why = zgw_amqp_routing_key_check(o->exchange, len, o->routing_key,
                                     strlen(o->routing_key));
    if (why != NULL) {
        fprintf(stderr, "zmqctl: --routing-key '%s': %s\n",
                zmqctl_echo(echo, sizeof(echo), o->routing_key,
                            strlen(o->routing_key)), why);
        return ZMQCTL_EXIT_USAGE;
    }

    entries = calloc((size_t) o->nheaders + 1, sizeof(amqp_table_entry_t));
    if (entries == NULL) {
        fprintf(stderr, "zmqctl: out of memory\n");
        return ZMQCTL_EXIT_FAIL;
    }

    if (zmqctl_props_parse(o, &props, given) != 0
        || zmqctl_headers_parse(o, entries) != 0)
    {
        goto done;
    }

    if (o->nheaders > 0) {
        props.headers.num_entries = o->nheaders;
        props.headers.entries = entries;
        props._flags |= AMQP_BASIC_HEADERS_FLAG;
    }

    rc = ZMQCTL_EXIT_FAIL;

    /* the body first: no connection waits while it is read */

    if (strcmp(file, "-") == 0) {
        fd = STDIN_FILENO;

    } else {
        fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd == -1) {
            fprintf(stderr, "zmqctl: %s: %s\n", file, strerror(errno));
            goto done;
        }
    }

    data = zmqctl_read_all(fd, strcmp(file, "-") == 0 ? "standard input"
                                                      : file,
                           ZGW_BODY_MAX, ZMQCTL_INPUT_TIMEOUT_MS, &len);
    if (fd != STDIN_FILENO) {
        close(fd);
    }

    if (data == NULL) {
        goto done;
    }

    body.bytes = data;
    body.len = len;

    cfg = zmqctl_snapshot(o, 1);
    if (cfg == NULL) {
        goto done;
    }

    oc = zmqctl_object(cfg, ZGW_KIND_AMQP_OUTCONN, name);
    if (oc == NULL) {
        goto done;
    }

    if (!json_is_true(json_object_get(oc, "is_active"))) {
        fprintf(stderr, "zmqctl: amqp_outconn '%s' is inactive: nothing "
                "is sent through it\n", name);
        goto done;
    }

    def = zmqctl_object(cfg, ZGW_KIND_AMQP_DEF,
                        json_string_value(json_object_get(oc, "def")));
    if (def == NULL) {
        goto done;
    }

    if (zgw_uuid4(id) != ZGW_OK) {
        fprintf(stderr, "zmqctl: the random generator failed\n");
        goto done;
    }

    zmqctl_props_defaults(oc, &props, given, expiration, sizeof(expiration),
                          id);

    password = zmqctl_amqp_password(o, def);
    if (password == NULL) {
        goto done;
    }

    if (zmqctl_amqp_open(&a, def, password, o->timeout, err, sizeof(err))
        != 0)
    {
        printf("failed: %s\n", err);
        goto done;
    }

    if (amqp_confirm_select(a.conn, 1) == NULL) {
        printf("failed: confirm.select: %s\n",
               zmqctl_reply_error(amqp_get_rpc_reply(a.conn), o->timeout,
                                  err, sizeof(err)));
        zmqctl_amqp_close(&a);
        goto done;
    }

    zmqctl_wd_arm(amqp_get_sockfd(a.conn), o->timeout);

    status = amqp_basic_publish(a.conn, 1,
                                zmqctl_bytes(o->exchange),
                                zmqctl_bytes(o->routing_key),
                                o->mandatory, 0, &props, body);
    zmqctl_wd_disarm();

    if (status != AMQP_STATUS_OK) {
        if (zmqctl_wd_fired) {
            printf("failed: the broker read nothing of the message for %d "
                   "ms (is it blocking publishers? a memory or disk "
                   "alarm)\n", o->timeout);
        } else {
            printf("failed: basic.publish: %s\n", amqp_error_string2(status));
        }

        amqp_destroy_connection(a.conn);
        goto done;
    }

    rc = zmqctl_confirm(&a, (const char *) props.message_id.bytes);
    zmqctl_amqp_close(&a);

done:

    if (password != NULL) {
        OPENSSL_cleanse(password, strlen(password));
        free(password);
    }

    free(data);
    free(entries);
    zgw_config_free(cfg);
    return rc;
}
