
/*
 * ngx_zmq: the configuration a worker runs, and its live replacement.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "zgw_hostport.h"
#include "ngx_http_zmq_module.h"


#define NGX_HTTP_ZMQ_TMPL_LITERAL     0
#define NGX_HTTP_ZMQ_TMPL_VARIABLE    1
#define NGX_HTTP_ZMQ_TMPL_PARAM       2

#define NGX_HTTP_ZMQ_SEGS_STACK       64

#define ngx_http_zmq_isword(c)                                               \
    (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z')               \
     || ((c) >= '0' && (c) <= '9') || (c) == '_')


ngx_http_zmq_runtime_t *
ngx_http_zmq_runtime_current(void)
{
    ngx_http_zmq_worker_t  *w;

    w = ngx_http_zmq_worker();

    return w->rt;
}


static ngx_int_t
ngx_http_zmq_rt_str(ngx_pool_t *pool, json_t *obj, const char *field,
    ngx_str_t *out)
{
    const char  *s;

    s = json_string_value(json_object_get(obj, field));
    if (s == NULL) {
        ngx_str_null(out);
        return NGX_OK;
    }

    out->len = ngx_strlen(s);
    out->data = ngx_pnalloc(pool, out->len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, s, out->len + 1);
    return NGX_OK;
}


static ngx_int_t
ngx_http_zmq_rt_int(json_t *obj, const char *field, ngx_int_t def)
{
    json_t  *v;

    v = json_object_get(obj, field);
    return json_is_integer(v) ? (ngx_int_t) json_integer_value(v) : def;
}


ngx_int_t
ngx_http_zmq_tmpl_compile(ngx_pool_t *pool, ngx_str_t *text,
    ngx_array_t *parts)
{
    u_char                    *p, *end, *start;
    ngx_http_zmq_tmpl_part_t  *part;

    if (ngx_array_init(parts, pool, 4, sizeof(ngx_http_zmq_tmpl_part_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (text->len == 0) {
        return NGX_OK;              /* no template (data may be NULL) */
    }

    p = text->data;
    end = p + text->len;

    while (p < end) {
        part = ngx_array_push(parts);
        if (part == NULL) {
            return NGX_ERROR;
        }

        start = p;

        if (*p == '$' && p + 1 < end
            && ngx_http_zmq_isword(p[1]))
        {
            p++;
            start = p;
            while (p < end && ngx_http_zmq_isword(*p)) {
                p++;
            }
            part->kind = NGX_HTTP_ZMQ_TMPL_VARIABLE;
            part->value.len = p - start;
            part->value.data = ngx_pnalloc(pool, part->value.len);
            if (part->value.data == NULL) {
                return NGX_ERROR;
            }
            part->key = ngx_hash_strlow(part->value.data, start,
                                        part->value.len);
            continue;
        }

        if (*p == '{') {
            while (p < end && *p != '}') {
                p++;
            }
            if (p < end) {
                part->kind = NGX_HTTP_ZMQ_TMPL_PARAM;
                part->value.data = start + 1;
                part->value.len = p - start - 1;
                p++;
                continue;
            }
            p = start;
        }

        /* a literal up to the next '$' or '{' */
        p++;
        while (p < end && *p != '$' && *p != '{') {
            p++;
        }
        part->kind = NGX_HTTP_ZMQ_TMPL_LITERAL;
        part->value.data = start;
        part->value.len = p - start;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_zmq_tmpl_eval(ngx_http_request_t *r, ngx_array_t *parts,
    ngx_http_zmq_param_t *params, ngx_uint_t nparams, ngx_str_t *out)
{
    u_char                     *p;
    size_t                      len;
    ngx_str_t                  *vals;
    ngx_uint_t                  i, j;
    ngx_http_variable_value_t  *vv;
    ngx_http_zmq_tmpl_part_t   *part;

    part = parts->elts;

    vals = ngx_palloc(r->pool, (parts->nelts + 1) * sizeof(ngx_str_t));
    if (vals == NULL) {
        return NGX_ERROR;
    }

    len = 0;

    for (i = 0; i < parts->nelts; i++) {
        ngx_str_null(&vals[i]);

        switch (part[i].kind) {

        case NGX_HTTP_ZMQ_TMPL_VARIABLE:
            vv = ngx_http_get_variable(r, &part[i].value, part[i].key);
            if (vv != NULL && !vv->not_found) {
                vals[i].data = vv->data;
                vals[i].len = vv->len;
            }
            break;

        case NGX_HTTP_ZMQ_TMPL_PARAM:
            for (j = 0; j < nparams; j++) {
                if (params[j].name.len == part[i].value.len
                    && ngx_strncmp(params[j].name.data, part[i].value.data,
                                   part[i].value.len) == 0)
                {
                    vals[i] = params[j].value;
                    break;
                }
            }
            break;

        default:
            vals[i] = part[i].value;
            break;
        }

        len += vals[i].len;
    }

    out->data = ngx_pnalloc(r->pool, len ? len : 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = out->data;
    for (i = 0; i < parts->nelts; i++) {
        p = ngx_cpymem(p, vals[i].data, vals[i].len);
    }
    out->len = len;

    return NGX_OK;
}


/*
 * An address for host:port without resolving names in a worker: an IP
 * literal, "localhost", or a name resolved when the configuration was read.
 */
static ngx_int_t
ngx_http_zmq_rt_addrs(ngx_pool_t *pool, ngx_array_t *addrs,
    zgw_hostport_t *hp, ngx_array_t *resolved, zgw_errors_t *errs,
    const char *kind, ngx_str_t *oc)
{
    u_char                   *p;
    size_t                    len;
    in_port_t                 port;
    ngx_uint_t                i, j;
    ngx_addr_t               *a, addr;
    const char               *host;
    ngx_http_zmq_resolved_t  *res;

    host = hp->host;
    len = ngx_strlen(host);
    port = (in_port_t) hp->port;

    if (hp->kind == ZGW_HOST_IS_NAME && len == 9
        && ngx_strcmp(host, "localhost") == 0)
    {
        host = "127.0.0.1";
        len = 9;
    }

    if (hp->kind != ZGW_HOST_IS_NAME || len == 9) {
        if (ngx_parse_addr(pool, &addr, (u_char *) host, len) != NGX_OK) {
            zgw_errors_add(errs, "%s '%.*s': host '%s' is not an "
                           "address", kind, (int) oc->len, oc->data, host);
            return NGX_DECLINED;
        }

        ngx_inet_set_port(addr.sockaddr, port);
        p = ngx_pnalloc(pool, NGX_SOCKADDR_STRLEN);
        if (p == NULL) {
            return NGX_ERROR;
        }
        addr.name.data = p;
        addr.name.len = ngx_sock_ntop(addr.sockaddr, addr.socklen, p,
                                      NGX_SOCKADDR_STRLEN, 1);
        a = ngx_array_push(addrs);
        if (a == NULL) {
            return NGX_ERROR;
        }
        *a = addr;
        return NGX_OK;
    }

    res = resolved ? resolved->elts : NULL;

    for (i = 0; resolved && i < resolved->nelts; i++) {
        if (res[i].host.len == len && res[i].port == port
            && ngx_strncmp(res[i].host.data, host, len) == 0)
        {
            for (j = 0; j < res[i].naddrs; j++) {
                a = ngx_array_push(addrs);
                if (a == NULL) {
                    return NGX_ERROR;
                }
                *a = res[i].addrs[j];
            }
            return NGX_OK;
        }
    }

    zgw_errors_add(errs, "%s '%.*s': host '%s' was not known when "
                   "NGINX read its configuration, and names are never "
                   "resolved in a worker: use an IP address, or reload",
                   kind, (int) oc->len, oc->data, host);
    return NGX_DECLINED;
}


static ngx_int_t ngx_http_zmq_rt_hosts(ngx_pool_t *pool, ngx_array_t *hosts,
    zgw_hostport_t *hp, ngx_uint_t naddrs);


static ngx_int_t
ngx_http_zmq_rt_outconn(ngx_http_zmq_runtime_t *rt, zgw_config_t *cfg,
    json_t *obj, const zgw_key_t *key, ngx_array_t *resolved,
    ngx_log_t *log, zgw_errors_t *errs)
{
    char                         *secret, *a, *b;
    char                          where[ZGW_NAME_MAX + 64];
    size_t                        i;
    json_t                       *def, *h;
    in_port_t                     port;
    zgw_hostport_t                hp;
    ngx_str_t                    *fp;
    ngx_pool_t                   *pool;
    ngx_array_t                   addrs, hosts;
    ngx_http_zmq_tls_conf_t       tc;
    ngx_http_zmq_outconn_conf_t  *oc;

    pool = rt->pool;

    oc = ngx_array_push(&rt->outconns);
    fp = ngx_array_push(&rt->fingerprints);
    if (oc == NULL || fp == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(oc, sizeof(ngx_http_zmq_outconn_conf_t));
    ngx_str_null(fp);

    def = zgw_config_get(cfg, ZGW_KIND_AMQP_DEF,
                         json_string_value(json_object_get(obj, "def")));

    if (ngx_http_zmq_rt_str(pool, obj, "name", &oc->name) != NGX_OK
        || ngx_http_zmq_rt_str(pool, obj, "def", &oc->def_name) != NGX_OK
        || ngx_http_zmq_rt_str(pool, def, "vhost", &oc->vhost) != NGX_OK
        || ngx_http_zmq_rt_str(pool, def, "username", &oc->username)
           != NGX_OK
        || ngx_http_zmq_rt_str(pool, obj, "content_type", &oc->content_type)
           != NGX_OK
        || ngx_http_zmq_rt_str(pool, obj, "content_encoding",
                               &oc->content_encoding) != NGX_OK
        || ngx_http_zmq_rt_str(pool, obj, "user_id", &oc->user_id) != NGX_OK
        || ngx_http_zmq_rt_str(pool, obj, "app_id", &oc->app_id) != NGX_OK)
    {
        return NGX_ERROR;
    }

    oc->active = json_is_true(json_object_get(obj, "is_active"))
                 && json_is_true(json_object_get(def, "is_active"));
    oc->heartbeat = ngx_http_zmq_rt_int(def, "heartbeat", 30);
    oc->frame_max = ngx_http_zmq_rt_int(def, "frame_max", 131072);
    oc->delivery_mode = ngx_http_zmq_rt_int(obj, "delivery_mode", 2);
    oc->priority = ngx_http_zmq_rt_int(obj, "priority", -1);
    oc->expiration = ngx_http_zmq_rt_int(obj, "expiration", -1);
    oc->max_inflight = ngx_http_zmq_rt_int(obj, "max_inflight", 1024);
    oc->use_jms = json_is_true(json_object_get(def, "use_jms"));

    /* any change to the outgoing connection or its definition reconnects */
    a = zgw_object_dump(ZGW_KIND_AMQP_OUTCONN, obj);
    b = zgw_object_dump(ZGW_KIND_AMQP_DEF, def);
    if (a == NULL || b == NULL) {
        free(a);
        free(b);
        return NGX_ERROR;
    }
    fp->len = ngx_strlen(a) + 1 + ngx_strlen(b);
    fp->data = ngx_pnalloc(pool, fp->len);
    if (fp->data == NULL) {
        free(a);
        free(b);
        return NGX_ERROR;
    }
    ngx_sprintf(fp->data, "%s|%s", a, b);
    free(a);
    free(b);

    /* TLS: the context now (files read here, never per connection) */

    if (ngx_http_zmq_runtime_tls(pool, def, &tc, log) != NGX_OK)
    {
        return NGX_ERROR;
    }

    oc->tls = tc.tls;
    oc->tls_ctx = tc.ctx;
    oc->tls_error = tc.error;
    oc->server_name = tc.server_name;

    if (oc->tls && oc->tls_ctx == NULL && oc->active) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "zmq: amqp_def '%V': TLS: %V; outgoing connection "
                      "'%V' stays idle", &oc->def_name, &oc->tls_error,
                      &oc->name);
    }

    if (json_object_get(def, "password") != NULL) {
        if (json_is_object(json_object_get(def, "password")) && key == NULL) {
            zgw_errors_add(errs, "amqp_def '%s': the password is sealed and "
                           "no zmq_key_file is set",
                           json_string_value(json_object_get(def, "name")));
            return NGX_DECLINED;
        }

        secret = zgw_object_secret(ZGW_KIND_AMQP_DEF, def, "password", key,
                                   errs);
        if (secret == NULL) {
            return NGX_DECLINED;
        }

        oc->password.len = ngx_strlen(secret);
        oc->password.data = ngx_pnalloc(pool, oc->password.len + 1);
        if (oc->password.data == NULL) {
            free(secret);
            return NGX_ERROR;
        }
        ngx_memcpy(oc->password.data, secret, oc->password.len);
        ngx_explicit_memzero(secret, oc->password.len);
        free(secret);
    }

    if (ngx_array_init(&addrs, pool, 2, sizeof(ngx_addr_t)) != NGX_OK
        || ngx_array_init(&hosts, pool, 2, sizeof(ngx_str_t)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    port = (in_port_t) ngx_http_zmq_rt_int(def, "port", 5672);

    /*
     * The model has validated these; a snapshot written to Redis by other
     * means may not have been: a bad entry leaves the connection inactive.
     */

    h = json_object_get(def, "host");
    *ngx_snprintf((u_char *) where, sizeof(where) - 1, "amqp_def '%V': host",
                  &oc->def_name) = '\0';

    if (zgw_host_parse(&hp, json_is_string(h) ? json_string_value(h)
                                              : "127.0.0.1",
                       json_is_string(h) ? json_string_length(h) : 9,
                       where, errs)
        != ZGW_OK)
    {
        return NGX_DECLINED;
    }

    hp.port = port;

    if (ngx_http_zmq_rt_addrs(pool, &addrs, &hp, resolved, errs,
                              "amqp_outconn", &oc->name)
        == NGX_ERROR
        || ngx_http_zmq_rt_hosts(pool, &hosts, &hp, addrs.nelts) != NGX_OK)
    {
        return NGX_ERROR;
    }

    json_array_foreach(json_object_get(def, "hosts"), i, h) {
        *ngx_snprintf((u_char *) where, sizeof(where) - 1,
                      "amqp_def '%V': hosts[%uz]", &oc->def_name, i) = '\0';

        if (!json_is_string(h)) {
            zgw_errors_add(errs, "%s is not a string", where);
            return NGX_DECLINED;
        }

        if (zgw_hostport_parse(&hp, json_string_value(h),
                               json_string_length(h), port, where, errs)
            != ZGW_OK)
        {
            return NGX_DECLINED;
        }

        if (ngx_http_zmq_rt_addrs(pool, &addrs, &hp, resolved, errs,
                                  "amqp_outconn", &oc->name)
            == NGX_ERROR
            || ngx_http_zmq_rt_hosts(pool, &hosts, &hp, addrs.nelts)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    oc->addrs = addrs.elts;
    oc->naddrs = addrs.nelts;
    oc->tls_hosts = hosts.elts;

    return NGX_OK;
}


/* the host each address came from (the name TLS checks), as many times */
static ngx_int_t
ngx_http_zmq_rt_hosts(ngx_pool_t *pool, ngx_array_t *hosts,
    zgw_hostport_t *hp, ngx_uint_t naddrs)
{
    size_t      len;
    ngx_str_t  *h;

    len = ngx_strlen(hp->host);

    while (hosts->nelts < naddrs) {
        h = ngx_array_push(hosts);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->len = len;
        h->data = ngx_pnalloc(pool, len + 1);
        if (h->data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(h->data, hp->host, len + 1);
    }

    return NGX_OK;
}


/*
 * A definition's TLS options (amqp_def, stomp_def): tls, and when it is
 * set, the context (one reference held by pool) or, when it cannot be
 * made, why (tc->error, NUL-ended; logged by the caller).
 */
ngx_int_t
ngx_http_zmq_runtime_tls(ngx_pool_t *pool, json_t *def,
    ngx_http_zmq_tls_conf_t *tc, ngx_log_t *log)
{
    u_char              err[NGX_ZMQ_TLS_ERROR_LEN], *name;
    json_t             *v;
    ngx_zmq_tls_opts_t  opts;

    ngx_memzero(tc, sizeof(ngx_http_zmq_tls_conf_t));
    tc->error.data = (u_char *) "";

    tc->tls = json_is_true(json_object_get(def, "tls"));

    if (!tc->tls) {
        return NGX_OK;
    }

    ngx_memzero(&opts, sizeof(ngx_zmq_tls_opts_t));

#define ngx_http_zmq_rt_tls_str(field, dst)                                   \
    v = json_object_get(def, field);                                          \
    if (json_is_string(v)) {                                                  \
        (dst).data = (u_char *) json_string_value(v);                        \
        (dst).len = json_string_length(v);                                    \
    }

    ngx_http_zmq_rt_tls_str("ca_file", opts.ca_file);
    ngx_http_zmq_rt_tls_str("cert_file", opts.cert_file);
    ngx_http_zmq_rt_tls_str("key_file", opts.key_file);
    ngx_http_zmq_rt_tls_str("server_name", tc->server_name);

#undef ngx_http_zmq_rt_tls_str

    opts.verify = !json_is_false(json_object_get(def, "verify"));

    /* the def's json goes with the snapshot: a copy in the pool */
    if (tc->server_name.len) {
        name = ngx_pnalloc(pool, tc->server_name.len + 1);
        if (name == NULL) {
            return NGX_ERROR;
        }
        ngx_memcpy(name, tc->server_name.data, tc->server_name.len + 1);
        tc->server_name.data = name;
    }

    tc->ctx = ngx_zmq_tls_ctx_get(&opts, log, err, sizeof(err));

    if (tc->ctx == NULL) {
        tc->error.len = ngx_strlen(err);
        tc->error.data = ngx_pnalloc(pool, tc->error.len + 1);
        if (tc->error.data == NULL) {
            return NGX_ERROR;
        }
        ngx_memcpy(tc->error.data, err, tc->error.len + 1);
        return NGX_OK;
    }

    /* the pool holds the reference (given back when it is destroyed) */

    if (ngx_zmq_tls_ctx_hold(pool, tc->ctx) != NGX_OK) {
        ngx_zmq_tls_ctx_put(tc->ctx);
        return NGX_ERROR;
    }

    ngx_zmq_tls_ctx_put(tc->ctx);

    return NGX_OK;
}


/* a stomp_outconn with its stomp_def, as ngx_zmq_stomp_open() takes it */
static ngx_int_t
ngx_http_zmq_rt_stomp_outconn(ngx_http_zmq_runtime_t *rt, zgw_config_t *cfg,
    json_t *obj, const zgw_key_t *key, ngx_array_t *resolved,
    ngx_log_t *log, zgw_errors_t *errs)
{
    char                  *secret, *a, *b;
    char                   where[ZGW_NAME_MAX + 64];
    size_t                 i;
    json_t                *def, *h;
    in_port_t              port;
    ngx_str_t                *fp;
    ngx_pool_t               *pool;
    ngx_array_t               addrs, hosts;
    zgw_hostport_t            hp;
    ngx_zmq_stomp_conf_t     *oc;
    ngx_http_zmq_tls_conf_t   tc;

    pool = rt->pool;

    oc = ngx_array_push(&rt->stomp_outconns);
    fp = ngx_array_push(&rt->stomp_fingerprints);
    if (oc == NULL || fp == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(oc, sizeof(ngx_zmq_stomp_conf_t));
    ngx_str_null(fp);

    def = zgw_config_get(cfg, ZGW_KIND_STOMP_DEF,
                         json_string_value(json_object_get(obj, "def")));

    if (ngx_http_zmq_rt_str(pool, obj, "name", &oc->name) != NGX_OK
        || ngx_http_zmq_rt_str(pool, obj, "def", &oc->def_name) != NGX_OK
        || ngx_http_zmq_rt_str(pool, def, "virtual_host", &oc->vhost)
           != NGX_OK
        || ngx_http_zmq_rt_str(pool, def, "login", &oc->login) != NGX_OK
        || ngx_http_zmq_rt_str(pool, obj, "content_type", &oc->content_type)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    oc->active = json_is_true(json_object_get(obj, "is_active"))
                 && json_is_true(json_object_get(def, "is_active"));
    oc->heartbeat = ngx_http_zmq_rt_int(def, "heartbeat", 10);
    oc->use_jms = json_is_true(json_object_get(def, "use_jms"));
    oc->persistent = !json_is_false(json_object_get(obj, "persistent"));
    oc->priority = ngx_http_zmq_rt_int(obj, "priority", -1);
    oc->expires = ngx_http_zmq_rt_int(obj, "expires", -1);
    oc->max_inflight = ngx_http_zmq_rt_int(obj, "max_inflight", 1024);

    a = zgw_object_dump(ZGW_KIND_STOMP_OUTCONN, obj);
    b = zgw_object_dump(ZGW_KIND_STOMP_DEF, def);
    if (a == NULL || b == NULL) {
        free(a);
        free(b);
        return NGX_ERROR;
    }
    fp->len = ngx_strlen(a) + 1 + ngx_strlen(b);
    fp->data = ngx_pnalloc(pool, fp->len);
    if (fp->data == NULL) {
        free(a);
        free(b);
        return NGX_ERROR;
    }
    ngx_sprintf(fp->data, "%s|%s", a, b);
    free(a);
    free(b);

    if (def == NULL) {
        zgw_errors_add(errs, "stomp_outconn '%s': no stomp_def '%s'",
                       json_string_value(json_object_get(obj, "name")),
                       json_string_value(json_object_get(obj, "def")));
        return NGX_DECLINED;
    }

    /* TLS: the context now (files read here, never per connection) */

    if (ngx_http_zmq_runtime_tls(pool, def, &tc, log) != NGX_OK) {
        return NGX_ERROR;
    }

    oc->tls = tc.tls;
    oc->tls_ctx = tc.ctx;
    oc->tls_error = tc.error;
    oc->server_name = tc.server_name;

    if (oc->tls && oc->tls_ctx == NULL && oc->active) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "zmq: stomp_def '%V': TLS: %V; outgoing connection "
                      "'%V' stays idle", &oc->def_name, &oc->tls_error,
                      &oc->name);
    }

    if (json_object_get(def, "passcode") != NULL) {
        if (json_is_object(json_object_get(def, "passcode")) && key == NULL) {
            zgw_errors_add(errs, "stomp_def '%s': the passcode is sealed and "
                           "no zmq_key_file is set",
                           json_string_value(json_object_get(def, "name")));
            return NGX_DECLINED;
        }

        secret = zgw_object_secret(ZGW_KIND_STOMP_DEF, def, "passcode", key,
                                   errs);
        if (secret == NULL) {
            return NGX_DECLINED;
        }

        oc->passcode.len = ngx_strlen(secret);
        oc->passcode.data = ngx_pnalloc(pool, oc->passcode.len + 1);
        if (oc->passcode.data == NULL) {
            free(secret);
            return NGX_ERROR;
        }
        ngx_memcpy(oc->passcode.data, secret, oc->passcode.len);
        ngx_explicit_memzero(secret, oc->passcode.len);
        free(secret);
    }

    if (ngx_array_init(&addrs, pool, 2, sizeof(ngx_addr_t)) != NGX_OK
        || ngx_array_init(&hosts, pool, 2, sizeof(ngx_str_t)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    port = (in_port_t) ngx_http_zmq_rt_int(def, "port", 61613);

    h = json_object_get(def, "host");
    *ngx_snprintf((u_char *) where, sizeof(where) - 1, "stomp_def '%V': host",
                  &oc->def_name) = '\0';

    if (zgw_host_parse(&hp, json_is_string(h) ? json_string_value(h)
                                              : "127.0.0.1",
                       json_is_string(h) ? json_string_length(h) : 9,
                       where, errs)
        != ZGW_OK)
    {
        return NGX_DECLINED;
    }

    hp.port = port;

    if (ngx_http_zmq_rt_addrs(pool, &addrs, &hp, resolved, errs,
                              "stomp_outconn", &oc->name)
        == NGX_ERROR
        || ngx_http_zmq_rt_hosts(pool, &hosts, &hp, addrs.nelts) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* absent: the host name is the virtual host (PROTO16) */
    if (oc->vhost.len == 0 && json_is_string(h)) {
        if (ngx_http_zmq_rt_str(pool, def, "host", &oc->vhost) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    json_array_foreach(json_object_get(def, "hosts"), i, h) {
        *ngx_snprintf((u_char *) where, sizeof(where) - 1,
                      "stomp_def '%V': hosts[%uz]", &oc->def_name, i) = '\0';

        if (!json_is_string(h)) {
            zgw_errors_add(errs, "%s is not a string", where);
            return NGX_DECLINED;
        }

        if (zgw_hostport_parse(&hp, json_string_value(h),
                               json_string_length(h), port, where, errs)
            != ZGW_OK)
        {
            return NGX_DECLINED;
        }

        if (ngx_http_zmq_rt_addrs(pool, &addrs, &hp, resolved, errs,
                                  "stomp_outconn", &oc->name)
            == NGX_ERROR
            || ngx_http_zmq_rt_hosts(pool, &hosts, &hp, addrs.nelts)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    oc->addrs = addrs.elts;
    oc->naddrs = addrs.nelts;
    oc->tls_hosts = hosts.elts;

    return NGX_OK;
}


static ngx_int_t
ngx_http_zmq_rt_service(ngx_http_zmq_runtime_t *rt, json_t *obj,
    const zgw_key_t *key, ngx_log_t *log)
{
    json_t                  *hdrs, *v;
    ngx_int_t                n;
    ngx_str_t                rk, mode, dest;
    const char              *hk;
    ngx_keyval_t            *kv;
    ngx_pool_t              *pool;
    ngx_http_zmq_service_t  *svc;

    pool = rt->pool;

    svc = ngx_array_push(&rt->services);
    if (svc == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(svc, sizeof(ngx_http_zmq_service_t));

    if (ngx_http_zmq_rt_str(pool, obj, "name", &svc->name) != NGX_OK
        || ngx_http_zmq_rt_str(pool, obj, "kind", &svc->kind) != NGX_OK
        || ngx_http_zmq_rt_str(pool, obj, "outconn", &svc->outconn) != NGX_OK
        || ngx_http_zmq_rt_str(pool, obj, "exchange", &svc->exchange)
           != NGX_OK
        || ngx_http_zmq_rt_str(pool, obj, "content_type", &svc->content_type)
           != NGX_OK
        || ngx_http_zmq_rt_str(pool, obj, "routing_key", &rk) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_zmq_rt_str(pool, obj, "queue", &svc->queue) != NGX_OK
        || ngx_http_zmq_rt_str(pool, obj, "mode", &mode) != NGX_OK
        || ngx_http_zmq_rt_str(pool, obj, "stomp_outconn",
                               &svc->stomp_outconn) != NGX_OK
        || ngx_http_zmq_rt_str(pool, obj, "destination", &dest) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (svc->kind.len == 0
        || (svc->kind.len == 7
            && ngx_strncmp(svc->kind.data, "publish", 7) == 0))
    {
        svc->type = NGX_HTTP_ZMQ_SVC_PUBLISH;   /* the model's default */

        if (json_object_get(obj, "stomp_outconn") != NULL) {
            svc->type = NGX_HTTP_ZMQ_SVC_STOMP;
        }

    } else if (svc->kind.len == 3
               && ngx_strncmp(svc->kind.data, "rpc", 3) == 0)
    {
        svc->type = NGX_HTTP_ZMQ_SVC_RPC;

    } else if (svc->kind.len == 6
               && ngx_strncmp(svc->kind.data, "invoke", 6) == 0)
    {
        svc->type = NGX_HTTP_ZMQ_SVC_INVOKE;

    } else if (svc->kind.len == 10
               && ngx_strncmp(svc->kind.data, "redis_page", 10) == 0)
    {
        svc->type = NGX_HTTP_ZMQ_SVC_PAGE;
        svc->page = ngx_http_zmq_page_build(pool, obj, key, log);
        if (svc->page == NULL) {
            return NGX_ERROR;
        }

    } else {
        svc->type = NGX_HTTP_ZMQ_SVC_OTHER;
    }

    /* the model's defaults and ranges; a snapshot may not have had them */

    n = ngx_http_zmq_rt_int(obj, "timeout", 30000);
    svc->timeout = (n >= 1 && n <= 3600000) ? (ngx_msec_t) n : 30000;

    if (svc->queue.len == 0) {
        ngx_str_set(&svc->queue, "zmq.invoke");
    }

    if (mode.len == 10 && ngx_strncmp(mode.data, "sync_async", 10) == 0) {
        svc->mode = NGX_HTTP_ZMQ_INVOKE_SYNC_ASYNC;

    } else if (mode.len == 5 && ngx_strncmp(mode.data, "async", 5) == 0) {
        svc->mode = NGX_HTTP_ZMQ_INVOKE_ASYNC;

    } else {
        svc->mode = NGX_HTTP_ZMQ_INVOKE_SYNC;
    }

    svc->active = json_is_true(json_object_get(obj, "is_active"));
    svc->mandatory = json_is_true(json_object_get(obj, "mandatory"));
    svc->confirm = !json_is_false(json_object_get(obj, "confirm"));
    svc->delivery_mode = ngx_http_zmq_rt_int(obj, "delivery_mode", -1);
    svc->priority = ngx_http_zmq_rt_int(obj, "priority", -1);
    svc->expiration = ngx_http_zmq_rt_int(obj, "expiration", -1);

    if (ngx_http_zmq_tmpl_compile(pool, &rk, &svc->routing_key) != NGX_OK
        || ngx_http_zmq_tmpl_compile(pool, &dest, &svc->destination)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    hdrs = json_object_get(obj, "headers");
    if (ngx_array_init(&svc->headers, pool, 2, sizeof(ngx_keyval_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    json_object_foreach(hdrs, hk, v) {
        kv = ngx_array_push(&svc->headers);
        if (kv == NULL) {
            return NGX_ERROR;
        }
        kv->key.len = ngx_strlen(hk);
        kv->key.data = ngx_pnalloc(pool, kv->key.len);
        if (kv->key.data == NULL
            || ngx_http_zmq_rt_str(pool, hdrs, hk, &kv->value) != NGX_OK)
        {
            return NGX_ERROR;
        }
        ngx_memcpy(kv->key.data, hk, kv->key.len);
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_zmq_rt_method(const char *m)
{
    static struct {
        const char  *name;
        ngx_uint_t   method;
    } methods[] = {
        { "GET", NGX_HTTP_GET }, { "POST", NGX_HTTP_POST },
        { "PUT", NGX_HTTP_PUT }, { "PATCH", NGX_HTTP_PATCH },
        { "DELETE", NGX_HTTP_DELETE }, { NULL, 0 }
    };
    ngx_uint_t  i;

    for (i = 0; m != NULL && methods[i].name; i++) {
        if (ngx_strcmp(m, methods[i].name) == 0) {
            return methods[i].method;
        }
    }

    return 0;                                   /* ANY */
}


static ngx_int_t
ngx_http_zmq_rt_route(ngx_http_zmq_runtime_t *rt, json_t *obj)
{
    u_char                *p, *end, *start;
    ngx_str_t             *seg;
    ngx_pool_t            *pool;
    const char            *fmt;
    ngx_http_zmq_route_t  *route;

    pool = rt->pool;

    route = ngx_array_push(&rt->routes);
    if (route == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(route, sizeof(ngx_http_zmq_route_t));

    if (ngx_http_zmq_rt_str(pool, obj, "name", &route->name) != NGX_OK
        || ngx_http_zmq_rt_str(pool, obj, "url_path", &route->url_path)
           != NGX_OK
        || ngx_http_zmq_rt_str(pool, obj, "service", &route->service)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    route->active = json_is_true(json_object_get(obj, "is_active"));
    if (json_object_get(obj, "security") != NULL
        && ngx_http_zmq_rt_str(pool, obj, "security", &route->security)
           != NGX_OK)
    {
        return NGX_ERROR;
    }
    route->method = ngx_http_zmq_rt_method(
                        json_string_value(json_object_get(obj, "method")));
    route->max_body = ngx_http_zmq_rt_int(obj, "max_body", 1048576);
    route->batch = json_is_true(json_object_get(obj, "batch"));
    route->max_batch = ngx_http_zmq_rt_int(obj, "max_batch", 1000);
    route->batch_envelope = json_is_true(json_object_get(obj,
                                                         "batch_envelope"));
    route->idempotency = json_is_true(json_object_get(obj, "idempotency"));
    route->idempotency_ttl = ngx_http_zmq_rt_int(obj, "idempotency_ttl",
                                                 86400);

    fmt = json_string_value(json_object_get(obj, "data_format"));
    route->data_format = (fmt != NULL && ngx_strcmp(fmt, "json") == 0);

    if (ngx_array_init(&route->segments, pool, 4, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = route->url_path.data;
    end = p + route->url_path.len;

    if (route->url_path.len >= 2 && end[-1] == '*' && end[-2] == '/') {
        route->prefix = 1;
        end -= 2;
    }

    while (p < end) {
        while (p < end && *p == '/') {
            p++;
        }
        start = p;
        while (p < end && *p != '/') {
            p++;
        }
        if (p > start) {
            seg = ngx_array_push(&route->segments);
            if (seg == NULL) {
                return NGX_ERROR;
            }
            seg->data = start;
            seg->len = p - start;
        }
    }

    return NGX_OK;
}


static void
ngx_http_zmq_rt_cfg_free(void *data)
{
    zgw_config_free(data);
}


ngx_http_zmq_runtime_t *
ngx_http_zmq_runtime_build(zgw_config_t *cfg, const zgw_key_t *key,
    ngx_array_t *resolved, ngx_log_t *log, zgw_errors_t *errs)
{
    json_t                  *obj;
    ngx_int_t                rc;
    ngx_pool_t              *pool;
    const char              *name;
    ngx_pool_cleanup_t      *cln;
    ngx_http_zmq_runtime_t  *rt;

    pool = ngx_create_pool(16384, log);
    if (pool == NULL) {
        return NULL;
    }

    rt = ngx_pcalloc(pool, sizeof(ngx_http_zmq_runtime_t));
    if (rt == NULL) {
        goto failed;
    }

    rt->pool = pool;
    rt->version = cfg->version;

    /* what the admin API reads: the configuration this runtime runs */

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        goto failed;
    }

    rt->cfg = zgw_config_copy(cfg);
    if (rt->cfg == NULL) {
        goto failed;
    }

    cln->handler = ngx_http_zmq_rt_cfg_free;
    cln->data = rt->cfg;

    if (ngx_array_init(&rt->services, pool, 8,
                       sizeof(ngx_http_zmq_service_t)) != NGX_OK
        || ngx_array_init(&rt->routes, pool, 8,
                          sizeof(ngx_http_zmq_route_t)) != NGX_OK
        || ngx_array_init(&rt->outconns, pool, 4,
                          sizeof(ngx_http_zmq_outconn_conf_t)) != NGX_OK
        || ngx_array_init(&rt->fingerprints, pool, 4, sizeof(ngx_str_t))
           != NGX_OK
        || ngx_array_init(&rt->securities, pool, 4,
                          sizeof(ngx_http_zmq_security_t)) != NGX_OK
        || ngx_array_init(&rt->stomp_outconns, pool, 2,
                          sizeof(ngx_zmq_stomp_conf_t)) != NGX_OK
        || ngx_array_init(&rt->stomp_fingerprints, pool, 2,
                          sizeof(ngx_str_t)) != NGX_OK)
    {
        goto failed;
    }

    json_object_foreach(cfg->objs[ZGW_KIND_AMQP_OUTCONN], name, obj) {
        rc = ngx_http_zmq_rt_outconn(rt, cfg, obj, key, resolved, log, errs);
        if (rc == NGX_ERROR) {
            goto failed;
        }
        if (rc == NGX_DECLINED) {
            /* logged by the caller; the connection stays inactive */
            ((ngx_http_zmq_outconn_conf_t *) rt->outconns.elts)
                [rt->outconns.nelts - 1].active = 0;
        }
    }

    json_object_foreach(cfg->objs[ZGW_KIND_STOMP_OUTCONN], name, obj) {
        rc = ngx_http_zmq_rt_stomp_outconn(rt, cfg, obj, key, resolved, log,
                                           errs);
        if (rc == NGX_ERROR) {
            goto failed;
        }
        if (rc == NGX_DECLINED) {
            ((ngx_zmq_stomp_conf_t *) rt->stomp_outconns.elts)
                [rt->stomp_outconns.nelts - 1].active = 0;
        }
    }

    json_object_foreach(cfg->objs[ZGW_KIND_SERVICE], name, obj) {
        if (ngx_http_zmq_rt_service(rt, obj, key, log) != NGX_OK) {
            goto failed;
        }
    }

    json_object_foreach(cfg->objs[ZGW_KIND_REST_CHANNEL], name, obj) {
        if (ngx_http_zmq_rt_route(rt, obj) != NGX_OK) {
            goto failed;
        }
    }

    json_object_foreach(cfg->objs[ZGW_KIND_SECURITY], name, obj) {
        if (ngx_http_zmq_auth_build(pool, &rt->securities, obj, key, log)
            != NGX_OK)
        {
            goto failed;
        }
    }

    return rt;

failed:

    zgw_errors_add(errs, "out of memory");
    ngx_destroy_pool(pool);
    return NULL;
}


/* the STOMP connections, as ngx_http_zmq_runtime_apply() the AMQP ones */
static void
ngx_http_zmq_rt_apply_stomp(ngx_http_zmq_runtime_t *rt,
    ngx_http_zmq_worker_stats_t *stats, ngx_log_t *log, ngx_uint_t *kept,
    ngx_uint_t *opened, ngx_uint_t *retired)
{
    ngx_str_t                  *fps;
    ngx_uint_t                  i, j, s;
    ngx_zmq_amqp_stats_t       *st;
    ngx_zmq_stomp_conf_t       *oc;
    ngx_http_zmq_worker_t      *w;
    ngx_http_zmq_stomp_slot_t  *slot;

    w = ngx_http_zmq_worker();

    oc = rt->stomp_outconns.elts;
    fps = rt->stomp_fingerprints.elts;

    for (s = 0; s < NGX_HTTP_ZMQ_OUTCONNS_MAX; s++) {
        slot = &w->stomp_slots[s];
        if (slot->conn == NULL) {
            continue;
        }

        for (i = 0; i < rt->stomp_outconns.nelts; i++) {
            if (ngx_strcmp(slot->name, oc[i].name.data) == 0
                && fps[i].len == slot->fingerprint.len
                && ngx_memcmp(fps[i].data, slot->fingerprint.data,
                              fps[i].len) == 0)
            {
                break;
            }
        }

        if (i < rt->stomp_outconns.nelts) {
            (*kept)++;
            continue;
        }

        ngx_zmq_stomp_retire(slot->conn);
        ngx_free(slot->name);
        ngx_free(slot->fingerprint.data);
        ngx_memzero(slot, sizeof(ngx_http_zmq_stomp_slot_t));
        (*retired)++;
    }

    for (i = 0; i < rt->stomp_outconns.nelts; i++) {
        for (s = 0; s < NGX_HTTP_ZMQ_OUTCONNS_MAX; s++) {
            slot = &w->stomp_slots[s];
            if (slot->conn != NULL
                && ngx_strcmp(slot->name, oc[i].name.data) == 0)
            {
                break;
            }
        }

        if (s < NGX_HTTP_ZMQ_OUTCONNS_MAX) {
            continue;
        }

        for (s = 0; s < NGX_HTTP_ZMQ_OUTCONNS_MAX; s++) {
            if (w->stomp_slots[s].conn == NULL) {
                break;
            }
        }

        if (s == NGX_HTTP_ZMQ_OUTCONNS_MAX) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "zmq: more than %d STOMP outgoing connections; "
                          "\"%V\" is not opened", NGX_HTTP_ZMQ_OUTCONNS_MAX,
                          &oc[i].name);
            continue;
        }

        st = NULL;
        for (j = 0; stats != NULL && j < NGX_HTTP_ZMQ_OUTCONNS_MAX; j++) {
            if (!stats->stomp[j].used) {
                st = &stats->stomp[j];
                break;
            }
        }

        slot = &w->stomp_slots[s];
        slot->name = ngx_alloc(oc[i].name.len + 1, log);
        slot->fingerprint.data = ngx_alloc(fps[i].len, log);
        if (slot->name == NULL || slot->fingerprint.data == NULL) {
            ngx_free(slot->name);
            ngx_free(slot->fingerprint.data);
            ngx_memzero(slot, sizeof(ngx_http_zmq_stomp_slot_t));
            continue;
        }

        ngx_memcpy(slot->name, oc[i].name.data, oc[i].name.len + 1);
        ngx_memcpy(slot->fingerprint.data, fps[i].data, fps[i].len);
        slot->fingerprint.len = fps[i].len;

        slot->conn = ngx_zmq_stomp_open(&w->stomp, &oc[i], st, log);
        if (slot->conn == NULL) {
            ngx_free(slot->name);
            ngx_free(slot->fingerprint.data);
            ngx_memzero(slot, sizeof(ngx_http_zmq_stomp_slot_t));
            continue;
        }

        (*opened)++;
    }
}


void
ngx_http_zmq_runtime_apply(ngx_http_zmq_runtime_t *rt,
    ngx_http_zmq_worker_stats_t *stats, ngx_log_t *log)
{
    ngx_str_t                    *fps;
    ngx_uint_t                    i, j, s, kept, opened, retired;
    ngx_http_zmq_conn_slot_t     *slot;
    ngx_zmq_amqp_stats_t         *st;
    ngx_http_zmq_outconn_conf_t  *oc;
    ngx_http_zmq_worker_t        *w;

    w = ngx_http_zmq_worker();

    oc = rt->outconns.elts;
    fps = rt->fingerprints.elts;
    kept = 0;
    opened = 0;
    retired = 0;

    /* retire what changed or went away */

    for (s = 0; s < NGX_HTTP_ZMQ_OUTCONNS_MAX; s++) {
        slot = &w->slots[s];
        if (slot->conn == NULL) {
            continue;
        }

        for (i = 0; i < rt->outconns.nelts; i++) {
            if (ngx_strcmp(slot->name, oc[i].name.data) == 0
                && fps[i].len == slot->fingerprint.len
                && ngx_memcmp(fps[i].data, slot->fingerprint.data,
                              fps[i].len) == 0)
            {
                break;
            }
        }

        if (i < rt->outconns.nelts) {
            kept++;
            continue;
        }

        ngx_zmq_amqp_retire(slot->conn);
        ngx_free(slot->name);
        ngx_free(slot->fingerprint.data);
        ngx_memzero(slot, sizeof(ngx_http_zmq_conn_slot_t));
        retired++;
    }

    /* open what is new */

    for (i = 0; i < rt->outconns.nelts; i++) {
        for (s = 0; s < NGX_HTTP_ZMQ_OUTCONNS_MAX; s++) {
            slot = &w->slots[s];
            if (slot->conn != NULL
                && ngx_strcmp(slot->name, oc[i].name.data) == 0)
            {
                break;
            }
        }

        if (s < NGX_HTTP_ZMQ_OUTCONNS_MAX) {
            continue;
        }

        for (s = 0; s < NGX_HTTP_ZMQ_OUTCONNS_MAX; s++) {
            if (w->slots[s].conn == NULL) {
                break;
            }
        }

        st = NULL;
        for (j = 0; stats != NULL && j < NGX_HTTP_ZMQ_OUTCONNS_MAX; j++) {
            if (!stats->outconns[j].used) {
                st = &stats->outconns[j];
                break;
            }
        }

        if (s == NGX_HTTP_ZMQ_OUTCONNS_MAX) {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "zmq: more than %d outgoing connections; \"%V\" "
                          "is not opened", NGX_HTTP_ZMQ_OUTCONNS_MAX,
                          &oc[i].name);
            continue;
        }

        slot = &w->slots[s];
        slot->name = ngx_alloc(oc[i].name.len + 1, log);
        slot->fingerprint.data = ngx_alloc(fps[i].len, log);
        if (slot->name == NULL || slot->fingerprint.data == NULL) {
            ngx_free(slot->name);
            ngx_free(slot->fingerprint.data);
            ngx_memzero(slot, sizeof(ngx_http_zmq_conn_slot_t));
            continue;
        }

        ngx_memcpy(slot->name, oc[i].name.data, oc[i].name.len + 1);
        ngx_memcpy(slot->fingerprint.data, fps[i].data, fps[i].len);
        slot->fingerprint.len = fps[i].len;

        slot->conn = ngx_zmq_amqp_open(&w->amqp, &oc[i], st, log);
        if (slot->conn == NULL) {
            ngx_free(slot->name);
            ngx_free(slot->fingerprint.data);
            ngx_memzero(slot, sizeof(ngx_http_zmq_conn_slot_t));
            continue;
        }

        opened++;
    }

    ngx_http_zmq_rt_apply_stomp(rt, stats, log, &kept, &opened, &retired);

    if (w->rt != NULL) {
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "zmq: configuration version %L applied (was %L): "
                      "%ui connection(s) kept, %ui opened, %ui retired",
                      rt->version, w->rt->version, kept, opened,
                      retired);
        ngx_destroy_pool(w->rt->pool);
    }

    w->rt = rt;

    ngx_http_zmq_auth_applied(&rt->securities);
    ngx_http_zmq_page_applied(rt, log);

    if (stats != NULL) {
        stats->version = (ngx_atomic_uint_t) rt->version;
    }
}


void
ngx_http_zmq_runtime_exit(void)
{
    ngx_uint_t              s;
    ngx_http_zmq_worker_t  *w;

    w = ngx_http_zmq_worker();

    ngx_http_zmq_page_exit();

    for (s = 0; s < NGX_HTTP_ZMQ_OUTCONNS_MAX; s++) {
        ngx_free(w->slots[s].name);
        ngx_free(w->slots[s].fingerprint.data);
        ngx_memzero(&w->slots[s], sizeof(ngx_http_zmq_conn_slot_t));
        ngx_free(w->stomp_slots[s].name);
        ngx_free(w->stomp_slots[s].fingerprint.data);
        ngx_memzero(&w->stomp_slots[s], sizeof(ngx_http_zmq_stomp_slot_t));
    }
}


/* the element of a runtime array whose ngx_str_t at name_off is name */
static void *
ngx_http_zmq_rt_find(ngx_array_t *a, size_t name_off, ngx_str_t *name)
{
    u_char      *elt;
    ngx_str_t   *n;
    ngx_uint_t   i;

    elt = a->elts;

    for (i = 0; i < a->nelts; i++, elt += a->size) {
        n = (ngx_str_t *) (elt + name_off);
        if (n->len == name->len
            && ngx_strncmp(n->data, name->data, name->len) == 0)
        {
            return elt;
        }
    }

    return NULL;
}


ngx_http_zmq_service_t *
ngx_http_zmq_runtime_service(ngx_str_t *name)
{
    ngx_http_zmq_worker_t  *w;

    w = ngx_http_zmq_worker();

    if (w->rt == NULL) {
        return NULL;
    }

    return ngx_http_zmq_rt_find(&w->rt->services,
                                offsetof(ngx_http_zmq_service_t, name), name);
}


ngx_http_zmq_outconn_conf_t *
ngx_http_zmq_runtime_outconn(ngx_str_t *name)
{
    ngx_http_zmq_worker_t  *w;

    w = ngx_http_zmq_worker();

    if (w->rt == NULL) {
        return NULL;
    }

    return ngx_http_zmq_rt_find(&w->rt->outconns,
                                offsetof(ngx_http_zmq_outconn_conf_t, name),
                                name);
}


ngx_zmq_amqp_conn_t *
ngx_http_zmq_runtime_conn(ngx_str_t *outconn)
{
    ngx_uint_t                 s;
    ngx_http_zmq_conn_slot_t  *slot;
    ngx_http_zmq_worker_t     *w;

    w = ngx_http_zmq_worker();

    for (s = 0; s < NGX_HTTP_ZMQ_OUTCONNS_MAX; s++) {
        slot = &w->slots[s];
        if (slot->conn != NULL
            && ngx_strlen(slot->name) == outconn->len
            && ngx_strncmp(slot->name, outconn->data, outconn->len) == 0)
        {
            return slot->conn;
        }
    }

    return NULL;
}


ngx_zmq_stomp_conf_t *
ngx_http_zmq_runtime_stomp_outconn(ngx_str_t *name)
{
    ngx_http_zmq_worker_t  *w;

    w = ngx_http_zmq_worker();

    if (w->rt == NULL) {
        return NULL;
    }

    return ngx_http_zmq_rt_find(&w->rt->stomp_outconns,
                                offsetof(ngx_zmq_stomp_conf_t, name), name);
}


ngx_zmq_stomp_conn_t *
ngx_http_zmq_runtime_stomp_conn(ngx_str_t *name)
{
    ngx_uint_t                  s;
    ngx_http_zmq_worker_t      *w;
    ngx_http_zmq_stomp_slot_t  *slot;

    w = ngx_http_zmq_worker();

    for (s = 0; s < NGX_HTTP_ZMQ_OUTCONNS_MAX; s++) {
        slot = &w->stomp_slots[s];
        if (slot->conn != NULL
            && ngx_strlen(slot->name) == name->len
            && ngx_strncmp(slot->name, name->data, name->len) == 0)
        {
            return slot->conn;
        }
    }

    return NULL;
}


/* one route against the path's segments; fills params */
static ngx_int_t
ngx_http_zmq_route_match(ngx_http_zmq_route_t *route, ngx_str_t *segs,
    ngx_uint_t nsegs, ngx_http_zmq_param_t *params, ngx_uint_t *nparams)
{
    ngx_str_t   *rs;
    ngx_uint_t   i, n;

    rs = route->segments.elts;

    if (route->prefix ? nsegs < route->segments.nelts
                      : nsegs != route->segments.nelts)
    {
        return 0;
    }

    n = 0;

    for (i = 0; i < route->segments.nelts; i++) {
        if (rs[i].len >= 2 && rs[i].data[0] == '{'
            && rs[i].data[rs[i].len - 1] == '}')
        {
            if (n < NGX_HTTP_ZMQ_PARAMS_MAX) {
                params[n].name.data = rs[i].data + 1;
                params[n].name.len = rs[i].len - 2;
                params[n].value = segs[i];
                n++;
            }
            continue;
        }

        if (rs[i].len != segs[i].len
            || ngx_strncmp(rs[i].data, segs[i].data, rs[i].len) != 0)
        {
            return 0;
        }
    }

    *nparams = n;
    return 1;
}


/*
 * The route and its params as the request keeps them: in r->pool, so that
 * they outlive the runtime they came from (a configuration applied while
 * the body is read destroys the runtime's pool).
 */
static ngx_http_zmq_route_t *
ngx_http_zmq_route_copy(ngx_http_request_t *r, ngx_http_zmq_route_t *route,
    ngx_http_zmq_param_t *params, ngx_uint_t nparams)
{
    u_char                *p;
    ngx_uint_t             i;
    ngx_http_zmq_route_t  *copy;

    copy = ngx_palloc(r->pool, sizeof(ngx_http_zmq_route_t));
    if (copy == NULL) {
        return NULL;
    }

    *copy = *route;
    ngx_memzero(&copy->segments, sizeof(ngx_array_t));   /* not kept */

    copy->name.data = ngx_pstrdup(r->pool, &route->name);
    copy->url_path.data = ngx_pstrdup(r->pool, &route->url_path);
    copy->service.data = ngx_pstrdup(r->pool, &route->service);
    copy->security.data = ngx_pstrdup(r->pool, &route->security);

    if ((route->security.len && copy->security.data == NULL)
        || (route->name.len && copy->name.data == NULL)
        || (route->url_path.len && copy->url_path.data == NULL)
        || (route->service.len && copy->service.data == NULL))
    {
        return NULL;
    }

    /* the values point into r->uri already; the names into the runtime */

    for (i = 0; i < nparams; i++) {
        p = ngx_pnalloc(r->pool, params[i].name.len + 1);
        if (p == NULL) {
            return NULL;
        }
        ngx_memcpy(p, params[i].name.data, params[i].name.len);
        p[params[i].name.len] = '\0';
        params[i].name.data = p;
    }

    return copy;
}


ngx_int_t
ngx_http_zmq_runtime_route(ngx_http_request_t *r,
    ngx_http_zmq_route_t **found, ngx_http_zmq_param_t *params,
    ngx_uint_t *nparams, ngx_str_t *allow)
{
    u_char                  *p, *end, *start;
    ngx_str_t                stack[NGX_HTTP_ZMQ_SEGS_STACK], *segs;
    ngx_uint_t               i, nsegs, pass, methods, n;
    ngx_http_zmq_route_t    *route;
    ngx_http_zmq_worker_t   *w;
    ngx_http_zmq_service_t  *svc;

    w = ngx_http_zmq_worker();

    if (w->rt == NULL) {
        return NGX_DECLINED;
    }

    /*
     * Every segment of the path, however many: a path is never cut short,
     * so an exact route matches only a path of exactly its segments.
     */

    nsegs = 0;
    p = r->uri.data;
    end = p + r->uri.len;

    for ( /* void */ ; p < end; p++) {
        if (*p != '/' && (p == r->uri.data || p[-1] == '/')) {
            nsegs++;
        }
    }

    segs = stack;

    if (nsegs > NGX_HTTP_ZMQ_SEGS_STACK) {
        segs = ngx_palloc(r->pool, nsegs * sizeof(ngx_str_t));
        if (segs == NULL) {
            return NGX_ERROR;
        }
    }

    nsegs = 0;
    p = r->uri.data;

    while (p < end) {
        while (p < end && *p == '/') {
            p++;
        }
        start = p;
        while (p < end && *p != '/') {
            p++;
        }
        if (p > start) {
            segs[nsegs].data = start;
            segs[nsegs].len = p - start;
            nsegs++;
        }
    }

    route = w->rt->routes.elts;
    methods = 0;

    /* exact paths first, then {param} paths, then prefixes */

    for (pass = 0; pass < 3; pass++) {
        for (i = 0; i < w->rt->routes.nelts; i++) {
            if (!route[i].active
                || (pass == 0
                    && (route[i].prefix
                        || ngx_strlchr(route[i].url_path.data,
                                       route[i].url_path.data
                                       + route[i].url_path.len, '{')))
                || (pass == 1
                    && (route[i].prefix
                        || !ngx_strlchr(route[i].url_path.data,
                                        route[i].url_path.data
                                        + route[i].url_path.len, '{')))
                || (pass == 2 && !route[i].prefix))
            {
                continue;
            }

            if (!ngx_http_zmq_route_match(&route[i], segs, nsegs, params,
                                          &n))
            {
                continue;
            }

            /* a page is read with HEAD as with GET */
            if (route[i].method == 0 || route[i].method == r->method
                || (r->method == NGX_HTTP_HEAD
                    && route[i].method == NGX_HTTP_GET
                    && (svc = ngx_http_zmq_runtime_service(
                                                   &route[i].service))
                       != NULL
                    && svc->type == NGX_HTTP_ZMQ_SVC_PAGE))
            {
                *found = ngx_http_zmq_route_copy(r, &route[i], params, n);
                if (*found == NULL) {
                    return NGX_ERROR;
                }
                *nparams = n;
                return NGX_OK;
            }

            methods |= route[i].method;
        }

        if (methods) {
            break;
        }
    }

    if (methods == 0) {
        return NGX_DECLINED;
    }

    allow->data = ngx_pnalloc(r->pool, sizeof("GET, POST, PUT, PATCH, "
                                              "DELETE") - 1);
    if (allow->data == NULL) {
        return NGX_ERROR;
    }

    p = allow->data;
    if (methods & NGX_HTTP_GET) {
        p = ngx_cpymem(p, "GET, ", 5);
    }
    if (methods & NGX_HTTP_POST) {
        p = ngx_cpymem(p, "POST, ", 6);
    }
    if (methods & NGX_HTTP_PUT) {
        p = ngx_cpymem(p, "PUT, ", 5);
    }
    if (methods & NGX_HTTP_PATCH) {
        p = ngx_cpymem(p, "PATCH, ", 7);
    }
    if (methods & NGX_HTTP_DELETE) {
        p = ngx_cpymem(p, "DELETE, ", 8);
    }
    allow->len = p - allow->data - 2;

    return NGX_HTTP_NOT_ALLOWED;
}
