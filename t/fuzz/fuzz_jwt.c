/*
 * libFuzzer target: JWT verification (zgw_jwt_verify) on arbitrary bytes.
 *
 * Two verifiers are built once: HS256 with a fixed secret, and ES256 from
 * a fixed JWKS of two P-256 keys (kids "a" and "b"), each with an issuer,
 * an audience list, a leeway, require_exp and max_age. The input is
 *
 *   TOKEN       verified as it is by both;
 *   '~' JSON    the payload of a token this target signs (HMAC() and an
 *               ECDSA signature of its own, kid "a"), so that the claims
 *               checks are reached;
 *   '^' JSON    the header of such a token, with a valid payload.
 *
 * Never crashes; a refusal has one of the documented reasons (static
 * texts: never any part of the token); nothing over ZGW_JWT_TOKEN_MAX
 * bytes is read; a token this target signed is never refused for its
 * signature; an accepted token's header pins the verifier's algorithm and
 * has no "crit", and its claims pass the policy as a reference reads it.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include "zgw_jwt.h"


#define FUZZ_NOW     1700000000LL
#define FUZZ_LEEWAY  30
#define FUZZ_MAXAGE  3600
#define FUZZ_ISS     "https://id.example"


static const unsigned char  fuzz_secret[] =
    "fuzz-secret-0123456789abcdef-0123456789abcdef";

/* kid "a" is this private key; the key is for this fuzz target only */
static const char  fuzz_ec_private[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgehtyFyBjYpU1f2T0\n"
    "OlrpGpBW0h3lV7lx/1w/EXQVlXihRANCAASt2StkX///oSbBG5aFNx9DfHSnvPjD\n"
    "JGFQmfW5bhs8VDahIbJ5uCZfDNv/rQ2klr3tkOl6ORZ435exETmdM6MM\n"
    "-----END PRIVATE KEY-----\n";

static const char  fuzz_jwks[] =
    "{\"keys\":["
    "{\"kty\":\"EC\",\"kid\":\"a\",\"crv\":\"P-256\",\"use\":\"sig\","
    "\"x\":\"rdkrZF___6EmwRuWhTcfQ3x0p7z4wyRhUJn1uW4bPFQ\","
    "\"y\":\"NqEhsnm4Jl8M2_-tDaSWve2Q6Xo5Fnjfl7EROZ0zoww\"},"
    "{\"kty\":\"EC\",\"kid\":\"b\",\"crv\":\"P-256\","
    "\"x\":\"-y6e290IbKVSxvNq749AUHRNXbALc19gCZ33RD6vvqA\","
    "\"y\":\"DulQWw4vygZaGTl6TKZNhLCDdIfD9f3Z6C8FNmvDLQ0\"}]}";

static const char  *fuzz_reasons[] = {
    "token too large", "malformed token", "algorithm not allowed",
    "unsupported critical header", "unknown key id", "missing key id",
    "bad signature", "expired", "not yet valid", "missing exp",
    "missing iat", "issued too long ago", "wrong issuer", "wrong audience",
    "malformed claim", NULL
};


static void fuzz_fail(const char *what, const char *detail)
    __attribute__((noreturn));


static zgw_jwt_verifier_t  *fuzz_hs, *fuzz_es;
static EVP_PKEY            *fuzz_ec_key;
static json_t              *fuzz_aud;


static void
fuzz_fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_jwt: %s%s%s\n", what, detail ? ": " : "",
            detail ? detail : "");
    abort();
}


static void
fuzz_init(void)
{
    BIO               *bio;
    zgw_errors_t       errs;
    zgw_jwt_policy_t   p;

    zgw_errors_init(&errs);

    fuzz_aud = json_pack("[ss]", "api", "crm");

    memset(&p, 0, sizeof(p));
    p.iss = FUZZ_ISS;
    p.aud = fuzz_aud;
    p.leeway = FUZZ_LEEWAY;
    p.require_exp = 1;
    p.max_age = FUZZ_MAXAGE;

    p.alg = ZGW_JWT_HS256;
    fuzz_hs = zgw_jwt_verifier_new(&p, fuzz_secret, sizeof(fuzz_secret) - 1,
                                   NULL, NULL, &errs);
    p.alg = ZGW_JWT_ES256;
    fuzz_es = zgw_jwt_verifier_new(&p, NULL, 0, NULL, fuzz_jwks, &errs);

    if (fuzz_hs == NULL || fuzz_es == NULL) {
        fuzz_fail("cannot build the verifiers", zgw_errors_first(&errs));
    }

    bio = BIO_new_mem_buf(fuzz_ec_private, -1);
    fuzz_ec_key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (fuzz_ec_key == NULL) {
        fuzz_fail("cannot read the EC private key", NULL);
    }

    zgw_errors_free(&errs);
}


/* base64url without padding of in, written at out; its length */
static size_t
fuzz_b64url(char *out, const unsigned char *in, size_t len)
{
    size_t             i, n;
    uint32_t           v;
    static const char  a[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    n = 0;
    for (i = 0; i + 2 < len; i += 3) {
        v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
        out[n++] = a[v >> 18];
        out[n++] = a[(v >> 12) & 63];
        out[n++] = a[(v >> 6) & 63];
        out[n++] = a[v & 63];
    }

    if (len - i == 1) {
        v = (uint32_t) in[i] << 16;
        out[n++] = a[v >> 18];
        out[n++] = a[(v >> 12) & 63];

    } else if (len - i == 2) {
        v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8;
        out[n++] = a[v >> 18];
        out[n++] = a[(v >> 12) & 63];
        out[n++] = a[(v >> 6) & 63];
    }

    return n;
}


/*
 * header.payload.signature, signed with HS256 (es 0) or ES256 (es 1); in a
 * buffer exactly as large as the token, so that ASan sees reads past it.
 */
static char *
fuzz_sign(int es, const unsigned char *header, size_t hlen,
    const unsigned char *payload, size_t plen, size_t *len)
{
    char                *buf, *tok;
    size_t               n, slen;
    EVP_MD_CTX          *md;
    ECDSA_SIG           *sig;
    const BIGNUM        *r, *s;
    unsigned int         mlen;
    unsigned char        mac[EVP_MAX_MD_SIZE], der[128], raw[64];
    const unsigned char *p;

    buf = malloc(4 * (hlen + plen + 64) / 3 + 16);
    if (buf == NULL) {
        return NULL;
    }

    n = fuzz_b64url(buf, header, hlen);
    buf[n++] = '.';
    n += fuzz_b64url(buf + n, payload, plen);

    if (!es) {
        if (HMAC(EVP_sha256(), fuzz_secret, sizeof(fuzz_secret) - 1,
                 (unsigned char *) buf, n, mac, &mlen) == NULL)
        {
            fuzz_fail("HMAC failed", NULL);
        }
        buf[n++] = '.';
        n += fuzz_b64url(buf + n, mac, mlen);

    } else {
        md = EVP_MD_CTX_new();
        slen = sizeof(der);
        if (md == NULL
            || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL,
                                  fuzz_ec_key) != 1
            || EVP_DigestSign(md, der, &slen, (unsigned char *) buf, n) != 1)
        {
            fuzz_fail("ECDSA signing failed", NULL);
        }
        EVP_MD_CTX_free(md);

        p = der;
        sig = d2i_ECDSA_SIG(NULL, &p, (long) slen);
        if (sig == NULL) {
            fuzz_fail("ECDSA signature does not decode", NULL);
        }
        ECDSA_SIG_get0(sig, &r, &s);
        if (BN_bn2binpad(r, raw, 32) != 32
            || BN_bn2binpad(s, raw + 32, 32) != 32)
        {
            fuzz_fail("ECDSA r or s too large", NULL);
        }
        ECDSA_SIG_free(sig);

        buf[n++] = '.';
        n += fuzz_b64url(buf + n, raw, 64);
    }

    tok = malloc(n);
    if (tok != NULL) {
        memcpy(tok, buf, n);
    }
    free(buf);

    *len = n;
    return tok;
}


static int
fuzz_date(const json_t *j, long long *t)
{
    double  d;

    if (json_is_integer(j)) {
        *t = (long long) json_integer_value(j);
        return 1;
    }

    if (!json_is_real(j)) {
        return 0;
    }

    d = json_real_value(j);
    *t = d >= 9e18 ? (long long) 9e18 : d <= -9e18 ? (long long) -9e18
         : (long long) d - ((double) (long long) d > d);

    return 1;
}


/* the policy of both verifiers, read again by a reference */
static void
fuzz_check_claims(const json_t *claims, const char *who)
{
    size_t        i;
    long long     t;
    const char   *s;
    json_t       *j, *aud;
    int           match;

    j = json_object_get(claims, "exp");
    if (j == NULL || !fuzz_date(j, &t)) {
        fuzz_fail("accepted without a numeric exp", who);
    }
    if (t < 9e18 && FUZZ_NOW >= t + FUZZ_LEEWAY) {
        fuzz_fail("accepted an expired token", who);
    }

    j = json_object_get(claims, "nbf");
    if (j != NULL && (!fuzz_date(j, &t) || FUZZ_NOW + FUZZ_LEEWAY < t)) {
        fuzz_fail("accepted a token not yet valid", who);
    }

    j = json_object_get(claims, "iat");
    if (j == NULL || !fuzz_date(j, &t)) {
        fuzz_fail("accepted without a numeric iat (max_age is set)", who);
    }
    if (t > -9e18 && FUZZ_NOW > t + FUZZ_MAXAGE + FUZZ_LEEWAY) {
        fuzz_fail("accepted a token issued too long ago", who);
    }

    s = json_string_value(json_object_get(claims, "iss"));
    if (s == NULL || strcmp(s, FUZZ_ISS) != 0) {
        fuzz_fail("accepted a wrong issuer", who);
    }

    j = json_object_get(claims, "sub");
    if (j != NULL && !json_is_string(j)) {
        fuzz_fail("accepted a sub that is not a string", who);
    }

    aud = json_object_get(claims, "aud");
    match = 0;
    if (json_is_string(aud)) {
        s = json_string_value(aud);
        match = strcmp(s, "api") == 0 || strcmp(s, "crm") == 0;

    } else if (json_is_array(aud)) {
        for (i = 0; i < json_array_size(aud); i++) {
            s = json_string_value(json_array_get(aud, i));
            if (s == NULL) {
                fuzz_fail("accepted an aud list with a non-string", who);
            }
            match |= strcmp(s, "api") == 0 || strcmp(s, "crm") == 0;
        }
    }
    if (!match) {
        fuzz_fail("accepted a wrong audience", who);
    }
}


/* the header of an accepted token names the pinned alg and has no crit */
static void
fuzz_check_header(const char *tok, size_t len, const char *alg)
{
    size_t          i, n;
    json_t         *h;
    const char     *dot;
    unsigned char  *raw;
    int             c, v, bits, acc;

    dot = memchr(tok, '.', len);
    if (dot == NULL) {
        fuzz_fail("accepted a token without a dot", alg);
    }

    raw = malloc((size_t) (dot - tok));
    n = 0;
    acc = 0;
    bits = 0;
    for (i = 0; tok + i < dot; i++) {
        c = (unsigned char) tok[i];
        v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z'
            ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52
            : c == '-' ? 62 : c == '_' ? 63 : -1;
        if (v < 0) {
            fuzz_fail("accepted a header that is not base64url", alg);
        }
        acc = (acc << 6 | v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            raw[n++] = (unsigned char) (acc >> bits);
        }
    }

    h = json_loadb((char *) raw, n, JSON_REJECT_DUPLICATES, NULL);
    free(raw);

    if (!json_is_object(h)) {
        fuzz_fail("accepted a header that is not a JSON object", alg);
    }
    if (json_string_value(json_object_get(h, "alg")) == NULL
        || strcmp(json_string_value(json_object_get(h, "alg")), alg) != 0)
    {
        fuzz_fail("accepted a header that does not name the pinned alg",
                  alg);
    }
    if (json_object_get(h, "crit") != NULL) {
        fuzz_fail("accepted a header with crit", alg);
    }

    json_decref(h);
}


/* one verification; signed: this target signed the token itself */
static void
fuzz_verify(const zgw_jwt_verifier_t *v, const char *who, const char *alg,
    const char *tok, size_t len, int signed_here)
{
    int                rc, i;
    const char        *reason;
    zgw_jwt_claims_t   out;

    reason = NULL;
    rc = zgw_jwt_verify(v, tok, len, FUZZ_NOW, &out, &reason);

    if (rc != ZGW_OK) {
        if (rc != ZGW_ERROR || reason == NULL || out.claims != NULL) {
            fuzz_fail("a refusal without a reason, or with claims", who);
        }

        for (i = 0; fuzz_reasons[i] != NULL; i++) {
            if (strcmp(reason, fuzz_reasons[i]) == 0) {
                break;
            }
        }
        if (fuzz_reasons[i] == NULL) {
            fuzz_fail("an undocumented reason", reason);
        }

        if (len > ZGW_JWT_TOKEN_MAX && strcmp(reason, "token too large"))
        {
            fuzz_fail("a token over the limit refused for another reason",
                      reason);
        }

        if (signed_here && strcmp(reason, "bad signature") == 0) {
            fuzz_fail("a token signed with the right key was refused for "
                      "its signature", who);
        }

        return;
    }

    if (len > ZGW_JWT_TOKEN_MAX) {
        fuzz_fail("accepted a token over ZGW_JWT_TOKEN_MAX", who);
    }

    if (!json_is_object(out.claims)) {
        fuzz_fail("accepted without a claims object", who);
    }

    if (out.valid_until <= FUZZ_NOW || out.valid_until > ZGW_JWT_TIME_MAX
        || out.exp > ZGW_JWT_TIME_MAX)
    {
        fuzz_fail("accepted with valid_until or exp out of range", who);
    }

    if (out.sub != json_string_value(json_object_get(out.claims, "sub"))) {
        fuzz_fail("sub is not the claims' sub", who);
    }

    fuzz_check_header(tok, len, alg);
    fuzz_check_claims(out.claims, who);

    json_decref(out.claims);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int             es;
    char           *tok;
    size_t          len;
    static int      ready;
    static const char  payload[] =
        "{\"iss\":\"" FUZZ_ISS "\",\"aud\":\"api\",\"sub\":\"fuzz\","
        "\"exp\":1700000100,\"iat\":1699999990}";
    static const char  hs_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    static const char  es_header[] = "{\"alg\":\"ES256\",\"kid\":\"a\"}";

    if (!ready) {
        fuzz_init();
        ready = 1;
    }

    if (size > 0 && (data[0] == '~' || data[0] == '^')) {
        for (es = 0; es < 2; es++) {
            if (data[0] == '~') {
                tok = es ? fuzz_sign(1, (unsigned char *) es_header,
                                     sizeof(es_header) - 1, data + 1,
                                     size - 1, &len)
                         : fuzz_sign(0, (unsigned char *) hs_header,
                                     sizeof(hs_header) - 1, data + 1,
                                     size - 1, &len);
            } else {
                tok = fuzz_sign(es, data + 1, size - 1,
                                (unsigned char *) payload,
                                sizeof(payload) - 1, &len);
            }

            if (tok == NULL) {
                return 0;
            }

            /* a header of '^' may name kid "b": not our signature then */
            fuzz_verify(es ? fuzz_es : fuzz_hs, es ? "ES256" : "HS256",
                        es ? "ES256" : "HS256", tok, len,
                        data[0] == '~' || !es);
            free(tok);
        }

        return 0;
    }

    /* exactly as large as the input: ASan sees reads past its end */
    tok = malloc(size ? size : 1);
    if (tok == NULL) {
        return 0;
    }
    memcpy(tok, data, size);

    fuzz_verify(fuzz_hs, "HS256", "HS256", tok, size, 0);
    fuzz_verify(fuzz_es, "ES256", "ES256", tok, size, 0);

    free(tok);

    return 0;
}
