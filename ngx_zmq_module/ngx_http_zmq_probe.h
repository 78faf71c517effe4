/*
 * The latency probe (issue 18): with -DNGX_ZMQ_PROBE=1 (make probe), each
 * published request leaves one record of monotonic microsecond times:
 *
 *   read      the body handler ran (the request and its body were read)
 *   pub       the publish frames were queued on the broker connection
 *   written   the socket took the last byte of those frames
 *   ackread   the read handler that found the confirm started
 *   acked     the confirm was resolved (the answer was queued)
 *   answered  the response was handed to NGINX's output
 *
 * written into /tmp/zmq-probe.<pid> (binary, ngx_http_zmq_probe_rec_t) by
 * each worker when its buffer fills and when it exits. bench/latency_probe.py
 * reads them. Each answer also carries X-Zmq-Probe: <read> <answered>, for
 * bench/latency_probe.lua to split the client's view at the gateway. Without
 * NGX_ZMQ_PROBE every macro is empty: the probe costs
 * nothing in a normal build.
 */

#ifndef _NGX_HTTP_ZMQ_PROBE_H_INCLUDED_
#define _NGX_HTTP_ZMQ_PROBE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#if (NGX_ZMQ_PROBE)

typedef struct {
    uint64_t    read;
    uint64_t    pub;
    uint64_t    written;
    uint64_t    ackread;
    uint64_t    acked;
    uint64_t    answered;
    uint64_t    conn;       /* which broker connection */
} ngx_http_zmq_probe_rec_t;


uint64_t ngx_http_zmq_probe_now(void);
void ngx_http_zmq_probe_keep(ngx_http_zmq_probe_rec_t *rec);
void ngx_http_zmq_probe_flush(void);

#define NGX_HTTP_ZMQ_PROBE_FIELD      ngx_http_zmq_probe_rec_t  probe;
#define NGX_HTTP_ZMQ_PROBE_MARK(rec, f)  (rec).f = ngx_http_zmq_probe_now()
#define NGX_HTTP_ZMQ_PROBE_SET(rec, f, v)  (rec).f = (v)
#define NGX_HTTP_ZMQ_PROBE_KEEP(rec)  ngx_http_zmq_probe_keep(&(rec))
#define NGX_HTTP_ZMQ_PROBE_FLUSH()    ngx_http_zmq_probe_flush()

#else

#define NGX_HTTP_ZMQ_PROBE_FIELD
#define NGX_HTTP_ZMQ_PROBE_MARK(rec, f)
#define NGX_HTTP_ZMQ_PROBE_SET(rec, f, v)
#define NGX_HTTP_ZMQ_PROBE_KEEP(rec)
#define NGX_HTTP_ZMQ_PROBE_FLUSH()

#endif


#endif /* _NGX_HTTP_ZMQ_PROBE_H_INCLUDED_ */
