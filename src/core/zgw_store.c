/*
 * ngx_zmq core: the configuration store in Redis (blocking client).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "zgw_redis_conn.h"
#include "zgw_sentinel.h"
#include "zgw_store.h"


struct zgw_store_s {
    zgw_redis_conn_t   *conn;
    int                 sentinel;
    char                url[512];
};


static int
zgw_store_reply_error(zgw_store_t *st, redisReply *r, const char *what,
    zgw_errors_t *errs)
{
    char  shown[ZGW_SHOW_SIZE];

    if (r == NULL) {
        zgw_errors_add(errs, "redis %s: %s: %s%s", st->url, what,
                       zgw_redis_error(st->conn) != NULL
                       ? zgw_redis_error(st->conn) : "connection lost",
                       st->sentinel ? " (the master was lost: a failover "
                                      "in progress? try again)" : "");
        return ZGW_ERROR;
    }

    if (zgw_redis_is_readonly(r)) {
        /*
         * a master demoted under us (a failover), or a replica: with
         * Sentinel the next connection asks for the new master
         */
        zgw_errors_add(errs, "redis %s: %s: %s (%s)", st->url, what,
                       st->sentinel ? "the master changed (failover in "
                                      "progress): try again"
                                    : "the server is a read-only replica, "
                                      "not the master",
                       zgw_show(shown, sizeof(shown), r->str, r->len));
        freeReplyObject(r);
        return ZGW_ERROR;
    }

    if (r->type == REDIS_REPLY_ERROR) {
        zgw_errors_add(errs, "redis %s: %s: %s", st->url, what,
                       zgw_show(shown, sizeof(shown), r->str, r->len));
        freeReplyObject(r);
        return ZGW_ERROR;
    }

    return ZGW_OK;
}


zgw_store_t *
zgw_store_connect(const char *url, int timeout_ms, zgw_errors_t *errs)
{
    char               err[1024];
    zgw_store_t       *st;
    zgw_redis_addr_t   addr;

    /* redis-sentinel:// too: zgw_redis_connect() asks for the master */
    if (zgw_redis_addr_parse_ex(&addr, url, ZGW_REDIS_SENTINEL, errs)
        != ZGW_OK)
    {
        return NULL;
    }

    st = calloc(1, sizeof(zgw_store_t));
    if (st == NULL) {
        OPENSSL_cleanse(addr.password, sizeof(addr.password));
        zgw_errors_add(errs, "redis: out of memory");
        return NULL;
    }

    /* every message names the store without its password */
    zgw_url_redact(url, st->url, sizeof(st->url));
    st->sentinel = addr.sentinel;

    /* TCP (and TLS for rediss://), AUTH, SELECT: every wait bounded */
    st->conn = zgw_redis_connect(&addr, timeout_ms, err, sizeof(err));
    OPENSSL_cleanse(addr.password, sizeof(addr.password));

    if (st->conn == NULL) {
        zgw_errors_add(errs, "redis %s: %s", st->url, err);
        free(st);
        return NULL;
    }

    return st;
}


zgw_redis_conn_t *
zgw_store_context(zgw_store_t *st)
{
    return st->conn;
}


void
zgw_store_close(zgw_store_t *st)
{
    if (st == NULL) {
        return;
    }

    zgw_redis_close(st->conn);

    free(st);
}


int
zgw_store_version(zgw_store_t *st, long long *version, zgw_errors_t *errs)
{
    redisReply  *r;

    r = zgw_redis_command(st->conn, "GET %s", ZGW_KEY_VERSION);
    if (zgw_store_reply_error(st, r, "GET " ZGW_KEY_VERSION, errs) != ZGW_OK)
    {
        return ZGW_ERROR;
    }

    *version = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    return ZGW_OK;
}


int
zgw_store_load(zgw_store_t *st, zgw_config_t *cfg, zgw_errors_t *errs)
{
    int            rc, argc;
    redisReply    *r;
    const char    *argv[ZGW_SNAPSHOT_ARGC];

    argc = zgw_store_snapshot_argv(argv);

    r = zgw_redis_command_argv(st->conn, argc, argv, NULL);
    if (zgw_store_reply_error(st, r, "snapshot", errs) != ZGW_OK) {
        return ZGW_ERROR;
    }

    rc = zgw_store_snapshot_parse(r, cfg, errs);
    freeReplyObject(r);
    return rc;
}


int
zgw_store_apply(zgw_store_t *st, const zgw_config_t *prev,
    const zgw_config_t *next, int dry_run, long long *version,
    size_t *changes, zgw_errors_t *errs)
{
    int                rc;
    size_t             n;
    zgw_store_argv_t   a;
    redisReply        *r;

    rc = ZGW_ERROR;

    if (zgw_store_apply_argv(prev, next, &a, &n) != ZGW_OK) {
        goto nomem;
    }

    if (changes != NULL) {
        *changes = n;
    }

    if (n == 0 || dry_run) {
        if (version != NULL) {
            *version = prev->version;
        }
        rc = ZGW_OK;
        goto done;
    }

    r = zgw_redis_command_argv(st->conn, (int) a.n, a.argv, NULL);
    if (zgw_store_reply_error(st, r, "write", errs) != ZGW_OK) {
        goto done;
    }

    if (version != NULL) {
        *version = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    }

    freeReplyObject(r);
    rc = ZGW_OK;
    goto done;

nomem:

    zgw_errors_add(errs, "redis %s: out of memory", st->url);

done:

    zgw_store_argv_free(&a);
    return rc;
}


int
zgw_store_replace(zgw_store_t *st, const zgw_config_t *prev,
    const zgw_config_t *next, long long floor, const char *op,
    long long *version, size_t *changes, zgw_errors_t *errs)
{
    int          rc;
    char         expected[32], least[32];
    size_t       n;
    zgw_store_argv_t   a;
    redisReply  *r;

    memset(&a, 0, sizeof(a));
    rc = ZGW_ERROR;
    n = 0;

    snprintf(expected, sizeof(expected), "%lld", prev->version);
    snprintf(least, sizeof(least), "%lld", floor);

    if (zgw_store_argv_push(&a, "EVAL", 0) != ZGW_OK
        || zgw_store_argv_push(&a, zgw_store_replace_lua, 0) != ZGW_OK
        || zgw_store_argv_push(&a, "0", 0) != ZGW_OK
        || zgw_store_argv_push(&a, expected, 0) != ZGW_OK
        || zgw_store_argv_push(&a, least, 0) != ZGW_OK
        || zgw_store_argv_push(&a, op, 0) != ZGW_OK
        || zgw_store_diff(&a, prev, next, &n) != ZGW_OK)
    {
        zgw_errors_add(errs, "redis %s: out of memory", st->url);
        goto done;
    }

    if (changes != NULL) {
        *changes = n;
    }

    r = zgw_redis_command_argv(st->conn, (int) a.n, a.argv, NULL);
    if (zgw_store_reply_error(st, r, op, errs) != ZGW_OK) {
        goto done;
    }

    if (version != NULL) {
        *version = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    }

    freeReplyObject(r);
    rc = ZGW_OK;

done:

    zgw_store_argv_free(&a);
    return rc;
}
