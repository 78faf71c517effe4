/*
 * libFuzzer target: the snapshot loader, as every follower runs it.
 *
 * Followers (each NGINX worker, each zmqd) read the configuration with one
 * EVAL whose reply zgw_store_snapshot_parse() turns into a configuration.
 * Here the bytes are what Redis (or anything that answers on its port)
 * sends: hiredis' reader decodes them exactly as it does for the followers,
 * and every reply it produces is handed to the loader.
 *
 * What must hold: every refusal says why, and every message is printable
 * ASCII (the store's texts are shown through zgw_show(): a hostile store
 * cannot put line breaks or escape sequences into a log).
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "zgw_resp_limit.h"
#include "zgw_store.h"


static void
fuzz_check_printable(const zgw_errors_t *errs)
{
    size_t       i;
    const char  *p;

    for (i = 0; i < errs->n; i++) {
        for (p = errs->msgs[i]; *p; p++) {
            if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f) {
                fprintf(stderr, "fuzz_snapshot: a message with a byte that "
                        "is not printable ASCII: %s\n", errs->msgs[i]);
                abort();
            }
        }
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int            rc;
    void          *reply;
    redisReader   *reader;
    zgw_resp_budget_t  budget = { 0, 0, 0 };
    zgw_config_t  *cfg;
    zgw_errors_t   errs;

    reader = redisReaderCreate();
    if (reader == NULL) {
        return 0;
    }

    /* bounded as every follower's reader is */
    zgw_resp_limit(reader, &budget);

    if (redisReaderFeed(reader, (const char *) data, size) != REDIS_OK) {
        redisReaderFree(reader);
        return 0;
    }

    for ( ;; ) {
        reply = NULL;

        if (redisReaderGetReply(reader, &reply) != REDIS_OK
            || reply == NULL)
        {
            break;
        }

        zgw_errors_init(&errs);
        cfg = zgw_config_new();

        rc = zgw_store_snapshot_parse(reply, cfg, &errs);

        if (rc != ZGW_OK && errs.n == 0) {
            fprintf(stderr, "fuzz_snapshot: refused without saying why\n");
            abort();
        }

        fuzz_check_printable(&errs);

        if (rc == ZGW_OK) {
            zgw_errors_clear(&errs);
            (void) zgw_config_check_refs(cfg, &errs);
            fuzz_check_printable(&errs);
        }

        zgw_config_free(cfg);
        zgw_errors_free(&errs);
        freeReplyObject(reply);
    }

    redisReaderFree(reader);

    return 0;
}
