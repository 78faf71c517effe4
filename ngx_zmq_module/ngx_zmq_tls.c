
/*
 * ngx_zmq: TLS for the module's clients through NGINX's SSL layer (see
 * ngx_zmq_tls.h).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_zmq_tls.h"


#if (NGX_SSL)

struct ngx_zmq_tls_ctx_s {
    ngx_queue_t                  queue;        /* the process's contexts */
    ngx_uint_t                   refs;
    ngx_ssl_t                    ssl;
    ngx_flag_t                   verify;
    u_char                      *id;           /* options and files */
    size_t                       id_len;
};


/* what one connection's handshake needs and found (in c->pool) */
typedef struct {
    ngx_str_t                    name;         /* NUL-ended */
    int                          alert;        /* -1: none received */
    unsigned                     verify:1;
    unsigned                     verified:1;
} ngx_zmq_tls_conn_t;


static ngx_int_t ngx_zmq_tls_id(ngx_zmq_tls_opts_t *opts, u_char *buf,
    size_t size, size_t *len, u_char *err, size_t errsize);
static ngx_int_t ngx_zmq_tls_load(ngx_zmq_tls_ctx_t *ctx,
    ngx_zmq_tls_opts_t *opts, u_char *err, size_t size);
static char *ngx_zmq_tls_cstr(ngx_str_t *s, u_char *buf, size_t size);
static int ngx_zmq_tls_no_password(char *buf, int size, int rwflag,
    void *data);
static void ngx_zmq_tls_msg(int write_p, int version, int content_type,
    const void *buf, size_t len, SSL *ssl, void *arg);
static ngx_zmq_tls_conn_t *ngx_zmq_tls_conn(ngx_connection_t *c);
static const char *ngx_zmq_tls_alert_text(int alert);
static void ngx_zmq_tls_ctx_cleanup(void *data);
static void ngx_zmq_tls_closed(ngx_connection_t *c);
static void ngx_zmq_tls_free(ngx_connection_t *c);


static ngx_queue_t  ngx_zmq_tls_ctxs;
static ngx_uint_t   ngx_zmq_tls_inited;
static int          ngx_zmq_tls_index = -1;


ngx_zmq_tls_ctx_t *
ngx_zmq_tls_ctx_get(ngx_zmq_tls_opts_t *opts, ngx_log_t *log, u_char *err,
    size_t size)
{
    u_char              id[3 * NGX_MAX_PATH + 256];
    size_t              len;
    ngx_queue_t        *q;
    ngx_zmq_tls_ctx_t  *ctx;

    err[0] = '\0';

    if (!ngx_zmq_tls_inited) {
        ngx_queue_init(&ngx_zmq_tls_ctxs);
        ngx_zmq_tls_inited = 1;
    }

    if (ngx_zmq_tls_index == -1) {
        ngx_zmq_tls_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
        if (ngx_zmq_tls_index == -1) {
            ERR_clear_error();
            ngx_cpystrn(err, (u_char *) "SSL_get_ex_new_index() failed",
                        size);
            return NULL;
        }
    }

    if (ngx_zmq_tls_id(opts, id, sizeof(id), &len, err, size) != NGX_OK) {
        return NULL;
    }

    /* the same options and the same files: shared */

    for (q = ngx_queue_head(&ngx_zmq_tls_ctxs);
         q != ngx_queue_sentinel(&ngx_zmq_tls_ctxs);
         q = ngx_queue_next(q))
    {
        ctx = ngx_queue_data(q, ngx_zmq_tls_ctx_t, queue);

        if (ctx->id_len == len && ngx_memcmp(ctx->id, id, len) == 0) {
            ctx->refs++;
            return ctx;
        }
    }

    ctx = ngx_calloc(sizeof(ngx_zmq_tls_ctx_t), log);
    if (ctx == NULL) {
        ngx_cpystrn(err, (u_char *) "out of memory", size);
        return NULL;
    }

    ctx->id = ngx_alloc(len, log);
    if (ctx->id == NULL) {
        ngx_free(ctx);
        ngx_cpystrn(err, (u_char *) "out of memory", size);
        return NULL;
    }

    ngx_memcpy(ctx->id, id, len);
    ctx->id_len = len;
    ctx->verify = opts->verify ? 1 : 0;
    ctx->ssl.log = log;

    if (ngx_zmq_tls_load(ctx, opts, err, size) != NGX_OK) {
        ERR_clear_error();
        if (ctx->ssl.ctx != NULL) {
            SSL_CTX_free(ctx->ssl.ctx);
        }
        ngx_free(ctx->id);
        ngx_free(ctx);
        return NULL;
    }

    ERR_clear_error();

    ctx->refs = 1;
    ngx_queue_insert_tail(&ngx_zmq_tls_ctxs, &ctx->queue);

    ngx_log_error(NGX_LOG_INFO, log, 0,
                  "zmq tls: a client context made (ca_file \"%V\", "
                  "verify %s, cert_file \"%V\")",
                  opts->ca_file.len ? &opts->ca_file
                                    : &(ngx_str_t) ngx_string("(system)"),
                  ctx->verify ? "on" : "off", &opts->cert_file);

    return ctx;
}


ngx_zmq_tls_ctx_t *
ngx_zmq_tls_ctx_ref(ngx_zmq_tls_ctx_t *ctx)
{
    if (ctx != NULL) {
        ctx->refs++;
    }

    return ctx;
}


void
ngx_zmq_tls_ctx_put(ngx_zmq_tls_ctx_t *ctx)
{
    if (ctx == NULL || --ctx->refs > 0) {
        return;
    }

    /* connections still open hold the SSL_CTX through their SSL */

    ngx_queue_remove(&ctx->queue);
    SSL_CTX_free(ctx->ssl.ctx);
    ngx_free(ctx->id);
    ngx_free(ctx);
}


static void
ngx_zmq_tls_ctx_cleanup(void *data)
{
    ngx_zmq_tls_ctx_put(data);
}


ngx_int_t
ngx_zmq_tls_ctx_hold(ngx_pool_t *pool, ngx_zmq_tls_ctx_t *ctx)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_zmq_tls_ctx_cleanup;
    cln->data = ngx_zmq_tls_ctx_ref(ctx);

    return NGX_OK;
}


ngx_flag_t
ngx_zmq_tls_ctx_verify(ngx_zmq_tls_ctx_t *ctx)
{
    return ctx->verify;
}


/*
 * What makes two contexts the same: the options, and each file's inode,
 * size and modification time (a certificate replaced on disk makes a new
 * context at the next configuration change that uses it).
 */
static ngx_int_t
ngx_zmq_tls_id(ngx_zmq_tls_opts_t *opts, u_char *buf, size_t size,
    size_t *len, u_char *err, size_t errsize)
{
    u_char           *p, *last;
    u_char            path[NGX_MAX_PATH];
    ngx_str_t        *files[3];
    ngx_uint_t        i;
    ngx_file_info_t   fi;
    static char      *what[3] = { "ca_file", "cert_file", "key_file" };

    files[0] = opts->verify ? &opts->ca_file : &(ngx_str_t) ngx_null_string;
    files[1] = &opts->cert_file;
    files[2] = &opts->key_file;

    p = buf;
    last = buf + size;

    p = ngx_slprintf(p, last, "verify=%d", opts->verify ? 1 : 0);

    for (i = 0; i < 3; i++) {
        if (files[i]->len == 0) {
            p = ngx_slprintf(p, last, "\n-");
            continue;
        }

        if (ngx_zmq_tls_cstr(files[i], path, sizeof(path)) == NULL) {
            ngx_snprintf(err, errsize - 1, "%s: the path is too long%Z",
                         what[i]);
            return NGX_ERROR;
        }

        if (ngx_file_info(path, &fi) == NGX_FILE_ERROR) {
            p = ngx_snprintf(err, errsize - 1, "%s \"%s\": ", what[i], path);
            p = ngx_strerror(ngx_errno, p, err + errsize - 1 - p);
            *p = '\0';
            return NGX_ERROR;
        }

        p = ngx_slprintf(p, last, "\n%s\n%uL:%O:%T",
                         path, (uint64_t) ngx_file_uniq(&fi),
                         ngx_file_size(&fi), ngx_file_mtime(&fi));
    }

    if (p == last) {
        ngx_cpystrn(err, (u_char *) "the TLS options are too long", errsize);
        return NGX_ERROR;
    }

    *len = p - buf;
    return NGX_OK;
}


static ngx_int_t
ngx_zmq_tls_load(ngx_zmq_tls_ctx_t *ctx, ngx_zmq_tls_opts_t *opts,
    u_char *err, size_t size)
{
    u_char         *p;
    u_char          path[NGX_MAX_PATH], key[NGX_MAX_PATH];
    u_long          e;
    const char     *why;
    ngx_ssl_t      *ssl;

    ssl = &ctx->ssl;
    p = err;

    if ((opts->cert_file.len == 0) != (opts->key_file.len == 0)) {
        ngx_cpystrn(err, (u_char *) "cert_file and key_file go together",
                    size);
        return NGX_ERROR;
    }

    if (ngx_ssl_create(ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        ngx_cpystrn(err, (u_char *) "cannot create an SSL context (see the "
                    "error log)", size);
        return NGX_ERROR;
    }

    /*
     * The clients write from a buffer that grows (and so moves) while a
     * write waits, and count what each SSL_write() took.
     */
    SSL_CTX_set_mode(ssl->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                               |SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    /* a key with a passphrase fails here, never asks on a terminal */
    SSL_CTX_set_default_passwd_cb(ssl->ctx, ngx_zmq_tls_no_password);

    /* verified after the handshake, where the reason can be told */
    SSL_CTX_set_verify(ssl->ctx, SSL_VERIFY_NONE, NULL);

    why = NULL;

    if (opts->verify) {
        if (opts->ca_file.len) {
            (void) ngx_zmq_tls_cstr(&opts->ca_file, path, sizeof(path));

            if (SSL_CTX_load_verify_locations(ssl->ctx, (char *) path, NULL)
                != 1)
            {
                p = ngx_snprintf(err, size - 1, "ca_file \"%s\": ", path);
                why = "no certificate in it";
                goto failed;
            }

        } else if (SSL_CTX_set_default_verify_paths(ssl->ctx) != 1) {
            p = ngx_snprintf(err, size - 1, "the system's CA store: ");
            why = "cannot load";
            goto failed;
        }
    }

    if (opts->cert_file.len) {
        (void) ngx_zmq_tls_cstr(&opts->cert_file, path, sizeof(path));
        (void) ngx_zmq_tls_cstr(&opts->key_file, key, sizeof(key));

        if (SSL_CTX_use_certificate_chain_file(ssl->ctx, (char *) path) != 1)
        {
            p = ngx_snprintf(err, size - 1, "cert_file \"%s\": ", path);
            why = "no certificate in it";
            goto failed;
        }

        if (SSL_CTX_use_PrivateKey_file(ssl->ctx, (char *) key,
                                        SSL_FILETYPE_PEM)
            != 1)
        {
            p = ngx_snprintf(err, size - 1, "key_file \"%s\": ", key);
            why = "no key in it (or it has a passphrase)";
            goto failed;
        }

        if (SSL_CTX_check_private_key(ssl->ctx) != 1) {
            p = ngx_snprintf(err, size - 1, "key_file \"%s\": ", key);
            why = "it is not the key of cert_file";
            goto failed;
        }
    }

    return NGX_OK;

failed:

    /* OpenSSL's own reason when it has one */
    e = ERR_peek_last_error();
    if (e != 0 && ERR_reason_error_string(e) != NULL) {
        why = ERR_reason_error_string(e);
    }

    p = ngx_slprintf(p, err + size - 1, "%s", why);
    *p = '\0';

    return NGX_ERROR;
}


static char *
ngx_zmq_tls_cstr(ngx_str_t *s, u_char *buf, size_t size)
{
    if (s->len >= size) {
        buf[0] = '\0';
        return NULL;
    }

    ngx_memcpy(buf, s->data, s->len);
    buf[s->len] = '\0';

    return (char *) buf;
}


static int
ngx_zmq_tls_no_password(char *buf, int size, int rwflag, void *data)
{
    return 0;
}


ngx_int_t
ngx_zmq_tls_start(ngx_zmq_tls_ctx_t *ctx, ngx_connection_t *c,
    ngx_str_t *name, ngx_connection_handler_pt done)
{
    SSL                 *ssl;
    ngx_int_t            rc;
    struct in6_addr      ip6;
    ngx_zmq_tls_conn_t  *st;
    X509_VERIFY_PARAM   *param;
    unsigned             ip;

    if (c->pool == NULL) {
        c->pool = ngx_create_pool(1024, c->log);
        if (c->pool == NULL) {
            return NGX_ERROR;
        }
    }

    st = ngx_pcalloc(c->pool, sizeof(ngx_zmq_tls_conn_t));
    if (st == NULL || name->len == 0) {
        return NGX_ERROR;
    }

    st->name.data = ngx_pnalloc(c->pool, name->len + 1);
    if (st->name.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(st->name.data, name->data, name->len);
    st->name.data[name->len] = '\0';
    st->name.len = name->len;
    st->alert = -1;
    st->verify = ctx->verify;

    /* nothing stale in OpenSSL's queue makes NGINX log an alert */
    ERR_clear_error();

    if (ngx_ssl_create_connection(&ctx->ssl, c, NGX_SSL_CLIENT) != NGX_OK) {
        return NGX_ERROR;
    }

    ssl = c->ssl->connection;

    /*
     * The certificate is checked once, after the handshake: a
     * renegotiation could bring another one, so none is allowed.
     */
    SSL_set_options(ssl, SSL_OP_NO_RENEGOTIATION);

    if (SSL_set_ex_data(ssl, ngx_zmq_tls_index, st) != 1) {
        ERR_clear_error();
        return NGX_ERROR;
    }

    SSL_set_msg_callback(ssl, ngx_zmq_tls_msg);
    SSL_set_msg_callback_arg(ssl, st);

    ip = inet_pton(AF_INET, (char *) st->name.data, &ip6) == 1
         || inet_pton(AF_INET6, (char *) st->name.data, &ip6) == 1;

    /* SNI carries host names only (RFC 6066) */
    if (!ip && SSL_set_tlsext_host_name(ssl, (char *) st->name.data) != 1) {
        ERR_clear_error();
        return NGX_ERROR;
    }

    if (st->verify) {
        param = SSL_get0_param(ssl);

        if ((ip ? X509_VERIFY_PARAM_set1_ip_asc(param,
                                                (char *) st->name.data)
                : X509_VERIFY_PARAM_set1_host(param, (char *) st->name.data,
                                              st->name.len))
            != 1)
        {
            ERR_clear_error();
            return NGX_ERROR;
        }
    }

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = done;
        return NGX_AGAIN;
    }

    return rc == NGX_OK ? NGX_OK : NGX_ERROR;
}


/* the alerts the peer sends: a refusal's reason (certificate required) */
static void
ngx_zmq_tls_msg(int write_p, int version, int content_type, const void *buf,
    size_t len, SSL *ssl, void *arg)
{
    const u_char        *p = buf;
    ngx_zmq_tls_conn_t  *st = arg;

    if (write_p || content_type != SSL3_RT_ALERT || len < 2 || st == NULL) {
        return;
    }

    /* a fatal alert, or anything but close_notify; the first one kept */
    if (st->alert == -1 && (p[0] == SSL3_AL_FATAL || p[1] != 0)) {
        st->alert = p[1];
    }
}


/* OpenSSL 3.0 names no TLS 1.3 alert ("unknown"): those that matter here */
static const char *
ngx_zmq_tls_alert_text(int alert)
{
    switch (alert) {
    case 109:
        return "missing extension";
    case 115:
        return "unknown PSK identity";
    case 116:
        return "certificate required (give cert_file and key_file)";
    case 120:
        return "no application protocol";
    default:
        return SSL_alert_desc_string_long(alert);
    }
}


static ngx_zmq_tls_conn_t *
ngx_zmq_tls_conn(ngx_connection_t *c)
{
    if (c->ssl == NULL || c->ssl->connection == NULL
        || ngx_zmq_tls_index == -1)
    {
        return NULL;
    }

    return SSL_get_ex_data(c->ssl->connection, ngx_zmq_tls_index);
}


ngx_int_t
ngx_zmq_tls_result(ngx_connection_t *c, u_char *reason, size_t size)
{
    long                 rc;
    X509                *cert;
    u_char              *p, *last;
    ngx_zmq_tls_conn_t  *st;

    p = reason;
    last = reason + size - 1;

    st = ngx_zmq_tls_conn(c);

    if (st == NULL) {
        p = ngx_slprintf(p, last, "cannot set up TLS on the connection "
                         "(see the error log)");
        *p = '\0';
        return NGX_ERROR;
    }

    if (!c->ssl->handshaked) {
        if (st->alert != -1) {
            p = ngx_slprintf(p, last, "TLS handshake refused: the server "
                             "sent the alert \"%s\"",
                             ngx_zmq_tls_alert_text(st->alert));

        } else if (c->read->error) {
            p = ngx_slprintf(p, last, "TLS handshake failed (OpenSSL's "
                             "reason is in the error log)");

        } else {
            p = ngx_slprintf(p, last, "the server closed the connection in "
                             "the TLS handshake (not a TLS port?)");
        }

        *p = '\0';
        return NGX_ERROR;
    }

    if (!st->verify) {
        *p = '\0';
        return NGX_OK;
    }

    cert = SSL_get_peer_certificate(c->ssl->connection);

    if (cert == NULL) {
        p = ngx_slprintf(p, last, "certificate verify failed: the server "
                         "sent no certificate");
        *p = '\0';
        return NGX_ERROR;
    }

    X509_free(cert);

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        p = ngx_slprintf(p, last, "certificate verify failed: %s",
                         X509_verify_cert_error_string(rc));

        if (rc == X509_V_ERR_HOSTNAME_MISMATCH
            || rc == X509_V_ERR_IP_ADDRESS_MISMATCH)
        {
            p = ngx_slprintf(p, last, " (the certificate is not for \"%V\")",
                             &st->name);
        }

        *p = '\0';
        return NGX_ERROR;
    }

    st->verified = 1;
    *p = '\0';

    return NGX_OK;
}


const char *
ngx_zmq_tls_version(ngx_connection_t *c)
{
    if (c == NULL || c->ssl == NULL || c->ssl->connection == NULL) {
        return "";
    }

    return SSL_get_version(c->ssl->connection);
}


ngx_flag_t
ngx_zmq_tls_verified(ngx_connection_t *c)
{
    ngx_zmq_tls_conn_t  *st;

    st = ngx_zmq_tls_conn(c);

    return st != NULL && st->verified;
}


const char *
ngx_zmq_tls_alert(ngx_connection_t *c)
{
    ngx_zmq_tls_conn_t  *st;

    st = ngx_zmq_tls_conn(c);

    if (st == NULL || st->alert == -1) {
        return NULL;
    }

    return ngx_zmq_tls_alert_text(st->alert);
}


u_char *
ngx_zmq_tls_failure(ngx_connection_t *c, u_char *buf, size_t size,
    const char *what)
{
    u_char      *p;
    const char  *alert;

    alert = ngx_zmq_tls_alert(c);

    if (alert != NULL) {
        p = ngx_snprintf(buf, size - 1, "%s: the server sent the TLS alert "
                         "\"%s\"", what, alert);

    } else {
        p = ngx_snprintf(buf, size - 1, "%s (TLS; OpenSSL's reason is in "
                         "the error log)", what);
    }

    *p = '\0';
    return p;
}


void
ngx_zmq_tls_close(ngx_connection_t *c)
{
    c->data = NULL;

    if (c->ssl != NULL) {

        /* a close_notify when all went well; never waiting for the peer's */

        c->ssl->no_wait_shutdown = 1;

        if (ngx_exiting || ngx_terminate || ngx_quit || !c->ssl->handshaked
            || c->read->error || c->write->error)
        {
            c->ssl->no_send_shutdown = 1;
        }

        /* the connection may outlive its owner: nothing of the owner's */

        c->log = ngx_cycle->log;
        c->read->log = ngx_cycle->log;
        c->write->log = ngx_cycle->log;

        if (c->pool != NULL) {
            c->pool->log = ngx_cycle->log;
        }

        ERR_clear_error();

        if (ngx_ssl_shutdown(c) == NGX_AGAIN) {
            c->ssl->handler = ngx_zmq_tls_closed;
            return;
        }
    }

    ngx_zmq_tls_free(c);
}


static void
ngx_zmq_tls_closed(ngx_connection_t *c)
{
    ngx_zmq_tls_free(c);
}


static void
ngx_zmq_tls_free(ngx_connection_t *c)
{
    ngx_pool_t  *pool;

    pool = c->pool;
    c->pool = NULL;

    ngx_close_connection(c);

    if (pool != NULL) {
        ngx_destroy_pool(pool);
    }
}


#else /* !NGX_SSL */


ngx_zmq_tls_ctx_t *
ngx_zmq_tls_ctx_get(ngx_zmq_tls_opts_t *opts, ngx_log_t *log, u_char *err,
    size_t size)
{
    ngx_cpystrn(err, (u_char *) "this NGINX is built without SSL", size);
    return NULL;
}


ngx_zmq_tls_ctx_t *
ngx_zmq_tls_ctx_ref(ngx_zmq_tls_ctx_t *ctx)
{
    return ctx;
}


void
ngx_zmq_tls_ctx_put(ngx_zmq_tls_ctx_t *ctx)
{
}


ngx_int_t
ngx_zmq_tls_ctx_hold(ngx_pool_t *pool, ngx_zmq_tls_ctx_t *ctx)
{
    return NGX_OK;
}


ngx_flag_t
ngx_zmq_tls_ctx_verify(ngx_zmq_tls_ctx_t *ctx)
{
    return 0;
}


ngx_int_t
ngx_zmq_tls_start(ngx_zmq_tls_ctx_t *ctx, ngx_connection_t *c,
    ngx_str_t *name, ngx_connection_handler_pt done)
{
    return NGX_ERROR;
}


ngx_int_t
ngx_zmq_tls_result(ngx_connection_t *c, u_char *reason, size_t size)
{
    ngx_cpystrn(reason, (u_char *) "this NGINX is built without SSL", size);
    return NGX_ERROR;
}


const char *
ngx_zmq_tls_version(ngx_connection_t *c)
{
    return "";
}


ngx_flag_t
ngx_zmq_tls_verified(ngx_connection_t *c)
{
    return 0;
}


const char *
ngx_zmq_tls_alert(ngx_connection_t *c)
{
    return NULL;
}


u_char *
ngx_zmq_tls_failure(ngx_connection_t *c, u_char *buf, size_t size,
    const char *what)
{
    return ngx_cpystrn(buf, (u_char *) what, size);
}


void
ngx_zmq_tls_close(ngx_connection_t *c)
{
    ngx_pool_t  *pool;

    pool = c->pool;
    c->pool = NULL;
    c->data = NULL;

    ngx_close_connection(c);

    if (pool != NULL) {
        ngx_destroy_pool(pool);
    }
}

#endif /* NGX_SSL */
