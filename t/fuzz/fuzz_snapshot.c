/*
 * libFuzzer target: the snapshot loader, as every follower runs it.
 *
 * Followers (each NGINX worker, each zmqd) read the configuration with one
 * EVAL whose reply zgw_store_snapshot_parse() turns into a configuration.
 * Here the bytes are what Redis (or anything that answers on its port)
 * sends: hiredis' reader decodes them exactly as it does for the followers,
 * and every reply it produces is handed to the loader.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <hiredis/hiredis.h>

#include "zgw_resp_limit.h"
#include "zgw_store.h"


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

        if (rc == ZGW_OK) {
            zgw_errors_clear(&errs);
            (void) zgw_config_check_refs(cfg, &errs);
        }

        zgw_config_free(cfg);
        zgw_errors_free(&errs);
        freeReplyObject(reply);
    }

    redisReaderFree(reader);

    return 0;
}
