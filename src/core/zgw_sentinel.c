/*
 * ngx_zmq core: reading Redis Sentinel's answers (see zgw_sentinel.h).
 */

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "zgw_err.h"
#include "zgw_sentinel.h"


/* what may be shown of a peer's text: printable, cut (64 bytes and "...") */
static void
zgw_sentinel_show(char *out, size_t size, const char *s, size_t len)
{
    (void) zgw_show(out, size < 68 ? size : 68, s, len);
}


int
zgw_sentinel_master_reply(const redisReply *r, const char *name, char *ip,
    size_t iplen, int *port, int *ipv6, char *why, size_t whylen)
{
    char                 shown[80];
    size_t               i;
    long                 p;
    unsigned char        buf[16];
    const redisReply    *h, *pt;

    if (r == NULL) {
        snprintf(why, whylen, "no reply");
        return -1;
    }

    if (r->type == REDIS_REPLY_NIL) {
        snprintf(why, whylen, "does not know the master '%s'", name);
        return -1;
    }

    if (r->type == REDIS_REPLY_ERROR) {
        zgw_sentinel_show(shown, sizeof(shown), r->str, r->len);
        snprintf(why, whylen, "answered an error: %s", shown);
        return -1;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
        || r->element[0]->type != REDIS_REPLY_STRING
        || r->element[1]->type != REDIS_REPLY_STRING)
    {
        snprintf(why, whylen, "answered something that is not an address "
                 "and a port (is it a sentinel?)");
        return -1;
    }

    h = r->element[0];
    pt = r->element[1];

    zgw_sentinel_show(shown, sizeof(shown), h->str, h->len);

    /* an address: no NUL inside, short, and inet_pton's */
    if (h->len == 0 || h->len >= ZGW_SENTINEL_IP_MAX || h->len >= iplen
        || memchr(h->str, '\0', h->len) != NULL)
    {
        snprintf(why, whylen, "named the master '%s', which is not an IP "
                 "address", shown);
        return -1;
    }

    memcpy(ip, h->str, h->len);
    ip[h->len] = '\0';

    if (inet_pton(AF_INET, ip, buf) == 1) {
        *ipv6 = 0;

    } else if (inet_pton(AF_INET6, ip, buf) == 1) {
        *ipv6 = 1;

    } else {
        ip[0] = '\0';
        snprintf(why, whylen, "named the master '%s', which is not an IP "
                 "address (sentinel's announce-hostnames is not "
                 "supported)", shown);
        return -1;
    }

    p = 0;

    for (i = 0; i < pt->len; i++) {
        if (pt->str[i] < '0' || pt->str[i] > '9' || i >= 5) {
            p = -1;
            break;
        }
        p = p * 10 + (pt->str[i] - '0');
    }

    if (pt->len == 0 || p < 1 || p > 65535) {
        zgw_sentinel_show(shown, sizeof(shown), pt->str, pt->len);
        snprintf(why, whylen, "named the master's port '%s', which is not "
                 "1-65535", shown);
        ip[0] = '\0';
        return -1;
    }

    *port = (int) p;
    return 0;
}


int
zgw_sentinel_is_master(const redisReply *r, char *why, size_t whylen)
{
    char               shown[80];
    const redisReply  *e;

    if (r == NULL) {
        snprintf(why, whylen, "no answer to ROLE");
        return 0;
    }

    if (r->type == REDIS_REPLY_ERROR) {
        zgw_sentinel_show(shown, sizeof(shown), r->str, r->len);
        snprintf(why, whylen, "ROLE: %s", shown);
        return 0;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1
        || r->element[0]->type != REDIS_REPLY_STRING)
    {
        snprintf(why, whylen, "ROLE: an unexpected answer");
        return 0;
    }

    e = r->element[0];

    if (e->len == 6 && memcmp(e->str, "master", 6) == 0) {
        return 1;
    }

    if (e->len == 5 && memcmp(e->str, "slave", 5) == 0) {
        snprintf(why, whylen, "a replica, not the master");
        return 0;
    }

    zgw_sentinel_show(shown, sizeof(shown), e->str, e->len);
    snprintf(why, whylen, "not the master (ROLE is '%s')", shown);
    return 0;
}


int
zgw_sentinel_switch_is_for(const char *msg, size_t len, const char *name)
{
    size_t  n;

    n = strlen(name);

    return n > 0 && len > n && memcmp(msg, name, n) == 0 && msg[n] == ' ';
}


int
zgw_sentinel_switch_target(const char *msg, size_t len, const char *name,
    char *ip, size_t iplen, int *port)
{
    size_t          i, n, start, f, flen[5], fpos[5];
    long            p;
    unsigned char   buf[16];

    if (!zgw_sentinel_switch_is_for(msg, len, name)) {
        return -1;
    }

    /* five fields, each separated by one space */
    n = 0;
    start = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && msg[i] != ' ') {
            continue;
        }

        if (n == 5 || i == start) {
            return -1;
        }

        fpos[n] = start;
        flen[n] = i - start;
        n++;
        start = i + 1;
    }

    if (n != 5) {
        return -1;
    }

    /* the new address: as zgw_sentinel_master_reply() takes one */
    f = fpos[3];

    if (flen[3] >= ZGW_SENTINEL_IP_MAX || flen[3] >= iplen
        || memchr(msg + f, '\0', flen[3]) != NULL)
    {
        return -1;
    }

    memcpy(ip, msg + f, flen[3]);
    ip[flen[3]] = '\0';

    if (inet_pton(AF_INET, ip, buf) != 1
        && inet_pton(AF_INET6, ip, buf) != 1)
    {
        ip[0] = '\0';
        return -1;
    }

    p = 0;
    f = fpos[4];

    for (i = 0; i < flen[4]; i++) {
        if (msg[f + i] < '0' || msg[f + i] > '9' || i >= 5) {
            p = -1;
            break;
        }
        p = p * 10 + (msg[f + i] - '0');
    }

    if (p < 1 || p > 65535) {
        ip[0] = '\0';
        return -1;
    }

    *port = (int) p;
    return 0;
}


int
zgw_redis_is_readonly(const redisReply *r)
{
    return r != NULL && r->type == REDIS_REPLY_ERROR && r->len >= 8
           && memcmp(r->str, "READONLY", 8) == 0;
}
