/*
 * ngx_zmq core: the STOMP headers a client may not set on a message.
 *
 * The one list for both senders of STOMP SENDs: the gateway (the
 * X-Zmq-Header-* headers of a publish with a stomp_outconn, the headers
 * of an admin send) and zmqd (a publish service with a stomp_outconn: a
 * consumed message's headers are left out, a service's refused). Each
 * name is one the sender sets on a SEND itself (destination, receipt,
 * content-length, content-type, persistent, expires, amqp-message-id, ...)
 * or one STOMP or ActiveMQ gives a meaning (message-id, subscription, ack,
 * login, heart-beat, ...).
 */

#ifndef ZGW_STOMP_HEADERS_H
#define ZGW_STOMP_HEADERS_H

#include <stddef.h>


/*
 * 1 when the header name (len bytes, not NUL-ended) is on the list,
 * ignoring the case of ASCII letters, else 0. With type non-zero "type"
 * is reserved as well: for a sender that sets it from the message's type
 * property (an admin send, zmqd); a publish sends X-Zmq-Header-type as it
 * is (ActiveMQ's JMSType).
 */
int zgw_stomp_reserved(const void *name, size_t len, int type);

#endif /* ZGW_STOMP_HEADERS_H */
