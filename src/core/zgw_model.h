/*
 * ngx_zmq core: the configuration model.
 *
 * Objects are JSON documents of eleven kinds. zgw_config_put() validates one
 * object against its kind's schema (types, ranges, enumerations, unknown
 * fields) and stores a normalized copy with defaults filled in;
 * zgw_config_check_refs() checks the references between objects. Every
 * error names the kind, the object and the field.
 */

#ifndef ZGW_MODEL_H
#define ZGW_MODEL_H

#include <jansson.h>

#include "zgw_crypto.h"
#include "zgw_err.h"


#define ZGW_VERSION            "0.1.0"
#define ZGW_NAME_MAX           200
/* amqp_outconn objects in one configuration: each NGINX worker keeps 64
 * connection slots, so that every outgoing connection can be replaced while
 * the old one drains its confirms */
#define ZGW_OUTCONNS_MAX       32
/* the largest message body: RabbitMQ 3.10's max_message_size (128 MiB);
 * a larger message closes the channel, and with it every message in
 * flight on the connection */
#define ZGW_BODY_MAX           134217728
#define ZGW_ROUTE_PARAMS_MAX   16     /* {param} segments of a url_path */
#define ZGW_APIKEYS_MAX        16     /* keys of one apikey definition */
#define ZGW_APIKEY_ID_MAX      64
#define ZGW_CLAIMS_MAX         16     /* claims_to_headers of a jwt one */


typedef enum {
    ZGW_KIND_AMQP_DEF = 0,
    ZGW_KIND_AMQP_OUTCONN,
    ZGW_KIND_AMQP_CHANNEL,
    ZGW_KIND_HTTP_OUTCONN,
    ZGW_KIND_SERVICE,
    ZGW_KIND_REST_CHANNEL,
    ZGW_KIND_SECURITY,
    ZGW_KIND_STARTUP,
    ZGW_KIND_STOMP_DEF,
    ZGW_KIND_STOMP_OUTCONN,
    ZGW_KIND_STOMP_CHANNEL,
    ZGW_KIND_MAX
} zgw_kind_e;


typedef struct {
    json_t     *objs[ZGW_KIND_MAX];   /* per kind: name -> object */
    json_t     *invalid[ZGW_KIND_MAX];/* names that failed validation */
    json_t     *versions[ZGW_KIND_MAX];
                                      /* name -> the store's version when
                                         it was last written (loaded from
                                         the store; may be empty) */
    long long   version;
} zgw_config_t;


/* load flags */
#define ZGW_LOAD_NO_REFS    0x01      /* validate objects, not references */

/* export flags */
#define ZGW_EXPORT_SEALED   0x01      /* keep sealed secrets and hashes */
#define ZGW_EXPORT_MARK_SET 0x02      /* a secret that is set reads as
                                         {"$set": true} (the admin API) */


/* every kind, for messages that list them */
#define ZGW_KIND_NAMES                                                      \
    "amqp_def, amqp_outconn, amqp_channel, http_outconn, service, "         \
    "rest_channel, security, startup, stomp_def, stomp_outconn, "           \
    "stomp_channel"


const char *zgw_kind_name(int kind);
/* the kind's index, or -1 */
int zgw_kind_from_name(const char *name);

zgw_config_t *zgw_config_new(void);
void zgw_config_free(zgw_config_t *cfg);
zgw_config_t *zgw_config_copy(const zgw_config_t *cfg);

/*
 * Validates obj as an object of kind and, when it is valid, stores its
 * normalized form under its name (replacing an object of the same name).
 * "where" names the object in messages when it has no usable name (for
 * example "amqp_def #3"); it may be NULL. obj is not consumed.
 */
int zgw_config_put(zgw_config_t *cfg, int kind, json_t *obj,
    const char *where, zgw_errors_t *errs);
int zgw_config_delete(zgw_config_t *cfg, int kind, const char *name);
/* the version at which the store last wrote it; 0 when unknown */
long long zgw_config_object_version(const zgw_config_t *cfg, int kind,
    const char *name);
/* a borrowed reference, or NULL */
json_t *zgw_config_get(const zgw_config_t *cfg, int kind, const char *name);
size_t zgw_config_count(const zgw_config_t *cfg, int kind);
size_t zgw_config_total(const zgw_config_t *cfg);

/* every reference between objects resolves; fanout services have no cycle */
int zgw_config_check_refs(const zgw_config_t *cfg, zgw_errors_t *errs);
/* the objects that refer to kind/name, as "kind 'name'" lines */
int zgw_config_referrers(const zgw_config_t *cfg, int kind, const char *name,
    zgw_errors_t *out);

/*
 * A whole configuration document: {"amqp_def": [ {...}, ... ], ...}.
 * Validates every object and the references, collecting every error;
 * origin (a file name) prefixes syntax errors with their line and column.
 */
int zgw_config_load_text(zgw_config_t *cfg, const char *text, size_t len,
    const char *origin, int flags, zgw_errors_t *errs);
int zgw_config_load_file(zgw_config_t *cfg, const char *path, int flags,
    zgw_errors_t *errs);
int zgw_config_load_doc(zgw_config_t *cfg, json_t *doc, int flags,
    zgw_errors_t *errs);

/* a document that zgw_config_load_doc() accepts; names sorted */
json_t *zgw_config_export(const zgw_config_t *cfg, int flags);
/* one object as export shows it (secrets left out unless flags say) */
json_t *zgw_object_export(int kind, const json_t *obj, int flags);

/*
 * Makes every secret of cfg safe to store: clear secrets are sealed with
 * key (AES-256-GCM, associated data "kind/name/field"), clear client
 * passwords are hashed. A secret missing from cfg is taken from prev (the
 * configuration currently stored) when prev has that object, otherwise it
 * becomes a random UUID that nobody knows until a password change sets it.
 * A clear secret equal to the stored one keeps the stored form, so that
 * importing the same file twice changes nothing. key may be NULL when only
 * hashing is needed.
 */
/* would zgw_config_seal() need the key (rather than only hashing) */
int zgw_config_needs_key(const zgw_config_t *cfg, const zgw_config_t *prev);
int zgw_config_seal(zgw_config_t *cfg, const zgw_config_t *prev,
    const zgw_key_t *key, zgw_errors_t *errs);

/* the text stored for one object (compact, sorted keys), malloc'd */
char *zgw_object_dump(int kind, const json_t *obj);

/* the clear text of a sealed secret field, malloc'd, or NULL with errors */
char *zgw_object_secret(int kind, const json_t *obj, const char *field,
    const zgw_key_t *key, zgw_errors_t *errs);

/* is this name acceptable for an object (also used for Redis keys) */
int zgw_name_valid(const char *name);

/*
 * A Redis score bound as the Python paginator takes it (redis_page's
 * score_min, score_max): "-inf", "+inf", "inf", a number, or "(" and a
 * number; white space around it is ignored; never NaN.
 */
int zgw_score_bound_ok(const char *s, size_t len);


#endif /* ZGW_MODEL_H */
