/*
 * libFuzzer target (stomp_frame): zmqd's STOMP 1.2 frame reader (src/zmqd/
 * zmqd_stomp_frame.c, included: it needs only libc), fed as zmqd feeds it
 * from a socket: the input is a broker's byte stream, the first byte
 * picks the size of each read. Never crashes or reads past what it was
 * given, explains every error, takes no more bytes than it has, and every
 * frame it reads, written again by the writer, reads back the same.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/zmqd/zmqd_stomp_frame.c"


static void
fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz_stomp_frame: %s\n", what);
    abort();
}


static void
fuzz_roundtrip(const zmqd_stomp_frame_t *f)
{
    int                  i, rc;
    char                 err[256];
    size_t               used;
    zmqd_stomp_out_t     o;
    zmqd_stomp_frame_t   g;

    memset(&o, 0, sizeof(o));
    zmqd_stomp_out_command(&o, f->command);
    for (i = 0; i < f->nheaders; i++) {
        if (strcmp(f->headers[i].name, "content-length") != 0) {
            zmqd_stomp_out_header(&o, f->headers[i].name,
                                  f->headers[i].value, 0);
        }
    }
    zmqd_stomp_out_body(&o, f->body, f->len, 1);
    if (o.failed) {
        zmqd_stomp_out_free(&o);
        return;
    }

    rc = zmqd_stomp_parse(o.data, o.len, 1, &g, &used, err, sizeof(err));
    if (rc == ZMQD_STOMP_BAD && strstr(err, "more than") != NULL) {
        zmqd_stomp_out_free(&o);    /* content-length made one too many */
        return;
    }
    if (rc != ZMQD_STOMP_FRAME || used != o.len) {
        fuzz_fail("a frame written again does not read back");
    }
    if (strcmp(g.command, f->command) != 0 || g.len != f->len
        || memcmp(g.body, f->body, f->len) != 0)
    {
        fuzz_fail("a frame written again reads back different");
    }
    for (i = 0; i < f->nheaders; i++) {
        if (strcmp(zmqd_stomp_get(&g, f->headers[i].name),
                   zmqd_stomp_get(f, f->headers[i].name)) != 0
            && strcmp(f->headers[i].name, "content-length") != 0)
        {
            fuzz_fail("a header written again reads back different");
        }
    }

    zmqd_stomp_frame_free(&g);
    zmqd_stomp_out_free(&o);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                  rc;
    char                 err[256], *buf;
    size_t               step, have, fed, used;
    zmqd_stomp_frame_t   f;

    if (size < 1) {
        return 0;
    }

    step = 1 + data[0];
    data++;
    size--;

    /* the socket's buffer: exactly what has arrived, nothing after it */
    buf = malloc(size + 1);
    if (buf == NULL) {
        return 0;
    }

    have = 0;
    fed = 0;

    while (fed < size || have > 0) {
        if (fed < size) {
            step = step > size - fed ? size - fed : step;
            memcpy(buf + have, data + fed, step);
            have += step;
            fed += step;
        }

        err[0] = '\0';
        rc = zmqd_stomp_parse(buf, have, data[0] & 1, &f, &used, err,
                              sizeof(err));
        if (used > have) {
            fuzz_fail("took more bytes than it had");
        }

        if (rc == ZMQD_STOMP_BAD || rc == ZMQD_STOMP_NOMEM) {
            if (err[0] == '\0') {
                fuzz_fail("an error without a message");
            }
            break;
        }

        memmove(buf, buf + used, have - used);
        have -= used;

        if (rc == ZMQD_STOMP_FRAME) {
            fuzz_roundtrip(&f);
            zmqd_stomp_frame_free(&f);
            continue;
        }

        if (fed == size) {
            break;                  /* MORE, and nothing more to come */
        }
    }

    free(buf);
    return 0;
}
