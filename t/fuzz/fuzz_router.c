
/*
 * libFuzzer target: the router of zmq_router locations
 * (ngx_http_zmq_runtime_route in ngx_http_zmq_runtime.c), paths and
 * methods.
 *
 * The input is lines: "R METHOD URL_PATH" adds a REST channel ("!R" an
 * inactive one), "Q METHOD URI" asks for a route. Channels go through the
 * configuration model (invalid ones are left out, as a store would),
 * the runtime is built and applied as for a snapshot, and every answer is
 * compared with a small reference router written from the README: path
 * segments (empty ones ignored) match literally or as {param}; a path
 * ending in slash-star matches any longer path; exact paths win over
 * {param} paths, which win over prefixes; a path that matches with the
 * wrong method is 405 with the methods that would do, else 404.
 */


#include "ngx_fuzz.h"

#include <ngx_http.h>

#define ngx_palloc   ngx_fuzz_palloc
#define ngx_pnalloc  ngx_fuzz_palloc
#define ngx_pcalloc  ngx_fuzz_pcalloc

#include "ngx_http_zmq_runtime.c"

#undef ngx_palloc
#undef ngx_pnalloc
#undef ngx_pcalloc


#define FUZZ_SEGS_MAX  4096


typedef struct {
    ngx_str_t   s[FUZZ_SEGS_MAX];
    ngx_uint_t  n;
} fuzz_segs_t;


static ngx_http_zmq_worker_stats_t  fuzz_stats;


/* the worker struct the module's code finds through the cycle */
static ngx_http_zmq_worker_t     fuzz_worker;
static ngx_http_zmq_main_conf_t  fuzz_zmcf;


static void
fuzz_worker_setup(void)
{
    fuzz_zmcf.worker = &fuzz_worker;
    ngx_fuzz_http_main_conf(&ngx_http_zmq_module, &fuzz_zmcf);
}


static struct {
    const char  *name;
    ngx_uint_t   method;
} fuzz_methods[] = {
    { "GET", NGX_HTTP_GET }, { "POST", NGX_HTTP_POST },
    { "PUT", NGX_HTTP_PUT }, { "PATCH", NGX_HTTP_PATCH },
    { "DELETE", NGX_HTTP_DELETE }, { "HEAD", NGX_HTTP_HEAD },
    { "ANY", 0 }, { NULL, 0 }
};


static void
fuzz_split(u_char *p, u_char *end, fuzz_segs_t *segs)
{
    u_char  *start;

    segs->n = 0;

    while (p < end && segs->n < FUZZ_SEGS_MAX) {
        while (p < end && *p == '/') {
            p++;
        }
        start = p;
        while (p < end && *p != '/') {
            p++;
        }
        if (p > start) {
            segs->s[segs->n].data = start;
            segs->s[segs->n].len = p - start;
            segs->n++;
        }
    }
}


/* 0 exact, 1 {param}, 2 prefix; -1 no match of the path */
static ngx_int_t
fuzz_ref_match(ngx_http_zmq_route_t *route, fuzz_segs_t *uri)
{
    u_char       *end;
    ngx_uint_t    i, prefix, param;
    fuzz_segs_t  *rs;

    static fuzz_segs_t  segs;

    rs = &segs;
    end = route->url_path.data + route->url_path.len;
    prefix = route->url_path.len >= 2 && end[-1] == '*' && end[-2] == '/';
    fuzz_split(route->url_path.data, prefix ? end - 2 : end, rs);

    if (prefix ? uri->n < rs->n : uri->n != rs->n) {
        return -1;
    }

    param = 0;

    for (i = 0; i < rs->n; i++) {
        if (rs->s[i].len >= 2 && rs->s[i].data[0] == '{'
            && rs->s[i].data[rs->s[i].len - 1] == '}')
        {
            param = 1;
            continue;
        }

        if (rs->s[i].len != uri->s[i].len
            || ngx_memcmp(rs->s[i].data, uri->s[i].data, rs->s[i].len) != 0)
        {
            return -1;
        }
    }

    /* the module ranks by a '{' anywhere in the path */
    if (ngx_strlchr(route->url_path.data, end, '{') != NULL) {
        param = 1;
    }

    return prefix ? 2 : (ngx_int_t) param;
}


static void
fuzz_route(ngx_pool_t *pool, ngx_uint_t method, u_char *uri, size_t len)
{
    u_char                *p;
    ngx_int_t              rc, cls, best;
    ngx_str_t              allow;
    ngx_uint_t             i, n, nparams, methods, ok;
    ngx_http_request_t     r;
    ngx_http_zmq_param_t   params[NGX_HTTP_ZMQ_PARAMS_MAX];
    ngx_http_zmq_route_t  *found, *route;

    static fuzz_segs_t     segs;

    ngx_memzero(&r, sizeof(ngx_http_request_t));
    r.pool = pool;
    r.method = method;
    r.uri.data = uri;
    r.uri.len = len;

    found = NULL;
    nparams = 0;
    ngx_str_null(&allow);

    rc = ngx_http_zmq_runtime_route(&r, &found, params, &nparams, &allow);

    /* the reference: the best class whose paths match, and its methods */

    fuzz_split(uri, uri + len, &segs);
    route = fuzz_worker.rt->routes.elts;
    best = -1;
    methods = 0;
    ok = 0;

    for (i = 0; i < fuzz_worker.rt->routes.nelts; i++) {
        if (!route[i].active) {
            continue;
        }

        cls = fuzz_ref_match(&route[i], &segs);
        if (cls < 0 || (best >= 0 && cls > best)) {
            continue;
        }

        if (best < 0 || cls < best) {
            best = cls;
            methods = 0;
            ok = 0;
        }

        methods |= route[i].method;
        if (route[i].method == 0 || route[i].method == method) {
            ok = 1;
        }
    }

    if (rc == NGX_OK) {
        if (found == NULL || !found->active
            || (found->method != 0 && found->method != method))
        {
            ngx_fuzz_fail("a route that is inactive or of another method");
        }

        cls = fuzz_ref_match(found, &segs);
        if (cls < 0) {
            ngx_fuzz_fail("\"%*s\" routed to \"%V\", which does not "
                          "match it (%ui segments)", ngx_min(len, 200),
                          uri, &found->url_path, segs.n);
        }

        if (cls != best || !ok) {
            ngx_fuzz_fail("\"%*s\" routed to \"%V\" (class %i) though a "
                          "class %i route matches", ngx_min(len, 200),
                          uri, &found->url_path, cls, best);
        }

        if (nparams > NGX_HTTP_ZMQ_PARAMS_MAX) {
            ngx_fuzz_fail("%ui params", nparams);
        }

        for (n = 0; n < nparams; n++) {
            if (params[n].value.len == 0
                || params[n].value.data < uri
                || params[n].value.data + params[n].value.len > uri + len
                || memchr(params[n].value.data, '/', params[n].value.len))
            {
                ngx_fuzz_fail("param %ui is not a segment of the path", n);
            }
        }

        return;
    }

    if (rc == NGX_DECLINED) {
        if (best >= 0) {
            ngx_fuzz_fail("\"%*s\" answered 404 though a route matches",
                          ngx_min(len, 200), uri);
        }
        return;
    }

    if (rc == NGX_HTTP_NOT_ALLOWED) {
        if (best < 0 || ok) {
            ngx_fuzz_fail("\"%*s\" answered 405 though %s",
                          ngx_min(len, 200), uri,
                          best < 0 ? "no route matches"
                                   : "a route takes the method");
        }

        for (i = 0; fuzz_methods[i].name != NULL; i++) {
            if (fuzz_methods[i].method == 0) {
                continue;
            }

            p = ngx_strlcasestrn(allow.data, allow.data + allow.len,
                                 (u_char *) fuzz_methods[i].name,
                                 ngx_strlen(fuzz_methods[i].name) - 1);

            if ((methods & fuzz_methods[i].method) && p == NULL) {
                ngx_fuzz_fail("Allow: \"%V\" lacks %s", &allow,
                              fuzz_methods[i].name);
            }
        }

        return;
    }

    ngx_fuzz_fail("route() returned %i", rc);
}


static ngx_uint_t
fuzz_method(u_char **p, u_char *end)
{
    size_t      len;
    u_char     *s;
    ngx_uint_t  i;

    s = *p;
    while (*p < end && **p != ' ') {
        (*p)++;
    }
    len = *p - s;
    if (*p < end) {
        (*p)++;
    }

    for (i = 0; fuzz_methods[i].name != NULL; i++) {
        if (len == ngx_strlen(fuzz_methods[i].name)
            && ngx_strncmp(s, fuzz_methods[i].name, len) == 0)
        {
            return i;
        }
    }

    return 6;       /* ANY, or GET for a request */
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                    name[32];
    u_char                 *text, *p, *end, *line, *eol;
    json_t                 *obj;
    ngx_uint_t              m, nroutes, active;
    ngx_pool_t             *pool;
    zgw_config_t           *cfg;
    zgw_errors_t            errs;
    ngx_http_zmq_runtime_t *rt;
    ngx_http_zmq_outconn_conf_t *oc;

    ngx_fuzz_start_input();
    fuzz_worker_setup();
    ngx_zmq_amqp_configure(&fuzz_worker.amqp, 5000, 16 * 1024 * 1024);
    ngx_fuzz_check_quiet("before the input");

    /* a copy of the input exactly as large: ASan sees its bounds */
    text = malloc(size ? size : 1);
    if (text == NULL) {
        ngx_fuzz_fail("out of memory");
    }
    ngx_memcpy(text, data, size);
    end = text + size;

    zgw_errors_init(&errs);
    cfg = zgw_config_new();

    obj = json_pack("{s:s, s:s, s:s, s:b}", "name", "rabbit", "host",
                    "127.0.0.1", "password", "guest", "is_active", 0);
    (void) zgw_config_put(cfg, ZGW_KIND_AMQP_DEF, obj, NULL, &errs);
    json_decref(obj);
    obj = json_pack("{s:s, s:s, s:b}", "name", "out", "def", "rabbit",
                    "is_active", 0);
    (void) zgw_config_put(cfg, ZGW_KIND_AMQP_OUTCONN, obj, NULL, &errs);
    json_decref(obj);
    obj = json_pack("{s:s, s:s, s:s, s:s}", "name", "svc", "kind", "publish",
                    "outconn", "out", "routing_key", "{id}");
    (void) zgw_config_put(cfg, ZGW_KIND_SERVICE, obj, NULL, &errs);
    json_decref(obj);

    /* the channels */

    nroutes = 0;

    for (p = text; p < end; p = eol + 1) {
        eol = memchr(p, '\n', end - p);
        if (eol == NULL) {
            eol = end;
        }

        line = p;
        active = 1;
        if (line < eol && *line == '!') {
            active = 0;
            line++;
        }

        if (eol - line < 2 || line[0] != 'R' || line[1] != ' ') {
            continue;
        }

        line += 2;
        m = fuzz_method(&line, eol);
        if (m == 5) {
            m = 6;
        }

        ngx_sprintf((u_char *) name, "r%ui%Z", nroutes++);
        obj = json_pack("{s:s, s:s%, s:s, s:s, s:b}", "name", name,
                        "url_path", line, (size_t) (eol - line),
                        "method", fuzz_methods[m].name, "service", "svc",
                        "is_active", (int) active);
        if (obj == NULL) {
            continue;           /* not UTF-8 */
        }
        zgw_errors_clear(&errs);
        (void) zgw_config_put(cfg, ZGW_KIND_REST_CHANNEL, obj, NULL, &errs);
        json_decref(obj);
    }

    zgw_errors_clear(&errs);
    rt = ngx_http_zmq_runtime_build(cfg, NULL, NULL, ngx_fuzz_log, &errs);
    if (rt == NULL) {
        ngx_fuzz_fail("runtime_build() failed: %s", zgw_errors_first(&errs));
    }

    /* no broker connection: this is about routes */
    oc = rt->outconns.elts;
    for (m = 0; m < rt->outconns.nelts; m++) {
        oc[m].active = 0;
    }

    ngx_http_zmq_runtime_apply(rt, &fuzz_stats, ngx_fuzz_log);
    ngx_fuzz_run_posted();

    /* the requests */

    pool = ngx_create_pool(1024, ngx_fuzz_log);
    if (pool == NULL) {
        ngx_fuzz_fail("out of memory");
    }

    for (p = text; p < end; p = eol + 1) {
        eol = memchr(p, '\n', end - p);
        if (eol == NULL) {
            eol = end;
        }

        line = p;
        if (eol - line < 2 || line[0] != 'Q' || line[1] != ' ') {
            continue;
        }

        line += 2;
        m = fuzz_method(&line, eol);
        fuzz_route(pool, fuzz_methods[m].method ? fuzz_methods[m].method
                                                : NGX_HTTP_GET,
                   line, eol - line);
    }

    ngx_destroy_pool(pool);

    /* an empty configuration retires the connection and frees the rest */

    zgw_config_free(cfg);
    cfg = zgw_config_new();
    rt = ngx_http_zmq_runtime_build(cfg, NULL, NULL, ngx_fuzz_log, &errs);
    if (rt == NULL) {
        ngx_fuzz_fail("runtime_build() failed: %s", zgw_errors_first(&errs));
    }
    ngx_http_zmq_runtime_apply(rt, &fuzz_stats, ngx_fuzz_log);
    ngx_fuzz_run_posted();
    ngx_fuzz_check_quiet("after an empty configuration was applied");

    zgw_config_free(cfg);
    zgw_errors_free(&errs);
    free(text);

    return 0;
}
