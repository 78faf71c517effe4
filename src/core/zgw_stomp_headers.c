/*
 * ngx_zmq core: the STOMP headers a client may not set on a message (see
 * zgw_stomp_headers.h).
 */

#include <string.h>

#include "zgw_stomp_headers.h"


/* in lower case: zgw_stomp_name_is() folds only the name it is given */
static const char  *zgw_stomp_reserved_names[] = {
    "destination", "receipt", "content-length", "content-type",
    "content-encoding", "transaction", "persistent", "priority", "expires",
    "correlation-id", "reply-to", "amq-msg-type", "amqp-message-id",
    "zmq_message_id", "message-id", "subscription", "ack", "id",
    "receipt-id", "host", "login", "passcode", "heart-beat", "version",
    "accept-version", "expiration", NULL
};


/* s (len bytes) is name, ignoring the case of ASCII letters only */
static int
zgw_stomp_name_is(const unsigned char *s, size_t len, const char *name)
{
    size_t         i;
    unsigned char  c;

    if (len != strlen(name)) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = s[i];
        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;
        }
        if (c != (unsigned char) name[i]) {
            return 0;
        }
    }

    return 1;
}


int
zgw_stomp_reserved(const void *name, size_t len, int type)
{
    size_t  i;

    for (i = 0; zgw_stomp_reserved_names[i] != NULL; i++) {
        if (zgw_stomp_name_is(name, len, zgw_stomp_reserved_names[i])) {
            return 1;
        }
    }

    return type && zgw_stomp_name_is(name, len, "type");
}
