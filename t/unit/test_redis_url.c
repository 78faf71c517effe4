/*
 * Unit tests: Redis URLs (zgw_redis_addr_parse) and URLs as they are shown
 * (zgw_url_redact). Data-driven: each case is a URL and what it must give.
 */

#include "zgw_test_util.h"

#include "zgw_redis_url.h"


/* the password of every case that has one contains this */
#define PW  "S3cr3tPW"


typedef struct {
    const char  *url;
    const char  *host;
    int          port;
    int          db;
    const char  *username;
    const char  *password;
    int          has_password;
    int          ipv6;
} good_case_t;


static const good_case_t  good[] = {
    { "redis://127.0.0.1:6379/0", "127.0.0.1", 6379, 0, "", "", 0, 0 },
    { "redis://localhost", "localhost", 6379, 0, "", "", 0, 0 },
    { "redis://localhost/", "localhost", 6379, 0, "", "", 0, 0 },
    { "redis://h:6379", "h", 6379, 0, "", "", 0, 0 },
    { "redis://h:7000/3", "h", 7000, 3, "", "", 0, 0 },
    { "redis://my_host.example-1.com:1/65535", "my_host.example-1.com", 1,
      65535, "", "", 0, 0 },
    { "REDIS://h/2", "h", 6379, 2, "", "", 0, 0 },
    { "127.0.0.1:7000", "127.0.0.1", 7000, 0, "", "", 0, 0 },
    { "h", "h", 6379, 0, "", "", 0, 0 },
    { ":" PW "@h:7/1", "h", 7, 1, "", PW, 1, 0 },

    /* passwords: old form ':password@' */
    { "redis://:" PW "@h", "h", 6379, 0, "", PW, 1, 0 },
    { "redis://:" PW "/x@h:1/2", "h", 1, 2, "", PW "/x", 1, 0 },
    { "redis://:a/b/c@h/4", "h", 6379, 4, "", "a/b/c", 1, 0 },
    { "redis://:" PW "@x@h/1", "h", 6379, 1, "", PW "@x", 1, 0 },
    { "redis://:@@@h", "h", 6379, 0, "", "@@", 1, 0 },
    { "redis://:" PW ":a:b@h", "h", 6379, 0, "", PW ":a:b", 1, 0 },
    { "redis://:" PW "%2Fx@h", "h", 6379, 0, "", PW "/x", 1, 0 },
    { "redis://:" PW "%2fx@h", "h", 6379, 0, "", PW "/x", 1, 0 },
    { "redis://:" PW "%40x@h", "h", 6379, 0, "", PW "@x", 1, 0 },
    { "redis://:100%25@h", "h", 6379, 0, "", "100%", 1, 0 },
    { "redis://:%3A%2F%40%25%20@h", "h", 6379, 0, "", ":/@% ", 1, 0 },
    { "redis://:p%C3%A4ss@h", "h", 6379, 0, "", "p\xc3\xa4ss", 1, 0 },
    { "redis://:@h", "h", 6379, 0, "", "", 1, 0 },

    /* Redis 6 ACL users: 'user:password@' */
    { "redis://app:" PW "@h:6380/4", "h", 6380, 4, "app", PW, 1, 0 },
    { "redis://app:p/@:%25x@h", "h", 6379, 0, "app", "p/@:%x", 1, 0 },
    { "redis://us%40er:" PW "@h", "h", 6379, 0, "us@er", PW, 1, 0 },
    { "redis://us%3Aer:" PW "@h", "h", 6379, 0, "us:er", PW, 1, 0 },
    { "redis://app@h", "h", 6379, 0, "app", "", 0, 0 },
    { "redis://app:@h", "h", 6379, 0, "app", "", 1, 0 },

    /* IPv6 */
    { "redis://[::1]:6390/2", "::1", 6390, 2, "", "", 0, 1 },
    { "redis://[::1]", "::1", 6379, 0, "", "", 0, 1 },
    { "redis://[::1]/5", "::1", 6379, 5, "", "", 0, 1 },
    { "redis://u:" PW "@[2001:db8::1]:7/1", "2001:db8::1", 7, 1, "u", PW,
      1, 1 },

    { NULL, NULL, 0, 0, NULL, NULL, 0, 0 }
};


typedef struct {
    const char  *url;
    const char  *error;
} bad_case_t;


static const bad_case_t  bad[] = {
    /* port */
    { "redis://:" PW "@h:0/0", "port 0 is out of range 1-65535" },
    { "redis://h:70000", "port 70000 is out of range 1-65535" },
    { "redis://h:99999999999999", "is out of range 1-65535" },
    { "redis://:" PW "@h:abc/1", "the port must be a number" },
    { "redis://h:-1", "the port must be a number" },
    { "redis://h:", "no port after ':'" },

    /* db */
    { "redis://:" PW "@h/x", "the database must be a number 0-65535" },
    { "redis://h/-1", "the database must be a number" },
    { "redis://h/65536", "the database must be a number" },
    { "redis://h/99999999999", "the database must be a number" },

    /* trailing garbage */
    { "redis://:" PW "@h/1/2", "only a query ('?') may follow it" },
    { "redis://h/0x", "only a query ('?') may follow it" },
    { "redis://h/0/", "only a query ('?') may follow it" },
    { "redis://:" PW "@h/0?db=1", "TLS options, which need rediss://" },
    { "redis://h?password=x", "TLS options, which need rediss://" },
    { "redis://h#f", "a fragment ('#') is not supported" },
    { "rediss://h/0?verify=1#f", "a fragment" },
    { "redis://:" PW "@h/0 ", "white space or a control character" },
    { "redis://:" PW " x@h", "white space or a control character" },
    { "redis://h/0\n", "white space or a control character" },

    /* host */
    { "redis://", "no host" },
    { "redis://:" PW "@", "no host" },
    { "redis://:" PW "@/0", "no host" },
    { "redis://:" PW "@:6379/0", "no host" },
    { "redis://h!x", "'!' is not allowed in a host name" },
    { "redis://::1:6379", "must be written in brackets" },
    { "redis://[::1", "'[' without a closing ']'" },
    { "redis://[]:1", "no IPv6 address between" },
    { "redis://[zz::1]", "is not an IPv6 address" },
    { "redis://[::1]x", "after ']' only ':port' may follow" },

    /* scheme */
    { "http://h", "only redis:// and rediss:// are supported" },
    { "unix:///tmp/redis.sock", "only redis:// and rediss://" },
    { "rediss://h/0?verify=maybe", "verify must be 1 or 0" },
    { "rediss://h/0?ca_file=", "ca_file is empty" },
    { "rediss://h/0?cert_file=/c.pem", "cert_file and key_file go together" },
    { "rediss://h/0?key_file=/k.pem", "cert_file and key_file go together" },
    { "rediss://h/0?sni=x", "unknown option 'sni'" },
    { "rediss://h/0?verify", "name=value pairs" },
    { "rediss://h/0?=1", "name=value pairs" },
    { "rediss://h/0?server_name=a%2Fb", "server_name must be a host name" },
    { "rediss://h/0?ca_file=%zz", "the value of 'ca_file' has a '%'" },
    { "rediss://h/0?ca_file=%00", "the value of 'ca_file' contains %00" },
    { "rediss://:" PW "@h/x?verify=0", "the database must be a number" },

    /* escapes and credentials */
    { "redis://:" PW "%zz@h", "the password has a '%' that is not followed" },
    { "redis://:" PW "%@h", "the password has a '%' that is not followed" },
    { "redis://:" PW "%4@h", "the password has a '%' that is not followed" },
    { "redis://:" PW "%00@h", "the password contains %00" },
    { "redis://a%zz:" PW "@h", "the user name has a '%'" },
    { "redis://a/b:" PW "@h", "the user name contains '/'" },
    { "redis://h/0?x=a@b", "the user name contains '/'" },

    { NULL, NULL }
};


static void
test_good_urls(void **state)
{
    zgw_errors_t              errs;
    zgw_redis_addr_t          a;
    const good_case_t        *c;

    (void) state;

    for (c = good; c->url; c++) {
        zgw_errors_init(&errs);

        if (zgw_redis_addr_parse(&a, c->url, &errs) != ZGW_OK) {
            print_message("%s\n", c->url);
            zgw_test_print_errors(&errs);
            fail();
        }

        if (strcmp(a.host, c->host) != 0 || a.port != c->port
            || a.db != c->db || strcmp(a.username, c->username) != 0
            || strcmp(a.password, c->password) != 0
            || a.has_password != c->has_password || a.ipv6 != c->ipv6)
        {
            print_message("%s: host '%s' port %d db %d user '%s' "
                          "password '%s' (%d) ipv6 %d\n", c->url, a.host,
                          a.port, a.db, a.username, a.password,
                          a.has_password, a.ipv6);
            fail();
        }

        zgw_errors_free(&errs);
    }
}


static void
test_bad_urls(void **state)
{
    zgw_errors_t         errs;
    zgw_redis_addr_t     a;
    const bad_case_t    *c;

    (void) state;

    for (c = bad; c->url; c++) {
        zgw_errors_init(&errs);

        if (zgw_redis_addr_parse(&a, c->url, &errs) != ZGW_ERROR
            || errs.n != 1 || !zgw_test_errors_have(&errs, c->error))
        {
            print_message("%s: expected '%s'\n", c->url, c->error);
            zgw_test_print_errors(&errs);
            fail();
        }

        /* the message names the problem, never the password */
        if (strstr(errs.msgs[0], PW) != NULL
            || !zgw_test_errors_have(&errs, "redis address '"))
        {
            print_message("%s: the error shows the password: %s\n", c->url,
                          errs.msgs[0]);
            fail();
        }

        /* nothing of a refused URL is left behind */
        assert_string_equal(a.password, "");
        assert_string_equal(a.host, "");

        zgw_errors_free(&errs);
    }
}


static void
test_tls_options(void **state)
{
    char               url[4000];
    zgw_errors_t       errs;
    zgw_redis_addr_t   a;

    (void) state;
    zgw_errors_init(&errs);

    /* redis:// is plain text, rediss:// verifies by default */
    assert_int_equal(zgw_redis_addr_parse(&a, "redis://h/1", &errs), ZGW_OK);
    assert_int_equal(a.tls, 0);

    assert_int_equal(zgw_redis_addr_parse(&a, "REDISS://:" PW "@h:6380/2",
                                          &errs), ZGW_OK);
    assert_int_equal(a.tls, 1);
    assert_int_equal(a.verify, 1);
    assert_int_equal(a.port, 6380);
    assert_int_equal(a.db, 2);
    assert_string_equal(a.password, PW);
    assert_string_equal(a.ca_file, "");
    assert_string_equal(a.server_name, "");

    /* every option, percent-decoded; the db may be left out */
    assert_int_equal(zgw_redis_addr_parse(&a,
        "rediss://u:" PW "@h?ca_file=/etc/ca%20dir/ca.pem&verify=0"
        "&server_name=redis.example&cert_file=/c%40x.pem&key_file=/k.pem",
        &errs), ZGW_OK);
    assert_int_equal(a.db, 0);
    assert_int_equal(a.verify, 0);
    assert_string_equal(a.ca_file, "/etc/ca dir/ca.pem");
    assert_string_equal(a.server_name, "redis.example");
    assert_string_equal(a.cert_file, "/c@x.pem");
    assert_string_equal(a.key_file, "/k.pem");
    assert_string_equal(a.username, "u");
    assert_string_equal(a.password, PW);

    assert_int_equal(zgw_redis_addr_parse(&a, "rediss://h/3?verify=true",
                                          &errs), ZGW_OK);
    assert_int_equal(a.verify, 1);
    assert_int_equal(a.db, 3);

    /* an empty query and trailing '&' are harmless */
    assert_int_equal(zgw_redis_addr_parse(&a, "rediss://h/0?", &errs),
                     ZGW_OK);
    assert_int_equal(zgw_redis_addr_parse(&a, "rediss://h/0?verify=0&",
                                          &errs), ZGW_OK);

    /* a path of 1023 bytes fits, 1024 does not */
    snprintf(url, sizeof(url), "rediss://h/0?ca_file=%01023d", 0);
    assert_int_equal(zgw_redis_addr_parse(&a, url, &errs), ZGW_OK);
    assert_int_equal(strlen(a.ca_file), 1023);
    snprintf(url, sizeof(url), "rediss://h/0?ca_file=%01024d", 0);
    assert_int_equal(zgw_redis_addr_parse(&a, url, &errs), ZGW_ERROR);
    assert_true(zgw_test_errors_have(&errs, "is too long"));

    zgw_errors_free(&errs);
}


static void
test_sentinel(void **state)
{
    char               url[600];
    zgw_errors_t       errs;
    zgw_redis_addr_t   a;

    (void) state;
    zgw_errors_init(&errs);

    /* refused unless the caller takes it */
    assert_int_equal(zgw_redis_addr_parse(&a, "redis-sentinel://h/m",
                                          &errs), ZGW_ERROR);
    assert_true(zgw_test_errors_have(&errs, "redis-sentinel:// is not "
                                            "supported here"));
    zgw_errors_free(&errs);
    zgw_errors_init(&errs);

    assert_int_equal(zgw_redis_addr_parse_ex(&a,
        "redis-sentinel://u:" PW "@s1,s2:26380,[::1]:7/mymaster/3",
        ZGW_REDIS_SENTINEL, &errs), ZGW_OK);
    assert_int_equal(a.sentinel, 1);
    assert_int_equal(a.nsentinels, 3);
    assert_string_equal(a.sentinels[0].host, "s1");
    assert_int_equal(a.sentinels[0].port, 26379);
    assert_string_equal(a.sentinels[1].host, "s2");
    assert_int_equal(a.sentinels[1].port, 26380);
    assert_string_equal(a.sentinels[2].host, "::1");
    assert_int_equal(a.sentinels[2].ipv6, 1);
    assert_int_equal(a.sentinels[2].port, 7);
    assert_string_equal(a.master_name, "mymaster");
    assert_int_equal(a.db, 3);
    assert_string_equal(a.username, "u");
    assert_string_equal(a.password, PW);
    assert_string_equal(a.host, "s1");
    assert_int_equal(a.tls, 0);

    assert_int_equal(zgw_redis_addr_parse_ex(&a,
        "redis-sentinel://127.0.0.1:5000/m-1.x_y", ZGW_REDIS_SENTINEL,
        &errs), ZGW_OK);
    assert_int_equal(a.db, 0);
    assert_int_equal(a.nsentinels, 1);

    /* 8 sentinels fit, 9 do not */
    strcpy(url, "redis-sentinel://a,a,a,a,a,a,a,a/m");
    assert_int_equal(zgw_redis_addr_parse_ex(&a, url, ZGW_REDIS_SENTINEL,
                                             &errs), ZGW_OK);
    strcpy(url, "redis-sentinel://a,a,a,a,a,a,a,a,a/m");
    assert_int_equal(zgw_redis_addr_parse_ex(&a, url, ZGW_REDIS_SENTINEL,
                                             &errs), ZGW_ERROR);
    assert_true(zgw_test_errors_have(&errs, "more than 8 sentinels"));

    {
        static const bad_case_t  sbad[] = {
            { "redis-sentinel://h", "the master's name is missing" },
            { "redis-sentinel://h/", "the master's name must be" },
            { "redis-sentinel://h//0", "the master's name must be" },
            { "redis-sentinel://h/m!x", "the master's name must be" },
            { "redis-sentinel://h,,g/m", "an empty sentinel address" },
            { "redis-sentinel://,h/m", "an empty sentinel address" },
            { "redis-sentinel://h,/m", "an empty sentinel address" },
            { "redis-sentinel://h:0/m", "out of range" },
            { "redis-sentinel://h/m/x", "the database must be a number" },
            { "redis-sentinel://h/m/1/2", "the database must be a number" },
            { "redis-sentinel://h/m?x=1", "a query or a fragment" },
            { "redis-sentinel://:" PW "@h/m#f", "a query or a fragment" },
            { "redis-sentinel://:" PW "@/m", "an empty sentinel address" },
            { "foo://h/m", "only redis://, rediss:// and redis-sentinel://" },
            { NULL, NULL }
        };
        const bad_case_t  *c;

        for (c = sbad; c->url; c++) {
            zgw_errors_free(&errs);
            zgw_errors_init(&errs);
            if (zgw_redis_addr_parse_ex(&a, c->url, ZGW_REDIS_SENTINEL,
                                        &errs) != ZGW_ERROR
                || !zgw_test_errors_have(&errs, c->error)
                || strstr(errs.msgs[0], PW) != NULL)
            {
                print_message("%s: expected '%s'\n", c->url, c->error);
                zgw_test_print_errors(&errs);
                fail();
            }
            assert_string_equal(a.password, "");
        }
    }

    zgw_errors_free(&errs);
}


static void
test_long_credentials(void **state)
{
    char               url[1200];
    zgw_errors_t       errs;
    zgw_redis_addr_t   a;

    (void) state;
    zgw_errors_init(&errs);

    /* 255 bytes decoded fit, 256 do not */
    snprintf(url, sizeof(url), "redis://:%0255d@h", 0);
    assert_int_equal(zgw_redis_addr_parse(&a, url, &errs), ZGW_OK);
    assert_int_equal(strlen(a.password), 255);

    snprintf(url, sizeof(url), "redis://:%0256d@h", 0);
    assert_int_equal(zgw_redis_addr_parse(&a, url, &errs), ZGW_ERROR);
    assert_true(zgw_test_errors_have(&errs, "the password is longer than "
                                            "255 bytes"));

    snprintf(url, sizeof(url), "redis://%0256d:x@h", 0);
    assert_int_equal(zgw_redis_addr_parse(&a, url, &errs), ZGW_ERROR);
    assert_true(zgw_test_errors_have(&errs, "the user name is longer"));

    /* %xx counts once */
    strcpy(url, "redis://:");
    while (strlen(url) < 9 + 255 * 3) {
        strcat(url, "%41");
    }
    strcat(url, "@h");
    assert_int_equal(zgw_redis_addr_parse(&a, url, &errs), ZGW_OK);
    assert_int_equal(strlen(a.password), 255);

    zgw_errors_free(&errs);
}


typedef struct {
    const char  *url;
    const char  *shown;
} redact_case_t;


static const redact_case_t  redact[] = {
    { "redis://:" PW "@h:1/0", "redis://:***@h:1/0" },
    { "redis://app:" PW "@h:6379/2", "redis://app:***@h:6379/2" },
    { "redis://app:" PW "/@:%25@[::1]:1/2", "redis://app:***@[::1]:1/2" },
    { "redis://:" PW "@x@h", "redis://:***@h" },
    { "redis://:@h", "redis://:***@h" },
    { "redis://app@h/1", "redis://app@h/1" },
    { "redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0" },
    { "http://u:" PW "@h/p", "http://u:***@h/p" },
    { "https://h:8443/path", "https://h:8443/path" },
    { ":" PW "@h", ":***@h" },
    { ":a://" PW "@h", ":***@h" },
    { "u:" PW "@h:6379", "u:***@h:6379" },
    { "file:/etc/zmq.json", "file:/etc/zmq.json" },
    { "h:6379", "h:6379" },
    { "redis://:" PW "\n@h", "redis://:***@h" },
    { "redis://h/\x01\x7f", "redis://h/??" },
    { "", "" },
    { NULL, NULL }
};


static void
test_redact(void **state)
{
    char                  out[ZGW_URL_SHOW_MAX];
    size_t                size;
    const char           *url;
    const redact_case_t  *c;

    (void) state;

    for (c = redact; c->url; c++) {
        assert_ptr_equal(zgw_url_redact(c->url, out, sizeof(out)), out);
        if (strcmp(out, c->shown) != 0) {
            print_message("%s: shown as '%s', expected '%s'\n", c->url, out,
                          c->shown);
            fail();
        }
    }

    assert_string_equal(zgw_url_redact(NULL, out, sizeof(out)), "");

    /* a cut result never shows a byte of the password */
    url = "redis://user:" PW "@host:6379/0";
    for (size = 1; size < strlen(url) + 2; size++) {
        memset(out, 'Z', sizeof(out));
        zgw_url_redact(url, out, size);
        assert_true(strlen(out) < size);
        assert_null(strstr(out, "S3"));
        assert_null(strchr(out, 'Z'));
    }

    /* len bytes, not NUL-ended */
    zgw_url_redact_len("redis://:" PW "@h/1trailing",
                       strlen("redis://:" PW "@h/1"), out, sizeof(out));
    assert_string_equal(out, "redis://:***@h/1");
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_good_urls),
        cmocka_unit_test(test_bad_urls),
        cmocka_unit_test(test_tls_options),
        cmocka_unit_test(test_sentinel),
        cmocka_unit_test(test_long_credentials),
        cmocka_unit_test(test_redact),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
