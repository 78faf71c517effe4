/*
 * zmqd --metrics ADDR:PORT: counters for Prometheus on a small HTTP
 * listener (libmicrohttpd, its own thread). The loop counts with one
 * relaxed atomic add per event; the listener's thread reads them.
 */

#ifndef ZMQD_METRICS_H
#define ZMQD_METRICS_H

#include <stddef.h>

/*
 * channels, definitions (amqp_def and stomp_def) and invoke services with
 * their own series; more channels and services are "_overflow"
 */
#define ZMQD_METRICS_CHANNELS   128
#define ZMQD_METRICS_DEFS       64
#define ZMQD_METRICS_SERVICES   64

typedef enum {
    ZMQD_METRICS_ACKED = 0,
    ZMQD_METRICS_RETRIED,
    ZMQD_METRICS_DEAD_LETTERED,
    ZMQD_METRICS_REJECTED,
    ZMQD_METRICS_RESULTS
} zmqd_metrics_result_e;

/* listens on addr ("127.0.0.1:9464", "[::1]:9464"); 0, or -1 and err */
int zmqd_metrics_start(const char *addr, char *err, size_t len);
void zmqd_metrics_stop(void);

/* from the loop's thread only (names are claimed there) */
void zmqd_metrics_message(const char *channel, zmqd_metrics_result_e result);
void zmqd_metrics_service(const char *channel, double seconds);
/* an amqp_def's consuming connection */
void zmqd_metrics_def_up(const char *def, int up);
/* a stomp_def's: every stomp_channel of it connected */
void zmqd_metrics_stomp_up(const char *def, int up);
/* an invocation of an invoke service done: its target succeeded or not */
void zmqd_metrics_invocation(const char *service, int ok);

#endif /* ZMQD_METRICS_H */
