/*
 * ngx_zmq core: JSON Web Token verification (RFC 7519, JWS compact form).
 *
 * A verifier is built once per security definition (when a configuration
 * is applied) and then checks tokens without allocating key material: the
 * keys are parsed at build time. The algorithm is pinned by the definition;
 * a token whose header names another one (or "none") is refused, so an RSA
 * public key can never be used as an HMAC secret. The JWS crypto is
 * OpenSSL's EVP interface; the JSON is jansson's.
 *
 * Nothing here blocks or keeps global state: the NGINX module calls
 * zgw_jwt_verify() on its event loop, zmqctl and the model call
 * zgw_jwt_verifier_new() to validate a definition.
 */

#ifndef ZGW_JWT_H
#define ZGW_JWT_H

#include <stddef.h>

#include <jansson.h>

#include "zgw_err.h"


#define ZGW_JWT_TOKEN_MAX   8192        /* bytes of the compact form */
#define ZGW_JWT_JWKS_MAX    32          /* keys in one JWKS document */
#define ZGW_JWT_TIME_MAX    (1LL << 62) /* later dates are taken as this */


typedef enum {
    ZGW_JWT_HS256 = 0,
    ZGW_JWT_HS384,
    ZGW_JWT_HS512,
    ZGW_JWT_RS256,
    ZGW_JWT_RS384,
    ZGW_JWT_RS512,
    ZGW_JWT_PS256,
    ZGW_JWT_ES256,
    ZGW_JWT_ES384,
    ZGW_JWT_ALG_MAX
} zgw_jwt_alg_e;


typedef struct zgw_jwt_verifier_s  zgw_jwt_verifier_t;


/* what a definition asks of a token besides its signature */
typedef struct {
    zgw_jwt_alg_e   alg;
    const char     *iss;            /* NULL: not checked */
    const json_t   *aud;            /* NULL, a string or an array of them:
                                       the token's aud must name one */
    long long       leeway;         /* seconds, for exp, nbf and max_age */
    int             require_exp;
    long long       max_age;        /* seconds since iat; <= 0: unchecked */
} zgw_jwt_policy_t;


/* what a valid token says */
typedef struct {
    json_t         *claims;         /* the payload object (a reference the
                                       caller releases with json_decref) */
    const char     *sub;            /* in claims, or NULL */
    long long       exp;            /* 0: none; at most ZGW_JWT_TIME_MAX,
                                       so exp + leeway cannot overflow */
    long long       valid_until;    /* the first second the policy refuses
                                       the token at for its age: exp +
                                       leeway, or iat + max_age + leeway
                                       + 1, the earlier; ZGW_JWT_TIME_MAX
                                       when neither applies (a cache of
                                       verified tokens keeps one until
                                       then at most) */
} zgw_jwt_claims_t;


/* "HS256" ... "ES384" -> the enum; -1 for anything else, "none" included */
int zgw_jwt_alg_parse(const char *name);
const char *zgw_jwt_alg_name(zgw_jwt_alg_e alg);
/* HS*: the smallest secret (RFC 7518 3.2: the hash's size); else 0 */
size_t zgw_jwt_secret_min(zgw_jwt_alg_e alg);

/*
 * HS* take secret (at least zgw_jwt_secret_min() bytes) and no key; the
 * others take exactly one of a PEM public key (SubjectPublicKeyInfo or
 * PKCS#1 RSA) or a JWKS document (JSON text), whose keys must all fit the
 * algorithm (kty RSA for RS and PS, with at least 2048 bits; kty EC on
 * P-256 for ES256, P-384 for ES384). A JWKS holds 1 to ZGW_JWT_JWKS_MAX
 * public keys with distinct kids; a key's "use", when present, is "sig"
 * and its "alg", when present, the pinned one. A private key (PEM or JWK
 * members such as "d") is refused. The policy's strings and aud are
 * copied; leeway is 0-86400. NULL with an error that names what is wrong
 * (every bad JWKS key is named).
 */
zgw_jwt_verifier_t *zgw_jwt_verifier_new(const zgw_jwt_policy_t *policy,
    const unsigned char *secret, size_t secret_len, const char *public_pem,
    const char *jwks, zgw_errors_t *errs);
void zgw_jwt_verifier_free(zgw_jwt_verifier_t *v);

/*
 * ZGW_OK and *out filled when the token (len bytes, not NUL-terminated) is
 * well formed, signed with the pinned algorithm by the definition's key
 * (the JWKS key its "kid" names; with no kid, the JWKS must hold one key;
 * with a PEM key, kid is not used), has no "crit" header, and its claims
 * pass the policy at time now. exp, nbf and iat are numbers when present
 * (a real is rounded to the stricter side), iss and sub strings, aud a
 * string or an array of strings. ZGW_ERROR otherwise, with out->claims
 * NULL and *reason a static text for the log that never contains any part
 * of the token: "token too large", "malformed token", "algorithm not
 * allowed", "unsupported critical header", "unknown key id", "missing key
 * id", "bad signature", "malformed claim", "expired", "not yet valid",
 * "missing exp", "missing iat" (max_age is set), "issued too long ago",
 * "wrong issuer", "wrong audience". out and reason may be NULL.
 */
int zgw_jwt_verify(const zgw_jwt_verifier_t *v, const char *token,
    size_t len, long long now, zgw_jwt_claims_t *out, const char **reason);

#endif /* ZGW_JWT_H */
