
/*
 * ngx_zmq: TLS for the module's own clients (AMQP, Redis, STOMP) through
 * NGINX's SSL layer.
 *
 * A context (an ngx_ssl_t, TLSv1.2 and up, client side) is made when a
 * configuration is built, never per connection: one per distinct option
 * set (ca_file, verify, cert_file, key_file, and the files' identity and
 * modification time), shared and counted, freed with its last user.
 * Loading a CA file or the system store costs milliseconds of CPU; a
 * connection only takes a reference.
 *
 * On a connection whose TCP connect completed, ngx_zmq_tls_start() begins
 * a non-blocking client handshake (ngx_ssl_create_connection,
 * ngx_ssl_handshake): SNI and the name checked are the server_name, or the
 * host connected to (an IP literal is checked against the certificate's
 * IP addresses and sent as no SNI). The certificate is read after the
 * handshake, as NGINX's proxy_ssl_verify does, so that the reason is
 * precise: "certificate verify failed: certificate has expired",
 * "certificate verify failed: hostname mismatch", ... Nothing is sent on
 * a connection that did not verify.
 *
 * The connection gets a pool of its own (the SSL state lives there);
 * ngx_zmq_tls_close() shuts TLS down (a close_notify, never waiting for the
 * peer's; bounded by NGINX's 3 s shutdown timer when the socket is full)
 * and frees the connection and its pool exactly once.
 */


#ifndef _NGX_ZMQ_TLS_H_INCLUDED_
#define _NGX_ZMQ_TLS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>


#define NGX_ZMQ_TLS_ERROR_LEN     256


typedef struct {
    ngx_str_t                    ca_file;      /* empty: the system store */
    ngx_str_t                    cert_file;    /* with key_file: mutual TLS */
    ngx_str_t                    key_file;
    ngx_flag_t                   verify;       /* chain and host name */
} ngx_zmq_tls_opts_t;


typedef struct ngx_zmq_tls_ctx_s  ngx_zmq_tls_ctx_t;


/*
 * The context for opts, made now or shared; NULL with a reason in err
 * ("ca_file '/x': cannot load: No such file or directory"). The caller
 * owns one reference.
 */
ngx_zmq_tls_ctx_t *ngx_zmq_tls_ctx_get(ngx_zmq_tls_opts_t *opts,
    ngx_log_t *log, u_char *err, size_t size);
ngx_zmq_tls_ctx_t *ngx_zmq_tls_ctx_ref(ngx_zmq_tls_ctx_t *ctx);
void ngx_zmq_tls_ctx_put(ngx_zmq_tls_ctx_t *ctx);
/* one reference, given back when pool is destroyed */
ngx_int_t ngx_zmq_tls_ctx_hold(ngx_pool_t *pool, ngx_zmq_tls_ctx_t *ctx);
ngx_flag_t ngx_zmq_tls_ctx_verify(ngx_zmq_tls_ctx_t *ctx);


/*
 * Starts the handshake on c (connected; c->data is the caller's). name:
 * the server name (SNI and verification), not empty. NGX_AGAIN: done(c)
 * is called once from the event loop when the handshake ends; NGX_OK: it
 * ended already, done is not called; NGX_ERROR: it could not start, or
 * failed at once. Either way ngx_zmq_tls_result() says how it went. The
 * connection's read and write handlers belong to NGINX's SSL layer until
 * the handshake ends: the caller sets its own again then.
 */
ngx_int_t ngx_zmq_tls_start(ngx_zmq_tls_ctx_t *ctx, ngx_connection_t *c,
    ngx_str_t *name, ngx_connection_handler_pt done);

/*
 * After the handshake: NGX_OK (verified, or verification off), or
 * NGX_ERROR with why in reason (NUL-ended).
 */
ngx_int_t ngx_zmq_tls_result(ngx_connection_t *c, u_char *reason,
    size_t size);

/* "TLSv1.3", ... ; "" without TLS */
const char *ngx_zmq_tls_version(ngx_connection_t *c);
ngx_flag_t ngx_zmq_tls_verified(ngx_connection_t *c);

/* the last fatal alert the peer sent, as text, or NULL */
const char *ngx_zmq_tls_alert(ngx_connection_t *c);

/* writes why a read or write failed on c (an alert from the peer, ...) */
u_char *ngx_zmq_tls_failure(ngx_connection_t *c, u_char *buf, size_t size,
    const char *what);

/*
 * Closes c and frees it (and its pool): after a close_notify when the
 * handshake was done and nothing failed, else at once. c->data is cleared;
 * nothing of the caller's is called any more.
 */
void ngx_zmq_tls_close(ngx_connection_t *c);


#endif /* _NGX_ZMQ_TLS_H_INCLUDED_ */
