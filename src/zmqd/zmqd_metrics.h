/*
 * zmqd --metrics ADDR:PORT: counters for Prometheus on a small HTTP
 * listener (libmicrohttpd, its own thread). The loop counts with one
 * relaxed atomic add per event; the listener's thread reads them.
 */

#ifndef ZMQD_METRICS_H
#define ZMQD_METRICS_H

#include <stddef.h>

/* channels and amqp_defs with their own series; more are "_overflow" */
#define ZMQD_METRICS_CHANNELS   128
#define ZMQD_METRICS_DEFS       64

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
void zmqd_metrics_def_up(const char *def, int up);

#endif /* ZMQD_METRICS_H */
