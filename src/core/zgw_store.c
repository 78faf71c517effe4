/*
 * ngx_zmq core: the configuration store in Redis (blocking client).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "zgw_resp_limit.h"
#include "zgw_store.h"


struct zgw_store_s {
    redisContext       *ctx;
    zgw_resp_budget_t   budget;
    char                url[512];
};


static int
zgw_store_reply_error(zgw_store_t *st, redisReply *r, const char *what,
    zgw_errors_t *errs)
{
    if (r == NULL) {
        zgw_errors_add(errs, "redis %s: %s: %s", st->url, what,
                       st->ctx->errstr[0] ? st->ctx->errstr
                                          : "connection lost");
        return ZGW_ERROR;
    }

    if (r->type == REDIS_REPLY_ERROR) {
        zgw_errors_add(errs, "redis %s: %s: %s", st->url, what, r->str);
        freeReplyObject(r);
        return ZGW_ERROR;
    }

    return ZGW_OK;
}


zgw_store_t *
zgw_store_connect(const char *url, int timeout_ms, zgw_errors_t *errs)
{
    int                auth;
    redisReply        *r;
    zgw_store_t       *st;
    struct timeval     tv;
    zgw_redis_addr_t   addr;

    if (zgw_redis_addr_parse(&addr, url, errs) != ZGW_OK) {
        return NULL;
    }

    if (addr.tls) {
        memset(addr.password, 0, sizeof(addr.password));
        zgw_errors_add(errs, "redis: rediss:// (TLS) is not supported by "
                       "this client yet");
        return NULL;
    }

    st = calloc(1, sizeof(zgw_store_t));
    if (st == NULL) {
        memset(addr.password, 0, sizeof(addr.password));
        zgw_errors_add(errs, "redis: out of memory");
        return NULL;
    }

    /* every message names the store without its password */
    zgw_url_redact(url, st->url, sizeof(st->url));

    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;

    st->ctx = redisConnectWithTimeout(addr.host, addr.port, tv);
    if (st->ctx == NULL || st->ctx->err) {
        zgw_errors_add(errs, "redis %s: cannot connect: %s", st->url,
                       st->ctx ? st->ctx->errstr : "out of memory");
        goto failed;
    }

    zgw_resp_limit(st->ctx->reader, &st->budget);

    if (redisSetTimeout(st->ctx, tv) != REDIS_OK) {
        zgw_errors_add(errs, "redis %s: cannot set a timeout", st->url);
        goto failed;
    }

    /* AUTH user password (a Redis 6 ACL user), or AUTH password */
    r = NULL;
    auth = addr.username[0] || addr.password[0];

    if (addr.username[0]) {
        r = redisCommand(st->ctx, "AUTH %s %s", addr.username,
                         addr.password);
    } else if (addr.password[0]) {
        r = redisCommand(st->ctx, "AUTH %s", addr.password);
    }

    memset(addr.password, 0, sizeof(addr.password));

    if (auth) {
        if (zgw_store_reply_error(st, r, "AUTH", errs) != ZGW_OK) {
            goto failed;
        }
        freeReplyObject(r);
    }

    if (addr.db) {
        r = redisCommand(st->ctx, "SELECT %d", addr.db);
        if (zgw_store_reply_error(st, r, "SELECT", errs) != ZGW_OK) {
            goto failed;
        }
        freeReplyObject(r);
    }

    return st;

failed:

    memset(addr.password, 0, sizeof(addr.password));
    zgw_store_close(st);
    return NULL;
}


struct redisContext *
zgw_store_context(zgw_store_t *st)
{
    return st->ctx;
}


void
zgw_store_close(zgw_store_t *st)
{
    if (st == NULL) {
        return;
    }

    if (st->ctx != NULL) {
        redisFree(st->ctx);
    }

    free(st);
}


int
zgw_store_version(zgw_store_t *st, long long *version, zgw_errors_t *errs)
{
    redisReply  *r;

    r = redisCommand(st->ctx, "GET %s", ZGW_KEY_VERSION);
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

    r = redisCommandArgv(st->ctx, argc, argv, NULL);
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

    r = redisCommandArgv(st->ctx, (int) a.n, a.argv, NULL);
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

    r = redisCommandArgv(st->ctx, (int) a.n, a.argv, NULL);
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
