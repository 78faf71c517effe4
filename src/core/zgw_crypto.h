/*
 * ngx_zmq core: secrets at rest.
 *
 * Secrets that must be recovered (broker passwords, JWT keys, outgoing HTTP
 * credentials) are sealed with AES-256-GCM under a 32-byte key read from a
 * key file; the object's kind, name and field are the associated data, so a
 * ciphertext copied onto another object does not open. Client passwords are
 * only ever verified, so they are stored as salted PBKDF2-SHA256 hashes.
 */

#ifndef ZGW_CRYPTO_H
#define ZGW_CRYPTO_H

#include <stddef.h>

#include "zgw_err.h"


#define ZGW_KEY_LEN          32
#define ZGW_PBKDF2_ITER      100000
#define ZGW_UUID_LEN         36


typedef struct {
    unsigned char  bytes[ZGW_KEY_LEN];
} zgw_key_t;


/*
 * A key file holds 64 hex digits (and optional trailing white space). It
 * is refused unless it is a regular file that only its owner may access
 * (no group or other permission bits, as ssh wants of a private key).
 */
int zgw_key_load(zgw_key_t *key, const char *path, zgw_errors_t *errs);
/* writes a new random key with mode 0600; refuses to overwrite unless force */
int zgw_key_generate(const char *path, int force, zgw_errors_t *errs);

/* returns a malloc'd base64 text, or NULL with an error */
char *zgw_secret_seal(const zgw_key_t *key, const char *aad,
    const char *plain, size_t len, zgw_errors_t *errs);
/* returns ZGW_OK and a malloc'd NUL-terminated *plain, or ZGW_ERROR */
int zgw_secret_open(const zgw_key_t *key, const char *aad, const char *sealed,
    char **plain, size_t *len, zgw_errors_t *errs);

/* "pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>", malloc'd */
char *zgw_password_hash(const char *password, unsigned iterations,
    zgw_errors_t *errs);
/* 1 matches, 0 does not, -1 the stored hash is malformed */
int zgw_password_verify(const char *stored, const char *password);

/* a random (version 4) UUID, NUL-terminated, into out[ZGW_UUID_LEN + 1] */
int zgw_uuid4(char *out);
/* the same from 16 random bytes the caller drew (a hot path draws them in
 * bulk: OpenSSL's RAND_bytes costs a getpid() and parameter lookups a call) */
void zgw_uuid4_format(const unsigned char raw[16], char *out);

/* base64 helpers; results are malloc'd and NUL-terminated */
char *zgw_base64_encode(const unsigned char *data, size_t len);
unsigned char *zgw_base64_decode(const char *text, size_t *len);

#endif /* ZGW_CRYPTO_H */
