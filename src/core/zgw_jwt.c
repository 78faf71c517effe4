/*
 * ngx_zmq core: JSON Web Token verification (OpenSSL EVP, jansson).
 *
 * A token is untrusted bytes: its length is checked first, then its shape
 * (three base64url segments), then its header (the pinned algorithm, no
 * "crit", the key its "kid" names), then its signature, and only then is
 * its payload parsed and its claims checked. Everything decoded from it
 * lives in one buffer on the stack, bounded by ZGW_JWT_TOKEN_MAX; the only
 * allocations are jansson's for the header and the payload, and OpenSSL's
 * for one verification, all bounded by the token's size.
 */

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "zgw_jwt.h"


#define ZGW_JWT_RSA_MIN_BITS  2048
#define ZGW_JWT_RSA_MAX_BYTES 2048     /* 16384-bit modulus */
#define ZGW_JWT_ECHO_MAX      64
#define ZGW_JWT_LABEL_MAX     (ZGW_JWT_ECHO_MAX + 32)


typedef enum {
    ZGW_JWT_HMAC = 0,
    ZGW_JWT_RSA,
    ZGW_JWT_PSS,
    ZGW_JWT_EC
} zgw_jwt_family_e;


typedef struct {
    const char          *name;
    zgw_jwt_family_e     family;
    const char          *digest;    /* OpenSSL's name of the hash */
    size_t               hash_len;
    const char          *crv;       /* EC: the JWK curve name */
    const char          *group;     /* EC: OpenSSL's group name */
    size_t               coord;     /* EC: bytes of one coordinate */
} zgw_jwt_alg_t;


typedef struct {
    char                *kid;       /* NULL: none */
    EVP_PKEY            *pkey;
} zgw_jwt_key_t;


struct zgw_jwt_verifier_s {
    const zgw_jwt_alg_t *alg;
    char                *iss;
    json_t              *aud;
    long long            leeway;
    int                  require_exp;
    long long            max_age;
    EVP_MAC_CTX         *mac;       /* HS*: keyed; duplicated per token */
    int                  jwks;      /* the keys came from a JWKS */
    size_t               nkeys;
    zgw_jwt_key_t        keys[ZGW_JWT_JWKS_MAX];
};


/* indexed by zgw_jwt_alg_e */
static const zgw_jwt_alg_t  zgw_jwt_algs[ZGW_JWT_ALG_MAX] = {
    { "HS256", ZGW_JWT_HMAC, "SHA256", 32, NULL, NULL, 0 },
    { "HS384", ZGW_JWT_HMAC, "SHA384", 48, NULL, NULL, 0 },
    { "HS512", ZGW_JWT_HMAC, "SHA512", 64, NULL, NULL, 0 },
    { "RS256", ZGW_JWT_RSA, "SHA256", 32, NULL, NULL, 0 },
    { "RS384", ZGW_JWT_RSA, "SHA384", 48, NULL, NULL, 0 },
    { "RS512", ZGW_JWT_RSA, "SHA512", 64, NULL, NULL, 0 },
    { "PS256", ZGW_JWT_PSS, "SHA256", 32, NULL, NULL, 0 },
    { "ES256", ZGW_JWT_EC, "SHA256", 32, "P-256", "prime256v1", 32 },
    { "ES384", ZGW_JWT_EC, "SHA384", 48, "P-384", "secp384r1", 48 },
};


/* ---------------------------------------------------------------- names */

int
zgw_jwt_alg_parse(const char *name)
{
    int  i;

    if (name == NULL) {
        return -1;
    }

    for (i = 0; i < ZGW_JWT_ALG_MAX; i++) {
        if (strcmp(name, zgw_jwt_algs[i].name) == 0) {
            return i;
        }
    }

    return -1;
}


const char *
zgw_jwt_alg_name(zgw_jwt_alg_e alg)
{
    if ((int) alg < 0 || alg >= ZGW_JWT_ALG_MAX) {
        return "unknown";
    }

    return zgw_jwt_algs[alg].name;
}


size_t
zgw_jwt_secret_min(zgw_jwt_alg_e alg)
{
    if ((int) alg < 0 || alg >= ZGW_JWT_ALG_MAX
        || zgw_jwt_algs[alg].family != ZGW_JWT_HMAC)
    {
        return 0;
    }

    return zgw_jwt_algs[alg].hash_len;
}


/* ------------------------------------------------------------ base64url */

static int
zgw_b64url_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '-') {
        return 62;
    }
    if (c == '_') {
        return 63;
    }
    return -1;
}


/*
 * Strict base64url (RFC 7515 2): the url-safe alphabet only, no padding,
 * no whitespace, and the unused low bits of the last character zero, so
 * that each byte string has exactly one encoding. The decoded length, or
 * -1 for anything else or when it would not fit in size bytes.
 */
static long
zgw_b64url_decode(unsigned char *out, size_t size, const char *in,
    size_t len)
{
    int       v;
    size_t    i, n, need;
    uint32_t  acc;
    unsigned  bits;

    if (len % 4 == 1) {
        return -1;
    }

    need = len / 4 * 3 + (len % 4 == 0 ? 0 : len % 4 - 1);
    if (need > size) {
        return -1;
    }

    acc = 0;
    bits = 0;
    n = 0;

    for (i = 0; i < len; i++) {
        v = zgw_b64url_val((unsigned char) in[i]);
        if (v < 0) {
            return -1;
        }

        acc = (acc << 6) | (uint32_t) v;
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char) (acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }

    /* the bits left over (2 or 4) must be zero */
    if (acc != 0) {
        return -1;
    }

    return (long) n;
}


/* ----------------------------------------------------------- messages */

/* text as it may appear in a message: printable, and not too long */
static void
zgw_jwt_echo(char *out, size_t size, const char *text)
{
    size_t  i, n, len;

    len = strlen(text);
    n = len < ZGW_JWT_ECHO_MAX ? len : ZGW_JWT_ECHO_MAX;
    if (n > size - 4) {
        n = size - 4;
    }

    for (i = 0; i < n; i++) {
        out[i] = (text[i] >= 0x20 && text[i] < 0x7f && text[i] != '\'')
                 ? text[i] : '?';
    }

    if (n < len) {
        memcpy(out + i, "...", 3);
        i += 3;
    }

    out[i] = '\0';
}


/* "jwks key 'k2'", or "jwks key 3" for a key without a kid (1-based) */
static void
zgw_jwt_key_label(char *out, size_t size, const char *kid, size_t index)
{
    char  echo[ZGW_JWT_ECHO_MAX + 4];

    if (kid != NULL) {
        zgw_jwt_echo(echo, sizeof(echo), kid);
        snprintf(out, size, "jwks key '%s'", echo);
    } else {
        snprintf(out, size, "jwks key %zu", index + 1);
    }
}


static const char *
zgw_jwt_key_kind(const EVP_PKEY *pkey)
{
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        return "an RSA";
    }
    if (EVP_PKEY_is_a(pkey, "RSA-PSS")) {
        return "an RSA-PSS";
    }
    if (EVP_PKEY_is_a(pkey, "EC")) {
        return "an EC";
    }
    if (EVP_PKEY_is_a(pkey, "ED25519") || EVP_PKEY_is_a(pkey, "ED448")) {
        return "an EdDSA";
    }
    return "a non-RSA, non-EC";
}


/* ----------------------------------------------------------------- keys */

#define ZGW_JWT_RSA_MAX_BITS  8192


static int
zgw_jwt_rsa_check(EVP_PKEY *pkey, const char *label, zgw_errors_t *errs)
{
    int      ok;
    BIGNUM  *n, *e;

    n = NULL;
    e = NULL;

    ok = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n) == 1
         && EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) == 1;

    if (!ok) {
        ERR_clear_error();
        zgw_errors_add(errs, "jwt: %s is not a valid RSA public key", label);

    } else if (BN_num_bits(n) > ZGW_JWT_RSA_MAX_BITS || !BN_is_odd(n)) {
        zgw_errors_add(errs, "jwt: %s is not a valid RSA public key: the "
                       "modulus must be odd and at most %d bits", label,
                       ZGW_JWT_RSA_MAX_BITS);
        ok = 0;

    } else if (!BN_is_odd(e) || BN_num_bits(e) > 32 || BN_is_one(e)) {
        zgw_errors_add(errs, "jwt: %s has an RSA public exponent that is "
                       "not odd and 3 to 2^32-1 (65537 is usual)", label);
        ok = 0;
    }

    BN_free(n);
    BN_free(e);

    return ok ? ZGW_OK : ZGW_ERROR;
}


/*
 * Whether a parsed key fits the algorithm: RSA of 2048 bits or more for RS
 * and PS, EC on the algorithm's curve for ES, and a valid public key.
 */
static int
zgw_jwt_key_check(const zgw_jwt_alg_t *alg, EVP_PKEY *pkey,
    const char *label, zgw_errors_t *errs)
{
    int            bits, ok;
    char           group[64];
    size_t         glen;
    EVP_PKEY_CTX  *ctx;

    if (alg->family == ZGW_JWT_EC) {
        if (!EVP_PKEY_is_a(pkey, "EC")) {
            zgw_errors_add(errs, "jwt: %s is %s key, alg %s needs EC on %s",
                           label, zgw_jwt_key_kind(pkey), alg->name,
                           alg->crv);
            return ZGW_ERROR;
        }

        if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &glen) != 1)
        {
            ERR_clear_error();
            zgw_errors_add(errs, "jwt: %s is an EC key with explicit curve "
                           "parameters, alg %s needs the named curve %s",
                           label, alg->name, alg->crv);
            return ZGW_ERROR;
        }

        if (strcmp(group, alg->group) != 0) {
            zgw_errors_add(errs, "jwt: %s is an EC key on %s, alg %s needs "
                           "%s", label, group, alg->name, alg->crv);
            return ZGW_ERROR;
        }

    } else {
        if (!EVP_PKEY_is_a(pkey, "RSA")) {
            zgw_errors_add(errs, "jwt: %s is %s key, alg %s needs RSA",
                           label, zgw_jwt_key_kind(pkey), alg->name);
            return ZGW_ERROR;
        }

        bits = EVP_PKEY_get_bits(pkey);
        if (bits < ZGW_JWT_RSA_MIN_BITS) {
            zgw_errors_add(errs, "jwt: %s is a %d-bit RSA key; RSA keys must "
                           "have at least %d bits", label, bits,
                           ZGW_JWT_RSA_MIN_BITS);
            return ZGW_ERROR;
        }
    }

    if (alg->family != ZGW_JWT_EC) {
        /*
         * Not EVP_PKEY_public_check(): for RSA it runs SP 800-56B's checks
         * with a Miller-Rabin test of n, up to seconds for a JWKS of large
         * keys, and every worker builds its verifiers again on every
         * configuration it applies, on its event loop. What verification
         * needs is bounded instead: n odd and at most 8192 bits (a
         * signature check costs its size cubed), e odd, 3 <= e < 2^32 (a
         * huge e makes every check slow).
         */
        return zgw_jwt_rsa_check(pkey, label, errs);
    }

    /* EC: the point is on the curve and of the group's order (cheap) */
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    ok = ctx != NULL && EVP_PKEY_public_check(ctx) == 1;
    EVP_PKEY_CTX_free(ctx);

    if (!ok) {
        ERR_clear_error();
        zgw_errors_add(errs, "jwt: %s is not a valid %s public key", label,
                       alg->family == ZGW_JWT_EC ? alg->crv : "RSA");
        return ZGW_ERROR;
    }

    return ZGW_OK;
}


/* a PEM "PUBLIC KEY" (SubjectPublicKeyInfo) or "RSA PUBLIC KEY" (PKCS#1) */
static EVP_PKEY *
zgw_jwt_pem_load(const zgw_jwt_alg_t *alg, const char *pem,
    zgw_errors_t *errs)
{
    int                   rc;
    BIO                  *bio;
    long                  len;
    char                 *name, *header, *name2, *header2;
    EVP_PKEY             *pkey;
    unsigned char        *data, *data2;
    const unsigned char  *p;

    pkey = NULL;
    name = NULL;
    header = NULL;
    data = NULL;

    bio = BIO_new_mem_buf(pem, -1);
    if (bio == NULL) {
        zgw_errors_add(errs, "jwt: out of memory reading public_key");
        return NULL;
    }

    if (PEM_read_bio(bio, &name, &header, &data, &len) != 1) {
        zgw_errors_add(errs, "jwt: public_key is not a PEM public key "
                       "(expected -----BEGIN PUBLIC KEY-----)");
        goto done;
    }

    if (strstr(name, "PRIVATE KEY") != NULL) {
        zgw_errors_add(errs, "jwt: public_key is a private key (%s): give "
                       "only its public key (openssl pkey -pubout)", name);
        goto done;
    }

    p = data;

    if (strcmp(name, PEM_STRING_PUBLIC) == 0) {
        pkey = d2i_PUBKEY(NULL, &p, len);

    } else if (strcmp(name, PEM_STRING_RSA_PUBLIC) == 0) {
        pkey = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, len);

    } else {
        zgw_errors_add(errs, "jwt: public_key is a PEM %s, not a public "
                       "key (expected -----BEGIN PUBLIC KEY-----)", name);
        goto done;
    }

    if (pkey == NULL || p != data + len) {
        zgw_errors_add(errs, "jwt: public_key is not a PEM public key "
                       "(its %s block does not decode)", name);
        EVP_PKEY_free(pkey);
        pkey = NULL;
        goto done;
    }

    /* one key, so that nobody believes a second one is used */
    name2 = NULL;
    header2 = NULL;
    data2 = NULL;
    rc = PEM_read_bio(bio, &name2, &header2, &data2, &len);
    OPENSSL_free(name2);
    OPENSSL_free(header2);
    OPENSSL_free(data2);

    if (rc == 1) {
        zgw_errors_add(errs, "jwt: public_key holds more than one PEM "
                       "block: give exactly one public key (or a jwks "
                       "for several)");
        EVP_PKEY_free(pkey);
        pkey = NULL;
        goto done;
    }

    if (zgw_jwt_key_check(alg, pkey, "public_key", errs) != ZGW_OK) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }

done:

    ERR_clear_error();
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(bio);

    return pkey;
}


/* a base64url member of a JWK into out; its length, or -1 (error added) */
static long
zgw_jwk_member(const json_t *jwk, const char *member, unsigned char *out,
    size_t size, const char *label, zgw_errors_t *errs)
{
    long         n;
    const char  *text;

    text = json_string_value(json_object_get(jwk, member));
    if (text == NULL) {
        zgw_errors_add(errs, "jwt: %s has no \"%s\" (a base64url string)",
                       label, member);
        return -1;
    }

    n = zgw_b64url_decode(out, size, text, strlen(text));
    if (n <= 0) {
        zgw_errors_add(errs, "jwt: %s: \"%s\" is not base64url of at most "
                       "%zu bytes (without padding)", label, member, size);
        return -1;
    }

    return n;
}


static EVP_PKEY *
zgw_jwk_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY      *pkey;
    OSSL_PARAM    *params;
    EVP_PKEY_CTX  *ctx;

    pkey = NULL;
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);

    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1
        || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
    {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }

    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);

    return pkey;
}


static EVP_PKEY *
zgw_jwk_rsa(const json_t *jwk, const char *label, zgw_errors_t *errs)
{
    long             nlen, elen;
    BIGNUM          *n, *e;
    EVP_PKEY        *pkey;
    OSSL_PARAM_BLD  *bld;
    unsigned char    nbuf[ZGW_JWT_RSA_MAX_BYTES], ebuf[ZGW_JWT_RSA_MAX_BYTES];

    nlen = zgw_jwk_member(jwk, "n", nbuf, sizeof(nbuf), label, errs);
    elen = zgw_jwk_member(jwk, "e", ebuf, sizeof(ebuf), label, errs);
    if (nlen < 0 || elen < 0) {
        return NULL;
    }

    pkey = NULL;
    n = BN_bin2bn(nbuf, (int) nlen, NULL);
    e = BN_bin2bn(ebuf, (int) elen, NULL);
    bld = OSSL_PARAM_BLD_new();

    if (n != NULL && e != NULL && bld != NULL
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) == 1
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) == 1)
    {
        pkey = zgw_jwk_fromdata("RSA", bld);
    }

    if (pkey == NULL) {
        ERR_clear_error();
        zgw_errors_add(errs, "jwt: %s: \"n\" and \"e\" are not an RSA "
                       "public key", label);
    }

    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);

    return pkey;
}


static EVP_PKEY *
zgw_jwk_ec(const zgw_jwt_alg_t *alg, const json_t *jwk, const char *label,
    zgw_errors_t *errs)
{
    long             xlen, ylen;
    char             echo[ZGW_JWT_ECHO_MAX + 4];
    EVP_PKEY        *pkey;
    const char      *crv;
    OSSL_PARAM_BLD  *bld;
    unsigned char    x[48], y[48], pub[1 + 2 * 48];

    crv = json_string_value(json_object_get(jwk, "crv"));
    if (crv == NULL) {
        zgw_errors_add(errs, "jwt: %s has no \"crv\" (alg %s needs \"%s\")",
                       label, alg->name, alg->crv);
        return NULL;
    }

    if (strcmp(crv, alg->crv) != 0) {
        zgw_jwt_echo(echo, sizeof(echo), crv);
        zgw_errors_add(errs, "jwt: %s is an EC key on %s, alg %s needs %s",
                       label, echo, alg->name, alg->crv);
        return NULL;
    }

    /* RFC 7518 6.2.1.2: each coordinate is the curve's full size */
    xlen = zgw_jwk_member(jwk, "x", x, sizeof(x), label, errs);
    ylen = zgw_jwk_member(jwk, "y", y, sizeof(y), label, errs);
    if (xlen < 0 || ylen < 0) {
        return NULL;
    }

    if ((size_t) xlen != alg->coord || (size_t) ylen != alg->coord) {
        zgw_errors_add(errs, "jwt: %s: \"x\" and \"y\" must each be %zu "
                       "bytes for %s", label, alg->coord, alg->crv);
        return NULL;
    }

    pub[0] = 0x04;      /* uncompressed point */
    memcpy(pub + 1, x, alg->coord);
    memcpy(pub + 1 + alg->coord, y, alg->coord);

    pkey = NULL;
    bld = OSSL_PARAM_BLD_new();

    if (bld != NULL
        && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                           alg->group, 0) == 1
        && OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                            pub, 1 + 2 * alg->coord) == 1)
    {
        pkey = zgw_jwk_fromdata("EC", bld);
    }

    OSSL_PARAM_BLD_free(bld);

    if (pkey == NULL) {
        ERR_clear_error();
        zgw_errors_add(errs, "jwt: %s: \"x\" and \"y\" are not a point on "
                       "%s", label, alg->crv);
    }

    return pkey;
}


/* members of a JWK that only a private key has (RFC 7518 6.2.2, 6.3.2) */
static const char  *zgw_jwk_private[] = {
    "d", "p", "q", "dp", "dq", "qi", "oth", "k", NULL
};


/* one JWK into v->keys[v->nkeys]; ZGW_ERROR with every problem added */
static int
zgw_jwk_load(zgw_jwt_verifier_t *v, const json_t *jwk, size_t index,
    zgw_errors_t *errs)
{
    int           i;
    char          label[ZGW_JWT_LABEL_MAX], echo[ZGW_JWT_ECHO_MAX + 4];
    json_t       *kid_json;
    EVP_PKEY     *pkey;
    const char   *kid, *kty, *use, *alg, *want;

    if (!json_is_object(jwk)) {
        zgw_errors_add(errs, "jwt: jwks key %zu is not a JSON object",
                       index + 1);
        return ZGW_ERROR;
    }

    kid = NULL;
    kid_json = json_object_get(jwk, "kid");
    if (kid_json != NULL) {
        kid = json_string_value(kid_json);
        if (kid == NULL) {
            zgw_errors_add(errs, "jwt: jwks key %zu: \"kid\" must be a "
                           "string", index + 1);
            return ZGW_ERROR;
        }
    }

    zgw_jwt_key_label(label, sizeof(label), kid, index);

    for (i = 0; zgw_jwk_private[i] != NULL; i++) {
        if (json_object_get(jwk, zgw_jwk_private[i]) != NULL) {
            zgw_errors_add(errs, "jwt: %s holds private key material "
                           "(\"%s\"): put only public keys in a jwks",
                           label, zgw_jwk_private[i]);
            return ZGW_ERROR;
        }
    }

    use = json_string_value(json_object_get(jwk, "use"));
    if (json_object_get(jwk, "use") != NULL
        && (use == NULL || strcmp(use, "sig") != 0))
    {
        zgw_jwt_echo(echo, sizeof(echo), use ? use : "(not a string)");
        zgw_errors_add(errs, "jwt: %s has \"use\" '%s': a key that verifies "
                       "tokens has \"use\": \"sig\" or none", label, echo);
        return ZGW_ERROR;
    }

    alg = json_string_value(json_object_get(jwk, "alg"));
    if (json_object_get(jwk, "alg") != NULL
        && (alg == NULL || strcmp(alg, v->alg->name) != 0))
    {
        zgw_jwt_echo(echo, sizeof(echo), alg ? alg : "(not a string)");
        zgw_errors_add(errs, "jwt: %s has \"alg\" '%s', the definition pins "
                       "%s", label, echo, v->alg->name);
        return ZGW_ERROR;
    }

    want = v->alg->family == ZGW_JWT_EC ? "EC" : "RSA";

    kty = json_string_value(json_object_get(jwk, "kty"));
    if (kty == NULL) {
        zgw_errors_add(errs, "jwt: %s has no \"kty\" (alg %s needs \"%s\")",
                       label, v->alg->name, want);
        return ZGW_ERROR;
    }

    if (strcmp(kty, want) != 0) {
        if (strcmp(kty, "RSA") == 0 || strcmp(kty, "EC") == 0) {
            zgw_errors_add(errs, "jwt: %s is an %s key, alg %s needs %s",
                           label, kty, v->alg->name, want);
        } else {
            zgw_jwt_echo(echo, sizeof(echo), kty);
            zgw_errors_add(errs, "jwt: %s has kty '%s', alg %s needs kty %s",
                           label, echo, v->alg->name, want);
        }
        return ZGW_ERROR;
    }

    if (v->alg->family == ZGW_JWT_EC) {
        pkey = zgw_jwk_ec(v->alg, jwk, label, errs);
    } else {
        pkey = zgw_jwk_rsa(jwk, label, errs);
    }

    if (pkey == NULL) {
        return ZGW_ERROR;
    }

    if (zgw_jwt_key_check(v->alg, pkey, label, errs) != ZGW_OK) {
        EVP_PKEY_free(pkey);
        return ZGW_ERROR;
    }

    if (kid != NULL) {
        v->keys[v->nkeys].kid = strdup(kid);
        if (v->keys[v->nkeys].kid == NULL) {
            zgw_errors_add(errs, "jwt: out of memory");
            EVP_PKEY_free(pkey);
            return ZGW_ERROR;
        }
    }

    v->keys[v->nkeys].pkey = pkey;
    v->nkeys++;

    return ZGW_OK;
}


static int
zgw_jwks_load(zgw_jwt_verifier_t *v, const char *text, zgw_errors_t *errs)
{
    int            rc;
    char           echo[ZGW_JWT_ECHO_MAX + 4];
    size_t         i, j, n;
    json_t        *doc, *keys;
    json_error_t   jerr;

    doc = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        zgw_errors_add(errs, "jwt: jwks is not JSON: %s (line %d, column "
                       "%d)", jerr.text, jerr.line, jerr.column);
        return ZGW_ERROR;
    }

    keys = json_object_get(doc, "keys");
    if (!json_is_object(doc) || !json_is_array(keys)) {
        zgw_errors_add(errs, "jwt: jwks must be a JSON object with a "
                       "\"keys\" array (RFC 7517 5)");
        json_decref(doc);
        return ZGW_ERROR;
    }

    n = json_array_size(keys);
    if (n == 0 || n > ZGW_JWT_JWKS_MAX) {
        zgw_errors_add(errs, "jwt: jwks has %zu keys; it must have 1 to %d",
                       n, ZGW_JWT_JWKS_MAX);
        json_decref(doc);
        return ZGW_ERROR;
    }

    /* every key is checked, so that every problem is told at once */
    rc = ZGW_OK;
    for (i = 0; i < n; i++) {
        if (zgw_jwk_load(v, json_array_get(keys, i), i, errs) != ZGW_OK) {
            rc = ZGW_ERROR;
        }
    }

    json_decref(doc);

    if (rc != ZGW_OK) {
        return ZGW_ERROR;
    }

    for (i = 0; i < v->nkeys; i++) {
        for (j = i + 1; j < v->nkeys; j++) {
            if (v->keys[i].kid != NULL && v->keys[j].kid != NULL
                && strcmp(v->keys[i].kid, v->keys[j].kid) == 0)
            {
                zgw_jwt_echo(echo, sizeof(echo), v->keys[i].kid);
                zgw_errors_add(errs, "jwt: jwks keys %zu and %zu have the "
                               "same kid '%s'", i + 1, j + 1, echo);
                return ZGW_ERROR;
            }
        }
    }

    return ZGW_OK;
}


static EVP_MAC_CTX *
zgw_jwt_mac_new(const zgw_jwt_alg_t *alg, const unsigned char *secret,
    size_t len)
{
    EVP_MAC      *mac;
    OSSL_PARAM    params[2];
    EVP_MAC_CTX  *ctx;

    mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) {
        return NULL;
    }

    ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);
    if (ctx == NULL) {
        return NULL;
    }

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) alg->digest, 0);
    params[1] = OSSL_PARAM_construct_end();

    if (EVP_MAC_init(ctx, secret, len, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }

    return ctx;
}


/* ------------------------------------------------------------ verifier */

zgw_jwt_verifier_t *
zgw_jwt_verifier_new(const zgw_jwt_policy_t *policy,
    const unsigned char *secret, size_t secret_len, const char *public_pem,
    const char *jwks, zgw_errors_t *errs)
{
    size_t               i;
    const json_t        *a;
    zgw_jwt_verifier_t  *v;
    const zgw_jwt_alg_t *alg;

    if (policy == NULL || (int) policy->alg < 0
        || policy->alg >= ZGW_JWT_ALG_MAX)
    {
        zgw_errors_add(errs, "jwt: unknown algorithm (expected one of "
                       "HS256, HS384, HS512, RS256, RS384, RS512, PS256, "
                       "ES256, ES384)");
        return NULL;
    }

    alg = &zgw_jwt_algs[policy->alg];

    if (policy->leeway < 0 || policy->leeway > 86400) {
        zgw_errors_add(errs, "jwt: leeway %lld is out of range 0-86400 "
                       "seconds", policy->leeway);
        return NULL;
    }

    if (policy->aud != NULL) {
        if (json_is_array(policy->aud)) {
            if (json_array_size(policy->aud) == 0) {
                zgw_errors_add(errs, "jwt: aud is an empty list: name at "
                               "least one audience, or leave aud out");
                return NULL;
            }
            for (i = 0; i < json_array_size(policy->aud); i++) {
                a = json_array_get(policy->aud, i);
                if (!json_is_string(a)) {
                    zgw_errors_add(errs, "jwt: aud must be a string or a "
                                   "list of strings");
                    return NULL;
                }
            }

        } else if (!json_is_string(policy->aud)) {
            zgw_errors_add(errs, "jwt: aud must be a string or a list of "
                           "strings");
            return NULL;
        }
    }

    if (alg->family == ZGW_JWT_HMAC) {
        if (public_pem != NULL || jwks != NULL) {
            zgw_errors_add(errs, "jwt: alg %s verifies with a shared "
                           "secret: give a secret, not a public_key or a "
                           "jwks", alg->name);
            return NULL;
        }

        if (secret == NULL || secret_len == 0) {
            zgw_errors_add(errs, "jwt: alg %s needs a secret", alg->name);
            return NULL;
        }

        if (secret_len < alg->hash_len) {
            zgw_errors_add(errs, "jwt: the secret is %zu bytes, alg %s needs "
                           "at least %zu (RFC 7518 3.2): use %zu or more "
                           "random bytes", secret_len, alg->name,
                           alg->hash_len, alg->hash_len);
            return NULL;
        }

    } else {
        if (secret != NULL || secret_len != 0) {
            zgw_errors_add(errs, "jwt: alg %s verifies with a public key: "
                           "give a public_key or a jwks, not a secret",
                           alg->name);
            return NULL;
        }

        if ((public_pem == NULL) == (jwks == NULL)) {
            zgw_errors_add(errs, "jwt: alg %s needs exactly one of "
                           "public_key (PEM) and jwks", alg->name);
            return NULL;
        }
    }

    v = calloc(1, sizeof(zgw_jwt_verifier_t));
    if (v == NULL) {
        zgw_errors_add(errs, "jwt: out of memory");
        return NULL;
    }

    v->alg = alg;
    v->leeway = policy->leeway;
    v->require_exp = policy->require_exp;
    v->max_age = policy->max_age;

    if (policy->iss != NULL) {
        v->iss = strdup(policy->iss);
        if (v->iss == NULL) {
            zgw_errors_add(errs, "jwt: out of memory");
            goto failed;
        }
    }

    if (policy->aud != NULL) {
        v->aud = json_deep_copy(policy->aud);
        if (v->aud == NULL) {
            zgw_errors_add(errs, "jwt: out of memory");
            goto failed;
        }
    }

    if (alg->family == ZGW_JWT_HMAC) {
        v->mac = zgw_jwt_mac_new(alg, secret, secret_len);
        if (v->mac == NULL) {
            ERR_clear_error();
            zgw_errors_add(errs, "jwt: OpenSSL cannot set up HMAC-%s",
                           alg->digest);
            goto failed;
        }

    } else if (public_pem != NULL) {
        v->keys[0].pkey = zgw_jwt_pem_load(alg, public_pem, errs);
        if (v->keys[0].pkey == NULL) {
            goto failed;
        }
        v->nkeys = 1;

    } else {
        v->jwks = 1;
        if (zgw_jwks_load(v, jwks, errs) != ZGW_OK) {
            goto failed;
        }
    }

    return v;

failed:

    zgw_jwt_verifier_free(v);
    return NULL;
}


void
zgw_jwt_verifier_free(zgw_jwt_verifier_t *v)
{
    size_t  i;

    if (v == NULL) {
        return;
    }

    for (i = 0; i < v->nkeys; i++) {
        free(v->keys[i].kid);
        EVP_PKEY_free(v->keys[i].pkey);
    }

    EVP_MAC_CTX_free(v->mac);
    json_decref(v->aud);
    free(v->iss);
    free(v);
}


/* ---------------------------------------------------------- signatures */

static int
zgw_jwt_verify_hmac(const zgw_jwt_verifier_t *v, const char *msg,
    size_t mlen, const unsigned char *sig, size_t slen)
{
    int             ok;
    size_t          n;
    EVP_MAC_CTX    *ctx;
    unsigned char   mac[EVP_MAX_MD_SIZE];

    if (slen != v->alg->hash_len) {
        return 0;
    }

    ctx = EVP_MAC_CTX_dup(v->mac);
    if (ctx == NULL) {
        return 0;
    }

    ok = EVP_MAC_update(ctx, (const unsigned char *) msg, mlen) == 1
         && EVP_MAC_final(ctx, mac, &n, sizeof(mac)) == 1
         && n == slen
         && CRYPTO_memcmp(mac, sig, slen) == 0;

    EVP_MAC_CTX_free(ctx);
    OPENSSL_cleanse(mac, sizeof(mac));

    return ok;
}


/* one DER INTEGER of the big-endian unsigned value v (n bytes) at p */
static size_t
zgw_jwt_der_int(unsigned char *p, const unsigned char *v, size_t n)
{
    size_t  pad;

    while (n > 1 && v[0] == 0) {
        v++;
        n--;
    }

    pad = (v[0] & 0x80) ? 1 : 0;

    p[0] = 0x02;
    p[1] = (unsigned char) (n + pad);
    p[2] = 0x00;
    memcpy(p + 2 + pad, v, n);

    return 2 + pad + n;
}


/*
 * JWS ECDSA signatures are r || s, each the curve's size (RFC 7518 3.4);
 * OpenSSL verifies the DER ECDSA-Sig-Value. At most 48 bytes each, the
 * sequence is under 128 bytes: short-form lengths only.
 */
static size_t
zgw_jwt_ec_der(unsigned char *der, const unsigned char *sig, size_t coord)
{
    size_t  n;

    n = 2;
    n += zgw_jwt_der_int(der + n, sig, coord);
    n += zgw_jwt_der_int(der + n, sig + coord, coord);

    der[0] = 0x30;
    der[1] = (unsigned char) (n - 2);

    return n;
}


static int
zgw_jwt_verify_pkey(const zgw_jwt_alg_t *alg, EVP_PKEY *pkey,
    const char *msg, size_t mlen, const unsigned char *sig, size_t slen)
{
    int            ok;
    size_t         dlen;
    EVP_MD_CTX    *md;
    EVP_PKEY_CTX  *pctx;
    unsigned char  der[2 * (2 + 1 + 48) + 2];

    if (alg->family == ZGW_JWT_EC) {
        if (slen != 2 * alg->coord) {
            return 0;
        }
        dlen = zgw_jwt_ec_der(der, sig, alg->coord);
        sig = der;
        slen = dlen;

    } else if (EVP_PKEY_get_size(pkey) <= 0
               || slen != (size_t) EVP_PKEY_get_size(pkey))
    {
        return 0;
    }

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return 0;
    }

    pctx = NULL;
    ok = EVP_DigestVerifyInit_ex(md, &pctx, alg->digest, NULL, NULL, pkey,
                                 NULL) == 1;

    if (ok && alg->family == ZGW_JWT_PSS) {
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0
             && EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx,
                                                 RSA_PSS_SALTLEN_DIGEST) > 0
             && EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, alg->digest,
                                                  NULL) > 0;

    } else if (ok && alg->family == ZGW_JWT_RSA) {
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0;
    }

    ok = ok && EVP_DigestVerify(md, sig, slen, (const unsigned char *) msg,
                                mlen) == 1;

    EVP_MD_CTX_free(md);

    return ok;
}


/* ---------------------------------------------------------------- claims */

static long long
zgw_jwt_add(long long a, long long b)
{
    long long  r;

    if (__builtin_add_overflow(a, b, &r)) {
        return b > 0 ? LLONG_MAX : LLONG_MIN;
    }

    return r;
}


/*
 * A NumericDate claim (RFC 7519 2): an integer, or a real rounded toward
 * the stricter answer (down for exp and iat, up for nbf), saturated to the
 * range of long long. ZGW_ERROR when the value is not a number.
 */
static int
zgw_jwt_date(const json_t *j, int up, long long *out)
{
    double     d;
    long long  t;

    if (json_is_integer(j)) {
        *out = (long long) json_integer_value(j);
        return ZGW_OK;
    }

    if (!json_is_real(j)) {
        return ZGW_ERROR;
    }

    /* without libm: truncated, then moved toward the stricter side */
    d = json_real_value(j);

    if (d != d) {
        return ZGW_ERROR;
    }

    if (d >= 9.2e18) {
        *out = LLONG_MAX;

    } else if (d <= -9.2e18) {
        *out = LLONG_MIN;

    } else {
        t = (long long) d;
        if (up && (double) t < d) {
            t++;
        } else if (!up && (double) t > d) {
            t--;
        }
        *out = t;
    }

    return ZGW_OK;
}


/* whether the string s is the policy's aud or one of its list */
static int
zgw_jwt_aud_allowed(const json_t *aud, const char *s)
{
    size_t        i;
    const char   *a;

    if (json_is_string(aud)) {
        return strcmp(json_string_value(aud), s) == 0;
    }

    for (i = 0; i < json_array_size(aud); i++) {
        a = json_string_value(json_array_get(aud, i));
        if (a != NULL && strcmp(a, s) == 0) {
            return 1;
        }
    }

    return 0;
}


static int
zgw_jwt_claims_check(const zgw_jwt_verifier_t *v, const json_t *claims,
    long long now, zgw_jwt_claims_t *out, const char **reason)
{
    int           match;
    size_t        i;
    json_t       *exp, *nbf, *iat, *iss, *aud, *sub, *a;
    long long     t_exp, t_nbf, t_iat;

    exp = json_object_get(claims, "exp");
    nbf = json_object_get(claims, "nbf");
    iat = json_object_get(claims, "iat");
    iss = json_object_get(claims, "iss");
    aud = json_object_get(claims, "aud");
    sub = json_object_get(claims, "sub");

    /* the types first: a claim of the wrong type is a malformed token */

    t_exp = 0;
    t_nbf = 0;
    t_iat = 0;

    if ((exp != NULL && zgw_jwt_date(exp, 0, &t_exp) != ZGW_OK)
        || (nbf != NULL && zgw_jwt_date(nbf, 1, &t_nbf) != ZGW_OK)
        || (iat != NULL && zgw_jwt_date(iat, 0, &t_iat) != ZGW_OK)
        || (iss != NULL && !json_is_string(iss))
        || (sub != NULL && !json_is_string(sub)))
    {
        *reason = "malformed claim";
        return ZGW_ERROR;
    }

    if (aud != NULL && !json_is_string(aud)) {
        if (!json_is_array(aud)) {
            *reason = "malformed claim";
            return ZGW_ERROR;
        }
        for (i = 0; i < json_array_size(aud); i++) {
            if (!json_is_string(json_array_get(aud, i))) {
                *reason = "malformed claim";
                return ZGW_ERROR;
            }
        }
    }

    /* then time: exp is exclusive, nbf inclusive (RFC 7519 4.1.4, 4.1.5) */

    if (exp == NULL) {
        if (v->require_exp) {
            *reason = "missing exp";
            return ZGW_ERROR;
        }

    } else if (now >= zgw_jwt_add(t_exp, v->leeway)) {
        *reason = "expired";
        return ZGW_ERROR;
    }

    if (nbf != NULL && zgw_jwt_add(now, v->leeway) < t_nbf) {
        *reason = "not yet valid";
        return ZGW_ERROR;
    }

    if (v->max_age > 0) {
        if (iat == NULL) {
            *reason = "missing iat";
            return ZGW_ERROR;
        }

        if (now > zgw_jwt_add(zgw_jwt_add(t_iat, v->max_age), v->leeway)) {
            *reason = "issued too long ago";
            return ZGW_ERROR;
        }
    }

    /* then who it is from and for */

    if (v->iss != NULL
        && (iss == NULL || strcmp(json_string_value(iss), v->iss) != 0))
    {
        *reason = "wrong issuer";
        return ZGW_ERROR;
    }

    if (v->aud != NULL) {
        match = 0;

        if (json_is_string(aud)) {
            match = zgw_jwt_aud_allowed(v->aud, json_string_value(aud));

        } else {
            for (i = 0; !match && i < json_array_size(aud); i++) {
                a = json_array_get(aud, i);
                match = zgw_jwt_aud_allowed(v->aud, json_string_value(a));
            }
        }

        if (!match) {
            *reason = "wrong audience";
            return ZGW_ERROR;
        }
    }

    /* what a cache may rely on: no overflow when a leeway is added */

    out->exp = exp == NULL ? 0 : t_exp < ZGW_JWT_TIME_MAX ? t_exp
               : ZGW_JWT_TIME_MAX;
    out->valid_until = ZGW_JWT_TIME_MAX;

    if (exp != NULL) {
        out->valid_until = zgw_jwt_add(t_exp, v->leeway);
    }

    if (v->max_age > 0) {
        t_iat = zgw_jwt_add(zgw_jwt_add(zgw_jwt_add(t_iat, v->max_age),
                                        v->leeway), 1);
        if (t_iat < out->valid_until) {
            out->valid_until = t_iat;
        }
    }

    if (out->valid_until > ZGW_JWT_TIME_MAX) {
        out->valid_until = ZGW_JWT_TIME_MAX;
    }

    return ZGW_OK;
}


/* -------------------------------------------------------------- verify */

int
zgw_jwt_verify(const zgw_jwt_verifier_t *v, const char *token, size_t len,
    long long now, zgw_jwt_claims_t *out, const char **reason)
{
    long                 hlen, plen, slen;
    size_t               i, seg[2], signed_len;
    json_t              *header, *claims, *j;
    EVP_PKEY            *pkey;
    const char          *kid, *dummy, *s;
    json_error_t         jerr;
    zgw_jwt_claims_t     res;
    unsigned char        buf[ZGW_JWT_TOKEN_MAX / 4 * 3 + 3];
    unsigned char       *hbuf, *pbuf, *sbuf;

    if (reason == NULL) {
        reason = &dummy;
    }

    if (out != NULL) {
        out->claims = NULL;
        out->sub = NULL;
        out->exp = 0;
        out->valid_until = 0;
    }

    if (v == NULL) {
        *reason = "no verifier";
        return ZGW_ERROR;
    }

    /* the size before anything else */

    if (len > ZGW_JWT_TOKEN_MAX) {
        *reason = "token too large";
        return ZGW_ERROR;
    }

    if (token == NULL || len == 0) {
        *reason = "malformed token";
        return ZGW_ERROR;
    }

    /* header.payload.signature: exactly two dots, no empty segment */

    s = memchr(token, '.', len);
    if (s == NULL) {
        *reason = "malformed token";
        return ZGW_ERROR;
    }
    seg[0] = (size_t) (s - token);

    s = memchr(s + 1, '.', len - seg[0] - 1);
    if (s == NULL) {
        *reason = "malformed token";
        return ZGW_ERROR;
    }
    seg[1] = (size_t) (s - token);

    if (memchr(s + 1, '.', len - seg[1] - 1) != NULL
        || seg[0] == 0 || seg[1] == seg[0] + 1 || seg[1] + 1 == len)
    {
        *reason = "malformed token";
        return ZGW_ERROR;
    }

    /* all three decoded into buf: together at most 3/4 of the token */

    hbuf = buf;
    hlen = zgw_b64url_decode(hbuf, sizeof(buf), token, seg[0]);
    if (hlen <= 0) {
        *reason = "malformed token";
        return ZGW_ERROR;
    }

    pbuf = hbuf + hlen;
    plen = zgw_b64url_decode(pbuf, sizeof(buf) - (size_t) hlen,
                             token + seg[0] + 1, seg[1] - seg[0] - 1);
    if (plen <= 0) {
        *reason = "malformed token";
        return ZGW_ERROR;
    }

    sbuf = pbuf + plen;
    slen = zgw_b64url_decode(sbuf, sizeof(buf) - (size_t) (hlen + plen),
                             token + seg[1] + 1, len - seg[1] - 1);
    if (slen <= 0) {
        *reason = "malformed token";
        return ZGW_ERROR;
    }

    signed_len = seg[1];

    /* the header: the pinned algorithm, no crit, the key */

    header = json_loadb((const char *) hbuf, (size_t) hlen,
                        JSON_REJECT_DUPLICATES, &jerr);
    if (header == NULL || !json_is_object(header)) {
        json_decref(header);
        *reason = "malformed token";
        return ZGW_ERROR;
    }

    j = json_object_get(header, "alg");
    if (j != NULL && !json_is_string(j)) {
        json_decref(header);
        *reason = "malformed token";
        return ZGW_ERROR;
    }

    if (j == NULL || strcmp(json_string_value(j), v->alg->name) != 0) {
        json_decref(header);
        *reason = "algorithm not allowed";
        return ZGW_ERROR;
    }

    /*
     * RFC 7515 4.1.11: a recipient must understand every extension crit
     * lists; we understand none (b64 included).
     */
    if (json_object_get(header, "crit") != NULL) {
        json_decref(header);
        *reason = "unsupported critical header";
        return ZGW_ERROR;
    }

    j = json_object_get(header, "kid");
    if (j != NULL && !json_is_string(j)) {
        json_decref(header);
        *reason = "malformed token";
        return ZGW_ERROR;
    }
    kid = json_string_value(j);

    pkey = NULL;

    if (v->alg->family != ZGW_JWT_HMAC) {
        if (!v->jwks) {
            /* a definition with one PEM key: any kid names that key */
            pkey = v->keys[0].pkey;

        } else if (kid == NULL) {
            if (v->nkeys != 1) {
                json_decref(header);
                *reason = "missing key id";
                return ZGW_ERROR;
            }
            pkey = v->keys[0].pkey;

        } else {
            for (i = 0; i < v->nkeys; i++) {
                if (v->keys[i].kid != NULL
                    && strcmp(v->keys[i].kid, kid) == 0)
                {
                    pkey = v->keys[i].pkey;
                    break;
                }
            }

            if (pkey == NULL) {
                json_decref(header);
                *reason = "unknown key id";
                return ZGW_ERROR;
            }
        }
    }

    json_decref(header);

    /* the signature, over the first two segments as they are */

    if (v->alg->family == ZGW_JWT_HMAC) {
        if (!zgw_jwt_verify_hmac(v, token, signed_len, sbuf, (size_t) slen))
        {
            ERR_clear_error();
            *reason = "bad signature";
            return ZGW_ERROR;
        }

    } else if (!zgw_jwt_verify_pkey(v->alg, pkey, token, signed_len, sbuf,
                                    (size_t) slen))
    {
        ERR_clear_error();
        *reason = "bad signature";
        return ZGW_ERROR;
    }

    /* the payload, signed by the key's holder, is still checked */

    claims = json_loadb((const char *) pbuf, (size_t) plen,
                        JSON_REJECT_DUPLICATES, &jerr);
    if (claims == NULL || !json_is_object(claims)) {
        json_decref(claims);
        *reason = "malformed token";
        return ZGW_ERROR;
    }

    if (zgw_jwt_claims_check(v, claims, now, &res, reason) != ZGW_OK) {
        json_decref(claims);
        return ZGW_ERROR;
    }

    if (out == NULL) {
        json_decref(claims);
        return ZGW_OK;
    }

    out->claims = claims;
    out->sub = json_string_value(json_object_get(claims, "sub"));
    out->exp = res.exp;
    out->valid_until = res.valid_until;

    return ZGW_OK;
}
