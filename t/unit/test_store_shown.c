/*
 * Unit tests: what a hostile store puts in a snapshot is shown printable.
 * The model's messages quote the values they refuse; from the store those
 * are anyone's bytes, and the follower logs each message (NGINX's error
 * log, zmqd's): no line breaks or escape sequences may come through.
 */

#include "zgw_test_util.h"

#include "zgw_model.h"
#include "zgw_store.h"


/* the snapshot script's reply: version, one list per kind, versions */
static redisReply *
snapshot_reply(const char *name, const char *json)
{
    int           k;
    char          buf[8192], *p;
    void         *r;
    redisReader  *rd;

    p = buf;
    p += sprintf(p, "*%d\r\n$1\r\n3\r\n", ZGW_KIND_MAX + 2);

    for (k = 0; k < ZGW_KIND_MAX; k++) {
        if (k != ZGW_KIND_AMQP_CHANNEL) {
            p += sprintf(p, "*0\r\n");
            continue;
        }

        p += sprintf(p, "*2\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n", strlen(name),
                     name, strlen(json), json);
    }

    p += sprintf(p, "*0\r\n");

    rd = redisReaderCreate();
    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, buf, (size_t) (p - buf)),
                     REDIS_OK);
    r = NULL;
    assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
    assert_non_null(r);
    redisReaderFree(rd);
    return r;
}


static void
assert_printable(const zgw_errors_t *errs)
{
    size_t       i;
    const char  *p;

    assert_true(errs->n > 0);

    for (i = 0; i < errs->n; i++) {
        for (p = errs->msgs[i]; *p; p++) {
            assert_true(*p >= 0x20 && *p < 0x7f);
        }
    }
}


static void
test_refused_value_shown_printable(void **state)
{
    zgw_config_t  *cfg;
    zgw_errors_t   errs;
    redisReply    *r;

    (void) state;

    /* a value the model quotes in its message: a line break, an escape */
    r = snapshot_reply("in", "{\"name\":\"in\",\"def\":\"r\",\"queue\":\"q\","
                       "\"service\":\"s\",\"ack_mode\":\"x\\n\\u001b[31m"
                       "fake log line\"}");

    cfg = zgw_config_new();
    zgw_errors_init(&errs);

    assert_int_equal(zgw_store_snapshot_parse(r, cfg, &errs), ZGW_ERROR);
    assert_printable(&errs);
    assert_non_null(strstr(errs.msgs[0], "'x??[31mfake log line'"));

    zgw_errors_free(&errs);
    zgw_config_free(cfg);
    freeReplyObject(r);
}


static void
test_refused_name_shown_printable(void **state)
{
    zgw_config_t  *cfg;
    zgw_errors_t   errs;
    redisReply    *r;

    (void) state;

    /* a name that is not one: quoted by the model too */
    r = snapshot_reply("a\rb", "{\"name\":\"a\\rb\",\"def\":\"r\","
                       "\"queue\":\"q\",\"service\":\"s\"}");

    cfg = zgw_config_new();
    zgw_errors_init(&errs);

    assert_int_equal(zgw_store_snapshot_parse(r, cfg, &errs), ZGW_ERROR);
    assert_printable(&errs);

    zgw_errors_free(&errs);
    zgw_config_free(cfg);
    freeReplyObject(r);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_refused_value_shown_printable),
        cmocka_unit_test(test_refused_name_shown_printable),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
