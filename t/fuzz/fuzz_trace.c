/*
 * libFuzzer target: W3C Trace Context (zgw_traceparent_check,
 * zgw_tracestate_check), the request headers traceparent and tracestate
 * the gateway copies into every message's headers table.
 *
 * The first byte picks the header (even: traceparent, odd: tracestate),
 * the rest is its value. What must hold: every refusal says why; a
 * traceparent is accepted exactly when a plain reference reading of the
 * level 1 grammar accepts it; an accepted tracestate is at most 512 bytes
 * of printable ASCII (spaces and tabs around members) with at most 32
 * non-empty members, each "key=value" with a non-empty value; and a
 * traceparent the gateway makes from any 24 random bytes is accepted.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zgw_trace.h"


static void
fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz_trace: %s\n", what);
    abort();
}


static int
ref_hex(const uint8_t *p, size_t n, int *zero)
{
    size_t  i;

    *zero = 1;

    for (i = 0; i < n; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
            return 0;
        }
        if (p[i] != '0') {
            *zero = 0;
        }
    }

    return 1;
}


static int
ref_traceparent(const uint8_t *p, size_t len)
{
    int  z1, z2, z3;

    return len == 55 && p[0] == '0' && p[1] == '0' && p[2] == '-'
           && p[35] == '-' && p[52] == '-'
           && ref_hex(p + 3, 32, &z1) && !z1
           && ref_hex(p + 36, 16, &z2) && !z2
           && ref_hex(p + 53, 2, &z3);
}


static void
check_tracestate(const uint8_t *p, size_t len)
{
    size_t          i, members, start, end;
    const uint8_t  *eq;

    if (len > 512) {
        fuzz_fail("a tracestate over 512 bytes accepted");
    }

    for (i = 0; i < len; i++) {
        if ((p[i] < 0x20 && p[i] != '\t') || p[i] > 0x7e) {
            fuzz_fail("a tracestate with a non-printable byte accepted");
        }
    }

    members = 0;
    start = 0;

    while (start <= len) {
        end = start;
        while (end < len && p[end] != ',') {
            end++;
        }

        i = start;
        while (i < end && (p[i] == ' ' || p[i] == '\t')) {
            i++;
        }

        if (i < end) {
            members++;
            eq = memchr(p + i, '=', end - i);
            if (eq == NULL || eq == p + i) {
                fuzz_fail("a tracestate member without key=value accepted");
            }
            if (eq + 1 >= p + end || eq[1] == ' ' || eq[1] == '\t') {
                /* a value of spaces only would be trimmed to nothing */
                size_t  k = (size_t) (eq + 1 - p);
                int     blank = 1;

                for (; k < end; k++) {
                    if (p[k] != ' ' && p[k] != '\t') {
                        blank = 0;
                    }
                }
                if (blank) {
                    fuzz_fail("a tracestate member with an empty value "
                              "accepted");
                }
            }
        }

        start = end + 1;
    }

    if (members > 32) {
        fuzz_fail("a tracestate of more than 32 members accepted");
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char         *v, made[ZGW_TRACEPARENT_LEN];
    size_t        len;
    const char   *why;

    if (size < 1) {
        return 0;
    }

    len = size - 1;

    /* a copy of its own, as big as it is: ASan sees its bounds */
    v = malloc(len ? len : 1);
    if (v == NULL) {
        return 0;
    }
    memcpy(v, data + 1, len);

    if ((data[0] & 1) == 0) {
        why = zgw_traceparent_check(v, len);

        if (why != NULL && why[0] == '\0') {
            fuzz_fail("a traceparent refused without saying why");
        }

        if ((why == NULL) != ref_traceparent(data + 1, len)) {
            fuzz_fail(why == NULL ? "a traceparent the grammar refuses was "
                                    "accepted"
                                  : "a traceparent the grammar accepts was "
                                    "refused");
        }

    } else {
        why = zgw_tracestate_check(v, len);

        if (why != NULL && why[0] == '\0') {
            fuzz_fail("a tracestate refused without saying why");
        }

        if (why == NULL) {
            check_tracestate(data + 1, len);
        }
    }

    if (len >= 24) {
        zgw_traceparent_format(made, data + 1);

        if (zgw_traceparent_check(made, sizeof(made)) != NULL) {
            fuzz_fail("a traceparent the gateway made is refused");
        }
    }

    free(v);
    return 0;
}
