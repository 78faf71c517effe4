/*
 * ngx_zmq core: "use_jms" on an amqp_def, the JMS wire headers of
 * RabbitMQ's JMS client (rabbitmq-jms-client) for its AMQP destinations
 * (amqp=true). One table for both directions: the gateway adds the headers
 * to what it publishes, zmqd takes them out of what it consumes and puts
 * what they carry back into the AMQP properties, so that a service sees
 * the same message whether a Java program or anything else sent it.
 *
 * What that client does (RMQMessage.java, RMQMessageProducer.java,
 * RMQTextMessage.java, DefaultReplyToStrategy.java):
 *
 *   sending to an AMQP destination: properties content_type
 *   "application/octet-stream", delivery_mode 1/2, priority, correlation_id,
 *   expiration (the time-to-live in ms, none for 0), reply_to (the reply
 *   destination's routing key); headers JMSDeliveryMode ("PERSISTENT" or
 *   "NON_PERSISTENT"), JMSMessageID ("ID:" + a UUID), JMSTimestamp (long,
 *   ms), JMSPriority (int), JMSCorrelationID and JMSType when set, with
 *   JMSType "TextMessage" for a TextMessage when keepTextMessageType is on,
 *   and the user's properties. No message_id, no timestamp property.
 *
 *   receiving from an AMQP destination: a TextMessage (the body decoded as
 *   UTF-8) when the header JMSType is "TextMessage", else a BytesMessage;
 *   JMSDeliveryMode from delivery_mode (2 persistent); JMSTimestamp,
 *   JMSExpiration (timestamp + expiration), JMSPriority, JMSMessageID,
 *   JMSCorrelationID from the properties, then overridden by the headers
 *   JMSExpiration (long), JMSPriority (int), JMSTimestamp (long),
 *   JMSMessageID, JMSCorrelationID, JMSType; JMSReplyTo from reply_to only
 *   (no header); other headers beginning with "JMS" or "rmq." are ignored.
 *
 * Nothing is allocated but zgw_jms_unmap()'s table; no rabbitmq-c function
 * is called (only its types are used).
 */

#ifndef ZGW_JMS_H
#define ZGW_JMS_H

#include <stddef.h>
#include <stdint.h>

#include <amqp.h>
#include <amqp_framing.h>


/* the most headers zgw_jms_headers() appends */
#define ZGW_JMS_HEADERS_MAX   7

/* room for JMSMessageID: "ID:" and a message id of at most 255 bytes */
#define ZGW_JMS_ID_SIZE       (3 + 255 + 1)

/* JMS' default priority, written when the message has none */
#define ZGW_JMS_PRIORITY_DEFAULT  4

#define ZGW_JMS_TEXT          "TextMessage"
#define ZGW_JMS_BYTES         "BytesMessage"

/* what a TextMessage without a content type (or octet-stream) becomes */
#define ZGW_JMS_TEXT_CONTENT_TYPE  "text/plain; charset=utf-8"


/*
 * 1 when a body of this content type (and content encoding, 0 when none)
 * is text a JMS TextMessage can hold: any text type, application/json,
 * xml, javascript, x-www-form-urlencoded, yaml, ndjson, and any +json or
 * +xml type; with no charset parameter, or charset utf-8 or us-ascii; and not
 * content-encoded (gzip). Otherwise (or without a content type) bytes.
 */
int zgw_jms_is_text(const char *ct, size_t len, int encoded);

/*
 * Appends the JMS headers of a message with these properties (message_id
 * set), published at ms (ms since the epoch) to entries, which has room
 * for ZGW_JMS_HEADERS_MAX; id (ZGW_JMS_ID_SIZE bytes) holds JMSMessageID's
 * value. The values point into p and id. Returns how many were appended.
 */
int zgw_jms_headers(const amqp_basic_properties_t *p, uint64_t ms,
    amqp_table_entry_t *entries, char *id);

/*
 * 1 when a header name belongs to the JMS mapping: it begins with "JMS" or
 * "rmq." in any case. The gateway refuses such a header from a request on
 * a use_jms connection; zmqd takes every one out of a consumed message.
 */
int zgw_jms_reserved(const void *name, size_t len);


/* a consumed message's properties with the JMS headers mapped back */
typedef struct {
    amqp_basic_properties_t   props;
    amqp_table_entry_t       *entries;      /* malloc'd, or NULL */
    int                       removed;      /* headers taken out */
    char                      expiration[24];
} zgw_jms_in_t;

/*
 * out->props = *in without the headers zgw_jms_reserved() names; a
 * property the message lacks is taken from a well-formed JMS header
 * (JMSMessageID without its "ID:", JMSCorrelationID, JMSTimestamp ms as
 * seconds, JMSPriority 0-9, JMSDeliveryMode, JMSExpiration less the
 * timestamp, a JMSType other than TextMessage and BytesMessage as type),
 * and a TextMessage without a content type, or application/octet-stream,
 * gets ZGW_JMS_TEXT_CONTENT_TYPE. A header of the wrong type or out of
 * range is only taken out. The properties present always win. out points
 * into in's memory. Returns 0, or -1 when out of memory.
 */
int zgw_jms_unmap(const amqp_basic_properties_t *in, zgw_jms_in_t *out);
void zgw_jms_in_free(zgw_jms_in_t *out);

#endif /* ZGW_JMS_H */
