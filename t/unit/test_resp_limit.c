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
    zgw_resp_budget_t   budget = { 0, 0 };

    (void) state;
    assert_non_null(r);
    zgw_resp_limit(r, &budget);
    assert_int_equal(budget.max, ZGW_RESP_MAX_SLOTS);

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
    zgw_resp_budget_t   budget = { 0, 10 };

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
    zgw_resp_budget_t   budget = { 0, 10 };
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
    zgw_resp_budget_t   a = { 0, 2 }, b = { 0, 100 };

    (void) state;
    zgw_resp_limit(r, &a);
    zgw_resp_limit(r, &b);

    /* the first budget stays in force */
    assert_int_equal(read_one(r, "*3\r\n", &reply), REDIS_ERR);

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
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
