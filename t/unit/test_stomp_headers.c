/*
 * Unit tests: zgw_stomp_reserved(), the one list of STOMP headers a
 * client may not set, for the gateway (publish, admin send) and zmqd.
 */

#include "zgw_test_util.h"

#include <ctype.h>

#include "zgw_stomp_headers.h"


/* the list as it was in ngx_zmq_stomp.c and zmqd_stomp_publish.c */
static const char  *reserved[] = {
    "destination", "receipt", "content-length", "content-type",
    "content-encoding", "transaction", "persistent", "priority", "expires",
    "correlation-id", "reply-to", "amq-msg-type", "amqp-message-id",
    "zmq_message_id", "message-id", "subscription", "ack", "id",
    "receipt-id", "host", "login", "passcode", "heart-beat", "version",
    "accept-version", "expiration", NULL
};


/* every name, in lower, upper and mixed case, with and without "type" */
static void
test_every_name_in_any_case(void **state)
{
    int     i, type;
    char    buf[64];
    size_t  j, len;

    (void) state;

    for (i = 0; reserved[i] != NULL; i++) {
        len = strlen(reserved[i]);

        for (type = 0; type <= 1; type++) {
            assert_true(zgw_stomp_reserved(reserved[i], len, type));

            for (j = 0; j < len; j++) {
                buf[j] = (char) toupper((unsigned char) reserved[i][j]);
            }
            assert_true(zgw_stomp_reserved(buf, len, type));

            for (j = 0; j < len; j += 2) {
                buf[j] = reserved[i][j];
            }
            assert_true(zgw_stomp_reserved(buf, len, type));
        }
    }
}


/* "type" only when the caller sets it from a property */
static void
test_type_only_when_asked(void **state)
{
    (void) state;

    assert_false(zgw_stomp_reserved("type", 4, 0));
    assert_true(zgw_stomp_reserved("type", 4, 1));
    assert_true(zgw_stomp_reserved("TYPE", 4, 1));
    assert_true(zgw_stomp_reserved("Type", 4, 1));
    assert_false(zgw_stomp_reserved("types", 5, 1));
    assert_false(zgw_stomp_reserved("typ", 3, 1));
}


/* the length given is the name: no prefix, no longer name, no NUL */
static void
test_near_misses(void **state)
{
    (void) state;

    assert_false(zgw_stomp_reserved("", 0, 1));
    assert_false(zgw_stomp_reserved("i", 1, 1));
    assert_true(zgw_stomp_reserved("idx", 2, 0));
    assert_false(zgw_stomp_reserved("idx", 3, 0));
    assert_false(zgw_stomp_reserved("id\0", 3, 0));
    assert_false(zgw_stomp_reserved("destinations", 12, 0));
    assert_false(zgw_stomp_reserved("x-destination", 13, 0));
    assert_false(zgw_stomp_reserved("content_length", 14, 0));
    assert_false(zgw_stomp_reserved("zmq-message-id", 14, 0));
    assert_false(zgw_stomp_reserved("JMSType", 7, 1));
    assert_false(zgw_stomp_reserved("Customer", 8, 1));

    /* only ASCII letters fold: no byte >= 0x80 stands for one */
    assert_false(zgw_stomp_reserved("\xc4\xb0" "d", 3, 0));
    assert_false(zgw_stomp_reserved("\xc9" "D", 2, 0));
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_every_name_in_any_case),
        cmocka_unit_test(test_type_only_when_asked),
        cmocka_unit_test(test_near_misses),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
