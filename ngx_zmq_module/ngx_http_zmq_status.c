
/*
 * ngx_http_zmq_module: zmq_status, the module's state as JSON (the
 * configuration read at start, and per worker its configuration version
 * and its broker connections' counters from shared memory).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_zmq_fleet.h"
#include "ngx_http_zmq_module.h"


static char *ngx_http_zmq_outconn_name(ngx_http_request_t *r,
    ngx_zmq_amqp_stats_t *st);
static void ngx_http_zmq_status_link(json_t *o,
    ngx_zmq_amqp_stats_t *st);


/*
 * The key of an outgoing connection in status: its whole name (the field
 * in shared memory holds any name the model accepts), copied, bounded by
 * the field, since another worker may rewrite the slot meanwhile. A
 * replaced connection that still drains its confirms shares its name with
 * the connection that replaced it: "<name> (draining, generation N)", N
 * the worker's count of connections opened when this one was. Stable
 * while it drains, never reused in the worker, and no address.
 */

static char *
ngx_http_zmq_outconn_name(ngx_http_request_t *r,
    ngx_zmq_amqp_stats_t *st)
{
    u_char  *p;
    size_t   len;

    len = NGX_HTTP_ZMQ_NAME_LEN + sizeof(" (draining, generation )") - 1
          + NGX_ATOMIC_T_LEN + 1;

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NULL;
    }

    if (st->draining) {
        ngx_snprintf(p, len, "%*s (draining, generation %uA)%Z",
                     ngx_strnlen(st->name, NGX_HTTP_ZMQ_NAME_LEN - 1),
                     st->name, st->generation);

    } else {
        ngx_snprintf(p, len, "%*s%Z",
                     ngx_strnlen(st->name, NGX_HTTP_ZMQ_NAME_LEN - 1),
                     st->name);
    }

    return (char *) p;
}


/*
 * "tls": "TLSv1.3" and "verified" while connected over TLS; "last_error"
 * while not ready. Another worker may rewrite the fields meanwhile: each
 * is read within its bounds.
 */
static void
ngx_http_zmq_status_link(json_t *o, ngx_zmq_amqp_stats_t *st)
{
    size_t  len;

    if (o == NULL) {
        return;
    }

    len = ngx_strnlen(st->tls, sizeof(st->tls) - 1);
    if (len) {
        json_object_set_new(o, "tls", json_stringn((char *) st->tls, len));
        json_object_set_new(o, "verified", json_boolean(st->verified));
    }

    len = ngx_strnlen(st->last_error, sizeof(st->last_error) - 1);
    if (len) {
        json_object_set_new(o, "last_error",
                            json_stringn((char *) st->last_error, len));
    }
}


/* the configuration source's state, as zmq_status and the fleet name it */
const char *
ngx_http_zmq_source_state(ngx_uint_t state)
{
    switch (state) {
    case NGX_HTTP_ZMQ_SRC_LOADED:
        return "connected";
    case NGX_HTTP_ZMQ_SRC_STALE:
        return "stale";
    case NGX_HTTP_ZMQ_SRC_WAITING:
        return "waiting";
    case NGX_HTTP_ZMQ_SRC_REGRESSED:
        return "regressed";
    default:
        return "none";
    }
}


ngx_int_t
ngx_http_zmq_status_handler(ngx_http_request_t *r)
{
    json_t     *doc;
    ngx_int_t   rc;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    doc = ngx_http_zmq_status_doc(r);
    if (doc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_zmq_send_doc(r, NGX_HTTP_OK, doc);
}


/* the zmq_status document, or NULL */
json_t *
ngx_http_zmq_status_doc(ngx_http_request_t *r)
{
    int                            k;
    char                          *name;
    json_t                        *doc, *cfg, *objs, *workers, *w, *ocs,
                                  *o, *stomp, *fleet;
    ngx_uint_t                     i, s;
    ngx_http_zmq_main_conf_t      *zmcf;
    ngx_zmq_amqp_stats_t          *st;
    ngx_http_zmq_worker_stats_t   *ws;

    zmcf = ngx_http_get_module_main_conf(r, ngx_http_zmq_module);

    doc = json_object();
    if (doc == NULL) {
        return NULL;
    }

    json_object_set_new(doc, "module", json_string("ngx_zmq"));
    json_object_set_new(doc, "version", json_string(ZGW_VERSION));
    json_object_set_new(doc, "pid", json_integer(ngx_pid));

    if (zmcf->type == 0) {
        json_object_set_new(doc, "config", json_null());
        return doc;
    }

    cfg = json_object();
    objs = json_object();

    json_object_set_new(cfg, "source", json_stringn((char *) zmcf->source.data,
                                                    zmcf->source.len));

    if (zmcf->type == NGX_HTTP_ZMQ_SOURCE_FILE) {
        json_object_set_new(cfg, "path", json_stringn((char *) zmcf->path.data,
                                                      zmcf->path.len));
        json_object_set_new(cfg, "state", json_string("loaded"));
        json_object_set_new(cfg, "version", json_integer(zmcf->mtime));
        json_object_set_new(cfg, "loaded_at", json_integer(zmcf->loaded));

        for (k = 0; k < ZGW_KIND_MAX; k++) {
            json_object_set_new(objs, zgw_kind_name(k),
                                json_integer(zgw_config_count(zmcf->cfg, k)));
        }

        json_object_set_new(cfg, "objects", objs);

    } else {
        json_decref(objs);
    }

    json_object_set_new(doc, "config", cfg);

    /* per worker: its configuration and its outgoing connections */

    workers = json_array();

    for (s = 0; zmcf->stats != NULL && s < zmcf->slots; s++) {
        ws = &zmcf->stats[s];

        if (ws->pid == 0) {
            continue;
        }

        w = json_object();
        ocs = json_object();
        json_object_set_new(w, "worker", json_integer(s));
        json_object_set_new(w, "pid", json_integer(ws->pid));
        json_object_set_new(w, "config_version",
                            json_integer((json_int_t) ws->version));

        if (zmcf->type == NGX_HTTP_ZMQ_SOURCE_REDIS) {
            json_object_set_new(w, "source_state",
                                json_string(ngx_http_zmq_source_state(
                                                ws->state)));
            json_object_set_new(w, "since",
                                json_integer((json_int_t) ws->since));
            if (ws->state == NGX_HTTP_ZMQ_SRC_LOADED
                || ws->state == NGX_HTTP_ZMQ_SRC_REGRESSED)
            {
                json_object_set_new(w, "store_version",
                                    json_integer((json_int_t)
                                                 ws->store_version));
            }
            if (ws->error[0]) {
                json_object_set_new(w, "error",
                                    json_string((char *) ws->error));
            }
        }

        for (i = 0; i < NGX_HTTP_ZMQ_OUTCONNS_MAX; i++) {
            st = &ws->outconns[i];
            if (!st->used) {
                continue;
            }

            o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
                          "s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
                          "state",
                          st->draining ? "draining"
                          : ngx_zmq_amqp_state_name(st->state),
                          "inflight", (json_int_t) st->inflight,
                          "published", (json_int_t) st->published,
                          "confirmed", (json_int_t) st->confirmed,
                          "nacked", (json_int_t) st->nacked,
                          "returned", (json_int_t) st->returned,
                          "timed_out", (json_int_t) st->timed_out,
                          "lost", (json_int_t) st->lost,
                          "rejected", (json_int_t) st->rejected,
                          "reconnects", (json_int_t) st->reconnects,
                          /* request/reply (rpc and invoke services) */
                          "rpc_requests", (json_int_t) st->rpc_requests,
                          "rpc_waiting", (json_int_t) st->rpc_waiting,
                          "rpc_replies", (json_int_t) st->rpc_replies,
                          "rpc_timeouts", (json_int_t) st->rpc_timeouts,
                          "rpc_late", (json_int_t) st->rpc_late,
                          "rpc_bad", (json_int_t) st->rpc_bad,
                          "rpc_lost", (json_int_t) st->rpc_lost);

            /* TLS, and why the last attempt or connection ended */
            ngx_http_zmq_status_link(o, st);

            name = ngx_http_zmq_outconn_name(r, st);
            if (name == NULL) {
                json_decref(o);
                goto failed;
            }

            /* steals o, also when it fails; fails when o is NULL */
            if (json_object_set_new(ocs, name, o) != 0) {
                goto failed;
            }
        }

        json_object_set_new(w, "outconns", ocs);
        ocs = NULL;

        /* STOMP outgoing connections: the same counters (PROTO16) */

        stomp = json_object();
        json_object_set_new(w, "stomp", stomp);

        for (i = 0; i < NGX_HTTP_ZMQ_OUTCONNS_MAX; i++) {
            st = &ws->stomp[i];
            if (!st->used) {
                continue;
            }

            o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
                          "state",
                          st->draining ? "draining"
                          : ngx_zmq_amqp_state_name(st->state),
                          "inflight", (json_int_t) st->inflight,
                          "published", (json_int_t) st->published,
                          "confirmed", (json_int_t) st->confirmed,
                          "nacked", (json_int_t) st->nacked,
                          "timed_out", (json_int_t) st->timed_out,
                          "lost", (json_int_t) st->lost,
                          "rejected", (json_int_t) st->rejected,
                          "reconnects", (json_int_t) st->reconnects);

            /* TLS, and why the last attempt or connection ended */
            ngx_http_zmq_status_link(o, st);

            name = ngx_http_zmq_outconn_name(r, st);
            if (name == NULL) {
                json_decref(o);
                goto failed;
            }

            if (json_object_set_new(stomp, name, o) != 0) {
                goto failed;
            }
        }

        json_array_append_new(workers, w);
    }

    json_object_set_new(doc, "workers", workers);

    /* every gateway and zmqd following the same store, as last read */
    fleet = ngx_http_zmq_fleet_doc();
    if (fleet != NULL) {
        json_object_set_new(doc, "fleet", fleet);
    }

    return doc;

failed:

    json_decref(ocs);
    json_decref(w);
    json_decref(workers);
    json_decref(doc);

    return NULL;
}
