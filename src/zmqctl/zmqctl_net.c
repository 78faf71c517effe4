/*
 * zmqctl: bounded TCP connects and TLS handshakes, and the ping of an
 * http_outconn.
 *
 * zmqctl may block, but never without a bound: a connect, and a TLS
 * handshake as a whole, take at most --timeout each (src/core/zgw_net.h,
 * zgw_tls.h: the same code as zmqd's).
 */

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "zgw_amqp_check.h"
#include "zgw_hostport.h"
#include "zgw_net.h"
#include "zgw_tls.h"
#include "zmqctl.h"


static int zmqctl_tls_handshake(int fd, const zgw_hostport_t *hp,
    int verify, int timeout_ms, char *proto, size_t protolen, char *err,
    size_t errlen);


double
zmqctl_now_ms(void)
{
    return zgw_now_ms();
}


int
zmqctl_wait_fd(int fd, short events, int timeout_ms)
{
    return zgw_wait_fd(fd, events, timeout_ms);
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
    return zgw_tcp_connect(host, port, timeout_ms, err, errlen);
}


/*
 * A TLS handshake on a connected non-blocking socket, the whole of it
 * bounded by timeout_ms. With verify, the certificate must chain to the system's
 * certificate authorities and name the host (a name, or an IP address
 * among its subjectAltNames), as curl checks it for zmqd's http services;
 * the same code as every TLS client of zmqd and zmqctl (zgw_tls.h).
 */
static int
zmqctl_tls_handshake(int fd, const zgw_hostport_t *hp, int verify,
    int timeout_ms, char *proto, size_t protolen, char *err, size_t errlen)
{
    SSL             *ssl;
    SSL_CTX         *ctx;
    zgw_tls_opts_t   o;

    memset(&o, 0, sizeof(o));
    o.verify = verify;
    o.host = hp->host;

    ctx = zgw_tls_ctx_new(&o, err, errlen);
    if (ctx == NULL) {
        return -1;
    }

    ssl = zgw_tls_connect(ctx, fd, timeout_ms, err, errlen);
    if (ssl == NULL) {
        SSL_CTX_free(ctx);
        return -1;
    }

    snprintf(proto, protolen, "%s", SSL_get_version(ssl));

    /* close_notify, once: nothing waits for the server's */
    (void) SSL_shutdown(ssl);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return 0;
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
