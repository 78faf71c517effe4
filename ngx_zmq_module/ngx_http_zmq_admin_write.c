
/*
 * ngx_http_zmq_module: the admin API's writes.
 *
 *     POST   api/{kind}                       create (409 exists)
 *     PUT    api/{kind}/{name}                create or replace
 *     PATCH  api/{kind}/{name}                JSON merge patch (RFC 7396)
 *     DELETE api/{kind}/{name}[?cascade=true] (409 in_use, or with them)
 *     POST   api/import[?check=1][&replace=1] a whole document
 *     POST   api/{kind}/{name}/password       {"password1", "password2"}
 *     POST   api/security/{name}/keys         a new API key, shown once
 *     DELETE api/security/{name}/keys/{id}    revokes one
 *
 * Every write reads the store's snapshot (one EVAL, on the worker's
 * command connection to Redis), builds the next configuration with the
 * same src/core code as zmqctl (validation, references, sealing), and
 * sends the store's atomic write, which refuses to run if the version
 * moved since the snapshot: then the write starts again from a new
 * snapshot (a few times), so If-Match is always checked against what the
 * store holds. Nothing here blocks: the request waits for Redis' replies.
 *
 * The state of a write lives outside the request (ngx_alloc), because
 * Redis answers even when the client has gone: a request cleanup marks
 * the write orphaned, and whichever of the two comes last frees it.
 *
 * A worker sends one write at a time to Redis (the others wait their
 * turn in a queue of at most NGX_HTTP_ZMQ_WRITE_QUEUE_MAX): concurrent
 * writes of one worker would otherwise all read the same version and all
 * but one start again, and a burst of more than a few would end in 409.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#if (NGX_THREADS)
#include <ngx_thread_pool.h>
#endif

#include <jansson.h>
#include <openssl/crypto.h>

#include "zgw_apikey.h"
#include "zgw_passwd.h"
#include "zgw_store.h"
#include "ngx_http_zmq_admin.h"
#include "ngx_http_zmq_follow.h"
#include "ngx_zmq_redis.h"


#define NGX_HTTP_ZMQ_WRITE_ATTEMPTS   5       /* snapshots per write */
#define NGX_HTTP_ZMQ_WRITE_WAIT       10000   /* ?wait=1, at most (ms) */
#define NGX_HTTP_ZMQ_WRITE_WAIT_POLL  10
#define NGX_HTTP_ZMQ_WRITE_QUEUE_MAX  256     /* writes waiting their turn */

/* If-Match: absent, "*", malformed; otherwise the ETag's version */
#define NGX_HTTP_ZMQ_IF_NONE          -1
#define NGX_HTTP_ZMQ_IF_ANY           -2
#define NGX_HTTP_ZMQ_IF_BAD           -3


typedef enum {
    NGX_HTTP_ZMQ_W_CREATE = 0,
    NGX_HTTP_ZMQ_W_PUT,
    NGX_HTTP_ZMQ_W_PATCH,
    NGX_HTTP_ZMQ_W_DELETE,
    NGX_HTTP_ZMQ_W_IMPORT,
    NGX_HTTP_ZMQ_W_PASSWORD,
    NGX_HTTP_ZMQ_W_KEY_ADD,
    NGX_HTTP_ZMQ_W_KEY_DELETE
} ngx_http_zmq_write_op_e;


static const char  *ngx_http_zmq_write_op_names[] = {
    "create", "replace", "patch", "delete", "import", "password",
    "key-create", "key-revoke"
};


/* a refusal: the status, the error code, a message and maybe more */
typedef struct {
    ngx_uint_t                 status;
    const char                *code;
    char                       message[512];
    json_t                    *extra;        /* merged into the body */
} ngx_http_zmq_refusal_t;


typedef struct {
    ngx_http_request_t        *request;      /* NULL once it is gone */
    ngx_http_cleanup_t        *cln;
    ngx_uint_t                 op;
    int                        kind;         /* or -1 (import) */
    char                       name[ZGW_NAME_MAX + 1];
    char                       id[ZGW_APIKEY_ID_MAX + 1];
    char                       principal[256];
    json_t                    *body;         /* the request's, or NULL */
    long long                  if_match;     /* NGX_HTTP_ZMQ_IF_*, or the
                                                version it names */
    ngx_flag_t                 cascade;
    ngx_flag_t                 check;
    ngx_flag_t                 replace;
    ngx_flag_t                 wait;
    ngx_flag_t                 pending;      /* a Redis command is out */
    ngx_uint_t                 attempts;
    ngx_uint_t                 created;      /* 201 rather than 200 */
    size_t                     changes;
    long long                  version;      /* what the write made */
    json_t                    *answer;       /* the body on success */
    zgw_config_t              *prev;
    zgw_config_t              *next;
    ngx_event_t                wait_ev;
    ngx_msec_t                 wait_until;
    ngx_queue_t                queue;        /* in the worker's writes */
    ngx_flag_t                 queued;

    /* the next configuration, built on a thread (password hashing) */
#if (NGX_THREADS)
    ngx_thread_task_t          task;
#endif
    ngx_int_t                  built;        /* build's NGX_OK, ... */
    int                        argv_rc;
    zgw_store_argv_t           argv;
    ngx_http_zmq_refusal_t     no;
} ngx_http_zmq_write_t;




static ngx_int_t ngx_http_zmq_write_start(ngx_http_zmq_write_t *w,
    ngx_http_zmq_refusal_t *no);
static void ngx_http_zmq_write_snapshot(ngx_zmq_redis_t *rd,
    redisReply *reply, void *data);
static void ngx_http_zmq_write_applied(ngx_zmq_redis_t *rd,
    redisReply *reply, void *data);
static ngx_int_t ngx_http_zmq_write_build(ngx_http_zmq_write_t *w,
    ngx_http_zmq_refusal_t *no);
static void ngx_http_zmq_write_build_all(void *data, ngx_log_t *log);
#if (NGX_THREADS)
static void ngx_http_zmq_write_built_event(ngx_event_t *ev);
#endif
static void ngx_http_zmq_write_built(ngx_http_zmq_write_t *w);
static ngx_int_t ngx_http_zmq_write_object(ngx_http_zmq_write_t *w,
    ngx_http_zmq_refusal_t *no);
static ngx_int_t ngx_http_zmq_write_delete(ngx_http_zmq_write_t *w,
    ngx_http_zmq_refusal_t *no);
static ngx_int_t ngx_http_zmq_write_import(ngx_http_zmq_write_t *w,
    ngx_http_zmq_refusal_t *no);
static ngx_int_t ngx_http_zmq_write_password(ngx_http_zmq_write_t *w,
    ngx_http_zmq_refusal_t *no);
static ngx_int_t ngx_http_zmq_write_keys(ngx_http_zmq_write_t *w,
    ngx_http_zmq_refusal_t *no);
static ngx_int_t ngx_http_zmq_write_finish_next(ngx_http_zmq_write_t *w,
    ngx_http_zmq_refusal_t *no);
static ngx_int_t ngx_http_zmq_write_put(ngx_http_zmq_write_t *w,
    ngx_http_zmq_refusal_t *no, json_t *obj);
static ngx_int_t ngx_http_zmq_write_precondition(ngx_http_zmq_write_t *w,
    ngx_http_zmq_refusal_t *no);
static void ngx_http_zmq_write_strip_set(json_t *obj);
static void ngx_http_zmq_write_keep_keys(json_t *obj, json_t *cur);
static json_t *ngx_http_zmq_write_merge(json_t *target, json_t *patch);
static ngx_int_t ngx_http_zmq_write_invalid(ngx_http_zmq_refusal_t *no,
    zgw_errors_t *errs);
static json_t *ngx_http_zmq_write_error_entry(const char *msg);
static void ngx_http_zmq_write_refuse(ngx_http_zmq_refusal_t *no,
    ngx_uint_t status, const char *code, const char *fmt, ...);
static void ngx_http_zmq_write_wait(ngx_event_t *ev);
static void ngx_http_zmq_write_answer(ngx_http_zmq_write_t *w);
static void ngx_http_zmq_write_fail(ngx_http_zmq_write_t *w,
    ngx_http_zmq_refusal_t *no);
static void ngx_http_zmq_write_done(ngx_http_zmq_write_t *w,
    ngx_int_t rc);
static void ngx_http_zmq_write_cleanup(void *data);
static void ngx_http_zmq_write_free(ngx_http_zmq_write_t *w);
static void ngx_http_zmq_write_release(ngx_http_zmq_write_t *w);
static void ngx_http_zmq_write_next(ngx_event_t *ev);
static ngx_flag_t ngx_http_zmq_write_flag(ngx_http_request_t *r,
    const char *name);
static long long ngx_http_zmq_write_if_match(ngx_http_request_t *r);


ngx_int_t
ngx_http_zmq_admin_write(ngx_http_request_t *r, ngx_http_zmq_admin_req_t *ar)
{
    u_char                    *p;
    json_t                    *body;
    ngx_int_t                  rc;
    ngx_uint_t                 op;
    ngx_str_t                  raw;
    ngx_http_zmq_write_t      *w;
    ngx_http_zmq_worker_t     *wk;
    ngx_http_zmq_refusal_t     no;
    ngx_http_zmq_main_conf_t  *zmcf;

    zmcf = ngx_http_get_module_main_conf(r, ngx_http_zmq_module);

    /* which write */

    if (ar->kind < 0) {
        op = NGX_HTTP_ZMQ_W_IMPORT;

    } else if (ar->op.len == 0) {
        switch (r->method) {
        case NGX_HTTP_POST:
            op = NGX_HTTP_ZMQ_W_CREATE;
            break;
        case NGX_HTTP_PUT:
            op = NGX_HTTP_ZMQ_W_PUT;
            break;
        case NGX_HTTP_PATCH:
            op = NGX_HTTP_ZMQ_W_PATCH;
            break;
        default:
            op = NGX_HTTP_ZMQ_W_DELETE;
            break;
        }

    } else if (ar->op.len == 8
               && ngx_strncmp(ar->op.data, "password", 8) == 0)
    {
        op = NGX_HTTP_ZMQ_W_PASSWORD;

    } else {
        op = ar->id != NULL ? NGX_HTTP_ZMQ_W_KEY_DELETE
                            : NGX_HTTP_ZMQ_W_KEY_ADD;
    }

    /* the object must be named validly (a create names it in the body) */

    if (ar->name != NULL && !zgw_name_valid(ar->name)) {
        if (op == NGX_HTTP_ZMQ_W_PUT) {
            return ngx_http_zmq_admin_fail(r, NGX_HTTP_BAD_REQUEST,
                                           "invalid", "a name has 1 to %d "
                                           "letters, digits and ._:-@",
                                           ZGW_NAME_MAX);
        }

        return ngx_http_zmq_admin_fail(r, NGX_HTTP_NOT_FOUND, "not_found",
                                       "no %s of that name", ar->kind_name);
    }

    if (ar->id != NULL
        && (ngx_strlen(ar->id) > ZGW_APIKEY_ID_MAX || !zgw_name_valid(ar->id)))
    {
        return ngx_http_zmq_admin_fail(r, NGX_HTTP_NOT_FOUND, "not_found",
                                       "no key of that id");
    }

    /* the body: JSON for everything but a delete; a new key's is optional */

    body = NULL;

    if (op == NGX_HTTP_ZMQ_W_DELETE || op == NGX_HTTP_ZMQ_W_KEY_DELETE) {
        /* a body is ignored */

    } else if (op == NGX_HTTP_ZMQ_W_KEY_ADD) {
        if (ngx_http_zmq_admin_body_raw(r, &raw) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (raw.len) {
            body = ngx_http_zmq_admin_body_json(r, 0, &rc);
            if (body == NULL) {
                return rc;
            }
        }

    } else {
        body = ngx_http_zmq_admin_body_json(r, 0, &rc);
        if (body == NULL) {
            return rc;
        }
    }

    /* where the configuration lives */

    if (zmcf->type != NGX_HTTP_ZMQ_SOURCE_REDIS) {
        json_decref(body);
        return ngx_http_zmq_admin_fail(r, NGX_HTTP_CONFLICT, "read_only",
                                       "this gateway reads its "
                                       "configuration from a file: edit "
                                       "the file instead");
    }

    w = ngx_calloc(sizeof(ngx_http_zmq_write_t), r->connection->log);
    if (w == NULL) {
        json_decref(body);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w->request = r;
    w->op = op;
    w->kind = ar->kind;
    w->body = body;
    w->if_match = ngx_http_zmq_write_if_match(r);
    w->cascade = ngx_http_zmq_write_flag(r, "cascade");
    w->check = ngx_http_zmq_write_flag(r, "check");
    w->replace = ngx_http_zmq_write_flag(r, "replace");
    w->wait = ngx_http_zmq_write_flag(r, "wait");

    if (ar->name != NULL) {
        ngx_cpystrn((u_char *) w->name, (u_char *) ar->name,
                    sizeof(w->name));
    }

    if (ar->id != NULL) {
        ngx_cpystrn((u_char *) w->id, (u_char *) ar->id, sizeof(w->id));
    }

    ngx_cpystrn((u_char *) w->principal, ar->principal.data,
                ngx_min(ar->principal.len + 1, sizeof(w->principal)));

    /* a JWT's subject is the issuer's text: one line in the log, always */
    for (p = (u_char *) w->principal; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            *p = '?';
        }
    }

    if (w->if_match == NGX_HTTP_ZMQ_IF_BAD) {
        ngx_http_zmq_write_free(w);
        return ngx_http_zmq_admin_fail(r, NGX_HTTP_PRECONDITION_FAILED,
                                       "precondition_failed", "If-Match "
                                       "takes the ETag an earlier answer "
                                       "gave (\"N\") or *");
    }

    w->cln = ngx_http_cleanup_add(r, 0);
    if (w->cln == NULL) {
        ngx_http_zmq_write_free(w);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w->cln->handler = ngx_http_zmq_write_cleanup;
    w->cln->data = w;

    ngx_memzero(&no, sizeof(ngx_http_zmq_refusal_t));

    wk = ngx_http_zmq_worker();

    if (wk == NULL) {
        w->cln->handler = NULL;
        ngx_http_zmq_write_free(w);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (wk->writes.next == NULL) {
        ngx_queue_init(&wk->writes);
        wk->write_ev.handler = ngx_http_zmq_write_next;
        wk->write_ev.log = ngx_cycle->log;
    }

    if (wk->write != NULL || !ngx_queue_empty(&wk->writes)) {
        /* another write is at Redis: this one waits its turn */
        if (wk->nwrites >= NGX_HTTP_ZMQ_WRITE_QUEUE_MAX) {
            w->cln->handler = NULL;
            ngx_http_zmq_write_free(w);
            return ngx_http_zmq_admin_fail(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "busy", "%d writes wait their "
                                           "turn in this worker already: "
                                           "try again",
                                           NGX_HTTP_ZMQ_WRITE_QUEUE_MAX);
        }

        ngx_queue_insert_tail(&wk->writes, &w->queue);
        wk->nwrites++;
        w->queued = 1;

        r->main->count++;
        return NGX_DONE;
    }

    if (ngx_http_zmq_write_start(w, &no) != NGX_OK) {
        w->cln->handler = NULL;
        ngx_http_zmq_write_free(w);
        return ngx_http_zmq_admin_fail(r, no.status, no.code, "%s",
                                       no.message);
    }

    wk->write = w;
    r->main->count++;

    return NGX_DONE;
}


/* w no longer needs Redis: the next write waiting its turn may go */
static void
ngx_http_zmq_write_release(ngx_http_zmq_write_t *w)
{
    ngx_http_zmq_worker_t  *wk;

    wk = ngx_http_zmq_worker();

    if (wk == NULL) {
        return;
    }

    if (w->queued) {
        ngx_queue_remove(&w->queue);
        wk->nwrites--;
        w->queued = 0;
    }

    if (wk->write != w) {
        return;
    }

    wk->write = NULL;

    /* from the event loop: no request is finalized inside another's */
    if (!ngx_queue_empty(&wk->writes) && !wk->write_ev.posted) {
        ngx_post_event(&wk->write_ev, &ngx_posted_events);
    }
}


/* starts the first write waiting its turn (and fails those that cannot) */
static void
ngx_http_zmq_write_next(ngx_event_t *ev)
{
    ngx_queue_t             *q;
    ngx_connection_t        *c;
    ngx_http_zmq_write_t    *w;
    ngx_http_zmq_worker_t   *wk;
    ngx_http_zmq_refusal_t   no;

    wk = ngx_http_zmq_worker();

    while (wk->write == NULL && !ngx_queue_empty(&wk->writes)) {
        q = ngx_queue_head(&wk->writes);
        w = ngx_queue_data(q, ngx_http_zmq_write_t, queue);

        ngx_queue_remove(q);
        wk->nwrites--;
        w->queued = 0;

        ngx_memzero(&no, sizeof(ngx_http_zmq_refusal_t));

        if (ngx_http_zmq_write_start(w, &no) == NGX_OK) {
            wk->write = w;
            return;
        }

        c = w->request->connection;
        ngx_http_zmq_write_fail(w, &no);
        ngx_http_run_posted_requests(c);
    }
}


/* sends the snapshot's EVAL; NGX_DECLINED with the refusal filled in */
static ngx_int_t
ngx_http_zmq_write_start(ngx_http_zmq_write_t *w, ngx_http_zmq_refusal_t *no)
{
    int               argc;
    const char       *argv[ZGW_SNAPSHOT_ARGC];
    ngx_zmq_redis_t  *rd;

    rd = ngx_http_zmq_follow_redis();

    if (rd == NULL || !ngx_zmq_redis_connected(rd)) {
        ngx_http_zmq_write_refuse(no, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "redis_unavailable", "the configuration "
                                  "store (Redis) cannot be reached: %s",
                                  rd ? ngx_zmq_redis_error(rd)
                                     : "not connected");
        return NGX_DECLINED;
    }

    argc = zgw_store_snapshot_argv(argv);

    if (ngx_zmq_redis_command(rd, argc, argv, NULL,
                              ngx_http_zmq_write_snapshot, w)
        != NGX_OK)
    {
        ngx_http_zmq_write_refuse(no, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "redis_unavailable", "the configuration "
                                  "store (Redis) is busy: try again");
        return NGX_DECLINED;
    }

    w->pending = 1;

    return NGX_OK;
}


static void
ngx_http_zmq_write_snapshot(ngx_zmq_redis_t *rd, redisReply *reply,
    void *data)
{
    ngx_http_zmq_write_t  *w = data;

    int                     k;
    size_t                  invalid;
    zgw_errors_t            errs;
    ngx_http_zmq_refusal_t  no;

    w->pending = 0;

    if (w->request == NULL) {
        ngx_http_zmq_write_free(w);
        return;
    }

    ngx_memzero(&no, sizeof(ngx_http_zmq_refusal_t));

    if (reply == NULL) {
        ngx_http_zmq_write_refuse(&no, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "redis_unavailable", "the configuration "
                                  "store (Redis) did not answer: %s",
                                  ngx_zmq_redis_error(rd));
        ngx_http_zmq_write_fail(w, &no);
        return;
    }

    zgw_config_free(w->prev);
    zgw_config_free(w->next);
    w->next = NULL;

    w->prev = zgw_config_new();
    if (w->prev == NULL) {
        ngx_http_zmq_write_done(w, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /*
     * Objects that do not load stay in prev->invalid: writes keep them.
     * A reply that is not a snapshot at all (nothing recorded as invalid,
     * yet refused) must not become the base of a write: its objects would
     * be half read.
     */
    zgw_errors_init(&errs);
    invalid = 0;

    if (zgw_store_snapshot_parse(reply, w->prev, &errs) != ZGW_OK) {
        for (k = 0; k < ZGW_KIND_MAX; k++) {
            invalid += json_object_size(w->prev->invalid[k]);
        }

        if (invalid == 0 && errs.n == 0) {
            zgw_errors_add(&errs, "unexpected reply");
        }
    }

    if (reply->type != REDIS_REPLY_ARRAY || (errs.n && invalid == 0)) {
        ngx_http_zmq_write_refuse(&no, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "redis_unavailable", "the configuration "
                                  "store's snapshot failed: %s",
                                  zgw_errors_first(&errs));
        zgw_errors_free(&errs);
        ngx_http_zmq_write_fail(w, &no);
        return;
    }

    zgw_errors_free(&errs);

    /*
     * Building hashes passwords (PBKDF2, tens of ms each): on a thread of
     * the pool that checks credentials, never on the event loop
     */
#if (NGX_THREADS)
    {
        ngx_http_zmq_worker_t  *wk = ngx_http_zmq_worker();

        if (wk != NULL && wk->auth.pool != NULL) {
            ngx_memzero(&w->task, sizeof(ngx_thread_task_t));
            w->task.ctx = w;
            w->task.handler = ngx_http_zmq_write_build_all;
            w->task.event.handler = ngx_http_zmq_write_built_event;
            w->task.event.data = w;
            w->task.event.log = ngx_cycle->log;

            if (ngx_thread_task_post(wk->auth.pool, &w->task) == NGX_OK) {
                w->pending = 1;
                return;
            }
        }
    }
#endif

    ngx_http_zmq_write_build_all(w, ngx_cycle->log);
    ngx_http_zmq_write_built(w);
}


/* on a thread (or inline): w->next, and the store's command to write it */
static void
ngx_http_zmq_write_build_all(void *data, ngx_log_t *log)
{
    ngx_http_zmq_write_t  *w = data;

    size_t  changes;

    ngx_memzero(&w->no, sizeof(ngx_http_zmq_refusal_t));
    ngx_memzero(&w->argv, sizeof(zgw_store_argv_t));
    w->argv_rc = ZGW_ERROR;

    w->built = ngx_http_zmq_write_build(w, &w->no);

    if (w->built == NGX_OK) {
        w->argv_rc = zgw_store_apply_argv(w->prev, w->next, &w->argv,
                                          &changes);
        w->changes = changes;
    }
}


#if (NGX_THREADS)

static void
ngx_http_zmq_write_built_event(ngx_event_t *ev)
{
    ngx_connection_t      *c;
    ngx_http_zmq_write_t  *w = ev->data;

    w->pending = 0;

    if (w->request == NULL) {
        zgw_store_argv_free(&w->argv);
        json_decref(w->no.extra);
        ngx_http_zmq_write_free(w);
        return;
    }

    c = w->request->connection;
    ngx_http_zmq_write_built(w);
    ngx_http_run_posted_requests(c);
}

#endif


/* back on the event loop: answer, or send the write */
static void
ngx_http_zmq_write_built(ngx_http_zmq_write_t *w)
{
    ngx_int_t                rc;
    ngx_zmq_redis_t         *rd;
    zgw_store_argv_t         a;
    ngx_http_zmq_refusal_t   no;

    no = w->no;
    a = w->argv;
    ngx_memzero(&w->no, sizeof(ngx_http_zmq_refusal_t));
    ngx_memzero(&w->argv, sizeof(zgw_store_argv_t));

    if (w->built == NGX_DECLINED) {
        zgw_store_argv_free(&a);
        ngx_http_zmq_write_fail(w, &no);
        return;
    }

    if (w->built != NGX_OK || w->argv_rc != ZGW_OK) {
        zgw_store_argv_free(&a);
        json_decref(no.extra);
        ngx_http_zmq_write_done(w, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (w->changes == 0 || w->check) {
        zgw_store_argv_free(&a);
        w->version = w->prev->version;
        ngx_http_zmq_write_answer(w);
        return;
    }

    rd = ngx_http_zmq_follow_redis();

    rc = rd != NULL ? ngx_zmq_redis_command(rd, (int) a.n, a.argv, NULL,
                                            ngx_http_zmq_write_applied, w)
                    : NGX_DECLINED;
    zgw_store_argv_free(&a);

    if (rc != NGX_OK) {
        ngx_http_zmq_write_refuse(&no, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "redis_unavailable", "the configuration "
                                  "store (Redis) is busy or gone: nothing "
                                  "was written");
        ngx_http_zmq_write_fail(w, &no);
        return;
    }

    w->pending = 1;
}


static void
ngx_http_zmq_write_applied(ngx_zmq_redis_t *rd, redisReply *reply,
    void *data)
{
    ngx_http_zmq_write_t  *w = data;

    char                    shown[ZGW_SHOW_SIZE];
    ngx_http_zmq_refusal_t  no;

    w->pending = 0;
    ngx_memzero(&no, sizeof(ngx_http_zmq_refusal_t));

    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
        w->version = reply->integer;

        /* written: ?wait needs no Redis, the next write may go */
        ngx_http_zmq_write_release(w);

        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "zmq admin: %s %s %s%s%s%s%s: %uz change%s, "
                      "version %L", w->principal,
                      ngx_http_zmq_write_op_names[w->op],
                      w->kind >= 0 ? zgw_kind_name(w->kind) : "the "
                                                              "configuration",
                      w->name[0] ? " '" : "", w->name,
                      w->name[0] ? "'" : "",
                      w->id[0] ? " (key)" : "",
                      w->changes, w->changes == 1 ? "" : "s", w->version);

        if (w->request == NULL) {
            ngx_http_zmq_write_free(w);
            return;
        }

        if (w->wait) {
            w->wait_ev.handler = ngx_http_zmq_write_wait;
            w->wait_ev.data = w;
            w->wait_ev.log = w->request->connection->log;
            w->wait_until = ngx_current_msec + NGX_HTTP_ZMQ_WRITE_WAIT;
            ngx_http_zmq_write_wait(&w->wait_ev);
            return;
        }

        ngx_http_zmq_write_answer(w);
        return;
    }

    if (w->request == NULL) {
        ngx_http_zmq_write_free(w);
        return;
    }

    if (reply != NULL && reply->type == REDIS_REPLY_ERROR
        && ngx_strncmp(reply->str, "CONFLICT", 8) == 0)
    {
        /* the store moved since the snapshot: start again from it */
        if (++w->attempts < NGX_HTTP_ZMQ_WRITE_ATTEMPTS) {
            if (ngx_http_zmq_write_start(w, &no) != NGX_OK) {
                ngx_http_zmq_write_fail(w, &no);
            }

            return;
        }

        ngx_http_zmq_write_refuse(&no, NGX_HTTP_CONFLICT, "conflict",
                                  "the configuration kept changing during "
                                  "the write: nothing was written; try "
                                  "again");
        ngx_http_zmq_write_fail(w, &no);
        return;
    }

    if (reply == NULL) {
        ngx_http_zmq_write_refuse(&no, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "redis_unavailable", "the configuration "
                                  "store (Redis) was lost before it "
                                  "answered: the write may or may not have "
                                  "happened; read the object to know");
    } else {
        ngx_http_zmq_write_refuse(&no, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "redis_unavailable", "the configuration "
                                  "store refused the write: %s",
                                  reply->type == REDIS_REPLY_ERROR
                                  ? zgw_show(shown, sizeof(shown),
                                             reply->str, reply->len)
                                  : "");
    }

    ngx_http_zmq_write_fail(w, &no);
}


/* ------------------------------------------------- the next configuration */


/*
 * Builds w->next from w->prev; NGX_DECLINED with the refusal filled in,
 * NGX_ERROR when out of memory.
 */
static ngx_int_t
ngx_http_zmq_write_build(ngx_http_zmq_write_t *w, ngx_http_zmq_refusal_t *no)
{
    ngx_int_t  rc;

    json_decref(w->answer);
    w->answer = NULL;
    w->created = 0;

    w->next = zgw_config_copy(w->prev);
    if (w->next == NULL) {
        return NGX_ERROR;
    }

    switch (w->op) {

    case NGX_HTTP_ZMQ_W_CREATE:
    case NGX_HTTP_ZMQ_W_PUT:
    case NGX_HTTP_ZMQ_W_PATCH:
        rc = ngx_http_zmq_write_object(w, no);
        break;

    case NGX_HTTP_ZMQ_W_DELETE:
        rc = ngx_http_zmq_write_delete(w, no);
        break;

    case NGX_HTTP_ZMQ_W_IMPORT:
        rc = ngx_http_zmq_write_import(w, no);
        break;

    case NGX_HTTP_ZMQ_W_PASSWORD:
        rc = ngx_http_zmq_write_password(w, no);
        break;

    default:
        rc = ngx_http_zmq_write_keys(w, no);
        break;
    }

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_zmq_write_finish_next(w, no);
}


/* references, then secrets sealed (or hashed) exactly as zmqctl does */
static ngx_int_t
ngx_http_zmq_write_finish_next(ngx_http_zmq_write_t *w,
    ngx_http_zmq_refusal_t *no)
{
    ngx_int_t                  rc;
    zgw_errors_t               errs;
    const zgw_key_t           *key;
    ngx_http_zmq_main_conf_t  *zmcf;

    zmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_zmq_module);
    key = zmcf->has_key ? &zmcf->key : NULL;

    w->next->version = w->prev->version;

    zgw_errors_init(&errs);
    zgw_config_check_refs(w->next, &errs);

    if (errs.n == 0 && key == NULL
        && zgw_config_needs_key(w->next, w->prev))
    {
        zgw_errors_free(&errs);
        ngx_http_zmq_write_refuse(no, NGX_HTTP_CONFLICT, "no_key",
                                  "this gateway has no zmq_key_file to "
                                  "seal secrets with: nothing was written");
        return NGX_DECLINED;
    }

    if (errs.n == 0) {
        zgw_config_seal(w->next, w->prev, key, &errs);
    }

    rc = errs.n ? ngx_http_zmq_write_invalid(no, &errs) : NGX_OK;
    zgw_errors_free(&errs);

    return rc;
}


/* POST api/{kind}, PUT and PATCH api/{kind}/{name} */
static ngx_int_t
ngx_http_zmq_write_object(ngx_http_zmq_write_t *w, ngx_http_zmq_refusal_t *no)
{
    json_t        *obj, *cur, *name, *patched;
    ngx_int_t      rc;

    obj = w->body;
    name = json_object_get(obj, "name");

    if (w->op == NGX_HTTP_ZMQ_W_CREATE) {
        if (!json_is_string(name) || !zgw_name_valid(json_string_value(name))
            || json_string_length(name) > ZGW_NAME_MAX)
        {
            ngx_http_zmq_write_refuse(no, NGX_HTTP_BAD_REQUEST, "invalid",
                                      "the object needs a \"name\": 1 to %d "
                                      "letters, digits and ._:-@",
                                      ZGW_NAME_MAX);
            return NGX_DECLINED;
        }

        ngx_cpystrn((u_char *) w->name, (u_char *) json_string_value(name),
                    sizeof(w->name));

        if (zgw_config_get(w->prev, w->kind, w->name) != NULL
            || json_object_get(w->prev->invalid[w->kind], w->name) != NULL)
        {
            ngx_http_zmq_write_refuse(no, NGX_HTTP_CONFLICT, "exists",
                                      "%s '%s' exists: PUT replaces it, "
                                      "PATCH changes it",
                                      zgw_kind_name(w->kind), w->name);
            return NGX_DECLINED;
        }

    } else if (name != NULL
               && (!json_is_string(name)
                   || ngx_strcmp(json_string_value(name), w->name) != 0))
    {
        ngx_http_zmq_write_refuse(no, NGX_HTTP_BAD_REQUEST, "invalid",
                                  "the body's \"name\" differs from the "
                                  "path's: an object is renamed by "
                                  "creating the new one and deleting the "
                                  "old one");
        return NGX_DECLINED;
    }

    rc = ngx_http_zmq_write_precondition(w, no);
    if (rc != NGX_OK) {
        return rc;
    }

    cur = zgw_config_get(w->prev, w->kind, w->name);

    if (w->op == NGX_HTTP_ZMQ_W_PATCH) {
        if (cur == NULL) {
            ngx_http_zmq_write_refuse(no, NGX_HTTP_NOT_FOUND, "not_found",
                                      "%s '%s' does not exist",
                                      zgw_kind_name(w->kind), w->name);
            return NGX_DECLINED;
        }

        /* the stored form, sealed secrets included: a patch keeps them */
        patched = zgw_object_export(w->kind, cur, ZGW_EXPORT_SEALED);
        if (patched == NULL) {
            return NGX_ERROR;
        }

        obj = json_deep_copy(w->body);
        if (obj == NULL) {
            json_decref(patched);
            return NGX_ERROR;
        }

        ngx_http_zmq_write_strip_set(obj);
        patched = ngx_http_zmq_write_merge(patched, obj);
        json_decref(obj);

        if (patched == NULL) {
            return NGX_ERROR;
        }

        obj = patched;

    } else {
        obj = json_deep_copy(w->body);
        if (obj == NULL) {
            return NGX_ERROR;
        }

        /* what a GET showed can be sent back: {"$set": true} keeps it */
        ngx_http_zmq_write_strip_set(obj);

        if (cur != NULL) {
            ngx_http_zmq_write_keep_keys(obj, cur);
        }
    }

    if (json_object_set_new(obj, "name", json_string(w->name)) != 0) {
        json_decref(obj);
        return NGX_ERROR;
    }

    w->created = (cur == NULL);

    return ngx_http_zmq_write_put(w, no, obj);
}


/* DELETE api/{kind}/{name}[?cascade=true] */
static ngx_int_t
ngx_http_zmq_write_delete(ngx_http_zmq_write_t *w, ngx_http_zmq_refusal_t *no)
{
    int            k;
    char          *q, *e, kind[32], name[ZGW_NAME_MAX + 1];
    char           seen_key[32 + ZGW_NAME_MAX + 2];
    size_t         i, done, len;
    json_t        *gone, *refs, *entry, *seen;
    ngx_int_t      rc;
    zgw_errors_t   found;

    if (zgw_config_get(w->prev, w->kind, w->name) == NULL
        && json_object_get(w->prev->invalid[w->kind], w->name) == NULL)
    {
        ngx_http_zmq_write_refuse(no, NGX_HTTP_NOT_FOUND, "not_found",
                                  "%s '%s' does not exist",
                                  zgw_kind_name(w->kind), w->name);
        return NGX_DECLINED;
    }

    rc = ngx_http_zmq_write_precondition(w, no);
    if (rc != NGX_OK) {
        return rc;
    }

    /*
     * gone: what the delete removes, [{"kind", "name"}], the object first
     * and then, with cascade, whatever refers to anything in it, until
     * nothing left refers to what is gone.
     */
    /*
     * seen: "kind name" of everything in gone or refs, so that each is
     * listed (and walked) once, however many ways it refers to what is
     * gone: without it a lattice of fanout services grows gone
     * exponentially (one entry per path)
     */
    gone = json_array();
    refs = json_array();
    seen = json_object();
    ngx_snprintf((u_char *) seen_key, sizeof(seen_key) - 1, "%s %s%Z",
                 zgw_kind_name(w->kind), w->name);

    if (gone == NULL || refs == NULL || seen == NULL
        || json_object_set_new(seen, seen_key, json_true()) != 0
        || json_array_append_new(gone, json_pack("{s:s,s:s}", "kind",
                                                 zgw_kind_name(w->kind),
                                                 "name", w->name))
           != 0)
    {
        json_decref(gone);
        json_decref(refs);
        json_decref(seen);
        return NGX_ERROR;
    }

    zgw_errors_init(&found);

    for (done = 0; done < json_array_size(gone); done++) {
        entry = json_array_get(gone, done);
        k = zgw_kind_from_name(json_string_value(json_object_get(entry,
                                                                 "kind")));
        ngx_cpystrn((u_char *) name,
                    (u_char *) json_string_value(json_object_get(entry,
                                                                 "name")),
                    sizeof(name));

        (void) zgw_config_delete(w->next, k, name);
        (void) json_object_del(w->next->invalid[k], name);

        zgw_errors_clear(&found);
        (void) zgw_config_referrers(w->next, k, name, &found);

        /* each is "kind 'name'" */
        for (i = 0; i < found.n; i++) {
            q = ngx_strchr(found.msgs[i], ' ');
            if (q == NULL || q[1] != '\'') {
                continue;
            }

            len = q - found.msgs[i];
            e = ngx_strchr(q + 2, '\'');
            if (len >= sizeof(kind) || e == NULL
                || (size_t) (e - (q + 2)) > ZGW_NAME_MAX)
            {
                continue;
            }

            ngx_memcpy(kind, found.msgs[i], len);
            kind[len] = '\0';
            ngx_memcpy(name, q + 2, e - (q + 2));
            name[e - (q + 2)] = '\0';

            if (zgw_kind_from_name(kind) < 0) {
                continue;
            }

            ngx_snprintf((u_char *) seen_key, sizeof(seen_key) - 1,
                         "%s %s%Z", kind, name);

            if (json_object_get(seen, seen_key) != NULL) {
                continue;
            }

            if (json_object_set_new(seen, seen_key, json_true()) != 0) {
                goto nomem;
            }

            if (json_array_append_new(refs,
                                      json_pack("{s:s,s:s}", "kind", kind,
                                                "name", name))
                != 0)
            {
                goto nomem;
            }

            if (w->cascade
                && json_array_append_new(gone,
                                         json_pack("{s:s,s:s}", "kind",
                                                   kind, "name", name))
                   != 0)
            {
                goto nomem;
            }
        }

        if (!w->cascade) {
            break;
        }
    }

    zgw_errors_free(&found);
    json_decref(seen);

    if (!w->cascade && json_array_size(refs) > 0) {
        ngx_http_zmq_write_refuse(no, NGX_HTTP_CONFLICT, "in_use",
                                  "%s '%s' is used by %uz object%s: delete "
                                  "them first, or with ?cascade=true",
                                  zgw_kind_name(w->kind), w->name,
                                  json_array_size(refs),
                                  json_array_size(refs) == 1 ? "" : "s");
        no->extra = json_pack("{s:o}", "referrers", refs);
        json_decref(gone);
        return NGX_DECLINED;
    }

    json_decref(refs);

    w->answer = json_pack("{s:o}", "deleted", gone);

    return w->answer != NULL ? NGX_OK : NGX_ERROR;

nomem:

    zgw_errors_free(&found);
    json_decref(seen);
    json_decref(gone);
    json_decref(refs);
    return NGX_ERROR;
}


/* POST api/import[?check=1][&replace=1]: zmqctl import, as one write */
static ngx_int_t
ngx_http_zmq_write_import(ngx_http_zmq_write_t *w, ngx_http_zmq_refusal_t *no)
{
    int            k;
    json_t        *obj;
    ngx_int_t      rc;
    const char    *name;
    zgw_errors_t   errs;
    zgw_config_t  *doc;

    doc = zgw_config_new();
    if (doc == NULL) {
        return NGX_ERROR;
    }

    zgw_errors_init(&errs);

    /* objects alone first; references once merged with the store */
    (void) zgw_config_load_doc(doc, w->body, ZGW_LOAD_NO_REFS, &errs);

    if (w->replace) {
        zgw_config_free(w->next);
        w->next = zgw_config_new();
        if (w->next == NULL) {
            zgw_errors_free(&errs);
            zgw_config_free(doc);
            return NGX_ERROR;
        }
    }

    for (k = 0; k < ZGW_KIND_MAX; k++) {
        json_object_foreach(doc->objs[k], name, obj) {
            if (json_object_set(w->next->objs[k], name, obj) != 0) {
                zgw_errors_free(&errs);
                zgw_config_free(doc);
                return NGX_ERROR;
            }
        }
    }

    /* with the objects' errors, those of the references, as zmqctl does */
    if (errs.n) {
        zgw_config_check_refs(w->next, &errs);
        rc = ngx_http_zmq_write_invalid(no, &errs);
        zgw_errors_free(&errs);
        zgw_config_free(doc);
        return rc;
    }

    zgw_errors_free(&errs);

    w->answer = json_pack("{s:I}", "objects",
                          (json_int_t) zgw_config_total(doc));
    zgw_config_free(doc);

    return w->answer != NULL ? NGX_OK : NGX_ERROR;
}


/* POST api/{kind}/{name}/password {"password1": "...", "password2": "..."} */
static ngx_int_t
ngx_http_zmq_write_password(ngx_http_zmq_write_t *w,
    ngx_http_zmq_refusal_t *no)
{
    char          why[512];
    json_t        *cur, *obj, *p1, *p2, *v;
    ngx_int_t      rc;
    const char    *field, *key;

    json_object_foreach(w->body, key, v) {
        if (ngx_strcmp(key, "password1") != 0
            && ngx_strcmp(key, "password2") != 0)
        {
            ngx_http_zmq_write_refuse(no, NGX_HTTP_BAD_REQUEST, "invalid",
                                      "a password change takes "
                                      "\"password1\" and \"password2\" "
                                      "only");
            return NGX_DECLINED;
        }
    }

    p1 = json_object_get(w->body, "password1");
    p2 = json_object_get(w->body, "password2");

    if (!json_is_string(p1) || !json_is_string(p2)
        || json_string_length(p1) == 0)
    {
        ngx_http_zmq_write_refuse(no, NGX_HTTP_BAD_REQUEST, "invalid",
                                  "\"password1\" and \"password2\" must be "
                                  "the same text, not empty");
        return NGX_DECLINED;
    }

    if (json_string_length(p1) != json_string_length(p2)
        || CRYPTO_memcmp(json_string_value(p1), json_string_value(p2),
                         json_string_length(p1)) != 0)
    {
        ngx_http_zmq_write_refuse(no, NGX_HTTP_BAD_REQUEST, "invalid",
                                  "\"password1\" and \"password2\" differ");
        return NGX_DECLINED;
    }

    cur = zgw_config_get(w->prev, w->kind, w->name);
    if (cur == NULL) {
        ngx_http_zmq_write_refuse(no, NGX_HTTP_NOT_FOUND, "not_found",
                                  "%s '%s' does not exist",
                                  zgw_kind_name(w->kind), w->name);
        return NGX_DECLINED;
    }

    rc = ngx_http_zmq_write_precondition(w, no);
    if (rc != NGX_OK) {
        return rc;
    }

    field = zgw_passwd_field(w->kind, w->name, cur, why, sizeof(why));
    if (field == NULL) {
        ngx_http_zmq_write_refuse(no, NGX_HTTP_BAD_REQUEST, "no_secret",
                                  "%s", why);
        return NGX_DECLINED;
    }

    obj = json_deep_copy(cur);
    if (obj == NULL
        || json_object_set(obj, field, p1) != 0)
    {
        json_decref(obj);
        return NGX_ERROR;
    }

    return ngx_http_zmq_write_put(w, no, obj);
}


/* POST api/security/{name}/keys [{"id": ...}], DELETE .../keys/{id} */
static ngx_int_t
ngx_http_zmq_write_keys(ngx_http_zmq_write_t *w, ngx_http_zmq_refusal_t *no)
{
    char           key[ZGW_APIKEY_LEN + 1], hex[ZGW_SHA256_HEX_LEN + 1];
    char           id[ZGW_APIKEY_ID_MAX + 1];
    size_t         i, n;
    json_t        *cur, *obj, *keys, *k, *v;
    ngx_int_t      rc;
    const char    *type, *dir, *kid, *field;
    zgw_errors_t   errs;

    cur = zgw_config_get(w->prev, ZGW_KIND_SECURITY, w->name);
    type = json_string_value(json_object_get(cur, "type"));
    dir = json_string_value(json_object_get(cur, "direction"));

    if (cur == NULL) {
        ngx_http_zmq_write_refuse(no, NGX_HTTP_NOT_FOUND, "not_found",
                                  "security '%s' does not exist", w->name);
        return NGX_DECLINED;
    }

    if (type == NULL || ngx_strcmp(type, "apikey") != 0
        || (dir != NULL && ngx_strcmp(dir, "in") != 0))
    {
        ngx_http_zmq_write_refuse(no, NGX_HTTP_BAD_REQUEST, "not_apikey",
                                  "security '%s' does not check incoming "
                                  "API keys: only an apikey definition of "
                                  "direction \"in\" has keys", w->name);
        return NGX_DECLINED;
    }

    rc = ngx_http_zmq_write_precondition(w, no);
    if (rc != NGX_OK) {
        return rc;
    }

    obj = json_deep_copy(cur);
    if (obj == NULL) {
        return NGX_ERROR;
    }

    keys = json_object_get(obj, "keys");
    if (!json_is_array(keys)) {
        keys = json_array();
        if (keys == NULL || json_object_set_new(obj, "keys", keys) != 0) {
            json_decref(obj);
            return NGX_ERROR;
        }
    }

    if (w->op == NGX_HTTP_ZMQ_W_KEY_DELETE) {
        n = json_array_size(keys);

        json_array_foreach(keys, i, k) {
            kid = json_string_value(json_object_get(k, "id"));
            if (kid != NULL && ngx_strcmp(kid, w->id) == 0) {
                json_array_remove(keys, i);
                break;
            }
        }

        if (json_array_size(keys) == n) {
            json_decref(obj);
            ngx_http_zmq_write_refuse(no, NGX_HTTP_NOT_FOUND, "not_found",
                                      "security '%s' has no key '%s'",
                                      w->name, w->id);
            return NGX_DECLINED;
        }

        w->answer = json_pack("{s:s}", "revoked", w->id);

    } else {
        id[0] = '\0';

        json_object_foreach(w->body, field, v) {
            if (ngx_strcmp(field, "id") != 0) {
                json_decref(obj);
                ngx_http_zmq_write_refuse(no, NGX_HTTP_BAD_REQUEST,
                                          "invalid", "a new key takes "
                                          "\"id\" only (or no body)");
                return NGX_DECLINED;
            }

            if (!json_is_string(v) || !zgw_name_valid(json_string_value(v))
                || json_string_length(v) > ZGW_APIKEY_ID_MAX)
            {
                json_decref(obj);
                ngx_http_zmq_write_refuse(no, NGX_HTTP_BAD_REQUEST,
                                          "invalid", "\"id\" has 1 to %d "
                                          "letters, digits and ._:-@",
                                          ZGW_APIKEY_ID_MAX);
                return NGX_DECLINED;
            }

            ngx_cpystrn((u_char *) id, (u_char *) json_string_value(v),
                        sizeof(id));
        }

        /* without one, the first free "kN" */
        for (n = json_array_size(keys) + 1; id[0] == '\0'; n++) {
            ngx_snprintf((u_char *) id, sizeof(id) - 1, "k%uz%Z", n);

            json_array_foreach(keys, i, k) {
                kid = json_string_value(json_object_get(k, "id"));
                if (kid != NULL && ngx_strcmp(kid, id) == 0) {
                    id[0] = '\0';
                    break;
                }
            }
        }

        json_array_foreach(keys, i, k) {
            kid = json_string_value(json_object_get(k, "id"));
            if (kid != NULL && ngx_strcmp(kid, id) == 0) {
                json_decref(obj);
                ngx_http_zmq_write_refuse(no, NGX_HTTP_CONFLICT, "exists",
                                          "security '%s' already has a key "
                                          "'%s': revoke it first, or "
                                          "choose another id", w->name, id);
                return NGX_DECLINED;
            }
        }

        if (json_array_size(keys) >= ZGW_APIKEYS_MAX) {
            json_decref(obj);
            ngx_http_zmq_write_refuse(no, NGX_HTTP_CONFLICT, "too_many_keys",
                                      "security '%s' has %d keys, the most "
                                      "it may: revoke one first", w->name,
                                      ZGW_APIKEYS_MAX);
            return NGX_DECLINED;
        }

        zgw_errors_init(&errs);

        if (zgw_apikey_generate(key, hex, &errs) != ZGW_OK) {
            zgw_errors_free(&errs);
            json_decref(obj);
            return NGX_ERROR;
        }

        zgw_errors_free(&errs);

        if (json_array_append_new(keys, json_pack("{s:s,s:s}", "id", id,
                                                  "sha256", hex))
            != 0)
        {
            ngx_explicit_memzero(key, sizeof(key));
            json_decref(obj);
            return NGX_ERROR;
        }

        /* the key itself, once: only its digest is stored */
        w->answer = json_pack("{s:s,s:s}", "id", id, "key", key);
        ngx_explicit_memzero(key, sizeof(key));
        w->created = 1;
    }

    if (w->answer == NULL) {
        json_decref(obj);
        return NGX_ERROR;
    }

    rc = ngx_http_zmq_write_put(w, no, obj);

    return rc;
}


/* obj (consumed) validated into w->next as w->name; 400 lists its errors */
static ngx_int_t
ngx_http_zmq_write_put(ngx_http_zmq_write_t *w, ngx_http_zmq_refusal_t *no,
    json_t *obj)
{
    ngx_int_t     rc;
    zgw_errors_t  errs;

    zgw_errors_init(&errs);
    rc = NGX_OK;

    if (zgw_config_put(w->next, w->kind, obj, w->name, &errs) != ZGW_OK) {
        rc = ngx_http_zmq_write_invalid(no, &errs);
    }

    zgw_errors_free(&errs);
    json_decref(obj);

    return rc;
}


/* If-Match against the version the store last wrote the object at */
static ngx_int_t
ngx_http_zmq_write_precondition(ngx_http_zmq_write_t *w,
    ngx_http_zmq_refusal_t *no)
{
    char        etag[32];
    ngx_flag_t  exists;
    long long   v;

    if (w->if_match == NGX_HTTP_ZMQ_IF_NONE) {
        return NGX_OK;
    }

    exists = zgw_config_get(w->prev, w->kind, w->name) != NULL
             || json_object_get(w->prev->invalid[w->kind], w->name) != NULL;
    v = zgw_config_object_version(w->prev, w->kind, w->name);

    if (exists && (w->if_match == NGX_HTTP_ZMQ_IF_ANY || w->if_match == v)) {
        return NGX_OK;
    }

    ngx_http_zmq_write_refuse(no, NGX_HTTP_PRECONDITION_FAILED,
                              "precondition_failed", "%s '%s' %s: read it "
                              "again and retry with its new ETag",
                              zgw_kind_name(w->kind), w->name,
                              exists ? "changed since that ETag"
                                     : "does not exist");
    if (exists) {
        ngx_snprintf((u_char *) etag, sizeof(etag) - 1, "\"%L\"%Z", v);
        no->extra = json_pack("{s:s}", "etag", etag);
    }

    return NGX_DECLINED;
}


/* drops every field whose value is {"$set": true} (what a GET shows) */
static void
ngx_http_zmq_write_strip_set(json_t *obj)
{
    json_t      *v;
    void        *tmp;
    const char  *key;

    json_object_foreach_safe(obj, tmp, key, v) {
        if (json_is_object(v) && json_object_size(v) == 1
            && json_is_true(json_object_get(v, "$set")))
        {
            (void) json_object_del(obj, key);
        }
    }
}


/*
 * A GET shows an apikey definition's keys as {"id"} alone: sent back, a
 * key keeps the digest stored under its id.
 */
static void
ngx_http_zmq_write_keep_keys(json_t *obj, json_t *cur)
{
    size_t       i, j;
    json_t      *keys, *old, *k, *o;
    const char  *id, *oid;

    keys = json_object_get(obj, "keys");
    old = json_object_get(cur, "keys");

    if (!json_is_array(keys) || !json_is_array(old)) {
        return;
    }

    json_array_foreach(keys, i, k) {
        id = json_string_value(json_object_get(k, "id"));

        if (id == NULL || json_object_size(k) != 1) {
            continue;
        }

        json_array_foreach(old, j, o) {
            oid = json_string_value(json_object_get(o, "id"));

            if (oid != NULL && ngx_strcmp(oid, id) == 0) {
                (void) json_object_set(k, "sha256",
                                       json_object_get(o, "sha256"));
                break;
            }
        }
    }
}


/* RFC 7396: patch applied to target (consumed); NULL when out of memory */
static json_t *
ngx_http_zmq_write_merge(json_t *target, json_t *patch)
{
    json_t      *v, *t, *merged;
    const char  *key;

    if (!json_is_object(patch)) {
        json_decref(target);
        return json_deep_copy(patch);
    }

    if (!json_is_object(target)) {
        json_decref(target);
        target = json_object();
        if (target == NULL) {
            return NULL;
        }
    }

    json_object_foreach(patch, key, v) {
        if (json_is_null(v)) {
            (void) json_object_del(target, key);
            continue;
        }

        t = json_object_get(target, key);
        json_incref(t);

        merged = ngx_http_zmq_write_merge(t, v);
        if (merged == NULL || json_object_set_new(target, key, merged) != 0)
        {
            json_decref(target);
            return NULL;
        }
    }

    return target;
}


/* 400 invalid, every error as {"kind", "name", "field", "message"} */
static ngx_int_t
ngx_http_zmq_write_invalid(ngx_http_zmq_refusal_t *no, zgw_errors_t *errs)
{
    size_t   i;
    json_t  *list;

    list = json_array();
    if (list == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < errs->n; i++) {
        if (json_array_append_new(list,
                                  ngx_http_zmq_write_error_entry(
                                      errs->msgs[i]))
            != 0)
        {
            json_decref(list);
            return NGX_ERROR;
        }
    }

    ngx_http_zmq_write_refuse(no, NGX_HTTP_BAD_REQUEST, "invalid",
                              "%uz error%s: nothing was written", errs->n,
                              errs->n == 1 ? "" : "s");
    no->extra = json_pack("{s:o}", "errors", list);

    return no->extra != NULL ? NGX_DECLINED : NGX_ERROR;
}


/*
 * The model's messages read "kind 'name': what", the what often naming
 * the field ("field 'port' must be...", "port 70000 is out of range...").
 */
static json_t *
ngx_http_zmq_write_error_entry(const char *msg)
{
    char        *q, *colon, *f, *fe;
    json_t      *e;
    size_t       len;
    const char  *rest;

    e = json_pack("{s:n,s:n,s:n,s:s}", "kind", "name", "field", "message",
                  msg);
    if (e == NULL) {
        return NULL;
    }

    q = ngx_strchr(msg, ' ');
    colon = ngx_strstr(msg, "': ");

    if (q == NULL || colon == NULL || q > colon || q[1] != '\'') {
        return e;
    }

    len = q - msg;
    if (len < 32) {
        json_object_set_new(e, "kind", json_stringn(msg, len));
    }

    json_object_set_new(e, "name", json_stringn(q + 2, colon - (q + 2)));

    rest = colon + 3;
    json_object_set_new(e, "message", json_string(rest));

    f = ngx_strstr(rest, "field '");
    if (f != NULL) {
        f += 7;
        fe = ngx_strchr(f, '\'');
        if (fe != NULL) {
            json_object_set_new(e, "field", json_stringn(f, fe - f));
        }

        return e;
    }

    /* the first word, when it is a field's path: port, keys[2], tls.ca */
    for (fe = (char *) rest; *fe; fe++) {
        if (!(isalnum((unsigned char) *fe) || *fe == '_' || *fe == '.' || *fe == '['
              || *fe == ']'))
        {
            break;
        }
    }

    if (fe > rest && *fe == ' ') {
        json_object_set_new(e, "field", json_stringn(rest, fe - rest));
    }

    return e;
}


static void
ngx_http_zmq_write_refuse(ngx_http_zmq_refusal_t *no, ngx_uint_t status,
    const char *code, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    no->status = status;
    no->code = code;

    va_start(args, fmt);
    p = ngx_vslprintf((u_char *) no->message,
                      (u_char *) no->message + sizeof(no->message) - 1, fmt,
                      args);
    va_end(args);

    *p = '\0';
}


/* ?wait=1: answers once this worker runs the version written */
static void
ngx_http_zmq_write_wait(ngx_event_t *ev)
{
    ngx_http_zmq_write_t    *w = ev->data;
    ngx_http_zmq_runtime_t  *rt;

    rt = ngx_http_zmq_runtime_current();

    /* a worker shutting down answers now rather than hold up its exit */
    if ((rt != NULL && rt->version >= w->version)
        || (ngx_msec_int_t) (ngx_current_msec - w->wait_until) >= 0
        || ngx_exiting)
    {
        ngx_http_zmq_write_answer(w);
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_ZMQ_WRITE_WAIT_POLL);
}


/* the write's success (or, with ?check=1, what it would do) */
static void
ngx_http_zmq_write_answer(ngx_http_zmq_write_t *w)
{
    u_char                   etag[32], *p;
    json_t                  *doc, *obj;
    ngx_int_t                rc;
    ngx_str_t                value;
    ngx_uint_t               status;
    ngx_http_zmq_runtime_t  *rt;

    doc = w->answer != NULL ? w->answer : json_object();
    w->answer = NULL;

    if (doc == NULL) {
        ngx_http_zmq_write_done(w, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    json_object_set_new(doc, "version", json_integer(w->version));
    json_object_set_new(doc, "changes", json_integer((json_int_t) w->changes));

    if (w->check) {
        json_object_set_new(doc, "check", json_true());
    }

    if (w->wait) {
        rt = ngx_http_zmq_runtime_current();
        json_object_set_new(doc, "applied",
                            json_boolean(rt != NULL
                                         && rt->version >= w->version));
    }

    status = NGX_HTTP_OK;

    /* an object written: it as the API shows it, and its ETag */
    obj = NULL;

    if (w->kind >= 0 && w->name[0] && w->next != NULL
        && w->op != NGX_HTTP_ZMQ_W_DELETE)
    {
        obj = zgw_config_get(w->next, w->kind, w->name);
    }

    if (obj != NULL && !w->check) {
        if (w->op != NGX_HTTP_ZMQ_W_KEY_ADD
            && w->op != NGX_HTTP_ZMQ_W_KEY_DELETE
            && w->op != NGX_HTTP_ZMQ_W_PASSWORD)
        {
            json_object_set_new(doc, "data",
                                ngx_http_zmq_admin_object(w->kind, obj));
        }

        p = ngx_snprintf(etag, sizeof(etag), "\"%L\"",
                         w->changes ? w->version
                                    : zgw_config_object_version(w->prev,
                                                                w->kind,
                                                                w->name));
        value.data = etag;
        value.len = p - etag;

        if (ngx_http_zmq_add_header(w->request, "ETag", &value) != NGX_OK) {
            json_decref(doc);
            ngx_http_zmq_write_done(w, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        if (w->created && w->changes) {
            status = NGX_HTTP_CREATED;
        }
    }

    rc = ngx_http_zmq_send_doc(w->request, status, doc);
    ngx_http_zmq_write_done(w, rc);
}


static void
ngx_http_zmq_write_fail(ngx_http_zmq_write_t *w, ngx_http_zmq_refusal_t *no)
{
    json_t     *doc;
    ngx_int_t   rc;

    doc = json_pack("{s:s,s:s}", "error", no->code, "message", no->message);

    if (doc != NULL && no->extra != NULL) {
        (void) json_object_update(doc, no->extra);
    }

    json_decref(no->extra);
    no->extra = NULL;

    if (doc == NULL) {
        ngx_http_zmq_write_done(w, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rc = ngx_http_zmq_send_doc(w->request, no->status, doc);
    ngx_http_zmq_write_done(w, rc);
}


/* the request is answered (rc): it goes its way, the write is freed */
static void
ngx_http_zmq_write_done(ngx_http_zmq_write_t *w, ngx_int_t rc)
{
    ngx_http_request_t  *r = w->request;

    w->cln->handler = NULL;
    ngx_http_zmq_write_free(w);

    ngx_http_finalize_request(r, rc);
}


/* the request is being freed (answered, or its client gone) */
static void
ngx_http_zmq_write_cleanup(void *data)
{
    ngx_http_zmq_write_t  *w = data;

    w->request = NULL;

    if (w->wait_ev.timer_set) {
        ngx_del_timer(&w->wait_ev);
    }

    if (!w->pending) {
        ngx_http_zmq_write_free(w);
    }
}


static void
ngx_http_zmq_write_free(ngx_http_zmq_write_t *w)
{
    ngx_http_zmq_write_release(w);

    if (w->wait_ev.timer_set) {
        ngx_del_timer(&w->wait_ev);
    }

    json_decref(w->body);
    json_decref(w->answer);
    zgw_config_free(w->prev);
    zgw_config_free(w->next);
    ngx_free(w);
}


/* ?name=1, ?name=true */
static ngx_flag_t
ngx_http_zmq_write_flag(ngx_http_request_t *r, const char *name)
{
    ngx_str_t  v;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &v) != NGX_OK) {
        return 0;
    }

    return (v.len == 1 && v.data[0] == '1')
           || (v.len == 4 && ngx_strncasecmp(v.data, (u_char *) "true", 4)
                             == 0);
}


/* NGX_HTTP_ZMQ_IF_NONE, _ANY ("*"), _BAD, or the ETag's version */
static long long
ngx_http_zmq_write_if_match(ngx_http_request_t *r)
{
    u_char           *p, *last;
    long long         v;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;
    ngx_uint_t        i;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NGX_HTTP_ZMQ_IF_NONE;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == 8
            && ngx_strncasecmp(h[i].key.data, (u_char *) "If-Match", 8) == 0)
        {
            break;
        }
    }

    p = h[i].value.data;
    last = p + h[i].value.len;

    if (last - p == 1 && *p == '*') {
        return NGX_HTTP_ZMQ_IF_ANY;
    }

    /* one strong ETag: "N" (a weak W/"N" never matches, RFC 9110) */
    if (last - p < 3 || *p != '"' || last[-1] != '"') {
        return NGX_HTTP_ZMQ_IF_BAD;
    }

    p++;
    last--;
    v = 0;

    for ( /* void */ ; p < last; p++) {
        if (*p < '0' || *p > '9' || v > (LLONG_MAX - 9) / 10) {
            return NGX_HTTP_ZMQ_IF_BAD;
        }

        v = v * 10 + (*p - '0');
    }

    return v;
}
