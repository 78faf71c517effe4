/*
 * ngx_zmq core: what every client of Redis Sentinel reads (the blocking
 * one in zgw_redis_conn.c and the NGINX module's), with no I/O.
 *
 * A sentinel is untrusted input like any peer: its replies are checked
 * for their types and lengths, and the master's address it names must be
 * an IPv4 or IPv6 address (never a name: no resolver runs on its word,
 * and an NGINX worker must not resolve anyway).
 */

#ifndef ZGW_SENTINEL_H
#define ZGW_SENTINEL_H

#include <stddef.h>

#include <hiredis/hiredis.h>


#define ZGW_SENTINEL_IP_MAX   46          /* INET6_ADDRSTRLEN */
#define ZGW_SENTINEL_CHANNEL  "+switch-master"


/*
 * The reply to SENTINEL get-master-addr-by-name NAME: 0 with ip (an
 * address, NUL-ended), port (1-65535) and ipv6 set; -1 with why filled
 * ("does not know the master 'NAME'", "named the master 'x', which is
 * not an IP address", ...).
 */
int zgw_sentinel_master_reply(const redisReply *r, const char *name,
    char *ip, size_t iplen, int *port, int *ipv6, char *why, size_t whylen);

/*
 * The reply to ROLE: 1 when its first element is "master", 0 otherwise
 * with why filled ("a replica, not the master", "an error: ...").
 */
int zgw_sentinel_is_master(const redisReply *r, char *why, size_t whylen);

/*
 * A +switch-master message, "<name> <old-ip> <old-port> <new-ip>
 * <new-port>": 1 when it is about the master name.
 */
int zgw_sentinel_switch_is_for(const char *msg, size_t len,
    const char *name);

/*
 * The new master a +switch-master message about name names: 0 with ip
 * (an IPv4 or IPv6 address, NUL-ended) and port (1-65535) set; -1 when
 * the message is not "<name> <old-ip> <old-port> <new-ip> <new-port>" or
 * its new address is not an IP and a port.
 */
int zgw_sentinel_switch_target(const char *msg, size_t len,
    const char *name, char *ip, size_t iplen, int *port);

/* an error reply that says the server is (now) a replica: READONLY ... */
int zgw_redis_is_readonly(const redisReply *r);

#endif /* ZGW_SENTINEL_H */
