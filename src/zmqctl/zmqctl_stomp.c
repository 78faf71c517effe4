/*
 * zmqctl: ping of a stomp_def. A STOMP 1.2 CONNECT over a fresh TCP
 * connection up to the broker's CONNECTED (then DISCONNECT, and closed),
 * as the gateway's ping does it on its event loop. zmqctl may block, but
 * every wait has a bound: the whole exchange with one address takes at
 * most --timeout (the connect included).
 *
 * What the broker sends is read as an attacker could have written it: at
 * most ZMQCTL_STOMP_HEAD_MAX bytes up to the blank line that ends a
 * frame's head, printable text only in what is printed.
 *
 * A stomp_def with tls: the TLS handshake after the connect, within the
 * same bound, set up by src/core/zgw_tls with the definition's options
 * (as zmqd connects); CONNECT (the passcode) only once the certificate is
 * verified.
 */

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "zgw_crypto.h"
#include "zgw_hostport.h"
#include "zgw_tls.h"
#include "zmqctl.h"


#define ZMQCTL_STOMP_HEAD_MAX   16384      /* a frame's command, headers */
#define ZMQCTL_STOMP_ERR_MAX    1024


typedef struct {
    int          fd;
    double       deadline;
    int          timeout;
    char         buf[ZMQCTL_STOMP_HEAD_MAX + 1];
    size_t       len;
    char         server[128];     /* CONNECTED's server, printable */
    double       ms;
    SSL_CTX     *ctx;             /* TLS: NULL without */
    SSL         *ssl;
    char         tls[96];         /* "TLSv1.3, certificate verified" */
} zmqctl_stomp_t;


static int zmqctl_stomp_write(zmqctl_stomp_t *s, const char *p, size_t n,
    char *err, size_t errlen);
static int zmqctl_stomp_read_head(zmqctl_stomp_t *s, char **head,
    size_t *headlen, char *err, size_t errlen);
static const char *zmqctl_stomp_header(char *head, size_t len,
    const char *name, size_t *vlen);
static int zmqctl_stomp_plain(const char *s);
static int zmqctl_stomp_one(zmqctl_stomp_t *s, const json_t *def,
    const zgw_hostport_t *hp, const char *passcode, char *err,
    size_t errlen, int *answered);
static char *zmqctl_stomp_passcode(zmqctl_opts_t *o, const json_t *def);
static ssize_t zmqctl_stomp_recv(zmqctl_stomp_t *s, char *buf, size_t len,
    char *err, size_t errlen);
static int zmqctl_stomp_tls(zmqctl_stomp_t *s, const json_t *def,
    const char *host, char *err, size_t errlen);
static void zmqctl_stomp_close(zmqctl_stomp_t *s, int ok);


static int
zmqctl_stomp_left(zmqctl_stomp_t *s)
{
    double  left;

    left = s->deadline - zmqctl_now_ms();
    return left <= 0 ? 0 : (int) left + 1;
}


/* all of p, each wait bounded by the deadline */
static int
zmqctl_stomp_write(zmqctl_stomp_t *s, const char *p, size_t n, char *err,
    size_t errlen)
{
    int      rc, e;
    char     why[256];
    short    events;
    ssize_t  w;

    while (n > 0) {
        events = POLLOUT;

        if (s->ssl != NULL) {
            ERR_clear_error();
            errno = 0;
            w = SSL_write(s->ssl, p, n > 65536 ? 65536 : (int) n);

            if (w <= 0) {
                e = SSL_get_error(s->ssl, (int) w);

                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                    snprintf(err, errlen, "write failed: TLS: %s",
                             zgw_tls_why(s->ctx, errno ? strerror(errno)
                                                       : "failed",
                                         why, sizeof(why)));
                    return -1;
                }

                events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
                w = 0;
            }

        } else {
            w = send(s->fd, p, n, MSG_NOSIGNAL);

            if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK
                && errno != EINTR)
            {
                snprintf(err, errlen, "write failed: %s", strerror(errno));
                return -1;
            }
        }

        if (w > 0) {
            p += w;
            n -= (size_t) w;
            continue;
        }

        rc = zmqctl_wait_fd(s->fd, events, zmqctl_stomp_left(s));
        if (rc <= 0) {
            snprintf(err, errlen, "%s", rc == 0
                     ? "the broker takes no data (timed out)"
                     : strerror(errno));
            return -1;
        }
    }

    return 0;
}


/*
 * The first frame's head, up to its blank line (EOLs before it are
 * heart-beats): *head points at its command line in s->buf. At most
 * ZMQCTL_STOMP_HEAD_MAX bytes; what follows the head (a body) is not
 * needed.
 */
static int
zmqctl_stomp_read_head(zmqctl_stomp_t *s, char **head, size_t *headlen,
    char *err, size_t errlen)
{
    char    *p, *end, *start;
    ssize_t  n;

    for ( ;; ) {
        start = s->buf;
        end = s->buf + s->len;

        while (start < end && (*start == '\n' || *start == '\r')) {
            start++;
        }

        for (p = start; p < end; p++) {
            if (*p == '\0') {
                snprintf(err, errlen, "the broker's answer is no STOMP "
                         "frame (a NUL inside its head)");
                return -1;
            }

            if (*p != '\n') {
                continue;
            }

            /* a blank line: "\n\n" or "\n\r\n" */
            if ((p + 1 < end && p[1] == '\n')
                || (p + 2 < end && p[1] == '\r' && p[2] == '\n'))
            {
                *head = start;
                *headlen = (size_t) (p + 1 - start);
                return 0;
            }
        }

        if (s->len == ZMQCTL_STOMP_HEAD_MAX) {
            snprintf(err, errlen, "the broker's answer is no STOMP frame "
                     "(no end of its head within %d bytes)",
                     ZMQCTL_STOMP_HEAD_MAX);
            return -1;
        }

        n = zmqctl_stomp_recv(s, s->buf + s->len,
                              ZMQCTL_STOMP_HEAD_MAX - s->len, err, errlen);

        if (n == -2) {
            snprintf(err, errlen, "%s (no answer within %d ms)",
                     s->len ? "no whole frame from the broker"
                            : "no CONNECTED in time",
                     s->timeout);
            return -1;
        }

        if (n == 0) {
            snprintf(err, errlen, "the broker closed the connection%s",
                     s->len ? " in the middle of a frame"
                            : " without an answer");
            return -1;
        }

        if (n < 0) {
            return -1;
        }

        s->len += (size_t) n;
    }
}


/*
 * Some bytes from the broker, waiting (within the deadline) until there
 * are: > 0 their count, 0 the broker closed, -1 failed (err filled), -2
 * timed out
 */
static ssize_t
zmqctl_stomp_recv(zmqctl_stomp_t *s, char *buf, size_t len, char *err,
    size_t errlen)
{
    int      rc, e;
    char     why[256];
    short    events;
    ssize_t  n;

    for ( ;; ) {
        events = POLLIN;

        if (s->ssl != NULL) {
            /* what TLS already holds is read before any wait */
            ERR_clear_error();
            errno = 0;
            n = SSL_read(s->ssl, buf, len > 65536 ? 65536 : (int) len);

            if (n > 0) {
                return n;
            }

            e = SSL_get_error(s->ssl, (int) n);

            if (e == SSL_ERROR_ZERO_RETURN
                || (e == SSL_ERROR_SYSCALL && errno == 0
                    && ERR_peek_last_error() == 0))
            {
                return 0;
            }

            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                /* an alert ("tlsv13 alert certificate required"), ... */
                snprintf(err, errlen, "read failed: TLS: %s",
                         zgw_tls_why(s->ctx, errno ? strerror(errno)
                                                   : "failed",
                                     why, sizeof(why)));
                return -1;
            }

            events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;

        } else {
            n = recv(s->fd, buf, len, MSG_DONTWAIT);

            if (n >= 0) {
                return n;
            }

            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                snprintf(err, errlen, "read failed: %s", strerror(errno));
                return -1;
            }
        }

        rc = zmqctl_wait_fd(s->fd, events, zmqctl_stomp_left(s));

        if (rc == 0) {
            return -2;
        }

        if (rc < 0) {
            snprintf(err, errlen, "read failed: %s", strerror(errno));
            return -1;
        }
    }
}


/* the TLS handshake on s->fd (bounded): 0, or -1 with err filled */
static int
zmqctl_stomp_tls(zmqctl_stomp_t *s, const json_t *def, const char *host,
    char *err, size_t errlen)
{
    json_t          *v;
    zgw_tls_opts_t   o;

    zgw_tls_opts_def(&o, def, host);

    s->ctx = zgw_tls_ctx_new(&o, err, errlen);
    if (s->ctx == NULL) {
        return -1;
    }

    s->ssl = zgw_tls_connect(s->ctx, s->fd, zmqctl_stomp_left(s), err,
                             errlen);
    if (s->ssl == NULL) {
        return -1;
    }

    v = json_object_get(def, "verify");
    snprintf(s->tls, sizeof(s->tls), "%s, %s", SSL_get_version(s->ssl),
             v != NULL && !json_is_true(v)
             ? "certificate not verified (verify is false)"
             : "certificate verified");

    return 0;
}


/* the connection closed (ok: with a TLS close_notify) and freed */
static void
zmqctl_stomp_close(zmqctl_stomp_t *s, int ok)
{
    if (s->ssl != NULL) {
        if (ok) {
            (void) SSL_shutdown(s->ssl);
        }
        SSL_free(s->ssl);
        s->ssl = NULL;
    }

    SSL_CTX_free(s->ctx);
    s->ctx = NULL;
    ERR_clear_error();

    if (s->fd != -1) {
        close(s->fd);
        s->fd = -1;
    }
}


/* a header's value in a head (the first of its name), not NUL-ended */
static const char *
zmqctl_stomp_header(char *head, size_t len, const char *name,
    size_t *vlen)
{
    char    *p, *end, *eol, *colon;
    size_t   nlen;

    nlen = strlen(name);
    end = head + len;

    p = memchr(head, '\n', len);            /* past the command */
    if (p == NULL) {
        return NULL;
    }

    for (p++; p < end; p = eol + 1) {
        eol = memchr(p, '\n', (size_t) (end - p));
        if (eol == NULL) {
            eol = end;
        }

        colon = memchr(p, ':', (size_t) (eol - p));

        if (colon != NULL && (size_t) (colon - p) == nlen
            && memcmp(p, name, nlen) == 0)
        {
            *vlen = (size_t) (eol - colon - 1);
            if (*vlen > 0 && colon[*vlen] == '\r') {
                (*vlen)--;
            }
            return colon + 1;
        }
    }

    return NULL;
}


/* a CONNECT header value: CONNECT is not escaped (STOMP 1.2) */
static int
zmqctl_stomp_plain(const char *s)
{
    return s == NULL || strpbrk(s, "\r\n") == NULL;
}


/*
 * One address: connect, CONNECT, the answer. *answered: the broker said
 * something (an ERROR, a refusal): no other address is tried.
 */
static int
zmqctl_stomp_one(zmqctl_stomp_t *s, const json_t *def,
    const zgw_hostport_t *hp, const char *passcode, char *err,
    size_t errlen, int *answered)
{
    int          rc, n;
    char        *frame, *head, msg[ZMQCTL_STOMP_ERR_MAX / 2];
    char         line[ZMQCTL_STOMP_ERR_MAX / 4];
    size_t       headlen, vlen, len, i;
    double       start;
    const char  *vhost, *login, *v;

    start = zmqctl_now_ms();
    s->deadline = start + s->timeout;
    s->len = 0;

    vhost = json_string_value(json_object_get(def, "virtual_host"));
    if (vhost == NULL) {
        vhost = json_string_value(json_object_get(def, "host"));
    }
    login = json_string_value(json_object_get(def, "login"));

    if (!zmqctl_stomp_plain(vhost) || !zmqctl_stomp_plain(login)
        || !zmqctl_stomp_plain(passcode))
    {
        snprintf(err, errlen, "the virtual host, login or passcode has a "
                 "line break, which CONNECT cannot carry");
        *answered = 1;
        return -1;
    }

    s->fd = zmqctl_tcp_connect(hp->host, hp->port, s->timeout, err, errlen);
    if (s->fd == -1) {
        return -1;
    }

    s->tls[0] = '\0';

    if (json_is_true(json_object_get(def, "tls"))
        && zmqctl_stomp_tls(s, def, hp->host, err, errlen) != 0)
    {
        goto failed;
    }

    len = sizeof("CONNECT\naccept-version:1.2\nhost:\nlogin:\npasscode:\n"
                 "heart-beat:0,0\n\n")
          + (vhost ? strlen(vhost) : strlen(hp->host))
          + (login ? strlen(login) : 0)
          + (passcode ? strlen(passcode) : 0);

    frame = malloc(len);
    if (frame == NULL) {
        snprintf(err, errlen, "out of memory");
        goto failed;
    }

    n = snprintf(frame, len, "CONNECT\naccept-version:1.2\nhost:%s\n%s%s%s"
                 "%s%s%sheart-beat:0,0\n\n",
                 vhost ? vhost : hp->host,
                 login ? "login:" : "", login ? login : "",
                 login ? "\n" : "",
                 passcode && *passcode ? "passcode:" : "",
                 passcode && *passcode ? passcode : "",
                 passcode && *passcode ? "\n" : "");

    /* and its NUL */
    rc = (n > 0 && (size_t) n < len)
         ? zmqctl_stomp_write(s, frame, (size_t) n + 1, err, errlen) : -1;

    OPENSSL_cleanse(frame, len);
    free(frame);

    if (rc != 0) {
        goto failed;
    }

    if (zmqctl_stomp_read_head(s, &head, &headlen, err, errlen) != 0) {
        *answered = s->len > 0;
        goto failed;
    }

    *answered = 1;

    if (headlen >= 6 && memcmp(head, "ERROR", 5) == 0
        && (head[5] == '\n' || head[5] == '\r'))
    {
        v = zmqctl_stomp_header(head, headlen, "message", &vlen);
        zmqctl_echo(msg, sizeof(msg), v != NULL ? v : "", v ? vlen : 0);

        /* the body's first line, when the broker gave it */
        line[0] = '\0';
        v = head + headlen + 1;
        len = s->len - (size_t) (v - s->buf);

        if (v < s->buf + s->len) {
            if (*v == '\r') {
                v++;
                len--;
            }
            if (len > 0 && *v == '\n') {
                v++;
                len--;
            }
            for (i = 0; i < len && v[i] != '\n' && v[i] != '\r'
                        && v[i] != '\0'; i++)
            {
                /* void */
            }
            if (i > 0) {
                zmqctl_echo(line, sizeof(line), v, i);
            }
        }

        snprintf(err, errlen, "the broker answered CONNECT with ERROR: "
                 "\"%s\"%s%s", msg, line[0] ? " " : "", line);
        goto failed;
    }

    if (!(headlen >= 10 && memcmp(head, "CONNECTED", 9) == 0
          && (head[9] == '\n' || head[9] == '\r')))
    {
        for (i = 0; i < headlen && head[i] != '\n'; i++) {
            /* void */
        }
        zmqctl_echo(msg, 64, head, i);
        snprintf(err, errlen, "the broker answered CONNECT with \"%s\", "
                 "not CONNECTED", msg);
        goto failed;
    }

    v = zmqctl_stomp_header(head, headlen, "version", &vlen);
    if (v == NULL || vlen != 3 || memcmp(v, "1.2", 3) != 0) {
        zmqctl_echo(msg, 64, v != NULL ? v : "1.0", v ? vlen : 3);
        snprintf(err, errlen, "the broker speaks STOMP %s, not 1.2", msg);
        goto failed;
    }

    v = zmqctl_stomp_header(head, headlen, "server", &vlen);
    if (v != NULL) {
        zmqctl_echo(s->server, sizeof(s->server), v, vlen);
    } else {
        snprintf(s->server, sizeof(s->server), "(unknown server)");
    }

    s->ms = zmqctl_now_ms() - start;

    /* goodbye; its receipt is not awaited */
    (void) zmqctl_stomp_write(s, "DISCONNECT\n\n", sizeof("DISCONNECT\n\n"),
                              msg, sizeof(msg));

    zmqctl_stomp_close(s, 1);
    return 0;

failed:

    zmqctl_stomp_close(s, 0);
    return -1;
}


/* the passcode in clear (opened with the key file), malloc'd; "" none */
static char *
zmqctl_stomp_passcode(zmqctl_opts_t *o, const json_t *def)
{
    char          *pw;
    json_t        *v;
    zgw_key_t      key, *keyp;
    zgw_errors_t   errs;

    v = json_object_get(def, "passcode");
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

    pw = zgw_object_secret(ZGW_KIND_STOMP_DEF, def, "passcode", keyp, &errs);
    if (pw == NULL) {
        zmqctl_print_errors("passcode", &errs);
    }

    OPENSSL_cleanse(&key, sizeof(key));
    zgw_errors_free(&errs);
    return pw;
}


int
zmqctl_ping_stomp(zmqctl_opts_t *o)
{
    int              port, rc, answered;
    char            *passcode, err[ZMQCTL_STOMP_ERR_MAX];
    char             one[ZMQCTL_STOMP_ERR_MAX], peer[96], where[64];
    char            *slash;
    size_t           i, n, used;
    json_t          *def, *hosts, *h;
    zgw_config_t    *cfg;
    zgw_errors_t     errs;
    zgw_hostport_t   hp;
    zmqctl_stomp_t  *s;

    cfg = zmqctl_snapshot(o, 1);
    if (cfg == NULL) {
        return ZMQCTL_EXIT_FAIL;
    }

    rc = ZMQCTL_EXIT_FAIL;
    passcode = NULL;
    s = NULL;

    def = zmqctl_object(cfg, ZGW_KIND_STOMP_DEF, o->argv[1]);
    if (def == NULL) {
        goto done;
    }

    passcode = zmqctl_stomp_passcode(o, def);
    s = calloc(1, sizeof(zmqctl_stomp_t));
    if (passcode == NULL || s == NULL) {
        if (s == NULL) {
            fprintf(stderr, "zmqctl: out of memory\n");
        }
        goto done;
    }

    s->fd = -1;
    s->timeout = o->timeout;

    port = (int) json_integer_value(json_object_get(def, "port"));
    if (port == 0) {
        port = 61613;
    }

    hosts = json_object_get(def, "hosts");
    n = 1 + json_array_size(hosts);
    err[0] = '\0';
    used = 0;

    zgw_errors_init(&errs);

    for (i = 0; i < n; i++) {
        h = i == 0 ? json_object_get(def, "host")
                   : json_array_get(hosts, i - 1);
        answered = 0;

        if (i == 0) {
            snprintf(where, sizeof(where), "host");
            rc = json_is_string(h)
                 ? zgw_host_parse(&hp, json_string_value(h),
                                  json_string_length(h), where, &errs)
                 : zgw_host_parse(&hp, "127.0.0.1", 9, where, &errs);
            hp.port = port;

        } else {
            snprintf(where, sizeof(where), "hosts[%zu]", i - 1);
            rc = json_is_string(h)
                 ? zgw_hostport_parse(&hp, json_string_value(h),
                                      json_string_length(h), port, where,
                                      &errs)
                 : ZGW_ERROR;
        }

        if (rc != ZGW_OK) {
            snprintf(one, sizeof(one), "%s", errs.n ? zgw_errors_first(&errs)
                                                    : "not a string");
            zgw_errors_free(&errs);
            zgw_errors_init(&errs);
            snprintf(peer, sizeof(peer), "%s", where);

        } else {
            zmqctl_peer(peer, sizeof(peer), hp.host, hp.port);

            if (zmqctl_stomp_one(s, def, &hp, passcode, one, sizeof(one),
                                 &answered)
                == 0)
            {
                slash = strchr(s->server, '/');
                if (slash != NULL) {
                    *slash = ' ';
                }
                printf("ok %.1f ms, %s at %s%s%s\n", s->ms, s->server, peer,
                       s->tls[0] ? " over " : "", s->tls);
                rc = ZMQCTL_EXIT_OK;
                zgw_errors_free(&errs);
                goto done;
            }
        }

        if (used < sizeof(err)) {
            used += snprintf(err + used, sizeof(err) - used, "%s%s: %s",
                             i ? "; " : "", peer, one);
        }

        if (answered) {
            break;                  /* the broker's answer is the answer */
        }

        if (i + 1 < n) {
            fprintf(stderr, "zmqctl: %s: %s; trying the next address\n",
                    peer, one);
        }
    }

    zgw_errors_free(&errs);

    printf("failed: %s\n", err);
    rc = ZMQCTL_EXIT_FAIL;

done:

    if (passcode != NULL) {
        OPENSSL_cleanse(passcode, strlen(passcode));
        free(passcode);
    }

    free(s);
    zgw_config_free(cfg);
    return rc;
}
