/*
 * Unit tests: what may go into a published message. Each case is one
 * input to one check and the reason it must give (NULL: accepted).
 */

#include "zgw_test_util.h"

#include "zgw_amqp_check.h"


typedef enum {
    NAME = 0,
    VALUE,
    REPLY_TO,
    ROUTING_KEY,            /* exchange "" */
    ROUTING_KEY_X,          /* exchange "amq.topic" */
    EXPIRATION
} check_e;


typedef struct {
    check_e      check;
    const char  *input;
    size_t       len;       /* 0: strlen(input); SIZE_MAX: empty */
    const char  *reason;    /* a substring of the reason, or NULL: fine */
} check_case_t;


#define EMPTY  ((size_t) -1)

#define S16   "aaaaaaaaaaaaaaaa"
#define S128  S16 S16 S16 S16 S16 S16 S16 S16
#define S255  S128 S16 S16 S16 S16 S16 S16 S16 "aaaaaaaaaaaaaaa"


static const check_case_t  cases[] = {

    /* header names */
    { NAME, "Customer", 0, NULL },
    { NAME, "tenant-id", 0, NULL },
    { NAME, "a.b_c~d|e^f`g'h*i+j!k#l$m%n&o", 0, NULL },
    { NAME, S128, 0, NULL },
    { NAME, S128 "a", 0, "a header name is at most 128 bytes" },
    { NAME, S255 "a", 0, "at most 128 bytes" },
    { NAME, "", EMPTY, "a header name must not be empty" },
    { NAME, "a b", 0, "an HTTP token" },
    { NAME, "a:b", 0, "an HTTP token" },
    { NAME, "a\"b", 0, "an HTTP token" },
    { NAME, "caf\xc3\xa9", 0, "an HTTP token" },
    { NAME, "a\0b", 3, "an HTTP token" },
    { NAME, "CC", 0, "CC and BCC are RabbitMQ's sender-selected "
                     "distribution headers" },
    { NAME, "cc", 0, "CC and BCC" },
    { NAME, "Bcc", 0, "CC and BCC" },
    { NAME, "BCC", 0, "CC and BCC" },
    { NAME, "CCC", 0, NULL },
    { NAME, "BC", 0, NULL },
    { NAME, "x-death", 0, "header names beginning with x- are RabbitMQ's" },
    { NAME, "X-Delay", 0, "beginning with x-" },
    { NAME, "x-first-death-queue", 0, "beginning with x-" },
    { NAME, "x-amqp-1.0-message-annotations", 0, "beginning with x-" },
    { NAME, "x-", 0, "beginning with x-" },
    { NAME, "x", 0, NULL },
    { NAME, "xdeath", 0, NULL },

    /* header values */
    { VALUE, "ACME", 0, NULL },
    { VALUE, "", EMPTY, NULL },
    { VALUE, "Z\xc3\xbcrich \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x90\x87", 0,
      NULL },
    { VALUE, "a\tb", 0, NULL },
    { VALUE, "a\r\nX-Evil: 1", 0, "no control characters (other than tab)" },
    { VALUE, "a\0b", 3, "no control characters" },
    { VALUE, "a\x7f", 0, "no control characters" },
    { VALUE, "\xff", 0, "a header value must be UTF-8" },
    { VALUE, "\xc3", 0, "must be UTF-8" },                /* cut short */
    { VALUE, "\xc0\xaf", 0, "must be UTF-8" },            /* overlong */
    { VALUE, "\xe0\x80\xaf", 0, "must be UTF-8" },        /* overlong */
    { VALUE, "\xed\xa0\x80", 0, "must be UTF-8" },        /* surrogate */
    { VALUE, "\xf4\x90\x80\x80", 0, "must be UTF-8" },    /* > U+10FFFF */

    /* reply-to */
    { REPLY_TO, "replies", 0, NULL },
    { REPLY_TO, "", EMPTY, NULL },
    { REPLY_TO, S255, 0, NULL },
    { REPLY_TO, S255 "a", 0, "reply-to is at most 255 bytes" },
    { REPLY_TO, "amq.rabbitmq.reply-to", 0,
      "reply-to may not be RabbitMQ's direct reply-to" },
    { REPLY_TO, "AMQ.RabbitMQ.Reply-To", 0, "direct reply-to" },
    { REPLY_TO, "amq.rabbitmq.reply-to.g2gCZAAT.x", 0, "direct reply-to" },
    { REPLY_TO, "amq.rabbitmq.reply-t", 0, NULL },
    { REPLY_TO, "my.amq.rabbitmq.reply-to", 0, NULL },
    { REPLY_TO, "a\nb", 0, "reply-to has no control characters" },

    /* routing keys */
    { ROUTING_KEY, "orders.eu", 0, NULL },
    { ROUTING_KEY, "", EMPTY, NULL },
    { ROUTING_KEY, S255, 0, NULL },
    { ROUTING_KEY, S255 "a", 0, "the routing key is longer than 255 bytes" },
    { ROUTING_KEY, "amq.rabbitmq.reply-to.AAAA.x", 0,
      "a routing key beginning with amq.rabbitmq.reply-to. is a direct "
      "reply-to address" },
    { ROUTING_KEY, "Amq.RabbitMQ.Reply-To.", 0, "direct reply-to address" },
    { ROUTING_KEY, "amq.rabbitmq.reply-to", 0, NULL },   /* unroutable */
    { ROUTING_KEY_X, "amq.rabbitmq.reply-to.AAAA.x", 0, NULL },
    { ROUTING_KEY_X, S255 "a", 0, "longer than 255 bytes" },

    /* expiration */
    { EXPIRATION, "0", 0, NULL },
    { EXPIRATION, "60000", 0, NULL },
    { EXPIRATION, "4294967295", 0, NULL },
    { EXPIRATION, "0000000001", 0, NULL },
    { EXPIRATION, "4294967296", 0,
      "the expiration is a number of milliseconds, 0-4294967295" },
    { EXPIRATION, "9999999999", 0, "0-4294967295" },
    { EXPIRATION, "00000000001", 0, "0-4294967295" },
    { EXPIRATION, "", EMPTY, "0-4294967295" },
    { EXPIRATION, "-1", 0, "digits only" },
    { EXPIRATION, "+5", 0, "digits only" },
    { EXPIRATION, " 5", 0, "digits only" },
    { EXPIRATION, "5ms", 0, "digits only" },
    { EXPIRATION, "1e3", 0, "digits only" },
};


static const char *
run(const check_case_t *c, size_t len)
{
    switch (c->check) {
    case NAME:
        return zgw_amqp_header_name_check(c->input, len);
    case VALUE:
        return zgw_amqp_header_value_check(c->input, len);
    case REPLY_TO:
        return zgw_amqp_reply_to_check(c->input, len);
    case ROUTING_KEY:
        return zgw_amqp_routing_key_check("", 0, c->input, len);
    case ROUTING_KEY_X:
        return zgw_amqp_routing_key_check("amq.topic", 9, c->input, len);
    case EXPIRATION:
        return zgw_amqp_expiration_check(c->input, len, NULL);
    }

    return "?";
}


static void
test_check_cases(void **state)
{
    int          failed;
    size_t       i, len;
    const char  *why;

    (void) state;
    failed = 0;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        len = cases[i].len == EMPTY ? 0
              : cases[i].len ? cases[i].len : strlen(cases[i].input);

        why = run(&cases[i], len);

        if (cases[i].reason == NULL ? why != NULL
            : why == NULL || strstr(why, cases[i].reason) == NULL)
        {
            print_message("FAIL: check %d \"%.40s\": expected %s%s%s, got "
                          "%s\n", (int) cases[i].check, cases[i].input,
                          cases[i].reason ? "\"" : "",
                          cases[i].reason ? cases[i].reason : "no reason",
                          cases[i].reason ? "\"" : "",
                          why ? why : "no reason");
            failed++;
        }
    }

    assert_int_equal(failed, 0);
}


static void
test_expiration_value(void **state)
{
    unsigned long long  ms;

    (void) state;

    assert_null(zgw_amqp_expiration_check("4294967295", 10, &ms));
    assert_true(ms == 4294967295ULL);
    assert_null(zgw_amqp_expiration_check("60000junk", 5, &ms));
    assert_true(ms == 60000);
}


static void
test_echo_is_printable_and_bounded(void **state)
{
    char  out[32];

    (void) state;

    zgw_amqp_echo(out, sizeof(out), "a\"b\\c\r\n\xff", 8, 64);
    assert_string_equal(out, "a?b?c???");

    zgw_amqp_echo(out, sizeof(out), S128, 128, 10);
    assert_string_equal(out, "aaaaaaaaaa...");

    zgw_amqp_echo(out, 8, S128, 128, 64);
    assert_string_equal(out, "aaaa...");
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_check_cases),
        cmocka_unit_test(test_expiration_value),
        cmocka_unit_test(test_echo_is_printable_and_bounded),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
