/*
 * zmqctl: what the command files share: the parsed command line, the
 * store helpers of zmqctl.c, and the commands of the other files.
 *
 *   zmqctl.c         the command table, options, store commands
 *   zmqctl_net.c     bounded TCP connects and TLS handshakes; ping of an
 *                    http_outconn
 *   zmqctl_amqp.c    ping of an amqp_def, send through an amqp_outconn
 *                    (rabbitmq-c, blocking, every wait bounded)
 *   zmqctl_stomp.c   ping of a stomp_def (STOMP CONNECT, bounded)
 *   zmqctl_fleet.c   fleet: the gateways and zmqd following the store
 *   zmqctl_passwd.c  passwd: a secret read from a terminal or stdin
 *   zmqctl_invoke.c  invoke: runs a service with zmqd's own service code
 *                    (src/zmqd, linked in)
 */

#ifndef ZMQCTL_H
#define ZMQCTL_H

#include <stddef.h>

#include "zgw_err.h"
#include "zgw_model.h"
#include "zgw_store.h"


#define ZMQCTL_EXIT_OK      0
#define ZMQCTL_EXIT_FAIL    1
#define ZMQCTL_EXIT_USAGE   2

#define ZMQCTL_KEY_DEFAULT  "/etc/ngx_zmq/secret.key"
#define ZMQCTL_TIMEOUT_MS   5000          /* Redis */
#define ZMQCTL_NET_TIMEOUT  5000          /* --timeout: ping and send */
#define ZMQCTL_NET_TIMEOUT_MAX  3600000
/* how long a password prompt or a body on stdin may wait for input */
#define ZMQCTL_INPUT_TIMEOUT_MS  300000


typedef struct {
    const char   *redis;
    const char   *key_file;
    const char   *output;
    int           check;
    int           replace;
    int           force;
    int           yes;
    long long     floor;          /* --version-floor, -1: none */
    const char   *id;             /* apikey --id */
    const char   *revoke;         /* apikey --revoke */
    int           timeout;        /* --timeout MS (ping, send), 0: unset */
    const char   *exchange;       /* send --exchange */
    const char   *routing_key;    /* send --routing-key */
    int           mandatory;      /* send --mandatory */
    int           json;           /* fleet --json */
    const char  **props;          /* send --property k=v, in order */
    int           nprops;
    const char  **headers;        /* send --header k=v, in order */
    int           nheaders;
    int           argc;
    char        **argv;
} zmqctl_opts_t;


/* zmqctl.c */
void zmqctl_print_errors(const char *what, zgw_errors_t *errs);
zgw_store_t *zmqctl_connect(zmqctl_opts_t *o);
zgw_config_t *zmqctl_load(zgw_store_t *st, int warn);
/* references (when refs), then secrets sealed or hashed: import's steps */
int zmqctl_seal(zmqctl_opts_t *o, zgw_config_t *next,
    const zgw_config_t *prev, int refs, zgw_errors_t *errs);
zgw_config_t *zmqctl_snapshot(zmqctl_opts_t *o, int warn);
int zmqctl_kind_arg(const char *s);
/* the object kind/name of a loaded configuration, or NULL and a message */
json_t *zmqctl_object(zgw_config_t *cfg, int kind, const char *name);

/* zmqctl_net.c */
double zmqctl_now_ms(void);
/*
 * A TCP connection to host:port (each address of the name in turn) that
 * takes at most timeout_ms in all: a non-blocking socket, or -1 with the
 * reason in err ("Connection refused", "no answer within 5000 ms", ...).
 */
int zmqctl_tcp_connect(const char *host, int port, int timeout_ms,
    char *err, size_t errlen);
/* "host:port", "[v6]:port" */
void zmqctl_peer(char *out, size_t size, const char *host, int port);
/* printable text of at most max bytes, for messages */
const char *zmqctl_echo(char *out, size_t size, const void *s, size_t len);
int zmqctl_ping_http(zmqctl_opts_t *o, const json_t *oc);
/*
 * Waits at most timeout_ms for fd to be readable (POLLIN) or writable
 * (POLLOUT): 1 ready, 0 timed out, -1 error (errno).
 */
int zmqctl_wait_fd(int fd, short events, int timeout_ms);

/* zmqctl_amqp.c */
int zmqctl_ping(zmqctl_opts_t *o);
int zmqctl_send(zmqctl_opts_t *o);

/* zmqctl_stomp.c: ping of a stomp_def (argv: stomp_def NAME) */
int zmqctl_ping_stomp(zmqctl_opts_t *o);
/* zmqctl_fleet.c */
int zmqctl_fleet(zmqctl_opts_t *o);

/* zmqctl_invoke.c */
int zmqctl_invoke(zmqctl_opts_t *o);

/* zmqctl_passwd.c */
int zmqctl_passwd(zmqctl_opts_t *o);
/*
 * Reads all of fd (a file or standard input) into a malloc'd buffer of at
 * most max bytes; waits of a pipe or terminal are bounded by timeout_ms
 * each. NULL and a message on error.
 */
unsigned char *zmqctl_read_all(int fd, const char *what, size_t max,
    int timeout_ms, size_t *len);

#endif /* ZMQCTL_H */
