/*
 * ngx_zmq core: TLS client contexts for the blocking clients (zmqd,
 * zmqctl): rabbitmq-c's SSL socket and the Redis transport
 * (zgw_redis_conn.h) are set up by the same code, with the same options
 * and the same error messages.
 *
 *   verify       the chain must lead to ca_file (or the system store) and
 *                the certificate must name server_name (or the host
 *                connected to): a DNS name among its subjectAltNames (or
 *                its CN without any), an IP address among its IP
 *                subjectAltNames when the name is an address
 *   server_name  sent as SNI (not when it is an IP address, as RFC 6066
 *                says) and checked; the host connected to when missing
 *   cert_file,   a client certificate chain (PEM) and its key, for mutual
 *   key_file     TLS
 *
 * TLS 1.2 at least. rabbitmq-c 0.11 sends the host it connects to as SNI
 * and checks only DNS names against it: a context set up here replaces
 * both (an info callback sets the SNI when the handshake starts, the
 * verification runs in the context's certificate verify callback), so the
 * caller turns rabbitmq-c's own host-name check off.
 */

#ifndef ZGW_TLS_H
#define ZGW_TLS_H

#include <stddef.h>

#include <jansson.h>
#include <openssl/ssl.h>

#include "zgw_redis_url.h"


typedef struct {
    int          verify;
    const char  *host;              /* the host connected to */
    const char  *server_name;       /* NULL or "": host */
    const char  *ca_file;           /* NULL or "": the system store */
    const char  *cert_file;         /* NULL or "": no client certificate */
    const char  *key_file;
} zgw_tls_opts_t;


/* the options of an amqp_def or a stomp_def (pointers into def) */
void zgw_tls_opts_def(zgw_tls_opts_t *o, const json_t *def,
    const char *host);

/* the options of a rediss:// address (pointers into a) */
void zgw_tls_opts_redis(zgw_tls_opts_t *o, const zgw_redis_addr_t *a);

/*
 * Sets up a client context made elsewhere (rabbitmq-c's): CAs, client
 * certificate, verification, SNI. 0, or -1 with err filled ("TLS:
 * ca_file /x: No such file or directory").
 */
int zgw_tls_ctx_setup(SSL_CTX *ctx, const zgw_tls_opts_t *o, char *err,
    size_t errlen);

/* a new client context set up with o; NULL with err filled */
SSL_CTX *zgw_tls_ctx_new(const zgw_tls_opts_t *o, char *err,
    size_t errlen);

/*
 * The TLS handshake on a connected non-blocking socket, all of it within
 * timeout_ms (not each wait: a server that sends a byte now and then
 * fails it too): the SSL, or NULL with err filled with the reason ("TLS
 * handshake: certificate verify failed: certificate has expired", "no
 * answer to the TLS handshake within 5000 ms", "the TLS handshake did
 * not finish within 5000 ms (the server answers too slowly)").
 */
SSL *zgw_tls_connect(SSL_CTX *ctx, int fd, int timeout_ms, char *err,
    size_t errlen);

/*
 * Why a handshake, a read or a write on a connection of ctx failed: the
 * verification's reason when the certificate was refused, else the
 * reason of OpenSSL's latest error on this thread ("tlsv13 alert
 * certificate required"), else fallback. Returns buf.
 */
const char *zgw_tls_why(SSL_CTX *ctx, const char *fallback, char *buf,
    size_t len);

/* whether ctx refused the peer's certificate (a verify failure) */
int zgw_tls_refused(SSL_CTX *ctx);

/*
 * whether the server asked for a client certificate in the last handshake
 * and none was set (a server that requires one then closes the connection)
 */
int zgw_tls_asked(SSL_CTX *ctx);

/* the protocol of the last handshake done with ctx ("TLSv1.3") */
const char *zgw_tls_version(SSL_CTX *ctx);

#endif /* ZGW_TLS_H */
