
/*
 * ngx_http_zmq_module: the admin REST API (zmq_admin): routing, roles,
 * reads. ngx_http_zmq_admin.h lists the files that do the rest.
 *
 * Paths, relative to the location's prefix:
 *
 *     GET api/{kind}            a page of objects, sorted by name
 *                               (?page= ?page_size= ?q=)
 *     GET api/{kind}/{name}     one object
 *     GET api/export            the configuration, as zmqctl export prints it
 *     GET api/status            the zmq_status document
 *
 * Everything is read from the configuration the worker runs (the runtime's
 * copy of its validated zgw_config_t): nothing waits for Redis. Secrets are
 * never returned: one that is set reads as {"$set": true}. A client that
 * passed a definition of role "viewer" may only read (403 otherwise).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_zmq_module.h"
#include "ngx_http_zmq_admin.h"


#define NGX_HTTP_ZMQ_ADMIN_PAGE_SIZE      50
#define NGX_HTTP_ZMQ_ADMIN_PAGE_SIZE_MAX  1000


static ngx_int_t ngx_http_zmq_admin_handler(ngx_http_request_t *r);
static ngx_flag_t ngx_http_zmq_admin_same_origin(ngx_http_request_t *r);
static ngx_flag_t ngx_http_zmq_admin_op_known(ngx_http_zmq_admin_req_t *ar);
static ngx_int_t ngx_http_zmq_admin_route(ngx_http_request_t *r,
    ngx_http_zmq_admin_req_t *ar, ngx_uint_t allowed, ngx_str_t *allow);
static void ngx_http_zmq_admin_body_read(ngx_http_request_t *r);
static ngx_int_t ngx_http_zmq_admin_read(ngx_http_request_t *r,
    ngx_http_zmq_admin_req_t *ar);
static ngx_int_t ngx_http_zmq_admin_list(ngx_http_request_t *r,
    ngx_http_zmq_runtime_t *rt, int kind);
static ngx_int_t ngx_http_zmq_admin_get(ngx_http_request_t *r,
    ngx_http_zmq_runtime_t *rt, int kind, char *name);
static ngx_int_t ngx_http_zmq_admin_arg(ngx_http_request_t *r,
    const char *name, ngx_int_t def, ngx_int_t *value);
static ngx_flag_t ngx_http_zmq_admin_match(const char *name, ngx_str_t *q);
static int ngx_http_zmq_admin_cmp(const void *a, const void *b);


static ngx_str_t  ngx_http_zmq_admin_allow_get = ngx_string("GET, HEAD");
static ngx_str_t  ngx_http_zmq_admin_allow_post = ngx_string("POST");
static ngx_str_t  ngx_http_zmq_admin_allow_delete = ngx_string("DELETE");
static ngx_str_t  ngx_http_zmq_admin_allow_kind =
    ngx_string("GET, HEAD, POST");
static ngx_str_t  ngx_http_zmq_admin_allow_object =
    ngx_string("GET, HEAD, PUT, PATCH, DELETE");


char *
ngx_http_zmq_admin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_zmq_loc_conf_t *zlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_zmq_main_conf_t  *zmcf;

    if (zlcf->admin) {
        return "is duplicate";
    }

    if (zlcf->service.len || zlcf->router) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zmq_admin: a location serves zmq_admin, "
                           "zmq_service or zmq_router, not two of them");
        return NGX_CONF_ERROR;
    }

    zmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_zmq_module);

    if (zmcf->type == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zmq_admin: no zmq_config before this directive");
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->named
#if (NGX_PCRE)
        || clcf->regex != NULL
#endif
       )
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zmq_admin: its paths are relative to the "
                           "location's prefix: use a prefix location, such "
                           "as \"location /zmq/admin/ {\"");
        return NGX_CONF_ERROR;
    }

    zlcf->admin = 1;
    clcf->handler = ngx_http_zmq_admin_handler;

    return NGX_CONF_OK;
}


/* called by the module's merge_loc_conf, after zmq_security is merged */
char *
ngx_http_zmq_admin_merge(ngx_conf_t *cf, ngx_http_zmq_loc_conf_t *prev,
    ngx_http_zmq_loc_conf_t *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    ngx_conf_merge_value(conf->admin_auth, prev->admin_auth, 1);

    if (!conf->admin) {
        return NGX_CONF_OK;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (conf->security.len == 0) {
        if (conf->admin_auth) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "zmq_admin in location \"%V\" has no "
                               "zmq_security: name the security definition "
                               "whose clients may use the admin API, or "
                               "write \"zmq_admin_auth off;\" to serve it "
                               "to anyone who reaches the location",
                               &clcf->name);
            return NGX_CONF_ERROR;
        }

        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "zmq_admin in location \"%V\" has "
                           "\"zmq_admin_auth off\": anyone who reaches it "
                           "is an admin", &clcf->name);
    }

    /* every answer here is JSON, NGINX's error pages too */
    conf->json_errors = 1;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_zmq_admin_handler(ngx_http_request_t *r)
{
    ngx_int_t                  role, nseg;
    ngx_str_t                  path, seg[4], *who;
    ngx_uint_t                 i;
    u_char                    *p, *end;
    ngx_flag_t                 read;
    ngx_http_zmq_ctx_t        *ctx;
    ngx_http_zmq_loc_conf_t   *zlcf;
    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_zmq_admin_req_t  *ar;

    zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    ar = ngx_pcalloc(r->pool, sizeof(ngx_http_zmq_admin_req_t));
    ctx = ngx_http_zmq_get_ctx(r);

    if (ar == NULL || ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->admin = ar;
    ar->kind = -1;

    /*
     * If-Match is the admin API's, checked against the store: NGINX's
     * not_modified filter would compare it with the answer's ETag
     */
    r->disable_not_modified = 1;
    ngx_str_set(&ar->principal, "-");

    role = NGX_HTTP_ZMQ_ROLE_ADMIN;         /* zmq_admin_auth off */

    if (zlcf->security.len) {
        role = ngx_http_zmq_auth_role(r);

        if (role == NGX_DECLINED) {
            /* the access phase lets no one through unchecked: fail closed */
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "zmq: admin API request without a checked "
                          "identity refused");
            return ngx_http_zmq_admin_fail(r, NGX_HTTP_FORBIDDEN,
                                             "forbidden", "the request's "
                                             "identity is unknown");
        }

        who = ngx_http_zmq_auth_principal(r);
        if (who != NULL) {
            ar->principal = *who;
        }
    }

    ar->role = role;

    read = (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) ? 1 : 0;

    if (!read && !ngx_http_zmq_admin_same_origin(r)) {
        return ngx_http_zmq_admin_fail(r, NGX_HTTP_FORBIDDEN, "cross_site",
                                       "the admin API takes no write from "
                                       "another site's page (Origin or "
                                       "Sec-Fetch-Site)");
    }

    if (!read && role != NGX_HTTP_ZMQ_ROLE_ADMIN) {
        return ngx_http_zmq_admin_fail(r, NGX_HTTP_FORBIDDEN, "forbidden",
                                         "the viewer role may only read "
                                         "(GET, HEAD)");
    }

    /* the path after the location's prefix: api/SEG[/SEG[/SEG[/SEG]]] */

    if (r->uri.len < clcf->name.len
        || ngx_strncmp(r->uri.data, clcf->name.data, clcf->name.len) != 0)
    {
        goto not_found;
    }

    path.data = r->uri.data + clcf->name.len;
    path.len = r->uri.len - clcf->name.len;

    if (path.len < 5 || ngx_strncmp(path.data, "api/", 4) != 0) {
        goto not_found;
    }

    p = path.data + 4;
    end = path.data + path.len;
    nseg = 0;

    for ( ;; ) {
        if (nseg == 4) {
            goto not_found;
        }

        seg[nseg].data = p;
        while (p < end && *p != '/') {
            p++;
        }
        seg[nseg].len = p - seg[nseg].data;

        /* an empty segment, or a NUL a client put there as %00 */
        if (seg[nseg].len == 0
            || ngx_strlchr(seg[nseg].data, p, '\0') != NULL)
        {
            goto not_found;
        }

        nseg++;

        if (p == end) {
            break;
        }

        p++;
    }

    for (i = 1; i < (ngx_uint_t) nseg; i++) {
        if (seg[i].len > ZGW_NAME_MAX) {
            goto not_found;
        }
    }

    if (seg[0].len >= sizeof(ar->kind_name)) {
        goto not_found;
    }

    *ngx_cpymem(ar->kind_name, seg[0].data, seg[0].len) = '\0';
    ar->kind = zgw_kind_from_name(ar->kind_name);

    if (nseg >= 2) {
        ar->name = ngx_pnalloc(r->pool, seg[1].len + 1);
        if (ar->name == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        *ngx_cpymem(ar->name, seg[1].data, seg[1].len) = '\0';
    }

    if (nseg >= 3) {
        ar->op = seg[2];
    }

    if (nseg == 4) {
        ar->id = ngx_pnalloc(r->pool, seg[3].len + 1);
        if (ar->id == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        *ngx_cpymem(ar->id, seg[3].data, seg[3].len) = '\0';
    }

    if (ar->kind < 0) {
        if (nseg != 1) {
            goto not_found;
        }

        if (ngx_strcmp(ar->kind_name, "status") == 0
            || ngx_strcmp(ar->kind_name, "export") == 0
            || ngx_strcmp(ar->kind_name, "whoami") == 0
            || ngx_strcmp(ar->kind_name, "openapi.json") == 0)
        {
            return ngx_http_zmq_admin_route(r, ar, NGX_HTTP_GET,
                                            &ngx_http_zmq_admin_allow_get);
        }

        if (ngx_strcmp(ar->kind_name, "import") == 0) {
            return ngx_http_zmq_admin_route(r, ar, NGX_HTTP_POST,
                                            &ngx_http_zmq_admin_allow_post);
        }

        if (!zgw_name_valid(ar->kind_name)) {
            goto not_found;
        }

        return ngx_http_zmq_admin_fail(r, NGX_HTTP_NOT_FOUND, "not_found",
                                         "no kind \"%s\": api/ serves "
                                         "status, whoami, export, import, "
                                         "openapi.json and the kinds "
                                         ZGW_KIND_NAMES, ar->kind_name);
    }

    switch (nseg) {

    case 1:
        return ngx_http_zmq_admin_route(r, ar, NGX_HTTP_GET|NGX_HTTP_POST,
                                        &ngx_http_zmq_admin_allow_kind);

    case 2:
        return ngx_http_zmq_admin_route(r, ar,
                                        NGX_HTTP_GET|NGX_HTTP_PUT
                                        |NGX_HTTP_PATCH|NGX_HTTP_DELETE,
                                        &ngx_http_zmq_admin_allow_object);

    case 3:
        if (ngx_http_zmq_admin_op_known(ar)) {
            return ngx_http_zmq_admin_route(r, ar, NGX_HTTP_POST,
                                            &ngx_http_zmq_admin_allow_post);
        }

        break;

    default: /* 4 */
        if (ar->kind == ZGW_KIND_SECURITY && ar->op.len == 4
            && ngx_strncmp(ar->op.data, "keys", 4) == 0)
        {
            return ngx_http_zmq_admin_route(r, ar, NGX_HTTP_DELETE,
                                            &ngx_http_zmq_admin_allow_delete);
        }

        break;
    }

not_found:

    return ngx_http_zmq_admin_fail(r, NGX_HTTP_NOT_FOUND, "not_found",
                                     "nothing is served at this path: see "
                                     "api/openapi.json for the admin API's "
                                     "paths");
}


/*
 * Cross-site request forgery: a browser that once answered the API's Basic
 * challenge sends those credentials with any site's form post. Browsers
 * say where a request comes from (Sec-Fetch-Site; Origin on every POST, and
 * "null" from a file or a sandbox), so a write is refused when they name
 * another site. Clients that are no browser send neither, and pass.
 */
static ngx_flag_t
ngx_http_zmq_admin_same_origin(ngx_http_request_t *r)
{
    u_char           *p, *end;
    ngx_str_t         origin, site, host;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    ngx_str_null(&origin);
    ngx_str_null(&site);

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

        if (h[i].key.len == 6
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Origin", 6) == 0)
        {
            if (origin.data != NULL) {
                return 0;               /* two: trust neither */
            }

            origin = h[i].value;

        } else if (h[i].key.len == 14
                   && ngx_strncasecmp(h[i].key.data,
                                      (u_char *) "Sec-Fetch-Site", 14) == 0)
        {
            site = h[i].value;
        }
    }

    if ((site.len == 10
         && ngx_strncasecmp(site.data, (u_char *) "cross-site", 10) == 0)
        || (site.len == 9
            && ngx_strncasecmp(site.data, (u_char *) "same-site", 9) == 0))
    {
        return 0;
    }

    if (origin.data == NULL) {
        return 1;
    }

    /* scheme://host[:port], which must be the Host the request names */
    p = ngx_strlcasestrn(origin.data, origin.data + origin.len,
                         (u_char *) "://", 3 - 1);
    if (p == NULL || r->headers_in.host == NULL) {
        return 0;
    }

    p += 3;
    end = origin.data + origin.len;
    host = r->headers_in.host->value;

    return (size_t) (end - p) == host.len
           && ngx_strncasecmp(p, host.data, host.len) == 0;
}


/* the operations of api/KIND/NAME/OP, by kind */
static ngx_flag_t
ngx_http_zmq_admin_op_known(ngx_http_zmq_admin_req_t *ar)
{
    ngx_str_t  *op = &ar->op;

#define ngx_http_zmq_admin_is(s)                                            \
    (op->len == sizeof(s) - 1 && ngx_strncmp(op->data, s, op->len) == 0)

    switch (ar->kind) {

    case ZGW_KIND_AMQP_DEF:
        return ngx_http_zmq_admin_is("ping")
               || ngx_http_zmq_admin_is("password");

    case ZGW_KIND_HTTP_OUTCONN:
        return ngx_http_zmq_admin_is("ping")
               || ngx_http_zmq_admin_is("password");

    case ZGW_KIND_STOMP_DEF:
        return ngx_http_zmq_admin_is("ping")
               || ngx_http_zmq_admin_is("password");

    case ZGW_KIND_SECURITY:
        return ngx_http_zmq_admin_is("password")
               || ngx_http_zmq_admin_is("keys");

    case ZGW_KIND_AMQP_OUTCONN:
    case ZGW_KIND_STOMP_OUTCONN:
        return ngx_http_zmq_admin_is("send");

    case ZGW_KIND_SERVICE:
        return ngx_http_zmq_admin_is("invoke");
    }

#undef ngx_http_zmq_admin_is

    return 0;
}


/*
 * The path is known and serves the methods in allowed: 405 for another
 * method; reads are answered here, anything else once its body is read.
 */
static ngx_int_t
ngx_http_zmq_admin_route(ngx_http_request_t *r, ngx_http_zmq_admin_req_t *ar,
    ngx_uint_t allowed, ngx_str_t *allow)
{
    ngx_int_t  rc;

    if (allowed & NGX_HTTP_GET) {
        allowed |= NGX_HTTP_HEAD;
    }

    if (!(r->method & allowed)) {
        if (ngx_http_zmq_add_header(r, "Allow", allow) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_zmq_admin_fail(r, NGX_HTTP_NOT_ALLOWED,
                                         "method_not_allowed", "this path "
                                         "serves %V", allow);
    }

    if (r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD)) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_zmq_admin_read(r, ar);
    }

    /* ping takes no body; everything else reads it first */
    if (ar->op.len == 4 && ngx_strncmp(ar->op.data, "ping", 4) == 0) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_zmq_admin_ping(r, ar);
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_zmq_admin_body_read);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_zmq_admin_body_read(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_http_zmq_ctx_t        *ctx;
    ngx_http_zmq_admin_req_t  *ar;

    ctx = ngx_http_get_module_ctx(r, ngx_http_zmq_module);
    ar = ctx->admin;

    if (ar->op.len == 4 && ngx_strncmp(ar->op.data, "send", 4) == 0) {
        rc = ngx_http_zmq_admin_send(r, ar);

    } else if (ar->op.len == 6
               && ngx_strncmp(ar->op.data, "invoke", 6) == 0)
    {
        rc = ngx_http_zmq_admin_invoke(r, ar);

    } else {
        rc = ngx_http_zmq_admin_write(r, ar);
    }

    ngx_http_finalize_request(r, rc);
}


/* GET and HEAD: answered from the configuration this worker runs */
static ngx_int_t
ngx_http_zmq_admin_read(ngx_http_request_t *r, ngx_http_zmq_admin_req_t *ar)
{
    json_t                  *doc;
    ngx_http_zmq_runtime_t  *rt;

    if (ar->kind < 0 && ngx_strcmp(ar->kind_name, "openapi.json") == 0) {
        return ngx_http_zmq_admin_openapi(r);
    }

    if (ar->kind < 0 && ngx_strcmp(ar->kind_name, "whoami") == 0) {
        /* who the credentials prove to be, and what they may do */
        doc = json_pack("{s:s,s:s%}", "role",
                        ar->role == NGX_HTTP_ZMQ_ROLE_VIEWER ? "viewer"
                                                             : "admin",
                        "principal", (char *) ar->principal.data,
                        ar->principal.len);
        if (doc == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ar->principal.len == 1 && ar->principal.data[0] == '-') {
            json_object_set_new(doc, "principal", json_null());
        }

        return ngx_http_zmq_send_doc(r, NGX_HTTP_OK, doc);
    }

    if (ar->kind < 0 && ngx_strcmp(ar->kind_name, "status") == 0) {
        doc = ngx_http_zmq_status_doc(r);
        if (doc == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_zmq_send_doc(r, NGX_HTTP_OK, doc);
    }

    rt = ngx_http_zmq_runtime_current();

    if (rt == NULL || rt->cfg == NULL) {
        return ngx_http_zmq_admin_fail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                         "service_unavailable",
                                         "this worker runs no "
                                         "configuration yet");
    }

    if (ar->kind < 0) {
        /* export */
        doc = zgw_config_export(rt->cfg, 0);
        if (doc == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_zmq_send_doc(r, NGX_HTTP_OK, doc);
    }

    if (ar->name == NULL) {
        return ngx_http_zmq_admin_list(r, rt, ar->kind);
    }

    return ngx_http_zmq_admin_get(r, rt, ar->kind, ar->name);
}


/*
 * A page of the kind's objects sorted by name, with Django's Paginator
 * semantics: num_pages is at least 1 (page 1 of nothing is an empty page),
 * a page past the last one, or below 1, is 404.
 */
static ngx_int_t
ngx_http_zmq_admin_list(ngx_http_request_t *r, ngx_http_zmq_runtime_t *rt,
    int kind)
{
    json_t       *doc, *data, *obj, *shown;
    ngx_int_t     page, size, count, pages, i, first, last;
    ngx_str_t     q, raw;
    const char   *name, **names;
    u_char       *dst, *src;

    if (ngx_http_zmq_admin_arg(r, "page", 1, &page) != NGX_OK) {
        return ngx_http_zmq_admin_fail(r, NGX_HTTP_BAD_REQUEST,
                                        "bad_request", "page must be an "
                                        "integer (the first page is 1)");
    }

    if (ngx_http_zmq_admin_arg(r, "page_size", NGX_HTTP_ZMQ_ADMIN_PAGE_SIZE,
                               &size)
        != NGX_OK
        || size < 1 || size > NGX_HTTP_ZMQ_ADMIN_PAGE_SIZE_MAX)
    {
        return ngx_http_zmq_admin_fail(r, NGX_HTTP_BAD_REQUEST,
                                        "bad_request", "page_size must be "
                                        "an integer from 1 to %d",
                                        NGX_HTTP_ZMQ_ADMIN_PAGE_SIZE_MAX);
    }

    ngx_str_null(&q);

    if (ngx_http_arg(r, (u_char *) "q", 1, &raw) == NGX_OK && raw.len) {
        q.data = ngx_pnalloc(r->pool, raw.len);
        if (q.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        dst = q.data;
        src = raw.data;
        ngx_unescape_uri(&dst, &src, raw.len, 0);
        q.len = dst - q.data;
    }

    names = ngx_palloc(r->pool, (zgw_config_count(rt->cfg, kind) + 1)
                                * sizeof(char *));
    if (names == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    count = 0;

    json_object_foreach(rt->cfg->objs[kind], name, obj) {
        if (ngx_http_zmq_admin_match(name, &q)) {
            names[count++] = name;
        }
    }

    ngx_qsort(names, count, sizeof(char *), ngx_http_zmq_admin_cmp);

    pages = count == 0 ? 1 : (count + size - 1) / size;

    if (page < 1 || page > pages) {
        return ngx_http_zmq_admin_fail(r, NGX_HTTP_NOT_FOUND, "not_found",
                                        "page %i contains no results: "
                                        "there %s %i page%s", page,
                                        pages == 1 ? "is" : "are", pages,
                                        pages == 1 ? "" : "s");
    }

    first = (page - 1) * size;
    last = ngx_min(first + size, count);

    doc = json_object();
    data = json_array();

    if (doc == NULL || data == NULL
        || json_object_set_new(doc, "data", data) != 0)
    {
        json_decref(doc);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = first; i < last; i++) {
        shown = ngx_http_zmq_admin_object(kind, zgw_config_get(rt->cfg, kind,
                                                               names[i]));
        if (json_array_append_new(data, shown) != 0) {
            json_decref(doc);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (json_object_set_new(doc, "page",
                            json_pack("{s:I,s:I,s:I,s:I}",
                                      "number", (json_int_t) page,
                                      "size", (json_int_t) size,
                                      "count", (json_int_t) count,
                                      "num_pages", (json_int_t) pages))
        != 0
        || json_object_set_new(doc, "version",
                               json_integer(rt->version)) != 0)
    {
        json_decref(doc);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_zmq_send_doc(r, NGX_HTTP_OK, doc);
}


static ngx_int_t
ngx_http_zmq_admin_get(ngx_http_request_t *r, ngx_http_zmq_runtime_t *rt,
    int kind, char *name)
{
    u_char     etag[32], *p;
    json_t    *obj, *shown;
    ngx_str_t  value;

    obj = NULL;

    if (zgw_name_valid(name)) {
        obj = zgw_config_get(rt->cfg, kind, name);
    }

    if (obj == NULL) {
        if (!zgw_name_valid(name)) {
            return ngx_http_zmq_admin_fail(r, NGX_HTTP_NOT_FOUND,
                                           "not_found", "no %s of that "
                                           "name", zgw_kind_name(kind));
        }

        return ngx_http_zmq_admin_fail(r, NGX_HTTP_NOT_FOUND, "not_found",
                                       "%s '%s' does not exist",
                                       zgw_kind_name(kind), name);
    }

    /* the version the store last wrote it at: If-Match takes it back */
    p = ngx_snprintf(etag, sizeof(etag), "\"%L\"",
                     zgw_config_object_version(rt->cfg, kind, name));
    value.data = etag;
    value.len = p - etag;

    if (ngx_http_zmq_add_header(r, "ETag", &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    shown = ngx_http_zmq_admin_object(kind, obj);
    if (shown == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_zmq_send_doc(r, NGX_HTTP_OK, shown);
}


/* an integer argument: def when absent; NGX_ERROR when not an integer */
static ngx_int_t
ngx_http_zmq_admin_arg(ngx_http_request_t *r, const char *name,
    ngx_int_t def, ngx_int_t *value)
{
    ngx_str_t  v;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &v) != NGX_OK) {
        *value = def;
        return NGX_OK;
    }

    *value = ngx_atoi(v.data, v.len);

    return *value == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


/* ?q=: the name contains it, ignoring ASCII case */
static ngx_flag_t
ngx_http_zmq_admin_match(const char *name, ngx_str_t *q)
{
    size_t  len;

    if (q->len == 0) {
        return 1;
    }

    len = ngx_strlen(name);

    return ngx_strlcasestrn((u_char *) name, (u_char *) name + len, q->data,
                            q->len - 1)
           != NULL;
}


/*
 * One object as the API shows it: a secret that is set reads as
 * {"$set": true}; an apikey definition's keys show their ids only.
 */
json_t *
ngx_http_zmq_admin_object(int kind, json_t *obj)
{
    size_t   i;
    json_t  *shown, *keys, *k;

    shown = zgw_object_export(kind, obj, ZGW_EXPORT_MARK_SET);
    if (shown == NULL || kind != ZGW_KIND_SECURITY) {
        return shown;
    }

    keys = json_object_get(shown, "keys");

    json_array_foreach(keys, i, k) {
        json_array_set_new(keys, i, json_pack("{s:O}", "id",
                                              json_object_get(k, "id")));
    }

    return shown;
}


/* the module's JSON error, with a message made of plain ASCII arguments */
ngx_int_t
ngx_http_zmq_admin_fail(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *fmt, ...)
{
    u_char     *msg, *p;
    va_list     args;
    ngx_int_t   rc;

    /*
     * An answer given before the body was read (an unknown path, a method
     * not served): the body is discarded, not read as the connection's
     * next request (nor logged as a bad request line, secrets and all).
     * A body read or being read is left alone.
     */
    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    msg = ngx_pnalloc(r->pool, 512);
    if (msg == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    va_start(args, fmt);
    p = ngx_vslprintf(msg, msg + 511, fmt, args);
    va_end(args);

    *p = '\0';

    return ngx_http_zmq_error(r, status, code, (char *) msg, 0);
}


static int
ngx_http_zmq_admin_cmp(const void *a, const void *b)
{
    return ngx_strcmp(*(const char *const *) a, *(const char *const *) b);
}


ngx_int_t
ngx_http_zmq_admin_body_raw(ngx_http_request_t *r, ngx_str_t *body)
{
    off_t         len;
    u_char       *p;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    body->len = 0;
    body->data = (u_char *) "";

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    if (len == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, (size_t) len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            /* a body larger than client_body_buffer_size */
            n = ngx_read_file(b->file, p, (size_t) (b->file_last - b->file_pos),
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    body->len = p - body->data;
    *p = '\0';

    return NGX_OK;
}


json_t *
ngx_http_zmq_admin_body_json(ngx_http_request_t *r, ngx_flag_t any,
    ngx_int_t *rc)
{
    json_t        *doc;
    ngx_str_t      body;
    json_error_t   jerr;

    if (ngx_http_zmq_admin_body_raw(r, &body) != NGX_OK) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NULL;
    }

    if (body.len == 0) {
        *rc = ngx_http_zmq_admin_fail(r, NGX_HTTP_BAD_REQUEST, "bad_json",
                                      "the request has no body: send a "
                                      "JSON %s", any ? "document" : "object");
        return NULL;
    }

    doc = json_loadb((char *) body.data, body.len,
                     JSON_REJECT_DUPLICATES, &jerr);

    if (doc == NULL) {
        *rc = ngx_http_zmq_admin_fail(r, NGX_HTTP_BAD_REQUEST, "bad_json",
                                      "the body is not JSON: line %d, "
                                      "column %d", jerr.line, jerr.column);
        return NULL;
    }

    if (!any && !json_is_object(doc)) {
        json_decref(doc);
        *rc = ngx_http_zmq_admin_fail(r, NGX_HTTP_BAD_REQUEST, "bad_json",
                                      "the body must be a JSON object");
        return NULL;
    }

    return doc;
}
