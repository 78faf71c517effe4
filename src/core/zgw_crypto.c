/*
 * ngx_zmq core: secrets at rest (OpenSSL).
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "zgw_crypto.h"


#define ZGW_SEAL_VERSION  1
#define ZGW_GCM_IV_LEN    12
#define ZGW_GCM_TAG_LEN   16
#define ZGW_SALT_LEN      16
#define ZGW_HASH_LEN      32


static int
zgw_hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}


int
zgw_key_load(zgw_key_t *key, const char *path, zgw_errors_t *errs)
{
    int          fd, hi, lo;
    char         buf[130];
    size_t       n, i;
    ssize_t      r;
    struct stat  st;

    /* O_NONBLOCK: opening a FIFO must not wait for a writer */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd == -1) {
        zgw_errors_add(errs, "key file '%s': %s (create one with "
                       "'zmqctl keygen')", path, strerror(errno));
        return ZGW_ERROR;
    }

    /*
     * The key opens every secret: as ssh does with a private key, refuse
     * it when anyone but its owner may read or change it. The mode is
     * checked on the file opened, not on the path.
     */
    if (fstat(fd, &st) != 0) {
        zgw_errors_add(errs, "key file '%s': %s", path, strerror(errno));
        close(fd);
        return ZGW_ERROR;
    }

    if (!S_ISREG(st.st_mode)) {
        zgw_errors_add(errs, "key file '%s': not a regular file", path);
        close(fd);
        return ZGW_ERROR;
    }

    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        zgw_errors_add(errs, "key file '%s': permissions %04o are too open: "
                       "the key opens every sealed secret, so group and "
                       "others must have no access to it; run 'chmod 600 "
                       "%s' (and give each user that needs it a copy of "
                       "its own)", path, (unsigned) (st.st_mode & 07777),
                       path);
        close(fd);
        return ZGW_ERROR;
    }

    n = 0;
    do {
        r = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (r > 0) {
            n += (size_t) r;
        }
    } while ((r > 0 && n < sizeof(buf) - 1) || (r < 0 && errno == EINTR));

    if (r < 0) {
        zgw_errors_add(errs, "key file '%s': %s", path, strerror(errno));
        OPENSSL_cleanse(buf, sizeof(buf));
        close(fd);
        return ZGW_ERROR;
    }

    close(fd);
    buf[n] = '\0';

    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'
                     || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
    {
        buf[--n] = '\0';
    }

    if (n != ZGW_KEY_LEN * 2) {
        zgw_errors_add(errs, "key file '%s': expected %d hex digits, found "
                       "%zu characters", path, ZGW_KEY_LEN * 2, n);
        OPENSSL_cleanse(buf, sizeof(buf));
        return ZGW_ERROR;
    }

    for (i = 0; i < ZGW_KEY_LEN; i++) {
        hi = zgw_hexval(buf[2 * i]);
        lo = zgw_hexval(buf[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            zgw_errors_add(errs, "key file '%s': not a hex digit at "
                           "offset %zu", path, 2 * i + (hi < 0 ? 0 : 1));
            OPENSSL_cleanse(buf, sizeof(buf));
            return ZGW_ERROR;
        }
        key->bytes[i] = (unsigned char) (hi << 4 | lo);
    }

    OPENSSL_cleanse(buf, sizeof(buf));
    return ZGW_OK;
}


int
zgw_key_generate(const char *path, int force, zgw_errors_t *errs)
{
    int            fd, flags;
    char           hex[ZGW_KEY_LEN * 2 + 2];
    size_t         i;
    ssize_t        w;
    unsigned char  raw[ZGW_KEY_LEN];
    static const char  digits[] = "0123456789abcdef";

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        zgw_errors_add(errs, "keygen: the random generator failed");
        return ZGW_ERROR;
    }

    for (i = 0; i < ZGW_KEY_LEN; i++) {
        hex[2 * i] = digits[raw[i] >> 4];
        hex[2 * i + 1] = digits[raw[i] & 0xf];
    }
    hex[ZGW_KEY_LEN * 2] = '\n';
    hex[ZGW_KEY_LEN * 2 + 1] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));

    flags = O_WRONLY | O_CREAT | (force ? O_TRUNC : O_EXCL);

    fd = open(path, flags, 0600);
    if (fd == -1) {
        if (errno == EEXIST) {
            zgw_errors_add(errs, "key file '%s' already exists; pass "
                           "--force to replace it (secrets sealed with the "
                           "old key will no longer open)", path);
        } else {
            zgw_errors_add(errs, "key file '%s': %s", path, strerror(errno));
        }
        OPENSSL_cleanse(hex, sizeof(hex));
        return ZGW_ERROR;
    }

    (void) fchmod(fd, 0600);

    w = write(fd, hex, ZGW_KEY_LEN * 2 + 1);
    OPENSSL_cleanse(hex, sizeof(hex));

    if (w != ZGW_KEY_LEN * 2 + 1 || close(fd) != 0) {
        zgw_errors_add(errs, "key file '%s': write failed: %s", path,
                       strerror(errno));
        return ZGW_ERROR;
    }

    return ZGW_OK;
}


char *
zgw_base64_encode(const unsigned char *data, size_t len)
{
    char  *out;

    out = malloc(4 * ((len + 2) / 3) + 1);
    if (out == NULL) {
        return NULL;
    }

    EVP_EncodeBlock((unsigned char *) out, data, (int) len);
    return out;
}


unsigned char *
zgw_base64_decode(const char *text, size_t *len)
{
    int             n;
    size_t          tlen, pad;
    unsigned char  *out;

    tlen = strlen(text);
    if (tlen == 0 || tlen % 4 != 0) {
        return NULL;
    }

    out = malloc(tlen / 4 * 3 + 1);
    if (out == NULL) {
        return NULL;
    }

    n = EVP_DecodeBlock(out, (const unsigned char *) text, (int) tlen);
    if (n < 0) {
        free(out);
        return NULL;
    }

    pad = 0;
    if (text[tlen - 1] == '=') {
        pad++;
        if (text[tlen - 2] == '=') {
            pad++;
        }
    }

    *len = (size_t) n - pad;
    out[*len] = '\0';
    return out;
}


char *
zgw_secret_seal(const zgw_key_t *key, const char *aad, const char *plain,
    size_t len, zgw_errors_t *errs)
{
    int              outl, ok;
    char            *text;
    size_t           total;
    unsigned char   *buf, *iv, *ct;
    EVP_CIPHER_CTX  *ctx;

    total = 1 + ZGW_GCM_IV_LEN + len + ZGW_GCM_TAG_LEN;

    buf = malloc(total);
    if (buf == NULL) {
        zgw_errors_add(errs, "seal: out of memory");
        return NULL;
    }

    buf[0] = ZGW_SEAL_VERSION;
    iv = buf + 1;
    ct = iv + ZGW_GCM_IV_LEN;

    ctx = EVP_CIPHER_CTX_new();
    ok = ctx != NULL
         && RAND_bytes(iv, ZGW_GCM_IV_LEN) == 1
         && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1
         && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, ZGW_GCM_IV_LEN,
                                NULL) == 1
         && EVP_EncryptInit_ex(ctx, NULL, NULL, key->bytes, iv) == 1
         && EVP_EncryptUpdate(ctx, NULL, &outl, (const unsigned char *) aad,
                              (int) strlen(aad)) == 1
         && EVP_EncryptUpdate(ctx, ct, &outl, (const unsigned char *) plain,
                              (int) len) == 1
         && EVP_EncryptFinal_ex(ctx, ct + outl, &outl) == 1
         && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, ZGW_GCM_TAG_LEN,
                                ct + len) == 1;

    EVP_CIPHER_CTX_free(ctx);

    if (!ok) {
        free(buf);
        zgw_errors_add(errs, "seal: AES-256-GCM encryption failed");
        return NULL;
    }

    text = zgw_base64_encode(buf, total);
    free(buf);

    if (text == NULL) {
        zgw_errors_add(errs, "seal: out of memory");
    }

    return text;
}


int
zgw_secret_open(const zgw_key_t *key, const char *aad, const char *sealed,
    char **plain, size_t *len, zgw_errors_t *errs)
{
    int              outl, ok;
    char            *out;
    size_t           blen, clen;
    unsigned char   *buf, *iv, *ct, *tag;
    EVP_CIPHER_CTX  *ctx;

    buf = zgw_base64_decode(sealed, &blen);
    if (buf == NULL || blen < 1 + ZGW_GCM_IV_LEN + ZGW_GCM_TAG_LEN
        || buf[0] != ZGW_SEAL_VERSION)
    {
        free(buf);
        zgw_errors_add(errs, "%s: sealed secret is malformed", aad);
        return ZGW_ERROR;
    }

    iv = buf + 1;
    ct = iv + ZGW_GCM_IV_LEN;
    clen = blen - 1 - ZGW_GCM_IV_LEN - ZGW_GCM_TAG_LEN;
    tag = ct + clen;

    out = malloc(clen + 1);
    if (out == NULL) {
        free(buf);
        zgw_errors_add(errs, "%s: out of memory", aad);
        return ZGW_ERROR;
    }

    ctx = EVP_CIPHER_CTX_new();
    ok = ctx != NULL
         && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1
         && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, ZGW_GCM_IV_LEN,
                                NULL) == 1
         && EVP_DecryptInit_ex(ctx, NULL, NULL, key->bytes, iv) == 1
         && EVP_DecryptUpdate(ctx, NULL, &outl, (const unsigned char *) aad,
                              (int) strlen(aad)) == 1
         && EVP_DecryptUpdate(ctx, (unsigned char *) out, &outl, ct,
                              (int) clen) == 1
         && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, ZGW_GCM_TAG_LEN,
                                tag) == 1
         && EVP_DecryptFinal_ex(ctx, (unsigned char *) out + outl, &outl)
            == 1;

    EVP_CIPHER_CTX_free(ctx);
    free(buf);

    if (!ok) {
        OPENSSL_cleanse(out, clen);
        free(out);
        zgw_errors_add(errs, "%s: secret does not open with this key (wrong "
                       "key file, or the stored value was altered)", aad);
        return ZGW_ERROR;
    }

    out[clen] = '\0';
    *plain = out;
    if (len != NULL) {
        *len = clen;
    }

    return ZGW_OK;
}


char *
zgw_password_hash(const char *password, unsigned iterations,
    zgw_errors_t *errs)
{
    int            n;
    char          *salt64, *hash64, *out;
    size_t         size;
    unsigned char  salt[ZGW_SALT_LEN], hash[ZGW_HASH_LEN];

    if (RAND_bytes(salt, sizeof(salt)) != 1
        || PKCS5_PBKDF2_HMAC(password, (int) strlen(password), salt,
                             sizeof(salt), (int) iterations, EVP_sha256(),
                             sizeof(hash), hash) != 1)
    {
        zgw_errors_add(errs, "password hash: PBKDF2 failed");
        return NULL;
    }

    salt64 = zgw_base64_encode(salt, sizeof(salt));
    hash64 = zgw_base64_encode(hash, sizeof(hash));
    out = NULL;

    if (salt64 != NULL && hash64 != NULL) {
        size = strlen(salt64) + strlen(hash64) + 40;
        out = malloc(size);
        if (out != NULL) {
            n = snprintf(out, size, "pbkdf2-sha256$%u$%s$%s", iterations,
                         salt64, hash64);
            if (n < 0 || (size_t) n >= size) {
                free(out);
                out = NULL;
            }
        }
    }

    free(salt64);
    free(hash64);

    if (out == NULL) {
        zgw_errors_add(errs, "password hash: out of memory");
    }

    return out;
}


int
zgw_password_verify(const char *stored, const char *password)
{
    int             rc;
    char           *copy, *p, *iter, *salt64, *hash64, *end;
    size_t          slen, hlen;
    unsigned long   iterations;
    unsigned char  *salt, *hash, calc[ZGW_HASH_LEN];

    if (strncmp(stored, "pbkdf2-sha256$", 14) != 0) {
        return -1;
    }

    copy = strdup(stored + 14);
    if (copy == NULL) {
        return -1;
    }

    iter = copy;
    p = strchr(iter, '$');
    if (p == NULL) {
        free(copy);
        return -1;
    }
    *p++ = '\0';
    salt64 = p;
    p = strchr(salt64, '$');
    if (p == NULL) {
        free(copy);
        return -1;
    }
    *p++ = '\0';
    hash64 = p;

    errno = 0;
    iterations = strtoul(iter, &end, 10);
    if (errno || *end != '\0' || iterations == 0 || iterations > 10000000) {
        free(copy);
        return -1;
    }

    salt = zgw_base64_decode(salt64, &slen);
    hash = zgw_base64_decode(hash64, &hlen);
    rc = -1;

    if (salt != NULL && hash != NULL && hlen == ZGW_HASH_LEN
        && PKCS5_PBKDF2_HMAC(password, (int) strlen(password), salt,
                             (int) slen, (int) iterations, EVP_sha256(),
                             sizeof(calc), calc) == 1)
    {
        rc = CRYPTO_memcmp(calc, hash, ZGW_HASH_LEN) == 0;
    }

    free(salt);
    free(hash);
    free(copy);
    return rc;
}


int
zgw_uuid4(char *out)
{
    unsigned char  b[16];

    if (RAND_bytes(b, sizeof(b)) != 1) {
        return ZGW_ERROR;
    }

    zgw_uuid4_format(b, out);

    return ZGW_OK;
}


void
zgw_uuid4_format(const unsigned char raw[16], char *out)
{
    static const char  hex[] = "0123456789abcdef";
    unsigned char      b;
    size_t             i;

    for (i = 0; i < 16; i++) {
        b = raw[i];

        if (i == 6) {
            b = (unsigned char) ((b & 0x0f) | 0x40);      /* version 4 */

        } else if (i == 8) {
            b = (unsigned char) ((b & 0x3f) | 0x80);      /* RFC 4122 */
        }

        if (i == 4 || i == 6 || i == 8 || i == 10) {
            *out++ = '-';
        }

        *out++ = hex[b >> 4];
        *out++ = hex[b & 0x0f];
    }

    *out = '\0';
}
