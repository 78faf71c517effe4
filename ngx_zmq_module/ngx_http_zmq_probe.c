/*
 * The latency probe's records (ngx_http_zmq_probe.h): a measurement build
 * only. The file writes are blocking; they happen once per
 * NGX_HTTP_ZMQ_PROBE_RECS records and at exit, and a probe build is never
 * a production build.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_zmq_probe.h"


#if (NGX_ZMQ_PROBE)

#define NGX_HTTP_ZMQ_PROBE_RECS  65536


static ngx_http_zmq_probe_rec_t  *ngx_http_zmq_probe_buf;
static ngx_uint_t                 ngx_http_zmq_probe_n;


uint64_t
ngx_http_zmq_probe_now(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


void
ngx_http_zmq_probe_keep(ngx_http_zmq_probe_rec_t *rec)
{
    if (ngx_http_zmq_probe_buf == NULL) {
        ngx_http_zmq_probe_buf = malloc(NGX_HTTP_ZMQ_PROBE_RECS
                                        * sizeof(ngx_http_zmq_probe_rec_t));
        if (ngx_http_zmq_probe_buf == NULL) {
            return;
        }
    }

    ngx_http_zmq_probe_buf[ngx_http_zmq_probe_n++] = *rec;

    if (ngx_http_zmq_probe_n == NGX_HTTP_ZMQ_PROBE_RECS) {
        ngx_http_zmq_probe_flush();
    }
}


void
ngx_http_zmq_probe_flush(void)
{
    int     fd;
    char    path[64];
    size_t  len;

    if (ngx_http_zmq_probe_n == 0) {
        return;
    }

    ngx_sprintf((u_char *) path, "/tmp/zmq-probe.%P%Z", ngx_pid);

    fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd != -1) {
        len = ngx_http_zmq_probe_n * sizeof(ngx_http_zmq_probe_rec_t);
        if (write(fd, ngx_http_zmq_probe_buf, len) != (ssize_t) len) {
            /* a measurement build: a short file shows in the report */
        }
        close(fd);
    }

    ngx_http_zmq_probe_n = 0;
}

#endif
