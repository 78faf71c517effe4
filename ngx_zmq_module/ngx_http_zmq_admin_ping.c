
/*
 * ngx_http_zmq_module: the admin API's ping (POST api/KIND/NAME/ping).
 *
 * amqp_def: a fresh connection through the module's own AMQP client (a
 * probe, ngx_zmq_amqp.c), the handshake up to channel.open, then closed;
 * bounded by zmq_amqp_connect_timeout. stomp_def: the same through the
 * module's STOMP client (ngx_zmq_stomp.c), CONNECT up to CONNECTED, then
 * DISCONNECT; the same bound. http_outconn: a TCP connection to
 * the url's host and port, and for https the TLS handshake (the certificate
 * and host name verified when the outconn's tls is true); bounded by the
 * outconn's timeout. Nothing here blocks: names are never resolved in a
 * worker, only looked up among those NGINX resolved when it read its
 * configuration.
 *
 * Both answer 200: {"ok": true, "ms": 3.2, "address": "...", ...} or
 * {"ok": false, "error": "...", ...}. The request waits (r->main->count++)
 * for the answer; what it waits on (the probe, the peer connection and the
 * timer) is torn down by the request's pool cleanup when the client goes
 * away first, and the probe's callback reaches the request only through
 * that context, which the cleanup detaches.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>

#include <time.h>

#include "zgw_hostport.h"
#include "ngx_http_zmq_admin.h"


typedef struct {
    ngx_http_request_t          *request;
    struct timespec              start;
    ngx_str_t                    address;     /* the peer, for the answer */

    /* amqp_def, stomp_def: NULL once answered */
    ngx_zmq_amqp_conn_t         *probe;
    ngx_zmq_stomp_conn_t        *stomp;

    /* http_outconn */
    ngx_peer_connection_t        peer;        /* connection NULL: closed */
    ngx_event_t                  timer;
    ngx_msec_t                   timeout;
    ngx_flag_t                   https;
    ngx_flag_t                   verify;
    zgw_hostport_t               hp;
#if (NGX_SSL)
    ngx_ssl_t                   *ssl;
#endif
    unsigned                     answered:1;
} ngx_http_zmq_ping_t;


/* what an amqp_def ping and a stomp_def ping share: ngx_http_zmq_ping_def */
typedef struct {
    ngx_http_zmq_tls_conf_t      tc;
    ngx_str_t                    name;        /* "ping:NAME" */
    ngx_addr_t                  *addrs;
    ngx_uint_t                   naddrs;
    ngx_str_t                   *hosts;       /* the names TLS checks */
    ngx_str_t                    secret;      /* malloc()ed; NULL: none */
    ngx_int_t                    rc;          /* the handler's answer */
} ngx_http_zmq_ping_def_t;


static ngx_int_t ngx_http_zmq_ping_def(ngx_http_request_t *r,
    ngx_http_zmq_ping_t *ping, json_t *def, int kind, const char *name,
    in_port_t port, const char *field, ngx_http_zmq_ping_def_t *pd);
static ngx_int_t ngx_http_zmq_ping_started(ngx_http_request_t *r,
    ngx_http_zmq_ping_def_t *pd, void *probe);
static void ngx_http_zmq_ping_probed(ngx_http_zmq_ping_t *ping,
    ngx_int_t rc, ngx_str_t *address, ngx_str_t *error, ngx_str_t *tls,
    ngx_flag_t verified, json_t *server);
static ngx_int_t ngx_http_zmq_ping_amqp(ngx_http_request_t *r,
    ngx_http_zmq_ping_t *ping, json_t *def, const char *name);
static void ngx_http_zmq_ping_amqp_done(void *data,
    ngx_zmq_amqp_probe_result_t *res);
static ngx_int_t ngx_http_zmq_ping_stomp(ngx_http_request_t *r,
    ngx_http_zmq_ping_t *ping, json_t *def, const char *name);
static void ngx_http_zmq_ping_stomp_done(void *data,
    ngx_zmq_stomp_probe_result_t *res);
static ngx_int_t ngx_http_zmq_ping_def_addrs(ngx_http_request_t *r,
    json_t *def, in_port_t port, ngx_addr_t **addrs, ngx_uint_t *naddrs,
    ngx_str_t **hosts, u_char *why, size_t size);
static ngx_int_t ngx_http_zmq_ping_http(ngx_http_request_t *r,
    ngx_http_zmq_ping_t *ping, json_t *oc);
static void ngx_http_zmq_ping_http_handler(ngx_event_t *ev);
static void ngx_http_zmq_ping_timeout(ngx_event_t *ev);
static void ngx_http_zmq_ping_http_connected(ngx_http_zmq_ping_t *ping);
#if (NGX_SSL)
static ngx_ssl_t *ngx_http_zmq_ping_ssl_ctx(ngx_flag_t verify);
static void ngx_http_zmq_ping_ssl_done(ngx_connection_t *c);
#endif
static void ngx_http_zmq_ping_http_close(ngx_http_zmq_ping_t *ping);
static void ngx_http_zmq_ping_cleanup(void *data);
static ngx_int_t ngx_http_zmq_ping_addr(ngx_http_request_t *r,
    zgw_hostport_t *hp, ngx_addr_t **addrs, ngx_uint_t *naddrs);
static json_t *ngx_http_zmq_ping_failed(ngx_http_zmq_ping_t *ping,
    const char *fmt, ...);
static ngx_int_t ngx_http_zmq_ping_wait(ngx_http_request_t *r);
static void ngx_http_zmq_ping_answer(ngx_http_zmq_ping_t *ping,
    json_t *doc);
static double ngx_http_zmq_ping_ms(ngx_http_zmq_ping_t *ping);


#if (NGX_SSL)

/*
 * The worker's TLS client contexts (verifying, not verifying), made on
 * first use and freed with the cycle's pool: loading the system's
 * authorities costs some 20 ms of CPU, which must not be spent on the
 * event loop for each ping. What differs per ping (the host to verify) is
 * set on its connection.
 */
static ngx_ssl_t    *ngx_http_zmq_ping_ssls[2];
static ngx_cycle_t  *ngx_http_zmq_ping_ssl_cycle;

#endif


ngx_int_t
ngx_http_zmq_admin_ping(ngx_http_request_t *r, ngx_http_zmq_admin_req_t *ar)
{
    json_t                  *obj;
    ngx_pool_cleanup_t      *cln;
    ngx_http_zmq_ping_t     *ping;
    ngx_http_zmq_runtime_t  *rt;

    rt = ngx_http_zmq_runtime_current();

    if (rt == NULL || rt->cfg == NULL) {
        return ngx_http_zmq_admin_fail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       "service_unavailable", "this worker "
                                       "runs no configuration yet");
    }

    obj = NULL;

    if (ar->name != NULL && zgw_name_valid(ar->name)) {
        obj = zgw_config_get(rt->cfg, ar->kind, ar->name);
    }

    if (obj == NULL) {
        return ngx_http_zmq_admin_fail(r, NGX_HTTP_NOT_FOUND, "not_found",
                                       "no %s of that name in the "
                                       "configuration this worker runs",
                                       zgw_kind_name(ar->kind));
    }

    ping = ngx_pcalloc(r->pool, sizeof(ngx_http_zmq_ping_t));
    if (ping == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ping->request = r;

    /* whatever the ping holds goes with the request */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_zmq_ping_cleanup;
    cln->data = ping;

    (void) clock_gettime(CLOCK_MONOTONIC, &ping->start);

    if (ar->kind == ZGW_KIND_AMQP_DEF) {
        return ngx_http_zmq_ping_amqp(r, ping, obj, ar->name);
    }

    if (ar->kind == ZGW_KIND_STOMP_DEF) {
        return ngx_http_zmq_ping_stomp(r, ping, obj, ar->name);
    }

    return ngx_http_zmq_ping_http(r, ping, obj);
}


/*
 * What a ping of an amqp_def and of a stomp_def share before the probe:
 * TLS as the outgoing connections have it (the context shared with
 * theirs, made when the configuration was applied, held by the request's
 * pool), the connection's name "ping:NAME" (in the log, and in the
 * broker's list), the addresses as the runtime lists them (port: the
 * protocol's default), and the secret field (password, passcode) opened
 * with the module's key as for publishing. Not NGX_OK: pd->rc is the
 * handler's answer (a failed ping, or an error).
 */
static ngx_int_t
ngx_http_zmq_ping_def(ngx_http_request_t *r, ngx_http_zmq_ping_t *ping,
    json_t *def, int kind, const char *name, in_port_t port,
    const char *field, ngx_http_zmq_ping_def_t *pd)
{
    char                      *secret;
    u_char                     why[400];
    json_t                    *v, *failed;
    ngx_int_t                  rc;
    const char                *kname;
    zgw_errors_t               errs;
    ngx_http_zmq_main_conf_t  *zmcf;

    zmcf = ngx_http_get_module_main_conf(r, ngx_http_zmq_module);
    kname = zgw_kind_name(kind);

    ngx_memzero(pd, sizeof(ngx_http_zmq_ping_def_t));

    pd->rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    if (ngx_http_zmq_runtime_tls(r->pool, def, &pd->tc, r->connection->log)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (pd->tc.tls && pd->tc.ctx == NULL) {
        failed = ngx_http_zmq_ping_failed(ping, "%s '%s': TLS: %V", kname,
                                          name, &pd->tc.error);
        goto failed;
    }

    pd->name.len = sizeof("ping:") - 1 + ngx_strlen(name);
    pd->name.data = ngx_pnalloc(r->pool, pd->name.len);
    if (pd->name.data == NULL) {
        return NGX_ERROR;
    }
    ngx_sprintf(pd->name.data, "ping:%s", name);

    v = json_object_get(def, "port");
    if (json_is_integer(v)) {
        port = (in_port_t) json_integer_value(v);
    }

    rc = ngx_http_zmq_ping_def_addrs(r, def, port, &pd->addrs, &pd->naddrs,
                                     &pd->hosts, why, sizeof(why));
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        failed = ngx_http_zmq_ping_failed(ping, "%s '%s': %s", kname, name,
                                          why);
        goto failed;
    }

    v = json_object_get(def, field);

    if (v == NULL) {
        return NGX_OK;
    }

    if (json_is_object(v) && !zmcf->has_key) {
        failed = ngx_http_zmq_ping_failed(ping, "%s '%s': the %s is sealed "
                                          "and no zmq_key_file is set",
                                          kname, name, field);
        goto failed;
    }

    zgw_errors_init(&errs);

    secret = zgw_object_secret(kind, def, field,
                               zmcf->has_key ? &zmcf->key : NULL, &errs);
    if (secret == NULL) {
        failed = ngx_http_zmq_ping_failed(ping, "%s '%s': the %s does not "
                                          "open: %s", kname, name, field,
                                          errs.n ? zgw_errors_first(&errs)
                                                 : "unknown");
        zgw_errors_free(&errs);
        goto failed;
    }

    zgw_errors_free(&errs);

    pd->secret.data = (u_char *) secret;
    pd->secret.len = ngx_strlen(secret);

    return NGX_OK;

failed:

    pd->rc = ngx_http_zmq_send_doc(r, NGX_HTTP_OK, failed);

    return NGX_DECLINED;
}


/* the probe is started (NULL: it is not): the request waits for it */
static ngx_int_t
ngx_http_zmq_ping_started(ngx_http_request_t *r, ngx_http_zmq_ping_def_t *pd,
    void *probe)
{
    /* the probe has its own copy */
    if (pd->secret.data != NULL) {
        ngx_explicit_memzero(pd->secret.data, pd->secret.len);
        free(pd->secret.data);
        pd->secret.data = NULL;
    }

    if (probe == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_zmq_ping_wait(r);
}


/*
 * A probe's result, answered as amqp_def and stomp_def share it: the
 * address tried last, and the failure, or {"ok": true, "ms": ...} with
 * "tls" and "verified" over TLS and the server (NULL: none), which is the
 * answer's either way
 */
static void
ngx_http_zmq_ping_probed(ngx_http_zmq_ping_t *ping, ngx_int_t rc,
    ngx_str_t *address, ngx_str_t *error, ngx_str_t *tls,
    ngx_flag_t verified, json_t *server)
{
    json_t  *doc;

    if (address->len) {
        ping->address.data = ngx_pstrdup(ping->request->pool, address);
        if (ping->address.data != NULL) {
            ping->address.len = address->len;
        }
    }

    if (rc != NGX_OK) {
        json_decref(server);
        ngx_http_zmq_ping_answer(ping,
                                 ngx_http_zmq_ping_failed(ping, "%V", error));
        return;
    }

    if (tls->len) {
        doc = json_pack("{s:b, s:f, s:s%, s:b, s:o*}", "ok", 1,
                        "ms", ngx_http_zmq_ping_ms(ping),
                        "tls", (char *) tls->data, tls->len,
                        "verified", verified ? 1 : 0,
                        "server", server);

    } else {
        doc = json_pack("{s:b, s:f, s:o*}", "ok", 1,
                        "ms", ngx_http_zmq_ping_ms(ping), "server", server);
    }

    ngx_http_zmq_ping_answer(ping, doc);
}


/* amqp_def */

static ngx_int_t
ngx_http_zmq_ping_amqp(ngx_http_request_t *r, ngx_http_zmq_ping_t *ping,
    json_t *def, const char *name)
{
    json_t                       *v;
    ngx_http_zmq_worker_t        *w;
    ngx_http_zmq_ping_def_t       pd;
    ngx_http_zmq_outconn_conf_t   oc;

    if (ngx_http_zmq_ping_def(r, ping, def, ZGW_KIND_AMQP_DEF, name, 5672,
                              "password", &pd)
        != NGX_OK)
    {
        return pd.rc;
    }

    w = ngx_http_zmq_worker();

    ngx_memzero(&oc, sizeof(ngx_http_zmq_outconn_conf_t));

    oc.name = pd.name;
    oc.def_name.data = (u_char *) name;
    oc.def_name.len = ngx_strlen(name);
    oc.active = 1;
    oc.tls = pd.tc.tls;
    oc.tls_ctx = pd.tc.ctx;
    oc.server_name = pd.tc.server_name;
    oc.addrs = pd.addrs;
    oc.naddrs = pd.naddrs;
    oc.tls_hosts = pd.hosts;
    oc.password = pd.secret;

#define ngx_http_zmq_ping_str(field, dflt)                                    \
    v = json_object_get(def, #field);                                         \
    oc.field.data = (u_char *) (json_is_string(v) ? json_string_value(v)      \
                                                  : dflt);                    \
    oc.field.len = json_is_string(v) ? json_string_length(v)                 \
                                     : sizeof(dflt) - 1;

    ngx_http_zmq_ping_str(vhost, "/");
    ngx_http_zmq_ping_str(username, "guest");

#undef ngx_http_zmq_ping_str

    v = json_object_get(def, "heartbeat");
    oc.heartbeat = json_is_integer(v) ? (ngx_uint_t) json_integer_value(v)
                                      : 30;
    v = json_object_get(def, "frame_max");
    oc.frame_max = json_is_integer(v) ? (ngx_uint_t) json_integer_value(v)
                                      : 131072;
    oc.max_inflight = 1;

    ping->probe = ngx_zmq_amqp_probe(&w->amqp, &oc,
                                     ngx_http_zmq_ping_amqp_done, ping,
                                     ngx_cycle->log);

    return ngx_http_zmq_ping_started(r, &pd, ping->probe);
}


static void
ngx_http_zmq_ping_amqp_done(void *data, ngx_zmq_amqp_probe_result_t *res)
{
    ngx_http_zmq_ping_t  *ping = data;

    json_t  *server;

    ping->probe = NULL;             /* it frees itself once this returns */

    /* connection.start's product and version */

    server = json_object();
    if (server != NULL && res->product.len) {
        json_object_set_new(server, "product",
                            json_stringn((char *) res->product.data,
                                         res->product.len));
    }
    if (server != NULL && res->version.len) {
        json_object_set_new(server, "version",
                            json_stringn((char *) res->version.data,
                                         res->version.len));
    }

    ngx_http_zmq_ping_probed(ping, res->rc, &res->address, &res->error,
                             &res->tls, res->verified, server);
}


/* stomp_def */

static ngx_int_t
ngx_http_zmq_ping_stomp(ngx_http_request_t *r, ngx_http_zmq_ping_t *ping,
    json_t *def, const char *name)
{
    json_t                   *v;
    ngx_zmq_stomp_conf_t      sc;
    ngx_http_zmq_worker_t    *w;
    ngx_http_zmq_ping_def_t   pd;

    if (ngx_http_zmq_ping_def(r, ping, def, ZGW_KIND_STOMP_DEF, name, 61613,
                              "passcode", &pd)
        != NGX_OK)
    {
        return pd.rc;
    }

    w = ngx_http_zmq_worker();

    ngx_memzero(&sc, sizeof(ngx_zmq_stomp_conf_t));

    sc.name = pd.name;
    sc.def_name.data = (u_char *) name;
    sc.def_name.len = ngx_strlen(name);
    sc.active = 1;
    sc.tls = pd.tc.tls;
    sc.tls_ctx = pd.tc.ctx;
    sc.server_name = pd.tc.server_name;
    sc.addrs = pd.addrs;
    sc.naddrs = pd.naddrs;
    sc.tls_hosts = pd.hosts;
    sc.passcode = pd.secret;
    sc.max_inflight = 1;
    sc.priority = -1;
    sc.expires = -1;

    /* as the runtime: virtual_host, else the host as written */
    v = json_object_get(def, "virtual_host");
    if (!json_is_string(v)) {
        v = json_object_get(def, "host");
    }
    if (json_is_string(v)) {
        sc.vhost.data = (u_char *) json_string_value(v);
        sc.vhost.len = json_string_length(v);
    }

    v = json_object_get(def, "login");
    if (json_is_string(v)) {
        sc.login.data = (u_char *) json_string_value(v);
        sc.login.len = json_string_length(v);
    }

    ping->stomp = ngx_zmq_stomp_probe(&w->stomp, &sc,
                                      ngx_http_zmq_ping_stomp_done, ping,
                                      ngx_cycle->log);

    return ngx_http_zmq_ping_started(r, &pd, ping->stomp);
}


static void
ngx_http_zmq_ping_stomp_done(void *data, ngx_zmq_stomp_probe_result_t *res)
{
    ngx_http_zmq_ping_t  *ping = data;

    u_char  *slash;
    json_t  *server;

    ping->stomp = NULL;             /* it frees itself once this returns */

    /* CONNECTED's "server:name/version" (STOMP 1.2), as the AMQP ping's */

    server = NULL;

    if (res->server.len) {
        server = json_object();
        slash = ngx_strlchr(res->server.data,
                            res->server.data + res->server.len, '/');

        if (server != NULL && slash != NULL) {
            json_object_set_new(server, "product",
                                json_stringn((char *) res->server.data,
                                             slash - res->server.data));
            json_object_set_new(server, "version",
                                json_stringn((char *) slash + 1,
                                             res->server.data
                                             + res->server.len - slash - 1));

        } else if (server != NULL) {
            json_object_set_new(server, "product",
                                json_stringn((char *) res->server.data,
                                             res->server.len));
        }
    }

    ngx_http_zmq_ping_probed(ping, res->rc, &res->address, &res->error,
                             &res->tls, res->verified, server);
}


/*
 * A definition's addresses, as the runtime lists them: host:port, then
 * each of hosts (at most 8 addresses of a name each). NGX_DECLINED: why
 * says which host does not parse, or was not resolved when NGINX read its
 * configuration (names are never resolved in a worker).
 */
static ngx_int_t
ngx_http_zmq_ping_def_addrs(ngx_http_request_t *r, json_t *def,
    in_port_t port, ngx_addr_t **addrsp, ngx_uint_t *naddrsp,
    ngx_str_t **hostsp, u_char *why, size_t size)
{
    size_t           i, n;
    json_t          *h;
    ngx_int_t        rc;
    ngx_str_t       *hosts, host;
    ngx_uint_t       k, naddrs;
    ngx_addr_t      *addrs, *a;
    zgw_errors_t     errs;
    zgw_hostport_t   hp;

    n = 1 + json_array_size(json_object_get(def, "hosts"));
    addrs = ngx_palloc(r->pool, n * 8 * sizeof(ngx_addr_t));
    hosts = ngx_palloc(r->pool, n * 8 * sizeof(ngx_str_t));
    if (addrs == NULL || hosts == NULL) {
        return NGX_ERROR;
    }

    naddrs = 0;
    zgw_errors_init(&errs);

    for (i = 0; i < n; i++) {
        if (i == 0) {
            h = json_object_get(def, "host");
            rc = zgw_host_parse(&hp, json_is_string(h) ? json_string_value(h)
                                                       : "127.0.0.1",
                                json_is_string(h) ? json_string_length(h)
                                                  : 9,
                                "host", &errs);
            hp.port = port;

        } else {
            h = json_array_get(json_object_get(def, "hosts"), i - 1);
            rc = json_is_string(h)
                 ? zgw_hostport_parse(&hp, json_string_value(h),
                                      json_string_length(h), port, "hosts",
                                      &errs)
                 : ZGW_ERROR;
        }

        if (rc != ZGW_OK) {
            *ngx_snprintf(why, size - 1, "%s",
                          errs.n ? zgw_errors_first(&errs)
                                 : "a host is not a string") = '\0';
            zgw_errors_free(&errs);
            return NGX_DECLINED;
        }

        rc = ngx_http_zmq_ping_addr(r, &hp, &a, &k);

        if (rc == NGX_ERROR) {
            zgw_errors_free(&errs);
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            zgw_errors_free(&errs);
            *ngx_snprintf(why, size - 1, "host '%s' was not resolved when "
                          "NGINX read its configuration, and names are "
                          "never resolved in a worker (it would block): use "
                          "an IP address, or reload NGINX", hp.host) = '\0';
            return NGX_DECLINED;
        }

        k = ngx_min(k, 8);
        ngx_memcpy(&addrs[naddrs], a, k * sizeof(ngx_addr_t));

        /* the name TLS checks for these addresses: the host as written */
        host.len = ngx_strlen(hp.host);
        host.data = ngx_pnalloc(r->pool, host.len + 1);
        if (host.data == NULL) {
            zgw_errors_free(&errs);
            return NGX_ERROR;
        }
        ngx_memcpy(host.data, hp.host, host.len + 1);

        while (k--) {
            hosts[naddrs++] = host;
        }
    }

    zgw_errors_free(&errs);

    *addrsp = addrs;
    *naddrsp = naddrs;

    if (hostsp != NULL) {
        *hostsp = hosts;
    }

    return NGX_OK;
}


/* http_outconn */

static ngx_int_t
ngx_http_zmq_ping_http(ngx_http_request_t *r, ngx_http_zmq_ping_t *ping,
    json_t *oc)
{
    u_char             text[NGX_MAX_ERROR_STR], *p;
    size_t             len;
    json_t            *v;
    ngx_err_t          err;
    ngx_int_t          rc;
    ngx_uint_t         naddrs;
    ngx_addr_t        *addrs;
    const char        *url, *rest;
    zgw_errors_t       errs;
    ngx_connection_t  *c;

    url = json_string_value(json_object_get(oc, "url"));

    if (url == NULL || (ngx_strncmp(url, "http://", 7) != 0
                        && ngx_strncmp(url, "https://", 8) != 0))
    {
        return ngx_http_zmq_send_doc(r, NGX_HTTP_OK,
                   ngx_http_zmq_ping_failed(ping, "the url is not http:// "
                                            "or https://"));
    }

    ping->https = ngx_strncmp(url, "https://", 8) == 0;
    ping->verify = json_is_true(json_object_get(oc, "tls"));

    v = json_object_get(oc, "timeout");
    ping->timeout = json_is_integer(v) && json_integer_value(v) > 0
                    ? (ngx_msec_t) json_integer_value(v) : 10000;

    /* the authority, by the one host:port parser */

    rest = url + (ping->https ? 8 : 7);
    len = strcspn(rest, "/?#");

    zgw_errors_init(&errs);

    if (zgw_hostport_parse(&ping->hp, rest, len, ping->https ? 443 : 80,
                           "url host", &errs)
        != ZGW_OK)
    {
        rc = ngx_http_zmq_send_doc(r, NGX_HTTP_OK,
                 ngx_http_zmq_ping_failed(ping, "%s",
                                          zgw_errors_first(&errs)));
        zgw_errors_free(&errs);
        return rc;
    }

    zgw_errors_free(&errs);

#if !(NGX_SSL)
    if (ping->https) {
        return ngx_http_zmq_send_doc(r, NGX_HTTP_OK,
                   ngx_http_zmq_ping_failed(ping, "https: this NGINX is "
                                            "built without SSL"));
    }
#endif

    rc = ngx_http_zmq_ping_addr(r, &ping->hp, &addrs, &naddrs);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_zmq_send_doc(r, NGX_HTTP_OK,
                   ngx_http_zmq_ping_failed(ping, "host '%s' is a name, and "
                       "names are never resolved in a worker (it would "
                       "block); only amqp_def hosts are resolved, when "
                       "NGINX reads its configuration: use an IP address",
                       ping->hp.host));
    }

    ping->address = addrs[0].name;

    ping->peer.sockaddr = addrs[0].sockaddr;
    ping->peer.socklen = addrs[0].socklen;
    ping->peer.name = &ping->address;
    ping->peer.get = ngx_event_get_peer;
    ping->peer.log = ngx_cycle->log;
    ping->peer.log_error = NGX_ERROR_INFO;

    rc = ngx_event_connect_peer(&ping->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        err = ngx_socket_errno;
        p = err ? ngx_strerror(err, text, sizeof(text) - 1)
                : ngx_cpymem(text, "no socket", 9);
        *p = '\0';

        /* ngx_event_connect_peer() closed what it opened */
        ping->peer.connection = NULL;
        return ngx_http_zmq_send_doc(r, NGX_HTTP_OK,
                   ngx_http_zmq_ping_failed(ping, "connect() failed: %s",
                                            text));
    }

    c = ping->peer.connection;
    c->data = ping;
    c->pool = r->pool;          /* closed by the request's cleanup first */
    c->read->handler = ngx_http_zmq_ping_http_handler;
    c->write->handler = ngx_http_zmq_ping_http_handler;
    c->log = ngx_cycle->log;
    c->read->log = c->log;
    c->write->log = c->log;

    ping->timer.handler = ngx_http_zmq_ping_timeout;
    ping->timer.data = ping;
    ping->timer.log = ngx_cycle->log;

    /* not cancelable: a graceful shutdown answers the ping first */
    ping->timer.cancelable = 0;

    ngx_add_timer(&ping->timer, ping->timeout);

    if (rc == NGX_OK) {
        /* connected at once: go on from the event loop */
        ngx_post_event(c->write, &ngx_posted_events);
    }

    return ngx_http_zmq_ping_wait(r);
}


static void
ngx_http_zmq_ping_http_handler(ngx_event_t *ev)
{
    int                   err;
    u_char                text[NGX_MAX_ERROR_STR], *p;
    socklen_t             len;
    ngx_connection_t     *c = ev->data;
    ngx_http_zmq_ping_t  *ping = c->data;

    if (ping->answered) {
        return;
    }

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        p = ngx_strerror(err, text, sizeof(text) - 1);
        *p = '\0';
        ngx_http_zmq_ping_answer(ping,
            ngx_http_zmq_ping_failed(ping, "connect() failed: %s", text));
        return;
    }

    if (!ev->write) {
        return;             /* nothing to read before it is connected */
    }

    ngx_http_zmq_ping_http_connected(ping);
}


static void
ngx_http_zmq_ping_http_connected(ngx_http_zmq_ping_t *ping)
{
#if (NGX_SSL)
    u_char             *host;
    ngx_int_t           rc;
    ngx_connection_t   *c;
    X509_VERIFY_PARAM  *param;

    if (!ping->https) {
        goto done;
    }

    c = ping->peer.connection;

    ping->ssl = ngx_http_zmq_ping_ssl_ctx(ping->verify);
    if (ping->ssl == NULL) {
        goto failed;
    }

    /*
     * Verified against the system's authorities when tls is true (the
     * verifying context has them); the result is read after the handshake,
     * so that the answer says why.
     */

    if (ngx_ssl_create_connection(ping->ssl, c, NGX_SSL_CLIENT) != NGX_OK) {
        goto failed;
    }

    host = (u_char *) ping->hp.host;
    param = SSL_get0_param(c->ssl->connection);

    SSL_set_options(c->ssl->connection, SSL_OP_NO_RENEGOTIATION);

    if (ping->hp.kind == ZGW_HOST_IS_NAME) {
        (void) SSL_set_tlsext_host_name(c->ssl->connection, (char *) host);
        if (X509_VERIFY_PARAM_set1_host(param, (char *) host, 0) != 1) {
            goto failed;
        }

    } else if (X509_VERIFY_PARAM_set1_ip_asc(param, (char *) host) != 1) {
        goto failed;
    }

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = ngx_http_zmq_ping_ssl_done;
        return;
    }

    ngx_http_zmq_ping_ssl_done(c);
    return;

failed:

    ngx_http_zmq_ping_answer(ping,
        ngx_http_zmq_ping_failed(ping, "cannot set up TLS (see the error "
                                 "log)"));
    return;

done:
#endif

    ngx_http_zmq_ping_answer(ping,
        json_pack("{s:b, s:f}", "ok", 1, "ms", ngx_http_zmq_ping_ms(ping)));
}


#if (NGX_SSL)

static ngx_ssl_t *
ngx_http_zmq_ping_ssl_ctx(ngx_flag_t verify)
{
    ngx_ssl_t           *ssl;
    ngx_pool_cleanup_t  *cln;

    if (ngx_http_zmq_ping_ssl_cycle != ngx_cycle) {
        /* a new cycle (single process mode): the old pool freed them */
        ngx_http_zmq_ping_ssls[0] = NULL;
        ngx_http_zmq_ping_ssls[1] = NULL;
        ngx_http_zmq_ping_ssl_cycle = (ngx_cycle_t *) ngx_cycle;
    }

    verify = verify ? 1 : 0;

    if (ngx_http_zmq_ping_ssls[verify] != NULL) {
        return ngx_http_zmq_ping_ssls[verify];
    }

    ssl = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_ssl_t));
    cln = ngx_pool_cleanup_add(ngx_cycle->pool, 0);
    if (ssl == NULL || cln == NULL) {
        return NULL;
    }

    ssl->log = ngx_cycle->log;

    if (ngx_ssl_create(ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NULL;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = ssl;

    /* kept even so (made once): its pings then say what does not verify */
    if (verify && SSL_CTX_set_default_verify_paths(ssl->ctx) != 1) {
        ngx_ssl_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "zmq admin ping: SSL_CTX_set_default_verify_paths() "
                      "failed");
    }

    ngx_http_zmq_ping_ssls[verify] = ssl;

    ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                  "zmq admin ping: this worker's %s TLS client context is "
                  "made", verify ? "verifying" : "non-verifying");

    return ssl;
}


static void
ngx_http_zmq_ping_ssl_done(ngx_connection_t *c)
{
    long                  rc;
    X509                 *cert;
    json_t               *doc;
    ngx_http_zmq_ping_t  *ping = c->data;

    if (ping->answered) {
        return;
    }

    if (!c->ssl->handshaked) {
        ngx_http_zmq_ping_answer(ping,
            ngx_http_zmq_ping_failed(ping, "the TLS handshake failed (the "
                                     "error log has OpenSSL's reason)"));
        return;
    }

    rc = SSL_get_verify_result(c->ssl->connection);

    /* no certificate at all passes SSL_get_verify_result() */
    cert = SSL_get1_peer_certificate(c->ssl->connection);
    if (cert != NULL) {
        X509_free(cert);

    } else if (ping->verify) {
        ngx_http_zmq_ping_answer(ping,
            ngx_http_zmq_ping_failed(ping, "the server sent no "
                                     "certificate"));
        return;
    }

    if (ping->verify && rc != X509_V_OK) {
        ngx_http_zmq_ping_answer(ping,
            ngx_http_zmq_ping_failed(ping, "the server's certificate does "
                                     "not verify: %s",
                                     X509_verify_cert_error_string(rc)));
        return;
    }

    doc = json_pack("{s:b, s:f, s:s, s:b}", "ok", 1,
                    "ms", ngx_http_zmq_ping_ms(ping),
                    "tls", SSL_get_version(c->ssl->connection),
                    "verified", ping->verify ? 1 : 0);

    ngx_http_zmq_ping_answer(ping, doc);
}

#endif


static void
ngx_http_zmq_ping_timeout(ngx_event_t *ev)
{
    ngx_http_zmq_ping_t  *ping = ev->data;

    ngx_http_zmq_ping_answer(ping,
        ngx_http_zmq_ping_failed(ping, "%s timed out (no answer within the "
                                 "http_outconn's timeout, %M ms)",
                                 ping->peer.connection != NULL
                                 && ping->peer.connection->ssl != NULL
                                 ? "the TLS handshake" : "connect",
                                 ping->timeout));
}


static void
ngx_http_zmq_ping_http_close(ngx_http_zmq_ping_t *ping)
{
    ngx_connection_t  *c;

    if (ping->timer.timer_set) {
        ngx_del_timer(&ping->timer);
    }

    c = ping->peer.connection;

    if (c == NULL) {
        return;
    }

    ping->peer.connection = NULL;

#if (NGX_SSL)
    if (c->ssl != NULL) {
        c->ssl->no_wait_shutdown = 1;
        c->ssl->no_send_shutdown = 1;
        (void) ngx_ssl_shutdown(c);
    }
#endif

    ngx_close_connection(c);
}


/* the request's pool goes: nothing the ping holds may outlive it */
static void
ngx_http_zmq_ping_cleanup(void *data)
{
    ngx_http_zmq_ping_t  *ping = data;

    ping->answered = 1;

    if (ping->probe != NULL) {
        ngx_zmq_amqp_probe_cancel(ping->probe);
        ping->probe = NULL;
    }

    if (ping->stomp != NULL) {
        ngx_zmq_stomp_probe_cancel(ping->stomp);
        ping->stomp = NULL;
    }

    ngx_http_zmq_ping_http_close(ping);
}


/*
 * Addresses for host:port without resolving a name in a worker: an IP
 * literal, "localhost", or a name NGINX resolved when it read its
 * configuration (every amqp_def host is). NGX_DECLINED: a name not known.
 */
static ngx_int_t
ngx_http_zmq_ping_addr(ngx_http_request_t *r, zgw_hostport_t *hp,
    ngx_addr_t **addrs, ngx_uint_t *naddrs)
{
    u_char                    *p;
    size_t                     len;
    ngx_uint_t                 i;
    ngx_addr_t                *a;
    const char                *host;
    ngx_http_zmq_resolved_t   *res;
    ngx_http_zmq_main_conf_t  *zmcf;

    host = hp->host;
    len = ngx_strlen(host);

    if (hp->kind == ZGW_HOST_IS_NAME && ngx_strcmp(host, "localhost") == 0) {
        host = "127.0.0.1";
        len = 9;

    } else if (hp->kind == ZGW_HOST_IS_NAME) {
        zmcf = ngx_http_get_module_main_conf(r, ngx_http_zmq_module);
        res = zmcf->resolved.elts;

        for (i = 0; i < zmcf->resolved.nelts; i++) {
            if (res[i].host.len == len
                && res[i].port == (in_port_t) hp->port
                && ngx_strncmp(res[i].host.data, host, len) == 0
                && res[i].naddrs > 0)
            {
                *addrs = res[i].addrs;
                *naddrs = res[i].naddrs;
                return NGX_OK;
            }
        }

        return NGX_DECLINED;
    }

    a = ngx_pcalloc(r->pool, sizeof(ngx_addr_t));
    if (a == NULL) {
        return NGX_ERROR;
    }

    if (ngx_parse_addr(r->pool, a, (u_char *) host, len) != NGX_OK) {
        return NGX_DECLINED;
    }

    ngx_inet_set_port(a->sockaddr, (in_port_t) hp->port);

    p = ngx_pnalloc(r->pool, NGX_SOCKADDR_STRLEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    a->name.data = p;
    a->name.len = ngx_sock_ntop(a->sockaddr, a->socklen, p,
                                NGX_SOCKADDR_STRLEN, 1);

    *addrs = a;
    *naddrs = 1;

    return NGX_OK;
}


static json_t *
ngx_http_zmq_ping_failed(ngx_http_zmq_ping_t *ping, const char *fmt, ...)
{
    u_char   text[512], *p;
    va_list  args;

    va_start(args, fmt);
    p = ngx_vslprintf(text, text + sizeof(text) - 1, fmt, args);
    va_end(args);

    *p = '\0';

    /* jansson takes UTF-8 only: what a peer sent is escaped to ASCII */
    return json_pack("{s:b, s:s, s:f}", "ok", 0, "error", (char *) text,
                     "ms", ngx_http_zmq_ping_ms(ping));
}


/* the answer comes later */
static ngx_int_t
ngx_http_zmq_ping_wait(ngx_http_request_t *r)
{
    r->main->count++;

    /* a client that goes away ends the request, and with it the ping */
    if (!r->discard_body) {
        r->read_event_handler = ngx_http_test_reading;
    }

    return NGX_DONE;
}


static void
ngx_http_zmq_ping_answer(ngx_http_zmq_ping_t *ping, json_t *doc)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    if (ping->answered) {
        json_decref(doc);
        return;
    }

    ping->answered = 1;

    ngx_http_zmq_ping_http_close(ping);

    r = ping->request;
    c = r->connection;

    if (doc != NULL && ping->address.len) {
        json_object_set_new(doc, "address",
                            json_stringn((char *) ping->address.data,
                                         ping->address.len));
    }

    rc = doc != NULL ? ngx_http_zmq_send_doc(r, NGX_HTTP_OK, doc)
                     : NGX_HTTP_INTERNAL_SERVER_ERROR;

    r->read_event_handler = ngx_http_block_reading;

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static double
ngx_http_zmq_ping_ms(ngx_http_zmq_ping_t *ping)
{
    double           ms;
    struct timespec  now;

    (void) clock_gettime(CLOCK_MONOTONIC, &now);

    ms = (double) (now.tv_sec - ping->start.tv_sec) * 1000.0
         + (double) (now.tv_nsec - ping->start.tv_nsec) / 1e6;

    /* one decimal */
    return (double) (ngx_int_t) (ms * 10.0 + 0.5) / 10.0;
}
