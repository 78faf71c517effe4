/*
 * zmqd: the channel sidecar of ngx_zmq.
 *
 * Consumes the queues of amqp_channel objects and invokes each message's
 * service; acks only after the service succeeded, retries failures without
 * holding up other messages, then dead-letters. Blocking calls, each with
 * a bound.
 */

#ifndef ZMQD_H
#define ZMQD_H

#include <stddef.h>
#include <time.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <jansson.h>

#include "zgw_crypto.h"
#include "zgw_model.h"


#define ZMQD_TIMEOUT_MS     5000


typedef struct zmqd_ctx_s  zmqd_ctx_t;


/* one AMQP connection (blocking rabbitmq-c) */
typedef struct {
    amqp_connection_state_t  conn;
    char                     peer[300];
    int                      confirm;        /* channel 1 in confirm mode */
    uint64_t                 next_tag;
} zmqd_amqp_t;


/* a message as a service sees it */
typedef struct {
    const char                     *channel;     /* amqp_channel name */
    const amqp_bytes_t             *body;
    const amqp_basic_properties_t  *props;
    char                            message_id[256];
} zmqd_msg_t;


void zmqd_log(const char *level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* seconds on the monotonic clock */
double zmqd_now(void);

/* connect, log in, open channel 1; NULL with err filled on failure */
zmqd_amqp_t *zmqd_amqp_open(const json_t *def, const zgw_key_t *key,
    int confirm, char *err, size_t errlen);
void zmqd_amqp_close(zmqd_amqp_t *a);
/* publish on channel 1 and wait for the confirm; 0 ok, -1 err filled */
int zmqd_amqp_publish(zmqd_amqp_t *a, const char *exchange,
    const char *routing_key, int mandatory, amqp_basic_properties_t *props,
    amqp_bytes_t body, char *err, size_t errlen);
const char *zmqd_amqp_reply_error(amqp_rpc_reply_t r, char *buf,
    size_t len);

/*
 * services: 0 on success, -1 with err filled (retried per the channel's
 * policy), ZMQD_PERMANENT with err filled when the message itself is at
 * fault and a retry cannot help (dead-lettered at once)
 */
#define ZMQD_PERMANENT  -2

int zmqd_service_invoke(zmqd_ctx_t *ctx, const char *name,
    const zmqd_msg_t *msg, char *err, size_t errlen);
/* a body in a data format: 0 valid, -1 with err filled */
int zmqd_format_check(const char *format, const amqp_bytes_t *body,
    char *err, size_t errlen);

/* what services need from the daemon */
const zgw_config_t *zmqd_config(zmqd_ctx_t *ctx);
const zgw_key_t *zmqd_key(zmqd_ctx_t *ctx);
const char *zmqd_redis_url(zmqd_ctx_t *ctx);
/* the publishing connection of an amqp_def, opened on demand */
zmqd_amqp_t *zmqd_publisher(zmqd_ctx_t *ctx, const char *def, char *err,
    size_t errlen);
void zmqd_publisher_failed(zmqd_ctx_t *ctx, const char *def);
void zmqd_services_reset(void);

#endif /* ZMQD_H */
