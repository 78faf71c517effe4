/*
 * ngx_zmq core: what the gateway may put into a message it publishes.
 */

#include <string.h>
#include <strings.h>

#include "zgw_amqp_check.h"


#define ZGW_DIRECT_REPLY_TO  "amq.rabbitmq.reply-to"


/* RFC 9110 tchar */
static int
zgw_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9'))
    {
        return 1;
    }

    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}


/* begins with prefix, in any case */
static int
zgw_has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t  n;

    n = strlen(prefix);
    return len >= n && strncasecmp(s, prefix, n) == 0;
}


/* the length of a valid UTF-8 sequence at p (at most left bytes), or 0 */
static size_t
zgw_utf8_len(const unsigned char *p, size_t left)
{
    size_t         n, i;
    unsigned int   cp;

    if (p[0] < 0x80) {
        return 1;
    }

    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
        cp = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        cp = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }

    if (left < n) {
        return 0;
    }

    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (p[i] & 0x3f);
    }

    /* overlong forms, UTF-16 surrogates, past U+10FFFF */
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)
        || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
    {
        return 0;
    }

    return n;
}


const char *
zgw_amqp_header_name_check(const char *name, size_t len)
{
    size_t  i;

    if (len == 0) {
        return "a header name must not be empty";
    }

    if (len > ZGW_AMQP_HEADER_NAME_MAX) {
        return "a header name is at most 128 bytes (AMQP field names; "
               "longer ones would be cut and make RabbitMQ close the "
               "connection)";
    }

    for (i = 0; i < len; i++) {
        if (!zgw_is_tchar((unsigned char) name[i])) {
            return "a header name has letters, digits and "
                   "!#$%&'*+-.^_`|~ only (an HTTP token)";
        }
    }

    if ((len == 2 && strncasecmp(name, "CC", 2) == 0)
        || (len == 3 && strncasecmp(name, "BCC", 3) == 0))
    {
        return "CC and BCC are RabbitMQ's sender-selected distribution "
               "headers (arrays of routing keys); the gateway does not "
               "send them";
    }

    if (zgw_has_prefix(name, len, "x-")) {
        return "header names beginning with x- are RabbitMQ's and its "
               "plugins' (x-death, x-delay, x-received-from, ...)";
    }

    return NULL;
}


const char *
zgw_amqp_header_value_check(const char *value, size_t len)
{
    size_t                n, i;
    const unsigned char  *p;

    if (len > ZGW_AMQP_HEADER_VALUE_MAX) {
        return "a header value is at most 8192 bytes";
    }

    p = (const unsigned char *) value;

    for (i = 0; i < len; i += n) {
        if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f) {
            return "a header value has no control characters (other than "
                   "tab)";
        }

        n = zgw_utf8_len(p + i, len - i);
        if (n == 0) {
            return "a header value must be UTF-8";
        }
    }

    return NULL;
}


const char *
zgw_amqp_reply_to_check(const char *value, size_t len)
{
    size_t  i;

    if (len > ZGW_AMQP_SHORTSTR_MAX) {
        return "reply-to is at most 255 bytes";
    }

    for (i = 0; i < len; i++) {
        if ((unsigned char) value[i] < 0x20 || value[i] == 0x7f) {
            return "reply-to has no control characters";
        }
    }

    if (zgw_has_prefix(value, len, ZGW_DIRECT_REPLY_TO)) {
        return "reply-to may not be RabbitMQ's direct reply-to "
               "(amq.rabbitmq.reply-to...): the gateway has no consumer "
               "for it";
    }

    return NULL;
}


const char *
zgw_amqp_routing_key_check(const char *exchange, size_t elen,
    const char *key, size_t len)
{
    (void) exchange;

    if (len > ZGW_AMQP_SHORTSTR_MAX) {
        return "the routing key is longer than 255 bytes";
    }

    if (elen == 0 && zgw_has_prefix(key, len, ZGW_DIRECT_REPLY_TO ".")) {
        return "a routing key beginning with amq.rabbitmq.reply-to. is a "
               "direct reply-to address, which only RabbitMQ makes";
    }

    return NULL;
}


const char *
zgw_amqp_expiration_check(const char *value, size_t len,
    unsigned long long *ms)
{
    size_t              i;
    unsigned long long  v;

    if (len == 0 || len > 10) {
        return "the expiration is a number of milliseconds, 0-4294967295";
    }

    v = 0;
    for (i = 0; i < len; i++) {
        if (value[i] < '0' || value[i] > '9') {
            return "the expiration is a number of milliseconds, "
                   "0-4294967295 (digits only)";
        }
        v = v * 10 + (unsigned long long) (value[i] - '0');
    }

    if (v > ZGW_AMQP_EXPIRATION_MAX) {
        return "the expiration is a number of milliseconds, 0-4294967295";
    }

    if (ms != NULL) {
        *ms = v;
    }

    return NULL;
}


void
zgw_amqp_echo(char *out, size_t size, const char *s, size_t len, size_t max)
{
    size_t  i, n;

    if (size == 0) {
        return;
    }

    n = len < max ? len : max;
    if (n + 4 > size) {
        n = size > 4 ? size - 4 : 0;
    }

    for (i = 0; i < n; i++) {
        out[i] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"'
                  && s[i] != '\\') ? s[i] : '?';
    }

    if (n < len && i + 3 < size) {
        memcpy(out + i, "...", 3);
        i += 3;
    }

    out[i] = '\0';
}
