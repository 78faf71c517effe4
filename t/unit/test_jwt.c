/*
 * Unit tests: JWT verification (zgw_jwt).
 *
 * The keys are generated here and the tokens signed here, with OpenSSL
 * calls the verifier does not use (HMAC(), EVP_DigestSign, DER ECDSA
 * signatures turned into r || s with ECDSA_SIG, base64 through
 * EVP_EncodeBlock), so that a shared mistake cannot make both sides agree.
 */

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "zgw_test_util.h"

#include "zgw_jwt.h"


#define NOW  1700000000LL


static EVP_PKEY  *rsa_a, *rsa_b, *rsa_1024, *ec_256, *ec_384;
static int        pss_salt = 32;

static const unsigned char  secret64[] =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";


/* ------------------------------------------------------------- helpers */

static void *
xmalloc(size_t size)
{
    void  *p;

    p = malloc(size);
    if (p == NULL) {
        abort();
    }

    return p;
}


/* base64url without padding, from EVP_EncodeBlock's base64 */
static char *
b64url(const unsigned char *in, size_t len)
{
    int     n, i, o;
    char   *out;

    out = xmalloc(4 * ((len + 2) / 3) + 1);
    assert_non_null(out);

    n = EVP_EncodeBlock((unsigned char *) out, in, (int) len);
    for (i = 0, o = 0; i < n; i++) {
        if (out[i] == '=') {
            continue;
        }
        out[o++] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
    out[o] = '\0';

    return out;
}


static char *
b64url_str(const char *s)
{
    return b64url((const unsigned char *) s, strlen(s));
}


static char *
cat3(const char *a, const char *b, const char *c)
{
    char  *out;

    out = xmalloc(strlen(a) + strlen(b) + strlen(c) + 3);
    snprintf(out, strlen(a) + strlen(b) + strlen(c) + 3, "%s.%s.%s", a, b,
             c);

    return out;
}


static const char *
digest_of(zgw_jwt_alg_e alg)
{
    switch (alg) {
    case ZGW_JWT_HS384:
    case ZGW_JWT_RS384:
    case ZGW_JWT_ES384:
        return "SHA384";
    case ZGW_JWT_HS512:
    case ZGW_JWT_RS512:
        return "SHA512";
    default:
        return "SHA256";
    }
}


/* the raw JWS signature of input with alg, secret or key */
static unsigned char *
sign_raw(zgw_jwt_alg_e alg, const char *input, const unsigned char *secret,
    size_t secret_len, EVP_PKEY *pkey, size_t *sig_len)
{
    size_t               len, coord;
    EVP_MD_CTX          *md;
    ECDSA_SIG           *es;
    const BIGNUM        *r, *s;
    EVP_PKEY_CTX        *pctx;
    unsigned int         hlen;
    unsigned char       *sig, *raw;
    const EVP_MD        *evp_md;
    const unsigned char *p;

    evp_md = EVP_get_digestbyname(digest_of(alg));
    assert_non_null(evp_md);

    if (alg <= ZGW_JWT_HS512) {
        sig = xmalloc(EVP_MAX_MD_SIZE);
        assert_non_null(HMAC(evp_md, secret, (int) secret_len,
                             (const unsigned char *) input, strlen(input),
                             sig, &hlen));
        *sig_len = hlen;
        return sig;
    }

    md = EVP_MD_CTX_new();
    pctx = NULL;
    assert_int_equal(EVP_DigestSignInit(md, &pctx, evp_md, NULL, pkey), 1);

    if (alg == ZGW_JWT_PS256) {
        assert_true(EVP_PKEY_CTX_set_rsa_padding(pctx,
                                                 RSA_PKCS1_PSS_PADDING) > 0);
        assert_true(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, pss_salt) > 0);
        assert_true(EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) > 0);
    }

    assert_int_equal(EVP_DigestSign(md, NULL, &len,
                                    (const unsigned char *) input,
                                    strlen(input)), 1);
    sig = xmalloc(len);
    assert_int_equal(EVP_DigestSign(md, sig, &len,
                                    (const unsigned char *) input,
                                    strlen(input)), 1);
    EVP_MD_CTX_free(md);

    if (alg != ZGW_JWT_ES256 && alg != ZGW_JWT_ES384) {
        *sig_len = len;
        return sig;
    }

    /* DER ECDSA-Sig-Value -> r || s, each the curve's size */
    coord = alg == ZGW_JWT_ES256 ? 32 : 48;
    p = sig;
    es = d2i_ECDSA_SIG(NULL, &p, (long) len);
    assert_non_null(es);
    ECDSA_SIG_get0(es, &r, &s);
    raw = xmalloc(2 * coord);
    assert_int_equal(BN_bn2binpad(r, raw, (int) coord), (int) coord);
    assert_int_equal(BN_bn2binpad(s, raw + coord, (int) coord), (int) coord);
    ECDSA_SIG_free(es);
    free(sig);

    *sig_len = 2 * coord;
    return raw;
}


/* a compact token of the two JSON texts, signed with alg */
static char *
token_sign(zgw_jwt_alg_e alg, const char *header, const char *payload,
    const unsigned char *secret, size_t secret_len, EVP_PKEY *pkey)
{
    char           *h, *p, *input, *s, *tok;
    size_t          slen;
    unsigned char  *sig;

    h = b64url_str(header);
    p = b64url_str(payload);
    input = xmalloc(strlen(h) + strlen(p) + 2);
    snprintf(input, strlen(h) + strlen(p) + 2, "%s.%s", h, p);

    sig = sign_raw(alg, input, secret, secret_len, pkey, &slen);
    s = b64url(sig, slen);
    tok = cat3(h, p, s);

    free(h);
    free(p);
    free(input);
    free(sig);
    free(s);

    return tok;
}


/* {"alg":ALG,"typ":"JWT"} (and "kid" when given), signed */
static char *
token(zgw_jwt_alg_e alg, const char *kid, const char *payload,
    EVP_PKEY *pkey)
{
    char  header[128];

    if (kid != NULL) {
        snprintf(header, sizeof(header),
                 "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}",
                 zgw_jwt_alg_name(alg), kid);
    } else {
        snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\"}",
                 zgw_jwt_alg_name(alg));
    }

    return token_sign(alg, header, payload, secret64,
                      zgw_jwt_secret_min(alg), pkey);
}


static char *
pem_of(EVP_PKEY *pkey)
{
    BIO    *bio;
    char   *data, *out;
    long    n;

    bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, pkey), 1);
    n = BIO_get_mem_data(bio, &data);
    out = strndup(data, (size_t) n);
    BIO_free(bio);

    return out;
}


/* PKCS#1 "BEGIN RSA PUBLIC KEY" */
static char *
pem_pkcs1_of(EVP_PKEY *pkey)
{
    size_t             len;
    char              *out;
    unsigned char     *data;
    OSSL_ENCODER_CTX  *ctx;

    ctx = OSSL_ENCODER_CTX_new_for_pkey(pkey, EVP_PKEY_PUBLIC_KEY, "PEM",
                                        "type-specific", NULL);
    assert_non_null(ctx);
    data = NULL;
    assert_int_equal(OSSL_ENCODER_to_data(ctx, &data, &len), 1);
    OSSL_ENCODER_CTX_free(ctx);

    out = strndup((char *) data, len);
    OPENSSL_free(data);

    return out;
}


static char *
pem_private_of(EVP_PKEY *pkey)
{
    BIO    *bio;
    char   *data, *out;
    long    n;

    bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0,
                                              NULL, NULL), 1);
    n = BIO_get_mem_data(bio, &data);
    out = strndup(data, (size_t) n);
    BIO_free(bio);

    return out;
}


static char *
bn_b64url(EVP_PKEY *pkey, const char *param, int pad)
{
    int             n;
    char           *out;
    BIGNUM         *bn;
    unsigned char   buf[1024];

    bn = NULL;
    assert_int_equal(EVP_PKEY_get_bn_param(pkey, param, &bn), 1);
    n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    assert_true(n > 0);
    BN_free(bn);
    out = b64url(buf, (size_t) n);

    return out;
}


/* one JWK of the public key: {"kty":...,"kid":kid,...} (kid may be NULL) */
static char *
jwk_of(EVP_PKEY *pkey, const char *kid)
{
    int    coord;
    char  *a, *b, *out, kidm[64];

    out = xmalloc(4096);
    kidm[0] = '\0';
    if (kid != NULL) {
        snprintf(kidm, sizeof(kidm), ",\"kid\":\"%s\"", kid);
    }

    if (EVP_PKEY_is_a(pkey, "RSA")) {
        a = bn_b64url(pkey, OSSL_PKEY_PARAM_RSA_N, 0);
        b = bn_b64url(pkey, OSSL_PKEY_PARAM_RSA_E, 0);
        snprintf(out, 4096, "{\"kty\":\"RSA\"%s,\"use\":\"sig\",\"n\":\"%s\","
                 "\"e\":\"%s\"}", kidm, a, b);
    } else {
        coord = EVP_PKEY_get_bits(pkey) == 256 ? 32 : 48;
        a = bn_b64url(pkey, OSSL_PKEY_PARAM_EC_PUB_X, coord);
        b = bn_b64url(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, coord);
        snprintf(out, 4096, "{\"kty\":\"EC\"%s,\"crv\":\"%s\",\"x\":\"%s\","
                 "\"y\":\"%s\"}", kidm, coord == 32 ? "P-256" : "P-384",
                 a, b);
    }

    free(a);
    free(b);

    return out;
}


static char *
jwks_of2(const char *jwk1, const char *jwk2)
{
    char    *out;
    size_t   size;

    size = strlen(jwk1) + (jwk2 ? strlen(jwk2) : 0) + 32;
    out = xmalloc(size);
    snprintf(out, size, "{\"keys\":[%s%s%s]}", jwk1, jwk2 ? "," : "",
            jwk2 ? jwk2 : "");

    return out;
}


static zgw_jwt_policy_t
policy(zgw_jwt_alg_e alg)
{
    zgw_jwt_policy_t  p;

    memset(&p, 0, sizeof(p));
    p.alg = alg;
    p.require_exp = 1;

    return p;
}


static zgw_jwt_verifier_t *
hs_verifier(const zgw_jwt_policy_t *p)
{
    zgw_errors_t         errs;
    zgw_jwt_verifier_t  *v;

    zgw_errors_init(&errs);
    v = zgw_jwt_verifier_new(p, secret64, zgw_jwt_secret_min(p->alg), NULL,
                             NULL, &errs);
    zgw_test_print_errors(&errs);
    assert_non_null(v);
    zgw_errors_free(&errs);

    return v;
}


static zgw_jwt_verifier_t *
pem_verifier(const zgw_jwt_policy_t *p, EVP_PKEY *pkey)
{
    char                *pem;
    zgw_errors_t         errs;
    zgw_jwt_verifier_t  *v;

    zgw_errors_init(&errs);
    pem = pem_of(pkey);
    v = zgw_jwt_verifier_new(p, NULL, 0, pem, NULL, &errs);
    zgw_test_print_errors(&errs);
    assert_non_null(v);
    zgw_errors_free(&errs);
    free(pem);

    return v;
}


static zgw_jwt_verifier_t *
jwks_verifier(const zgw_jwt_policy_t *p, const char *jwks)
{
    zgw_errors_t         errs;
    zgw_jwt_verifier_t  *v;

    zgw_errors_init(&errs);
    v = zgw_jwt_verifier_new(p, NULL, 0, NULL, jwks, &errs);
    zgw_test_print_errors(&errs);
    assert_non_null(v);
    zgw_errors_free(&errs);

    return v;
}


/* NULL when accepted, else the reason */
static const char *
check_at(const zgw_jwt_verifier_t *v, const char *tok, long long now)
{
    int                rc;
    const char        *reason;
    zgw_jwt_claims_t   out;

    reason = NULL;
    rc = zgw_jwt_verify(v, tok, strlen(tok), now, &out, &reason);

    if (rc == ZGW_OK) {
        assert_non_null(out.claims);
        assert_true(json_is_object(out.claims));
        json_decref(out.claims);
        return NULL;
    }

    assert_int_equal(rc, ZGW_ERROR);
    assert_non_null(reason);
    assert_null(out.claims);

    return reason;
}


static const char *
check(const zgw_jwt_verifier_t *v, const char *tok)
{
    return check_at(v, tok, NOW);
}


static zgw_jwt_verifier_t *
build_fails(const zgw_jwt_policy_t *p, const unsigned char *secret,
    size_t secret_len, const char *pem, const char *jwks, const char *needle)
{
    zgw_errors_t         errs;
    zgw_jwt_verifier_t  *v;

    zgw_errors_init(&errs);
    v = zgw_jwt_verifier_new(p, secret, secret_len, pem, jwks, &errs);
    assert_null(v);
    assert_true(errs.n > 0);
    if (!zgw_test_errors_have(&errs, needle)) {
        print_message("    expected an error with '%s'\n", needle);
        zgw_test_print_errors(&errs);
        fail();
    }
    zgw_errors_free(&errs);

    return v;
}


#define VALID  "{\"sub\":\"alice\",\"exp\":1700000100,\"iat\":1699999990}"


/* --------------------------------------------------------------- setup */

static int
setup_keys(void **state)
{
    (void) state;

    rsa_a = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
    rsa_b = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
    rsa_1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 1024);
    ec_256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ec_384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");

    return rsa_a && rsa_b && rsa_1024 && ec_256 && ec_384 ? 0 : -1;
}


static int
teardown_keys(void **state)
{
    (void) state;

    EVP_PKEY_free(rsa_a);
    EVP_PKEY_free(rsa_b);
    EVP_PKEY_free(rsa_1024);
    EVP_PKEY_free(ec_256);
    EVP_PKEY_free(ec_384);

    return 0;
}


/* --------------------------------------------------------------- tests */

static void
test_algorithm_names_round_trip(void **state)
{
    int  i;

    (void) state;

    for (i = 0; i < ZGW_JWT_ALG_MAX; i++) {
        assert_int_equal(zgw_jwt_alg_parse(zgw_jwt_alg_name(i)), i);
    }

    assert_int_equal(zgw_jwt_alg_parse("none"), -1);
    assert_int_equal(zgw_jwt_alg_parse("hs256"), -1);
    assert_int_equal(zgw_jwt_alg_parse("ES512"), -1);
    assert_int_equal(zgw_jwt_alg_parse(""), -1);
    assert_int_equal(zgw_jwt_alg_parse(NULL), -1);
    assert_int_equal(zgw_jwt_secret_min(ZGW_JWT_HS256), 32);
    assert_int_equal(zgw_jwt_secret_min(ZGW_JWT_HS384), 48);
    assert_int_equal(zgw_jwt_secret_min(ZGW_JWT_HS512), 64);
    assert_int_equal(zgw_jwt_secret_min(ZGW_JWT_RS256), 0);
}


static void
test_each_algorithm_is_accepted(void **state)
{
    int                  i;
    char                *tok, *jwk, *jwks;
    EVP_PKEY            *key;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;

    (void) state;

    for (i = 0; i < ZGW_JWT_ALG_MAX; i++) {
        p = policy(i);
        key = i == ZGW_JWT_ES256 ? ec_256 : i == ZGW_JWT_ES384 ? ec_384
              : rsa_a;

        if (i <= ZGW_JWT_HS512) {
            v = hs_verifier(&p);
            tok = token(i, NULL, VALID, NULL);
            assert_null(check(v, tok));
            free(tok);
            zgw_jwt_verifier_free(v);
            continue;
        }

        /* from a PEM public key */
        v = pem_verifier(&p, key);
        tok = token(i, NULL, VALID, key);
        if (check(v, tok) != NULL) {
            print_message("    %s: %s\n", zgw_jwt_alg_name(i),
                          check(v, tok));
            fail();
        }
        free(tok);
        zgw_jwt_verifier_free(v);

        /* from a JWKS, the key named by kid */
        jwk = jwk_of(key, "k1");
        jwks = jwks_of2(jwk, NULL);
        v = jwks_verifier(&p, jwks);
        tok = token(i, "k1", VALID, key);
        assert_null(check(v, tok));
        free(tok);
        zgw_jwt_verifier_free(v);
        free(jwks);
        free(jwk);
    }
}


static void
test_pkcs1_rsa_public_key_is_accepted(void **state)
{
    char                *pem, *tok;
    zgw_errors_t         errs;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;

    (void) state;
    zgw_errors_init(&errs);
    p = policy(ZGW_JWT_RS256);

    pem = pem_pkcs1_of(rsa_a);
    assert_non_null(strstr(pem, "BEGIN RSA PUBLIC KEY"));
    v = zgw_jwt_verifier_new(&p, NULL, 0, pem, NULL, &errs);
    zgw_test_print_errors(&errs);
    assert_non_null(v);

    tok = token(ZGW_JWT_RS256, NULL, VALID, rsa_a);
    assert_null(check(v, tok));

    free(tok);
    free(pem);
    zgw_jwt_verifier_free(v);
    zgw_errors_free(&errs);
}


static void
test_claims_are_handed_back(void **state)
{
    int                  rc;
    char                *tok;
    const char          *reason;
    zgw_jwt_claims_t     out;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;

    (void) state;
    p = policy(ZGW_JWT_HS256);
    v = hs_verifier(&p);

    tok = token(ZGW_JWT_HS256, NULL, "{\"sub\":\"alice\",\"exp\":1700000100,"
                "\"role\":\"admin\"}", NULL);
    rc = zgw_jwt_verify(v, tok, strlen(tok), NOW, &out, &reason);
    assert_int_equal(rc, ZGW_OK);
    assert_string_equal(out.sub, "alice");
    assert_int_equal(out.exp, 1700000100LL);
    assert_string_equal(json_string_value(json_object_get(out.claims,
                                                          "role")),
                        "admin");
    json_decref(out.claims);
    free(tok);

    /* no sub, no exp (not required) */
    p.require_exp = 0;
    zgw_jwt_verifier_free(v);
    v = hs_verifier(&p);
    tok = token(ZGW_JWT_HS256, NULL, "{}", NULL);
    rc = zgw_jwt_verify(v, tok, strlen(tok), NOW, &out, &reason);
    assert_int_equal(rc, ZGW_OK);
    assert_null(out.sub);
    assert_int_equal(out.exp, 0);
    json_decref(out.claims);

    /* valid_until: exp + leeway, or iat + max_age + leeway + 1 */
    zgw_jwt_verifier_free(v);
    p.leeway = 5;
    p.max_age = 100;
    v = hs_verifier(&p);
    free(tok);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,"
                "\"iat\":1699999990}", NULL);
    assert_int_equal(zgw_jwt_verify(v, tok, strlen(tok), NOW, &out, &reason),
                     ZGW_OK);
    assert_int_equal(out.valid_until, 1699999990LL + 100 + 5 + 1);
    assert_string_equal(check_at(v, tok, out.valid_until),
                        "issued too long ago");
    assert_null(check_at(v, tok, out.valid_until - 1));
    json_decref(out.claims);
    free(tok);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000010,"
                "\"iat\":1699999990}", NULL);
    assert_int_equal(zgw_jwt_verify(v, tok, strlen(tok), NOW, &out, &reason),
                     ZGW_OK);
    assert_int_equal(out.valid_until, 1700000015LL);
    assert_string_equal(check_at(v, tok, out.valid_until), "expired");
    assert_null(check_at(v, tok, out.valid_until - 1));
    json_decref(out.claims);
    free(tok);

    /* far dates are capped, so that a caller may add a leeway */
    p.max_age = 0;
    zgw_jwt_verifier_free(v);
    v = hs_verifier(&p);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":9223372036854775807}", NULL);
    assert_int_equal(zgw_jwt_verify(v, tok, strlen(tok), NOW, &out, &reason),
                     ZGW_OK);
    assert_true(out.exp == ZGW_JWT_TIME_MAX);
    assert_true(out.valid_until == ZGW_JWT_TIME_MAX);
    json_decref(out.claims);

    /* the token is not NUL-terminated: only len bytes are read */
    assert_int_equal(zgw_jwt_verify(v, tok, strlen(tok) - 1, NOW, NULL,
                                    &reason), ZGW_ERROR);

    free(tok);
    zgw_jwt_verifier_free(v);
}


static void
test_expired_and_not_yet_valid_tokens_are_refused(void **state)
{
    char                *tok;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;

    (void) state;
    p = policy(ZGW_JWT_HS256);
    v = hs_verifier(&p);

    /* exp is exclusive: refused from the second it names */
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000000}", NULL);
    assert_string_equal(check(v, tok), "expired");
    assert_null(check_at(v, tok, NOW - 1));
    free(tok);

    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1600000000}", NULL);
    assert_string_equal(check(v, tok), "expired");
    free(tok);

    /* a real exp counts down: 1700000000.5 is over at 1700000000 */
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000000.5}", NULL);
    assert_string_equal(check(v, tok), "expired");
    assert_null(check_at(v, tok, NOW - 1));
    free(tok);

    /* nbf is inclusive */
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,"
                "\"nbf\":1700000001}", NULL);
    assert_string_equal(check(v, tok), "not yet valid");
    assert_null(check_at(v, tok, NOW + 1));
    free(tok);

    zgw_jwt_verifier_free(v);
}


static void
test_leeway_applies_to_both_sides(void **state)
{
    char                *tok;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;

    (void) state;
    p = policy(ZGW_JWT_HS256);
    p.leeway = 30;
    v = hs_verifier(&p);

    /* expired 29 s ago: within the leeway; 30 s ago: not */
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1699999971}", NULL);
    assert_null(check(v, tok));
    free(tok);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1699999970}", NULL);
    assert_string_equal(check(v, tok), "expired");
    free(tok);

    /* valid in 30 s: within the leeway; in 31 s: not */
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,"
                "\"nbf\":1700000030}", NULL);
    assert_null(check(v, tok));
    free(tok);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,"
                "\"nbf\":1700000031}", NULL);
    assert_string_equal(check(v, tok), "not yet valid");
    free(tok);

    /* huge values saturate instead of overflowing */
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":9223372036854775807,"
                "\"nbf\":-9223372036854775807}", NULL);
    assert_null(check(v, tok));
    free(tok);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1e300}", NULL);
    assert_null(check(v, tok));
    free(tok);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":-1e300}", NULL);
    assert_string_equal(check(v, tok), "expired");
    free(tok);

    zgw_jwt_verifier_free(v);
}


static void
test_missing_exp_follows_require_exp(void **state)
{
    char                *tok;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;

    (void) state;
    p = policy(ZGW_JWT_HS256);
    tok = token(ZGW_JWT_HS256, NULL, "{\"sub\":\"alice\"}", NULL);

    v = hs_verifier(&p);
    assert_string_equal(check(v, tok), "missing exp");
    zgw_jwt_verifier_free(v);

    p.require_exp = 0;
    v = hs_verifier(&p);
    assert_null(check(v, tok));
    zgw_jwt_verifier_free(v);

    free(tok);
}


static void
test_max_age_counts_from_iat(void **state)
{
    char                *tok;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;

    (void) state;
    p = policy(ZGW_JWT_HS256);
    p.max_age = 600;
    v = hs_verifier(&p);

    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,"
                "\"iat\":1699999400}", NULL);
    assert_null(check(v, tok));
    assert_string_equal(check_at(v, tok, NOW + 1), "issued too long ago");
    free(tok);

    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100}", NULL);
    assert_string_equal(check(v, tok), "missing iat");
    free(tok);

    zgw_jwt_verifier_free(v);

    /* with leeway */
    p.leeway = 10;
    v = hs_verifier(&p);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,"
                "\"iat\":1699999390}", NULL);
    assert_null(check(v, tok));
    assert_string_equal(check_at(v, tok, NOW + 1), "issued too long ago");
    free(tok);
    zgw_jwt_verifier_free(v);

    /* max_age 0: iat unchecked */
    p.max_age = 0;
    v = hs_verifier(&p);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,\"iat\":1}", NULL);
    assert_null(check(v, tok));
    free(tok);
    zgw_jwt_verifier_free(v);
}


static void
test_issuer_must_match(void **state)
{
    char                *tok;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;

    (void) state;
    p = policy(ZGW_JWT_HS256);
    p.iss = "https://id.example.com";
    v = hs_verifier(&p);

    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,"
                "\"iss\":\"https://id.example.com\"}", NULL);
    assert_null(check(v, tok));
    free(tok);

    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,"
                "\"iss\":\"https://evil.example.com\"}", NULL);
    assert_string_equal(check(v, tok), "wrong issuer");
    free(tok);

    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100}", NULL);
    assert_string_equal(check(v, tok), "wrong issuer");
    free(tok);

    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,\"iss\":1}", NULL);
    assert_string_equal(check(v, tok), "malformed claim");
    free(tok);

    zgw_jwt_verifier_free(v);
}


static void
test_audience_string_and_list(void **state)
{
    char                *tok;
    json_t              *aud;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;

    (void) state;
    p = policy(ZGW_JWT_HS256);

    /* the definition's aud is a string */
    aud = json_string("crm");
    p.aud = aud;
    v = hs_verifier(&p);
    json_decref(aud);           /* the verifier has its own copy */

    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,\"aud\":\"crm\"}",
                NULL);
    assert_null(check(v, tok));
    free(tok);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,"
                "\"aud\":[\"billing\",\"crm\"]}", NULL);
    assert_null(check(v, tok));
    free(tok);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,"
                "\"aud\":\"billing\"}", NULL);
    assert_string_equal(check(v, tok), "wrong audience");
    free(tok);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,\"aud\":[]}", NULL);
    assert_string_equal(check(v, tok), "wrong audience");
    free(tok);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100}", NULL);
    assert_string_equal(check(v, tok), "wrong audience");
    free(tok);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,"
                "\"aud\":[\"crm\",7]}", NULL);
    assert_string_equal(check(v, tok), "malformed claim");
    free(tok);
    zgw_jwt_verifier_free(v);

    /* the definition's aud is a list */
    aud = json_pack("[ss]", "crm", "erp");
    p.aud = aud;
    v = hs_verifier(&p);
    json_decref(aud);

    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,\"aud\":\"erp\"}",
                NULL);
    assert_null(check(v, tok));
    free(tok);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,"
                "\"aud\":[\"x\",\"crm\"]}", NULL);
    assert_null(check(v, tok));
    free(tok);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,"
                "\"aud\":[\"x\",\"y\"]}", NULL);
    assert_string_equal(check(v, tok), "wrong audience");
    free(tok);
    zgw_jwt_verifier_free(v);

    /* no aud in the definition: unchecked, but still typed */
    p.aud = NULL;
    v = hs_verifier(&p);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,\"aud\":\"x\"}",
                NULL);
    assert_null(check(v, tok));
    free(tok);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1700000100,\"aud\":{}}",
                NULL);
    assert_string_equal(check(v, tok), "malformed claim");
    free(tok);
    zgw_jwt_verifier_free(v);
}


static void
test_claim_types_are_checked(void **state)
{
    char                *tok;
    size_t               i;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;
    static const char   *bad[] = {
        "{\"exp\":\"1700000100\"}",
        "{\"exp\":1700000100,\"nbf\":null}",
        "{\"exp\":1700000100,\"iat\":true}",
        "{\"exp\":1700000100,\"sub\":42}",
        "{\"exp\":[1700000100]}",
    };

    (void) state;
    p = policy(ZGW_JWT_HS256);
    v = hs_verifier(&p);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tok = token(ZGW_JWT_HS256, NULL, bad[i], NULL);
        assert_string_equal(check(v, tok), "malformed claim");
        free(tok);
    }

    /* the payload must be an object, without duplicate members */
    tok = token(ZGW_JWT_HS256, NULL, "[1700000100]", NULL);
    assert_string_equal(check(v, tok), "malformed token");
    free(tok);
    tok = token(ZGW_JWT_HS256, NULL, "{\"exp\":1,\"exp\":1700000100}", NULL);
    assert_string_equal(check(v, tok), "malformed token");
    free(tok);

    zgw_jwt_verifier_free(v);
}


/* one character of the segment n (0, 1, 2) of tok changed */
static void
flip(char *tok, int seg, size_t at)
{
    char  *s;

    s = tok;
    while (seg-- > 0) {
        s = strchr(s, '.') + 1;
    }
    s[at] = s[at] == 'A' ? 'B' : 'A';
}


static void
test_tampered_payload_and_signature_are_refused(void **state)
{
    int                  i;
    char                *tok, *good, *evil, *h, *p2, *s;
    EVP_PKEY            *key;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;

    (void) state;

    for (i = 0; i < ZGW_JWT_ALG_MAX; i++) {
        p = policy(i);
        key = i == ZGW_JWT_ES256 ? ec_256 : i == ZGW_JWT_ES384 ? ec_384
              : rsa_a;
        v = i <= ZGW_JWT_HS512 ? hs_verifier(&p) : pem_verifier(&p, key);

        tok = token(i, NULL, VALID, key);
        flip(tok, 2, 5);
        assert_string_equal(check(v, tok), "bad signature");
        free(tok);

        tok = token(i, NULL, VALID, key);
        flip(tok, 1, 3);
        assert_string_equal(check(v, tok), "bad signature");
        free(tok);

        /* the payload replaced by another (valid) one */
        good = token(i, NULL, VALID, key);
        evil = b64url_str("{\"sub\":\"admin\",\"exp\":1700000100}");
        h = strndup(good, (size_t) (strchr(good, '.') - good));
        s = strrchr(good, '.') + 1;
        p2 = cat3(h, evil, s);
        assert_string_equal(check(v, p2), "bad signature");
        free(p2);
        free(h);
        free(evil);
        free(good);

        zgw_jwt_verifier_free(v);
    }
}


static void
test_alg_none_is_refused(void **state)
{
    char                *h, *pl, *tok;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;

    (void) state;
    p = policy(ZGW_JWT_HS256);
    v = hs_verifier(&p);

    h = b64url_str("{\"alg\":\"none\",\"typ\":\"JWT\"}");
    pl = b64url_str(VALID);

    /* unsecured JWS: empty signature */
    tok = xmalloc(strlen(h) + strlen(pl) + 3);
    snprintf(tok, strlen(h) + strlen(pl) + 3, "%s.%s.", h, pl);
    assert_string_equal(check(v, tok), "malformed token");
    free(tok);

    /* with some signature */
    tok = cat3(h, pl, "c2ln");
    assert_string_equal(check(v, tok), "algorithm not allowed");
    free(tok);

    free(h);
    h = b64url_str("{\"alg\":\"None\"}");
    tok = cat3(h, pl, "c2ln");
    assert_string_equal(check(v, tok), "algorithm not allowed");
    free(tok);

    /* no alg at all, or not a string */
    free(h);
    h = b64url_str("{\"typ\":\"JWT\"}");
    tok = cat3(h, pl, "c2ln");
    assert_string_equal(check(v, tok), "algorithm not allowed");
    free(tok);
    free(h);
    h = b64url_str("{\"alg\":[\"HS256\"]}");
    tok = cat3(h, pl, "c2ln");
    assert_string_equal(check(v, tok), "malformed token");
    free(tok);

    free(h);
    free(pl);
    zgw_jwt_verifier_free(v);
}


static void
test_rsa_pem_as_hmac_secret_is_refused(void **state)
{
    char                *pem, *tok;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;

    (void) state;
    p = policy(ZGW_JWT_RS256);
    pem = pem_of(rsa_a);
    v = pem_verifier(&p, rsa_a);

    /* the classic confusion: the public key's PEM as an HS256 secret */
    tok = token_sign(ZGW_JWT_HS256, "{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
                     VALID, (const unsigned char *) pem, strlen(pem), NULL);
    assert_string_equal(check(v, tok), "algorithm not allowed");
    free(tok);

    /* another asymmetric algorithm than the pinned one */
    tok = token(ZGW_JWT_RS512, NULL, VALID, rsa_a);
    assert_string_equal(check(v, tok), "algorithm not allowed");
    free(tok);
    tok = token(ZGW_JWT_PS256, NULL, VALID, rsa_a);
    assert_string_equal(check(v, tok), "algorithm not allowed");
    free(tok);

    /* PS256 with a salt other than the hash's length */
    zgw_jwt_verifier_free(v);
    p = policy(ZGW_JWT_PS256);
    v = pem_verifier(&p, rsa_a);
    tok = token(ZGW_JWT_PS256, NULL, VALID, rsa_a);
    assert_null(check(v, tok));
    free(tok);
    pss_salt = 20;
    tok = token(ZGW_JWT_PS256, NULL, VALID, rsa_a);
    pss_salt = 32;
    assert_string_equal(check(v, tok), "bad signature");
    free(tok);
    /* and an RS256 signature under PS256 */
    tok = token_sign(ZGW_JWT_RS256, "{\"alg\":\"PS256\"}", VALID, NULL, 0,
                     rsa_a);
    assert_string_equal(check(v, tok), "bad signature");
    free(tok);

    /* an HS256 verifier refuses RS256 */
    zgw_jwt_verifier_free(v);
    p = policy(ZGW_JWT_HS256);
    v = hs_verifier(&p);
    tok = token(ZGW_JWT_RS256, NULL, VALID, rsa_a);
    assert_string_equal(check(v, tok), "algorithm not allowed");
    free(tok);

    free(pem);
    zgw_jwt_verifier_free(v);
}


static void
test_kid_selects_the_jwks_key(void **state)
{
    char                *j1, *j2, *jwks, *tok;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;

    (void) state;
    p = policy(ZGW_JWT_RS256);
    j1 = jwk_of(rsa_a, "k1");
    j2 = jwk_of(rsa_b, "k2");
    jwks = jwks_of2(j1, j2);
    v = jwks_verifier(&p, jwks);

    tok = token(ZGW_JWT_RS256, "k1", VALID, rsa_a);
    assert_null(check(v, tok));
    free(tok);
    tok = token(ZGW_JWT_RS256, "k2", VALID, rsa_b);
    assert_null(check(v, tok));
    free(tok);

    /* signed by one key, naming the other */
    tok = token(ZGW_JWT_RS256, "k1", VALID, rsa_b);
    assert_string_equal(check(v, tok), "bad signature");
    free(tok);

    /* a kid not in the JWKS */
    tok = token(ZGW_JWT_RS256, "k3", VALID, rsa_a);
    assert_string_equal(check(v, tok), "unknown key id");
    free(tok);

    /* no kid, two keys: refused even when signed by one of them */
    tok = token(ZGW_JWT_RS256, NULL, VALID, rsa_a);
    assert_string_equal(check(v, tok), "missing key id");
    free(tok);

    /* kid not a string */
    tok = token_sign(ZGW_JWT_RS256, "{\"alg\":\"RS256\",\"kid\":1}", VALID,
                     NULL, 0, rsa_a);
    assert_string_equal(check(v, tok), "malformed token");
    free(tok);

    zgw_jwt_verifier_free(v);
    free(jwks);

    /* one key without kid: a token without kid uses it */
    free(j1);
    j1 = jwk_of(rsa_a, NULL);
    jwks = jwks_of2(j1, NULL);
    v = jwks_verifier(&p, jwks);
    tok = token(ZGW_JWT_RS256, NULL, VALID, rsa_a);
    assert_null(check(v, tok));
    free(tok);
    tok = token(ZGW_JWT_RS256, "k1", VALID, rsa_a);
    assert_string_equal(check(v, tok), "unknown key id");
    free(tok);
    zgw_jwt_verifier_free(v);

    free(jwks);
    free(j1);
    free(j2);
}


static void
test_crit_header_is_refused(void **state)
{
    char                *tok;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;

    (void) state;
    p = policy(ZGW_JWT_HS256);
    v = hs_verifier(&p);

    tok = token_sign(ZGW_JWT_HS256, "{\"alg\":\"HS256\",\"crit\":[\"exp\"],"
                     "\"exp\":1}", VALID, secret64, 32, NULL);
    assert_string_equal(check(v, tok), "unsupported critical header");
    free(tok);

    tok = token_sign(ZGW_JWT_HS256, "{\"alg\":\"HS256\",\"crit\":[\"b64\"],"
                     "\"b64\":false}", VALID, secret64, 32, NULL);
    assert_string_equal(check(v, tok), "unsupported critical header");
    free(tok);

    tok = token_sign(ZGW_JWT_HS256, "{\"alg\":\"HS256\",\"crit\":[]}",
                     VALID, secret64, 32, NULL);
    assert_string_equal(check(v, tok), "unsupported critical header");
    free(tok);

    zgw_jwt_verifier_free(v);
}


static void
test_token_over_8192_bytes_is_refused(void **state)
{
    int                  at_max;
    char                *pl, *tok;
    size_t               n;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;
    const char          *reason;
    zgw_jwt_claims_t     out;

    (void) state;
    at_max = 0;
    p = policy(ZGW_JWT_HS256);
    p.require_exp = 0;
    v = hs_verifier(&p);

    /* a payload that makes the token just 8192 bytes: accepted */
    for (n = 6000; n < 6200; n++) {
        pl = xmalloc(n + 32);
        memset(pl, 'a', n + 32);
        memcpy(pl, "{\"x\":\"", 6);
        memset(pl + 6, 'a', n);
        strcpy(pl + 6 + n, "\"}");
        tok = token(ZGW_JWT_HS256, NULL, pl, NULL);
        free(pl);

        if (strlen(tok) == ZGW_JWT_TOKEN_MAX) {
            assert_null(check(v, tok));
            at_max = 1;
        }
        if (strlen(tok) > ZGW_JWT_TOKEN_MAX) {
            assert_string_equal(check(v, tok), "token too large");
            free(tok);
            break;
        }
        free(tok);
    }
    assert_true(n < 6200);
    assert_true(at_max);

    /* the size is checked before anything is read */
    assert_int_equal(zgw_jwt_verify(v, "not read", 100000, NOW, &out,
                                    &reason), ZGW_ERROR);
    assert_string_equal(reason, "token too large");

    zgw_jwt_verifier_free(v);
}


static void
test_bad_base64url_is_refused(void **state)
{
    char                *good, *tok, *pl, *h, *s;
    size_t               i, n, tsize;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;
    static const char   *shapes[] = {
        "", ".", "..", "...", "a.b", "a.b.c.d", ".b.c", "a..c", "a.b.",
        "e30.e30.e30.e30",
    };

    (void) state;
    p = policy(ZGW_JWT_HS256);
    v = hs_verifier(&p);
    good = token(ZGW_JWT_HS256, NULL, VALID, NULL);
    assert_null(check(v, good));

    for (i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        assert_string_equal(check(v, shapes[i]), "malformed token");
    }

    h = strndup(good, (size_t) (strchr(good, '.') - good));
    s = strrchr(good, '.') + 1;

    /* padding on the header: {"alg":"HS256","typ":"JWT"} is 27 bytes */
    n = strlen(h);
    assert_int_equal(n % 4, 0);
    pl = b64url_str(VALID);

    tsize = strlen(good) + 16;
    tok = xmalloc(tsize);
    snprintf(tok, tsize, "%s.%s==.%s", h, pl, s);
    assert_string_equal(check(v, tok), "malformed token");
    snprintf(tok, tsize, "%s.%s.%s=", h, pl, s);
    assert_string_equal(check(v, tok), "malformed token");
    snprintf(tok, tsize, "%s=.%s.%s", h, pl, s);
    assert_string_equal(check(v, tok), "malformed token");
    snprintf(tok, tsize, " %s.%s.%s", h, pl, s);
    assert_string_equal(check(v, tok), "malformed token");
    snprintf(tok, tsize, "%s.%s.%s\n", h, pl, s);
    assert_string_equal(check(v, tok), "malformed token");

    /* '+' and '/' of base64 in place of '-' and '_' */
    snprintf(tok, tsize, "%s.%s.%s", h, pl, s);
    tok[strlen(h) + 3] = '+';
    assert_string_equal(check(v, tok), "malformed token");
    snprintf(tok, tsize, "%s.%s.%s", h, pl, s);
    tok[strlen(tok) - 2] = '/';
    assert_string_equal(check(v, tok), "malformed token");

    /* a NUL inside the length */
    snprintf(tok, tsize, "%s.%s.%s", h, pl, s);
    tok[3] = '\0';
    assert_int_equal(zgw_jwt_verify(v, tok, strlen(good), NOW, NULL, NULL),
                     ZGW_ERROR);
    free(tok);

    /* non-canonical last character: "e30" is {}, "e31" has spare bits */
    tok = cat3(h, "e31", s);
    assert_string_equal(check(v, tok), "malformed token");
    free(tok);
    tok = cat3(h, "e", s);
    assert_string_equal(check(v, tok), "malformed token");
    free(tok);

    free(pl);
    free(h);
    free(good);
    zgw_jwt_verifier_free(v);
}


static void
test_header_must_be_a_json_object(void **state)
{
    char                *h, *pl, *tok;
    size_t               i;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;
    static const char   *bad[] = {
        "[\"alg\",\"HS256\"]", "\"HS256\"", "42", "null",
        "{\"alg\":\"HS256\"", "{\"alg\":\"HS256\"} x",
        "{\"alg\":\"HS256\",\"alg\":\"HS256\"}", "\xff\xfe",
    };

    (void) state;
    p = policy(ZGW_JWT_HS256);
    v = hs_verifier(&p);
    pl = b64url_str(VALID);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        h = b64url_str(bad[i]);
        tok = cat3(h, pl, "c2lnbmF0dXJl");
        assert_string_equal(check(v, tok), "malformed token");
        free(tok);
        free(h);
    }

    free(pl);
    zgw_jwt_verifier_free(v);
}


static void
test_es_signature_must_be_raw_r_and_s(void **state)
{
    char                *h, *pl, *input, *tok, *s;
    size_t               len, slen;
    EVP_MD_CTX          *md;
    unsigned char        der[128], raw[65], *sig;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;

    (void) state;
    p = policy(ZGW_JWT_ES256);
    v = pem_verifier(&p, ec_256);

    h = b64url_str("{\"alg\":\"ES256\"}");
    pl = b64url_str(VALID);
    input = xmalloc(strlen(h) + strlen(pl) + 2);
    snprintf(input, strlen(h) + strlen(pl) + 2, "%s.%s", h, pl);

    /* the DER form OpenSSL gives is not a JWS signature */
    md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL,
                                        ec_256), 1);
    len = sizeof(der);
    assert_int_equal(EVP_DigestSign(md, der, &len,
                                    (unsigned char *) input, strlen(input)),
                     1);
    EVP_MD_CTX_free(md);
    s = b64url(der, len);
    tok = cat3(h, pl, s);
    assert_string_equal(check(v, tok), "bad signature");
    free(tok);
    free(s);

    /* 63, 64 and 65 bytes of a valid signature's r || s */
    sig = sign_raw(ZGW_JWT_ES256, input, NULL, 0, ec_256, &slen);
    assert_int_equal(slen, 64);
    memcpy(raw, sig, 64);
    raw[64] = 0;
    free(sig);

    s = b64url(raw, 64);
    tok = cat3(h, pl, s);
    assert_null(check(v, tok));
    free(tok);
    free(s);

    s = b64url(raw, 63);
    tok = cat3(h, pl, s);
    assert_string_equal(check(v, tok), "bad signature");
    free(tok);
    free(s);

    s = b64url(raw, 65);
    tok = cat3(h, pl, s);
    assert_string_equal(check(v, tok), "bad signature");
    free(tok);
    free(s);

    /* r = 0 and s = 0 */
    memset(raw, 0, sizeof(raw));
    s = b64url(raw, 64);
    tok = cat3(h, pl, s);
    assert_string_equal(check(v, tok), "bad signature");
    free(tok);
    free(s);

    /* all ones: the high bit set in r and s */
    memset(raw, 0xff, sizeof(raw));
    s = b64url(raw, 64);
    tok = cat3(h, pl, s);
    assert_string_equal(check(v, tok), "bad signature");
    free(tok);
    free(s);

    free(input);
    free(h);
    free(pl);
    zgw_jwt_verifier_free(v);
}


/*
 * RSA keys are checked without a primality test (which costs seconds for a
 * JWKS of large keys, on every configuration a worker applies), but within
 * what verification needs: e odd, 3 <= e < 2^32, n odd, n <= 8192 bits.
 */
static void
test_rsa_exponents_and_moduli_are_bounded(void **state)
{
    char              *n, jwks[8192];
    zgw_jwt_policy_t   p;

    (void) state;
    p = policy(ZGW_JWT_RS256);
    n = bn_b64url(rsa_a, OSSL_PKEY_PARAM_RSA_N, 0);

    /* e = 1 */
    snprintf(jwks, sizeof(jwks), "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\","
             "\"e\":\"AQ\"}]}", n);
    build_fails(&p, NULL, 0, NULL, jwks, "RSA public exponent");

    /* e = 2^32 + 1 */
    snprintf(jwks, sizeof(jwks), "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\","
             "\"e\":\"AQAAAAE\"}]}", n);
    build_fails(&p, NULL, 0, NULL, jwks, "RSA public exponent");

    /* e = 65536: even */
    snprintf(jwks, sizeof(jwks), "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\","
             "\"e\":\"AQAA\"}]}", n);
    build_fails(&p, NULL, 0, NULL, jwks, "RSA public exponent");

    /* e = 3 is allowed */
    snprintf(jwks, sizeof(jwks), "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"%s\","
             "\"e\":\"Aw\"}]}", n);
    zgw_jwt_verifier_free(jwks_verifier(&p, jwks));

    free(n);
}


static void
test_small_rsa_keys_are_refused(void **state)
{
    char              *pem, *jwk, *jwks;
    zgw_jwt_policy_t   p;

    (void) state;
    p = policy(ZGW_JWT_RS256);

    pem = pem_of(rsa_1024);
    build_fails(&p, NULL, 0, pem, NULL, "1024-bit RSA key");
    free(pem);

    pem = pem_pkcs1_of(rsa_1024);
    build_fails(&p, NULL, 0, pem, NULL, "1024-bit RSA key");
    free(pem);

    p = policy(ZGW_JWT_PS256);
    jwk = jwk_of(rsa_1024, "old");
    jwks = jwks_of2(jwk, NULL);
    build_fails(&p, NULL, 0, NULL, jwks,
                "jwt: jwks key 'old' is a 1024-bit RSA key");
    free(jwks);
    free(jwk);
}


static void
test_keys_of_the_wrong_type_are_refused(void **state)
{
    char              *pem, *j1, *j2, *jwks;
    zgw_jwt_policy_t   p;

    (void) state;

    /* an EC key for RS256, in a JWKS and as PEM */
    p = policy(ZGW_JWT_RS256);
    j1 = jwk_of(rsa_a, "k1");
    j2 = jwk_of(ec_256, "k2");
    jwks = jwks_of2(j1, j2);
    build_fails(&p, NULL, 0, NULL, jwks,
                "jwt: jwks key 'k2' is an EC key, alg RS256 needs RSA");
    free(jwks);
    pem = pem_of(ec_256);
    build_fails(&p, NULL, 0, pem, NULL,
                "jwt: public_key is an EC key, alg RS256 needs RSA");
    free(pem);

    /* an RSA key for ES256 */
    p = policy(ZGW_JWT_ES256);
    jwks = jwks_of2(j1, NULL);
    build_fails(&p, NULL, 0, NULL, jwks,
                "jwt: jwks key 'k1' is an RSA key, alg ES256 needs EC");
    free(jwks);
    pem = pem_of(rsa_a);
    build_fails(&p, NULL, 0, pem, NULL, "is an RSA key, alg ES256 needs EC");
    free(pem);

    /* P-384 for ES256 */
    pem = pem_of(ec_384);
    build_fails(&p, NULL, 0, pem, NULL,
                "is an EC key on secp384r1, alg ES256 needs P-256");
    free(pem);
    free(j1);
    j1 = jwk_of(ec_384, "k3");
    jwks = jwks_of2(j1, NULL);
    build_fails(&p, NULL, 0, NULL, jwks,
                "jwt: jwks key 'k3' is an EC key on P-384, alg ES256 needs "
                "P-256");
    free(jwks);

    /* a symmetric key */
    build_fails(&p, NULL, 0, NULL, "{\"keys\":[{\"kty\":\"oct\",\"kid\":"
                "\"s\",\"k\":\"AAAA\"}]}", "jwks key 's' holds private key");
    build_fails(&p, NULL, 0, NULL, "{\"keys\":[{\"kty\":\"oct\",\"kid\":"
                "\"s\"}]}", "jwks key 's' has kty 'oct', alg ES256 needs "
                "kty EC");
    build_fails(&p, NULL, 0, NULL, "{\"keys\":[{\"kid\":\"s\"}]}",
                "jwks key 's' has no \"kty\"");

    free(j1);
    free(j2);
}


static void
test_bad_jwks_documents_are_refused(void **state)
{
    char              *j1, *jwk, *jwks, *priv, *pem;
    zgw_errors_t       errs;
    zgw_jwt_policy_t   p;

    (void) state;
    p = policy(ZGW_JWT_ES256);

    build_fails(&p, NULL, 0, NULL, "{\"keys\":[", "jwks is not JSON");
    build_fails(&p, NULL, 0, NULL, "[]", "\"keys\" array");
    build_fails(&p, NULL, 0, NULL, "{\"keys\":{}}", "\"keys\" array");
    build_fails(&p, NULL, 0, NULL, "{\"keys\":[]}", "jwks has 0 keys");
    build_fails(&p, NULL, 0, NULL, "{\"keys\":[1]}",
                "jwks key 1 is not a JSON object");

    /* a point not on the curve */
    build_fails(&p, NULL, 0, NULL, "{\"keys\":[{\"kty\":\"EC\",\"crv\":"
                "\"P-256\",\"x\":\"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                "AAA\",\"y\":\"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                "\"}]}", "not a point on P-256");
    /* a coordinate of the wrong size */
    build_fails(&p, NULL, 0, NULL, "{\"keys\":[{\"kty\":\"EC\",\"crv\":"
                "\"P-256\",\"x\":\"AQ\",\"y\":\"AQ\"}]}",
                "must each be 32 bytes");
    build_fails(&p, NULL, 0, NULL, "{\"keys\":[{\"kty\":\"EC\",\"crv\":"
                "\"P-256\",\"x\":\"AQ==\",\"y\":\"AQ\"}]}",
                "\"x\" is not base64url");

    /* duplicate kids, use enc, alg other than the pinned one */
    j1 = jwk_of(ec_256, "k1");
    jwks = jwks_of2(j1, j1);
    build_fails(&p, NULL, 0, NULL, jwks,
                "jwks keys 1 and 2 have the same kid 'k1'");
    free(jwks);

    jwks = jwks_of2("{\"kty\":\"EC\",\"kid\":\"k1\",\"use\":\"enc\"}", NULL);
    build_fails(&p, NULL, 0, NULL, jwks, "jwks key 'k1' has \"use\" 'enc'");
    free(jwks);
    jwks = jwks_of2("{\"kty\":\"EC\",\"kid\":\"k1\",\"alg\":\"ES384\"}",
                    NULL);
    build_fails(&p, NULL, 0, NULL, jwks,
                "jwks key 'k1' has \"alg\" 'ES384', the definition pins "
                "ES256");
    free(jwks);

    /* a private JWK */
    jwks = jwks_of2("{\"kty\":\"EC\",\"kid\":\"k1\",\"d\":\"AA\"}", NULL);
    build_fails(&p, NULL, 0, NULL, jwks, "holds private key material");
    free(jwks);

    /* every bad key is told at once */
    zgw_errors_init(&errs);
    assert_null(zgw_jwt_verifier_new(&p, NULL, 0, NULL,
                                     "{\"keys\":[{\"kty\":\"RSA\"},"
                                     "{\"kty\":\"oct\"}]}", &errs));
    assert_int_equal(errs.n, 2);
    zgw_errors_free(&errs);

    /* a private key PEM, a certificate-like block, two keys, no PEM */
    priv = pem_private_of(ec_256);
    build_fails(&p, NULL, 0, priv, NULL, "public_key is a private key");
    free(priv);
    build_fails(&p, NULL, 0, "-----BEGIN CERTIFICATE-----\nAAAA\n"
                "-----END CERTIFICATE-----\n", NULL, "not a public key");
    build_fails(&p, NULL, 0, "hello", NULL,
                "jwt: public_key is not a PEM public key");
    pem = pem_of(ec_256);
    jwk = xmalloc(2 * strlen(pem) + 1);
    snprintf(jwk, 2 * strlen(pem) + 1, "%s%s", pem, pem);
    build_fails(&p, NULL, 0, jwk, NULL, "more than one PEM block");
    free(jwk);

    /* both a PEM and a JWKS, or neither, or a secret */
    jwks = jwks_of2(j1, NULL);
    build_fails(&p, NULL, 0, pem, jwks, "exactly one of public_key");
    build_fails(&p, NULL, 0, NULL, NULL, "exactly one of public_key");
    build_fails(&p, secret64, 32, pem, NULL, "not a secret");
    free(jwks);
    free(pem);
    free(j1);
}


static void
test_short_hmac_secrets_are_refused(void **state)
{
    zgw_errors_t         errs;
    zgw_jwt_policy_t     p;
    zgw_jwt_verifier_t  *v;

    (void) state;

    p = policy(ZGW_JWT_HS256);
    build_fails(&p, secret64, 31, NULL, NULL,
                "the secret is 31 bytes, alg HS256 needs at least 32");
    build_fails(&p, NULL, 0, NULL, NULL, "alg HS256 needs a secret");
    build_fails(&p, secret64, 32, "x", NULL, "not a public_key");

    p = policy(ZGW_JWT_HS384);
    build_fails(&p, secret64, 47, NULL, NULL, "needs at least 48");

    p = policy(ZGW_JWT_HS512);
    build_fails(&p, secret64, 63, NULL, NULL, "needs at least 64");

    zgw_errors_init(&errs);
    v = zgw_jwt_verifier_new(&p, secret64, 64, NULL, NULL, &errs);
    assert_non_null(v);
    assert_int_equal(errs.n, 0);
    zgw_jwt_verifier_free(v);
    zgw_errors_free(&errs);
}


static void
test_bad_policies_are_refused(void **state)
{
    json_t            *aud;
    zgw_jwt_policy_t   p;

    (void) state;

    p = policy(ZGW_JWT_ALG_MAX);
    build_fails(&p, secret64, 32, NULL, NULL, "unknown algorithm");

    p = policy(ZGW_JWT_HS256);
    p.leeway = -1;
    build_fails(&p, secret64, 32, NULL, NULL, "leeway -1 is out of range");

    p = policy(ZGW_JWT_HS256);
    aud = json_array();
    p.aud = aud;
    build_fails(&p, secret64, 32, NULL, NULL, "aud is an empty list");
    json_array_append_new(aud, json_integer(1));
    build_fails(&p, secret64, 32, NULL, NULL, "aud must be a string");
    json_decref(aud);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_algorithm_names_round_trip),
        cmocka_unit_test(test_each_algorithm_is_accepted),
        cmocka_unit_test(test_pkcs1_rsa_public_key_is_accepted),
        cmocka_unit_test(test_claims_are_handed_back),
        cmocka_unit_test(test_expired_and_not_yet_valid_tokens_are_refused),
        cmocka_unit_test(test_leeway_applies_to_both_sides),
        cmocka_unit_test(test_missing_exp_follows_require_exp),
        cmocka_unit_test(test_max_age_counts_from_iat),
        cmocka_unit_test(test_issuer_must_match),
        cmocka_unit_test(test_audience_string_and_list),
        cmocka_unit_test(test_claim_types_are_checked),
        cmocka_unit_test(test_tampered_payload_and_signature_are_refused),
        cmocka_unit_test(test_alg_none_is_refused),
        cmocka_unit_test(test_rsa_pem_as_hmac_secret_is_refused),
        cmocka_unit_test(test_kid_selects_the_jwks_key),
        cmocka_unit_test(test_crit_header_is_refused),
        cmocka_unit_test(test_token_over_8192_bytes_is_refused),
        cmocka_unit_test(test_bad_base64url_is_refused),
        cmocka_unit_test(test_header_must_be_a_json_object),
        cmocka_unit_test(test_es_signature_must_be_raw_r_and_s),
        cmocka_unit_test(test_small_rsa_keys_are_refused),
        cmocka_unit_test(test_rsa_exponents_and_moduli_are_bounded),
        cmocka_unit_test(test_keys_of_the_wrong_type_are_refused),
        cmocka_unit_test(test_bad_jwks_documents_are_refused),
        cmocka_unit_test(test_short_hmac_secrets_are_refused),
        cmocka_unit_test(test_bad_policies_are_refused),
    };

    return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
