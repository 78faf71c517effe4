/*
 * libFuzzer target: zgw_show(), what is shown (logged, printed, put in a
 * message) of a text a peer chose: a Redis error, a sentinel's answer.
 *
 * The input is one byte that picks the output buffer's size (0-255; 255:
 * ZGW_SHOW_SIZE) and whether the text is NULL (size byte odd and no
 * text), then the text. What must hold: nothing is written past size (the
 * buffer is allocated at exactly size bytes) nor anything at all when
 * size is 0; the result is out, NUL-ended, at most size - 1 and
 * ZGW_SHOW_MAX + 3 bytes of printable ASCII; a text that fits is shown
 * whole (each byte that is not printable as '?'), one that does not is
 * its first bytes so mapped then "..." (when there is room for it).
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zgw_err.h"


static void
fuzz_fail(const char *what, size_t size, size_t len)
{
    fprintf(stderr, "fuzz_show: size %zu, text of %zu bytes: %s\n", size,
            len, what);
    abort();
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char         *out, *text, c;
    size_t        bufsize, len, n, i, room, fits;
    const char   *r;

    if (size < 1) {
        return 0;
    }

    bufsize = data[0] == 255 ? ZGW_SHOW_SIZE : data[0];
    len = size - 1;

    /* the text in a buffer of its own size: a read past it is caught */
    text = NULL;
    if (len > 0) {
        text = malloc(len);
        if (text == NULL) {
            return 0;
        }
        memcpy(text, data + 1, len);
    }

    /* a NULL text with a length: shown as "" */
    if (len == 0 && (data[0] & 1)) {
        len = 17;
    }

    out = malloc(bufsize ? bufsize : 1);
    if (out == NULL) {
        free(text);
        return 0;
    }

    out[0] = 'Z';

    r = zgw_show(out, bufsize, text, len);

    if (r != out) {
        fuzz_fail("did not return out", bufsize, len);
    }

    if (bufsize == 0) {
        if (out[0] != 'Z') {
            fuzz_fail("wrote into a buffer of size 0", bufsize, len);
        }
        goto done;
    }

    n = strnlen(out, bufsize);

    if (n == bufsize) {
        fuzz_fail("no NUL within the buffer", bufsize, len);
    }

    if (n > ZGW_SHOW_MAX + 3) {
        fuzz_fail("longer than ZGW_SHOW_MAX + 3", bufsize, len);
    }

    for (i = 0; i < n; i++) {
        if (out[i] < 0x20 || out[i] >= 0x7f) {
            fuzz_fail("a byte that is not printable ASCII", bufsize, len);
        }
    }

    if (text == NULL) {
        if (n != 0) {
            fuzz_fail("a NULL text not shown as \"\"", bufsize, len);
        }
        goto done;
    }

    /* what a reference shows */
    room = bufsize - 1;
    fits = len <= room && len <= ZGW_SHOW_MAX;

    if (fits) {
        if (n != len) {
            fuzz_fail("a text that fits is not shown whole", bufsize, len);
        }

    } else if (room >= 3) {
        if (n < 3 || memcmp(out + n - 3, "...", 3) != 0) {
            fuzz_fail("a text cut without \"...\"", bufsize, len);
        }

        /* as much as fits: the whole room, or ZGW_SHOW_MAX bytes */
        if (n != (room < ZGW_SHOW_MAX + 3 ? room : ZGW_SHOW_MAX + 3)) {
            fuzz_fail("a cut text does not use the room it has", bufsize,
                      len);
        }

        n -= 3;

    } else if (n != room) {
        fuzz_fail("a cut text does not use the room it has", bufsize, len);
    }

    for (i = 0; i < n; i++) {
        c = (text[i] >= 0x20 && text[i] < 0x7f) ? text[i] : '?';

        if (out[i] != c) {
            fuzz_fail("not the text with '?' for what is not printable",
                      bufsize, len);
        }
    }

done:

    free(out);
    free(text);

    return 0;
}
