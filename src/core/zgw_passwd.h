/*
 * ngx_zmq core: which field of an object a password change sets.
 *
 * Shared by zmqctl passwd and the admin API's POST .../password, so that
 * both set the same secret and refuse the same objects with the same
 * words.
 */

#ifndef ZGW_PASSWD_H
#define ZGW_PASSWD_H

#include <stddef.h>

#include <jansson.h>


/*
 * The field ("password", "passcode", "secret" or "key"), or NULL with the
 * reason in why (a sentence naming the object, at most whylen bytes with
 * the NUL).
 */
const char *zgw_passwd_field(int kind, const char *name, const json_t *obj,
    char *why, size_t whylen);


#endif /* ZGW_PASSWD_H */
