/*
 * zmqd: a small blocking STOMP 1.2 client, every wait bounded.
 *
 * Connecting tries host:port, then each of hosts (failover), from the one
 * after the host that failed last; each attempt is bounded (5 s to
 * connect, 5 s for CONNECTED). CONNECT asks for heart-beats every
 * heartbeat s both ways; what the broker answers is negotiated as STOMP
 * 1.2 says (the larger of the two, none when either is 0).
 *
 * The main thread writes frames holding the connection's lock. A thread of
 * this file sends a heart-beat EOL on every connection that sent nothing
 * for half its interval (with trylock: when the lock is held, the main
 * thread is writing, which counts), so that a service that runs for
 * minutes does not get the connection dropped. The broker's heart-beats
 * are checked only when a read finds nothing: after a long service call
 * they wait in the socket, and only a broker silent for twice its
 * interval (plus a second) is declared lost.
 *
 * Frames that arrive while a receipt is awaited (MESSAGE frames of the
 * subscription) are kept in order and returned by the next reads.
 *
 * A stomp_def with tls: the TLS handshake after the TCP connect (each
 * bounded by ZMQD_TIMEOUT_MS), set up by src/core/zgw_tls (ca_file or the
 * system store, verify, server_name, cert_file/key_file, the same checks
 * and reasons as zmqd's AMQP), and CONNECT only once the certificate is
 * verified. One SSL must not be used by two threads at once: over TLS
 * every SSL call (reads too) holds the connection's lock, and a heart-beat
 * the SSL could not write whole is finished (the same byte, as OpenSSL
 * requires) before anything else is written.
 */

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "zgw_hostport.h"
#include "zgw_net.h"
#include "zgw_tls.h"
#include "zmqd.h"
#include "zmqd_stomp_client.h"


#define ZMQD_STOMP_BEAT_TICK_MS  100
#define ZMQD_STOMP_READ_CHUNK    65536
#define ZMQD_STOMP_KEPT_MAX      65536    /* frames kept during a wait */


typedef struct zmqd_stomp_kept_s  zmqd_stomp_kept_t;

struct zmqd_stomp_kept_s {
    zmqd_stomp_frame_t   frame;
    zmqd_stomp_kept_t   *next;
};


struct zmqd_stomp_s {
    int                  fd;
    pthread_mutex_t      lock;          /* around writes */
    zmqd_stomp_t        *next;          /* in the heart-beat list */
    double               send_every;    /* s; 0 none */
    double               recv_every;
    double               last_send;
    double               last_recv;
    int                  broken;
    char                 peer[300];
    char                 server[256];
    char                *buf;
    size_t               len;
    size_t               cap;
    zmqd_stomp_kept_t   *kept;
    zmqd_stomp_kept_t   *kept_last;
    int                  nkept;
    unsigned long        next_receipt;

    /* TLS: NULL without */
    SSL_CTX             *ctx;
    SSL                 *ssl;
    int                  beat_pending;  /* a heart-beat SSL_write to redo */
    char                 tls[96];       /* "TLSv1.3, certificate verified" */
};


/* what one non-blocking read or write did */
#define ZMQD_STOMP_IO_AGAIN   0         /* wait for events */
#define ZMQD_STOMP_IO_ERROR  -1         /* err filled */
#define ZMQD_STOMP_IO_EOF    -2         /* the broker closed */


static ssize_t zmqd_stomp_io_send(zmqd_stomp_t *s, const char *data,
    size_t len, short *events, char *err, size_t errlen);
static ssize_t zmqd_stomp_io_recv(zmqd_stomp_t *s, char *buf, size_t len,
    short *events, char *err, size_t errlen);
static void zmqd_stomp_tls_fail(zmqd_stomp_t *s, int e, const char *what,
    char *err, size_t errlen);


static pthread_mutex_t  zmqd_sbeat_lock = PTHREAD_MUTEX_INITIALIZER;
static zmqd_stomp_t    *zmqd_sbeat_list;
static pthread_t        zmqd_sbeat_thread;
static int              zmqd_sbeat_running;
static volatile int     zmqd_sbeat_stop;


const char *
zmqd_stomp_peer(const zmqd_stomp_t *s)
{
    return s->peer;
}


const char *
zmqd_stomp_server(const zmqd_stomp_t *s)
{
    return s->server;
}


const char *
zmqd_stomp_tls(const zmqd_stomp_t *s)
{
    return s->tls;
}


/* ---------------------------------------------------------- heart-beats */


static void *
zmqd_stomp_beat_loop(void *arg)
{
    int            e;
    double         now;
    ssize_t        n;
    zmqd_stomp_t  *s;

    (void) arg;

    while (!zmqd_sbeat_stop) {
        usleep(ZMQD_STOMP_BEAT_TICK_MS * 1000);
        now = zmqd_now();

        pthread_mutex_lock(&zmqd_sbeat_lock);

        for (s = zmqd_sbeat_list; s != NULL; s = s->next) {
            if (s->send_every <= 0 || s->broken
                || now - s->last_send < s->send_every / 2)
            {
                continue;
            }

            if (pthread_mutex_trylock(&s->lock) != 0) {
                continue;               /* the main thread is using it */
            }

            if (s->ssl != NULL) {
                /*
                 * One byte in one record; when the socket takes only part
                 * of the record, the same write is redone (here, or by the
                 * main thread before its own)
                 */
                ERR_clear_error();
                n = SSL_write(s->ssl, "\n", 1);
                if (n == 1) {
                    s->last_send = now;
                    s->beat_pending = 0;
                } else {
                    e = SSL_get_error(s->ssl, (int) n);
                    if (e == SSL_ERROR_WANT_WRITE
                        || e == SSL_ERROR_WANT_READ)
                    {
                        s->beat_pending = 1;
                    } else {
                        s->broken = 1;
                    }
                }
                ERR_clear_error();

            } else {
                /* one byte: written whole or not at all, never blocking */
                n = send(s->fd, "\n", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n == 1) {
                    s->last_send = now;
                } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK
                           && errno != EINTR)
                {
                    s->broken = 1;
                }
            }

            pthread_mutex_unlock(&s->lock);
        }

        pthread_mutex_unlock(&zmqd_sbeat_lock);
    }

    return NULL;
}


static void
zmqd_stomp_beat_add(zmqd_stomp_t *s)
{
    pthread_mutex_lock(&zmqd_sbeat_lock);

    if (!zmqd_sbeat_running) {
        zmqd_sbeat_stop = 0;
        if (pthread_create(&zmqd_sbeat_thread, NULL, zmqd_stomp_beat_loop,
                           NULL)
            == 0)
        {
            zmqd_sbeat_running = 1;
        } else {
            zmqd_log("warn", "STOMP: cannot start the heart-beat thread: "
                     "heart-beats are sent only between frames");
        }
    }

    s->next = zmqd_sbeat_list;
    zmqd_sbeat_list = s;
    pthread_mutex_unlock(&zmqd_sbeat_lock);
}


static void
zmqd_stomp_beat_remove(zmqd_stomp_t *s)
{
    zmqd_stomp_t  **p;

    pthread_mutex_lock(&zmqd_sbeat_lock);
    for (p = &zmqd_sbeat_list; *p != NULL; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    pthread_mutex_unlock(&zmqd_sbeat_lock);
}


void
zmqd_stomp_shutdown(void)
{
    if (zmqd_sbeat_running) {
        zmqd_sbeat_stop = 1;
        (void) pthread_join(zmqd_sbeat_thread, NULL);
        zmqd_sbeat_running = 0;
    }
}


/* ---------------------------------------------------------------- I/O */


/*
 * One non-blocking write (the caller holds the lock): the bytes written,
 * ZMQD_STOMP_IO_AGAIN (*events: what to wait for) or ZMQD_STOMP_IO_ERROR
 */
static ssize_t
zmqd_stomp_io_send(zmqd_stomp_t *s, const char *data, size_t len,
    short *events, char *err, size_t errlen)
{
    int      e;
    ssize_t  n;

    *events = POLLOUT;

    if (s->ssl == NULL) {
        n = send(s->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            return n;
        }

        if (n < 0 && (errno == EINTR || errno == EAGAIN
                      || errno == EWOULDBLOCK))
        {
            return ZMQD_STOMP_IO_AGAIN;
        }

        snprintf(err, errlen, "%s: cannot send: %s", s->peer,
                 n < 0 ? strerror(errno) : "nothing written");
        return ZMQD_STOMP_IO_ERROR;
    }

    if (len > 65536) {
        len = 65536;                    /* SSL_write takes an int */
    }

    ERR_clear_error();
    errno = 0;
    n = SSL_write(s->ssl, data, (int) len);
    if (n > 0) {
        return n;
    }

    e = SSL_get_error(s->ssl, (int) n);

    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        *events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        return ZMQD_STOMP_IO_AGAIN;
    }

    zmqd_stomp_tls_fail(s, e, "cannot send", err, errlen);
    return ZMQD_STOMP_IO_ERROR;
}


/*
 * One non-blocking read (over TLS it takes the lock): the bytes read,
 * ZMQD_STOMP_IO_AGAIN (*events: what to wait for), ZMQD_STOMP_IO_EOF or
 * ZMQD_STOMP_IO_ERROR
 */
static ssize_t
zmqd_stomp_io_recv(zmqd_stomp_t *s, char *buf, size_t len, short *events,
    char *err, size_t errlen)
{
    int      e;
    ssize_t  n;

    *events = POLLIN;

    if (s->ssl == NULL) {
        n = recv(s->fd, buf, len, MSG_DONTWAIT);
        if (n > 0) {
            return n;
        }

        if (n == 0) {
            return ZMQD_STOMP_IO_EOF;
        }

        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) {
            return ZMQD_STOMP_IO_AGAIN;
        }

        snprintf(err, errlen, "%s: cannot read: %s", s->peer,
                 strerror(errno));
        return ZMQD_STOMP_IO_ERROR;
    }

    if (len > 65536) {
        len = 65536;
    }

    pthread_mutex_lock(&s->lock);

    ERR_clear_error();
    errno = 0;
    n = SSL_read(s->ssl, buf, (int) len);

    if (n > 0) {
        pthread_mutex_unlock(&s->lock);
        return n;
    }

    e = SSL_get_error(s->ssl, (int) n);

    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        n = ZMQD_STOMP_IO_AGAIN;

    } else if (e == SSL_ERROR_ZERO_RETURN
               || (e == SSL_ERROR_SYSCALL && errno == 0
                   && ERR_peek_last_error() == 0))
    {
        n = ZMQD_STOMP_IO_EOF;

    } else {
        zmqd_stomp_tls_fail(s, e, "cannot read", err, errlen);
        n = ZMQD_STOMP_IO_ERROR;
    }

    ERR_clear_error();
    pthread_mutex_unlock(&s->lock);

    return n;
}


/*
 * A TLS read or write failed (the caller holds the lock). A broker that
 * refuses the connection after the handshake (TLS 1.3: a client
 * certificate it requires) sends an alert and closes; a write of ours
 * then fails with a reset while the alert waits unread: one more read
 * finds it, and its reason is the one to give.
 */
static void
zmqd_stomp_tls_fail(zmqd_stomp_t *s, int e, const char *what, char *err,
    size_t errlen)
{
    int            err_no;
    char           why[512], first[256], b[256];
    unsigned long  code;

    err_no = errno;
    code = ERR_peek_last_error();

    if (code != 0 && !ERR_SYSTEM_ERROR(code)) {
        /* OpenSSL's own reason: an alert, a protocol error */
        snprintf(err, errlen, "%s: %s: TLS: %s", s->peer, what,
                 zgw_tls_why(s->ctx, what, why, sizeof(why)));
        ERR_clear_error();
        return;
    }

    if (e == SSL_ERROR_SYSCALL && code == 0) {
        snprintf(first, sizeof(first), "%s",
                 err_no ? strerror(err_no) : "the broker closed the "
                                             "connection");
    } else {
        snprintf(first, sizeof(first), "%s",
                 ERR_reason_error_string(code) != NULL
                 ? ERR_reason_error_string(code) : "TLS error");
    }

    ERR_clear_error();
    (void) SSL_read(s->ssl, b, sizeof(b));
    code = ERR_peek_last_error();

    if (code != 0 && !ERR_SYSTEM_ERROR(code)) {
        snprintf(err, errlen, "%s: %s: TLS: %s", s->peer, what,
                 zgw_tls_why(s->ctx, what, why, sizeof(why)));

    } else if (zgw_tls_asked(s->ctx)) {
        ERR_clear_error();
        snprintf(err, errlen, "%s: %s: TLS: %s (%s)", s->peer, what,
                 zgw_tls_why(s->ctx, what, why, sizeof(why)), first);

    } else {
        snprintf(err, errlen, "%s: %s: TLS: %s", s->peer, what, first);
    }

    ERR_clear_error();
}


/* all of data, or -1 (err filled, broken) within timeout_ms */
static int
zmqd_stomp_write(zmqd_stomp_t *s, const char *data, size_t len,
    char *err, size_t errlen)
{
    int            rc;
    short          events;
    double         deadline, left;
    ssize_t        n;
    struct pollfd  pfd;

    if (s->broken) {
        snprintf(err, errlen, "%s: the connection is broken", s->peer);
        return -1;
    }

    deadline = zmqd_now() + ZMQD_TIMEOUT_MS / 1000.0;

    pthread_mutex_lock(&s->lock);

    while (len > 0 || s->beat_pending) {

        /* a heart-beat the SSL holds in part: that same write first */
        if (s->beat_pending) {
            n = zmqd_stomp_io_send(s, "\n", 1, &events, err, errlen);
            if (n > 0) {
                s->beat_pending = 0;
            }

        } else {
            n = zmqd_stomp_io_send(s, data, len, &events, err, errlen);
            if (n > 0) {
                data += n;
                len -= (size_t) n;
            }
        }

        if (n > 0) {
            continue;
        }

        if (n == ZMQD_STOMP_IO_ERROR) {
            goto failed;
        }

        left = deadline - zmqd_now();
        if (left <= 0) {
            snprintf(err, errlen, "%s: cannot send for %d ms", s->peer,
                     ZMQD_TIMEOUT_MS);
            goto failed;
        }

        pfd.fd = s->fd;
        pfd.events = events;
        rc = poll(&pfd, 1, (int) (left * 1000) + 1);
        if (rc < 0 && errno != EINTR) {
            snprintf(err, errlen, "%s: poll: %s", s->peer, strerror(errno));
            goto failed;
        }
    }

    s->last_send = zmqd_now();
    pthread_mutex_unlock(&s->lock);
    return 0;

failed:

    s->broken = 1;
    pthread_mutex_unlock(&s->lock);
    return -1;
}


int
zmqd_stomp_send_out(zmqd_stomp_t *s, zmqd_stomp_out_t *o, char *err,
    size_t errlen)
{
    if (o->failed) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    return zmqd_stomp_write(s, o->data, o->len, err, errlen);
}


/*
 * The next frame from the socket: 1 (f filled), 0 (none within
 * timeout_ms), -1 (err filled: the connection is broken). An ERROR frame
 * is returned as a frame; the caller decides.
 */
static int
zmqd_stomp_read_wire(zmqd_stomp_t *s, zmqd_stomp_frame_t *f, int unescape,
    int timeout_ms, char *err, size_t errlen)
{
    int            rc;
    char          *b;
    short          events;
    double         deadline, now, left;
    size_t         used, cap;
    ssize_t        n;
    struct pollfd  pfd;

    deadline = zmqd_now() + timeout_ms / 1000.0;

    for ( ;; ) {
        if (s->broken) {
            snprintf(err, errlen, "%s: the connection is broken", s->peer);
            return -1;
        }

        rc = zmqd_stomp_parse(s->buf, s->len, unescape, f, &used, err,
                              errlen);
        if (used > 0) {
            memmove(s->buf, s->buf + used, s->len - used);
            s->len -= used;
        }

        if (rc == ZMQD_STOMP_FRAME) {
            return 1;
        }

        if (rc != ZMQD_STOMP_MORE) {
            s->broken = 1;
            return -1;
        }

        /* room to read into: the buffer grows up to a frame's limits */
        if (s->cap - s->len < ZMQD_STOMP_READ_CHUNK) {
            cap = s->cap ? s->cap * 2 : 2 * ZMQD_STOMP_READ_CHUNK;
            if (cap > ZMQD_STOMP_BODY_MAX + ZMQD_STOMP_HEAD_MAX
                      + 4 * ZMQD_STOMP_READ_CHUNK)
            {
                snprintf(err, errlen, "%s: a frame over %d bytes", s->peer,
                         ZMQD_STOMP_BODY_MAX + ZMQD_STOMP_HEAD_MAX);
                s->broken = 1;
                return -1;
            }
            b = realloc(s->buf, cap);
            if (b == NULL) {
                snprintf(err, errlen, "out of memory");
                s->broken = 1;
                return -1;
            }
            s->buf = b;
            s->cap = cap;
        }

        n = zmqd_stomp_io_recv(s, s->buf + s->len, s->cap - s->len,
                               &events, err, errlen);
        if (n > 0) {
            s->len += (size_t) n;
            s->last_recv = zmqd_now();
            continue;
        }

        if (n == ZMQD_STOMP_IO_EOF) {
            snprintf(err, errlen, "%s: the broker closed the connection",
                     s->peer);
            s->broken = 1;
            return -1;
        }

        if (n == ZMQD_STOMP_IO_ERROR) {
            s->broken = 1;
            return -1;
        }

        /* nothing to read: is the broker still there? */
        now = zmqd_now();
        if (s->recv_every > 0 && now - s->last_recv > 2 * s->recv_every + 1)
        {
            snprintf(err, errlen, "%s: no heart-beat from the broker for "
                     "%.1f s", s->peer, now - s->last_recv);
            s->broken = 1;
            return -1;
        }

        left = deadline - now;
        if (left <= 0) {
            return 0;
        }

        pfd.fd = s->fd;
        pfd.events = events;
        rc = poll(&pfd, 1, (int) (left * 1000) + 1);
        if (rc < 0 && errno != EINTR) {
            snprintf(err, errlen, "%s: poll: %s", s->peer, strerror(errno));
            s->broken = 1;
            return -1;
        }
    }
}


int
zmqd_stomp_read(zmqd_stomp_t *s, zmqd_stomp_frame_t *f, int timeout_ms,
    char *err, size_t errlen)
{
    zmqd_stomp_kept_t  *k;

    k = s->kept;
    if (k != NULL) {
        s->kept = k->next;
        if (s->kept == NULL) {
            s->kept_last = NULL;
        }
        s->nkept--;
        *f = k->frame;
        free(k);
        return 1;
    }

    return zmqd_stomp_read_wire(s, f, 1, timeout_ms, err, errlen);
}


int
zmqd_stomp_pending(const zmqd_stomp_t *s)
{
    return s->kept != NULL;
}


int
zmqd_stomp_fd(const zmqd_stomp_t *s)
{
    return s->fd;
}


int
zmqd_stomp_broken(const zmqd_stomp_t *s)
{
    return s->broken;
}


/* "ERROR: <message>" of an ERROR frame, for a log line */
static void
zmqd_stomp_error_text(const zmqd_stomp_frame_t *f, char *err, size_t errlen)
{
    const char  *m;

    m = zmqd_stomp_get(f, "message");
    snprintf(err, errlen, "ERROR frame: %.300s%s%.300s",
             m ? m : "(no message header)", f->len ? ": " : "",
             f->len ? f->body : "");
}


/*
 * Sends o, which has a receipt header with id, and waits (bounded) for its
 * RECEIPT. Other frames are kept for zmqd_stomp_read. An ERROR frame, or
 * no RECEIPT in time, is a failure (the connection is then broken: the
 * broker closes it after an ERROR, and a late RECEIPT would be confusing).
 */
int
zmqd_stomp_request(zmqd_stomp_t *s, zmqd_stomp_out_t *o, const char *id,
    char *err, size_t errlen)
{
    int                  rc;
    double               deadline, left;
    const char          *rid;
    zmqd_stomp_kept_t   *k;
    zmqd_stomp_frame_t   f;

    if (zmqd_stomp_send_out(s, o, err, errlen) != 0) {
        return -1;
    }

    deadline = zmqd_now() + ZMQD_TIMEOUT_MS / 1000.0;

    for ( ;; ) {
        left = deadline - zmqd_now();
        if (left <= 0) {
            snprintf(err, errlen, "%s: no RECEIPT in %d ms", s->peer,
                     ZMQD_TIMEOUT_MS);
            s->broken = 1;
            return -1;
        }

        rc = zmqd_stomp_read_wire(s, &f, 1, (int) (left * 1000) + 1, err,
                                  errlen);
        if (rc < 0) {
            return -1;
        }
        if (rc == 0) {
            continue;
        }

        if (strcmp(f.command, "RECEIPT") == 0) {
            rid = zmqd_stomp_get(&f, "receipt-id");
            if (rid != NULL && strcmp(rid, id) == 0) {
                zmqd_stomp_frame_free(&f);
                return 0;
            }
            zmqd_stomp_frame_free(&f);      /* not ours: a stale one */
            continue;
        }

        if (strcmp(f.command, "ERROR") == 0) {
            zmqd_stomp_error_text(&f, err, errlen);
            zmqd_stomp_frame_free(&f);
            s->broken = 1;
            return -1;
        }

        if (s->nkept >= ZMQD_STOMP_KEPT_MAX) {
            zmqd_stomp_frame_free(&f);
            snprintf(err, errlen, "%s: more than %d frames while waiting "
                     "for a RECEIPT", s->peer, ZMQD_STOMP_KEPT_MAX);
            s->broken = 1;
            return -1;
        }

        k = malloc(sizeof(zmqd_stomp_kept_t));
        if (k == NULL) {
            zmqd_stomp_frame_free(&f);
            snprintf(err, errlen, "out of memory");
            s->broken = 1;
            return -1;
        }

        k->frame = f;
        k->next = NULL;
        if (s->kept_last != NULL) {
            s->kept_last->next = k;
        } else {
            s->kept = k;
        }
        s->kept_last = k;
        s->nkept++;
    }
}


/* a receipt id unique on this connection */
void
zmqd_stomp_receipt_id(zmqd_stomp_t *s, const char *prefix, char *out,
    size_t size)
{
    snprintf(out, size, "%s-%lu", prefix, ++s->next_receipt);
}


/* ---------------------------------------------------------- connecting */


/* a bounded TCP connect (zgw_net.h), in the words zmqd logs */
static int
zmqd_stomp_tcp(const char *host, int port, char *err, size_t errlen)
{
    int   fd;
    char  why[512];

    fd = zgw_tcp_connect(host, port, ZMQD_TIMEOUT_MS, why, sizeof(why));
    if (fd < 0) {
        snprintf(err, errlen, strchr(host, ':') != NULL
                              ? "cannot connect to [%s]:%d: %s"
                              : "cannot connect to %s:%d: %s",
                 host, port, why);
    }

    return fd;
}


/*
 * The TLS handshake on s->fd with the def's options (bounded): 0, or -1
 * with err filled; nothing of STOMP is sent before it verified
 */
static int
zmqd_stomp_tls_open(zmqd_stomp_t *s, const json_t *def, const char *host,
    char *err, size_t errlen)
{
    char            why[512];
    json_t         *v;
    zgw_tls_opts_t  o;

    zgw_tls_opts_def(&o, def, host);

    s->ctx = zgw_tls_ctx_new(&o, why, sizeof(why));
    if (s->ctx == NULL) {
        snprintf(err, errlen, "%s: %.500s", s->peer, why);
        return -1;
    }

    s->ssl = zgw_tls_connect(s->ctx, s->fd, ZMQD_TIMEOUT_MS, why,
                             sizeof(why));
    if (s->ssl == NULL) {
        snprintf(err, errlen, "cannot connect to %s: %.500s", s->peer,
                 why);
        return -1;
    }

    v = json_object_get(def, "verify");
    snprintf(s->tls, sizeof(s->tls), "%s, %s", SSL_get_version(s->ssl),
             v != NULL && !json_is_true(v)
             ? "certificate not verified (verify is false)"
             : "certificate verified");

    return 0;
}


/* "cx,cy" of a heart-beat header, in ms; -1 when unreadable */
static int
zmqd_stomp_beats(const char *v, long *x, long *y)
{
    char  *end;

    if (v == NULL) {
        *x = *y = 0;
        return 0;
    }

    *x = strtol(v, &end, 10);
    if (end == v || *end != ',' || *x < 0) {
        return -1;
    }
    v = end + 1;
    *y = strtol(v, &end, 10);
    if (end == v || *end != '\0' || *y < 0) {
        return -1;
    }

    return 0;
}


static zmqd_stomp_t *
zmqd_stomp_connect_one(const json_t *def, const char *host, int port,
    const char *passcode, char *err, size_t errlen)
{
    int                  rc, hb;
    char                 beats[64];
    long                 sx, sy;
    const char          *vhost, *login, *v;
    zmqd_stomp_t        *s;
    zmqd_stomp_out_t     o;
    zmqd_stomp_frame_t   f;

    s = calloc(1, sizeof(zmqd_stomp_t));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }

    snprintf(s->peer, sizeof(s->peer),
             strchr(host, ':') != NULL ? "[%s]:%d" : "%s:%d", host, port);
    (void) pthread_mutex_init(&s->lock, NULL);

    s->fd = zmqd_stomp_tcp(host, port, err, errlen);
    if (s->fd < 0) {
        (void) pthread_mutex_destroy(&s->lock);
        free(s);
        return NULL;
    }

    if (json_is_true(json_object_get(def, "tls"))
        && zmqd_stomp_tls_open(s, def, host, err, errlen) != 0)
    {
        goto failed;
    }

    s->last_recv = s->last_send = zmqd_now();

    hb = (int) json_integer_value(json_object_get(def, "heartbeat"));
    vhost = json_string_value(json_object_get(def, "virtual_host"));
    login = json_string_value(json_object_get(def, "login"));
    snprintf(beats, sizeof(beats), "%d,%d", hb * 1000, hb * 1000);

    /* CONNECT is not escaped (1.2, for 1.0 brokers) */
    memset(&o, 0, sizeof(o));
    zmqd_stomp_out_command(&o, "CONNECT");
    zmqd_stomp_out_header(&o, "accept-version", "1.2", 1);
    zmqd_stomp_out_header(&o, "host", vhost ? vhost : host, 1);
    zmqd_stomp_out_header(&o, "heart-beat", beats, 1);
    if (login != NULL) {
        zmqd_stomp_out_header(&o, "login", login, 1);
    }
    if (passcode != NULL) {
        zmqd_stomp_out_header(&o, "passcode", passcode, 1);
    }
    zmqd_stomp_out_body(&o, "", 0, 0);

    rc = zmqd_stomp_send_out(s, &o, err, errlen);
    if (o.data != NULL) {
        memset(o.data, 0, o.len);           /* the passcode */
    }
    zmqd_stomp_out_free(&o);

    if (rc != 0) {
        goto failed;
    }

    rc = zmqd_stomp_read_wire(s, &f, 0, ZMQD_TIMEOUT_MS, err, errlen);
    if (rc == 0) {
        snprintf(err, errlen, "%s: no CONNECTED in %d ms", s->peer,
                 ZMQD_TIMEOUT_MS);
        goto failed;
    }
    if (rc < 0) {
        goto failed;
    }

    if (strcmp(f.command, "CONNECTED") != 0) {
        if (strcmp(f.command, "ERROR") == 0) {
            zmqd_stomp_error_text(&f, err, errlen);
        } else {
            snprintf(err, errlen, "a %s frame instead of CONNECTED",
                     f.command);
        }
        zmqd_stomp_frame_free(&f);
        goto failed;
    }

    v = zmqd_stomp_get(&f, "version");
    if (v != NULL && strcmp(v, "1.2") != 0) {
        snprintf(err, errlen, "the broker speaks STOMP %.20s, not 1.2", v);
        zmqd_stomp_frame_free(&f);
        goto failed;
    }

    if (zmqd_stomp_beats(zmqd_stomp_get(&f, "heart-beat"), &sx, &sy) != 0) {
        snprintf(err, errlen, "CONNECTED: heart-beat is not \"sx,sy\"");
        zmqd_stomp_frame_free(&f);
        goto failed;
    }

    v = zmqd_stomp_get(&f, "server");
    snprintf(s->server, sizeof(s->server), "%.200s", v ? v : "");
    zmqd_stomp_frame_free(&f);

    /* 1.2: each side's interval is the larger one; none when either is 0 */
    s->send_every = hb > 0 && sy > 0 ? (hb * 1000 > sy ? hb * 1000 : sy)
                                       / 1000.0
                                     : 0;
    s->recv_every = hb > 0 && sx > 0 ? (hb * 1000 > sx ? hb * 1000 : sx)
                                       / 1000.0
                                     : 0;

    zmqd_stomp_beat_add(s);
    return s;

failed:

    SSL_free(s->ssl);                   /* no close_notify: it failed */
    SSL_CTX_free(s->ctx);
    ERR_clear_error();
    close(s->fd);
    free(s->buf);
    (void) pthread_mutex_destroy(&s->lock);
    free(s);
    return NULL;
}


zmqd_stomp_t *
zmqd_stomp_open(const json_t *def, const zgw_key_t *key, int *next_host,
    char *err, size_t errlen)
{
    int              i, n, k, port;
    char            *passcode, e[1024];
    json_t          *hosts;
    zgw_errors_t     errs;
    zmqd_stomp_t    *s;
    zgw_hostport_t   hp;
    const char      *host, *text;

    zgw_errors_init(&errs);
    passcode = NULL;

    if (json_object_get(def, "passcode") != NULL) {
        passcode = zgw_object_secret(ZGW_KIND_STOMP_DEF, def, "passcode",
                                     key, &errs);
        if (passcode == NULL) {
            snprintf(err, errlen, "%s", zgw_errors_first(&errs));
            zgw_errors_free(&errs);
            return NULL;
        }
    }

    hosts = json_object_get(def, "hosts");
    n = 1 + (int) json_array_size(hosts);
    s = NULL;
    err[0] = '\0';

    for (k = 0; k < n && s == NULL; k++) {
        i = (*next_host + k) % n;

        if (i == 0) {
            host = json_string_value(json_object_get(def, "host"));
            port = (int) json_integer_value(json_object_get(def, "port"));
            snprintf(hp.host, sizeof(hp.host), "%s", host ? host : "");

        } else {
            text = json_string_value(json_array_get(hosts, i - 1));
            if (text == NULL
                || zgw_hostport_parse(&hp, text, strlen(text),
                                      (int) json_integer_value(
                                          json_object_get(def, "port")),
                                      "host", &errs)
                   != ZGW_OK)
            {
                continue;
            }
            port = hp.port;
        }

        s = zmqd_stomp_connect_one(def, hp.host, port, passcode, e,
                                   sizeof(e));
        if (s == NULL) {
            /* every host's failure, as far as it goes */
            snprintf(err + strlen(err), errlen - strlen(err), "%s%s",
                     err[0] ? "; " : "", e);
            *next_host = (i + 1) % n;
        } else {
            *next_host = i;
            if (s->tls[0]) {
                zmqd_log("info", "stomp_def '%s': connected to %s over %s",
                         json_string_value(json_object_get(def, "name")),
                         s->peer, s->tls);
            }
        }
    }

    if (passcode != NULL) {
        memset(passcode, 0, strlen(passcode));
        free(passcode);
    }
    zgw_errors_free(&errs);

    return s;
}


/* DISCONNECT with a receipt (graceful), bounded; then the socket closed */
void
zmqd_stomp_close(zmqd_stomp_t *s, int graceful)
{
    char                 id[64], err[256];
    zmqd_stomp_out_t     o;
    zmqd_stomp_kept_t   *k;

    if (s == NULL) {
        return;
    }

    if (graceful && !s->broken) {
        zmqd_stomp_receipt_id(s, "bye", id, sizeof(id));
        memset(&o, 0, sizeof(o));
        zmqd_stomp_out_command(&o, "DISCONNECT");
        zmqd_stomp_out_header(&o, "receipt", id, 0);
        zmqd_stomp_out_body(&o, "", 0, 0);
        (void) zmqd_stomp_request(s, &o, id, err, sizeof(err));
        zmqd_stomp_out_free(&o);
    }

    /* out of the list first: then the heart-beat thread cannot hold it */
    zmqd_stomp_beat_remove(s);

    while ((k = s->kept) != NULL) {
        s->kept = k->next;
        zmqd_stomp_frame_free(&k->frame);
        free(k);
    }

    if (s->ssl != NULL) {
        /* a close_notify when all went well, never waiting for the peer's */
        if (!s->broken && !s->beat_pending) {
            (void) SSL_shutdown(s->ssl);
        }
        SSL_free(s->ssl);
        SSL_CTX_free(s->ctx);
        ERR_clear_error();
    }

    close(s->fd);
    free(s->buf);
    (void) pthread_mutex_destroy(&s->lock);
    free(s);
}
