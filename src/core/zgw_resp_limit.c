/*
 * Bounded reply functions for hiredis readers (see zgw_resp_limit.h).
 *
 * hiredis keeps its default functions private; a reader made by
 * redisReaderCreate() points at them, so the first reader we limit lends
 * us a copy, and ours call them for everything but the check.
 */

#include <pthread.h>
#include <stdio.h>
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

    if (budget->max_buffer == 0) {
        budget->max_buffer = ZGW_RESP_MAX_BUFFER;
    }

    budget->slots = 0;
    reader->privdata = budget;
    reader->fn = &zgw_resp_bounded;
}


/*
 * hiredis 0.14 reads a bulk string's "$" and sets the task's type, then
 * waits until the whole string is in its buffer, its cursor just after
 * the "$": the length announced is there to read before the bytes come.
 */
int
zgw_resp_buffer_ok(const redisReader *reader,
    const zgw_resp_budget_t *budget, char *why, size_t len)
{
    int           type;
    size_t        max, line, held, n, i;
    const char   *p;

    max = budget->max_buffer ? budget->max_buffer : ZGW_RESP_MAX_BUFFER;

    held = reader->len > reader->pos ? reader->len - reader->pos : 0;

    if (held > max) {
        if (why != NULL && len) {
            snprintf(why, len, "reply too large: %zu bytes unparsed "
                     "(the bound is %zu)", held, max);
        }
        return 0;
    }

    if (reader->ridx < 0
        || (size_t) reader->ridx
           >= sizeof(reader->rstack) / sizeof(reader->rstack[0])
        || reader->buf == NULL)
    {
        return 1;
    }

    type = reader->rstack[reader->ridx].type;
    p = reader->buf + reader->pos;

    /*
     * A line (a status, an error, an integer, the count of an array or
     * of a bulk string) is looked for from its start on every parse: one
     * without end would cost time in the square of its length, long
     * before the buffer bound. Redis' lines are short.
     */
    line = max < ZGW_RESP_MAX_LINE ? max : ZGW_RESP_MAX_LINE;

    if (type >= 0 && held > line && memchr(p, '\r', line + 1) == NULL) {
        if (why != NULL && len) {
            snprintf(why, len, "reply too large: a line of more than %zu "
                     "bytes", line);
        }
        return 0;
    }

    if (type != REDIS_REPLY_STRING) {
        return 1;
    }

    n = 0;

    /* digits only: hiredis 0.14 refuses "$+N" as a protocol error
       (t/unit/test_resp_limit.c) */
    for (i = 0; i < held && p[i] >= '0' && p[i] <= '9'; i++) {
        n = n * 10 + (size_t) (p[i] - '0');

        if (n > max) {
            if (why != NULL && len) {
                /* the whole number, when it has come */
                while (i + 1 < held && i + 1 < 18 && p[i + 1] >= '0'
                       && p[i + 1] <= '9')
                {
                    n = n * 10 + (size_t) (p[++i] - '0');
                }

                snprintf(why, len, "reply too large: a bulk string of "
                         "%zu bytes (the bound is %zu)", n, max);
            }
            return 0;
        }
    }

    return 1;
}
