/*
 * Unit tests: credentials never live in a url field of an object (they
 * would be stored in Redis and shown by get and export in clear), a redis
 * service's password is a sealed secret like every other, and no message
 * about a url shows its password.
 */

#include "zgw_test_util.h"

#include "zgw_crypto.h"
#include "zgw_model.h"


#define PW  "S3cr3tPW"


typedef struct {
    const char  *title;
    const char  *doc;
    const char  *error;     /* a substring of some error, or NULL: valid */
} url_case_t;


#define HTTP(url) \
    "{\"http_outconn\":[{\"name\":\"h\",\"url\":\"" url "\"}]}"
#define REDIS(fields) \
    "{\"service\":[{\"name\":\"r\",\"kind\":\"redis\",\"key\":\"k\"" \
    fields "}]}"


static const url_case_t  cases[] = {

    /* http_outconn: credentials go in a security definition */
    { "http_outconn: user:password@ is refused",
      HTTP("https://u:" PW "@api.example.com/x"), "holds credentials" },
    { "http_outconn: user@ is refused",
      HTTP("https://u@api.example.com/x"), "holds credentials" },
    { "http_outconn: a password with '/' does not show in the error",
      HTTP("http://u:" PW "/x@api.example.com/"), "has no valid host" },
    { "http_outconn: a wrong scheme shows the url redacted",
      HTTP("ftp://u:" PW "@h/"), "url 'ftp://u:***@h/' must start with" },
    { "http_outconn: white space shows the url redacted",
      HTTP("http://u:" PW "@h/ x"), "url 'http://u:***@h/ x' contains" },
    { "http_outconn: an '@' in the path is no credential",
      HTTP("http://h/users/@me"), NULL },
    { "http_outconn: an '@' in the query is no credential",
      HTTP("http://h:8080/p?mail=a@b.c"), NULL },

    /* redis service: the url holds no password, the sealed field does */
    { "redis: ':password@' in the url is refused",
      REDIS(",\"url\":\"redis://:" PW "@h/1\""), "holds a password" },
    { "redis: 'user:password@' in the url is refused",
      REDIS(",\"url\":\"redis://app:" PW "@h/1\""),
      "url 'redis://app:***@h/1' holds a password" },
    { "redis: an empty password in the url is refused",
      REDIS(",\"url\":\"redis://app:@h/1\""), "holds a password" },
    { "redis: a user in the url and the password sealed",
      REDIS(",\"url\":\"redis://app@h:6380/2\",\"password\":\"" PW "\""),
      NULL },
    { "redis: the password alone",
      REDIS(",\"url\":\"redis://[::1]\",\"password\":\"" PW "\""), NULL },
    { "redis: the password in its stored form",
      REDIS(",\"url\":\"redis://h\",\"password\":{\"$sealed\":\"AQ==\"}"),
      NULL },
    { "redis: a password needs a url",
      REDIS(",\"password\":\"" PW "\""), "password is the password of url" },
    { "redis: the password is a non-empty string",
      REDIS(",\"url\":\"redis://h\",\"password\":\"\""),
      "secret 'password' must be a non-empty string" },
    { "redis: the url is parsed whole",
      REDIS(",\"url\":\"redis://h/x\""),
      "url: redis address 'redis://h/x': the database must be a number" },
    { "redis: a bad port shows the url redacted",
      REDIS(",\"url\":\"redis://:" PW "@h:0/1\""),
      "redis address 'redis://:***@h:0/1': host 'h:0': port 0 is out of" },
    { "redis: another scheme",
      REDIS(",\"url\":\"http://u:" PW "@h\""),
      "url 'http://u:***@h' must start with redis://" },
    { "redis: no url: zmqd's configuration Redis", REDIS(""), NULL },

    { NULL, NULL, NULL }
};


static void
test_url_cases(void **state)
{
    int            rc, failed;
    size_t         i;
    zgw_errors_t   errs;
    zgw_config_t  *cfg;
    const url_case_t  *c;

    (void) state;
    failed = 0;

    for (c = cases; c->title; c++) {
        cfg = zgw_config_new();
        zgw_errors_init(&errs);

        rc = zgw_config_load_text(cfg, c->doc, strlen(c->doc), "t.json", 0,
                                  &errs);

        if (c->error == NULL && (rc != ZGW_OK || errs.n)) {
            print_message("FAIL: %s: expected valid\n", c->title);
            zgw_test_print_errors(&errs);
            failed++;

        } else if (c->error != NULL
                   && (rc == ZGW_OK
                       || !zgw_test_errors_have(&errs, c->error)))
        {
            print_message("FAIL: %s: expected \"%s\"\n", c->title,
                          c->error);
            zgw_test_print_errors(&errs);
            failed++;
        }

        for (i = 0; i < errs.n; i++) {
            if (strstr(errs.msgs[i], PW) != NULL) {
                print_message("FAIL: %s: the error shows the password: "
                              "%s\n", c->title, errs.msgs[i]);
                failed++;
            }
        }

        zgw_errors_free(&errs);
        zgw_config_free(cfg);
    }

    assert_int_equal(failed, 0);
}


static zgw_config_t *
load(const char *doc)
{
    zgw_errors_t   errs;
    zgw_config_t  *cfg;

    cfg = zgw_config_new();
    zgw_errors_init(&errs);
    if (zgw_config_load_text(cfg, doc, strlen(doc), NULL, 0, &errs)
        != ZGW_OK)
    {
        zgw_test_print_errors(&errs);
        fail();
    }
    zgw_errors_free(&errs);
    return cfg;
}


static void
test_redis_password_is_sealed(void **state)
{
    char          *text, *plain;
    json_t        *obj, *shown;
    zgw_key_t      key, other;
    zgw_errors_t   errs;
    zgw_config_t  *cfg, *again;

    (void) state;
    memset(key.bytes, 7, sizeof(key.bytes));
    memset(other.bytes, 8, sizeof(other.bytes));
    zgw_errors_init(&errs);

    cfg = load(REDIS(",\"url\":\"redis://app@h/1\",\"password\":\"" PW
                     "\""));
    assert_true(zgw_config_needs_key(cfg, NULL));
    assert_int_equal(zgw_config_seal(cfg, NULL, &key, &errs), ZGW_OK);

    /* what is stored: sealed, the password nowhere in clear */
    obj = zgw_config_get(cfg, ZGW_KIND_SERVICE, "r");
    assert_non_null(json_object_get(json_object_get(obj, "password"),
                                    "$sealed"));
    text = zgw_object_dump(ZGW_KIND_SERVICE, obj);
    assert_null(strstr(text, PW));
    assert_non_null(strstr(text, "redis://app@h/1"));
    free(text);

    /* it opens with the key, for this object only */
    plain = zgw_object_secret(ZGW_KIND_SERVICE, obj, "password", &key,
                              &errs);
    assert_string_equal(plain, PW);
    free(plain);
    assert_null(zgw_object_secret(ZGW_KIND_SERVICE, obj, "password", &other,
                                  &errs));

    /* without a key: an error, not a crash */
    zgw_errors_clear(&errs);
    assert_null(zgw_object_secret(ZGW_KIND_SERVICE, obj, "password", NULL,
                                  &errs));
    assert_true(zgw_test_errors_have(&errs, "no key file"));

    /* get and export leave it out */
    shown = zgw_object_export(ZGW_KIND_SERVICE, obj, 0);
    assert_null(json_object_get(shown, "password"));
    json_decref(shown);

    /* importing the export keeps the stored password */
    again = load(REDIS(",\"url\":\"redis://app@h/1\""));
    assert_false(zgw_config_needs_key(again, cfg));
    assert_int_equal(zgw_config_seal(again, cfg, NULL, &errs), ZGW_OK);
    assert_true(json_equal(json_object_get(zgw_config_get(again,
                                               ZGW_KIND_SERVICE, "r"),
                                           "password"),
                           json_object_get(obj, "password")));

    zgw_config_free(again);
    zgw_config_free(cfg);
    zgw_errors_free(&errs);
}


static void
test_no_password_stays_none(void **state)
{
    json_t        *obj;
    zgw_errors_t   errs;
    zgw_config_t  *cfg;

    (void) state;
    zgw_errors_init(&errs);

    /* unlike a broker password, an absent one is not made up */
    cfg = load(REDIS(",\"url\":\"redis://h/1\""));
    assert_false(zgw_config_needs_key(cfg, NULL));
    assert_int_equal(zgw_config_seal(cfg, NULL, NULL, &errs), ZGW_OK);

    obj = zgw_config_get(cfg, ZGW_KIND_SERVICE, "r");
    assert_null(json_object_get(obj, "password"));

    zgw_config_free(cfg);
    zgw_errors_free(&errs);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_url_cases),
        cmocka_unit_test(test_redis_password_is_sealed),
        cmocka_unit_test(test_no_password_stays_none),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
