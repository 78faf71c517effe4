/*
 * ngx_zmq core: what the gateway may put into a message it publishes, so
 * that no single message (one HTTP request, one service definition) can
 * make RabbitMQ close the channel or the connection that every other
 * message shares.
 *
 * Each check returns NULL when the value is acceptable, otherwise a static
 * English sentence saying why not (without naming the field: the caller
 * does, e.g. "header X-Zmq-Header-CC: ..." or "service 'pub': headers
 * 'CC': ..."). Nothing is allocated: the checks run per request.
 *
 * The rules, and why (checked against RabbitMQ 3.10, rabbitmq-c 0.11 and
 * RabbitMQ's current source):
 *
 * Header (field-table) names: 1-128 bytes of HTTP token characters (RFC
 * 9110 tchar: letters, digits and !#$%&'*+-.^_`|~). AMQP 0-9-1 encodes a
 * name as a shortstr (at most 255 bytes: rabbitmq-c silently cuts longer
 * ones and RabbitMQ then closes the connection with 541) and its field-name
 * rule allows at most 128 characters; token characters are what an HTTP
 * header name (X-Zmq-Header-<name>) can carry in and what zmqd hands on to
 * HTTP services as X-Zmq-Header-<name>. AMQP's stricter field-name grammar
 * (no '-') is not enforced by any broker or client and would refuse the
 * most common names.
 *   Refused: "CC" and "BCC" in any case (RabbitMQ's sender-selected
 *   distribution: it requires arrays there and closes the channel with 406
 *   for a string), and names beginning with "x-" in any case (RabbitMQ and
 *   its plugins give them meanings: x-death and x-first-death-* /
 *   x-last-death-* for dead lettering, where a string x-death loses the
 *   message; x-delay, x-received-from, x-delivery-count, x-amqp-1.0-*
 *   sections decoded as AMQP 1.0, x-opt-* annotations).
 *
 * Header values: strings of at most 8192 bytes, valid UTF-8, no control
 * characters other than horizontal tab (zmqd passes them on as HTTP
 * header values).
 *
 * reply_to: at most 255 bytes, no control characters, and not RabbitMQ's
 * direct reply-to ("amq.rabbitmq.reply-to" and everything beginning with
 * it, in any case): without a direct reply-to consumer on the publishing
 * channel RabbitMQ closes the channel (406 "fast reply consumer does not
 * exist"), and a reply published by zmqd to a forged
 * "amq.rabbitmq.reply-to.<x>.<y>" closes zmqd's connection (541).
 *
 * Routing keys: at most 255 bytes; through the default exchange ("") not
 * beginning with "amq.rabbitmq.reply-to." in any case (RabbitMQ decodes the
 * rest as a direct reply-to address and closes the connection with 541
 * when it is forged).
 *
 * expiration: 1-10 decimal digits, at most 4294967295 (2^32 - 1 ms, about
 * 49.7 days); RabbitMQ closes the channel (406) for anything that is not a
 * non-negative integer.
 */

#ifndef ZGW_AMQP_CHECK_H
#define ZGW_AMQP_CHECK_H

#include <stddef.h>


#define ZGW_AMQP_SHORTSTR_MAX        255
#define ZGW_AMQP_HEADER_NAME_MAX     128
#define ZGW_AMQP_HEADER_VALUE_MAX    8192
#define ZGW_AMQP_EXPIRATION_MAX      4294967295ULL


const char *zgw_amqp_header_name_check(const char *name, size_t len);
const char *zgw_amqp_header_value_check(const char *value, size_t len);
const char *zgw_amqp_reply_to_check(const char *value, size_t len);
const char *zgw_amqp_routing_key_check(const char *exchange, size_t elen,
    const char *key, size_t len);
/* on success sets *ms (ms may be NULL) */
const char *zgw_amqp_expiration_check(const char *value, size_t len,
    unsigned long long *ms);

/* printable ASCII of at most max bytes of s, "..." when cut; out NUL-ended */
void zgw_amqp_echo(char *out, size_t size, const char *s, size_t len,
    size_t max);

#endif /* ZGW_AMQP_CHECK_H */
