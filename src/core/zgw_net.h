/*
 * ngx_zmq core: bounded blocking network steps for zmqd and zmqctl (never
 * for an NGINX worker).
 *
 * A connect and each wait for the peer take at most the time given. Name
 * lookups (getaddrinfo) are the exception the C library leaves us:
 * /etc/hosts and numeric addresses answer at once, a DNS server is bounded
 * by resolv.conf (timeout:5 attempts:2 by default).
 */

#ifndef ZGW_NET_H
#define ZGW_NET_H

#include <stddef.h>


/* milliseconds on the monotonic clock */
double zgw_now_ms(void);

/* whole milliseconds until deadline (zgw_now_ms()), rounded up; 0 past it */
int zgw_ms_left(double deadline);

/* poll() one fd, retried on EINTR: 1 ready, 0 timed out, -1 error */
int zgw_wait_fd(int fd, short events, int timeout_ms);

/*
 * A TCP connection to host:port (each address of the name in turn, all
 * within timeout_ms): a non-blocking, close-on-exec socket with
 * TCP_NODELAY, or -1 with err filled ("Connection refused", "no answer to
 * the connect within 2000 ms", "cannot resolve 'x': ...").
 */
int zgw_tcp_connect(const char *host, int port, int timeout_ms, char *err,
    size_t errlen);

#endif /* ZGW_NET_H */
