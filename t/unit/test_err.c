/*
 * Unit tests: zgw_printable(), the one "printable ASCII" test behind
 * zgw_show(), the store's refused messages and the fleet's text fields.
 */

#include "zgw_test_util.h"


/* every byte: printable exactly from ' ' (0x20) to '~' (0x7e) */
static void
test_printable_every_byte(void **state)
{
    unsigned  c;

    (void) state;

    for (c = 0; c < 256; c++) {
        assert_int_equal(zgw_printable((unsigned char) c),
                         c >= 0x20 && c <= 0x7e);
    }
}


/* a plain char, signed here, converts: the bytes >= 0x80 are not */
static void
test_printable_from_char(void **state)
{
    const char  *s = "a \t\r\n\x1b\x7f\xc3\xa9~";

    (void) state;

    assert_true(zgw_printable(s[0]));
    assert_true(zgw_printable(s[1]));
    assert_false(zgw_printable(s[2]));
    assert_false(zgw_printable(s[3]));
    assert_false(zgw_printable(s[4]));
    assert_false(zgw_printable(s[5]));
    assert_false(zgw_printable(s[6]));
    assert_false(zgw_printable(s[7]));
    assert_false(zgw_printable(s[8]));
    assert_true(zgw_printable(s[9]));
    assert_false(zgw_printable('\0'));
}


/* zgw_show() keeps exactly the bytes zgw_printable() takes */
static void
test_show_agrees(void **state)
{
    char      in[1], out[ZGW_SHOW_SIZE];
    unsigned  c;

    (void) state;

    for (c = 0; c < 256; c++) {
        in[0] = (char) c;
        zgw_show(out, sizeof(out), in, 1);
        assert_int_equal(out[0], zgw_printable((unsigned char) c)
                                 ? (char) c : '?');
        assert_int_equal(out[1], '\0');
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_printable_every_byte),
        cmocka_unit_test(test_printable_from_char),
        cmocka_unit_test(test_show_agrees),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
