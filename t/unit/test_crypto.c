/*
 * Unit tests: sealing secrets (AES-256-GCM), password hashes, key files.
 */

#include <sys/stat.h>
#include <unistd.h>

#include "zgw_test_util.h"

#include "zgw_crypto.h"


static char  tmpdir[] = "/tmp/zgw-crypto-XXXXXX";


static void
key_fill(zgw_key_t *key, unsigned char b)
{
    memset(key->bytes, b, sizeof(key->bytes));
}


static void
test_seal_open_round_trip(void **state)
{
    char          *sealed, *plain;
    size_t         len;
    zgw_key_t      key;
    zgw_errors_t   errs;
    const char     secret[] = "s3cr\xc3\xa9t with spaces";

    (void) state;
    key_fill(&key, 1);
    zgw_errors_init(&errs);

    sealed = zgw_secret_seal(&key, "amqp_def/crm/password", secret,
                             strlen(secret), &errs);
    assert_non_null(sealed);
    assert_null(strstr(sealed, "s3cr"));

    assert_int_equal(zgw_secret_open(&key, "amqp_def/crm/password", sealed,
                                     &plain, &len, &errs), ZGW_OK);
    assert_int_equal(len, strlen(secret));
    assert_string_equal(plain, secret);

    free(plain);
    free(sealed);
    zgw_errors_free(&errs);
}


static void
test_seal_is_randomized(void **state)
{
    char          *a, *b;
    zgw_key_t      key;
    zgw_errors_t   errs;

    (void) state;
    key_fill(&key, 2);
    zgw_errors_init(&errs);

    a = zgw_secret_seal(&key, "x", "same", 4, &errs);
    b = zgw_secret_seal(&key, "x", "same", 4, &errs);
    assert_non_null(a);
    assert_non_null(b);
    assert_string_not_equal(a, b);

    free(a);
    free(b);
    zgw_errors_free(&errs);
}


static void
test_wrong_key_does_not_open(void **state)
{
    char          *sealed, *plain;
    zgw_key_t      key, other;
    zgw_errors_t   errs;

    (void) state;
    key_fill(&key, 3);
    key_fill(&other, 4);
    zgw_errors_init(&errs);

    sealed = zgw_secret_seal(&key, "aad", "guest", 5, &errs);
    assert_non_null(sealed);
    plain = NULL;
    assert_int_equal(zgw_secret_open(&other, "aad", sealed, &plain, NULL,
                                     &errs), ZGW_ERROR);
    assert_null(plain);
    assert_true(zgw_test_errors_have(&errs, "does not open with this key"));

    free(sealed);
    zgw_errors_free(&errs);
}


static void
test_other_object_does_not_open(void **state)
{
    char          *sealed, *plain;
    zgw_key_t      key;
    zgw_errors_t   errs;

    (void) state;
    key_fill(&key, 5);
    zgw_errors_init(&errs);

    sealed = zgw_secret_seal(&key, "amqp_def/a/password", "guest", 5, &errs);
    assert_int_equal(zgw_secret_open(&key, "amqp_def/b/password", sealed,
                                     &plain, NULL, &errs), ZGW_ERROR);

    free(sealed);
    zgw_errors_free(&errs);
}


static void
test_tampered_ciphertext_does_not_open(void **state)
{
    char           *sealed, *plain, *again;
    size_t          len, i;
    zgw_key_t       key;
    zgw_errors_t    errs;
    unsigned char  *raw;

    (void) state;
    key_fill(&key, 6);
    zgw_errors_init(&errs);

    sealed = zgw_secret_seal(&key, "aad", "guest-password", 14, &errs);
    raw = zgw_base64_decode(sealed, &len);
    assert_non_null(raw);

    /* flip one bit in each region: version, iv, ciphertext, tag */
    for (i = 0; i < len; i++) {
        raw[i] ^= 0x01;
        again = zgw_base64_encode(raw, len);
        assert_int_equal(zgw_secret_open(&key, "aad", again, &plain, NULL,
                                         &errs), ZGW_ERROR);
        free(again);
        raw[i] ^= 0x01;
    }

    /* truncated and malformed */
    assert_int_equal(zgw_secret_open(&key, "aad", "AAAA", &plain, NULL,
                                     &errs), ZGW_ERROR);
    assert_int_equal(zgw_secret_open(&key, "aad", "not base64!", &plain,
                                     NULL, &errs), ZGW_ERROR);

    free(raw);
    free(sealed);
    zgw_errors_free(&errs);
}


static void
test_password_hash(void **state)
{
    char          *h, *h2;
    zgw_errors_t   errs;

    (void) state;
    zgw_errors_init(&errs);

    h = zgw_password_hash("change-me", 1000, &errs);
    h2 = zgw_password_hash("change-me", 1000, &errs);
    assert_non_null(h);
    assert_non_null(h2);
    assert_true(strncmp(h, "pbkdf2-sha256$1000$", 19) == 0);
    assert_string_not_equal(h, h2);              /* salted */
    assert_null(strstr(h, "change-me"));

    assert_int_equal(zgw_password_verify(h, "change-me"), 1);
    assert_int_equal(zgw_password_verify(h2, "change-me"), 1);
    assert_int_equal(zgw_password_verify(h, "change-mE"), 0);
    assert_int_equal(zgw_password_verify(h, ""), 0);
    assert_int_equal(zgw_password_verify("md5$x", "a"), -1);
    assert_int_equal(zgw_password_verify("pbkdf2-sha256$0$a$b", "a"), -1);

    free(h);
    free(h2);
    zgw_errors_free(&errs);
}


static void
test_keygen_and_load(void **state)
{
    char           path[256];
    FILE          *f;
    zgw_key_t      key, again;
    struct stat    st;
    zgw_errors_t   errs;

    (void) state;
    zgw_errors_init(&errs);
    snprintf(path, sizeof(path), "%s/secret.key", tmpdir);

    assert_int_equal(zgw_key_generate(path, 0, &errs), ZGW_OK);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    assert_int_equal(zgw_key_load(&key, path, &errs), ZGW_OK);
    assert_int_equal(zgw_key_load(&again, path, &errs), ZGW_OK);
    assert_memory_equal(key.bytes, again.bytes, ZGW_KEY_LEN);

    /* no silent overwrite */
    assert_int_equal(zgw_key_generate(path, 0, &errs), ZGW_ERROR);
    assert_true(zgw_test_errors_have(&errs, "already exists"));
    assert_int_equal(zgw_key_generate(path, 1, &errs), ZGW_OK);
    assert_int_equal(zgw_key_load(&again, path, &errs), ZGW_OK);
    assert_memory_not_equal(key.bytes, again.bytes, ZGW_KEY_LEN);

    /* bad key files */
    f = fopen(path, "w");
    fputs("abcd\n", f);
    fclose(f);
    assert_int_equal(zgw_key_load(&key, path, &errs), ZGW_ERROR);
    assert_true(zgw_test_errors_have(&errs, "expected 64 hex digits"));

    f = fopen(path, "w");
    fputs("zz00000000000000000000000000000000000000000000000000000000000000",
          f);
    fclose(f);
    assert_int_equal(zgw_key_load(&key, path, &errs), ZGW_ERROR);
    assert_true(zgw_test_errors_have(&errs, "not a hex digit"));

    unlink(path);
    assert_int_equal(zgw_key_load(&key, path, &errs), ZGW_ERROR);
    assert_true(zgw_test_errors_have(&errs, "zmqctl keygen"));

    zgw_errors_free(&errs);
}


/* the key opens every secret: only its owner may access the file */
static void
test_key_file_mode(void **state)
{
    char           path[256], dir[256];
    size_t         i;
    zgw_key_t      key;
    zgw_errors_t   errs;

    static const struct {
        mode_t       mode;
        const char  *shown;
    } open_modes[] = {
        { 0644, "permissions 0644 are too open" },
        { 0640, "permissions 0640 are too open" },
        { 0604, "permissions 0604 are too open" },
        { 0620, "permissions 0620 are too open" },
        { 0602, "permissions 0602 are too open" },
        { 0610, "permissions 0610 are too open" },
        { 0666, "permissions 0666 are too open" },
    };

    (void) state;
    zgw_errors_init(&errs);
    snprintf(path, sizeof(path), "%s/mode.key", tmpdir);

    assert_int_equal(zgw_key_generate(path, 1, &errs), ZGW_OK);
    assert_int_equal(zgw_key_load(&key, path, &errs), ZGW_OK);

    for (i = 0; i < sizeof(open_modes) / sizeof(open_modes[0]); i++) {
        zgw_errors_clear(&errs);
        assert_int_equal(chmod(path, open_modes[i].mode), 0);
        assert_int_equal(zgw_key_load(&key, path, &errs), ZGW_ERROR);
        assert_true(zgw_test_errors_have(&errs, open_modes[i].shown));
        assert_true(zgw_test_errors_have(&errs, "chmod 600"));
    }

    /* owner-only modes are fine */
    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(zgw_key_load(&key, path, &errs), ZGW_OK);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(zgw_key_load(&key, path, &errs), ZGW_OK);

    /* keygen --force over a too open file makes it 0600 again */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(zgw_key_generate(path, 1, &errs), ZGW_OK);
    assert_int_equal(zgw_key_load(&key, path, &errs), ZGW_OK);

    /* not a regular file */
    snprintf(dir, sizeof(dir), "%s/key.d", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    zgw_errors_clear(&errs);
    assert_int_equal(zgw_key_load(&key, dir, &errs), ZGW_ERROR);
    assert_true(zgw_test_errors_have(&errs, "not a regular file"));
    rmdir(dir);

    /* a FIFO with no writer: refused at once, not waited on */
    assert_int_equal(mkfifo(dir, 0600), 0);
    zgw_errors_clear(&errs);
    assert_int_equal(zgw_key_load(&key, dir, &errs), ZGW_ERROR);
    assert_true(zgw_test_errors_have(&errs, "not a regular file"));
    unlink(dir);

    unlink(path);
    zgw_errors_free(&errs);
}


static void
test_uuid4(void **state)
{
    char  a[ZGW_UUID_LEN + 1], b[ZGW_UUID_LEN + 1];

    (void) state;
    assert_int_equal(zgw_uuid4(a), ZGW_OK);
    assert_int_equal(zgw_uuid4(b), ZGW_OK);
    assert_int_equal(strlen(a), 36);
    assert_int_equal(a[14], '4');
    assert_true(strchr("89ab", a[19]) != NULL);
    assert_string_not_equal(a, b);
}


static void
test_uuid4_format(void **state)
{
    char                 out[ZGW_UUID_LEN + 1];
    unsigned char        raw[16];
    size_t               i;

    (void) state;

    for (i = 0; i < 16; i++) {
        raw[i] = (unsigned char) i;
    }
    zgw_uuid4_format(raw, out);
    assert_string_equal(out, "00010203-0405-4607-8809-0a0b0c0d0e0f");

    memset(raw, 0xff, sizeof(raw));
    zgw_uuid4_format(raw, out);
    assert_string_equal(out, "ffffffff-ffff-4fff-bfff-ffffffffffff");
}


static int
setup(void **state)
{
    (void) state;
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}


static int
teardown(void **state)
{
    (void) state;
    return rmdir(tmpdir);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_seal_open_round_trip),
        cmocka_unit_test(test_seal_is_randomized),
        cmocka_unit_test(test_wrong_key_does_not_open),
        cmocka_unit_test(test_other_object_does_not_open),
        cmocka_unit_test(test_tampered_ciphertext_does_not_open),
        cmocka_unit_test(test_password_hash),
        cmocka_unit_test(test_keygen_and_load),
        cmocka_unit_test(test_key_file_mode),
        cmocka_unit_test(test_uuid4),
        cmocka_unit_test(test_uuid4_format),
    };

    return cmocka_run_group_tests_name("crypto", tests, setup, teardown);
}
