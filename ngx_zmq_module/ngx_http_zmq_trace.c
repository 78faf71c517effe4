
/*
 * ngx_http_zmq_module: W3C Trace Context. A request's traceparent and
 * tracestate headers, when valid (src/core/zgw_trace.h), are copied into
 * the message's headers table under the same names; a malformed
 * traceparent is dropped, and its tracestate with it. With zmq_trace on,
 * a request without a valid traceparent starts a trace: a fresh random
 * trace-id and parent-id, flags 01.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>

#include "zgw_trace.h"
#include "ngx_http_zmq_module.h"


static ngx_int_t ngx_http_zmq_trace_is(ngx_str_t *name, const char *what,
    size_t len);


static ngx_int_t
ngx_http_zmq_trace_is(ngx_str_t *name, const char *what, size_t len)
{
    return name->len == len
           && ngx_strncasecmp(name->data, (u_char *) what, len) == 0;
}


/*
 * Appends traceparent (and tracestate) to the n entries of the message's
 * headers table (room for NGX_HTTP_ZMQ_TRACE_HEADERS more): NGX_OK,
 * NGX_DECLINED (*bad says why: the table names them already) or NGX_ERROR.
 */

ngx_int_t
ngx_http_zmq_trace_headers(ngx_http_request_t *r, amqp_table_entry_t *entries,
    ngx_uint_t *n, const char **bad)
{
    u_char                   *p;
    size_t                    len;
    ngx_str_t                 tp, ts, name;
    ngx_uint_t                i, k, ntp, nts, many;
    const char               *why;
    ngx_list_part_t          *part;
    ngx_table_elt_t          *h, *tsh[ZGW_TRACESTATE_MEMBERS_MAX];
    u_char                    random[24];
    ngx_http_zmq_loc_conf_t  *zlcf;

    /* the names are the gateway's: X-Zmq-Header-traceparent is refused */

    for (k = 0; k < *n; k++) {
        name.data = entries[k].key.bytes;
        name.len = entries[k].key.len;

        if (ngx_http_zmq_trace_is(&name, "traceparent", 11)
            || ngx_http_zmq_trace_is(&name, "tracestate", 10))
        {
            *bad = "the headers traceparent and tracestate are set from "
                   "the request's own traceparent and tracestate headers "
                   "(W3C Trace Context), not with X-Zmq-Header-";
            return NGX_DECLINED;
        }
    }

    ngx_str_null(&tp);
    ntp = 0;
    nts = 0;
    len = 0;
    many = 0;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }
            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (ngx_http_zmq_trace_is(&h[i].key, "traceparent", 11)) {
            ntp++;
            tp = h[i].value;

        } else if (ngx_http_zmq_trace_is(&h[i].key, "tracestate", 10)) {
            /* several lines are one list (RFC 9110 5.3), at most 32 */
            if (nts == ZGW_TRACESTATE_MEMBERS_MAX) {
                /* more lines than members: longer than any joined list */
                many = 1;
                continue;
            }
            tsh[nts++] = &h[i];
            len += h[i].value.len + 1;
        }
    }

    why = NULL;

    if (ntp > 1) {
        why = "is given more than once";

    } else if (ntp == 1) {
        why = zgw_traceparent_check((char *) tp.data, tp.len);
    }

    if (why != NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "zmq: traceparent dropped (and tracestate with it): "
                      "%s", why);
        ntp = 0;
    }

    ngx_str_null(&ts);

    if (ntp == 1 && nts > 0) {
        if (many) {
            why = "has more than 32 list members";

        } else if (len > ZGW_TRACESTATE_MAX + 1) {
            why = "is longer than 512 bytes";

        } else {
            p = ngx_pnalloc(r->pool, len);
            if (p == NULL) {
                return NGX_ERROR;
            }

            ts.data = p;

            for (k = 0; k < nts; k++) {
                if (k > 0) {
                    *p++ = ',';
                }
                p = ngx_cpymem(p, tsh[k]->value.data, tsh[k]->value.len);
            }

            ts.len = p - ts.data;
            why = zgw_tracestate_check((char *) ts.data, ts.len);
        }

        if (why != NULL) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "zmq: tracestate dropped: %s", why);
            ngx_str_null(&ts);
        }
    }

    if (ntp == 0) {
        zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);

        if (!zlcf->trace) {
            return NGX_OK;
        }

        /* a new trace; any tracestate belonged to another one */

        tp.data = ngx_pnalloc(r->pool, ZGW_TRACEPARENT_LEN);
        if (tp.data == NULL || RAND_bytes(random, sizeof(random)) != 1) {
            return NGX_ERROR;
        }

        zgw_traceparent_format((char *) tp.data, random);
        tp.len = ZGW_TRACEPARENT_LEN;
        ngx_str_null(&ts);
    }

    entries[*n].key.bytes = (void *) "traceparent";
    entries[*n].key.len = 11;
    entries[*n].value.kind = AMQP_FIELD_KIND_UTF8;
    entries[*n].value.value.bytes.bytes = tp.data;
    entries[*n].value.value.bytes.len = tp.len;
    (*n)++;

    if (ts.len) {
        entries[*n].key.bytes = (void *) "tracestate";
        entries[*n].key.len = 10;
        entries[*n].value.kind = AMQP_FIELD_KIND_UTF8;
        entries[*n].value.value.bytes.bytes = ts.data;
        entries[*n].value.value.bytes.len = ts.len;
        (*n)++;
    }

    return NGX_OK;
}
