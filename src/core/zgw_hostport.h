/*
 * ngx_zmq core: host and host:port, the one parser every part uses.
 *
 * Accepted forms:
 *   IPv4         "192.0.2.7", "192.0.2.7:5672"   (dotted quad, inet_pton)
 *   IPv6         "[2001:db8::1]", "[2001:db8::1]:5672" (brackets required
 *                when a port may follow; zgw_host_parse() also takes a bare
 *                "2001:db8::1")
 *   names        "rabbit-1.example.com", "rabbit-1.example.com:5672"
 *                (RFC 1123: labels of 1-63 letters, digits and '-', not
 *                beginning or ending with '-'; at most 253 characters; one
 *                trailing dot allowed; a name of digits and dots only must
 *                be a valid IPv4 address)
 * A port is 1-5 decimal digits, 1-65535. No white space, no NUL, no
 * user info, no zone index.
 */

#ifndef ZGW_HOSTPORT_H
#define ZGW_HOSTPORT_H

#include <stddef.h>

#include "zgw_err.h"


#define ZGW_HOST_NAME_MAX      253
#define ZGW_HOSTPORT_TEXT_MAX  300        /* longer input is refused */

#define ZGW_HOST_IS_NAME       1
#define ZGW_HOST_IS_IPV4       2
#define ZGW_HOST_IS_IPV6       3


typedef struct {
    char   host[ZGW_HOST_NAME_MAX + 2];   /* no brackets, NUL-ended */
    int    port;                          /* 1-65535 */
    int    kind;                          /* ZGW_HOST_IS_* */
} zgw_hostport_t;


/*
 * "host[:port]" in text (len bytes, need not be NUL-ended). A missing port
 * is default_port; default_port 0 makes the port required. On error adds
 * one message to errs, "<who> '<text>': <reason>" (who may be NULL).
 */
int zgw_hostport_parse(zgw_hostport_t *hp, const char *text, size_t len,
    int default_port, const char *who, zgw_errors_t *errs);

/* a host alone (no port): hp->port is set to 0 */
int zgw_host_parse(zgw_hostport_t *hp, const char *text, size_t len,
    const char *who, zgw_errors_t *errs);

#endif /* ZGW_HOSTPORT_H */
