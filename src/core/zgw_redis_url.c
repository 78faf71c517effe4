/*
 * ngx_zmq core: Redis addresses, and URLs as they may be shown.
 */

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "zgw_hostport.h"
#include "zgw_redis_url.h"


static int
zgw_url_is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}


static int
zgw_url_is_digit(int c)
{
    return c >= '0' && c <= '9';
}


static int
zgw_url_hex(int c)
{
    if (zgw_url_is_digit(c)) {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}


/*
 * The length of "scheme://" at the start of url (RFC 3986: a letter, then
 * letters, digits, '+', '-', '.'), or 0 when url does not begin with one.
 */
static size_t
zgw_url_scheme(const char *url, size_t len, size_t *scheme_len)
{
    size_t  i;

    if (len == 0 || !zgw_url_is_alpha((unsigned char) url[0])) {
        return 0;
    }

    for (i = 1; i < len; i++) {
        if (!zgw_url_is_alpha((unsigned char) url[i])
            && !zgw_url_is_digit((unsigned char) url[i])
            && url[i] != '+' && url[i] != '-' && url[i] != '.')
        {
            break;
        }
    }

    if (len - i < 3 || memcmp(url + i, "://", 3) != 0) {
        return 0;
    }

    if (scheme_len != NULL) {
        *scheme_len = i;
    }

    return i + 3;
}


char *
zgw_url_redact_len(const char *url, size_t len, char *out, size_t size)
{
    size_t       start, i, n, at, colon;
    const char  *mask;

    if (size == 0) {
        return out;
    }

    start = zgw_url_scheme(url, len, NULL);

    /* the user information ends at the last '@'; a password at its ':' */
    at = len;
    for (i = len; i > start; i--) {
        if (url[i - 1] == '@') {
            at = i - 1;
            break;
        }
    }

    colon = len;
    if (at < len) {
        for (i = start; i < at; i++) {
            if (url[i] == ':') {
                colon = i;
                break;
            }
        }
    }

    n = 0;
    mask = NULL;

    for (i = 0; i < len && n + 1 < size; i++) {
        if (i == colon + 1 && mask == NULL) {
            mask = "***";
            while (*mask && n + 1 < size) {
                out[n++] = *mask++;
            }
            i = at;             /* the '@' comes next */
            if (n + 1 >= size) {
                break;
            }
        }

        /* no control characters into a log line */
        out[n++] = ((unsigned char) url[i] < 0x20 || url[i] == 0x7f)
                   ? '?' : url[i];
    }

    out[n] = '\0';
    return out;
}


char *
zgw_url_redact(const char *url, char *out, size_t size)
{
    return zgw_url_redact_len(url, url ? strlen(url) : 0, out, size);
}


/* percent-decodes s[0..n) into out[size]; NULL, or why it cannot */
static const char *
zgw_url_decode(const char *s, size_t n, char *out, size_t size)
{
    int     hi, lo;
    size_t  i, o;

    o = 0;

    for (i = 0; i < n; i++) {
        if (o + 1 >= size) {
            return "is longer than 255 bytes";
        }

        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }

        hi = -1;
        lo = -1;

        if (i + 2 < n) {
            hi = zgw_url_hex((unsigned char) s[i + 1]);
            lo = zgw_url_hex((unsigned char) s[i + 2]);
        }

        if (hi < 0 || lo < 0) {
            return "has a '%' that is not followed by two hex digits "
                   "(write a '%' itself as %25)";
        }

        if (hi == 0 && lo == 0) {
            return "contains %00 (NUL)";
        }

        out[o++] = (char) (hi << 4 | lo);
        i += 2;
    }

    out[o] = '\0';
    return NULL;
}


/*
 * The TLS options of a rediss:// URL: name=value pairs joined by '&',
 * values percent-decoded. NULL, or why not (in why[size]).
 */
static const char *
zgw_redis_url_query(zgw_redis_addr_t *addr, const char *q, char *why,
    size_t size)
{
    char         value[ZGW_REDIS_PATH_MAX];
    size_t       nlen, vlen;
    const char  *amp, *eq, *reason;

    while (*q != '\0') {
        amp = strchr(q, '&');
        if (amp == NULL) {
            amp = q + strlen(q);
        }

        eq = memchr(q, '=', (size_t) (amp - q));
        if (eq == NULL || eq == q) {
            snprintf(why, size, "the query needs name=value pairs joined "
                     "by '&' (ca_file, verify, server_name, cert_file, "
                     "key_file)");
            return why;
        }

        nlen = (size_t) (eq - q);
        vlen = (size_t) (amp - eq - 1);

        reason = zgw_url_decode(eq + 1, vlen, value, sizeof(value));
        if (reason != NULL) {
            snprintf(why, size, "the value of '%.*s' %s", (int) nlen, q,
                     strcmp(reason, "is longer than 255 bytes") == 0
                     ? "is too long" : reason);
            return why;
        }

#define ZGW_Q(name) (nlen == sizeof(name) - 1 && memcmp(q, name, nlen) == 0)

        if (ZGW_Q("verify")) {
            if (strcmp(value, "1") == 0 || strcasecmp(value, "true") == 0
                || strcasecmp(value, "yes") == 0)
            {
                addr->verify = 1;

            } else if (strcmp(value, "0") == 0
                       || strcasecmp(value, "false") == 0
                       || strcasecmp(value, "no") == 0)
            {
                addr->verify = 0;

            } else {
                snprintf(why, size, "verify must be 1 or 0 (true, false)");
                return why;
            }

        } else if (ZGW_Q("ca_file") || ZGW_Q("cert_file")
                   || ZGW_Q("key_file"))
        {
            if (value[0] == '\0') {
                snprintf(why, size, "%.*s is empty", (int) nlen, q);
                return why;
            }
            memcpy(ZGW_Q("ca_file") ? addr->ca_file
                   : ZGW_Q("cert_file") ? addr->cert_file : addr->key_file,
                   value, strlen(value) + 1);

        } else if (ZGW_Q("server_name")) {
            if (value[0] == '\0' || strlen(value) >= sizeof(addr->server_name)
                || strpbrk(value, "/?#@ ") != NULL)
            {
                snprintf(why, size, "server_name must be a host name");
                return why;
            }
            memcpy(addr->server_name, value, strlen(value) + 1);

        } else {
            snprintf(why, size, "unknown option '%.*s' in the query (known: "
                     "ca_file, verify, server_name, cert_file, key_file)",
                     (int) (nlen > 64 ? 64 : nlen), q);
            return why;
        }

#undef ZGW_Q

        q = *amp ? amp + 1 : amp;
    }

    if ((addr->cert_file[0] == '\0') != (addr->key_file[0] == '\0')) {
        snprintf(why, size, "cert_file and key_file go together");
        return why;
    }

    return NULL;
}


int
zgw_redis_addr_parse(zgw_redis_addr_t *addr, const char *url,
    zgw_errors_t *errs)
{
    return zgw_redis_addr_parse_ex(addr, url, 0, errs);
}


/*
 * "host[:port],host[:port].../master-name[/db]" of a redis-sentinel://
 * URL, from p (after the user information) to the end. NULL, or why not.
 */
static const char *
zgw_redis_url_sentinels(zgw_redis_addr_t *addr, const char *p, char *why,
    size_t size)
{
    long             db;
    size_t           n;
    const char      *end, *item, *comma, *name;
    zgw_errors_t     hperrs;
    zgw_hostport_t   hp;

    end = p + strcspn(p, "/");

    if (*end != '/') {
        snprintf(why, size, "the master's name is missing: write "
                 "redis-sentinel://host:port[,host:port]/master-name[/db]");
        return why;
    }

    for (item = p; item <= end; item = comma + 1) {
        comma = memchr(item, ',', (size_t) (end - item));
        if (comma == NULL) {
            comma = end;
        }

        if (comma == item) {
            snprintf(why, size, "an empty sentinel address (two ',' in a "
                     "row, or one at an end)");
            return why;
        }

        if (addr->nsentinels == ZGW_SENTINELS_MAX) {
            snprintf(why, size, "more than %d sentinels", ZGW_SENTINELS_MAX);
            return why;
        }

        zgw_errors_init(&hperrs);

        if (zgw_hostport_parse(&hp, item, (size_t) (comma - item),
                               ZGW_SENTINEL_PORT, "sentinel", &hperrs)
            != ZGW_OK)
        {
            snprintf(why, size, "%s", zgw_errors_first(&hperrs));
            zgw_errors_free(&hperrs);
            return why;
        }

        zgw_errors_free(&hperrs);

        n = (size_t) addr->nsentinels++;
        memcpy(addr->sentinels[n].host, hp.host, strlen(hp.host) + 1);
        addr->sentinels[n].port = hp.port;
        addr->sentinels[n].ipv6 = hp.kind == ZGW_HOST_IS_IPV6;

        if (comma == end) {
            break;
        }
    }

    memcpy(addr->host, addr->sentinels[0].host,
           strlen(addr->sentinels[0].host) + 1);
    addr->port = addr->sentinels[0].port;
    addr->ipv6 = addr->sentinels[0].ipv6;

    /* /master-name[/db] */

    name = end + 1;
    end = name + strcspn(name, "/");
    n = (size_t) (end - name);

    if (n == 0 || n >= sizeof(addr->master_name)
        || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789._-") < n)
    {
        snprintf(why, size, "the master's name must be 1-255 of letters, "
                 "digits and . _ -");
        return why;
    }

    memcpy(addr->master_name, name, n);
    addr->master_name[n] = '\0';

    if (*end == '/' && end[1] != '\0') {
        db = 0;
        for (p = end + 1; *p; p++) {
            if (!zgw_url_is_digit((unsigned char) *p) || db > 65535) {
                break;
            }
            db = db * 10 + (*p - '0');
        }

        if (*p != '\0' || db > 65535) {
            snprintf(why, size, "the database must be a number 0-65535 "
                     "after the master's name, and nothing may follow it");
            return why;
        }

        addr->db = (int) db;
    }

    return NULL;
}


int
zgw_redis_addr_parse_ex(zgw_redis_addr_t *addr, const char *url, int flags,
    zgw_errors_t *errs)
{
    long             db;
    char             why[400], shown[ZGW_URL_SHOW_MAX];
    size_t           len, start, scheme, i;
    const char      *p, *end, *at, *colon, *reason, *query, *qend;
    zgw_errors_t     hperrs;
    zgw_hostport_t   hp;

    memset(addr, 0, sizeof(*addr));
    addr->port = 6379;

    len = strlen(url);
    start = zgw_url_scheme(url, len, &scheme);
    reason = NULL;

    if (start != 0) {
        if (scheme == 6 && strncasecmp(url, "rediss", 6) == 0) {
            addr->tls = 1;
            addr->verify = 1;

        } else if (scheme == 14 && strncasecmp(url, "redis-sentinel", 14)
                   == 0)
        {
            if (!(flags & ZGW_REDIS_SENTINEL)) {
                reason = "redis-sentinel:// is not supported here";
                goto failed;
            }
            addr->sentinel = 1;

        } else if (scheme != 5 || strncasecmp(url, "redis", 5) != 0) {
            reason = (flags & ZGW_REDIS_SENTINEL)
                     ? "only redis://, rediss:// and redis-sentinel:// are "
                       "supported"
                     : "only redis:// and rediss:// are supported";
            goto failed;
        }
    }

    for (i = 0; i < len; i++) {
        if ((unsigned char) url[i] <= 0x20 || url[i] == 0x7f) {
            reason = "contains white space or a control character (write "
                     "them in a password as %20, ...)";
            goto failed;
        }
    }

    p = url + start;

    /* [user][:password]@ : up to the last '@' */

    at = strrchr(p, '@');
    if (at != NULL) {
        colon = memchr(p, ':', (size_t) (at - p));

        for (i = 0; i < (size_t) ((colon ? colon : at) - p); i++) {
            if (strchr("/?#[]", p[i]) != NULL) {
                snprintf(why, sizeof(why), "the user name contains '%c' "
                         "(write it percent-encoded, as %%%02X)", p[i],
                         (unsigned char) p[i]);
                reason = why;
                goto failed;
            }
        }

        reason = zgw_url_decode(p, (size_t) ((colon ? colon : at) - p),
                                addr->username, sizeof(addr->username));
        if (reason != NULL) {
            snprintf(why, sizeof(why), "the user name %s", reason);
            reason = why;
            goto failed;
        }

        if (colon != NULL) {
            reason = zgw_url_decode(colon + 1, (size_t) (at - colon - 1),
                                    addr->password, sizeof(addr->password));
            if (reason != NULL) {
                snprintf(why, sizeof(why), "the password %s", reason);
                reason = why;
                goto failed;
            }
            addr->has_password = 1;
        }

        p = at + 1;
    }

    if (addr->sentinel) {
        if (strpbrk(p, "?#") != NULL) {
            reason = "a query or a fragment ('?', '#') is not supported "
                     "with redis-sentinel://";
            goto failed;
        }

        reason = zgw_redis_url_sentinels(addr, p, why, sizeof(why));
        if (reason != NULL) {
            goto failed;
        }

        return ZGW_OK;
    }

    /* host[:port], up to the path */

    end = p + strcspn(p, "/?#");

    if (end == p) {
        reason = "no host";
        goto failed;
    }

    zgw_errors_init(&hperrs);

    if (zgw_hostport_parse(&hp, p, (size_t) (end - p), 6379, "host", &hperrs)
        != ZGW_OK)
    {
        snprintf(why, sizeof(why), "%s", zgw_errors_first(&hperrs));
        zgw_errors_free(&hperrs);
        reason = why;
        goto failed;
    }

    zgw_errors_free(&hperrs);

    memcpy(addr->host, hp.host, strlen(hp.host) + 1);
    addr->port = hp.port;
    addr->ipv6 = hp.kind == ZGW_HOST_IS_IPV6;

    if (strchr(end, '#') != NULL) {
        reason = "a fragment ('#') is not supported";
        goto failed;
    }

    query = strchr(end, '?');
    qend = query ? query : end + strlen(end);

    /* [/db] */

    if (*end == '/' && end + 1 < qend) {
        db = 0;
        for (p = end + 1; p < qend; p++) {
            if (!zgw_url_is_digit((unsigned char) *p) || db > 65535) {
                break;
            }
            db = db * 10 + (*p - '0');
        }

        if (p != qend || db > 65535) {
            reason = "the database must be a number 0-65535 after '/', "
                     "and only a query ('?') may follow it";
            goto failed;
        }

        addr->db = (int) db;

    } else if (*end == '/' && end + 1 != qend) {
        reason = "the database must be a number 0-65535 after '/'";
        goto failed;
    }

    if (query != NULL) {
        if (!addr->tls) {
            reason = "a query ('?') holds TLS options, which need rediss://";
            goto failed;
        }

        reason = zgw_redis_url_query(addr, query + 1, why, sizeof(why));
        if (reason != NULL) {
            goto failed;
        }
    }

    return ZGW_OK;

failed:

    zgw_errors_add(errs, "redis address '%s': %s",
                   zgw_url_redact(url, shown, sizeof(shown)), reason);
    memset(addr->password, 0, sizeof(addr->password));
    memset(addr, 0, sizeof(*addr));
    return ZGW_ERROR;
}
