/*
 * ngx_zmq core: error lists.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zgw_err.h"


void
zgw_errors_init(zgw_errors_t *errs)
{
    errs->n = 0;
    errs->cap = 0;
    errs->msgs = NULL;
}


void
zgw_errors_clear(zgw_errors_t *errs)
{
    size_t  i;

    for (i = 0; i < errs->n; i++) {
        free(errs->msgs[i]);
    }

    errs->n = 0;
}


void
zgw_errors_free(zgw_errors_t *errs)
{
    zgw_errors_clear(errs);
    free(errs->msgs);
    zgw_errors_init(errs);
}


static void
zgw_errors_push(zgw_errors_t *errs, char *msg)
{
    size_t   cap;
    char   **msgs;

    if (msg == NULL) {
        return;
    }

    if (errs->n == errs->cap) {
        cap = errs->cap ? errs->cap * 2 : 8;
        msgs = realloc(errs->msgs, cap * sizeof(char *));
        if (msgs == NULL) {
            free(msg);
            return;
        }
        errs->msgs = msgs;
        errs->cap = cap;
    }

    errs->msgs[errs->n++] = msg;
}


void
zgw_errors_add(zgw_errors_t *errs, const char *fmt, ...)
{
    int      len;
    char    *msg;
    va_list  ap;

    if (errs == NULL) {
        return;
    }

    va_start(ap, fmt);
    len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);

    if (len < 0) {
        return;
    }

    msg = malloc((size_t) len + 1);
    if (msg == NULL) {
        return;
    }

    va_start(ap, fmt);
    vsnprintf(msg, (size_t) len + 1, fmt, ap);
    va_end(ap);

    zgw_errors_push(errs, msg);
}


void
zgw_errors_move(zgw_errors_t *dst, zgw_errors_t *src)
{
    size_t  i;

    for (i = 0; i < src->n; i++) {
        zgw_errors_push(dst, src->msgs[i]);
    }

    src->n = 0;
}


const char *
zgw_errors_first(const zgw_errors_t *errs)
{
    return errs->n ? errs->msgs[0] : "";
}


int
zgw_printable(unsigned char c)
{
    return c >= 0x20 && c < 0x7f;
}


const char *
zgw_show(char *out, size_t size, const char *s, size_t len)
{
    size_t  i, n, max;

    if (size == 0) {
        return out;
    }

    if (s == NULL) {
        len = 0;
    }

    max = size - 1 < ZGW_SHOW_MAX + 3 ? size - 1 : ZGW_SHOW_MAX + 3;

    /* cut: what fits before the "..." */
    n = len;
    if (len > max || len > ZGW_SHOW_MAX) {
        n = max >= 3 ? max - 3 : max;
        if (n > ZGW_SHOW_MAX) {
            n = ZGW_SHOW_MAX;
        }
    }

    for (i = 0; i < n; i++) {
        out[i] = zgw_printable(s[i]) ? s[i] : '?';
    }

    if (n < len && max >= 3) {
        memcpy(out + n, "...", 3);
        n += 3;
    }

    out[n] = '\0';

    return out;
}
