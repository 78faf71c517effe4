/*
 * ngx_zmq core: host and host:port.
 */

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "zgw_hostport.h"


#define ZGW_ECHO_MAX  64


/* text as it may appear in a message: printable, and not too long */
static void
zgw_hostport_echo(char *out, size_t size, const char *text, size_t len)
{
    size_t  i, n;

    n = len < ZGW_ECHO_MAX ? len : ZGW_ECHO_MAX;
    if (n > size - 4) {
        n = size - 4;
    }

    for (i = 0; i < n; i++) {
        out[i] = (text[i] >= 0x20 && text[i] < 0x7f) ? text[i] : '?';
    }

    if (n < len) {
        memcpy(out + i, "...", 3);
        i += 3;
    }

    out[i] = '\0';
}


static int
zgw_hostport_fail(zgw_errors_t *errs, const char *who, const char *text,
    size_t len, const char *reason)
{
    char  echo[ZGW_ECHO_MAX + 4];

    zgw_hostport_echo(echo, sizeof(echo), text, len);

    if (who != NULL) {
        zgw_errors_add(errs, "%s '%s': %s", who, echo, reason);
    } else {
        zgw_errors_add(errs, "'%s': %s", echo, reason);
    }

    return ZGW_ERROR;
}


static int
zgw_is_digit(char c)
{
    return c >= '0' && c <= '9';
}


static int
zgw_is_alnum(char c)
{
    return zgw_is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}


/* RFC 1123 name, or a dotted quad; s is NUL-ended, n its length */
static int
zgw_host_name(zgw_hostport_t *hp, const char *s, size_t n, char *reason,
    size_t rsize)
{
    size_t          i, label;
    unsigned char   a4[4];
    int             numeric;

    if (n == 0) {
        snprintf(reason, rsize, "no host");
        return ZGW_ERROR;
    }

    /* digits and dots only, with at least one digit */
    numeric = 0;
    for (i = 0; i < n; i++) {
        if (zgw_is_digit(s[i])) {
            numeric = 1;
        } else if (s[i] != '.') {
            numeric = 0;
            break;
        }
    }

    if (numeric) {
        if (inet_pton(AF_INET, s, a4) != 1) {
            snprintf(reason, rsize, "'%.*s' is not an IPv4 address (four "
                     "numbers 0-255 separated by dots)", ZGW_ECHO_MAX, s);
            return ZGW_ERROR;
        }

        memcpy(hp->host, s, n + 1);
        hp->kind = ZGW_HOST_IS_IPV4;
        return ZGW_OK;
    }

    if (n > ZGW_HOST_NAME_MAX + (s[n - 1] == '.')) {
        snprintf(reason, rsize, "the host name is longer than %d characters",
                 ZGW_HOST_NAME_MAX);
        return ZGW_ERROR;
    }

    label = 0;

    for (i = 0; i <= n; i++) {

        if (i == n || s[i] == '.') {
            if (label == 0) {
                if (i == n && i > 0) {
                    break;                      /* one trailing dot */
                }
                snprintf(reason, rsize, "the host name has an empty label "
                         "(a leading dot or two dots in a row)");
                return ZGW_ERROR;
            }

            if (label > 63) {
                snprintf(reason, rsize, "a label of the host name is longer "
                         "than 63 characters");
                return ZGW_ERROR;
            }

            if (s[i - label] == '-' || s[i - 1] == '-') {
                snprintf(reason, rsize, "a label of the host name begins or "
                         "ends with '-'");
                return ZGW_ERROR;
            }

            label = 0;
            continue;
        }

        /* '_' is not RFC 1123, but resolvers take it and container
         * platforms name hosts with it (my_rabbit) */
        if (!zgw_is_alnum(s[i]) && s[i] != '-' && s[i] != '_') {
            if ((unsigned char) s[i] > 0x20 && (unsigned char) s[i] < 0x7f) {
                snprintf(reason, rsize, "'%c' is not allowed in a host name "
                         "(letters, digits, '-', '_' and '.')", s[i]);
            } else {
                snprintf(reason, rsize, "a host name has letters, digits, "
                         "'-', '_' and '.' only");
            }
            return ZGW_ERROR;
        }

        label++;
    }

    memcpy(hp->host, s, n + 1);
    hp->kind = ZGW_HOST_IS_NAME;
    return ZGW_OK;
}


static int
zgw_host_ipv6(zgw_hostport_t *hp, const char *s, char *reason, size_t rsize)
{
    unsigned char  a6[16];

    if (inet_pton(AF_INET6, s, a6) != 1) {
        snprintf(reason, rsize, "'%.*s' is not an IPv6 address",
                 ZGW_ECHO_MAX, s);
        return ZGW_ERROR;
    }

    /* what inet_pton() takes is at most INET6_ADDRSTRLEN - 1 long */
    memcpy(hp->host, s, strlen(s) + 1);
    hp->kind = ZGW_HOST_IS_IPV6;
    return ZGW_OK;
}


static int
zgw_port(const char *s, size_t n, int *port, char *reason, size_t rsize)
{
    size_t  i;
    long    v;

    if (n == 0) {
        snprintf(reason, rsize, "no port after ':'");
        return ZGW_ERROR;
    }

    v = 0;
    for (i = 0; i < n; i++) {
        if (!zgw_is_digit(s[i])) {
            snprintf(reason, rsize, "the port must be a number 1-65535");
            return ZGW_ERROR;
        }
        if (v <= 65535) {
            v = v * 10 + (s[i] - '0');
        }
    }

    if (v < 1 || v > 65535) {
        snprintf(reason, rsize, "port %.*s%s is out of range 1-65535",
                 (int) (n > 10 ? 10 : n), s, n > 10 ? "..." : "");
        return ZGW_ERROR;
    }

    *port = (int) v;
    return ZGW_OK;
}


/* common checks of the raw text; copies it NUL-ended into buf */
static int
zgw_hostport_text(const char *text, size_t len, char *buf, char *reason,
    size_t rsize)
{
    size_t  i;

    if (len == 0) {
        snprintf(reason, rsize, "is empty");
        return ZGW_ERROR;
    }

    if (len > ZGW_HOSTPORT_TEXT_MAX) {
        snprintf(reason, rsize, "is longer than %d characters",
                 ZGW_HOSTPORT_TEXT_MAX);
        return ZGW_ERROR;
    }

    for (i = 0; i < len; i++) {
        if ((unsigned char) text[i] <= 0x20 || text[i] == 0x7f) {
            snprintf(reason, rsize, "contains white space, a control "
                     "character or NUL");
            return ZGW_ERROR;
        }
    }

    memcpy(buf, text, len);
    buf[len] = '\0';

    return ZGW_OK;
}


int
zgw_hostport_parse(zgw_hostport_t *hp, const char *text, size_t len,
    int default_port, const char *who, zgw_errors_t *errs)
{
    int          rc;
    char         buf[ZGW_HOSTPORT_TEXT_MAX + 1], reason[400];
    char        *close, *colon;
    size_t       hlen;

    memset(hp, 0, sizeof(zgw_hostport_t));

    if (zgw_hostport_text(text, len, buf, reason, sizeof(reason)) != ZGW_OK) {
        return zgw_hostport_fail(errs, who, text, len, reason);
    }

    if (buf[0] == '[') {
        close = strchr(buf, ']');
        if (close == NULL) {
            return zgw_hostport_fail(errs, who, text, len,
                                     "'[' without a closing ']'");
        }

        if (close[1] != '\0' && close[1] != ':') {
            return zgw_hostport_fail(errs, who, text, len,
                                     "after ']' only ':port' may follow");
        }

        if (close == buf + 1) {
            return zgw_hostport_fail(errs, who, text, len,
                                     "no IPv6 address between '[' and ']'");
        }

        *close = '\0';
        colon = close[1] == ':' ? close + 1 : NULL;

        if (zgw_host_ipv6(hp, buf + 1, reason, sizeof(reason)) != ZGW_OK) {
            return zgw_hostport_fail(errs, who, text, len, reason);
        }

    } else {
        colon = strchr(buf, ':');

        if (colon != NULL && strchr(colon + 1, ':') != NULL) {
            return zgw_hostport_fail(errs, who, text, len,
                                     "an IPv6 address must be written in "
                                     "brackets, as in [2001:db8::1]:5672");
        }

        if (strchr(buf, ']') != NULL) {
            return zgw_hostport_fail(errs, who, text, len,
                                     "']' without an opening '['");
        }

        hlen = colon ? (size_t) (colon - buf) : len;
        buf[hlen] = '\0';

        if (hlen == 0) {
            return zgw_hostport_fail(errs, who, text, len,
                                     "no host before ':'");
        }

        rc = zgw_host_name(hp, buf, hlen, reason, sizeof(reason));
        if (rc != ZGW_OK) {
            return zgw_hostport_fail(errs, who, text, len, reason);
        }
    }

    if (colon != NULL) {
        if (zgw_port(colon + 1, strlen(colon + 1), &hp->port, reason,
                     sizeof(reason))
            != ZGW_OK)
        {
            memset(hp, 0, sizeof(zgw_hostport_t));
            return zgw_hostport_fail(errs, who, text, len, reason);
        }

    } else if (default_port > 0 && default_port <= 65535) {
        hp->port = default_port;

    } else {
        memset(hp, 0, sizeof(zgw_hostport_t));
        return zgw_hostport_fail(errs, who, text, len,
                                 "a port is required (host:port)");
    }

    return ZGW_OK;
}


int
zgw_host_parse(zgw_hostport_t *hp, const char *text, size_t len,
    const char *who, zgw_errors_t *errs)
{
    char    buf[ZGW_HOSTPORT_TEXT_MAX + 1], reason[400];
    size_t  n;

    memset(hp, 0, sizeof(zgw_hostport_t));

    if (zgw_hostport_text(text, len, buf, reason, sizeof(reason)) != ZGW_OK) {
        return zgw_hostport_fail(errs, who, text, len, reason);
    }

    if (buf[0] == '[') {
        n = strlen(buf);
        if (buf[n - 1] != ']' || n < 3) {
            return zgw_hostport_fail(errs, who, text, len,
                                     "a host in brackets is an IPv6 address "
                                     "and nothing else, as in [2001:db8::1]");
        }
        buf[n - 1] = '\0';

        if (zgw_host_ipv6(hp, buf + 1, reason, sizeof(reason)) != ZGW_OK) {
            return zgw_hostport_fail(errs, who, text, len, reason);
        }

        return ZGW_OK;
    }

    if (strchr(buf, ':') != NULL) {
        if (strchr(buf, ':') == strrchr(buf, ':')) {
            return zgw_hostport_fail(errs, who, text, len,
                                     "a host without a port (the port is a "
                                     "field of its own)");
        }

        if (zgw_host_ipv6(hp, buf, reason, sizeof(reason)) != ZGW_OK) {
            return zgw_hostport_fail(errs, who, text, len, reason);
        }

        return ZGW_OK;
    }

    if (zgw_host_name(hp, buf, len, reason, sizeof(reason)) != ZGW_OK) {
        memset(hp, 0, sizeof(zgw_hostport_t));
        return zgw_hostport_fail(errs, who, text, len, reason);
    }

    return ZGW_OK;
}
