/*
 * ngx_zmq core: Redis addresses.
 */

#ifndef ZGW_REDIS_URL_H
#define ZGW_REDIS_URL_H

#include "zgw_err.h"


#define ZGW_REDIS_DEFAULT  "redis://127.0.0.1:6379/0"


typedef struct {
    char  host[256];
    int   port;
    int   db;
    char  password[256];      /* "" when none */
} zgw_redis_addr_t;


/*
 * "redis://[:password@]host[:port][/db]" or "host[:port]"; host[:port] as
 * zgw_hostport.h describes (an IPv6 address in brackets).
 */
int zgw_redis_addr_parse(zgw_redis_addr_t *addr, const char *url,
    zgw_errors_t *errs);

#endif /* ZGW_REDIS_URL_H */
