/*
 * Bounded reply functions for hiredis readers (see zgw_resp_limit.h).
 *
 * hiredis keeps its default functions private; a reader made by
 * redisReaderCreate() points at them, so the first reader we limit lends
 * us a copy, and ours call them for everything but the check.
 */

#include <pthread.h>
#include <string.h>

#include "zgw_resp_limit.h"


static redisReplyObjectFunctions  zgw_resp_default;
static redisReplyObjectFunctions  zgw_resp_bounded;
static pthread_once_t             zgw_resp_once = PTHREAD_ONCE_INIT;
static redisReplyObjectFunctions *zgw_resp_source;


static void *
zgw_resp_create_array(const redisReadTask *task, int n)
{
    zgw_resp_budget_t  *b = task->privdata;

    if (b != NULL) {
        if (task->parent == NULL) {
            /* the first array of a new reply */
            b->slots = 0;
        }

        if (n < 0 || (size_t) n > b->max - b->slots) {
            return NULL;
        }

        b->slots += (size_t) n;
    }

    return zgw_resp_default.createArray(task, n);
}


static void
zgw_resp_init(void)
{
    zgw_resp_default = *zgw_resp_source;
    zgw_resp_bounded = zgw_resp_default;
    zgw_resp_bounded.createArray = zgw_resp_create_array;
}


void
zgw_resp_limit(redisReader *reader, zgw_resp_budget_t *budget)
{
    if (reader == NULL || reader->fn == NULL
        || reader->fn == &zgw_resp_bounded)
    {
        return;
    }

    zgw_resp_source = reader->fn;
    (void) pthread_once(&zgw_resp_once, zgw_resp_init);

    if (budget->max == 0) {
        budget->max = ZGW_RESP_MAX_SLOTS;
    }

    budget->slots = 0;
    reader->privdata = budget;
    reader->fn = &zgw_resp_bounded;
}
