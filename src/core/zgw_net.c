/*
 * ngx_zmq core: bounded blocking network steps (see zgw_net.h).
 */

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "zgw_net.h"


double
zgw_now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1000.0 + (double) ts.tv_nsec / 1e6;
}


int
zgw_ms_left(double deadline)
{
    double  left;

    left = deadline - zgw_now_ms();
    return left <= 0 ? 0 : (int) left + 1;
}


int
zgw_wait_fd(int fd, short events, int timeout_ms)
{
    int            rc;
    double         deadline;
    struct pollfd  pfd;

    deadline = zgw_now_ms() + timeout_ms;

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

        timeout_ms = zgw_ms_left(deadline);
    }
}


int
zgw_tcp_connect(const char *host, int port, int timeout_ms, char *err,
    size_t errlen)
{
    int               fd, rc, soerr, one;
    char              service[16];
    double            deadline;
    socklen_t         len;
    struct addrinfo   hints, *res, *ai;

    deadline = zgw_now_ms() + timeout_ms;

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

        rc = zgw_wait_fd(fd, POLLOUT, zgw_ms_left(deadline));
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
