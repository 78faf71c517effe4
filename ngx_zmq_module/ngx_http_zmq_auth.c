
/*
 * ngx_zmq: security definitions, checked in NGINX's access phase before
 * the body is read (a refused request never costs reading its body).
 *
 * basic_auth: the password is checked against the stored PBKDF2 hash on a
 * thread pool (100,000 iterations cost tens of milliseconds: never on the
 * event loop); while it runs the request waits (r->main->blocked) and the
 * phases resume when the thread is done. apikey: the SHA-256 digest of the
 * key against each stored digest, on the event loop (microseconds). jwt:
 * zgw_jwt_verify() on the event loop.
 *
 * Successes are cached per worker under an HMAC (with a per-worker random
 * key) of the definition's name, its fingerprint (the SHA-256 of the stored
 * object: any change makes a new one) and the credential, for at most
 * zmq_auth_cache_ttl (and never past a token's exp). Failures are counted
 * per client address and definition: 10 within 10 s answer 429 until the
 * 10 s are over, so a guessing client cannot occupy the thread pool.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#if (NGX_THREADS)
#include <ngx_thread_pool.h>
#endif

#include <sys/resource.h>
#include <sys/syscall.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "ngx_http_zmq_module.h"
#include "ngx_http_zmq_auth.h"
#include "zgw_amqp_check.h"


#define NGX_HTTP_ZMQ_AUTH_NONE       0
#define NGX_HTTP_ZMQ_AUTH_PENDING    1       /* a thread verifies */
#define NGX_HTTP_ZMQ_AUTH_VERIFIED   2       /* the thread is done */
#define NGX_HTTP_ZMQ_AUTH_PASSED     3

#define NGX_HTTP_ZMQ_AUTH_CACHE_MAX  4096
#define NGX_HTTP_ZMQ_AUTH_FAILS_MAX  4096
#define NGX_HTTP_ZMQ_AUTH_FAILS      10      /* failures ... */
#define NGX_HTTP_ZMQ_AUTH_WINDOW     10000   /* ... in this many ms */
#define NGX_HTTP_ZMQ_AUTH_PENDING_MAX  64    /* verifications per worker */
#define NGX_HTTP_ZMQ_AUTH_RESTARTS   3
#define NGX_HTTP_ZMQ_AUTH_NICE       10
#define NGX_HTTP_ZMQ_AUTH_WAIT       10000   /* ms: the pending check's timer */


struct ngx_http_zmq_auth_s {
    ngx_uint_t                   state;
    ngx_uint_t                   restarts;
    ngx_flag_t                   ok;          /* what the thread found */
    ngx_flag_t                   user_ok;
    ngx_uint_t                   role;        /* of the one passed */
    u_char                       fingerprint[NGX_HTTP_ZMQ_DIGEST_LEN];
    u_char                       id[NGX_HTTP_ZMQ_DIGEST_LEN];
    ngx_array_t                 *headers;     /* ngx_keyval_t */
    ngx_http_request_t          *request;
    ngx_queue_t                  queue;       /* waits for another's check */
};


#if (NGX_THREADS)

/* what a thread touches: copies, in r->pool (the request waits for it) */
typedef struct {
    ngx_http_request_t          *request;
    u_char                       id[NGX_HTTP_ZMQ_DIGEST_LEN];
    ngx_event_t                  wait;        /* on the event loop only */
    ngx_flag_t                   charged;     /* took from the budget */
    char                        *hash;
    char                        *password;
    size_t                       password_len;
    ngx_flag_t                   user_ok;
    ngx_flag_t                   ok;
} ngx_http_zmq_auth_task_t;

#endif


static ngx_int_t ngx_http_zmq_auth_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_zmq_auth_check(ngx_http_request_t *r,
    ngx_http_zmq_ctx_t *ctx, ngx_str_t *name);
static ngx_int_t ngx_http_zmq_auth_basic(ngx_http_request_t *r,
    ngx_http_zmq_auth_t *auth, ngx_http_zmq_security_t *sec);
static ngx_int_t ngx_http_zmq_auth_apikey(ngx_http_request_t *r,
    ngx_http_zmq_auth_t *auth, ngx_http_zmq_security_t *sec);
static ngx_int_t ngx_http_zmq_auth_jwt(ngx_http_request_t *r,
    ngx_http_zmq_auth_t *auth, ngx_http_zmq_security_t *sec);
static ngx_int_t ngx_http_zmq_auth_pass(ngx_http_request_t *r,
    ngx_http_zmq_auth_t *auth, ngx_http_zmq_security_t *sec,
    ngx_str_t *principal, json_t *claims);
static ngx_int_t ngx_http_zmq_auth_deny(ngx_http_request_t *r,
    ngx_http_zmq_security_t *sec, const char *reason, ngx_uint_t counted);
static ngx_int_t ngx_http_zmq_auth_answer(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *message,
    time_t retry_after);
static ngx_int_t ngx_http_zmq_auth_throttled(ngx_http_request_t *r,
    ngx_http_zmq_security_t *sec);
static void ngx_http_zmq_auth_count(ngx_http_request_t *r,
    ngx_http_zmq_security_t *sec);
static ngx_flag_t ngx_http_zmq_auth_budget(ngx_http_request_t *r,
    ngx_http_zmq_security_t *sec);
static void ngx_http_zmq_auth_refund(ngx_http_request_t *r);
static void ngx_http_zmq_auth_throttle_id(ngx_http_request_t *r,
    ngx_http_zmq_security_t *sec, u_char *id);
static void ngx_http_zmq_auth_id(ngx_http_zmq_security_t *sec, u_char type,
    ngx_str_t *a, ngx_str_t *b, u_char *id);
static ngx_http_zmq_security_t *ngx_http_zmq_auth_find(ngx_str_t *name);
static void ngx_http_zmq_auth_cleanup_claims(void *data);
static void ngx_http_zmq_auth_jwt_free(void *data);
static ngx_int_t ngx_http_zmq_auth_unhex(u_char *dst, u_char *hex);
#if (NGX_THREADS)
static void ngx_http_zmq_auth_thread(void *data, ngx_log_t *log);
static void ngx_http_zmq_auth_thread_done(ngx_event_t *ev);
static void ngx_http_zmq_auth_wait(ngx_event_t *ev);
#endif


static ngx_str_t  ngx_http_zmq_x_zmq_auth = ngx_string("x-zmq-auth");


/* ------------------------------------------------------------ the phase */


ngx_int_t
ngx_http_zmq_auth_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;
    ngx_http_zmq_main_conf_t   *zmcf;

    zmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_zmq_module);

    ngx_conf_init_msec_value(zmcf->auth_cache_ttl, 60000);
    ngx_conf_init_uint_value(zmcf->auth_fail_rate, 10);

    if (zmcf->auth_pool_name.len == 0) {
        ngx_str_set(&zmcf->auth_pool_name, "default");
    }

    if (!zmcf->auth_used) {
        return NGX_OK;
    }

#if (NGX_THREADS)
    if (ngx_thread_pool_add(cf, &zmcf->auth_pool_name) == NULL) {
        return NGX_ERROR;
    }
#endif

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_zmq_auth_handler;

    return NGX_OK;
}


ngx_int_t
ngx_http_zmq_auth_init_process(ngx_cycle_t *cycle)
{
    ngx_http_zmq_worker_t     *w;
    ngx_http_zmq_main_conf_t  *zmcf;

    zmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_zmq_module);
    w = zmcf->worker;

    if (RAND_bytes(w->auth.key, sizeof(w->auth.key)) != 1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "zmq: the random generator failed");
        return NGX_ERROR;
    }

    w->auth.mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (w->auth.mac == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "zmq: OpenSSL has no HMAC");
        return NGX_ERROR;
    }

    ngx_http_zmq_auth_table_init(&w->auth.cache, NGX_HTTP_ZMQ_AUTH_CACHE_MAX);
    ngx_http_zmq_auth_table_init(&w->auth.fails, NGX_HTTP_ZMQ_AUTH_FAILS_MAX);
    ngx_http_zmq_auth_table_init(&w->auth.inflight,
                                 NGX_HTTP_ZMQ_AUTH_PENDING_MAX + 1);

#if (NGX_THREADS)
    if (zmcf->auth_used) {
        w->auth.pool = ngx_thread_pool_get(cycle, &zmcf->auth_pool_name);
    }
#endif

    w->auth.ready = 1;

    return NGX_OK;
}


void
ngx_http_zmq_auth_exit_process(void)
{
    ngx_http_zmq_worker_t  *w;

    w = ngx_http_zmq_worker();

    if (w == NULL || !w->auth.ready) {
        return;
    }

    ngx_http_zmq_auth_table_clear(&w->auth.cache);
    ngx_http_zmq_auth_table_clear(&w->auth.fails);
    ngx_http_zmq_auth_table_clear(&w->auth.inflight);
    ngx_explicit_memzero(w->auth.key, sizeof(w->auth.key));
    EVP_MAC_free(w->auth.mac);
    w->auth.mac = NULL;
    w->auth.ready = 0;
}


static ngx_int_t
ngx_http_zmq_auth_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_str_t                 allow, *name;
    ngx_flag_t                router;
    ngx_http_zmq_ctx_t       *ctx;
    ngx_http_zmq_loc_conf_t  *zlcf;

    zlcf = ngx_http_get_module_loc_conf(r, ngx_http_zmq_module);

    /*
     * What the request will be served by decides, not where the directive
     * was written: an "if" block keeps its location's content handler
     */
    router = r->content_handler == ngx_http_zmq_router_handler;

    if ((zlcf->security.len == 0 && !router) || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_zmq_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->auth != NULL) {
        switch (ctx->auth->state) {

        case NGX_HTTP_ZMQ_AUTH_PENDING:
            return NGX_AGAIN;

        case NGX_HTTP_ZMQ_AUTH_PASSED:
            return NGX_OK;

        default:
            break;
        }
    }

    name = &zlcf->security;

    if (router) {
        /* the route decides: look it up now, the router uses it later */

        if (ctx->route == NULL) {
            rc = ngx_http_zmq_runtime_route(r, &ctx->route, ctx->params,
                                            &ctx->nparams, &allow);
            if (rc == NGX_ERROR) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            if (rc != NGX_OK) {
                /* 404 or 405: the router answers */
                ctx->route = NULL;
                return NGX_DECLINED;
            }
        }

        if (ctx->route->security.len) {
            name = &ctx->route->security;
        }
    }

    if (name->len == 0) {
        return NGX_DECLINED;
    }

    return ngx_http_zmq_auth_check(r, ctx, name);
}


static ngx_int_t
ngx_http_zmq_auth_check(ngx_http_request_t *r, ngx_http_zmq_ctx_t *ctx,
    ngx_str_t *name)
{
    ngx_int_t                 rc;
    ngx_http_zmq_auth_t      *auth;
    ngx_http_zmq_security_t  *sec;

    auth = ctx->auth;

    if (auth == NULL) {
        auth = ngx_pcalloc(r->pool, sizeof(ngx_http_zmq_auth_t));
        if (auth == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        ctx->auth = auth;
    }

    sec = ngx_http_zmq_auth_find(name);

    if (sec == NULL || sec->broken) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "zmq: security \"%V\" %s: request refused", name,
                      sec == NULL ? "does not exist" : "cannot be used");

        return ngx_http_zmq_auth_answer(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "security_unavailable",
                                        "the security definition of this "
                                        "channel cannot be used", 0);
    }

    if (auth->state == NGX_HTTP_ZMQ_AUTH_VERIFIED) {
        /* a thread checked a password: against this very definition? */

        if (ngx_memcmp(auth->fingerprint, sec->fingerprint,
                       NGX_HTTP_ZMQ_DIGEST_LEN) == 0)
        {
            if (!auth->ok) {
                /* counted when the check was posted */
                return ngx_http_zmq_auth_deny(r, sec, auth->user_ok
                                                      ? "bad password"
                                                      : "unknown user", 0);
            }

            return ngx_http_zmq_auth_pass(r, auth, sec, &sec->username,
                                          NULL);
        }

        if (auth->restarts >= NGX_HTTP_ZMQ_AUTH_RESTARTS) {
            return ngx_http_zmq_auth_deny(r, sec, "the definition kept "
                                          "changing while it was checked",
                                          0);
        }

        /* it changed meanwhile: check again, against what runs now */
        auth->restarts++;
        auth->state = NGX_HTTP_ZMQ_AUTH_NONE;
    }

    if (!sec->active) {
        return ngx_http_zmq_auth_deny(r, sec, "the definition is inactive",
                                      0);
    }

    rc = ngx_http_zmq_auth_throttled(r, sec);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    ngx_memcpy(auth->fingerprint, sec->fingerprint, NGX_HTTP_ZMQ_DIGEST_LEN);

    switch (sec->type) {

    case NGX_HTTP_ZMQ_SEC_BASIC:
        return ngx_http_zmq_auth_basic(r, auth, sec);

    case NGX_HTTP_ZMQ_SEC_APIKEY:
        return ngx_http_zmq_auth_apikey(r, auth, sec);

    default: /* NGX_HTTP_ZMQ_SEC_JWT */
        return ngx_http_zmq_auth_jwt(r, auth, sec);
    }
}


static ngx_http_zmq_security_t *
ngx_http_zmq_auth_find(ngx_str_t *name)
{
    ngx_uint_t                i;
    ngx_http_zmq_worker_t    *w;
    ngx_http_zmq_security_t  *sec;

    w = ngx_http_zmq_worker();

    if (w == NULL || w->rt == NULL) {
        return NULL;
    }

    sec = w->rt->securities.elts;

    for (i = 0; i < w->rt->securities.nelts; i++) {
        if (sec[i].name.len == name->len
            && ngx_strncmp(sec[i].name.data, name->data, name->len) == 0)
        {
            return &sec[i];
        }
    }

    return NULL;
}


/* ------------------------------------------------------------ basic_auth */


static ngx_int_t
ngx_http_zmq_auth_basic(ngx_http_request_t *r, ngx_http_zmq_auth_t *auth,
    ngx_http_zmq_security_t *sec)
{
    ngx_int_t                   rc;
    ngx_flag_t                  user_ok;
    ngx_http_zmq_worker_t      *w;
    ngx_http_zmq_auth_entry_t  *e;
#if (NGX_THREADS)
    ngx_thread_task_t          *task;
    ngx_http_zmq_auth_task_t   *t;
#endif

    w = ngx_http_zmq_worker();

    rc = ngx_http_auth_basic_user(r);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_zmq_auth_deny(r, sec, "no basic credentials", 0);
    }

    /* a NUL would end the password early for the hash */
    if (ngx_strlchr(r->headers_in.passwd.data,
                    r->headers_in.passwd.data + r->headers_in.passwd.len, '\0')
        != NULL)
    {
        return ngx_http_zmq_auth_deny(r, sec, "malformed password", 1);
    }

    ngx_http_zmq_auth_id(sec, 'b', &r->headers_in.user,
                         &r->headers_in.passwd, auth->id);

    e = ngx_http_zmq_auth_table_find(&w->auth.cache, auth->id);
    if (e != NULL) {
        return ngx_http_zmq_auth_pass(r, auth, sec, &sec->username, NULL);
    }

    user_ok = r->headers_in.user.len == sec->username.len
              && CRYPTO_memcmp(r->headers_in.user.data, sec->username.data,
                               sec->username.len) == 0;

    if (sec->clear.data != NULL) {
        /* no hash to compute: compared here, in constant time */
        if (user_ok
            && r->headers_in.passwd.len == sec->clear.len
            && CRYPTO_memcmp(r->headers_in.passwd.data, sec->clear.data,
                             sec->clear.len) == 0)
        {
            return ngx_http_zmq_auth_pass(r, auth, sec, &sec->username,
                                          NULL);
        }

        return ngx_http_zmq_auth_deny(r, sec, user_ok ? "bad password"
                                                      : "unknown user", 1);
    }

#if (NGX_THREADS)

    if (w->auth.pool == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * The same credentials under check already (a client's burst on an
     * empty cache): wait for that answer rather than hash them again.
     */
    e = ngx_http_zmq_auth_table_find(&w->auth.inflight, auth->id);
    if (e != NULL) {
        auth->request = r;
        auth->state = NGX_HTTP_ZMQ_AUTH_PENDING;
        ngx_queue_insert_tail(&e->waiters, &auth->queue);
        r->main->blocked++;
        return NGX_AGAIN;
    }

    if (!ngx_http_zmq_auth_budget(r, sec)) {
        return ngx_http_zmq_auth_answer(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "auth_busy",
                                        "too many password checks failed "
                                        "lately; try again later", 1);
    }

    if (w->auth.pending >= NGX_HTTP_ZMQ_AUTH_PENDING_MAX) {
        ngx_http_zmq_auth_refund(r);
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "zmq: security \"%V\": %ui password checks are under "
                      "way in this worker: request refused", &sec->name,
                      w->auth.pending);

        return ngx_http_zmq_auth_answer(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "auth_busy",
                                        "too many password checks are "
                                        "under way; try again later", 1);
    }

    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_http_zmq_auth_task_t));
    if (task == NULL) {
        ngx_http_zmq_auth_refund(r);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    t = task->ctx;
    t->request = r;
    t->user_ok = user_ok;
    ngx_memcpy(t->id, auth->id, NGX_HTTP_ZMQ_DIGEST_LEN);
    t->hash = ngx_pnalloc(r->pool, sec->hash.len + 1);
    t->password = ngx_pnalloc(r->pool, r->headers_in.passwd.len + 1);

    if (t->hash == NULL || t->password == NULL) {
        ngx_http_zmq_auth_refund(r);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ngx_cpymem(t->hash, sec->hash.data, sec->hash.len) = '\0';
    *ngx_cpymem(t->password, r->headers_in.passwd.data,
                r->headers_in.passwd.len) = '\0';
    t->password_len = r->headers_in.passwd.len;

    task->handler = ngx_http_zmq_auth_thread;
    task->event.data = task;
    task->event.handler = ngx_http_zmq_auth_thread_done;

    t->charged = 1;

    if (ngx_thread_task_post(w->auth.pool, task) != NGX_OK) {
        ngx_http_zmq_auth_refund(r);
        return ngx_http_zmq_auth_answer(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "auth_busy",
                                        "too many password checks are "
                                        "under way; try again later", 1);
    }

    w->auth.pending++;
    auth->state = NGX_HTTP_ZMQ_AUTH_PENDING;
    r->main->blocked++;

    /*
     * The attempt counts now, not when its answer comes: guesses sent all
     * at once meet the throttle as they arrive (a success forgets them).
     */
    ngx_http_zmq_auth_count(r, sec);

    /* later requests with the same credentials wait for this check */
    e = ngx_http_zmq_auth_table_add(&w->auth.inflight, auth->id,
                                    r->connection->log);
    if (e != NULL) {
        e->expires = ngx_current_msec + 86400000;
        ngx_queue_init(&e->waiters);
    }

    /*
     * A request that waits for a thread has no timer of its own, and a
     * worker that shuts down (a reload) exits as soon as no timer is left:
     * it would drop the request unanswered ("open socket left"). This
     * timer keeps the worker until the check is done.
     */
    t->wait.handler = ngx_http_zmq_auth_wait;
    t->wait.data = t;
    t->wait.log = r->connection->log;
    ngx_add_timer(&t->wait, NGX_HTTP_ZMQ_AUTH_WAIT);

    return NGX_AGAIN;

#else

    (void) user_ok;
    return NGX_HTTP_INTERNAL_SERVER_ERROR;

#endif
}


#if (NGX_THREADS)

/* in a thread of the pool: no NGINX state, the copies only */
static void
ngx_http_zmq_auth_thread(void *data, ngx_log_t *log)
{
    ngx_http_zmq_auth_task_t *t = data;

    static __thread ngx_flag_t  niced;

    /*
     * Below the workers: under a flood of wrong passwords the event loops
     * keep the CPU (the thread keeps this priority: an unprivileged
     * process cannot raise it again).
     */
    if (!niced) {
        niced = 1;
        (void) setpriority(PRIO_PROCESS, (id_t) syscall(SYS_gettid),
                           NGX_HTTP_ZMQ_AUTH_NICE);
    }

    t->ok = zgw_password_verify(t->hash, t->password) == 1 && t->user_ok;

    ngx_explicit_memzero(t->password, t->password_len);
}


static void
ngx_http_zmq_auth_thread_done(ngx_event_t *ev)
{
    ngx_flag_t                  ok, user_ok;
    ngx_queue_t                 waiters, *q;
    ngx_connection_t           *c;
    ngx_thread_task_t          *task;
    ngx_http_request_t         *r;
    ngx_http_zmq_auth_t        *a;
    ngx_http_zmq_worker_t      *w;
    ngx_http_zmq_auth_task_t   *t;
    ngx_http_zmq_auth_entry_t  *e;

    task = ev->data;
    t = task->ctx;
    r = t->request;

    w = ngx_http_zmq_worker();
    w->auth.pending--;

    if (t->wait.timer_set) {
        ngx_del_timer(&t->wait);
    }

    /* t lives in r->pool, which resuming r may free: copy what is needed */
    ok = t->ok;
    user_ok = t->user_ok;

    if (ok && t->charged) {
        ngx_http_zmq_auth_refund(r);    /* only failures spend the budget */
    }

    ngx_queue_init(&waiters);

    e = ngx_http_zmq_auth_table_find(&w->auth.inflight, t->id);
    if (e != NULL) {
        if (!ngx_queue_empty(&e->waiters)) {
            ngx_queue_add(&waiters, &e->waiters);
        }
        ngx_http_zmq_auth_table_remove(&w->auth.inflight, e);
    }

    a = ((ngx_http_zmq_ctx_t *) ngx_http_get_module_ctx(r,
                                             ngx_http_zmq_module))->auth;
    a->request = r;

    /* the one that asked, then those that waited for the same answer */

    for ( ;; ) {
        a->ok = ok;
        a->user_ok = user_ok;
        a->state = NGX_HTTP_ZMQ_AUTH_VERIFIED;

        r = a->request;
        c = r->connection;      /* resuming r may free r and its pool */
        r->main->blocked--;

        ngx_http_set_log_request(c->log, r);

        /* the phases again: the access handler reads the result */
        r->write_event_handler(r);
        ngx_http_run_posted_requests(c);

        if (ngx_queue_empty(&waiters)) {
            break;
        }

        q = ngx_queue_head(&waiters);
        ngx_queue_remove(q);
        a = ngx_queue_data(q, ngx_http_zmq_auth_t, queue);
    }
}


/* the check is still under way: the thread pool is that busy */
static void
ngx_http_zmq_auth_wait(ngx_event_t *ev)
{
    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "zmq: a password check has waited %M ms for the thread "
                  "pool", (ngx_msec_t) NGX_HTTP_ZMQ_AUTH_WAIT);

    ngx_add_timer(ev, NGX_HTTP_ZMQ_AUTH_WAIT);
}

#endif


/* ---------------------------------------------------------------- apikey */


static ngx_int_t
ngx_http_zmq_auth_apikey(ngx_http_request_t *r, ngx_http_zmq_auth_t *auth,
    ngx_http_zmq_security_t *sec)
{
    u_char                  md[SHA256_DIGEST_LENGTH];
    ngx_uint_t              i, found, n;
    ngx_list_part_t        *part;
    ngx_table_elt_t        *h, *key;
    ngx_http_zmq_apikey_t  *k;

    key = NULL;
    n = 0;
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

        if (h[i].key.len == sec->header.len
            && ngx_strncasecmp(h[i].key.data, sec->header.data,
                               sec->header.len) == 0)
        {
            key = &h[i];
            n++;
        }
    }

    if (key == NULL) {
        return ngx_http_zmq_auth_deny(r, sec, "no key", 0);
    }

    if (n > 1) {
        return ngx_http_zmq_auth_deny(r, sec, "more than one key", 1);
    }

    SHA256(key->value.data, key->value.len, md);

    /* every stored key compared, in constant time */
    found = sec->keys.nelts;
    k = sec->keys.elts;

    for (i = 0; i < sec->keys.nelts; i++) {
        if (CRYPTO_memcmp(md, k[i].digest, NGX_HTTP_ZMQ_DIGEST_LEN) == 0) {
            found = i;
        }
    }

    ngx_explicit_memzero(md, sizeof(md));

    if (found == sec->keys.nelts) {
        return ngx_http_zmq_auth_deny(r, sec, "unknown key", 1);
    }

    return ngx_http_zmq_auth_pass(r, auth, sec, &k[found].id, NULL);
}


/* ------------------------------------------------------------------- jwt */


static ngx_int_t
ngx_http_zmq_auth_jwt(ngx_http_request_t *r, ngx_http_zmq_auth_t *auth,
    ngx_http_zmq_security_t *sec)
{
    size_t                      i;
    json_t                     *copied, *v;
    ngx_str_t                   token, principal, *names;
    ngx_int_t                   rc;
    ngx_msec_t                  ttl;
    long long                   until, now, now_ms;
    ngx_time_t                 *tp;
    const char                 *reason;
    zgw_jwt_claims_t            claims;
    ngx_pool_cleanup_t         *cln;
    ngx_http_zmq_worker_t      *w;
    ngx_http_zmq_main_conf_t   *zmcf;
    ngx_http_zmq_auth_entry_t  *e;

    w = ngx_http_zmq_worker();
    zmcf = ngx_http_get_module_main_conf(r, ngx_http_zmq_module);

    if (r->headers_in.authorization == NULL) {
        return ngx_http_zmq_auth_deny(r, sec, "no bearer token", 0);
    }

    token = r->headers_in.authorization->value;

    if (token.len < sizeof("Bearer ") - 1
        || ngx_strncasecmp(token.data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1) != 0)
    {
        return ngx_http_zmq_auth_deny(r, sec, "no bearer token", 0);
    }

    token.data += sizeof("Bearer ") - 1;
    token.len -= sizeof("Bearer ") - 1;

    while (token.len && token.data[0] == ' ') {
        token.data++;
        token.len--;
    }

    while (token.len && token.data[token.len - 1] == ' ') {
        token.len--;
    }

    if (token.len > ZGW_JWT_TOKEN_MAX) {
        return ngx_http_zmq_auth_deny(r, sec, "token too large", 1);
    }

    ngx_http_zmq_auth_id(sec, 'j', &token, NULL, auth->id);

    e = ngx_http_zmq_auth_table_find(&w->auth.cache, auth->id);
    if (e != NULL) {
        return ngx_http_zmq_auth_pass(r, auth, sec, &e->principal,
                                      e->claims);
    }

    now = (long long) ngx_time();

    if (zgw_jwt_verify(sec->jwt, (char *) token.data, token.len, now,
                       &claims, &reason)
        != ZGW_OK)
    {
        return ngx_http_zmq_auth_deny(r, sec, reason, 1);
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        json_decref(claims.claims);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_zmq_auth_cleanup_claims;
    cln->data = claims.claims;

    /* the claims the messages carry */

    copied = NULL;

    if (sec->claims.nelts) {
        copied = json_object();
        if (copied == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            json_decref(copied);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cln->handler = ngx_http_zmq_auth_cleanup_claims;
        cln->data = copied;

        names = sec->claims.elts;

        for (i = 0; i < sec->claims.nelts; i++) {
            v = json_object_get(claims.claims, (char *) names[i].data);
            if (v != NULL) {
                json_object_set(copied, (char *) names[i].data, v);
            }
        }
    }

    principal.data = (u_char *) (claims.sub ? claims.sub : "");
    principal.len = ngx_strlen(principal.data);

    rc = ngx_http_zmq_auth_pass(r, auth, sec, &principal, copied);
    if (rc != NGX_OK) {
        return rc;
    }

    /*
     * cached until the first of: the cache's ttl, exp, iat + max_age
     * (the verifier's valid_until); to the millisecond: a token expires
     * when the second exp begins, not up to a second later
     */

    tp = ngx_timeofday();
    now_ms = (long long) tp->sec * 1000 + (long long) tp->msec;
    until = now_ms + (long long) zmcf->auth_cache_ttl;

    if (claims.valid_until <= until / 1000) {
        /* refused from then on (at most ZGW_JWT_TIME_MAX: compared in s) */
        until = claims.valid_until > 0 ? claims.valid_until * 1000 : 0;
    }

    if (until <= now_ms) {
        return NGX_OK;
    }

    ttl = (ngx_msec_t) (until - now_ms);

    e = ngx_http_zmq_auth_table_add(&w->auth.cache, auth->id,
                                    r->connection->log);
    if (e == NULL) {
        return NGX_OK;
    }

    e->principal.data = ngx_alloc(principal.len + 1, r->connection->log);
    if (e->principal.data == NULL) {
        ngx_http_zmq_auth_table_remove(&w->auth.cache, e);
        return NGX_OK;
    }

    *ngx_cpymem(e->principal.data, principal.data, principal.len) = '\0';
    e->principal.len = principal.len;
    e->claims = copied ? json_incref(copied) : NULL;
    e->expires = ngx_current_msec + ttl;
    ngx_memcpy(e->fingerprint, sec->fingerprint, NGX_HTTP_ZMQ_DIGEST_LEN);

    return NGX_OK;
}


static void
ngx_http_zmq_auth_cleanup_claims(void *data)
{
    json_decref((json_t *) data);
}


/* ------------------------------------------------------------- outcomes */


/* passed: the identity (and the claims) the messages will carry */
static ngx_int_t
ngx_http_zmq_auth_pass(ngx_http_request_t *r, ngx_http_zmq_auth_t *auth,
    ngx_http_zmq_security_t *sec, ngx_str_t *principal, json_t *claims)
{
    char                       *text;
    u_char                     *p;
    size_t                      len;
    json_t                     *v;
    const char                 *claim;
    ngx_keyval_t               *kv;
    ngx_http_zmq_worker_t      *w;
    ngx_http_zmq_main_conf_t   *zmcf;
    ngx_http_zmq_auth_entry_t  *e;

    w = ngx_http_zmq_worker();

    auth->headers = ngx_array_create(r->pool, 1 + json_object_size(claims),
                                     sizeof(ngx_keyval_t));
    if (auth->headers == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    kv = ngx_array_push(auth->headers);
    if (kv == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    kv->key = ngx_http_zmq_x_zmq_auth;
    kv->value.len = sec->name.len + 1 + principal->len;
    kv->value.data = ngx_pnalloc(r->pool, kv->value.len);
    if (kv->value.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(kv->value.data, sec->name.data, sec->name.len);
    *p++ = ':';
    ngx_memcpy(p, principal->data, principal->len);

    if (zgw_amqp_header_value_check((char *) kv->value.data, kv->value.len)
        != NULL)
    {
        return ngx_http_zmq_auth_deny(r, sec, "the principal cannot be "
                                      "carried in a header", 1);
    }

    json_object_foreach(claims, claim, v) {
        if (json_is_string(v)) {
            text = NULL;
            len = json_string_length(v);
        } else {
            text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            if (text == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
            len = ngx_strlen(text);
        }

        kv = ngx_array_push(auth->headers);
        if (kv == NULL) {
            free(text);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        kv->key.len = sizeof("x-zmq-claim-") - 1 + ngx_strlen(claim);
        kv->key.data = ngx_pnalloc(r->pool, kv->key.len);
        kv->value.data = ngx_pnalloc(r->pool, len);

        if (kv->key.data == NULL || kv->value.data == NULL) {
            free(text);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_cpymem(kv->key.data, "x-zmq-claim-",
                       sizeof("x-zmq-claim-") - 1);
        ngx_memcpy(p, claim, ngx_strlen(claim));

        ngx_memcpy(kv->value.data, text ? text : json_string_value(v), len);
        kv->value.len = len;
        free(text);

        if (zgw_amqp_header_value_check((char *) kv->value.data, len)
            != NULL)
        {
            /* a header the broker would refuse: left out, said so */
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "zmq: security \"%V\": claim \"%s\" cannot be "
                          "carried in a header: left out", &sec->name,
                          claim);
            auth->headers->nelts--;
        }
    }

    /* basic_auth: the thread's answer is remembered */

    if (sec->type == NGX_HTTP_ZMQ_SEC_BASIC
        && auth->state == NGX_HTTP_ZMQ_AUTH_VERIFIED)
    {
        zmcf = ngx_http_get_module_main_conf(r, ngx_http_zmq_module);

        e = ngx_http_zmq_auth_table_add(&w->auth.cache, auth->id,
                                        r->connection->log);
        if (e != NULL) {
            e->expires = ngx_current_msec + zmcf->auth_cache_ttl;
            ngx_memcpy(e->fingerprint, sec->fingerprint,
                       NGX_HTTP_ZMQ_DIGEST_LEN);
        }
    }

    /* a success forgets the client's failures */

    if (w->auth.fails.n) {
        u_char  tid[NGX_HTTP_ZMQ_DIGEST_LEN];

        ngx_http_zmq_auth_throttle_id(r, sec, tid);
        e = ngx_http_zmq_auth_table_find(&w->auth.fails, tid);
        if (e != NULL) {
            ngx_http_zmq_auth_table_remove(&w->auth.fails, e);
        }
    }

    auth->role = sec->role;
    auth->state = NGX_HTTP_ZMQ_AUTH_PASSED;

    return NGX_OK;
}


/*
 * 401. counted: a failed attempt for the throttle (a request without any
 * credentials costs nothing to refuse and is not counted)
 */
static ngx_int_t
ngx_http_zmq_auth_deny(ngx_http_request_t *r, ngx_http_zmq_security_t *sec,
    const char *reason, ngx_uint_t counted)
{
    ngx_str_t  value;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "zmq: security \"%V\" refused the request: %s",
                  &sec->name, reason);

    if (counted) {
        ngx_http_zmq_auth_count(r, sec);
    }

    switch (sec->type) {

    case NGX_HTTP_ZMQ_SEC_BASIC:
        value.len = sizeof("Basic realm=\"\", charset=\"UTF-8\"") - 1
                    + sec->realm.len;
        value.data = ngx_pnalloc(r->pool, value.len);
        if (value.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        ngx_sprintf(value.data, "Basic realm=\"%V\", charset=\"UTF-8\"",
                    &sec->realm);
        break;

    case NGX_HTTP_ZMQ_SEC_APIKEY:
        value.len = sizeof("ApiKey header=\"\"") - 1 + sec->header.len;
        value.data = ngx_pnalloc(r->pool, value.len);
        if (value.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        ngx_sprintf(value.data, "ApiKey header=\"%V\"", &sec->header);
        break;

    default:
        /* RFC 6750 3.1: no error code when the request had no token */
        if (r->headers_in.authorization == NULL) {
            ngx_str_set(&value, "Bearer");

        } else {
            ngx_str_set(&value, "Bearer error=\"invalid_token\"");
        }
        break;
    }

    r->headers_out.www_authenticate = ngx_list_push(&r->headers_out.headers);
    if (r->headers_out.www_authenticate == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.www_authenticate->hash = 1;
    ngx_str_set(&r->headers_out.www_authenticate->key, "WWW-Authenticate");
    r->headers_out.www_authenticate->value = value;

    return ngx_http_zmq_auth_answer(r, NGX_HTTP_UNAUTHORIZED, "unauthorized",
                                    "the request's credentials were not "
                                    "accepted", 0);
}


/* answers from the access phase: the body is not read, only discarded */
static ngx_int_t
ngx_http_zmq_auth_answer(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message, time_t retry_after)
{
    ngx_int_t  rc;

    if (r->headers_in.expect != NULL && !r->expect_tested) {
        /* no "100 Continue": the client is not invited to send a body
         * that nobody will read; the connection closes after the answer */
        r->expect_tested = 1;
        r->keepalive = 0;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    rc = ngx_http_zmq_error(r, status, code, message, retry_after);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/*
 * The worker's budget of failing password checks (zmq_auth_fail_rate per
 * second, up to a second's worth at once): a check takes one when it
 * starts and gives it back when it succeeds. Guessers spread over many
 * addresses (which the per-address throttle does not see) then cost at
 * most that many hashes a second; past it new credentials get 503 until
 * the budget refills, while cached ones keep passing.
 */
static ngx_flag_t
ngx_http_zmq_auth_budget(ngx_http_request_t *r, ngx_http_zmq_security_t *sec)
{
    ngx_msec_t                 elapsed;
    ngx_uint_t                 cap;
    ngx_http_zmq_worker_t     *w;
    ngx_http_zmq_main_conf_t  *zmcf;

    w = ngx_http_zmq_worker();
    zmcf = ngx_http_get_module_main_conf(r, ngx_http_zmq_module);

    if (zmcf->auth_fail_rate == 0) {
        return 1;
    }

    /* in thousandths of a check: rate per second is rate per ms x 1000 */
    cap = zmcf->auth_fail_rate * 1000;
    elapsed = ngx_current_msec - w->auth.budget_at;
    w->auth.budget_at = ngx_current_msec;

    if (!w->auth.budget_set) {
        w->auth.budget_set = 1;
        w->auth.budget = cap;

    } else if (elapsed >= 1000
               || w->auth.budget + elapsed * zmcf->auth_fail_rate >= cap)
    {
        w->auth.budget = cap;

    } else {
        w->auth.budget += elapsed * zmcf->auth_fail_rate;
    }

    if (w->auth.budget < 1000) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "zmq: security \"%V\": more than %ui password checks "
                      "a second failed in this worker: request refused",
                      &sec->name, zmcf->auth_fail_rate);
        return 0;
    }

    w->auth.budget -= 1000;
    return 1;
}


static void
ngx_http_zmq_auth_refund(ngx_http_request_t *r)
{
    ngx_http_zmq_worker_t     *w;
    ngx_http_zmq_main_conf_t  *zmcf;

    w = ngx_http_zmq_worker();
    zmcf = ngx_http_get_module_main_conf(r, ngx_http_zmq_module);

    if (zmcf->auth_fail_rate == 0) {
        return;
    }

    w->auth.budget += 1000;

    if (w->auth.budget > zmcf->auth_fail_rate * 1000) {
        w->auth.budget = zmcf->auth_fail_rate * 1000;
    }
}


/* one more failed attempt from this client against sec */
static void
ngx_http_zmq_auth_count(ngx_http_request_t *r, ngx_http_zmq_security_t *sec)
{
    ngx_http_zmq_worker_t      *w;
    ngx_http_zmq_auth_entry_t  *e;
    u_char                      tid[NGX_HTTP_ZMQ_DIGEST_LEN];

    w = ngx_http_zmq_worker();

    ngx_http_zmq_auth_throttle_id(r, sec, tid);

    e = ngx_http_zmq_auth_table_find(&w->auth.fails, tid);
    if (e == NULL) {
        e = ngx_http_zmq_auth_table_add(&w->auth.fails, tid,
                                        r->connection->log);
        if (e == NULL) {
            return;
        }
        e->expires = ngx_current_msec + NGX_HTTP_ZMQ_AUTH_WINDOW;
    }

    e->count++;
}


/* NGX_DECLINED: go on; else answered (429) */
static ngx_int_t
ngx_http_zmq_auth_throttled(ngx_http_request_t *r,
    ngx_http_zmq_security_t *sec)
{
    time_t                      wait;
    ngx_http_zmq_worker_t      *w;
    ngx_http_zmq_auth_entry_t  *e;
    u_char                      tid[NGX_HTTP_ZMQ_DIGEST_LEN];

    w = ngx_http_zmq_worker();

    if (w->auth.fails.n == 0) {
        return NGX_DECLINED;
    }

    ngx_http_zmq_auth_throttle_id(r, sec, tid);

    e = ngx_http_zmq_auth_table_find(&w->auth.fails, tid);
    if (e == NULL || e->count < NGX_HTTP_ZMQ_AUTH_FAILS) {
        return NGX_DECLINED;
    }

    wait = (time_t) ((e->expires - ngx_current_msec + 999) / 1000);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "zmq: security \"%V\": %ui failed attempts from this "
                  "client: refused for %T s", &sec->name, e->count, wait);

    return ngx_http_zmq_auth_answer(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                    "too_many_attempts",
                                    "too many failed attempts; try again "
                                    "later", wait > 0 ? wait : 1);
}


/* ---------------------------------------------------------- keyed hashes */


static void
ngx_http_zmq_auth_throttle_id(ngx_http_request_t *r,
    ngx_http_zmq_security_t *sec, u_char *id)
{
    ngx_str_t              addr;
    struct sockaddr       *sa;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6   *sin6;
#endif

    sa = r->connection->sockaddr;

    switch (sa->sa_family) {

    case AF_INET:
        addr.data = (u_char *) &((struct sockaddr_in *) sa)->sin_addr;
        addr.len = 4;
        break;

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) sa;
        addr.data = sin6->sin6_addr.s6_addr;
        addr.len = 16;
        break;
#endif

    default:
        ngx_str_set(&addr, "local");
        break;
    }

    ngx_http_zmq_auth_id(sec, 't', &addr, NULL, id);
}


/*
 * HMAC-SHA256 under the worker's random key of: the use (b, j, t), the
 * definition's name and fingerprint, and one or two values, each with its
 * length, so that no two inputs run into each other.
 */
static void
ngx_http_zmq_auth_id(ngx_http_zmq_security_t *sec, u_char type,
    ngx_str_t *a, ngx_str_t *b, u_char *id)
{
    size_t                  out;
    uint32_t                len;
    EVP_MAC_CTX            *h;
    OSSL_PARAM              params[2];
    ngx_http_zmq_worker_t  *w;

    w = ngx_http_zmq_worker();

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();

    h = EVP_MAC_CTX_new(w->auth.mac);
    if (h == NULL
        || EVP_MAC_init(h, w->auth.key, sizeof(w->auth.key), params) != 1)
    {
        /* an id that nothing matches */
        EVP_MAC_CTX_free(h);
        (void) RAND_bytes(id, NGX_HTTP_ZMQ_DIGEST_LEN);
        return;
    }

    len = (uint32_t) sec->name.len;
    EVP_MAC_update(h, &type, 1);
    EVP_MAC_update(h, (u_char *) &len, sizeof(len));
    EVP_MAC_update(h, sec->name.data, sec->name.len);
    EVP_MAC_update(h, sec->fingerprint, NGX_HTTP_ZMQ_DIGEST_LEN);

    len = (uint32_t) a->len;
    EVP_MAC_update(h, (u_char *) &len, sizeof(len));
    EVP_MAC_update(h, a->data, a->len);

    if (b != NULL) {
        len = (uint32_t) b->len;
        EVP_MAC_update(h, (u_char *) &len, sizeof(len));
        EVP_MAC_update(h, b->data, b->len);
    }

    if (EVP_MAC_final(h, id, &out, NGX_HTTP_ZMQ_DIGEST_LEN) != 1
        || out != NGX_HTTP_ZMQ_DIGEST_LEN)
    {
        (void) RAND_bytes(id, NGX_HTTP_ZMQ_DIGEST_LEN);
    }

    EVP_MAC_CTX_free(h);
}


/* ---------------------------------------------- definitions, as they run */


ngx_int_t
ngx_http_zmq_auth_build(ngx_pool_t *pool, ngx_array_t *secs, json_t *obj,
    const zgw_key_t *key, ngx_log_t *log)
{
    char                     *text, *jwks, *secret;
    size_t                    i, slen;
    json_t                   *k, *v;
    ngx_str_t                *claim;
    const char               *type, *dir, *s;
    zgw_errors_t              errs;
    zgw_jwt_policy_t          policy;
    ngx_pool_cleanup_t       *cln;
    ngx_http_zmq_apikey_t    *ak;
    ngx_http_zmq_security_t  *sec;

    type = json_string_value(json_object_get(obj, "type"));
    dir = json_string_value(json_object_get(obj, "direction"));

    if (type == NULL || (dir != NULL && ngx_strcmp(dir, "in") != 0)) {
        return NGX_OK;                  /* outgoing credentials: zmqd's */
    }

    sec = ngx_array_push(secs);
    if (sec == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(sec, sizeof(ngx_http_zmq_security_t));

    s = json_string_value(json_object_get(obj, "name"));
    sec->name.len = ngx_strlen(s);
    sec->name.data = ngx_pnalloc(pool, sec->name.len);
    if (sec->name.data == NULL) {
        return NGX_ERROR;
    }
    ngx_memcpy(sec->name.data, s, sec->name.len);

    sec->active = json_is_true(json_object_get(obj, "is_active"));

    s = json_string_value(json_object_get(obj, "role"));
    sec->role = (s != NULL && ngx_strcmp(s, "viewer") == 0)
                ? NGX_HTTP_ZMQ_ROLE_VIEWER : NGX_HTTP_ZMQ_ROLE_ADMIN;

    /* whatever changes in the stored object makes a new fingerprint */
    text = json_dumps(obj, JSON_SORT_KEYS | JSON_COMPACT);
    if (text == NULL) {
        return NGX_ERROR;
    }
    SHA256((u_char *) text, ngx_strlen(text), sec->fingerprint);
    free(text);

    if (ngx_array_init(&sec->keys, pool, 1, sizeof(ngx_http_zmq_apikey_t))
        != NGX_OK
        || ngx_array_init(&sec->claims, pool, 1, sizeof(ngx_str_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

#define ngx_http_zmq_auth_str(field, dst)                                    \
    s = json_string_value(json_object_get(obj, field));                     \
    (dst).len = s ? ngx_strlen(s) : 0;                                      \
    (dst).data = ngx_pnalloc(pool, (dst).len + 1);                          \
    if ((dst).data == NULL) {                                               \
        return NGX_ERROR;                                                   \
    }                                                                       \
    *ngx_cpymem((dst).data, s ? s : "", (dst).len) = '\0'

    if (ngx_strcmp(type, "basic_auth") == 0) {
        sec->type = NGX_HTTP_ZMQ_SEC_BASIC;
        ngx_http_zmq_auth_str("username", sec->username);
        ngx_http_zmq_auth_str("realm", sec->realm);

        v = json_object_get(obj, "password");

        if (json_is_string(v)) {
            /* a file: configuration, which holds it in clear anyway */
            ngx_http_zmq_auth_str("password", sec->clear);
            return NGX_OK;
        }

        s = json_string_value(json_object_get(v, "$hash"));
        if (s == NULL) {
            ngx_log_error(NGX_LOG_ERR, log, 0, "zmq: security \"%V\" has no "
                          "password hash: it refuses every request",
                          &sec->name);
            sec->broken = 1;
            return NGX_OK;
        }

        sec->hash.len = ngx_strlen(s);
        sec->hash.data = ngx_pnalloc(pool, sec->hash.len + 1);
        if (sec->hash.data == NULL) {
            return NGX_ERROR;
        }
        *ngx_cpymem(sec->hash.data, s, sec->hash.len) = '\0';

        return NGX_OK;
    }

    if (ngx_strcmp(type, "apikey") == 0) {
        sec->type = NGX_HTTP_ZMQ_SEC_APIKEY;
        ngx_http_zmq_auth_str("header", sec->header);

        json_array_foreach(json_object_get(obj, "keys"), i, k) {
            ak = ngx_array_push(&sec->keys);
            if (ak == NULL) {
                return NGX_ERROR;
            }

            s = json_string_value(json_object_get(k, "id"));
            ak->id.len = ngx_strlen(s);
            ak->id.data = ngx_pnalloc(pool, ak->id.len);
            if (ak->id.data == NULL) {
                return NGX_ERROR;
            }
            ngx_memcpy(ak->id.data, s, ak->id.len);

            s = json_string_value(json_object_get(k, "sha256"));
            if (s == NULL || ngx_strlen(s) != 2 * NGX_HTTP_ZMQ_DIGEST_LEN
                || ngx_http_zmq_auth_unhex(ak->digest, (u_char *) s)
                   != NGX_OK)
            {
                sec->broken = 1;
                return NGX_OK;
            }
        }

        return NGX_OK;
    }

    /* jwt */

    sec->type = NGX_HTTP_ZMQ_SEC_JWT;
    sec->leeway = json_integer_value(json_object_get(obj, "leeway"));
    sec->max_age = json_integer_value(json_object_get(obj, "max_age"));

    json_array_foreach(json_object_get(obj, "claims_to_headers"), i, v) {
        claim = ngx_array_push(&sec->claims);
        if (claim == NULL) {
            return NGX_ERROR;
        }
        s = json_string_value(v);
        claim->len = ngx_strlen(s);
        claim->data = ngx_pnalloc(pool, claim->len + 1);
        if (claim->data == NULL) {
            return NGX_ERROR;
        }
        *ngx_cpymem(claim->data, s, claim->len) = '\0';
    }

    ngx_memzero(&policy, sizeof(zgw_jwt_policy_t));
    policy.alg = zgw_jwt_alg_parse(json_string_value(json_object_get(obj,
                                                                     "alg")));
    policy.iss = json_string_value(json_object_get(obj, "iss"));
    policy.aud = json_object_get(obj, "aud");
    policy.leeway = sec->leeway;
    policy.require_exp = json_is_true(json_object_get(obj, "require_exp"));
    policy.max_age = sec->max_age;

    zgw_errors_init(&errs);
    secret = NULL;
    slen = 0;
    jwks = NULL;

    if ((int) policy.alg < 0) {
        zgw_errors_add(&errs, "unknown alg");
        goto broken;
    }

    if (json_object_get(obj, "secret") != NULL) {
        secret = zgw_object_secret(ZGW_KIND_SECURITY, obj, "secret", key,
                                   &errs);
        if (secret == NULL) {
            goto broken;
        }
        slen = ngx_strlen(secret);
    }

    if (json_object_get(obj, "jwks") != NULL) {
        jwks = json_dumps(json_object_get(obj, "jwks"), JSON_COMPACT);
        if (jwks == NULL) {
            zgw_errors_add(&errs, "out of memory");
            goto broken;
        }
    }

    sec->jwt = zgw_jwt_verifier_new(&policy, (u_char *) secret, slen,
                  json_string_value(json_object_get(obj, "public_key")),
                  jwks, &errs);

    if (secret != NULL) {
        ngx_explicit_memzero(secret, slen);
        free(secret);
    }

    free(jwks);

    if (sec->jwt == NULL) {
        goto broken;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        zgw_jwt_verifier_free(sec->jwt);
        sec->jwt = NULL;
        zgw_errors_free(&errs);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_zmq_auth_jwt_free;
    cln->data = sec->jwt;

    zgw_errors_free(&errs);
    return NGX_OK;

broken:

    ngx_log_error(NGX_LOG_ERR, log, 0, "zmq: security \"%V\" cannot be "
                  "used (it refuses every request): %s", &sec->name,
                  zgw_errors_first(&errs));
    zgw_errors_free(&errs);
    sec->broken = 1;
    return NGX_OK;

#undef ngx_http_zmq_auth_str
}


/* 64 hex digits into 32 bytes */
static ngx_int_t
ngx_http_zmq_auth_unhex(u_char *dst, u_char *hex)
{
    ngx_int_t   hi, lo;
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_ZMQ_DIGEST_LEN; i++) {
        hi = ngx_hextoi(&hex[2 * i], 1);
        lo = ngx_hextoi(&hex[2 * i + 1], 1);

        if (hi == NGX_ERROR || lo == NGX_ERROR) {
            return NGX_ERROR;
        }

        dst[i] = (u_char) (hi << 4 | lo);
    }

    return NGX_OK;
}


static void
ngx_http_zmq_auth_jwt_free(void *data)
{
    zgw_jwt_verifier_free(data);
}


void
ngx_http_zmq_auth_applied(ngx_array_t *secs)
{
    ngx_uint_t                  i, keep;
    ngx_queue_t                *q, *next;
    ngx_http_zmq_worker_t      *w;
    ngx_http_zmq_security_t    *sec;
    ngx_http_zmq_auth_entry_t  *e;

    w = ngx_http_zmq_worker();

    if (w == NULL || !w->auth.ready) {
        return;
    }

    /* what a definition that changed (or went) proved is forgotten now */

    sec = secs->elts;

    for (q = ngx_queue_head(&w->auth.cache.lru);
         q != ngx_queue_sentinel(&w->auth.cache.lru);
         q = next)
    {
        next = ngx_queue_next(q);
        e = ngx_queue_data(q, ngx_http_zmq_auth_entry_t, queue);
        keep = 0;

        for (i = 0; i < secs->nelts; i++) {
            if (ngx_memcmp(e->fingerprint, sec[i].fingerprint,
                           NGX_HTTP_ZMQ_DIGEST_LEN) == 0)
            {
                keep = 1;
                break;
            }
        }

        if (!keep) {
            ngx_http_zmq_auth_table_remove(&w->auth.cache, e);
        }
    }
}


ngx_array_t *
ngx_http_zmq_auth_headers(ngx_http_request_t *r)
{
    ngx_http_zmq_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_zmq_module);

    if (ctx == NULL || ctx->auth == NULL
        || ctx->auth->state != NGX_HTTP_ZMQ_AUTH_PASSED)
    {
        return NULL;
    }

    return ctx->auth->headers;
}


ngx_int_t
ngx_http_zmq_auth_role(ngx_http_request_t *r)
{
    ngx_http_zmq_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_zmq_module);

    if (ctx == NULL || ctx->auth == NULL
        || ctx->auth->state != NGX_HTTP_ZMQ_AUTH_PASSED)
    {
        return NGX_DECLINED;
    }

    return ctx->auth->role;
}


/* "definition:principal" of the request that passed, or NULL */
ngx_str_t *
ngx_http_zmq_auth_principal(ngx_http_request_t *r)
{
    ngx_keyval_t        *kv;
    ngx_http_zmq_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_zmq_module);

    if (ctx == NULL || ctx->auth == NULL
        || ctx->auth->state != NGX_HTTP_ZMQ_AUTH_PASSED
        || ctx->auth->headers == NULL || ctx->auth->headers->nelts == 0)
    {
        return NULL;
    }

    kv = ctx->auth->headers->elts;

    return &kv[0].value;
}
