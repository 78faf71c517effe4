/*
 * ngx_zmq core: API keys of incoming apikey security definitions.
 */

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "zgw_apikey.h"


static const char  zgw_b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


void
zgw_sha256_hex(const void *data, size_t len, char *hex)
{
    size_t         i;
    unsigned char  md[SHA256_DIGEST_LENGTH];

    static const char  digits[] = "0123456789abcdef";

    SHA256(data, len, md);

    for (i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0x0f];
    }

    hex[ZGW_SHA256_HEX_LEN] = '\0';
    OPENSSL_cleanse(md, sizeof(md));
}


int
zgw_apikey_generate(char *key, char *hex, zgw_errors_t *errs)
{
    size_t         i, o;
    unsigned int   acc, bits;
    unsigned char  raw[32];

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        zgw_errors_add(errs, "apikey: the random generator failed");
        return ZGW_ERROR;
    }

    acc = 0;
    bits = 0;
    o = 0;

    for (i = 0; i < sizeof(raw); i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;

        while (bits >= 6) {
            bits -= 6;
            key[o++] = zgw_b64url[(acc >> bits) & 0x3f];
        }
    }

    if (bits > 0) {
        key[o++] = zgw_b64url[(acc << (6 - bits)) & 0x3f];
    }

    key[o] = '\0';                      /* o == ZGW_APIKEY_LEN */

    zgw_sha256_hex(key, o, hex);
    OPENSSL_cleanse(raw, sizeof(raw));
    return ZGW_OK;
}
