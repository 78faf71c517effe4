/*
 * libFuzzer target: hiredis' reader with our bounds installed
 * (zgw_resp_limit, zgw_resp_buffer_ok), fed what any peer on a Redis port
 * sends, in reads of any size, as zmqd, zmqctl and the NGINX workers feed
 * theirs: feed one read, take every reply, check the buffer bound.
 *
 * The input is 3 bytes of settings, then the bytes:
 *
 *   0: the bound on what the reader holds unparsed, 16 << (b & 15) bytes
 *      (16 B to 512 KiB; a line's bound is this, or 64 KiB if lower)
 *   1: the bound on array slots a reply may allocate, 1 << (b & 15)
 *   2: the reads' sizes: b & 63 + 1 bytes, or (b & 0x40) one read of
 *      everything; b & 0x80: the size of each read varies (the next byte
 *      of input, taken from the end, gives it)
 *
 * What must hold, against a second reader with the same slot bound fed
 * everything at once and never checked for its buffer: the bounded
 * reader gives the same replies in the same order until it refuses
 * (bounds never change a reply, they only refuse one); it fails (protocol
 * error, slots) exactly where the other does; while it accepts, it holds
 * at most the bound unparsed; every refusal says why; a reply it gives
 * holds at most the slot bound in all its arrays.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "zgw_resp_limit.h"


#define FUZZ_REPLIES_MAX  4096


static void
fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz_resp: %s\n", what);
    abort();
}


/* the slots of a reply's arrays, in all */
static size_t
fuzz_slots(const redisReply *r)
{
    size_t  i, n;

    if (r->type != REDIS_REPLY_ARRAY) {
        return 0;
    }

    n = r->elements;

    for (i = 0; i < r->elements; i++) {
        n += fuzz_slots(r->element[i]);
    }

    return n;
}


static int
fuzz_same(const redisReply *a, const redisReply *b)
{
    size_t  i;

    if (a->type != b->type) {
        return 0;
    }

    switch (a->type) {

    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        return a->len == b->len && memcmp(a->str, b->str, a->len) == 0
               && a->str[a->len] == '\0';

    case REDIS_REPLY_INTEGER:
        return a->integer == b->integer;

    case REDIS_REPLY_NIL:
        return 1;

    case REDIS_REPLY_ARRAY:
        if (a->elements != b->elements) {
            return 0;
        }

        for (i = 0; i < a->elements; i++) {
            if (!fuzz_same(a->element[i], b->element[i])) {
                return 0;
            }
        }

        return 1;
    }

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                 ref_err, err, refused;
    char                why[256];
    void               *reply;
    size_t              i, k, n, nref, nreads, got, chunk, held, end;
    redisReader        *ref, *rd;
    redisReply         *replies[FUZZ_REPLIES_MAX];
    zgw_resp_budget_t   ref_budget, budget;
    static size_t       reads[1 << 20];

    if (size < 3) {
        return 0;
    }

    memset(&budget, 0, sizeof(budget));
    budget.max_buffer = (size_t) 16 << (data[0] & 15);
    budget.max = (size_t) 1 << (data[1] & 15);

    memset(&ref_budget, 0, sizeof(ref_budget));
    ref_budget.max = budget.max;

    chunk = (data[2] & 0x40) ? size : (size_t) (data[2] & 63) + 1;
    k = data[2] & 0x80;

    data += 3;
    size -= 3;

    /* the reads: each of chunk bytes, or of a size the input's end says */
    end = size;
    nreads = 0;

    for (i = 0; i < end && nreads < sizeof(reads) / sizeof(reads[0]);
         i += n)
    {
        n = chunk;

        if (k && end > i + 1) {
            end--;
            n = (size_t) data[end] + 1;
        }

        if (n > end - i) {
            n = end - i;
        }

        reads[nreads++] = n;
    }

    end = i;

    ref = redisReaderCreate();
    rd = redisReaderCreate();

    if (ref == NULL || rd == NULL) {
        if (ref != NULL) {
            redisReaderFree(ref);
        }
        if (rd != NULL) {
            redisReaderFree(rd);
        }
        return 0;
    }

    zgw_resp_limit(ref, &ref_budget);
    zgw_resp_limit(rd, &budget);

    /* the reference: everything at once */
    nref = 0;
    ref_err = 0;

    if (redisReaderFeed(ref, (const char *) data, end) != REDIS_OK) {
        fuzz_fail("the reference reader refused a feed");
    }

    while (nref < FUZZ_REPLIES_MAX) {
        reply = NULL;

        if (redisReaderGetReply(ref, &reply) != REDIS_OK) {
            ref_err = 1;
            break;
        }

        if (reply == NULL) {
            break;
        }

        replies[nref++] = reply;
    }

    /* the bounded reader: in reads, as our callers feed theirs */
    got = 0;
    err = 0;
    refused = 0;
    i = 0;

    for (k = 0; k < nreads; k++) {
        n = reads[k];

        if (redisReaderFeed(rd, (const char *) data + i, n) != REDIS_OK) {
            fuzz_fail("the bounded reader refused a feed");
        }

        i += n;

        for ( ;; ) {
            reply = NULL;

            if (redisReaderGetReply(rd, &reply) != REDIS_OK) {
                err = 1;
                break;
            }

            if (reply == NULL) {
                break;
            }

            if (fuzz_slots(reply) > budget.max) {
                fuzz_fail("a reply with more array slots than the bound");
            }

            if (got < nref && !fuzz_same(reply, replies[got])) {
                fuzz_fail("a reply that differs from the reference's");
            }

            got++;
            freeReplyObject(reply);
        }

        if (err) {
            break;
        }

        why[0] = '\0';

        if (!zgw_resp_buffer_ok(rd, &budget, why, sizeof(why))) {
            if (strncmp(why, "reply too large: ", 17) != 0) {
                fuzz_fail("refused without saying why");
            }
            refused = 1;
            break;
        }

        held = rd->len > rd->pos ? rd->len - rd->pos : 0;

        if (held > budget.max_buffer) {
            fuzz_fail("accepted while holding more than the bound");
        }
    }

    /* the same replies, and a failure at the same place, unless refused */
    if (nref < FUZZ_REPLIES_MAX && !refused) {
        if (err != ref_err) {
            fprintf(stderr, "fuzz_resp: bounded %s, reference %s\n",
                    err ? "failed" : "did not fail",
                    ref_err ? "failed" : "did not fail");
            fuzz_fail("the readers disagree on a failure");
        }

        if (got != nref) {
            fprintf(stderr, "fuzz_resp: %zu replies, the reference %zu\n",
                    got, nref);
            fuzz_fail("the bounded reader gave another number of replies");
        }
    }

    if (refused && got > nref && nref < FUZZ_REPLIES_MAX) {
        fuzz_fail("more replies than the reference before a refusal");
    }

    for (i = 0; i < nref; i++) {
        freeReplyObject(replies[i]);
    }

    redisReaderFree(ref);
    redisReaderFree(rd);

    return 0;
}
