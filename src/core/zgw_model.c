/*
 * ngx_zmq core: the configuration model.
 */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "zgw_amqp_check.h"
#include "zgw_hostport.h"
#include "zgw_jwt.h"
#include "zgw_model.h"
#include "zgw_redis_url.h"


typedef enum {
    ZGW_T_STR = 1,
    ZGW_T_INT,
    ZGW_T_NUM,
    ZGW_T_BOOL,
    ZGW_T_ENUM,
    ZGW_T_STRLIST,
    ZGW_T_STRMAP,
    ZGW_T_OBJ,
    ZGW_T_REF,
    ZGW_T_REFLIST,
    ZGW_T_SECRET,       /* sealed with AES-256-GCM */
    ZGW_T_CRED,         /* security: hashed when direction "in", else sealed */
    ZGW_T_OBJLIST,      /* an array of objects of the sub fields */
    ZGW_T_JSONOBJ,      /* any JSON object, checked by the kind's check */
    ZGW_T_JSON,         /* any JSON value (at most 64 KiB as text) */
    ZGW_T_STRS          /* a string or an array of them */
} zgw_type_e;


typedef struct zgw_field_s  zgw_field_t;

struct zgw_field_s {
    const char          *name;
    zgw_type_e           type;
    unsigned             required:1;
    unsigned             has_def:1;
    long long            def_int;        /* INT and BOOL defaults */
    double               def_num;
    const char          *def_str;        /* STR and ENUM defaults */
    long long            min;            /* INT range; STR: min length */
    long long            max;            /* INT range; STR: max length */
    const char *const   *enums;
    int                  ref_kind;
    const zgw_field_t   *sub;            /* OBJ */
};


typedef struct {
    const char          *value;
    const zgw_field_t   *fields;
} zgw_variant_t;


typedef int (*zgw_check_pt)(const char *who, json_t *obj, zgw_errors_t *errs);


typedef struct {
    const char           *name;
    const zgw_field_t    *fields;
    const char           *discriminator;  /* variant selector, or NULL */
    const zgw_variant_t  *variants;
    zgw_check_pt          check;
} zgw_schema_t;


#define ZGW_END      { NULL, 0, 0, 0, 0, 0, NULL, 0, 0, NULL, 0, NULL }
#define ZGW_NOLIMIT  0, 0

#define F_STR_REQ(n, lo, hi) \
    { n, ZGW_T_STR, 1, 0, 0, 0, NULL, lo, hi, NULL, 0, NULL }
#define F_STR_DEF(n, d, lo, hi) \
    { n, ZGW_T_STR, 0, 1, 0, 0, d, lo, hi, NULL, 0, NULL }
#define F_STR_OPT(n, lo, hi) \
    { n, ZGW_T_STR, 0, 0, 0, 0, NULL, lo, hi, NULL, 0, NULL }
#define F_INT_DEF(n, d, lo, hi) \
    { n, ZGW_T_INT, 0, 1, d, 0, NULL, lo, hi, NULL, 0, NULL }
#define F_INT_OPT(n, lo, hi) \
    { n, ZGW_T_INT, 0, 0, 0, 0, NULL, lo, hi, NULL, 0, NULL }
#define F_NUM_DEF(n, d, lo, hi) \
    { n, ZGW_T_NUM, 0, 1, 0, d, NULL, lo, hi, NULL, 0, NULL }
#define F_BOOL_DEF(n, d) \
    { n, ZGW_T_BOOL, 0, 1, d, 0, NULL, 0, 0, NULL, 0, NULL }
#define F_ENUM_REQ(n, e) \
    { n, ZGW_T_ENUM, 1, 0, 0, 0, NULL, 0, 0, e, 0, NULL }
#define F_ENUM_DEF(n, e, d) \
    { n, ZGW_T_ENUM, 0, 1, 0, 0, d, 0, 0, e, 0, NULL }
#define F_ENUM_OPT(n, e) \
    { n, ZGW_T_ENUM, 0, 0, 0, 0, NULL, 0, 0, e, 0, NULL }
#define F_STRLIST(n) \
    { n, ZGW_T_STRLIST, 0, 0, 0, 0, NULL, 0, 0, NULL, 0, NULL }
#define F_STRMAP(n) \
    { n, ZGW_T_STRMAP, 0, 0, 0, 0, NULL, 0, 0, NULL, 0, NULL }
#define F_OBJ(n, s) \
    { n, ZGW_T_OBJ, 0, 0, 0, 0, NULL, 0, 0, NULL, 0, s }
#define F_REF_REQ(n, k) \
    { n, ZGW_T_REF, 1, 0, 0, 0, NULL, 0, 0, NULL, k, NULL }
#define F_REF_OPT(n, k) \
    { n, ZGW_T_REF, 0, 0, 0, 0, NULL, 0, 0, NULL, k, NULL }
#define F_REFLIST_REQ(n, k) \
    { n, ZGW_T_REFLIST, 1, 0, 0, 0, NULL, 0, 0, NULL, k, NULL }
#define F_SECRET(n) \
    { n, ZGW_T_SECRET, 0, 0, 0, 0, NULL, 0, 0, NULL, 0, NULL }
/* a secret that may be absent: absent means none, not a random one */
#define F_SECRET_OPT(n) \
    { n, ZGW_T_SECRET, 0, 0, 0, 0, NULL, 1, 0, NULL, 0, NULL }
#define F_CRED(n) \
    { n, ZGW_T_CRED, 0, 0, 0, 0, NULL, 0, 0, NULL, 0, NULL }
/* a credential that may be absent: absent means none, not a random one */
#define F_CRED_OPT(n) \
    { n, ZGW_T_CRED, 0, 0, 0, 0, NULL, 1, 0, NULL, 0, NULL }
#define F_OBJLIST(n, s, hi) \
    { n, ZGW_T_OBJLIST, 0, 0, 0, 0, NULL, 0, hi, NULL, 0, s }
#define F_JSONOBJ(n) \
    { n, ZGW_T_JSONOBJ, 0, 0, 0, 0, NULL, 0, 0, NULL, 0, NULL }
#define F_JSON(n) \
    { n, ZGW_T_JSON, 0, 0, 0, 0, NULL, 0, 0, NULL, 0, NULL }
#define F_STRS(n, hi) \
    { n, ZGW_T_STRS, 0, 0, 0, 0, NULL, 1, hi, NULL, 0, NULL }

#define ZGW_COMMON \
    F_STR_REQ("name", 1, ZGW_NAME_MAX), \
    F_BOOL_DEF("is_active", 1)


static const char *const  zgw_enum_data_format[] = { "none", "json", "xml",
                                                     NULL };
static const char *const  zgw_enum_ack_mode[] = { "ack", "reject", NULL };
static const char *const  zgw_enum_service_kind[] = { "publish", "rpc",
                                                      "http", "redis",
                                                      "fanout", "invoke",
                                                      "redis_page", NULL };
static const char *const  zgw_enum_invoke_mode[] = { "sync", "sync_async",
                                                     "async", NULL };
static const char *const  zgw_enum_http_method[] = { "POST", "PUT", "PATCH",
                                                     "GET", "DELETE", NULL };
static const char *const  zgw_enum_rest_method[] = { "POST", "PUT", "PATCH",
                                                     "GET", "DELETE", "ANY",
                                                     NULL };
static const char *const  zgw_enum_redis_op[] = { "rpush", "lpush", "zadd",
                                                  NULL };
static const char *const  zgw_enum_page_source[] = { "list", "zset", NULL };
static const char *const  zgw_enum_sec_type[] = { "basic_auth", "apikey",
                                                  "jwt", NULL };
static const char *const  zgw_enum_direction[] = { "in", "out", NULL };
static const char *const  zgw_enum_role[] = { "admin", "viewer", NULL };
static const char *const  zgw_enum_startup_when[] = { "first", "each",
                                                      NULL };
static const char *const  zgw_enum_jwt_alg[] = { "HS256", "HS384", "HS512",
                                                 "RS256", "RS384", "RS512",
                                                 "PS256", "ES256", "ES384",
                                                 NULL };


static const zgw_field_t  zgw_retry_fields[] = {
    F_INT_DEF("attempts", 3, 0, 1000),
    F_INT_DEF("initial_delay", 1000, 0, 86400000),
    F_NUM_DEF("multiplier", 2.0, 1, 100),
    F_INT_DEF("max_delay", 60000, 0, 86400000),
    ZGW_END
};


static const zgw_field_t  zgw_dead_letter_fields[] = {
    F_REF_OPT("outconn", ZGW_KIND_AMQP_OUTCONN),
    F_STR_DEF("exchange", "", 0, 255),
    F_STR_REQ("routing_key", 0, 255),
    ZGW_END
};


static const zgw_field_t  zgw_amqp_def_fields[] = {
    ZGW_COMMON,
    F_STR_DEF("host", "127.0.0.1", 1, 253),
    F_INT_DEF("port", 5672, 1, 65535),
    F_STR_DEF("vhost", "/", 1, 255),
    F_STR_DEF("username", "guest", 1, 255),
    F_SECRET("password"),
    F_INT_DEF("heartbeat", 30, 0, 600),
    F_INT_DEF("frame_max", 131072, 4096, 2097152),
    F_BOOL_DEF("tls", 0),
    F_STR_OPT("ca_file", 1, 4096),      /* TLS: absent = the system store */
    F_BOOL_DEF("verify", 1),            /* TLS: chain and host name */
    F_STR_OPT("server_name", 1, 253),   /* TLS: SNI and name checked */
    F_STR_OPT("cert_file", 1, 4096),    /* TLS client certificate ... */
    F_STR_OPT("key_file", 1, 4096),     /* ... and its key: both or none */
    F_BOOL_DEF("use_jms", 0),
    F_STRLIST("hosts"),
    ZGW_END
};


static const zgw_field_t  zgw_amqp_outconn_fields[] = {
    ZGW_COMMON,
    F_REF_REQ("def", ZGW_KIND_AMQP_DEF),
    F_INT_DEF("delivery_mode", 2, 1, 2),
    F_INT_OPT("priority", 0, 9),
    F_INT_OPT("expiration", 1, 2147483647),
    F_STR_OPT("content_type", 1, 255),
    F_STR_OPT("content_encoding", 1, 255),
    F_STR_OPT("user_id", 1, 255),
    F_STR_DEF("app_id", "ngx_zmq", 0, 255),
    F_INT_DEF("max_inflight", 1024, 1, 65536),
    ZGW_END
};


static const zgw_field_t  zgw_amqp_channel_fields[] = {
    ZGW_COMMON,
    F_REF_REQ("def", ZGW_KIND_AMQP_DEF),
    F_STR_REQ("queue", 1, 255),
    F_REF_REQ("service", ZGW_KIND_SERVICE),
    F_INT_DEF("prefetch", 10, 0, 65535),
    F_ENUM_DEF("ack_mode", zgw_enum_ack_mode, "ack"),
    F_ENUM_DEF("data_format", zgw_enum_data_format, "none"),
    F_INT_DEF("consumers", 1, 1, 64),
    F_OBJ("retry", zgw_retry_fields),
    F_OBJ("dead_letter", zgw_dead_letter_fields),
    ZGW_END
};


static const zgw_field_t  zgw_http_outconn_fields[] = {
    ZGW_COMMON,
    F_STR_REQ("url", 8, 4096),
    F_INT_DEF("timeout", 10000, 1, 3600000),
    F_BOOL_DEF("tls", 1),
    F_REF_OPT("security", ZGW_KIND_SECURITY),
    ZGW_END
};


static const zgw_field_t  zgw_service_fields[] = {
    ZGW_COMMON,
    F_ENUM_REQ("kind", zgw_enum_service_kind),
    F_OBJ("retry", zgw_retry_fields),
    ZGW_END
};


/*
 * Exactly one of outconn (AMQP: exchange, routing_key, mandatory) and
 * stomp_outconn (STOMP: destination); see zgw_check_publish().
 */
static const zgw_field_t  zgw_service_publish_fields[] = {
    F_REF_OPT("outconn", ZGW_KIND_AMQP_OUTCONN),
    F_REF_OPT("stomp_outconn", ZGW_KIND_STOMP_OUTCONN),
    F_STR_OPT("destination", 1, 1024),
    F_STR_DEF("exchange", "", 0, 255),
    F_STR_DEF("routing_key", "", 0, 255),
    F_BOOL_DEF("mandatory", 0),
    F_BOOL_DEF("confirm", 1),
    F_INT_OPT("delivery_mode", 1, 2),
    F_INT_OPT("priority", 0, 9),
    F_INT_OPT("expiration", 1, 2147483647),
    F_STR_OPT("content_type", 1, 255),
    F_STRMAP("headers"),
    ZGW_END
};


static const zgw_field_t  zgw_service_rpc_fields[] = {
    F_REF_REQ("outconn", ZGW_KIND_AMQP_OUTCONN),
    F_STR_DEF("exchange", "", 0, 255),
    F_STR_REQ("routing_key", 1, 255),
    F_INT_DEF("timeout", 30000, 1, 3600000),
    F_BOOL_DEF("mandatory", 1),
    F_INT_OPT("delivery_mode", 1, 2),
    F_INT_OPT("priority", 0, 9),
    F_INT_OPT("expiration", 1, 2147483647),
    F_STR_OPT("content_type", 1, 255),
    F_STRMAP("headers"),
    ZGW_END
};


static const zgw_field_t  zgw_service_http_fields[] = {
    F_REF_REQ("outconn", ZGW_KIND_HTTP_OUTCONN),
    F_ENUM_DEF("method", zgw_enum_http_method, "POST"),
    F_STR_DEF("path", "", 0, 4096),
    ZGW_END
};


static const zgw_field_t  zgw_service_redis_fields[] = {
    F_STR_OPT("url", 8, 1024),
    F_SECRET_OPT("password"),           /* of url, which holds none */
    F_ENUM_DEF("op", zgw_enum_redis_op, "rpush"),
    F_STR_REQ("key", 1, 1024),
    F_INT_DEF("max_len", 0, 0, 2147483647),
    F_STR_OPT("score_field", 1, 255),
    ZGW_END
};


static const zgw_field_t  zgw_service_fanout_fields[] = {
    F_REFLIST_REQ("services", ZGW_KIND_SERVICE),
    ZGW_END
};


/*
 * Zato's invoke/retry, run by zmqd: the gateway (or zmqctl) publishes the
 * invocation to "queue" through "outconn"; zmqd consumes that queue on the
 * outgoing connection's amqp_def and calls "target" up to "repeats" times,
 * "seconds" apart, then "callback" (background modes).
 */
static const zgw_field_t  zgw_service_invoke_fields[] = {
    F_REF_REQ("outconn", ZGW_KIND_AMQP_OUTCONN),
    F_STR_DEF("queue", "zmq.invoke", 1, 255),
    F_REF_REQ("target", ZGW_KIND_SERVICE),
    F_ENUM_DEF("mode", zgw_enum_invoke_mode, "sync"),
    F_INT_DEF("repeats", 3, 1, 100),
    F_INT_DEF("seconds", 1, 0, 600),
    F_REF_OPT("callback", ZGW_KIND_SERVICE),
    F_JSON("context"),
    F_INT_DEF("timeout", 30000, 1, 3600000),
    ZGW_END
};


/*
 * Django's pagination of a Redis list or sorted set over HTTP, answered by
 * the gateway itself (GET ?page=N&per_page=M&min=&max=); key is a template
 * like a publish service's routing_key ({param}, $variable).
 */
static const zgw_field_t  zgw_service_redis_page_fields[] = {
    F_STR_OPT("url", 8, 1024),
    F_SECRET_OPT("password"),           /* of url, which holds none */
    F_ENUM_DEF("source", zgw_enum_page_source, "list"),
    F_STR_REQ("key", 1, 1024),
    F_INT_DEF("per_page", 20, 1, 10000),
    F_INT_DEF("max_per_page", 100, 1, 10000),
    F_INT_DEF("orphans", 0, 0, 10000),
    F_BOOL_DEF("allow_empty_first_page", 1),
    F_STR_DEF("score_min", "-inf", 1, 64),
    F_STR_DEF("score_max", "+inf", 1, 64),
    F_BOOL_DEF("reverse", 0),
    F_BOOL_DEF("withscores", 0),
    ZGW_END
};


static const zgw_variant_t  zgw_service_variants[] = {
    { "publish", zgw_service_publish_fields },
    { "rpc", zgw_service_rpc_fields },
    { "http", zgw_service_http_fields },
    { "redis", zgw_service_redis_fields },
    { "fanout", zgw_service_fanout_fields },
    { "invoke", zgw_service_invoke_fields },
    { "redis_page", zgw_service_redis_page_fields },
    { NULL, NULL }
};


static const zgw_field_t  zgw_rest_channel_fields[] = {
    ZGW_COMMON,
    F_STR_REQ("url_path", 1, 2048),
    F_ENUM_DEF("method", zgw_enum_rest_method, "POST"),
    F_REF_REQ("service", ZGW_KIND_SERVICE),
    F_REF_OPT("security", ZGW_KIND_SECURITY),
    F_ENUM_DEF("data_format", zgw_enum_data_format, "none"),
    F_INT_DEF("max_body", 1048576, 0, ZGW_BODY_MAX),
    F_BOOL_DEF("batch", 0),                     /* application/x-ndjson */
    F_INT_DEF("max_batch", 1000, 1, 100000),
    F_BOOL_DEF("batch_envelope", 0),
    F_BOOL_DEF("idempotency", 0),               /* Idempotency-Key */
    F_INT_DEF("idempotency_ttl", 86400, 1, 31536000),
    ZGW_END
};


static const zgw_field_t  zgw_security_fields[] = {
    ZGW_COMMON,
    F_ENUM_REQ("type", zgw_enum_sec_type),
    F_ENUM_DEF("direction", zgw_enum_direction, "in"),
    F_ENUM_OPT("role", zgw_enum_role),  /* in: the admin API's; "admin" */
    ZGW_END
};


static const zgw_field_t  zgw_security_basic_fields[] = {
    F_STR_REQ("username", 1, 255),
    F_CRED("password"),
    F_STR_DEF("realm", "ngx_zmq", 1, 255),
    ZGW_END
};


static const zgw_field_t  zgw_security_apikey_key_fields[] = {
    F_STR_REQ("id", 1, ZGW_APIKEY_ID_MAX),
    F_STR_REQ("sha256", 64, 64),
    ZGW_END
};


static const zgw_field_t  zgw_security_apikey_fields[] = {
    F_STR_DEF("header", "X-API-Key", 1, 255),
    F_CRED_OPT("key"),                  /* direction "out": the key sent */
    F_OBJLIST("keys", zgw_security_apikey_key_fields, ZGW_APIKEYS_MAX),
    ZGW_END
};


static const zgw_field_t  zgw_security_jwt_fields[] = {
    F_ENUM_DEF("alg", zgw_enum_jwt_alg, "HS256"),
    F_SECRET_OPT("secret"),             /* HS* */
    F_STR_OPT("public_key", 1, 16384),  /* the others: a PEM ... */
    F_JSONOBJ("jwks"),                  /* ... or a JWKS document */
    F_STR_OPT("iss", 1, 1024),
    F_STRS("aud", 1024),
    F_INT_DEF("leeway", 0, 0, 3600),
    F_BOOL_DEF("require_exp", 1),
    F_INT_OPT("max_age", 1, 31536000),
    F_STRLIST("claims_to_headers"),
    ZGW_END
};


static const zgw_variant_t  zgw_security_variants[] = {
    { "basic_auth", zgw_security_basic_fields },
    { "apikey", zgw_security_apikey_fields },
    { "jwt", zgw_security_jwt_fields },
    { NULL, NULL }
};


static const zgw_field_t  zgw_startup_fields[] = {
    ZGW_COMMON,
    F_REF_REQ("service", ZGW_KIND_SERVICE),
    F_STR_OPT("payload", 0, 16777216),
    F_STR_OPT("payload_file", 1, 4096),
    /* first: once per cluster start (one zmqd); each: every zmqd process */
    F_ENUM_DEF("when", zgw_enum_startup_when, "first"),
    ZGW_END
};


/*
 * STOMP 1.2 (ActiveMQ, RabbitMQ's STOMP plugin): a definition, outgoing
 * connections the gateway publishes through, channels zmqd consumes.
 */
static const zgw_field_t  zgw_stomp_def_fields[] = {
    ZGW_COMMON,
    F_STR_DEF("host", "127.0.0.1", 1, 253),
    F_INT_DEF("port", 61613, 1, 65535),
    F_STRLIST("hosts"),                 /* failover after host:port */
    F_STR_OPT("virtual_host", 1, 255),  /* CONNECT's host; else the host */
    F_STR_OPT("login", 0, 255),
    F_SECRET_OPT("passcode"),
    F_INT_DEF("heartbeat", 10, 0, 600), /* seconds; 0: none */
    F_BOOL_DEF("use_jms", 0),
    F_BOOL_DEF("tls", 0),
    F_STR_OPT("ca_file", 1, 4096),      /* TLS: absent = the system store */
    F_BOOL_DEF("verify", 1),            /* TLS: chain and host name */
    F_STR_OPT("server_name", 1, 253),   /* TLS: SNI and name checked */
    F_STR_OPT("cert_file", 1, 4096),    /* TLS client certificate ... */
    F_STR_OPT("key_file", 1, 4096),     /* ... and its key: both or none */
    ZGW_END
};


static const zgw_field_t  zgw_stomp_outconn_fields[] = {
    ZGW_COMMON,
    F_REF_REQ("def", ZGW_KIND_STOMP_DEF),
    F_BOOL_DEF("persistent", 1),
    F_INT_OPT("priority", 0, 9),
    F_INT_OPT("expires", 1, 2147483647),    /* ms */
    F_STR_OPT("content_type", 1, 255),
    F_INT_DEF("max_inflight", 1024, 1, 65536),
    ZGW_END
};


static const zgw_field_t  zgw_stomp_channel_fields[] = {
    ZGW_COMMON,
    F_REF_REQ("def", ZGW_KIND_STOMP_DEF),
    F_STR_REQ("destination", 1, 1024),
    F_REF_REQ("service", ZGW_KIND_SERVICE),
    F_INT_DEF("prefetch", 10, 1, 65535),
    F_ENUM_DEF("data_format", zgw_enum_data_format, "none"),
    F_OBJ("retry", zgw_retry_fields),
    F_STR_OPT("dead_letter", 1, 1024),  /* absent: destination + ".dead" */
    ZGW_END
};


static int zgw_check_amqp_def(const char *who, json_t *obj,
    zgw_errors_t *errs);
static int zgw_check_amqp_channel(const char *who, json_t *obj,
    zgw_errors_t *errs);
static int zgw_check_http_outconn(const char *who, json_t *obj,
    zgw_errors_t *errs);
static int zgw_check_service(const char *who, json_t *obj,
    zgw_errors_t *errs);
static int zgw_check_rest_channel(const char *who, json_t *obj,
    zgw_errors_t *errs);
static int zgw_check_startup(const char *who, json_t *obj,
    zgw_errors_t *errs);
static int zgw_check_stomp_def(const char *who, json_t *obj,
    zgw_errors_t *errs);
static int zgw_check_stomp_outconn(const char *who, json_t *obj,
    zgw_errors_t *errs);
static int zgw_check_stomp_channel(const char *who, json_t *obj,
    zgw_errors_t *errs);
static int zgw_check_security(const char *who, json_t *obj,
    zgw_errors_t *errs);
static int zgw_check_publish(const char *who, json_t *obj,
    zgw_errors_t *errs);
static int zgw_jwt_needs_secret(const json_t *obj);
static int zgw_check_routing_key(const char *who, const char *field,
    json_t *rk, json_t *ex, zgw_errors_t *errs);


static const zgw_schema_t  zgw_schemas[ZGW_KIND_MAX] = {
    { "amqp_def", zgw_amqp_def_fields, NULL, NULL, zgw_check_amqp_def },
    { "amqp_outconn", zgw_amqp_outconn_fields, NULL, NULL, NULL },
    { "amqp_channel", zgw_amqp_channel_fields, NULL, NULL,
      zgw_check_amqp_channel },
    { "http_outconn", zgw_http_outconn_fields, NULL, NULL,
      zgw_check_http_outconn },
    { "service", zgw_service_fields, "kind", zgw_service_variants,
      zgw_check_service },
    { "rest_channel", zgw_rest_channel_fields, NULL, NULL,
      zgw_check_rest_channel },
    { "security", zgw_security_fields, "type", zgw_security_variants,
      zgw_check_security },
    { "startup", zgw_startup_fields, NULL, NULL, zgw_check_startup },
    { "stomp_def", zgw_stomp_def_fields, NULL, NULL, zgw_check_stomp_def },
    { "stomp_outconn", zgw_stomp_outconn_fields, NULL, NULL,
      zgw_check_stomp_outconn },
    { "stomp_channel", zgw_stomp_channel_fields, NULL, NULL,
      zgw_check_stomp_channel },
};


const char *
zgw_kind_name(int kind)
{
    if (kind < 0 || kind >= ZGW_KIND_MAX) {
        return "?";
    }

    return zgw_schemas[kind].name;
}


int
zgw_kind_from_name(const char *name)
{
    int  k;

    for (k = 0; k < ZGW_KIND_MAX; k++) {
        if (strcmp(zgw_schemas[k].name, name) == 0) {
            return k;
        }
    }

    return -1;
}


int
zgw_name_valid(const char *name)
{
    size_t  n;

    n = strlen(name);
    if (n == 0 || n > ZGW_NAME_MAX) {
        return 0;
    }

    /* "." and ".." are path segments to browsers and NGINX: no URL names them */
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        return 0;
    }

    for ( /* void */ ; *name; name++) {
        if (!isalnum((unsigned char) *name) && strchr("._:-@", *name) == NULL)
        {
            return 0;
        }
    }

    return 1;
}


zgw_config_t *
zgw_config_new(void)
{
    int            k;
    zgw_config_t  *cfg;

    cfg = calloc(1, sizeof(zgw_config_t));
    if (cfg == NULL) {
        return NULL;
    }

    for (k = 0; k < ZGW_KIND_MAX; k++) {
        cfg->objs[k] = json_object();
        cfg->invalid[k] = json_object();
        cfg->versions[k] = json_object();
        if (cfg->objs[k] == NULL || cfg->invalid[k] == NULL
            || cfg->versions[k] == NULL)
        {
            zgw_config_free(cfg);
            return NULL;
        }
    }

    return cfg;
}


zgw_config_t *
zgw_config_copy(const zgw_config_t *cfg)
{
    int            k;
    zgw_config_t  *copy;

    copy = calloc(1, sizeof(zgw_config_t));
    if (copy == NULL) {
        return NULL;
    }

    for (k = 0; k < ZGW_KIND_MAX; k++) {
        copy->objs[k] = json_deep_copy(cfg->objs[k]);
        copy->invalid[k] = json_deep_copy(cfg->invalid[k]);
        copy->versions[k] = json_deep_copy(cfg->versions[k]);
        if (copy->objs[k] == NULL || copy->invalid[k] == NULL
            || copy->versions[k] == NULL)
        {
            zgw_config_free(copy);
            return NULL;
        }
    }

    copy->version = cfg->version;
    return copy;
}


void
zgw_config_free(zgw_config_t *cfg)
{
    int  k;

    if (cfg == NULL) {
        return;
    }

    for (k = 0; k < ZGW_KIND_MAX; k++) {
        json_decref(cfg->objs[k]);
        json_decref(cfg->invalid[k]);
        json_decref(cfg->versions[k]);
    }

    free(cfg);
}


/* the variant field table that applies to obj, or NULL */
static const zgw_field_t *
zgw_variant_fields(const zgw_schema_t *s, const json_t *obj)
{
    const char           *v;
    const zgw_variant_t  *var;

    if (s->variants == NULL) {
        return NULL;
    }

    v = json_string_value(json_object_get(obj, s->discriminator));
    if (v == NULL) {
        return NULL;
    }

    for (var = s->variants; var->value; var++) {
        if (strcmp(var->value, v) == 0) {
            return var->fields;
        }
    }

    return NULL;
}


static const zgw_field_t *
zgw_find_field(const zgw_field_t *fields, const char *name)
{
    const zgw_field_t  *f;

    if (fields == NULL) {
        return NULL;
    }

    for (f = fields; f->name; f++) {
        if (strcmp(f->name, name) == 0) {
            return f;
        }
    }

    return NULL;
}


static int
zgw_enum_has(const char *const *e, const char *v)
{
    for ( /* void */ ; *e; e++) {
        if (strcmp(*e, v) == 0) {
            return 1;
        }
    }

    return 0;
}


static void
zgw_enum_list(const char *const *e, char *buf, size_t size)
{
    size_t  n;

    buf[0] = '\0';
    for ( /* void */ ; *e; e++) {
        n = strlen(buf);
        snprintf(buf + n, size - n, "%s%s", n ? ", " : "", *e);
    }
}


static int zgw_validate_fields(const char *who, const char *prefix,
    const zgw_field_t *fields, const zgw_field_t *more, const json_t *in,
    json_t *out, const char *direction, zgw_errors_t *errs);


/* validates one value; on success sets *res to a new reference */
static int
zgw_validate_value(const char *who, const char *path, const zgw_field_t *f,
    json_t *v, const char *direction, json_t **res, zgw_errors_t *errs)
{
    char         buf[256], *text;
    size_t       i, len;
    double       d;
    json_t      *item, *sub;
    json_int_t   n;
    const char  *key, *s;

    switch (f->type) {

    case ZGW_T_STR:
    case ZGW_T_REF:
        if (!json_is_string(v)) {
            zgw_errors_add(errs, "%s: field '%s' must be a string", who,
                           path);
            return ZGW_ERROR;
        }

        s = json_string_value(v);
        len = json_string_length(v);

        if (strlen(s) != len) {
            zgw_errors_add(errs, "%s: field '%s' contains a NUL character",
                           who, path);
            return ZGW_ERROR;
        }

        if (f->type == ZGW_T_REF) {
            if (!zgw_name_valid(s)) {
                zgw_errors_add(errs, "%s: field '%s' is not a valid object "
                               "name: '%s'", who, path, s);
                return ZGW_ERROR;
            }

        } else if ((long long) len < f->min
                   || (f->max && (long long) len > f->max))
        {
            if (len == 0) {
                zgw_errors_add(errs, "%s: field '%s' must not be empty", who,
                               path);
            } else {
                zgw_errors_add(errs, "%s: field '%s' is %zu characters "
                               "long; allowed %lld-%lld", who, path, len,
                               f->min, f->max);
            }
            return ZGW_ERROR;
        }

        *res = json_incref(v);
        return ZGW_OK;

    case ZGW_T_ENUM:
        if (!json_is_string(v) || !zgw_enum_has(f->enums,
                                                json_string_value(v)))
        {
            zgw_enum_list(f->enums, buf, sizeof(buf));
            if (json_is_string(v)) {
                zgw_errors_add(errs, "%s: %s '%s' is not one of: %s", who,
                               path, json_string_value(v), buf);
            } else {
                zgw_errors_add(errs, "%s: field '%s' must be one of: %s",
                               who, path, buf);
            }
            return ZGW_ERROR;
        }

        *res = json_incref(v);
        return ZGW_OK;

    case ZGW_T_INT:
        if (!json_is_integer(v)) {
            zgw_errors_add(errs, "%s: field '%s' must be an integer", who,
                           path);
            return ZGW_ERROR;
        }

        n = json_integer_value(v);
        if (n < f->min || n > f->max) {
            zgw_errors_add(errs, "%s: %s %lld is out of range %lld-%lld",
                           who, path, (long long) n, f->min, f->max);
            return ZGW_ERROR;
        }

        *res = json_incref(v);
        return ZGW_OK;

    case ZGW_T_NUM:
        if (!json_is_number(v)) {
            zgw_errors_add(errs, "%s: field '%s' must be a number", who,
                           path);
            return ZGW_ERROR;
        }

        d = json_number_value(v);
        if (d < (double) f->min || d > (double) f->max) {
            zgw_errors_add(errs, "%s: %s %g is out of range %lld-%lld", who,
                           path, d, f->min, f->max);
            return ZGW_ERROR;
        }

        *res = json_real(d);
        return ZGW_OK;

    case ZGW_T_BOOL:
        if (!json_is_boolean(v)) {
            zgw_errors_add(errs, "%s: field '%s' must be true or false", who,
                           path);
            return ZGW_ERROR;
        }

        *res = json_incref(v);
        return ZGW_OK;

    case ZGW_T_STRLIST:
    case ZGW_T_REFLIST:
        if (!json_is_array(v)) {
            zgw_errors_add(errs, "%s: field '%s' must be an array of "
                           "strings", who, path);
            return ZGW_ERROR;
        }

        json_array_foreach(v, i, item) {
            if (!json_is_string(item)
                || (f->type == ZGW_T_REFLIST
                    && !zgw_name_valid(json_string_value(item))))
            {
                zgw_errors_add(errs, "%s: %s[%zu] must be %s", who, path, i,
                               f->type == ZGW_T_REFLIST ? "an object name"
                                                        : "a string");
                return ZGW_ERROR;
            }
        }

        if (f->type == ZGW_T_REFLIST && f->required
            && json_array_size(v) == 0)
        {
            zgw_errors_add(errs, "%s: field '%s' must name at least one "
                           "object", who, path);
            return ZGW_ERROR;
        }

        *res = json_incref(v);
        return ZGW_OK;

    case ZGW_T_STRMAP:
        if (!json_is_object(v)) {
            zgw_errors_add(errs, "%s: field '%s' must be an object of "
                           "strings", who, path);
            return ZGW_ERROR;
        }

        json_object_foreach(v, key, item) {
            if (!json_is_string(item)) {
                zgw_errors_add(errs, "%s: %s.%s must be a string", who, path,
                               key);
                return ZGW_ERROR;
            }
        }

        *res = json_incref(v);
        return ZGW_OK;

    case ZGW_T_OBJ:
        if (!json_is_object(v)) {
            zgw_errors_add(errs, "%s: field '%s' must be an object", who,
                           path);
            return ZGW_ERROR;
        }

        sub = json_object();
        if (zgw_validate_fields(who, path, f->sub, NULL, v, sub, NULL, errs)
            != ZGW_OK)
        {
            json_decref(sub);
            return ZGW_ERROR;
        }

        *res = sub;
        return ZGW_OK;

    case ZGW_T_OBJLIST:
        if (!json_is_array(v)) {
            zgw_errors_add(errs, "%s: field '%s' must be an array of "
                           "objects", who, path);
            return ZGW_ERROR;
        }

        if (f->max && (long long) json_array_size(v) > f->max) {
            zgw_errors_add(errs, "%s: field '%s' has %zu items; at most "
                           "%lld", who, path, json_array_size(v), f->max);
            return ZGW_ERROR;
        }

        *res = json_array();
        if (*res == NULL) {
            zgw_errors_add(errs, "%s: out of memory", who);
            return ZGW_ERROR;
        }

        json_array_foreach(v, i, item) {
            snprintf(buf, sizeof(buf), "%.200s[%zu]", path, i);

            if (!json_is_object(item)) {
                zgw_errors_add(errs, "%s: %s must be an object", who, buf);
                json_decref(*res);
                return ZGW_ERROR;
            }

            sub = json_object();
            if (sub == NULL
                || zgw_validate_fields(who, buf, f->sub, NULL, item, sub,
                                       NULL, errs)
                   != ZGW_OK)
            {
                json_decref(sub);
                json_decref(*res);
                return ZGW_ERROR;
            }

            json_array_append_new(*res, sub);
        }

        return ZGW_OK;

    case ZGW_T_JSON:
        text = json_dumps(v, JSON_COMPACT|JSON_ENCODE_ANY);
        len = text ? strlen(text) : 0;
        free(text);

        if (len == 0 || len > 65536) {
            zgw_errors_add(errs, "%s: field '%s' must be JSON of at most "
                           "65536 bytes", who, path);
            return ZGW_ERROR;
        }

        *res = json_incref(v);
        return ZGW_OK;

    case ZGW_T_JSONOBJ:
        if (!json_is_object(v)) {
            zgw_errors_add(errs, "%s: field '%s' must be an object", who,
                           path);
            return ZGW_ERROR;
        }

        *res = json_incref(v);
        return ZGW_OK;

    case ZGW_T_STRS:
        if (json_is_string(v)) {
            item = v;
            len = 1;
        } else if (json_is_array(v) && json_array_size(v) > 0) {
            item = NULL;
            len = json_array_size(v);
        } else {
            zgw_errors_add(errs, "%s: field '%s' must be a string or a "
                           "non-empty array of strings", who, path);
            return ZGW_ERROR;
        }

        for (i = 0; i < len; i++) {
            sub = item != NULL ? item : json_array_get(v, i);
            if (!json_is_string(sub) || json_string_length(sub) == 0
                || (f->max && (long long) json_string_length(sub) > f->max)
                || strlen(json_string_value(sub)) != json_string_length(sub))
            {
                zgw_errors_add(errs, "%s: field '%s' must hold non-empty "
                               "strings of at most %lld characters", who,
                               path, f->max);
                return ZGW_ERROR;
            }
        }

        *res = json_incref(v);
        return ZGW_OK;

    case ZGW_T_SECRET:
    case ZGW_T_CRED:
        if (json_is_string(v)) {
            if (json_string_length(v) == 0
                || strlen(json_string_value(v)) != json_string_length(v))
            {
                zgw_errors_add(errs, "%s: secret '%s' must be a non-empty "
                               "string without NUL characters", who, path);
                return ZGW_ERROR;
            }
            *res = json_incref(v);
            return ZGW_OK;
        }

        key = (f->type == ZGW_T_CRED && direction != NULL
               && strcmp(direction, "in") == 0) ? "$hash" : "$sealed";

        if (json_is_object(v) && json_object_size(v) == 1
            && json_is_string(json_object_get(v, key)))
        {
            *res = json_incref(v);
            return ZGW_OK;
        }

        zgw_errors_add(errs, "%s: secret '%s' must be a string (or the "
                       "stored {\"%s\": ...} form)", who, path, key);
        return ZGW_ERROR;
    }

    zgw_errors_add(errs, "%s: field '%s' has an unknown type", who, path);
    return ZGW_ERROR;
}


static int
zgw_validate_fields(const char *who, const char *prefix,
    const zgw_field_t *fields, const zgw_field_t *more, const json_t *in,
    json_t *out, const char *direction, zgw_errors_t *errs)
{
    int                 rc, pass;
    char                path[300];
    json_t             *v, *res;
    const char         *key;
    const zgw_field_t  *f, *set;

    rc = ZGW_OK;

    json_object_foreach((json_t *) in, key, v) {
        if (zgw_find_field(fields, key) == NULL
            && zgw_find_field(more, key) == NULL)
        {
            if (prefix) {
                zgw_errors_add(errs, "%s: unknown field '%s.%s'", who,
                               prefix, key);
            } else {
                zgw_errors_add(errs, "%s: unknown field '%s'", who, key);
            }
            rc = ZGW_ERROR;
        }
    }

    for (pass = 0; pass < 2; pass++) {
        set = pass == 0 ? fields : more;
        if (set == NULL) {
            continue;
        }

        for (f = set; f->name; f++) {
            if (prefix) {
                snprintf(path, sizeof(path), "%s.%s", prefix, f->name);
            } else {
                snprintf(path, sizeof(path), "%s", f->name);
            }

            v = json_object_get(in, f->name);

            if (v == NULL || json_is_null(v)) {
                if (f->required) {
                    zgw_errors_add(errs, "%s: missing required field '%s'",
                                   who, path);
                    rc = ZGW_ERROR;
                    continue;
                }

                if (!f->has_def) {
                    continue;
                }

                switch (f->type) {
                case ZGW_T_INT:
                    res = json_integer(f->def_int);
                    break;
                case ZGW_T_NUM:
                    res = json_real(f->def_num);
                    break;
                case ZGW_T_BOOL:
                    res = json_boolean(f->def_int);
                    break;
                default:
                    res = json_string(f->def_str);
                    break;
                }

                json_object_set_new(out, f->name, res);
                continue;
            }

            res = NULL;
            if (zgw_validate_value(who, path, f, v, direction, &res, errs)
                != ZGW_OK)
            {
                rc = ZGW_ERROR;
                continue;
            }

            json_object_set_new(out, f->name, res);
        }
    }

    return rc;
}


/* a definition's host, and its hosts, host[:port] (default port) each */
static int
zgw_check_hosts(const char *who, json_t *obj, int port,
    zgw_errors_t *errs)
{
    int              rc;
    char             where[ZGW_NAME_MAX + 128];
    size_t           i;
    json_t          *item, *host;
    zgw_hostport_t   hp;

    rc = ZGW_OK;
    host = json_object_get(obj, "host");

    if (json_is_string(host)) {
        snprintf(where, sizeof(where), "%s: host", who);
        if (zgw_host_parse(&hp, json_string_value(host),
                           json_string_length(host), where, errs)
            != ZGW_OK)
        {
            rc = ZGW_ERROR;
        }
    }

    json_array_foreach(json_object_get(obj, "hosts"), i, item) {
        snprintf(where, sizeof(where), "%s: hosts[%zu]", who, i);
        if (zgw_hostport_parse(&hp, json_string_value(item),
                               json_string_length(item), port, where, errs)
            != ZGW_OK)
        {
            rc = ZGW_ERROR;
        }
    }

    return rc;
}


/*
 * TLS options of a definition: a client certificate needs its key and the
 * other way round; server_name is a host name (SNI and the name checked).
 */
static int
zgw_check_tls(const char *who, json_t *obj, zgw_errors_t *errs)
{
    int              rc;
    char             where[ZGW_NAME_MAX + 128];
    json_t          *cert, *key, *sn;
    zgw_hostport_t   hp;

    rc = ZGW_OK;
    cert = json_object_get(obj, "cert_file");
    key = json_object_get(obj, "key_file");

    if ((cert == NULL) != (key == NULL)) {
        zgw_errors_add(errs, "%s: cert_file and key_file go together (a "
                       "client certificate needs its key)", who);
        rc = ZGW_ERROR;
    }

    sn = json_object_get(obj, "server_name");

    if (json_is_string(sn)) {
        snprintf(where, sizeof(where), "%s: server_name", who);
        if (zgw_host_parse(&hp, json_string_value(sn),
                           json_string_length(sn), where, errs)
            != ZGW_OK)
        {
            rc = ZGW_ERROR;
        }
    }

    return rc;
}


static int
zgw_check_amqp_def(const char *who, json_t *obj, zgw_errors_t *errs)
{
    int  rc;

    rc = zgw_check_hosts(who, obj, 5672, errs);

    if (zgw_check_tls(who, obj, errs) != ZGW_OK) {
        rc = ZGW_ERROR;
    }

    return rc;
}


static int
zgw_check_retry(const char *who, json_t *retry, zgw_errors_t *errs)
{
    json_int_t  initial, max;

    if (retry == NULL) {
        return ZGW_OK;
    }

    initial = json_integer_value(json_object_get(retry, "initial_delay"));
    max = json_integer_value(json_object_get(retry, "max_delay"));

    if (max < initial) {
        zgw_errors_add(errs, "%s: retry.max_delay %lld is less than "
                       "retry.initial_delay %lld", who, (long long) max,
                       (long long) initial);
        return ZGW_ERROR;
    }

    return ZGW_OK;
}


static int
zgw_check_amqp_channel(const char *who, json_t *obj, zgw_errors_t *errs)
{
    int      rc;
    json_t  *dl;

    rc = zgw_check_retry(who, json_object_get(obj, "retry"), errs);

    dl = json_object_get(obj, "dead_letter");
    if (dl != NULL
        && zgw_check_routing_key(who, "dead_letter.routing_key",
                                 json_object_get(dl, "routing_key"),
                                 json_object_get(dl, "exchange"), errs)
           != ZGW_OK)
    {
        rc = ZGW_ERROR;
    }

    return rc;
}


static int
zgw_check_http_outconn(const char *who, json_t *obj, zgw_errors_t *errs)
{
    char             where[ZGW_NAME_MAX + 128], shown[ZGW_URL_SHOW_MAX];
    const char      *url, *rest, *p, *end;
    zgw_errors_t     hperrs;
    zgw_hostport_t   hp;

    url = json_string_value(json_object_get(obj, "url"));
    if (url == NULL) {
        return ZGW_OK;
    }

    /* messages show the url without a password */
    zgw_url_redact(url, shown, sizeof(shown));

    if (strncmp(url, "http://", 7) == 0) {
        rest = url + 7;
    } else if (strncmp(url, "https://", 8) == 0) {
        rest = url + 8;
    } else {
        zgw_errors_add(errs, "%s: url '%s' must start with http:// or "
                       "https://", who, shown);
        return ZGW_ERROR;
    }

    if (*rest == '\0' || *rest == '/') {
        zgw_errors_add(errs, "%s: url '%s' has no host", who, shown);
        return ZGW_ERROR;
    }

    for (p = rest; *p; p++) {
        if ((unsigned char) *p <= ' ' || *p == 0x7f) {
            zgw_errors_add(errs, "%s: url '%s' contains white space or "
                           "control characters", who, shown);
            return ZGW_ERROR;
        }
    }

    /*
     * The authority: host[:port]. Credentials in a url would be stored in
     * Redis and shown by get and export in clear: they belong in a
     * security definition, whose secrets are sealed.
     */

    end = rest + strcspn(rest, "/?#");

    if (memchr(rest, '@', (size_t) (end - rest)) != NULL) {
        zgw_errors_add(errs, "%s: url '%s' holds credentials ('user@' or "
                       "'user:password@'), which would be stored and shown "
                       "in clear: give them in a security definition "
                       "(direction \"out\") named by 'security'", who, shown);
        return ZGW_ERROR;
    }

    snprintf(where, sizeof(where), "%s: url host", who);
    zgw_errors_init(&hperrs);

    if (zgw_hostport_parse(&hp, rest, (size_t) (end - rest),
                           url[4] == 's' ? 443 : 80, where, &hperrs)
        != ZGW_OK)
    {
        /* "http://user:pass/word@host": the host error would echo it */
        if (strchr(end, '@') != NULL) {
            zgw_errors_add(errs, "%s: url '%s' has no valid host (a '/' "
                           "in a password ends the host; credentials are "
                           "not allowed in a url anyway: use 'security')",
                           who, shown);
        } else {
            zgw_errors_move(errs, &hperrs);
        }

        zgw_errors_free(&hperrs);
        return ZGW_ERROR;
    }

    zgw_errors_free(&hperrs);
    return ZGW_OK;
}


/* a routing key (or a template of one) that RabbitMQ accepts */
static int
zgw_check_routing_key(const char *who, const char *field, json_t *rk,
    json_t *ex, zgw_errors_t *errs)
{
    char         echo[80];
    const char  *why;

    if (!json_is_string(rk)) {
        return ZGW_OK;
    }

    why = zgw_amqp_routing_key_check(json_string_value(ex),
                                     json_string_length(ex),
                                     json_string_value(rk),
                                     json_string_length(rk));
    if (why != NULL) {
        zgw_amqp_echo(echo, sizeof(echo), json_string_value(rk),
                      json_string_length(rk), 64);
        zgw_errors_add(errs, "%s: %s '%s': %s", who, field, echo, why);
        return ZGW_ERROR;
    }

    return ZGW_OK;
}


/* each name and value of an AMQP headers table */
static int
zgw_check_amqp_headers(const char *who, const char *field, json_t *obj,
    zgw_errors_t *errs)
{
    int          rc;
    char         echo[80];
    json_t      *v;
    const char  *key, *why;

    rc = ZGW_OK;

    json_object_foreach(json_object_get(obj, field), key, v) {
        zgw_amqp_echo(echo, sizeof(echo), key, strlen(key), 64);

        why = zgw_amqp_header_name_check(key, strlen(key));
        if (why != NULL) {
            zgw_errors_add(errs, "%s: %s '%s': %s", who, field, echo, why);
            rc = ZGW_ERROR;
            continue;
        }

        why = zgw_amqp_header_value_check(json_string_value(v),
                                          json_string_length(v));
        if (why != NULL) {
            zgw_errors_add(errs, "%s: %s '%s': %s", who, field, echo, why);
            rc = ZGW_ERROR;
        }
    }

    return rc;
}


/*
 * A redis service's url: a Redis address whose password, if any, is in the
 * sealed field "password", never in the url (stored and shown in clear).
 */
static int
zgw_check_redis_url(const char *who, json_t *obj, int tls,
    zgw_errors_t *errs)
{
    int                rc;
    char               shown[ZGW_URL_SHOW_MAX];
    const char        *url;
    zgw_errors_t       why;
    zgw_redis_addr_t   addr;

    url = json_string_value(json_object_get(obj, "url"));

    if (url == NULL) {
        if (json_object_get(obj, "password") != NULL) {
            zgw_errors_add(errs, "%s: password is the password of url; "
                           "without a url the service uses zmqd's "
                           "configuration Redis, with its credentials", who);
            return ZGW_ERROR;
        }
        return ZGW_OK;
    }

    /* rediss:// (TLS) where the consumer speaks it: redis_page (NGINX) */
    if (strncmp(url, "redis://", 8) != 0
        && !(tls && strncmp(url, "rediss://", 9) == 0))
    {
        zgw_errors_add(errs, "%s: url '%s' must start with redis://%s", who,
                       zgw_url_redact(url, shown, sizeof(shown)),
                       tls ? " or rediss://" : "");
        return ZGW_ERROR;
    }

    rc = ZGW_OK;
    zgw_errors_init(&why);

    if (zgw_redis_addr_parse(&addr, url, &why) != ZGW_OK) {
        zgw_errors_add(errs, "%s: url: %s", who, zgw_errors_first(&why));
        rc = ZGW_ERROR;

    } else if (addr.has_password) {
        zgw_errors_add(errs, "%s: url '%s' holds a password, which would be "
                       "stored and shown in clear: give it in the field "
                       "'password' (sealed with the key file), and the url "
                       "as redis://[user@]host[:port][/db]", who,
                       zgw_url_redact(url, shown, sizeof(shown)));
        rc = ZGW_ERROR;
    }

    memset(addr.password, 0, sizeof(addr.password));
    zgw_errors_free(&why);
    return rc;
}


/*
 * A value that goes into a STOMP header or destination: STOMP 1.2 escapes
 * ':' and '\' itself, but CONNECT's headers are not escaped and no
 * frame may carry a NUL, CR or LF in a header. A secret is not echoed.
 */
static int
zgw_check_stomp_text(const char *who, const char *field, json_t *v,
    int secret, zgw_errors_t *errs)
{
    char         echo[80];
    size_t       len;
    const char  *s;

    if (!json_is_string(v)) {
        return ZGW_OK;
    }

    s = json_string_value(v);
    len = json_string_length(v);

    if (strlen(s) == len && strcspn(s, "\r\n") == len) {
        return ZGW_OK;
    }

    if (secret) {
        zgw_errors_add(errs, "%s: %s holds a NUL, carriage return or line "
                       "feed, which a STOMP header cannot carry", who, field);
    } else {
        zgw_amqp_echo(echo, sizeof(echo), s, len, 64);
        zgw_errors_add(errs, "%s: %s '%s' holds a NUL, carriage return or "
                       "line feed, which a STOMP header cannot carry", who,
                       field, echo);
    }

    return ZGW_ERROR;
}


/*
 * A publish service sends through exactly one of outconn (AMQP: exchange,
 * routing_key, mandatory) and stomp_outconn (STOMP: destination). The
 * AMQP fields, filled with their defaults, are left out of a STOMP one.
 */
static int
zgw_check_publish(const char *who, json_t *obj, zgw_errors_t *errs)
{
    int          rc;
    json_t      *oc, *soc, *dest, *v;
    const char  *ex, *rk;

    oc = json_object_get(obj, "outconn");
    soc = json_object_get(obj, "stomp_outconn");
    dest = json_object_get(obj, "destination");

    if (oc == NULL && soc == NULL) {
        zgw_errors_add(errs, "%s: a publish service needs 'outconn' (an "
                       "amqp_outconn) or 'stomp_outconn' (a stomp_outconn)",
                       who);
        return ZGW_ERROR;
    }

    if (oc != NULL && soc != NULL) {
        zgw_errors_add(errs, "%s: set 'outconn' (AMQP) or 'stomp_outconn' "
                       "(STOMP), not both", who);
        return ZGW_ERROR;
    }

    if (soc == NULL) {
        if (dest != NULL) {
            zgw_errors_add(errs, "%s: 'destination' is a STOMP destination, "
                           "for 'stomp_outconn'; through 'outconn' (AMQP) "
                           "give exchange and routing_key", who);
            return ZGW_ERROR;
        }

        return ZGW_OK;
    }

    rc = ZGW_OK;

    if (dest == NULL) {
        zgw_errors_add(errs, "%s: a STOMP publish (stomp_outconn) needs a "
                       "'destination', e.g. \"/queue/orders\"", who);
        rc = ZGW_ERROR;

    } else if (zgw_check_stomp_text(who, "destination", dest, 0, errs)
               != ZGW_OK)
    {
        rc = ZGW_ERROR;
    }

    ex = json_string_value(json_object_get(obj, "exchange"));
    rk = json_string_value(json_object_get(obj, "routing_key"));
    v = json_object_get(obj, "mandatory");

    if ((ex != NULL && *ex != '\0') || (rk != NULL && *rk != '\0')
        || json_is_true(v))
    {
        zgw_errors_add(errs, "%s: exchange, routing_key and mandatory are "
                       "AMQP's, for 'outconn'; a STOMP publish "
                       "(stomp_outconn) sends to its 'destination'", who);
        rc = ZGW_ERROR;
    }

    if (zgw_check_stomp_text(who, "content_type",
                             json_object_get(obj, "content_type"), 0, errs)
        != ZGW_OK)
    {
        rc = ZGW_ERROR;
    }

    (void) json_object_del(obj, "exchange");
    (void) json_object_del(obj, "routing_key");
    (void) json_object_del(obj, "mandatory");

    return rc;
}


/*
 * A score bound as Redis reads it and as the Python paginator accepts it:
 * "-inf", "+inf", "inf" (any case), or a number, "(" first for an
 * exclusive bound; never NaN.
 */
int
zgw_score_bound_ok(const char *s, size_t len)
{
    char    buf[65], *end;
    size_t  i;
    double  d;

    while (len && isspace((unsigned char) s[0])) {
        s++;
        len--;
    }

    while (len && isspace((unsigned char) s[len - 1])) {
        len--;
    }

    if (len == 0 || len >= sizeof(buf)) {
        return 0;
    }

    if ((len == 4 && (strncasecmp(s, "-inf", 4) == 0
                      || strncasecmp(s, "+inf", 4) == 0))
        || (len == 3 && strncasecmp(s, "inf", 3) == 0))
    {
        return 1;
    }

    if (s[0] == '(') {
        s++;
        len--;
    }

    for (i = 0; i < len; i++) {
        /* strtod's hexadecimal and "nan(...)" forms are not Python's */
        if (s[i] == 'x' || s[i] == 'X' || s[i] == '(' || s[i] == '\0') {
            return 0;
        }
    }

    memcpy(buf, s, len);
    buf[len] = '\0';

    errno = 0;
    d = strtod(buf, &end);

    return len > 0 && end == buf + len && d == d && !isspace((unsigned char)
                                                             buf[0]);
}


/* does ref name a service of kind redis_page */
static int
zgw_is_page(const zgw_config_t *cfg, json_t *ref)
{
    json_t      *svc;
    const char  *kind;

    if (!json_is_string(ref)) {
        return 0;
    }

    svc = zgw_config_get(cfg, ZGW_KIND_SERVICE, json_string_value(ref));
    kind = json_string_value(json_object_get(svc, "kind"));

    return kind != NULL && strcmp(kind, "redis_page") == 0;
}


/* a zset-only field of a redis_page service set to other than its default */
static int
zgw_page_set(json_t *obj, const char *f)
{
    json_t  *v;

    v = json_object_get(obj, f);

    if (json_is_string(v)) {
        return strcmp(json_string_value(v),
                      strcmp(f, "score_min") == 0 ? "-inf" : "+inf") != 0;
    }

    return json_is_true(v);
}


static int
zgw_check_page(const char *who, json_t *obj, zgw_errors_t *errs)
{
    int          rc, i;
    const char  *f, *v;

    rc = ZGW_OK;

    if (json_integer_value(json_object_get(obj, "per_page"))
        > json_integer_value(json_object_get(obj, "max_per_page")))
    {
        zgw_errors_add(errs, "%s: per_page %lld is more than max_per_page "
                       "%lld", who,
                       (long long) json_integer_value(json_object_get(obj,
                                                              "per_page")),
                       (long long) json_integer_value(json_object_get(obj,
                                                          "max_per_page")));
        rc = ZGW_ERROR;
    }

    for (i = 0; i < 2; i++) {
        f = i == 0 ? "score_min" : "score_max";
        v = json_string_value(json_object_get(obj, f));

        if (v != NULL && !zgw_score_bound_ok(v, strlen(v))) {
            zgw_errors_add(errs, "%s: %s '%s' is not a Redis score bound (a "
                           "number, '(' and a number, '-inf' or '+inf')",
                           who, f, v);
            rc = ZGW_ERROR;
        }
    }

    v = json_string_value(json_object_get(obj, "source"));

    if (v != NULL && strcmp(v, "list") == 0) {
        for (i = 0; i < 4; i++) {
            f = i == 0 ? "score_min" : i == 1 ? "score_max"
                : i == 2 ? "reverse" : "withscores";

            if (zgw_page_set(obj, f)) {
                zgw_errors_add(errs, "%s: %s applies only to source 'zset'",
                               who, f);
                rc = ZGW_ERROR;
            }
        }
    }

    return rc;
}


static int
zgw_check_service(const char *who, json_t *obj, zgw_errors_t *errs)
{
    int          rc;
    const char  *kind;

    rc = zgw_check_retry(who, json_object_get(obj, "retry"), errs);
    kind = json_string_value(json_object_get(obj, "kind"));

    if (kind != NULL && strcmp(kind, "publish") == 0
        && zgw_check_publish(who, obj, errs) != ZGW_OK)
    {
        rc = ZGW_ERROR;
    }

    if (kind != NULL
        && (strcmp(kind, "publish") == 0 || strcmp(kind, "rpc") == 0))
    {
        if (zgw_check_routing_key(who, "routing_key",
                                  json_object_get(obj, "routing_key"),
                                  json_object_get(obj, "exchange"), errs)
            != ZGW_OK
            || zgw_check_amqp_headers(who, "headers", obj, errs) != ZGW_OK)
        {
            rc = ZGW_ERROR;
        }
    }

    if (kind != NULL && strcmp(kind, "invoke") == 0
        && strncmp(json_string_value(json_object_get(obj, "queue")), "amq.",
                   4) == 0)
    {
        zgw_errors_add(errs, "%s: queue '%s': names starting with 'amq.' are "
                       "reserved by the broker", who,
                       json_string_value(json_object_get(obj, "queue")));
        rc = ZGW_ERROR;
    }

    if (kind != NULL
        && (strcmp(kind, "redis") == 0 || strcmp(kind, "redis_page") == 0)
        && zgw_check_redis_url(who, obj, strcmp(kind, "redis_page") == 0,
                               errs)
           != ZGW_OK)
    {
        rc = ZGW_ERROR;
    }

    if (kind != NULL && strcmp(kind, "redis_page") == 0
        && zgw_check_page(who, obj, errs) != ZGW_OK)
    {
        rc = ZGW_ERROR;
    }

    if (kind != NULL && strcmp(kind, "redis") == 0) {

        if (json_object_get(obj, "score_field") != NULL
            && strcmp(json_string_value(json_object_get(obj, "op")), "zadd")
               != 0)
        {
            zgw_errors_add(errs, "%s: score_field applies only to op "
                           "'zadd'", who);
            rc = ZGW_ERROR;
        }
    }

    return rc;
}


static int
zgw_check_rest_channel(const char *who, json_t *obj, zgw_errors_t *errs)
{
    int          depth, params;
    const char  *path, *p;

    path = json_string_value(json_object_get(obj, "url_path"));
    if (path == NULL) {
        return ZGW_OK;
    }

    if (path[0] != '/') {
        zgw_errors_add(errs, "%s: url_path '%s' must start with '/'", who,
                       path);
        return ZGW_ERROR;
    }

    depth = 0;
    params = 0;

    for (p = path; *p; p++) {
        if ((unsigned char) *p <= ' ' || *p == '?' || *p == '#') {
            zgw_errors_add(errs, "%s: url_path '%s' contains a character "
                           "not allowed in a path at offset %d", who, path,
                           (int) (p - path));
            return ZGW_ERROR;
        }

        if (*p == '{') {
            if (depth || p[-1] != '/') {
                zgw_errors_add(errs, "%s: url_path '%s': a {param} must be "
                               "a whole path segment", who, path);
                return ZGW_ERROR;
            }
            depth = 1;

            if (++params > ZGW_ROUTE_PARAMS_MAX) {
                zgw_errors_add(errs, "%s: url_path '%s' has more than %d "
                               "{param} segments", who, path,
                               ZGW_ROUTE_PARAMS_MAX);
                return ZGW_ERROR;
            }

        } else if (*p == '}') {
            if (!depth || p[-1] == '{' || (p[1] != '/' && p[1] != '\0')) {
                zgw_errors_add(errs, "%s: url_path '%s': a {param} must be "
                               "a whole, named path segment", who, path);
                return ZGW_ERROR;
            }
            depth = 0;
        }
    }

    if (depth) {
        zgw_errors_add(errs, "%s: url_path '%s': unclosed '{'", who, path);
        return ZGW_ERROR;
    }

    return ZGW_OK;
}


static int
zgw_check_startup(const char *who, json_t *obj, zgw_errors_t *errs)
{
    const char  *file;

    if (json_object_get(obj, "payload") != NULL
        && json_object_get(obj, "payload_file") != NULL)
    {
        zgw_errors_add(errs, "%s: set payload or payload_file, not both",
                       who);
        return ZGW_ERROR;
    }

    /* a path, or Zato's file://path */
    file = json_string_value(json_object_get(obj, "payload_file"));
    if (file != NULL && strcmp(file, "file://") == 0) {
        zgw_errors_add(errs, "%s: payload_file 'file://' names no file",
                       who);
        return ZGW_ERROR;
    }

    return ZGW_OK;
}


static int
zgw_check_stomp_def(const char *who, json_t *obj, zgw_errors_t *errs)
{
    int  rc;

    rc = zgw_check_hosts(who, obj, 61613, errs);

    if (zgw_check_tls(who, obj, errs) != ZGW_OK) {
        rc = ZGW_ERROR;
    }

    if (zgw_check_stomp_text(who, "virtual_host",
                             json_object_get(obj, "virtual_host"), 0, errs)
        != ZGW_OK
        || zgw_check_stomp_text(who, "login", json_object_get(obj, "login"),
                                0, errs)
           != ZGW_OK)
    {
        rc = ZGW_ERROR;
    }

    /* in clear only before it is sealed */
    if (zgw_check_stomp_text(who, "passcode",
                             json_object_get(obj, "passcode"), 1, errs)
        != ZGW_OK)
    {
        rc = ZGW_ERROR;
    }

    return rc;
}


static int
zgw_check_stomp_outconn(const char *who, json_t *obj, zgw_errors_t *errs)
{
    return zgw_check_stomp_text(who, "content_type",
                                json_object_get(obj, "content_type"), 0,
                                errs);
}


static int
zgw_check_stomp_channel(const char *who, json_t *obj, zgw_errors_t *errs)
{
    int          rc;
    json_t      *dest, *dl;

    rc = zgw_check_retry(who, json_object_get(obj, "retry"), errs);

    dest = json_object_get(obj, "destination");
    dl = json_object_get(obj, "dead_letter");

    if (zgw_check_stomp_text(who, "destination", dest, 0, errs) != ZGW_OK
        || zgw_check_stomp_text(who, "dead_letter", dl, 0, errs) != ZGW_OK)
    {
        return ZGW_ERROR;
    }

    if (json_is_string(dest) && json_is_string(dl) && json_equal(dest, dl)) {
        zgw_errors_add(errs, "%s: dead_letter is the consumed destination: "
                       "a message that keeps failing would come back "
                       "forever", who);
        rc = ZGW_ERROR;
    }

    return rc;
}


/* HTTP token characters (RFC 9110 5.6.2): header names, key ids, claims */
static int
zgw_is_token(const char *s)
{
    if (*s == '\0') {
        return 0;
    }

    for ( /* void */ ; *s; s++) {
        if (!(isalnum((unsigned char) *s) || strchr("!#$%&'*+-.^_`|~", *s)))
        {
            return 0;
        }
    }

    return 1;
}


/* printable ASCII or UTF-8, no control characters, none of the excluded */
static int
zgw_is_text(const char *s, const char *excluded)
{
    for ( /* void */ ; *s; s++) {
        if ((unsigned char) *s < 0x20 || *s == 0x7f
            || strchr(excluded, *s) != NULL)
        {
            return 0;
        }
    }

    return 1;
}


static int
zgw_check_security_apikey(const char *who, json_t *obj, int in,
    zgw_errors_t *errs)
{
    int          rc;
    size_t       i, j;
    json_t      *keys, *k;
    const char  *id, *digest, *p;

    rc = ZGW_OK;
    keys = json_object_get(obj, "keys");

    if (!zgw_is_token(json_string_value(json_object_get(obj, "header")))) {
        zgw_errors_add(errs, "%s: header must be an HTTP header name", who);
        rc = ZGW_ERROR;
    }

    if (!in) {
        if (keys != NULL) {
            zgw_errors_add(errs, "%s: 'keys' are the digests of the keys "
                           "clients send in; direction \"out\" sends one "
                           "'key'", who);
            rc = ZGW_ERROR;
        }
        return rc;
    }

    if (json_object_get(obj, "key") != NULL) {
        zgw_errors_add(errs, "%s: an incoming apikey definition does not "
                       "store keys: it holds their SHA-256 digests in "
                       "'keys'; make one with 'zmqctl apikey %s'", who,
                       json_string_value(json_object_get(obj, "name")));
        rc = ZGW_ERROR;
    }

    json_array_foreach(keys, i, k) {
        id = json_string_value(json_object_get(k, "id"));
        digest = json_string_value(json_object_get(k, "sha256"));

        if (id == NULL || digest == NULL) {
            continue;                   /* reported by the field check */
        }

        if (!zgw_is_token(id)) {
            zgw_errors_add(errs, "%s: keys[%zu].id '%s' may hold letters, "
                           "digits and !#$%%&'*+-.^_`|~ only", who, i, id);
            rc = ZGW_ERROR;
        }

        for (p = digest; *p; p++) {
            if (!(isdigit((unsigned char) *p) || (*p >= 'a' && *p <= 'f'))) {
                zgw_errors_add(errs, "%s: keys[%zu].sha256 must be 64 "
                               "lowercase hex digits", who, i);
                rc = ZGW_ERROR;
                break;
            }
        }

        for (j = 0; j < i; j++) {
            if (strcmp(id, json_string_value(json_object_get(
                               json_array_get(keys, j), "id"))) == 0)
            {
                zgw_errors_add(errs, "%s: keys[%zu].id '%s' is used twice",
                               who, i, id);
                rc = ZGW_ERROR;
                break;
            }
        }
    }

    return rc;
}


/* the definition's public key or JWKS parses, and fits its algorithm */
static int
zgw_check_jwt_key(const char *who, json_t *obj, int alg, zgw_errors_t *errs)
{
    char                *jwks;
    json_t              *pem;
    zgw_errors_t         jerrs;
    zgw_jwt_policy_t     policy;
    zgw_jwt_verifier_t  *v;

    memset(&policy, 0, sizeof(policy));
    policy.alg = alg;

    pem = json_object_get(obj, "public_key");
    jwks = NULL;

    if (json_object_get(obj, "jwks") != NULL) {
        jwks = json_dumps(json_object_get(obj, "jwks"), JSON_COMPACT);
        if (jwks == NULL) {
            zgw_errors_add(errs, "%s: out of memory", who);
            return ZGW_ERROR;
        }
    }

    zgw_errors_init(&jerrs);
    v = zgw_jwt_verifier_new(&policy, NULL, 0, json_string_value(pem), jwks,
                             &jerrs);
    free(jwks);

    if (v == NULL) {
        zgw_errors_add(errs, "%s: %s", who, zgw_errors_first(&jerrs));
        zgw_errors_free(&jerrs);
        return ZGW_ERROR;
    }

    zgw_jwt_verifier_free(v);
    zgw_errors_free(&jerrs);
    return ZGW_OK;
}


static int
zgw_check_security_jwt(const char *who, json_t *obj, int in,
    zgw_errors_t *errs)
{
    int          rc, alg;
    size_t       i;
    json_t      *secret, *pem, *jwks, *claims, *c;
    const char  *name;

    rc = ZGW_OK;

    if (!in) {
        zgw_errors_add(errs, "%s: a jwt definition checks incoming tokens: "
                       "direction must be \"in\"", who);
        return ZGW_ERROR;
    }

    alg = zgw_jwt_alg_parse(json_string_value(json_object_get(obj, "alg")));
    secret = json_object_get(obj, "secret");
    pem = json_object_get(obj, "public_key");
    jwks = json_object_get(obj, "jwks");

    if (alg < 0) {
        return ZGW_ERROR;               /* reported by the field check */
    }

    if (zgw_jwt_secret_min(alg) > 0) {
        /* an absent secret keeps the stored one (an export leaves it out);
         * zgw_config_seal() refuses a definition left with none */
        if (secret != NULL && json_is_string(secret)
                   && json_string_length(secret) < zgw_jwt_secret_min(alg))
        {
            zgw_errors_add(errs, "%s: alg %s needs a secret of at least %zu "
                           "bytes (RFC 7518 3.2)", who, zgw_jwt_alg_name(alg),
                           zgw_jwt_secret_min(alg));
            rc = ZGW_ERROR;
        }

        if (pem != NULL || jwks != NULL) {
            zgw_errors_add(errs, "%s: alg %s uses a 'secret', not "
                           "'public_key' or 'jwks'", who,
                           zgw_jwt_alg_name(alg));
            rc = ZGW_ERROR;
        }

    } else {
        if (secret != NULL) {
            zgw_errors_add(errs, "%s: alg %s verifies with a public key: "
                           "remove 'secret'", who, zgw_jwt_alg_name(alg));
            rc = ZGW_ERROR;
        }

        if ((pem == NULL) == (jwks == NULL)) {
            zgw_errors_add(errs, "%s: alg %s needs exactly one of "
                           "'public_key' (PEM) and 'jwks'", who,
                           zgw_jwt_alg_name(alg));
            rc = ZGW_ERROR;

        } else if (zgw_check_jwt_key(who, obj, alg, errs) != ZGW_OK) {
            rc = ZGW_ERROR;
        }
    }

    claims = json_object_get(obj, "claims_to_headers");

    if (json_array_size(claims) > ZGW_CLAIMS_MAX) {
        zgw_errors_add(errs, "%s: claims_to_headers names %zu claims; at "
                       "most %d", who, json_array_size(claims),
                       ZGW_CLAIMS_MAX);
        rc = ZGW_ERROR;
    }

    json_array_foreach(claims, i, c) {
        name = json_string_value(c);
        if (name == NULL || strlen(name) > 64 || !zgw_is_token(name)) {
            zgw_errors_add(errs, "%s: claims_to_headers[%zu] must be a "
                           "claim name of 1-64 token characters", who, i);
            rc = ZGW_ERROR;
        }
    }

    return rc;
}


static int
zgw_check_security(const char *who, json_t *obj, zgw_errors_t *errs)
{
    int          in;
    const char  *type, *dir, *s;

    type = json_string_value(json_object_get(obj, "type"));
    dir = json_string_value(json_object_get(obj, "direction"));
    in = dir == NULL || strcmp(dir, "in") == 0;

    if (type == NULL) {
        return ZGW_ERROR;
    }

    /* what a client it passes may do in the admin API */

    if (json_object_get(obj, "role") == NULL) {
        if (in && json_object_set_new(obj, "role", json_string("admin"))
                  != 0)
        {
            zgw_errors_add(errs, "%s: out of memory", who);
            return ZGW_ERROR;
        }

    } else if (!in) {
        zgw_errors_add(errs, "%s: 'role' is what the clients a definition "
                       "checks may do in the admin API: direction \"out\" "
                       "has none", who);
        return ZGW_ERROR;
    }

    if (strcmp(type, "basic_auth") == 0) {
        s = json_string_value(json_object_get(obj, "username"));
        if (s != NULL && !zgw_is_text(s, ":")) {
            zgw_errors_add(errs, "%s: username may not hold ':' or control "
                           "characters (RFC 7617)", who);
            return ZGW_ERROR;
        }

        s = json_string_value(json_object_get(obj, "realm"));
        if (s != NULL && !zgw_is_text(s, "\"\\")) {
            zgw_errors_add(errs, "%s: realm may not hold '\"', '\\' or "
                           "control characters", who);
            return ZGW_ERROR;
        }

        return ZGW_OK;
    }

    if (strcmp(type, "apikey") == 0) {
        return zgw_check_security_apikey(who, obj, in, errs);
    }

    return zgw_check_security_jwt(who, obj, in, errs);
}


int
zgw_config_put(zgw_config_t *cfg, int kind, json_t *obj, const char *where,
    zgw_errors_t *errs)
{
    int                  rc;
    char                 who[ZGW_NAME_MAX + 64];
    json_t              *out, *dv;
    const char          *name, *direction;
    const zgw_field_t   *more;
    const zgw_schema_t  *s;

    if (kind < 0 || kind >= ZGW_KIND_MAX) {
        zgw_errors_add(errs, "unknown kind %d", kind);
        return ZGW_ERROR;
    }

    s = &zgw_schemas[kind];

    if (!json_is_object(obj)) {
        zgw_errors_add(errs, "%s: must be a JSON object",
                       where ? where : s->name);
        return ZGW_ERROR;
    }

    name = json_string_value(json_object_get(obj, "name"));

    if (name != NULL && zgw_name_valid(name)) {
        snprintf(who, sizeof(who), "%s '%s'", s->name, name);

    } else {
        snprintf(who, sizeof(who), "%s", where ? where : s->name);

        if (name != NULL) {
            zgw_errors_add(errs, "%s: name '%.*s' must be 1-%d characters "
                           "of letters, digits and ._:-@", who, ZGW_NAME_MAX,
                           name, ZGW_NAME_MAX);
            return ZGW_ERROR;
        }
    }

    more = NULL;
    direction = NULL;

    if (s->discriminator != NULL) {
        dv = json_object_get(obj, s->discriminator);
        if (dv != NULL && json_is_string(dv)) {
            more = zgw_variant_fields(s, obj);
        }
    }

    if (kind == ZGW_KIND_SECURITY) {
        direction = json_string_value(json_object_get(obj, "direction"));
        if (direction == NULL) {
            direction = "in";
        }
    }

    out = json_object();
    if (out == NULL) {
        zgw_errors_add(errs, "%s: out of memory", who);
        return ZGW_ERROR;
    }

    rc = zgw_validate_fields(who, NULL, s->fields, more, obj, out, direction,
                             errs);

    if (rc == ZGW_OK && s->check != NULL) {
        rc = s->check(who, out, errs);
    }

    if (rc != ZGW_OK) {
        json_decref(out);
        if (name != NULL) {
            /* its referrers are not told again that it does not exist */
            json_object_set_new(cfg->invalid[kind], name, json_true());
        }
        return ZGW_ERROR;
    }

    json_object_del(cfg->invalid[kind], name);
    json_object_set_new(cfg->objs[kind], name, out);
    return ZGW_OK;
}


int
zgw_config_delete(zgw_config_t *cfg, int kind, const char *name)
{
    if (kind < 0 || kind >= ZGW_KIND_MAX) {
        return ZGW_ERROR;
    }

    (void) json_object_del(cfg->versions[kind], name);

    return json_object_del(cfg->objs[kind], name) == 0 ? ZGW_OK : ZGW_ERROR;
}


long long
zgw_config_object_version(const zgw_config_t *cfg, int kind,
    const char *name)
{
    if (kind < 0 || kind >= ZGW_KIND_MAX || name == NULL) {
        return 0;
    }

    return json_integer_value(json_object_get(cfg->versions[kind], name));
}


json_t *
zgw_config_get(const zgw_config_t *cfg, int kind, const char *name)
{
    if (kind < 0 || kind >= ZGW_KIND_MAX || name == NULL) {
        return NULL;
    }

    return json_object_get(cfg->objs[kind], name);
}


size_t
zgw_config_count(const zgw_config_t *cfg, int kind)
{
    if (kind < 0 || kind >= ZGW_KIND_MAX) {
        return 0;
    }

    return json_object_size(cfg->objs[kind]);
}


size_t
zgw_config_total(const zgw_config_t *cfg)
{
    int     k;
    size_t  n;

    n = 0;
    for (k = 0; k < ZGW_KIND_MAX; k++) {
        n += json_object_size(cfg->objs[k]);
    }

    return n;
}


/*
 * Calls fn for every reference held by obj (kind k, named name):
 * field path, referenced kind, referenced name.
 */
typedef int (*zgw_ref_pt)(const zgw_config_t *cfg, int kind,
    const char *name, const char *path, int ref_kind, const char *ref,
    void *data);


static int
zgw_walk_refs(const zgw_config_t *cfg, int kind, const char *name,
    const json_t *obj, zgw_ref_pt fn, void *data)
{
    int                  rc, pass;
    char                 path[300];
    size_t               i;
    json_t              *v, *item, *sv;
    const zgw_field_t   *f, *set, *sf;
    const zgw_schema_t  *s;

    rc = ZGW_OK;
    s = &zgw_schemas[kind];

    for (pass = 0; pass < 2; pass++) {
        set = pass == 0 ? s->fields : zgw_variant_fields(s, obj);
        if (set == NULL) {
            continue;
        }

        for (f = set; f->name; f++) {
            v = json_object_get(obj, f->name);
            if (v == NULL) {
                continue;
            }

            if (f->type == ZGW_T_REF) {
                if (fn(cfg, kind, name, f->name, f->ref_kind,
                       json_string_value(v), data) != ZGW_OK)
                {
                    rc = ZGW_ERROR;
                }

            } else if (f->type == ZGW_T_REFLIST) {
                json_array_foreach(v, i, item) {
                    snprintf(path, sizeof(path), "%s[%zu]", f->name, i);
                    if (fn(cfg, kind, name, path, f->ref_kind,
                           json_string_value(item), data) != ZGW_OK)
                    {
                        rc = ZGW_ERROR;
                    }
                }

            } else if (f->type == ZGW_T_OBJ) {
                for (sf = f->sub; sf->name; sf++) {
                    sv = json_object_get(v, sf->name);
                    if (sf->type != ZGW_T_REF || sv == NULL) {
                        continue;
                    }
                    snprintf(path, sizeof(path), "%s.%s", f->name, sf->name);
                    if (fn(cfg, kind, name, path, sf->ref_kind,
                           json_string_value(sv), data) != ZGW_OK)
                    {
                        rc = ZGW_ERROR;
                    }
                }
            }
        }
    }

    return rc;
}


static int
zgw_ref_exists(const zgw_config_t *cfg, int kind, const char *name,
    const char *path, int ref_kind, const char *ref, void *data)
{
    zgw_errors_t  *errs = data;
    json_t        *target;
    const char    *dir, *want;

    target = zgw_config_get(cfg, ref_kind, ref);

    if (target == NULL && json_object_get(cfg->invalid[ref_kind], ref)) {
        return ZGW_ERROR;               /* its own errors are reported */
    }

    if (target == NULL) {
        if (strcmp(path, zgw_schemas[ref_kind].name) == 0
            || (ref_kind == ZGW_KIND_AMQP_DEF && strcmp(path, "def") == 0))
        {
            zgw_errors_add(errs, "%s '%s': %s '%s' does not exist",
                           zgw_schemas[kind].name, name, path, ref);
        } else {
            zgw_errors_add(errs, "%s '%s': %s '%s' does not exist (%s "
                           "expected)", zgw_schemas[kind].name, name, path,
                           ref, zgw_schemas[ref_kind].name);
        }
        return ZGW_ERROR;
    }

    if (ref_kind == ZGW_KIND_SECURITY) {
        want = kind == ZGW_KIND_HTTP_OUTCONN ? "out" : "in";
        dir = json_string_value(json_object_get(target, "direction"));

        if (dir != NULL && strcmp(dir, want) != 0) {
            zgw_errors_add(errs, "%s '%s': security '%s' has direction '%s'; "
                           "%s needs direction '%s'", zgw_schemas[kind].name,
                           name, ref, dir, zgw_schemas[kind].name, want);
            return ZGW_ERROR;
        }
    }

    if (kind == ZGW_KIND_SERVICE && ref_kind == ZGW_KIND_SERVICE
        && strcmp(name, ref) == 0)
    {
        zgw_errors_add(errs, "service '%s': %s refers to the service itself",
                       name, path);
        return ZGW_ERROR;
    }

    return ZGW_OK;
}


/* depth-first search for a fanout cycle through service "name" */
static int
zgw_fanout_cycle(const zgw_config_t *cfg, const char *name,
    const char **stack, int depth, zgw_errors_t *errs)
{
    int          i, k;
    char         chain[2048];
    size_t       j, n;
    json_t      *svc, *list, *item;
    const char  *kind, *next;

    for (i = 0; i < depth; i++) {
        if (strcmp(stack[i], name) == 0) {
            if (i != 0) {
                return ZGW_OK;     /* a cycle, but reported from its start */
            }

            chain[0] = '\0';
            for (k = 0; k < depth; k++) {
                n = strlen(chain);
                snprintf(chain + n, sizeof(chain) - n, "%s -> ", stack[k]);
            }
            n = strlen(chain);
            snprintf(chain + n, sizeof(chain) - n, "%s", name);

            zgw_errors_add(errs, "service '%s': fanout cycle %s", stack[0],
                           chain);
            return ZGW_ERROR;
        }
    }

    if (depth >= 64) {
        zgw_errors_add(errs, "service '%s': fanout nested deeper than 64",
                       stack[0]);
        return ZGW_ERROR;
    }

    svc = zgw_config_get(cfg, ZGW_KIND_SERVICE, name);
    kind = json_string_value(json_object_get(svc, "kind"));
    if (svc == NULL || kind == NULL || strcmp(kind, "fanout") != 0) {
        return ZGW_OK;
    }

    stack[depth] = name;
    list = json_object_get(svc, "services");

    json_array_foreach(list, j, item) {
        next = json_string_value(item);
        if (zgw_fanout_cycle(cfg, next, stack, depth + 1, errs) != ZGW_OK) {
            return ZGW_ERROR;
        }
    }

    return ZGW_OK;
}


int
zgw_config_check_refs(const zgw_config_t *cfg, zgw_errors_t *errs)
{
    int          rc, k;
    json_t      *obj;
    const char  *name, *stack[65];

    rc = ZGW_OK;

    for (k = 0; k < ZGW_KIND_MAX; k++) {
        json_object_foreach(cfg->objs[k], name, obj) {
            if (zgw_walk_refs(cfg, k, name, obj, zgw_ref_exists, errs)
                != ZGW_OK)
            {
                rc = ZGW_ERROR;
            }
        }
    }

    if (rc != ZGW_OK) {
        return rc;
    }

    if (json_object_size(cfg->objs[ZGW_KIND_AMQP_OUTCONN]) > ZGW_OUTCONNS_MAX)
    {
        zgw_errors_add(errs, "amqp_outconn: %zu objects, at most %d in one "
                       "configuration",
                       json_object_size(cfg->objs[ZGW_KIND_AMQP_OUTCONN]),
                       ZGW_OUTCONNS_MAX);
        rc = ZGW_ERROR;
    }

    /*
     * An invocation calls its target and callback inside zmqd: those are
     * services that do the work, not other invocations (which would only
     * queue again, possibly forever).
     */
    json_object_foreach(cfg->objs[ZGW_KIND_SERVICE], name, obj) {
        int          i;
        json_t      *ref;
        const char  *kind, *field;

        kind = json_string_value(json_object_get(obj, "kind"));
        if (kind == NULL || strcmp(kind, "invoke") != 0) {
            continue;
        }

        for (i = 0; i < 2; i++) {
            field = i == 0 ? "target" : "callback";
            ref = zgw_config_get(cfg, ZGW_KIND_SERVICE,
                                 json_string_value(json_object_get(obj,
                                                                   field)));
            kind = json_string_value(json_object_get(ref, "kind"));

            if (kind != NULL && strcmp(kind, "invoke") == 0) {
                zgw_errors_add(errs, "service '%s': %s '%s' is a service of "
                               "kind 'invoke'; an invocation's %s must do "
                               "the work itself", name, field,
                               json_string_value(json_object_get(obj, field)),
                               field);
                rc = ZGW_ERROR;
            }
        }
    }

    /*
     * A redis_page service answers GET requests in the gateway, nothing
     * else: zmqd cannot run it for a channel, an invocation or a fanout.
     */
    json_object_foreach(cfg->objs[ZGW_KIND_REST_CHANNEL], name, obj) {
        const char  *method;

        if (!zgw_is_page(cfg, json_object_get(obj, "service"))) {
            continue;
        }

        method = json_string_value(json_object_get(obj, "method"));

        if (method != NULL && strcmp(method, "GET") != 0
            && strcmp(method, "ANY") != 0)
        {
            zgw_errors_add(errs, "rest_channel '%s': service '%s' is of kind "
                           "'redis_page', which answers GET: the method must "
                           "be GET or ANY, not %s", name,
                           json_string_value(json_object_get(obj, "service")),
                           method);
            rc = ZGW_ERROR;
        }
    }

    json_object_foreach(cfg->objs[ZGW_KIND_AMQP_CHANNEL], name, obj) {
        if (zgw_is_page(cfg, json_object_get(obj, "service"))) {
            zgw_errors_add(errs, "amqp_channel '%s': service '%s' is of kind "
                           "'redis_page', which only answers HTTP GET", name,
                           json_string_value(json_object_get(obj,
                                                             "service")));
            rc = ZGW_ERROR;
        }
    }

    json_object_foreach(cfg->objs[ZGW_KIND_STOMP_CHANNEL], name, obj) {
        if (zgw_is_page(cfg, json_object_get(obj, "service"))) {
            zgw_errors_add(errs, "stomp_channel '%s': service '%s' is of "
                           "kind 'redis_page', which only answers HTTP GET",
                           name, json_string_value(json_object_get(obj,
                                                               "service")));
            rc = ZGW_ERROR;
        }
    }

    json_object_foreach(cfg->objs[ZGW_KIND_SERVICE], name, obj) {
        size_t       i;
        json_t      *ref;
        const char  *kind;

        kind = json_string_value(json_object_get(obj, "kind"));

        if (kind != NULL && strcmp(kind, "invoke") == 0) {
            for (i = 0; i < 2; i++) {
                ref = json_object_get(obj, i == 0 ? "target" : "callback");
                if (zgw_is_page(cfg, ref)) {
                    zgw_errors_add(errs, "service '%s': %s '%s' is of kind "
                                   "'redis_page', which only answers HTTP "
                                   "GET", name, i == 0 ? "target"
                                                       : "callback",
                                   json_string_value(ref));
                    rc = ZGW_ERROR;
                }
            }
        }

        if (kind != NULL && strcmp(kind, "fanout") == 0) {
            json_array_foreach(json_object_get(obj, "services"), i, ref) {
                if (zgw_is_page(cfg, ref)) {
                    zgw_errors_add(errs, "service '%s': services: '%s' is of "
                                   "kind 'redis_page', which only answers "
                                   "HTTP GET", name, json_string_value(ref));
                    rc = ZGW_ERROR;
                }
            }
        }
    }

    /*
     * RabbitMQ refuses a message whose user_id is not the connection's
     * user by closing the channel: every message in flight on it fails.
     */
    json_object_foreach(cfg->objs[ZGW_KIND_AMQP_OUTCONN], name, obj) {
        const char  *uid, *user;
        json_t      *def;

        uid = json_string_value(json_object_get(obj, "user_id"));
        def = json_object_get(cfg->objs[ZGW_KIND_AMQP_DEF],
                              json_string_value(json_object_get(obj, "def")));
        user = json_string_value(json_object_get(def, "username"));

        if (uid != NULL && user != NULL && strcmp(uid, user) != 0) {
            zgw_errors_add(errs, "amqp_outconn '%s': user_id '%s' is not the "
                           "user of amqp_def '%s' ('%s'): RabbitMQ refuses "
                           "such messages and closes the channel", name, uid,
                           json_string_value(json_object_get(obj, "def")),
                           user);
            rc = ZGW_ERROR;
        }
    }

    json_object_foreach(cfg->objs[ZGW_KIND_SERVICE], name, obj) {
        if (zgw_fanout_cycle(cfg, name, stack, 0, errs) != ZGW_OK) {
            rc = ZGW_ERROR;
        }
    }

    return rc;
}


typedef struct {
    int            kind;
    const char    *name;
    zgw_errors_t  *out;
} zgw_referrer_ctx_t;


static int
zgw_ref_matches(const zgw_config_t *cfg, int kind, const char *name,
    const char *path, int ref_kind, const char *ref, void *data)
{
    zgw_referrer_ctx_t  *ctx = data;

    (void) cfg;

    if (ref_kind == ctx->kind && strcmp(ref, ctx->name) == 0) {
        zgw_errors_add(ctx->out, "%s '%s' (field %s)", zgw_schemas[kind].name,
                       name, path);
    }

    return ZGW_OK;
}


int
zgw_config_referrers(const zgw_config_t *cfg, int kind, const char *name,
    zgw_errors_t *out)
{
    int                  k;
    size_t               before;
    json_t              *obj;
    const char          *n;
    zgw_referrer_ctx_t   ctx;

    ctx.kind = kind;
    ctx.name = name;
    ctx.out = out;
    before = out->n;

    for (k = 0; k < ZGW_KIND_MAX; k++) {
        json_object_foreach(cfg->objs[k], n, obj) {
            zgw_walk_refs(cfg, k, n, obj, zgw_ref_matches, &ctx);
        }
    }

    return (int) (out->n - before);
}


int
zgw_config_load_doc(zgw_config_t *cfg, json_t *doc, int flags,
    zgw_errors_t *errs)
{
    int          rc, kind;
    char         where[64];
    size_t       i;
    json_t      *list, *obj;
    const char  *key, *name;

    if (!json_is_object(doc)) {
        zgw_errors_add(errs, "the configuration must be a JSON object whose "
                       "keys are kinds (amqp_def, service, ...)");
        return ZGW_ERROR;
    }

    rc = ZGW_OK;

    json_object_foreach(doc, key, list) {
        kind = zgw_kind_from_name(key);
        if (kind < 0) {
            zgw_errors_add(errs, "unknown kind '%s' (expected one of: "
                           ZGW_KIND_NAMES ")", key);
            rc = ZGW_ERROR;
            continue;
        }

        if (!json_is_array(list)) {
            zgw_errors_add(errs, "%s: must be an array of objects", key);
            rc = ZGW_ERROR;
            continue;
        }

        json_array_foreach(list, i, obj) {
            snprintf(where, sizeof(where), "%s #%zu", key, i + 1);

            name = json_string_value(json_object_get(obj, "name"));
            if (name != NULL && zgw_config_get(cfg, kind, name) != NULL) {
                zgw_errors_add(errs, "%s '%s': defined more than once", key,
                               name);
                rc = ZGW_ERROR;
                continue;
            }

            if (zgw_config_put(cfg, kind, obj, where, errs) != ZGW_OK) {
                rc = ZGW_ERROR;
            }
        }
    }

    if (!(flags & ZGW_LOAD_NO_REFS)
        && zgw_config_check_refs(cfg, errs) != ZGW_OK)
    {
        rc = ZGW_ERROR;
    }

    return rc;
}


int
zgw_config_load_text(zgw_config_t *cfg, const char *text, size_t len,
    const char *origin, int flags, zgw_errors_t *errs)
{
    int           rc;
    json_t       *doc;
    json_error_t  jerr;

    doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        zgw_errors_add(errs, "%s:%d:%d: invalid JSON: %s",
                       origin ? origin : "<input>", jerr.line, jerr.column,
                       jerr.text);
        return ZGW_ERROR;
    }

    rc = zgw_config_load_doc(cfg, doc, flags, errs);
    json_decref(doc);
    return rc;
}


int
zgw_config_load_file(zgw_config_t *cfg, const char *path, int flags,
    zgw_errors_t *errs)
{
    int     rc;
    char   *buf;
    long    size;
    FILE   *f;

    f = fopen(path, "rb");
    if (f == NULL) {
        zgw_errors_add(errs, "%s: %s", path, strerror(errno));
        return ZGW_ERROR;
    }

    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        zgw_errors_add(errs, "%s: cannot determine size: %s", path,
                       strerror(errno));
        fclose(f);
        return ZGW_ERROR;
    }

    if (size > 64 * 1024 * 1024) {
        zgw_errors_add(errs, "%s: %ld bytes is larger than the 64 MiB limit",
                       path, size);
        fclose(f);
        return ZGW_ERROR;
    }

    buf = malloc((size_t) size + 1);
    if (buf == NULL) {
        zgw_errors_add(errs, "%s: out of memory", path);
        fclose(f);
        return ZGW_ERROR;
    }

    if (fread(buf, 1, (size_t) size, f) != (size_t) size) {
        zgw_errors_add(errs, "%s: read failed", path);
        free(buf);
        fclose(f);
        return ZGW_ERROR;
    }

    fclose(f);

    rc = zgw_config_load_text(cfg, buf, (size_t) size, path, flags, errs);
    free(buf);
    return rc;
}


static int
zgw_field_is_secret(const zgw_field_t *f)
{
    return f->type == ZGW_T_SECRET || f->type == ZGW_T_CRED;
}


/* F_SECRET_OPT: an absent secret means none */
static int
zgw_secret_optional(const zgw_field_t *f)
{
    return (f->type == ZGW_T_SECRET || f->type == ZGW_T_CRED) && f->min == 1;
}


json_t *
zgw_object_export(int kind, const json_t *obj, int flags)
{
    int                  pass;
    json_t              *out, *v;
    const zgw_field_t   *f, *set;
    const zgw_schema_t  *s;

    out = json_deep_copy(obj);
    if (out == NULL || kind < 0 || kind >= ZGW_KIND_MAX) {
        return out;
    }

    s = &zgw_schemas[kind];

    for (pass = 0; pass < 2; pass++) {
        set = pass == 0 ? s->fields : zgw_variant_fields(s, obj);
        if (set == NULL) {
            continue;
        }

        for (f = set; f->name; f++) {
            if (!zgw_field_is_secret(f)) {
                continue;
            }

            v = json_object_get(out, f->name);
            if (v == NULL) {
                continue;
            }

            if (flags & ZGW_EXPORT_MARK_SET) {
                if (json_object_set_new(out, f->name,
                                        json_pack("{s:b}", "$set", 1))
                    != 0)
                {
                    json_decref(out);
                    return NULL;
                }

            } else if (!(flags & ZGW_EXPORT_SEALED) || json_is_string(v)) {
                json_object_del(out, f->name);
            }
        }
    }

    return out;
}


static int
zgw_strcmp_indirect(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}


json_t *
zgw_config_export(const zgw_config_t *cfg, int flags)
{
    int          k;
    size_t       i, n;
    json_t      *doc, *list, *obj;
    const char  *name, **names;

    doc = json_object();
    if (doc == NULL) {
        return NULL;
    }

    for (k = 0; k < ZGW_KIND_MAX; k++) {
        n = json_object_size(cfg->objs[k]);
        if (n == 0) {
            continue;
        }

        names = malloc(n * sizeof(char *));
        list = json_array();
        if (names == NULL || list == NULL) {
            free(names);
            json_decref(list);
            json_decref(doc);
            return NULL;
        }

        i = 0;
        json_object_foreach(cfg->objs[k], name, obj) {
            names[i++] = name;
        }

        qsort(names, n, sizeof(char *), zgw_strcmp_indirect);

        for (i = 0; i < n; i++) {
            obj = json_object_get(cfg->objs[k], names[i]);
            json_array_append_new(list, zgw_object_export(k, obj, flags));
        }

        free(names);
        json_object_set_new(doc, zgw_schemas[k].name, list);
    }

    return doc;
}


static int
zgw_secret_unchanged(int hash, const char *aad, const char *clear,
    const char *stored, const zgw_key_t *key)
{
    int    same;
    char  *plain;

    if (hash) {
        return zgw_password_verify(stored, clear) == 1;
    }

    if (key == NULL
        || zgw_secret_open(key, aad, stored, &plain, NULL, NULL) != ZGW_OK)
    {
        return 0;
    }

    same = strcmp(plain, clear) == 0;
    free(plain);
    return same;
}


static int
zgw_seal_field(int kind, const char *name, const zgw_field_t *f, json_t *obj,
    const json_t *prev_obj, const zgw_key_t *key, zgw_errors_t *errs)
{
    int          hash;
    char         aad[ZGW_NAME_MAX + 300], uuid[ZGW_UUID_LEN + 1];
    char        *sealed;
    json_t      *v, *pv;
    const char  *clear, *dir, *tag;

    hash = 0;
    if (f->type == ZGW_T_CRED) {
        dir = json_string_value(json_object_get(obj, "direction"));
        hash = dir == NULL || strcmp(dir, "in") == 0;
    }

    tag = hash ? "$hash" : "$sealed";
    v = json_object_get(obj, f->name);

    if (v != NULL && json_is_object(v)) {
        return ZGW_OK;                          /* already in stored form */
    }

    snprintf(aad, sizeof(aad), "%s/%s/%s", zgw_schemas[kind].name, name,
             f->name);

    pv = prev_obj ? json_object_get(prev_obj, f->name) : NULL;
    if (pv != NULL && (!json_is_object(pv) || json_object_get(pv, tag) == NULL))
    {
        pv = NULL;
    }

    if (v != NULL && pv != NULL
        && zgw_secret_unchanged(hash, aad, json_string_value(v),
                                json_string_value(json_object_get(pv, tag)),
                                key))
    {
        /* the same secret again: keep the stored form, so nothing changes */
        json_object_set(obj, f->name, pv);
        return ZGW_OK;
    }

    if (v == NULL) {
        if (pv != NULL) {
            json_object_set(obj, f->name, pv);
            return ZGW_OK;
        }

        if (zgw_secret_optional(f)) {
            return ZGW_OK;                      /* none, and none it stays */
        }

        if (zgw_uuid4(uuid) != ZGW_OK) {
            zgw_errors_add(errs, "%s '%s': the random generator failed",
                           zgw_schemas[kind].name, name);
            return ZGW_ERROR;
        }

        clear = uuid;

    } else {
        clear = json_string_value(v);
    }

    if (hash) {
        sealed = zgw_password_hash(clear, ZGW_PBKDF2_ITER, errs);

    } else if (key == NULL) {
        zgw_errors_add(errs, "%s '%s': sealing secret '%s' needs a key file",
                       zgw_schemas[kind].name, name, f->name);
        return ZGW_ERROR;

    } else {
        sealed = zgw_secret_seal(key, aad, clear, strlen(clear), errs);
    }

    if (sealed == NULL) {
        return ZGW_ERROR;
    }

    json_object_set_new(obj, f->name, json_pack("{s:s}", tag, sealed));
    free(sealed);
    return ZGW_OK;
}


int
zgw_config_needs_key(const zgw_config_t *cfg, const zgw_config_t *prev)
{
    int                  k, pass;
    json_t              *obj, *v, *pobj;
    const char          *name, *dir;
    const zgw_field_t   *f, *set;
    const zgw_schema_t  *s;

    for (k = 0; k < ZGW_KIND_MAX; k++) {
        s = &zgw_schemas[k];

        json_object_foreach(cfg->objs[k], name, obj) {
            pobj = prev ? zgw_config_get(prev, k, name) : NULL;
            dir = json_string_value(json_object_get(obj, "direction"));

            for (pass = 0; pass < 2; pass++) {
                set = pass == 0 ? s->fields : zgw_variant_fields(s, obj);
                if (set == NULL) {
                    continue;
                }

                for (f = set; f->name; f++) {
                    if (f->type != ZGW_T_SECRET
                        && !(f->type == ZGW_T_CRED && dir != NULL
                             && strcmp(dir, "out") == 0))
                    {
                        continue;
                    }

                    v = json_object_get(obj, f->name);
                    if (json_is_string(v)
                        || (v == NULL && !zgw_secret_optional(f)
                            && json_object_get(pobj, f->name) == NULL))
                    {
                        return 1;
                    }
                }
            }
        }
    }

    return 0;
}


int
zgw_config_seal(zgw_config_t *cfg, const zgw_config_t *prev,
    const zgw_key_t *key, zgw_errors_t *errs)
{
    int                  k, pass, rc;
    json_t              *obj, *pobj;
    const char          *name;
    const zgw_field_t   *f, *set;
    const zgw_schema_t  *s;

    rc = ZGW_OK;

    for (k = 0; k < ZGW_KIND_MAX; k++) {
        s = &zgw_schemas[k];

        json_object_foreach(cfg->objs[k], name, obj) {
            pobj = prev ? zgw_config_get(prev, k, name) : NULL;

            for (pass = 0; pass < 2; pass++) {
                set = pass == 0 ? s->fields : zgw_variant_fields(s, obj);
                if (set == NULL) {
                    continue;
                }

                for (f = set; f->name; f++) {
                    if (zgw_field_is_secret(f)
                        && zgw_seal_field(k, name, f, obj, pobj, key, errs)
                           != ZGW_OK)
                    {
                        rc = ZGW_ERROR;
                    }
                }
            }

            if (k == ZGW_KIND_SECURITY && zgw_jwt_needs_secret(obj)) {
                zgw_errors_add(errs, "security '%s': alg %s needs a "
                               "'secret'", name,
                               json_string_value(json_object_get(obj, "alg")));
                rc = ZGW_ERROR;
            }
        }
    }

    return rc;
}


/* a jwt definition of an HS* algorithm that has no secret */
static int
zgw_jwt_needs_secret(const json_t *obj)
{
    int          alg;
    const char  *type;

    type = json_string_value(json_object_get(obj, "type"));
    if (type == NULL || strcmp(type, "jwt") != 0
        || json_object_get(obj, "secret") != NULL)
    {
        return 0;
    }

    alg = zgw_jwt_alg_parse(json_string_value(json_object_get(obj, "alg")));

    return alg >= 0 && zgw_jwt_secret_min(alg) > 0;
}


char *
zgw_object_secret(int kind, const json_t *obj, const char *field,
    const zgw_key_t *key, zgw_errors_t *errs)
{
    char        *plain, aad[ZGW_NAME_MAX + 300];
    json_t      *v;
    const char  *name, *sealed;

    v = json_object_get(obj, field);
    name = json_string_value(json_object_get(obj, "name"));

    if (v == NULL || name == NULL) {
        zgw_errors_add(errs, "%s '%s': no secret '%s'", zgw_kind_name(kind),
                       name ? name : "?", field);
        return NULL;
    }

    if (json_is_string(v)) {
        return strdup(json_string_value(v));
    }

    sealed = json_string_value(json_object_get(v, "$sealed"));
    if (sealed == NULL) {
        zgw_errors_add(errs, "%s '%s': '%s' is stored as a hash and cannot "
                       "be read back", zgw_kind_name(kind), name, field);
        return NULL;
    }

    if (key == NULL) {
        zgw_errors_add(errs, "%s '%s': '%s' is sealed and no key file was "
                       "given to open it", zgw_kind_name(kind), name, field);
        return NULL;
    }

    snprintf(aad, sizeof(aad), "%s/%s/%s", zgw_kind_name(kind), name, field);

    if (zgw_secret_open(key, aad, sealed, &plain, NULL, errs) != ZGW_OK) {
        return NULL;
    }

    return plain;
}


char *
zgw_object_dump(int kind, const json_t *obj)
{
    char    *text;
    json_t  *out;

    out = zgw_object_export(kind, obj, ZGW_EXPORT_SEALED);
    if (out == NULL) {
        return NULL;
    }

    text = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(out);
    return text;
}
