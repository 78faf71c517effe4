/*
 * ngx_zmq core: which field of an object a password change sets.
 */

#include <stdio.h>
#include <string.h>

#include "zgw_jwt.h"
#include "zgw_model.h"
#include "zgw_passwd.h"


const char *
zgw_passwd_field(int kind, const char *name, const json_t *obj, char *why,
    size_t whylen)
{
    int          alg;
    const char  *type, *dir, *sec;

    type = json_string_value(json_object_get(obj, "type"));
    dir = json_string_value(json_object_get(obj, "direction"));

    switch (kind) {

    case ZGW_KIND_AMQP_DEF:
        return "password";

    case ZGW_KIND_STOMP_DEF:
        return "passcode";

    case ZGW_KIND_SECURITY:
        if (type != NULL && strcmp(type, "basic_auth") == 0) {
            return "password";
        }

        if (type != NULL && strcmp(type, "apikey") == 0) {
            if (dir != NULL && strcmp(dir, "out") == 0) {
                return "key";
            }

            snprintf(why, whylen, "security '%s' checks incoming API keys, "
                     "which are made, not chosen: create one with "
                     "'zmqctl apikey %s' or POST .../keys", name, name);
            return NULL;
        }

        if (type != NULL && strcmp(type, "jwt") == 0) {
            alg = zgw_jwt_alg_parse(json_string_value(
                                        json_object_get(obj, "alg")));
            if (alg >= 0 && zgw_jwt_secret_min(alg) > 0) {
                return "secret";
            }

            snprintf(why, whylen, "security '%s' verifies %s tokens with a "
                     "public key, which is no secret: import it", name,
                     json_string_value(json_object_get(obj, "alg")));
            return NULL;
        }

        break;

    case ZGW_KIND_SERVICE:
        type = json_string_value(json_object_get(obj, "kind"));
        if (type != NULL && strcmp(type, "redis") == 0) {
            return "password";
        }

        snprintf(why, whylen, "service '%s' (kind %s) holds no secret; only "
                 "a redis service has a password", name, type ? type : "?");
        return NULL;

    case ZGW_KIND_HTTP_OUTCONN:
        sec = json_string_value(json_object_get(obj, "security"));
        if (sec != NULL) {
            snprintf(why, whylen, "http_outconn '%s' holds no secret: its "
                     "credentials are those of security '%s' (change that "
                     "one's password)", name, sec);
        } else {
            snprintf(why, whylen, "http_outconn '%s' holds no secret and has "
                     "no security definition: create one (direction "
                     "\"out\") and name it in 'security'", name);
        }
        return NULL;

    default:
        break;
    }

    snprintf(why, whylen, "%s '%s' holds no secret that a password change "
             "sets (amqp_def, stomp_def, security, and redis services "
             "do)",
             zgw_kind_name(kind), name);
    return NULL;
}
