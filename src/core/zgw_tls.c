/*
 * ngx_zmq core: TLS client contexts for the blocking clients (see
 * zgw_tls.h).
 *
 * What a context checks lives in a zgw_tls_state_t hung on the context
 * (ex_data, freed with it): rabbitmq-c frees its context when its
 * connection is destroyed, so the state needs no owner of its own.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "zgw_net.h"
#include "zgw_tls.h"


typedef struct {
    int    verify;
    int    ip;                      /* name is an IP address */
    int    refused;                 /* the last verification failed */
    int    asked;                   /* the server asked for a client
                                       certificate and got none */
    char   name[256];               /* checked, and the SNI unless ip */
    char   why[512];                /* why the last verification failed */
    char   version[16];             /* of the last handshake done */
} zgw_tls_state_t;


static void zgw_tls_index_init(void);
static void zgw_tls_state_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad,
    int idx, long argl, void *argp);
static zgw_tls_state_t *zgw_tls_state(const SSL_CTX *ctx);
static int zgw_tls_verify(X509_STORE_CTX *xs, void *arg);
static void zgw_tls_info(const SSL *ssl, int where, int ret);
static int zgw_tls_no_cert(SSL *ssl, X509 **x509, EVP_PKEY **pkey);
static const char *zgw_tls_reason(char *buf, size_t len);
static int zgw_tls_file(const char *what, const char *path, char *err,
    size_t errlen);


static pthread_once_t  zgw_tls_once = PTHREAD_ONCE_INIT;
static int             zgw_tls_index = -1;


static void
zgw_tls_index_init(void)
{
    zgw_tls_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL,
                                             zgw_tls_state_free);
}


static void
zgw_tls_state_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
    long argl, void *argp)
{
    (void) parent;
    (void) ad;
    (void) idx;
    (void) argl;
    (void) argp;

    free(ptr);
}


static zgw_tls_state_t *
zgw_tls_state(const SSL_CTX *ctx)
{
    if (ctx == NULL || zgw_tls_index < 0) {
        return NULL;
    }

    return SSL_CTX_get_ex_data(ctx, zgw_tls_index);
}


void
zgw_tls_opts_def(zgw_tls_opts_t *o, const json_t *def, const char *host)
{
    json_t  *v;

    memset(o, 0, sizeof(zgw_tls_opts_t));

    v = json_object_get(def, "verify");
    o->verify = v == NULL || json_is_true(v);
    o->host = host;
    o->server_name = json_string_value(json_object_get(def, "server_name"));
    o->ca_file = json_string_value(json_object_get(def, "ca_file"));
    o->cert_file = json_string_value(json_object_get(def, "cert_file"));
    o->key_file = json_string_value(json_object_get(def, "key_file"));
}


void
zgw_tls_opts_redis(zgw_tls_opts_t *o, const zgw_redis_addr_t *a)
{
    memset(o, 0, sizeof(zgw_tls_opts_t));

    o->verify = a->verify;
    o->host = a->host;
    o->server_name = a->server_name;
    o->ca_file = a->ca_file;
    o->cert_file = a->cert_file;
    o->key_file = a->key_file;
}


/* OpenSSL's latest reason on this thread, or NULL */
static const char *
zgw_tls_reason(char *buf, size_t len)
{
    const char     *r;
    unsigned long   code;

    code = ERR_peek_last_error();
    if (code == 0) {
        return NULL;
    }

    r = ERR_reason_error_string(code);
    if (r != NULL) {
        snprintf(buf, len, "%s", r);
    } else {
        ERR_error_string_n(code, buf, len);
    }

    return buf;
}


/* a file the context reads: its own errno says more than OpenSSL's */
static int
zgw_tls_file(const char *what, const char *path, char *err, size_t errlen)
{
    if (access(path, R_OK) != 0) {
        snprintf(err, errlen, "TLS: %s %s: %s", what, path, strerror(errno));
        return -1;
    }

    return 0;
}


int
zgw_tls_ctx_setup(SSL_CTX *ctx, const zgw_tls_opts_t *o, char *err,
    size_t errlen)
{
    char              why[256];
    const char       *name;
    zgw_tls_state_t  *st;
    unsigned char     addr[16];

    (void) pthread_once(&zgw_tls_once, zgw_tls_index_init);

    if (zgw_tls_index < 0) {
        snprintf(err, errlen, "TLS: cannot make an index");
        return -1;
    }

    ERR_clear_error();

    st = calloc(1, sizeof(zgw_tls_state_t));
    if (st == NULL || SSL_CTX_set_ex_data(ctx, zgw_tls_index, st) != 1) {
        free(st);
        snprintf(err, errlen, "TLS: out of memory");
        return -1;
    }

    name = o->server_name != NULL && o->server_name[0] ? o->server_name
                                                       : o->host;
    snprintf(st->name, sizeof(st->name), "%s", name != NULL ? name : "");
    st->ip = inet_pton(AF_INET, st->name, addr) == 1
             || inet_pton(AF_INET6, st->name, addr) == 1;
    st->verify = o->verify;

    (void) SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_info_callback(ctx, zgw_tls_info);
    SSL_CTX_set_client_cert_cb(ctx, zgw_tls_no_cert);

    if (o->verify) {
        if (o->ca_file != NULL && o->ca_file[0]) {
            if (zgw_tls_file("ca_file", o->ca_file, err, errlen) != 0) {
                return -1;
            }

            if (SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1) {
                snprintf(err, errlen, "TLS: ca_file %s: %s", o->ca_file,
                         zgw_tls_reason(why, sizeof(why)) ? why
                         : "no certificate in it");
                return -1;
            }

        } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
            snprintf(err, errlen, "TLS: cannot load the system's "
                     "certificate authorities");
            return -1;
        }

        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_cert_verify_callback(ctx, zgw_tls_verify, st);

    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }

    if (o->cert_file != NULL && o->cert_file[0]) {
        if (zgw_tls_file("cert_file", o->cert_file, err, errlen) != 0
            || zgw_tls_file("key_file", o->key_file, err, errlen) != 0)
        {
            return -1;
        }

        if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1) {
            snprintf(err, errlen, "TLS: cert_file %s: %s", o->cert_file,
                     zgw_tls_reason(why, sizeof(why)) ? why
                     : "not a PEM certificate");
            return -1;
        }

        if (SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM)
            != 1)
        {
            snprintf(err, errlen, "TLS: key_file %s: %s", o->key_file,
                     zgw_tls_reason(why, sizeof(why)) ? why
                     : "not a PEM private key");
            return -1;
        }

        if (SSL_CTX_check_private_key(ctx) != 1) {
            snprintf(err, errlen, "TLS: key_file %s is not the key of "
                     "cert_file %s", o->key_file, o->cert_file);
            return -1;
        }
    }

    ERR_clear_error();
    return 0;
}


SSL_CTX *
zgw_tls_ctx_new(const zgw_tls_opts_t *o, char *err, size_t errlen)
{
    SSL_CTX  *ctx;

    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "TLS: cannot make a context");
        return NULL;
    }

    /* SSL_write() returns what it wrote, as write() does */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                          | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    if (zgw_tls_ctx_setup(ctx, o, err, errlen) != 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }

    return ctx;
}


/*
 * The SNI, set when the handshake starts: after rabbitmq-c set its own
 * (the host it connected to), before the ClientHello is written.
 */
static void
zgw_tls_info(const SSL *ssl, int where, int ret)
{
    SSL               *s;
    zgw_tls_state_t   *st;

    (void) ret;

    if (!(where & (SSL_CB_HANDSHAKE_START | SSL_CB_HANDSHAKE_DONE))) {
        return;
    }

    st = zgw_tls_state(SSL_get_SSL_CTX(ssl));
    if (st == NULL) {
        return;
    }

    if (where & SSL_CB_HANDSHAKE_DONE) {
        snprintf(st->version, sizeof(st->version), "%s",
                 SSL_get_version(ssl));
        return;
    }

    st->refused = 0;
    st->asked = 0;

    s = (SSL *) ssl;
    (void) SSL_set_tlsext_host_name(s, st->ip || st->name[0] == '\0'
                                       ? NULL : st->name);
}


/*
 * Called when the server asks for a client certificate and none is set:
 * noted, because a server that requires one closes the connection after
 * a TLS 1.3 handshake the client saw succeed, and its alert is often lost
 * (a reset) when the client wrote first.
 */
static int
zgw_tls_no_cert(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
    zgw_tls_state_t  *st;

    (void) x509;
    (void) pkey;

    st = zgw_tls_state(SSL_get_SSL_CTX(ssl));
    if (st != NULL) {
        st->asked = 1;
    }

    return 0;
}


/* the chain, and the name, checked as one step with one reason */
static int
zgw_tls_verify(X509_STORE_CTX *xs, void *arg)
{
    int                 rc, e;
    char                subject[256];
    X509               *cert;
    zgw_tls_state_t    *st = arg;
    X509_VERIFY_PARAM  *param;

    param = X509_STORE_CTX_get0_param(xs);

    if (st->name[0] == '\0') {
        /* no name to check is no verification: refused, never skipped */
        snprintf(st->why, sizeof(st->why), "no host name to check the "
                 "certificate against");
        st->refused = 1;
        X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }

    if (st->ip) {
        rc = X509_VERIFY_PARAM_set1_ip_asc(param, st->name);

    } else {
        X509_VERIFY_PARAM_set_hostflags(param,
                                        X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        rc = X509_VERIFY_PARAM_set1_host(param, st->name, 0);
    }

    if (rc != 1) {
        snprintf(st->why, sizeof(st->why), "cannot check the name '%s'",
                 st->name);
        st->refused = 1;
        X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }

    rc = X509_verify_cert(xs);
    if (rc > 0) {
        st->refused = 0;
        return rc;
    }

    e = X509_STORE_CTX_get_error(xs);
    st->refused = 1;

    if (e == X509_V_ERR_HOSTNAME_MISMATCH || e == X509_V_ERR_IP_ADDRESS_MISMATCH)
    {
        snprintf(st->why, sizeof(st->why), "certificate verify failed: %s "
                 "(the certificate is not for '%s')",
                 X509_verify_cert_error_string(e), st->name);
        return rc;
    }

    subject[0] = '\0';
    cert = X509_STORE_CTX_get_current_cert(xs);
    if (cert != NULL) {
        (void) X509_NAME_oneline(X509_get_subject_name(cert), subject,
                                 sizeof(subject));
    }

    snprintf(st->why, sizeof(st->why), "certificate verify failed: %s%s%s%s",
             X509_verify_cert_error_string(e),
             subject[0] ? " (" : "", subject, subject[0] ? ")" : "");
    return rc;
}


int
zgw_tls_asked(SSL_CTX *ctx)
{
    zgw_tls_state_t  *st;

    st = zgw_tls_state(ctx);
    return st != NULL && st->asked;
}


const char *
zgw_tls_version(SSL_CTX *ctx)
{
    zgw_tls_state_t  *st;

    st = zgw_tls_state(ctx);
    return st != NULL && st->version[0] ? st->version : "TLS";
}


int
zgw_tls_refused(SSL_CTX *ctx)
{
    zgw_tls_state_t  *st;

    st = zgw_tls_state(ctx);
    return st != NULL && st->refused;
}


const char *
zgw_tls_why(SSL_CTX *ctx, const char *fallback, char *buf, size_t len)
{
    int                sys;
    unsigned long      code;
    zgw_tls_state_t   *st;

    st = zgw_tls_state(ctx);
    code = ERR_peek_last_error();
    sys = code == 0 || ERR_SYSTEM_ERROR(code);

    if (st != NULL && st->refused) {
        snprintf(buf, len, "%s", st->why);

    } else if (st != NULL && st->asked && sys) {
        snprintf(buf, len, "the server closed the connection after asking "
                 "for a client certificate, and none is set (cert_file, "
                 "key_file)");

    } else if (zgw_tls_reason(buf, len) == NULL) {
        snprintf(buf, len, "%s", fallback);
    }

    return buf;
}


SSL *
zgw_tls_connect(SSL_CTX *ctx, int fd, int timeout_ms, char *err,
    size_t errlen)
{
    int      e, w, heard;
    SSL     *ssl;
    char     why[512];
    double   deadline;

    ERR_clear_error();

    /* the whole handshake, not each wait: a peer that sends a byte now
       and then must not keep us forever */
    deadline = zgw_now_ms() + timeout_ms;
    heard = 0;

    ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) {
        snprintf(err, errlen, "TLS: out of memory");
        SSL_free(ssl);
        return NULL;
    }

    for ( ;; ) {
        errno = 0;

        e = SSL_connect(ssl);
        if (e == 1) {
            ERR_clear_error();
            return ssl;
        }

        e = SSL_get_error(ssl, e);

        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            w = zgw_ms_left(deadline);
            if (w > 0) {
                w = zgw_wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN
                                                            : POLLOUT, w);
            }

            if (w > 0) {
                heard |= (e == SSL_ERROR_WANT_READ);
                continue;
            }

            if (w == 0 && heard) {
                snprintf(err, errlen, "the TLS handshake did not finish "
                         "within %d ms (the server answers too slowly)",
                         timeout_ms);

            } else if (w == 0) {
                snprintf(err, errlen, "no answer to the TLS handshake "
                         "within %d ms", timeout_ms);

            } else {
                snprintf(err, errlen, "TLS handshake: %s", strerror(errno));
            }

            break;
        }

        if (zgw_tls_refused(ctx) || ERR_peek_last_error() != 0) {
            snprintf(err, errlen, "TLS handshake: %s",
                     zgw_tls_why(ctx, "failed", why, sizeof(why)));

        } else if (e == SSL_ERROR_SYSCALL && errno != 0) {
            snprintf(err, errlen, "TLS handshake: %s", strerror(errno));

        } else {
            snprintf(err, errlen, "TLS handshake: the server closed the "
                     "connection (not a TLS port?)");
        }

        break;
    }

    ERR_clear_error();
    SSL_free(ssl);
    return NULL;
}
