/*
 * Unit tests: zmqd's STOMP 1.2 frame reader and writer
 * (src/zmqd/zmqd_stomp_frame.c, included: it needs only libc). Each
 * hostile case is bytes a broker might send and the error they must give;
 * a good frame is read whole whatever the split of its bytes.
 */

#include "zgw_test_util.h"

#include "../../src/zmqd/zmqd_stomp_frame.c"


typedef struct {
    const char  *what;
    const char  *bytes;
    size_t       len;
    const char  *error;
} hostile_t;


#define S(s)  s, sizeof(s) - 1

static const hostile_t  hostile[] = {
    { "bad escape", S("MESSAGE\nk:a\\tb\n\n\0"), "escape" },
    { "trailing backslash", S("MESSAGE\nk:a\\\n\n\0"), "escape" },
    { "escape in a name", S("MESSAGE\nk\\x:v\n\n\0"), "escape" },
    { "no colon", S("MESSAGE\nnocolon\n\n\0"), "not name:value" },
    { "empty name", S("MESSAGE\n:v\n\n\0"), "not name:value" },
    { "lowercase", S("message\n\n\0"), "capital letters" },
    { "long command", S("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n\n\0"),
      "capital letters" },
    { "length letters", S("MESSAGE\ncontent-length:1a\n\nx\0"),
      "not a number" },
    { "length negative", S("MESSAGE\ncontent-length:-1\n\nx\0"),
      "not a number" },
    { "length empty", S("MESSAGE\ncontent-length:\n\nx\0"), "not a number" },
    { "length huge", S("MESSAGE\ncontent-length:16777217\n\n"),
      "not a number" },
    { "no NUL after length", S("MESSAGE\ncontent-length:1\n\nxy\0"),
      "no NUL" },
    { "NUL in head", S("MESSAGE\nk:v\0\n\nx\0"), "NUL byte" },
    { "NUL command", S("\0"), "NUL byte" },
};


static void
test_hostile_frames(void **state)
{
    int                  rc;
    char                 err[256];
    size_t               i, used;
    zmqd_stomp_frame_t   f;

    (void) state;

    for (i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        err[0] = '\0';
        rc = zmqd_stomp_parse(hostile[i].bytes, hostile[i].len, 1, &f,
                              &used, err, sizeof(err));
        if (rc != ZMQD_STOMP_BAD || strstr(err, hostile[i].error) == NULL) {
            print_message("case '%s': rc %d, error '%s'\n", hostile[i].what,
                          rc, err);
        }
        assert_int_equal(rc, ZMQD_STOMP_BAD);
        assert_non_null(strstr(err, hostile[i].error));
        assert_null(f.mem);
        assert_null(f.body);
    }
}


static void
test_limits(void **state)
{
    int                  rc;
    char                *b, err[256];
    size_t               used, n;
    zmqd_stomp_frame_t   f;

    (void) state;

    /* a head over the limit, with no end in sight */
    n = ZMQD_STOMP_HEAD_MAX + 10;
    b = malloc(n);
    assert_non_null(b);
    memcpy(b, "MESSAGE\nk:", 10);
    memset(b + 10, 'v', n - 10);
    rc = zmqd_stomp_parse(b, n, 1, &f, &used, err, sizeof(err));
    assert_int_equal(rc, ZMQD_STOMP_BAD);
    assert_non_null(strstr(err, "over 65536"));
    free(b);

    /* too many headers */
    b = malloc(16 * (ZMQD_STOMP_HEADERS_MAX + 2) + 32);
    assert_non_null(b);
    n = (size_t) sprintf(b, "MESSAGE\n");
    for (rc = 0; rc <= ZMQD_STOMP_HEADERS_MAX; rc++) {
        n += (size_t) sprintf(b + n, "h%d:v\n", rc);
    }
    memcpy(b + n, "\n\0", 2);
    n += 2;
    rc = zmqd_stomp_parse(b, n, 1, &f, &used, err, sizeof(err));
    assert_int_equal(rc, ZMQD_STOMP_BAD);
    assert_non_null(strstr(err, "more than 128 headers"));
    free(b);

    /* a body without content-length or NUL past the limit */
    n = ZMQD_STOMP_BODY_MAX + 20;
    b = malloc(n);
    assert_non_null(b);
    memcpy(b, "MESSAGE\n\n", 9);
    memset(b + 9, 'x', n - 9);
    rc = zmqd_stomp_parse(b, n, 1, &f, &used, err, sizeof(err));
    assert_int_equal(rc, ZMQD_STOMP_BAD);
    assert_non_null(strstr(err, "a body over"));
    free(b);
}


static const char  good[] =
    "\n\r\nMESSAGE\r\n"
    "destination:/queue/a\\cb\n"
    "k:v1\n"
    "k:v2\n"
    "esc:a\\\\b\\nc\\rd\\ce\n"
    "content-length:5\n"
    "\n"
    "a\0b\0c\0"
    "\n";


/* every split of a good frame: MORE until whole, then the same frame */
static void
test_good_frame_any_split(void **state)
{
    int                  rc;
    char                 err[256];
    size_t               cut, used, len;
    zmqd_stomp_frame_t   f;

    (void) state;

    len = sizeof(good) - 1;

    for (cut = 0; cut < len; cut++) {
        rc = zmqd_stomp_parse(good, cut, 1, &f, &used, err, sizeof(err));
        if (cut < len - 1) {
            assert_int_equal(rc, ZMQD_STOMP_MORE);
            assert_true(used <= 3);            /* only the EOLs */
            continue;
        }

        /* all but the optional EOL after the NUL: already the frame */
        assert_int_equal(rc, ZMQD_STOMP_FRAME);
        zmqd_stomp_frame_free(&f);
    }

    rc = zmqd_stomp_parse(good, len, 1, &f, &used, err, sizeof(err));
    assert_int_equal(rc, ZMQD_STOMP_FRAME);
    assert_int_equal(used, len - 1);           /* the last EOL waits */
    assert_string_equal(f.command, "MESSAGE");
    assert_string_equal(zmqd_stomp_get(&f, "destination"), "/queue/a:b");
    assert_string_equal(zmqd_stomp_get(&f, "k"), "v1");   /* first wins */
    assert_string_equal(zmqd_stomp_get(&f, "esc"), "a\\b\nc\rd:e");
    assert_null(zmqd_stomp_get(&f, "missing"));
    assert_int_equal(f.len, 5);
    assert_memory_equal(f.body, "a\0b\0c", 5);
    assert_true(f.has_length);
    zmqd_stomp_frame_free(&f);

    /* without content-length: up to the NUL; CONNECTED is not unescaped */
    rc = zmqd_stomp_parse(S("CONNECTED\nversion:1.2\nserver:x\\y\n\nhi\0"),
                          0, &f, &used, err, sizeof(err));
    assert_int_equal(rc, ZMQD_STOMP_FRAME);
    assert_string_equal(zmqd_stomp_get(&f, "server"), "x\\y");
    assert_int_equal(f.len, 2);
    assert_false(f.has_length);
    zmqd_stomp_frame_free(&f);

    /* "\n\r\n" ends a head too; a frame with no headers */
    rc = zmqd_stomp_parse(S("RECEIPT\r\n\r\n\0"), 1, &f, &used, err,
                          sizeof(err));
    assert_int_equal(rc, ZMQD_STOMP_FRAME);
    assert_string_equal(f.command, "RECEIPT");
    assert_int_equal(f.nheaders, 0);
    zmqd_stomp_frame_free(&f);
}


/* what is written is read back the same, escapes included */
static void
test_write_read_back(void **state)
{
    int                  rc;
    char                 err[256];
    size_t               used;
    zmqd_stomp_out_t     o;
    zmqd_stomp_frame_t   f;

    (void) state;

    memset(&o, 0, sizeof(o));
    zmqd_stomp_out_command(&o, "SEND");
    zmqd_stomp_out_header(&o, "destination", "/queue/x", 0);
    zmqd_stomp_out_header(&o, "we:ird\\", "a:b\nc\rd\\", 0);
    zmqd_stomp_out_body(&o, "x\0y", 3, 1);
    assert_false(o.failed);

    rc = zmqd_stomp_parse(o.data, o.len, 1, &f, &used, err, sizeof(err));
    assert_int_equal(rc, ZMQD_STOMP_FRAME);
    assert_int_equal(used, o.len);
    assert_string_equal(zmqd_stomp_get(&f, "we:ird\\"), "a:b\nc\rd\\");
    assert_string_equal(zmqd_stomp_get(&f, "content-length"), "3");
    assert_memory_equal(f.body, "x\0y", 3);
    zmqd_stomp_frame_free(&f);
    zmqd_stomp_out_free(&o);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_hostile_frames),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_good_frame_any_split),
        cmocka_unit_test(test_write_read_back),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
