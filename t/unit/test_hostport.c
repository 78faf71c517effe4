/*
 * Unit tests: the host:port parser. Each case is one input and the host,
 * port and kind it must give, or the error it must produce.
 */

#include "zgw_test_util.h"

#include "zgw_hostport.h"


#define HP     0        /* zgw_hostport_parse() */
#define HOST   1        /* zgw_host_parse() */

#define L63    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define L61    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define N253   L63 "." L63 "." L63 "." L61

#define NAME   ZGW_HOST_IS_NAME
#define IPV4   ZGW_HOST_IS_IPV4
#define IPV6   ZGW_HOST_IS_IPV6


typedef struct {
    int          mode;
    const char  *text;
    size_t       len;           /* 0: strlen(text) */
    int          default_port;
    const char  *host;          /* expected, or NULL when an error is */
    int          port;
    int          kind;
    const char  *error;         /* a substring of the message */
} hostport_case_t;


static const hostport_case_t  cases[] = {

    /* IPv4 */
    { HP, "127.0.0.1", 0, 5672, "127.0.0.1", 5672, IPV4, NULL },
    { HP, "127.0.0.1:5673", 0, 5672, "127.0.0.1", 5673, IPV4, NULL },
    { HP, "192.0.2.255:65535", 0, 0, "192.0.2.255", 65535, IPV4, NULL },
    { HP, "1.2.3", 0, 5672, NULL, 0, 0,
      "'1.2.3': '1.2.3' is not an IPv4 address" },
    { HP, "256.1.1.1:80", 0, 5672, NULL, 0, 0, "is not an IPv4 address" },
    { HP, "1.2.3.4.5", 0, 5672, NULL, 0, 0, "is not an IPv4 address" },
    { HP, "2130706433", 0, 5672, NULL, 0, 0, "is not an IPv4 address" },

    /* IPv6 */
    { HP, "[::1]", 0, 5672, "::1", 5672, IPV6, NULL },
    { HP, "[::1]:5673", 0, 5672, "::1", 5673, IPV6, NULL },
    { HP, "[2001:db8::1]:1", 0, 5672, "2001:db8::1", 1, IPV6, NULL },
    { HP, "[::ffff:192.0.2.1]:80", 0, 0, "::ffff:192.0.2.1", 80, IPV6,
      NULL },
    { HP, "[", 0, 5672, NULL, 0, 0, "'[': '[' without a closing ']'" },
    { HP, "[:5672", 0, 5672, NULL, 0, 0, "'[' without a closing ']'" },
    { HP, "[::1", 0, 5672, NULL, 0, 0, "'[' without a closing ']'" },
    { HP, "[]", 0, 5672, NULL, 0, 0, "no IPv6 address between '[' and ']'" },
    { HP, "[]:5672", 0, 5672, NULL, 0, 0, "no IPv6 address between" },
    { HP, "]", 0, 5672, NULL, 0, 0, "']' without an opening '['" },
    { HP, "h]:1", 0, 5672, NULL, 0, 0, "']' without an opening '['" },
    { HP, "[::1]x", 0, 5672, NULL, 0, 0, "after ']' only ':port' may follow" },
    { HP, "[::1]]", 0, 5672, NULL, 0, 0, "after ']' only ':port' may follow" },
    { HP, "[::1]:", 0, 5672, NULL, 0, 0, "no port after ':'" },
    { HP, "[::1]:0", 0, 5672, NULL, 0, 0, "port 0 is out of range 1-65535" },
    { HP, "[zz]:1", 0, 5672, NULL, 0, 0, "'zz' is not an IPv6 address" },
    { HP, "[127.0.0.1]", 0, 5672, NULL, 0, 0, "is not an IPv6 address" },
    { HP, "[fe80::1%eth0]", 0, 5672, NULL, 0, 0, "is not an IPv6 address" },
    { HP, "::1", 0, 5672, NULL, 0, 0,
      "an IPv6 address must be written in brackets" },
    { HP, "2001:db8::1:5672", 0, 5672, NULL, 0, 0, "in brackets" },

    /* names */
    { HP, "rabbit", 0, 5672, "rabbit", 5672, NAME, NULL },
    { HP, "localhost:1", 0, 5672, "localhost", 1, NAME, NULL },
    { HP, "rabbit-1.Example.COM:5671", 0, 5672, "rabbit-1.Example.COM", 5671,
      NAME, NULL },
    { HP, "rabbit.example.com.", 0, 5672, "rabbit.example.com.", 5672, NAME,
      NULL },
    { HP, "3com.example", 0, 5672, "3com.example", 5672, NAME, NULL },
    { HP, L63 ".x", 0, 5672, L63 ".x", 5672, NAME, NULL },
    { HP, N253, 0, 5672, N253, 5672, NAME, NULL },
    { HP, N253 ".", 0, 5672, N253 ".", 5672, NAME, NULL },
    { HP, N253 "c", 0, 5672, NULL, 0, 0, "longer than 253 characters" },
    { HP, L63 "a.x", 0, 5672, NULL, 0, 0,
      "a label of the host name is longer than 63 characters" },
    { HP, "-rabbit", 0, 5672, NULL, 0, 0, "begins or ends with '-'" },
    { HP, "rabbit-.x:1", 0, 5672, NULL, 0, 0, "begins or ends with '-'" },
    { HP, "a..b", 0, 5672, NULL, 0, 0, "has an empty label" },
    { HP, ".a", 0, 5672, NULL, 0, 0, "has an empty label" },
    { HP, ".", 0, 5672, NULL, 0, 0, "has an empty label" },
    { HP, "a.:1", 0, 5672, "a.", 1, NAME, NULL },
    { HP, "my_rabbit", 0, 5672, "my_rabbit", 5672, NAME, NULL },
    { HP, "a*b", 0, 5672, NULL, 0, 0,
      "'*' is not allowed in a host name (letters, digits, '-', '_' and '.')" },
    { HP, "rabbit/vhost", 0, 5672, NULL, 0, 0, "'/' is not allowed" },
    { HP, "user@rabbit", 0, 5672, NULL, 0, 0, "'@' is not allowed" },
    { HP, "ex\xc3\xa9mple", 0, 5672, NULL, 0, 0,
      "a host name has letters, digits, '-', '_' and '.' only" },

    /* ports */
    { HP, ":5672", 0, 5672, NULL, 0, 0, "no host before ':'" },
    { HP, "h:", 0, 5672, NULL, 0, 0, "'h:': no port after ':'" },
    { HP, "h:0", 0, 5672, NULL, 0, 0, "'h:0': port 0 is out of range 1-65535" },
    { HP, "h:65536", 0, 5672, NULL, 0, 0, "port 65536 is out of range" },
    { HP, "h:00080", 0, 5672, "h", 80, NAME, NULL },
    { HP, "h:99999999999999999999", 0, 5672, NULL, 0, 0,
      "port 9999999999... is out of range 1-65535" },
    { HP, "h:-1", 0, 5672, NULL, 0, 0, "the port must be a number 1-65535" },
    { HP, "h:+1", 0, 5672, NULL, 0, 0, "the port must be a number" },
    { HP, "h:5672x", 0, 5672, NULL, 0, 0, "the port must be a number" },
    { HP, "h:1:2", 0, 5672, NULL, 0, 0, "must be written in brackets" },
    { HP, "rabbit", 0, 0, NULL, 0, 0, "a port is required (host:port)" },
    { HP, "[::1]", 0, 0, NULL, 0, 0, "a port is required" },

    /* the text as a whole */
    { HP, "", 0, 5672, NULL, 0, 0, "'': is empty" },
    { HP, "h: 1", 0, 5672, NULL, 0, 0, "contains white space, a control" },
    { HP, " h", 0, 5672, NULL, 0, 0, "contains white space" },
    { HP, "h\tx", 0, 5672, NULL, 0, 0, "'h?x': contains white space" },
    { HP, "h\0x", 3, 5672, NULL, 0, 0, "or NUL" },
    { HP, N253 N253, 0, 5672, NULL, 0, 0, "is longer than 300 characters" },

    /* a host alone */
    { HOST, "rabbit", 0, 0, "rabbit", 0, NAME, NULL },
    { HOST, "10.0.0.1", 0, 0, "10.0.0.1", 0, IPV4, NULL },
    { HOST, "::1", 0, 0, "::1", 0, IPV6, NULL },
    { HOST, "[2001:db8::2]", 0, 0, "2001:db8::2", 0, IPV6, NULL },
    { HOST, "[::1]:5672", 0, 0, NULL, 0, 0,
      "a host in brackets is an IPv6 address and nothing else" },
    { HOST, "[", 0, 0, NULL, 0, 0, "a host in brackets is an IPv6 address" },
    { HOST, "[]", 0, 0, NULL, 0, 0, "a host in brackets is an IPv6 address" },
    { HOST, "rabbit:5672", 0, 0, NULL, 0, 0,
      "a host without a port (the port is a field of its own)" },
    { HOST, "1::2::3", 0, 0, NULL, 0, 0, "is not an IPv6 address" },
    { HOST, "", 0, 0, NULL, 0, 0, "is empty" },
    { HOST, "a_b", 0, 0, "a_b", 0, NAME, NULL },
    { HOST, "a b", 0, 0, NULL, 0, 0, "contains white space" },
};


static void
test_hostport_cases(void **state)
{
    int              rc, failed;
    size_t           i, len;
    zgw_errors_t     errs;
    zgw_hostport_t   hp;
    const char      *what;

    (void) state;
    failed = 0;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        zgw_errors_init(&errs);

        len = cases[i].len ? cases[i].len : strlen(cases[i].text);

        if (cases[i].mode == HP) {
            what = "hostport";
            rc = zgw_hostport_parse(&hp, cases[i].text, len,
                                    cases[i].default_port, NULL, &errs);
        } else {
            what = "host";
            rc = zgw_host_parse(&hp, cases[i].text, len, NULL, &errs);
        }

        if (cases[i].host != NULL) {
            if (rc != ZGW_OK || errs.n != 0
                || strcmp(hp.host, cases[i].host) != 0
                || hp.port != cases[i].port || hp.kind != cases[i].kind)
            {
                print_message("FAIL: %s \"%s\": expected %s port %d kind %d, "
                              "got rc %d %s port %d kind %d\n", what,
                              cases[i].text, cases[i].host, cases[i].port,
                              cases[i].kind, rc, hp.host, hp.port, hp.kind);
                zgw_test_print_errors(&errs);
                failed++;
            }

        } else if (rc != ZGW_ERROR || errs.n != 1
                   || !zgw_test_errors_have(&errs, cases[i].error)
                   || hp.host[0] != '\0' || hp.port != 0)
        {
            print_message("FAIL: %s \"%s\": expected one error with "
                          "\"%s\"\n", what, cases[i].text, cases[i].error);
            zgw_test_print_errors(&errs);
            failed++;
        }

        zgw_errors_free(&errs);
    }

    assert_int_equal(failed, 0);
}


static void
test_messages_name_the_field(void **state)
{
    zgw_errors_t    errs;
    zgw_hostport_t  hp;

    (void) state;
    zgw_errors_init(&errs);

    assert_int_equal(zgw_hostport_parse(&hp, "[:5672", 6, 5672,
                                        "amqp_def 'crm': hosts[1]", &errs),
                     ZGW_ERROR);
    assert_string_equal(zgw_errors_first(&errs),
                        "amqp_def 'crm': hosts[1] '[:5672': '[' without a "
                        "closing ']'");

    zgw_errors_free(&errs);
}


static void
test_text_need_not_be_nul_ended(void **state)
{
    zgw_errors_t    errs;
    zgw_hostport_t  hp;

    (void) state;
    zgw_errors_init(&errs);

    /* the first 9 bytes of a longer buffer */
    assert_int_equal(zgw_hostport_parse(&hp, "rabbit:12:junk", 9, 5672, NULL,
                                        &errs),
                     ZGW_OK);
    assert_string_equal(hp.host, "rabbit");
    assert_int_equal(hp.port, 12);

    zgw_errors_free(&errs);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_hostport_cases),
        cmocka_unit_test(test_messages_name_the_field),
        cmocka_unit_test(test_text_need_not_be_nul_ended),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
