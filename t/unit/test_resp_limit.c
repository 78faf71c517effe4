/*
 * Unit tests: the bound on what a Redis reply may allocate
 * (zgw_resp_limit), through hiredis' own reader.
 */

#include "zgw_test_util.h"

#include "zgw_resp_limit.h"


/* feeds text; returns what redisReaderGetReply() returned, *reply set */
static int
read_one(redisReader *r, const char *text, redisReply **reply)
{
    void  *obj = NULL;
    int    rc;

    assert_int_equal(redisReaderFeed(r, text, strlen(text)), REDIS_OK);
    rc = redisReaderGetReply(r, &obj);
    *reply = obj;

    return rc;
}


static void
test_a_huge_count_is_refused_before_allocating(void **state)
{
    redisReader        *r = redisReaderCreate();
    redisReply         *reply;
    zgw_resp_budget_t   budget = { 0, 0, 0 };

    (void) state;
    assert_non_null(r);
    zgw_resp_limit(r, &budget);
    assert_int_equal(budget.max, ZGW_RESP_MAX_SLOTS);
    assert_int_equal(budget.max_buffer, ZGW_RESP_MAX_BUFFER);

    /* 2 Gi slots (16 GB) announced in 13 bytes */
    assert_int_equal(read_one(r, "*2000000000\r\n", &reply), REDIS_ERR);
    assert_null(reply);
    assert_int_equal(r->err, REDIS_ERR_OOM);

    redisReaderFree(r);
}


static void
test_nested_counts_add_up(void **state)
{
    redisReader        *r = redisReaderCreate();
    redisReply         *reply;
    zgw_resp_budget_t   budget = { 0, 10, 0 };

    (void) state;
    zgw_resp_limit(r, &budget);

    /* 3 + 4 + 4 slots: 11 > 10, the last array is refused */
    assert_int_equal(read_one(r, "*3\r\n*4\r\n:1\r\n:2\r\n:3\r\n:4\r\n*4\r\n",
                              &reply),
                     REDIS_ERR);
    assert_null(reply);

    redisReaderFree(r);
}


static void
test_replies_within_the_bound_read_as_before(void **state)
{
    redisReader        *r = redisReaderCreate();
    redisReply         *reply;
    zgw_resp_budget_t   budget = { 0, 10, 0 };
    int                 i;

    (void) state;
    zgw_resp_limit(r, &budget);

    /* each reply has its own budget: three of 3 + 4 slots */
    for (i = 0; i < 3; i++) {
        assert_int_equal(read_one(r, "*3\r\n$1\r\na\r\n*4\r\n:1\r\n:2\r\n"
                                  ":3\r\n:4\r\n$-1\r\n", &reply),
                         REDIS_OK);
        assert_non_null(reply);
        assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
        assert_int_equal(reply->elements, 3);
        assert_string_equal(reply->element[0]->str, "a");
        assert_int_equal(reply->element[1]->elements, 4);
        assert_int_equal(reply->element[1]->element[3]->integer, 4);
        assert_int_equal(reply->element[2]->type, REDIS_REPLY_NIL);
        freeReplyObject(reply);
    }

    /* a null array and an empty one, and plain values, still read */
    assert_int_equal(read_one(r, "*-1\r\n", &reply), REDIS_OK);
    assert_int_equal(reply->type, REDIS_REPLY_NIL);
    freeReplyObject(reply);

    assert_int_equal(read_one(r, "*0\r\n", &reply), REDIS_OK);
    assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
    assert_int_equal(reply->elements, 0);
    freeReplyObject(reply);

    assert_int_equal(read_one(r, "+OK\r\n", &reply), REDIS_OK);
    assert_int_equal(reply->type, REDIS_REPLY_STATUS);
    freeReplyObject(reply);

    /* exactly at the bound */
    assert_int_equal(read_one(r, "*10\r\n:0\r\n:1\r\n:2\r\n:3\r\n:4\r\n"
                              ":5\r\n:6\r\n:7\r\n:8\r\n:9\r\n", &reply),
                     REDIS_OK);
    assert_int_equal(reply->elements, 10);
    freeReplyObject(reply);

    redisReaderFree(r);
}


static void
test_limiting_twice_changes_nothing(void **state)
{
    redisReader        *r = redisReaderCreate();
    redisReply         *reply;
    zgw_resp_budget_t   a = { 0, 2, 0 }, b = { 0, 100, 0 };

    (void) state;
    zgw_resp_limit(r, &a);
    zgw_resp_limit(r, &b);

    /* the first budget stays in force */
    assert_int_equal(read_one(r, "*3\r\n", &reply), REDIS_ERR);

    redisReaderFree(r);
}


/* feeds text, then checks the buffer bound as every caller does */
static int
feed_ok(redisReader *r, zgw_resp_budget_t *b, const char *text, size_t n,
    char *why, size_t len)
{
    assert_int_equal(redisReaderFeed(r, text, n), REDIS_OK);
    return zgw_resp_buffer_ok(r, b, why, len);
}


static void
test_an_endless_bulk_is_refused_at_the_buffer_bound(void **state)
{
    int                 i;
    char                chunk[1000], why[256];
    void               *obj;
    redisReader        *r = redisReaderCreate();
    zgw_resp_budget_t   budget = { 0, 0, 4096 };

    (void) state;
    zgw_resp_limit(r, &budget);
    memset(chunk, 'x', sizeof(chunk));

    /* a bulk that announces 3000 bytes fits; its bytes come on and on */
    assert_true(feed_ok(r, &budget, "$3000\r\n", 7, why, sizeof(why)));
    obj = NULL;
    assert_int_equal(redisReaderGetReply(r, &obj), REDIS_OK);
    assert_null(obj);

    for (i = 0; i < 4; i++) {
        assert_true(feed_ok(r, &budget, chunk, sizeof(chunk), why,
                            sizeof(why)));
    }

    /* 6 (after the "$") + 5000 unparsed: over 4096 */
    assert_false(feed_ok(r, &budget, chunk, sizeof(chunk), why,
                         sizeof(why)));
    assert_string_equal(why, "reply too large: 5006 bytes unparsed "
                             "(the bound is 4096)");

    redisReaderFree(r);
}


/*
 * A length with a sign: the bound reads digits only, so "$+N" must not get
 * past it to the bytes. hiredis 0.14 refuses it as a protocol error.
 */
static void
test_a_signed_announced_bulk_is_refused_too(void **state)
{
    char                why[256];
    void               *obj;
    redisReader        *r = redisReaderCreate();
    zgw_resp_budget_t   budget = { 0, 0, 0 };

    (void) state;
    zgw_resp_limit(r, &budget);

    (void) feed_ok(r, &budget, "$+999999999\r\n", 13, why, sizeof(why));
    obj = NULL;
    assert_int_equal(redisReaderGetReply(r, &obj), REDIS_ERR);
    assert_null(obj);
    redisReaderFree(r);
}


static void
test_a_huge_announced_bulk_is_refused_before_its_bytes_come(void **state)
{
    char                why[256];
    void               *obj;
    redisReply         *reply;
    redisReader        *r = redisReaderCreate();
    zgw_resp_budget_t   budget = { 0, 0, 0 };

    (void) state;
    zgw_resp_limit(r, &budget);

    /* inside an array, after a whole element: 12 bytes announce ~1 GB */
    assert_true(feed_ok(r, &budget, "*2\r\n$1\r\na\r\n$999999999\r\n", 24,
                        why, sizeof(why)));
    obj = NULL;
    assert_int_equal(redisReaderGetReply(r, &obj), REDIS_OK);
    assert_null(obj);

    assert_false(feed_ok(r, &budget, "xx", 2, why, sizeof(why)));
    assert_string_equal(why, "reply too large: a bulk string of 999999999 "
                             "bytes (the bound is 67108864)");
    redisReaderFree(r);

    /* at the bound exactly it is read */
    r = redisReaderCreate();
    budget.max_buffer = 16;
    zgw_resp_limit(r, &budget);
    assert_true(feed_ok(r, &budget, "$10\r\n", 5, why, sizeof(why)));
    assert_int_equal(redisReaderGetReply(r, &obj), REDIS_OK);
    assert_true(feed_ok(r, &budget, "0123456789\r\n", 12, NULL, 0));
    assert_int_equal(read_one(r, "", &reply), REDIS_OK);
    assert_non_null(reply);
    assert_int_equal(reply->len, 10);
    freeReplyObject(reply);

    /* one byte more is not; a nil bulk is fine */
    assert_true(feed_ok(r, &budget, "$-1\r\n", 5, why, sizeof(why)));
    assert_int_equal(read_one(r, "", &reply), REDIS_OK);
    assert_int_equal(reply->type, REDIS_REPLY_NIL);
    freeReplyObject(reply);
    assert_true(feed_ok(r, &budget, "$17\r\n", 5, why, sizeof(why)));
    obj = NULL;
    assert_int_equal(redisReaderGetReply(r, &obj), REDIS_OK);
    assert_null(obj);
    assert_false(feed_ok(r, &budget, "0", 1, why, sizeof(why)));
    assert_string_equal(why, "reply too large: a bulk string of 17 bytes "
                             "(the bound is 16)");

    redisReaderFree(r);
}


static void
test_an_endless_status_line_is_refused(void **state)
{
    int                 i;
    char                chunk[1024], why[256];
    void               *obj;
    redisReader        *r = redisReaderCreate();
    zgw_resp_budget_t   budget = { 0, 0, 0 };

    (void) state;
    zgw_resp_limit(r, &budget);
    memset(chunk, 'y', sizeof(chunk));

    assert_true(feed_ok(r, &budget, "+", 1, why, sizeof(why)));
    obj = NULL;
    assert_int_equal(redisReaderGetReply(r, &obj), REDIS_OK);
    assert_null(obj);

    /* 64 KiB of a line: its end is looked for from its start each time */
    for (i = 0; i < 64; i++) {
        assert_true(feed_ok(r, &budget, chunk, sizeof(chunk), why,
                            sizeof(why)));
        assert_int_equal(redisReaderGetReply(r, &obj), REDIS_OK);
        assert_null(obj);
    }

    assert_false(feed_ok(r, &budget, chunk, 1, why, sizeof(why)));
    assert_string_equal(why, "reply too large: a line of more than 65536 "
                             "bytes");
    redisReaderFree(r);

    /* an error line of 60 KiB is still read */
    r = redisReaderCreate();
    zgw_resp_limit(r, &budget);
    assert_true(feed_ok(r, &budget, "-", 1, why, sizeof(why)));
    for (i = 0; i < 60; i++) {
        assert_true(feed_ok(r, &budget, chunk, sizeof(chunk), why,
                            sizeof(why)));
        assert_int_equal(redisReaderGetReply(r, &obj), REDIS_OK);
        assert_null(obj);
    }
    assert_true(feed_ok(r, &budget, "\r\n", 2, why, sizeof(why)));
    assert_int_equal(redisReaderGetReply(r, &obj), REDIS_OK);
    assert_non_null(obj);
    assert_int_equal(((redisReply *) obj)->type, REDIS_REPLY_ERROR);
    assert_int_equal(((redisReply *) obj)->len, 60 * 1024);
    freeReplyObject(obj);

    redisReaderFree(r);
}


static void
test_a_long_reply_of_small_elements_stays_within_the_buffer(void **state)
{
    int                 i;
    char                el[64], why[256];
    void               *obj;
    redisReply         *reply;
    redisReader        *r = redisReaderCreate();
    zgw_resp_budget_t   budget = { 0, 0, 1024 };

    (void) state;
    zgw_resp_limit(r, &budget);

    /* 100 KB in all, parsed as it comes: never more than 1 KB unparsed */
    assert_true(feed_ok(r, &budget, "*2000\r\n", 7, why, sizeof(why)));

    for (i = 0; i < 2000; i++) {
        snprintf(el, sizeof(el), "$40\r\n%040d\r\n", i);
        assert_true(feed_ok(r, &budget, el, strlen(el), why, sizeof(why)));
        obj = NULL;
        assert_int_equal(redisReaderGetReply(r, &obj), REDIS_OK);
        if (i < 1999) {
            assert_null(obj);
        }
    }

    reply = obj;
    assert_non_null(reply);
    assert_int_equal(reply->elements, 2000);
    freeReplyObject(reply);

    redisReaderFree(r);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_huge_count_is_refused_before_allocating),
        cmocka_unit_test(test_nested_counts_add_up),
        cmocka_unit_test(test_replies_within_the_bound_read_as_before),
        cmocka_unit_test(test_limiting_twice_changes_nothing),
        cmocka_unit_test(test_an_endless_bulk_is_refused_at_the_buffer_bound),
        cmocka_unit_test(
            test_a_huge_announced_bulk_is_refused_before_its_bytes_come),
        cmocka_unit_test(test_a_signed_announced_bulk_is_refused_too),
        cmocka_unit_test(test_an_endless_status_line_is_refused),
        cmocka_unit_test(
            test_a_long_reply_of_small_elements_stays_within_the_buffer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
