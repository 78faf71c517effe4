/*
 * zmqctl: bounded TCP connects and TLS handshakes, and the ping of an
 * http_outconn.
 *
 * zmqctl may block, but never without a bound: a connect and each wait
 * for the peer take at most the time left of --timeout. Name lookups
 * (getaddrinfo) are the exception the C library leaves us: /etc/hosts and
 * numeric addresses answer at once, a DNS server is bounded by resolv.conf
 * (timeout:5 attempts:2 by default).
 */

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "zgw_amqp_check.h"
#include "zgw_hostport.h"
#include "zmqctl.h"


static int zmqctl_tls_handshake(int fd, const zgw_hostport_t *hp,
    int verify, int timeout_ms, char *proto, size_t protolen, char *err,
    size_t errlen);
static int zmqctl_ms_left(double deadline);


double
zmqctl_now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1000.0 + (double) ts.tv_nsec / 1e6;
}


/* whole milliseconds until deadline, rounded up; 0 when it has passed */
static int
zmqctl_ms_left(double deadline)
{
    double  left;

    left = deadline - zmqctl_now_ms();
    return left <= 0 ? 0 : (int) left + 1;
}


int
zmqctl_wait_fd(int fd, short events, int timeout_ms)
{
    int            rc;
    double         deadline;
    struct pollfd  pfd;

    deadline = zmqctl_now_ms() + timeout_ms;

    for ( ;; ) {
        pfd.fd = fd;
        pfd.events = events;
        pfd.revents = 0;

        rc = poll(&pfd, 1, timeout_ms);
        if (rc >= 0) {
            return rc > 0 ? 1 : 0;
        }

        if (errno != EINTR) {
            return -1;
        }

        timeout_ms = zmqctl_ms_left(deadline);
    }
}


void
zmqctl_peer(char *out, size_t size, const char *host, int port)
{
    snprintf(out, size, strchr(host, ':') != NULL ? "[%s]:%d" : "%s:%d",
             host, port);
}


const char *
zmqctl_echo(char *out, size_t size, const void *s, size_t len)
{
    zgw_amqp_echo(out, size, s, len, size > 4 ? size - 4 : 0);
    return out;
}


int
zmqctl_tcp_connect(const char *host, int port, int timeout_ms, char *err,
    size_t errlen)
{
    int               fd, rc, soerr, one;
    char              service[16];
    double            deadline;
    socklen_t         len;
    struct addrinfo   hints, *res, *ai;

    deadline = zmqctl_now_ms() + timeout_ms;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(service, sizeof(service), "%d", port);

    rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve '%s': %s", host,
                 gai_strerror(rc));
        return -1;
    }

    fd = -1;
    snprintf(err, errlen, "no address");

    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family,
                    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd == -1) {
            snprintf(err, errlen, "socket(): %s", strerror(errno));
            continue;
        }

        one = 1;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            break;
        }

        if (errno != EINPROGRESS) {
            snprintf(err, errlen, "%s", strerror(errno));
            close(fd);
            fd = -1;
            continue;
        }

        rc = zmqctl_wait_fd(fd, POLLOUT, zmqctl_ms_left(deadline));
        if (rc == 0) {
            snprintf(err, errlen, "no answer to the connect within %d ms",
                     timeout_ms);
            close(fd);
            fd = -1;
            break;                      /* no time left for another */
        }

        soerr = 0;
        len = sizeof(soerr);
        if (rc < 0
            || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == -1)
        {
            soerr = errno;
        }

        if (soerr == 0) {
            break;
        }

        snprintf(err, errlen, "%s", strerror(soerr));
        close(fd);
        fd = -1;
    }

    freeaddrinfo(res);
    return fd;
}


/*
 * A TLS handshake on a connected non-blocking socket, every wait bounded
 * by deadline. With verify, the certificate must chain to the system's
 * certificate authorities and name the host (a name, or an IP address
 * among its subjectAltNames), as curl checks it for zmqd's http services.
 */
static int
zmqctl_tls_handshake(int fd, const zgw_hostport_t *hp, int verify,
    int timeout_ms, char *proto, size_t protolen, char *err, size_t errlen)
{
    int            rc, e, w;
    long           vr;
    double         deadline;
    SSL           *ssl;
    SSL_CTX       *ctx;
    unsigned long  code;

    rc = -1;
    ssl = NULL;
    deadline = zmqctl_now_ms() + timeout_ms;

    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "TLS: cannot make a context");
        return -1;
    }

    (void) SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);

    if (verify) {
        if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
            snprintf(err, errlen, "TLS: cannot load the system's "
                     "certificate authorities");
            goto done;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }

    ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        snprintf(err, errlen, "TLS: out of memory");
        goto done;
    }

    if (hp->kind == ZGW_HOST_IS_NAME) {
        (void) SSL_set_tlsext_host_name(ssl, hp->host);
        if (verify && SSL_set1_host(ssl, hp->host) != 1) {
            snprintf(err, errlen, "TLS: cannot check the host name");
            goto done;
        }

    } else if (verify
               && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
                                                hp->host)
                  != 1)
    {
        snprintf(err, errlen, "TLS: cannot check the address");
        goto done;
    }

    for ( ;; ) {
        ERR_clear_error();
        errno = 0;

        e = SSL_connect(ssl);
        if (e == 1) {
            break;
        }

        e = SSL_get_error(ssl, e);

        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            w = zmqctl_ms_left(deadline);
            if (w > 0) {
                w = zmqctl_wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN
                                                                : POLLOUT,
                                   w);
            }

            if (w == 0) {
                snprintf(err, errlen, "no answer to the TLS handshake "
                         "within %d ms", timeout_ms);
                goto done;
            }

            if (w < 0) {
                snprintf(err, errlen, "TLS handshake: %s", strerror(errno));
                goto done;
            }

            continue;
        }

        vr = SSL_get_verify_result(ssl);
        code = ERR_peek_error();

        if (vr != X509_V_OK) {
            snprintf(err, errlen, "TLS handshake: certificate verify "
                     "failed: %s", X509_verify_cert_error_string(vr));

        } else if (code != 0) {
            snprintf(err, errlen, "TLS handshake failed: %s",
                     ERR_reason_error_string(code) != NULL
                     ? ERR_reason_error_string(code) : "unknown error");

        } else if (e == SSL_ERROR_SYSCALL && errno != 0) {
            snprintf(err, errlen, "TLS handshake: %s", strerror(errno));

        } else {
            snprintf(err, errlen, "TLS handshake failed: the server closed "
                     "the connection");
        }

        goto done;
    }

    snprintf(proto, protolen, "%s", SSL_get_version(ssl));

    /* close_notify, once: nothing waits for the server's */
    (void) SSL_shutdown(ssl);
    rc = 0;

done:

    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return rc;
}


int
zmqctl_ping_http(zmqctl_opts_t *o, const json_t *oc)
{
    int              fd, https, verify;
    char             peer[ZGW_HOST_NAME_MAX + 16], err[512], proto[32];
    double           start, ms;
    const char      *url, *rest, *end;
    zgw_errors_t     errs;
    zgw_hostport_t   hp;

    url = json_string_value(json_object_get(oc, "url"));
    if (url == NULL) {
        fprintf(stderr, "zmqctl: http_outconn has no url\n");
        return ZMQCTL_EXIT_FAIL;
    }

    https = strncmp(url, "https://", 8) == 0;
    rest = url + (https ? 8 : 7);
    end = rest + strcspn(rest, "/?#");
    verify = json_is_true(json_object_get(oc, "tls"));

    zgw_errors_init(&errs);

    /* the model checked the url when it was written */
    if ((!https && strncmp(url, "http://", 7) != 0)
        || zgw_hostport_parse(&hp, rest, (size_t) (end - rest),
                              https ? 443 : 80, "url host", &errs)
           != ZGW_OK)
    {
        fprintf(stderr, "zmqctl: http_outconn '%s': %s\n",
                json_string_value(json_object_get(oc, "name")),
                errs.n ? zgw_errors_first(&errs) : "url is not http(s)");
        zgw_errors_free(&errs);
        return ZMQCTL_EXIT_FAIL;
    }

    zgw_errors_free(&errs);
    zmqctl_peer(peer, sizeof(peer), hp.host, hp.port);

    start = zmqctl_now_ms();

    fd = zmqctl_tcp_connect(hp.host, hp.port, o->timeout, err, sizeof(err));
    if (fd == -1) {
        printf("failed: %s: %s\n", peer, err);
        return ZMQCTL_EXIT_FAIL;
    }

    if (https
        && zmqctl_tls_handshake(fd, &hp, verify, o->timeout, proto,
                                sizeof(proto), err, sizeof(err))
           != 0)
    {
        close(fd);
        printf("failed: %s: %s\n", peer, err);
        return ZMQCTL_EXIT_FAIL;
    }

    ms = zmqctl_now_ms() - start;
    close(fd);

    if (!https) {
        printf("ok %.1f ms, TCP connect to %s\n", ms, peer);

    } else {
        printf("ok %.1f ms, TCP connect and %s handshake with %s, "
               "certificate %s\n", ms, proto, peer,
               verify ? "verified" : "not verified (tls is false)");
    }

    return ZMQCTL_EXIT_OK;
}
