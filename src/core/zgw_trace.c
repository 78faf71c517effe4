/*
 * ngx_zmq core: W3C Trace Context level 1 checks (see zgw_trace.h).
 */

#include <string.h>

#include "zgw_trace.h"


static int
zgw_lchex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}


/* n lowercase hex digits at p: 1 when all of them are '0', -1: not hex */
static int
zgw_hex_field(const char *p, size_t n)
{
    size_t  i;
    int     zero;

    zero = 1;

    for (i = 0; i < n; i++) {
        if (!zgw_lchex((unsigned char) p[i])) {
            return -1;
        }

        if (p[i] != '0') {
            zero = 0;
        }
    }

    return zero;
}


const char *
zgw_traceparent_check(const char *p, size_t len)
{
    int  rc;

    if (len != ZGW_TRACEPARENT_LEN) {
        return "must be 55 characters: 00-<32 hex>-<16 hex>-<2 hex>";
    }

    if (p[0] != '0' || p[1] != '0') {
        return "only version 00 is accepted";
    }

    if (p[2] != '-' || p[35] != '-' || p[52] != '-') {
        return "the fields must be separated by '-'";
    }

    rc = zgw_hex_field(p + 3, 32);
    if (rc < 0) {
        return "the trace-id must be 32 lowercase hex digits";
    }
    if (rc == 1) {
        return "the trace-id must not be all zeros";
    }

    rc = zgw_hex_field(p + 36, 16);
    if (rc < 0) {
        return "the parent-id must be 16 lowercase hex digits";
    }
    if (rc == 1) {
        return "the parent-id must not be all zeros";
    }

    if (zgw_hex_field(p + 53, 2) < 0) {
        return "the flags must be 2 lowercase hex digits";
    }

    return NULL;
}


static int
zgw_key_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'
           || c == '-' || c == '*' || c == '/';
}


/* a list member's key, [p, end) without white space around it */
static const char *
zgw_tracestate_key(const char *p, const char *end)
{
    size_t       i, len;
    const char  *at;

    len = (size_t) (end - p);
    at = memchr(p, '@', len);

    if (at == NULL) {
        /* simple-key: lcalpha 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/") */
        if (len < 1 || len > 256 || !(p[0] >= 'a' && p[0] <= 'z')) {
            return "a key must be a lowercase letter and up to 255 of "
                   "a-z 0-9 _ - * /";
        }

        for (i = 1; i < len; i++) {
            if (!zgw_key_char((unsigned char) p[i])) {
                return "a key must be a lowercase letter and up to 255 of "
                       "a-z 0-9 _ - * /";
            }
        }

        return NULL;
    }

    /* tenant-id "@" system-id */

    len = (size_t) (at - p);

    if (len < 1 || len > 241
        || !((p[0] >= 'a' && p[0] <= 'z') || (p[0] >= '0' && p[0] <= '9')))
    {
        return "a multi-tenant key's tenant must be 1-241 of a-z 0-9 _ - * /"
               ", beginning with a letter or digit";
    }

    for (i = 1; i < len; i++) {
        if (!zgw_key_char((unsigned char) p[i])) {
            return "a multi-tenant key's tenant must be 1-241 of "
                   "a-z 0-9 _ - * /, beginning with a letter or digit";
        }
    }

    p = at + 1;
    len = (size_t) (end - p);

    if (len < 1 || len > 14 || !(p[0] >= 'a' && p[0] <= 'z')) {
        return "a multi-tenant key's system must be a lowercase letter and "
               "up to 13 of a-z 0-9 _ - * /";
    }

    for (i = 1; i < len; i++) {
        if (!zgw_key_char((unsigned char) p[i])) {
            return "a multi-tenant key's system must be a lowercase letter "
                   "and up to 13 of a-z 0-9 _ - * /";
        }
    }

    return NULL;
}


const char *
zgw_tracestate_check(const char *p, size_t len)
{
    size_t       i, j, members, klen[ZGW_TRACESTATE_MEMBERS_MAX];
    const char  *end, *s, *e, *eq, *why, *k[ZGW_TRACESTATE_MEMBERS_MAX];

    if (len > ZGW_TRACESTATE_MAX) {
        return "is longer than 512 bytes";
    }

    end = p + len;
    members = 0;

    while (p <= end) {
        /* one member: up to the next ',' or the end */

        e = memchr(p, ',', (size_t) (end - p));
        if (e == NULL) {
            e = end;
        }

        s = p;
        p = e + 1;

        while (s < e && (*s == ' ' || *s == '\t')) {
            s++;
        }

        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) {
            e--;
        }

        if (s == e) {
            continue;               /* an empty member */
        }

        if (members == ZGW_TRACESTATE_MEMBERS_MAX) {
            return "has more than 32 list members";
        }

        eq = memchr(s, '=', (size_t) (e - s));
        if (eq == NULL) {
            return "a list member must be key=value";
        }

        why = zgw_tracestate_key(s, eq);
        if (why != NULL) {
            return why;
        }

        /* value: 0*255(chr) nblk-chr, chr %x20 / nblk-chr */

        if (e - (eq + 1) < 1 || e - (eq + 1) > 256) {
            return "a value must be 1-256 characters";
        }

        for (i = 1; eq + i < e; i++) {
            unsigned char  c = (unsigned char) eq[i];

            if (c < 0x20 || c > 0x7e || c == ',' || c == '=') {
                return "a value must be printable ASCII without ',' or '='";
            }
        }

        /* the last character is not a space: e was trimmed */

        for (j = 0; j < members; j++) {
            if (klen[j] == (size_t) (eq - s)
                && memcmp(k[j], s, klen[j]) == 0)
            {
                return "a key is given twice";
            }
        }

        k[members] = s;
        klen[members] = (size_t) (eq - s);
        members++;
    }

    return NULL;
}


void
zgw_traceparent_format(char *out, const unsigned char *random)
{
    size_t                i;
    int                   zero;
    static const char     hex[] = "0123456789abcdef";

    memcpy(out, "00-", 3);

    for (i = 0; i < 16; i++) {
        out[3 + 2 * i] = hex[random[i] >> 4];
        out[3 + 2 * i + 1] = hex[random[i] & 0xf];
    }

    out[35] = '-';

    for (i = 0; i < 8; i++) {
        out[36 + 2 * i] = hex[random[16 + i] >> 4];
        out[36 + 2 * i + 1] = hex[random[16 + i] & 0xf];
    }

    memcpy(out + 52, "-01", 3);

    zero = 1;
    for (i = 3; i < 35; i++) {
        if (out[i] != '0') {
            zero = 0;
        }
    }
    if (zero) {
        out[34] = '1';
    }

    zero = 1;
    for (i = 36; i < 52; i++) {
        if (out[i] != '0') {
            zero = 0;
        }
    }
    if (zero) {
        out[51] = '1';
    }
}
