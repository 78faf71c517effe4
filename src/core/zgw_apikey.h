/*
 * ngx_zmq core: API keys of incoming apikey security definitions.
 *
 * A key is 32 random bytes in base64url without padding (43 characters):
 * with 256 bits of entropy, one SHA-256 digest is as safe to store as a
 * slow password hash, and checking it costs microseconds, so the gateway
 * verifies keys on its event loop. Only digests are stored.
 */

#ifndef ZGW_APIKEY_H
#define ZGW_APIKEY_H

#include <stddef.h>

#include "zgw_err.h"


#define ZGW_APIKEY_LEN      43          /* base64url of 32 bytes */
#define ZGW_SHA256_HEX_LEN  64


/* a new key into key[ZGW_APIKEY_LEN + 1], its digest into
 * hex[ZGW_SHA256_HEX_LEN + 1]; ZGW_ERROR if the random generator fails */
int zgw_apikey_generate(char *key, char *hex, zgw_errors_t *errs);

/* the lowercase hex SHA-256 of len bytes into hex[ZGW_SHA256_HEX_LEN + 1] */
void zgw_sha256_hex(const void *data, size_t len, char *hex);

#endif /* ZGW_APIKEY_H */
