/*
 * zmqd: STOMP 1.2 frames, read defensively and written escaped.
 *
 * What a broker sends is not trusted: a head (command and headers) over
 * ZMQD_STOMP_HEAD_MAX bytes, more than ZMQD_STOMP_HEADERS_MAX headers, a
 * command that is not 1-32 capital letters, a header line without a colon
 * or with an empty name, an escape other than \\ \c \n \r, a NUL in the
 * head, a content-length that is not decimal or is over ZMQD_STOMP_BODY_MAX,
 * a body without its NUL, or a body over the limit without a content-length
 * are errors with a message saying which; nothing is read past len.
 *
 * Only libc: the unit test (t/unit/test_stomp_frame.c) and the fuzz
 * target (t/fuzz/fuzz_stomp.c) include this file alone.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "zmqd_stomp.h"


void
zmqd_stomp_frame_free(zmqd_stomp_frame_t *f)
{
    free(f->mem);
    free(f->body);
    memset(f, 0, sizeof(zmqd_stomp_frame_t));
}


const char *
zmqd_stomp_get(const zmqd_stomp_frame_t *f, const char *name)
{
    int  i;

    for (i = 0; i < f->nheaders; i++) {
        if (strcmp(f->headers[i].name, name) == 0) {
            return f->headers[i].value;
        }
    }

    return NULL;
}


/* undoes the 1.2 escapes in place; -1 on a bad one */
static int
zmqd_stomp_unescape(char *s)
{
    char  *r, *w;

    for (r = w = s; *r != '\0'; r++) {
        if (*r != '\\') {
            *w++ = *r;
            continue;
        }

        switch (r[1]) {
        case '\\':
            *w++ = '\\';
            break;
        case 'c':
            *w++ = ':';
            break;
        case 'n':
            *w++ = '\n';
            break;
        case 'r':
            *w++ = '\r';
            break;
        default:
            return -1;              /* undefined, or a trailing '\' */
        }
        r++;
    }

    *w = '\0';
    return 0;
}


/* a decimal content-length, at most ZMQD_STOMP_BODY_MAX; -1 if not */
static long
zmqd_stomp_length(const char *v)
{
    long  n;

    if (*v == '\0' || strlen(v) > 9) {
        return -1;
    }

    for (n = 0; *v != '\0'; v++) {
        if (*v < '0' || *v > '9') {
            return -1;
        }
        n = n * 10 + (*v - '0');
    }

    return n > ZMQD_STOMP_BODY_MAX ? -1 : n;
}


int
zmqd_stomp_parse(const char *buf, size_t len, int unescape,
    zmqd_stomp_frame_t *f, size_t *used, char *err, size_t errlen)
{
    int          bad;
    char        *line, *next, *colon, *p;
    long         clen;
    size_t       start, i, head, body, nul, hlen;
    const char  *v;

    memset(f, 0, sizeof(zmqd_stomp_frame_t));
    *used = 0;

    /* heart-beats: EOLs between frames */
    for (start = 0; start < len; start++) {
        if (buf[start] == '\n') {
            *used = start + 1;
        } else if (buf[start] != '\r') {
            break;
        }
    }

    if (start == len) {
        return ZMQD_STOMP_MORE;
    }

    /* the head ends at an empty line: "\n\n" or "\n\r\n" */
    head = 0;
    for (i = start; i < len; i++) {
        if (buf[i] == '\0') {
            snprintf(err, errlen, "a NUL byte in a frame's command or "
                     "headers (offset %zu)", i - start);
            return ZMQD_STOMP_BAD;
        }

        if (i - start >= ZMQD_STOMP_HEAD_MAX) {
            snprintf(err, errlen, "a frame's command and headers are over "
                     "%d bytes", ZMQD_STOMP_HEAD_MAX);
            return ZMQD_STOMP_BAD;
        }

        if (buf[i] != '\n' || i == start) {
            continue;
        }

        if (i + 1 < len && buf[i + 1] == '\n') {
            head = i + 1;           /* the '\n' of the empty line */
            break;
        }

        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
            head = i + 2;
            break;
        }
    }

    if (head == 0) {
        return ZMQD_STOMP_MORE;
    }

    hlen = head - start;            /* up to the last header's '\n' */
    f->mem = malloc(hlen + 1);
    if (f->mem == NULL) {
        snprintf(err, errlen, "out of memory");
        return ZMQD_STOMP_NOMEM;
    }
    memcpy(f->mem, buf + start, hlen);
    f->mem[hlen] = '\0';

    bad = 0;

    for (line = f->mem; line != NULL && *line != '\0'; line = next) {
        next = strchr(line, '\n');
        if (next != NULL) {
            *next++ = '\0';
        }

        hlen = strlen(line);
        if (hlen > 0 && line[hlen - 1] == '\r') {
            line[hlen - 1] = '\0';
        }

        if (*line == '\0' && f->command != NULL) {
            continue;               /* the "\r" of a "\n\r\n" end */
        }

        if (f->command == NULL) {
            f->command = line;
            hlen = strlen(line);
            if (hlen == 0 || hlen > ZMQD_STOMP_COMMAND_MAX) {
                bad = 1;
            }
            for (p = line; *p != '\0'; p++) {
                if (*p < 'A' || *p > 'Z') {
                    bad = 1;
                }
            }
            if (bad) {
                snprintf(err, errlen, "a frame whose command is not 1-%d "
                         "capital letters", ZMQD_STOMP_COMMAND_MAX);
                goto failed;
            }
            continue;
        }

        colon = strchr(line, ':');
        if (colon == NULL || colon == line) {
            snprintf(err, errlen, "%s frame: header %d is not name:value",
                     f->command, f->nheaders + 1);
            goto failed;
        }

        if (f->nheaders == ZMQD_STOMP_HEADERS_MAX) {
            snprintf(err, errlen, "%s frame: more than %d headers",
                     f->command, ZMQD_STOMP_HEADERS_MAX);
            goto failed;
        }

        *colon = '\0';

        if (unescape
            && (zmqd_stomp_unescape(line) != 0
                || zmqd_stomp_unescape(colon + 1) != 0))
        {
            snprintf(err, errlen, "%s frame: header %d has an escape "
                     "STOMP 1.2 does not define", f->command,
                     f->nheaders + 1);
            goto failed;
        }

        f->headers[f->nheaders].name = line;
        f->headers[f->nheaders].value = colon + 1;
        f->nheaders++;
    }

    body = head + 1;
    v = zmqd_stomp_get(f, "content-length");

    if (v != NULL) {
        clen = zmqd_stomp_length(v);
        if (clen < 0) {
            snprintf(err, errlen, "%s frame: content-length is not a "
                     "number of bytes up to %d", f->command,
                     ZMQD_STOMP_BODY_MAX);
            goto failed;
        }

        if (len - body < (size_t) clen + 1) {
            free(f->mem);
            memset(f, 0, sizeof(zmqd_stomp_frame_t));
            return ZMQD_STOMP_MORE;
        }

        if (buf[body + clen] != '\0') {
            snprintf(err, errlen, "%s frame: no NUL after its "
                     "content-length of %ld bytes", f->command, clen);
            goto failed;
        }

        nul = body + clen;
        f->has_length = 1;

    } else {
        p = memchr(buf + body, '\0', len - body);
        if (p == NULL) {
            if (len - body > ZMQD_STOMP_BODY_MAX) {
                snprintf(err, errlen, "%s frame: a body over %d bytes",
                         f->command, ZMQD_STOMP_BODY_MAX);
                goto failed;
            }
            free(f->mem);
            memset(f, 0, sizeof(zmqd_stomp_frame_t));
            return ZMQD_STOMP_MORE;
        }
        nul = (size_t) (p - buf);
    }

    f->len = nul - body;
    f->body = malloc(f->len + 1);
    if (f->body == NULL) {
        snprintf(err, errlen, "out of memory");
        zmqd_stomp_frame_free(f);
        return ZMQD_STOMP_NOMEM;
    }
    memcpy(f->body, buf + body, f->len);
    f->body[f->len] = '\0';

    *used = nul + 1;
    return ZMQD_STOMP_FRAME;

failed:

    zmqd_stomp_frame_free(f);
    return ZMQD_STOMP_BAD;
}


/* ------------------------------------------------------------- writing */


static void
zmqd_stomp_out_add(zmqd_stomp_out_t *o, const void *data, size_t len)
{
    char    *d;
    size_t   cap;

    if (o->failed) {
        return;
    }

    if (o->len + len + 1 > o->cap) {
        cap = o->cap ? o->cap : 256;
        while (cap < o->len + len + 1) {
            cap *= 2;
        }
        d = realloc(o->data, cap);
        if (d == NULL) {
            o->failed = 1;
            return;
        }
        o->data = d;
        o->cap = cap;
    }

    memcpy(o->data + o->len, data, len);
    o->len += len;
    o->data[o->len] = '\0';
}


void
zmqd_stomp_out_command(zmqd_stomp_out_t *o, const char *command)
{
    zmqd_stomp_out_add(o, command, strlen(command));
    zmqd_stomp_out_add(o, "\n", 1);
}


static void
zmqd_stomp_out_escaped(zmqd_stomp_out_t *o, const char *s, size_t len,
    int raw)
{
    size_t       i;
    const char  *e;

    if (raw) {
        zmqd_stomp_out_add(o, s, len);
        return;
    }

    for (i = 0; i < len; i++) {
        switch (s[i]) {
        case '\\':
            e = "\\\\";
            break;
        case ':':
            e = "\\c";
            break;
        case '\n':
            e = "\\n";
            break;
        case '\r':
            e = "\\r";
            break;
        default:
            zmqd_stomp_out_add(o, s + i, 1);
            continue;
        }
        zmqd_stomp_out_add(o, e, 2);
    }
}


void
zmqd_stomp_out_header(zmqd_stomp_out_t *o, const char *name,
    const char *value, int raw)
{
    zmqd_stomp_out_headern(o, name, strlen(name), value, strlen(value), raw);
}


void
zmqd_stomp_out_headern(zmqd_stomp_out_t *o, const char *name, size_t nlen,
    const char *value, size_t vlen, int raw)
{
    zmqd_stomp_out_escaped(o, name, nlen, raw);
    zmqd_stomp_out_add(o, ":", 1);
    zmqd_stomp_out_escaped(o, value, vlen, raw);
    zmqd_stomp_out_add(o, "\n", 1);
}


void
zmqd_stomp_out_body(zmqd_stomp_out_t *o, const void *body, size_t len,
    int with_length)
{
    char  n[32];

    if (with_length) {
        snprintf(n, sizeof(n), "%zu", len);
        zmqd_stomp_out_header(o, "content-length", n, 0);
    }

    zmqd_stomp_out_add(o, "\n", 1);
    zmqd_stomp_out_add(o, body, len);
    zmqd_stomp_out_add(o, "", 1);         /* the NUL */
}


/*
 * The length of the UTF-8 sequence at s (len bytes left), as the gateway
 * takes it (ngx_zmq_stomp_text): 1-4, or 0 when it is not one. cp gets
 * the code point of a 4-byte sequence (beyond U+FFFF).
 */
static size_t
zmqd_stomp_utf8(const unsigned char *s, size_t len, unsigned long *cp)
{
    size_t         n, k;
    unsigned char  c;

    c = s[0];
    n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
        : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;

    if (n == 0 || len < n) {
        return 0;
    }

    for (k = 1; k < n; k++) {
        if ((s[k] & 0xc0) != 0x80) {
            return 0;
        }
    }

    if (n == 4) {
        *cp = ((unsigned long) (c & 0x07) << 18)
              | ((unsigned long) (s[1] & 0x3f) << 12)
              | ((unsigned long) (s[2] & 0x3f) << 6) | (s[3] & 0x3f);
        if (*cp < 0x10000 || *cp > 0x10ffff) {
            return 0;
        }
    }

    return n;
}


/* one UTF-16 unit (a surrogate) as 3 bytes of modified UTF-8 */
static void
zmqd_stomp_out_utf16(zmqd_stomp_out_t *o, unsigned long u)
{
    char  b[3];

    b[0] = (char) (0xe0 | (u >> 12));
    b[1] = (char) (0x80 | ((u >> 6) & 0x3f));
    b[2] = (char) (0x80 | (u & 0x3f));
    zmqd_stomp_out_add(o, b, 3);
}


int
zmqd_stomp_out_text(zmqd_stomp_out_t *o, const void *body, size_t len)
{
    size_t                i, n;
    unsigned long         cp;
    const unsigned char  *s;

    s = body;

    for (i = 0; i < len; i += n) {
        n = zmqd_stomp_utf8(s + i, len - i, &cp);
        if (n == 0) {
            zmqd_stomp_out_body(o, body, len, 1);
            return 0;
        }
    }

    zmqd_stomp_out_add(o, "\n", 1);

    for (i = 0; i < len; i += n) {
        n = zmqd_stomp_utf8(s + i, len - i, &cp);

        if (s[i] == 0) {
            zmqd_stomp_out_add(o, "\xc0\x80", 2);

        } else if (n == 4) {
            cp -= 0x10000;
            zmqd_stomp_out_utf16(o, 0xd800 + (cp >> 10));
            zmqd_stomp_out_utf16(o, 0xdc00 + (cp & 0x3ff));

        } else {
            zmqd_stomp_out_add(o, s + i, n);
        }
    }

    zmqd_stomp_out_add(o, "", 1);         /* the NUL */
    return 1;
}


size_t
zmqd_stomp_from_modified(char *body, size_t len)
{
    size_t          r, w;
    unsigned long   hi, lo, cp;
    unsigned char  *s;

    s = (unsigned char *) body;

    for (r = 0, w = 0; r < len; /* void */) {
        if (s[r] == 0xc0 && r + 1 < len && s[r + 1] == 0x80) {
            s[w++] = 0;
            r += 2;
            continue;
        }

        if (s[r] == 0xed && r + 5 < len
            && (s[r + 1] & 0xf0) == 0xa0 && (s[r + 2] & 0xc0) == 0x80
            && s[r + 3] == 0xed && (s[r + 4] & 0xf0) == 0xb0
            && (s[r + 5] & 0xc0) == 0x80)
        {
            hi = ((unsigned long) (s[r + 1] & 0x0f) << 6) | (s[r + 2] & 0x3f);
            lo = ((unsigned long) (s[r + 4] & 0x0f) << 6) | (s[r + 5] & 0x3f);
            cp = 0x10000 + (hi << 10) + lo;
            s[w++] = (unsigned char) (0xf0 | (cp >> 18));
            s[w++] = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
            s[w++] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
            s[w++] = (unsigned char) (0x80 | (cp & 0x3f));
            r += 6;
            continue;
        }

        s[w++] = s[r++];
    }

    if (w < len) {
        s[w] = '\0';
    }

    return w;
}


int
zmqd_stomp_is_text(const char *ct)
{
    size_t  len;

    if (ct == NULL) {
        return 0;
    }

    len = strcspn(ct, ";");
    while (len > 0 && (ct[len - 1] == ' ' || ct[len - 1] == '\t')) {
        len--;
    }

    return (len >= 5 && strncasecmp(ct, "text/", 5) == 0)
           || (len == 16 && strncasecmp(ct, "application/json", 16) == 0)
           || (len == 15 && strncasecmp(ct, "application/xml", 15) == 0)
           || (len >= 5 && strncasecmp(ct + len - 5, "+json", 5) == 0)
           || (len >= 4 && strncasecmp(ct + len - 4, "+xml", 4) == 0);
}


void
zmqd_stomp_out_free(zmqd_stomp_out_t *o)
{
    free(o->data);
    memset(o, 0, sizeof(zmqd_stomp_out_t));
}
