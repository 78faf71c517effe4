/*
 * ngx_zmq core: Redis addresses, and URLs as they may be shown.
 *
 * One parser for every part (the NGINX module, zmqd, zmqctl): a Redis
 * address is a URL in RFC 3986 syntax, as redis-cli and redis-py read it,
 *
 *     redis://[[user][:password]@]host[:port][/db]
 *
 * or "[[user][:password]@]host[:port][/db]" without the scheme.
 *
 *   user, password  percent-decoded (%2F is '/', %40 '@', %25 '%', ...).
 *                   The user information ends at the LAST '@', and the
 *                   password begins after the first ':' of it, so '@', ':'
 *                   and '/' may also be written as they are. A literal '%'
 *                   must be written %25; %00 is refused. At most 255 bytes
 *                   each once decoded. With a user, AUTH user password
 *                   (Redis 6 ACL users); with a password only, AUTH
 *                   password; with neither, no AUTH.
 *   host            a name, an IPv4 address, or an IPv6 address in
 *                   brackets ([::1]), as zgw_hostport.h reads them; stored
 *                   without the brackets
 *   port            1-65535, 6379 when missing
 *   db              a decimal number 0-65535 after '/', 0 when missing
 *
 *
 *     rediss://...[/db][?name=value&...]
 *
 * is the same over TLS, with options in the query (values
 * percent-decoded; write '@' in them as %40, since the user information
 * ends at the last '@'):
 *
 *   ca_file       PEM file of the CAs to trust; the system store when
 *                 missing
 *   verify        1 (default) or 0: check the chain and the host name
 *   server_name   the name sent as SNI and checked; the host by default
 *   cert_file,    a client certificate and its key (mutual TLS), both or
 *   key_file      neither
 *
 * With Redis Sentinel, for the callers that take it (ZGW_REDIS_SENTINEL):
 *
 *     redis-sentinel://[[user][:password]@]host[:port][,host[:port]...]
 *                      /master-name[/db]
 *
 *   host[:port]...  the sentinels, 1-8, port 26379 when missing; they are
 *                   asked for the master named master-name (1-255 of
 *                   letters, digits and . _ -), and the user and password
 *                   are the master's (sentinels are asked without AUTH)
 *   db              as above
 *
 * Sentinel over TLS is not supported; any other caller refuses the scheme.
 *
 * A query with redis:// is an error (its options are TLS ones), so is
 * a fragment ('#'), another '/', or white space. Unix sockets are not
 * supported.
 *
 * Error messages never contain the password: they show the URL through
 * zgw_url_redact().
 */

#ifndef ZGW_REDIS_URL_H
#define ZGW_REDIS_URL_H

#include <stddef.h>

#include "zgw_err.h"


#define ZGW_REDIS_DEFAULT    "redis://127.0.0.1:6379/0"
#define ZGW_REDIS_CRED_MAX   256          /* user, password: 255 + NUL */
#define ZGW_URL_SHOW_MAX     512          /* a shown URL is cut to this */
#define ZGW_REDIS_PATH_MAX   1024         /* ca_file, cert_file, key_file */
#define ZGW_SENTINELS_MAX    8
#define ZGW_SENTINEL_PORT    26379

/* zgw_redis_addr_parse_ex() flags */
#define ZGW_REDIS_SENTINEL   0x1          /* redis-sentinel:// is taken */


typedef struct {
    char  host[256];                      /* IPv6 without brackets */
    int   port;
    int   db;
    char  username[ZGW_REDIS_CRED_MAX];   /* "" when none */
    char  password[ZGW_REDIS_CRED_MAX];   /* "" when none */
    int   has_password;                   /* a ':' in the user information */
    int   ipv6;
    int   tls;                            /* rediss:// */
    int   verify;                         /* TLS: chain and host name */
    char  server_name[256];               /* "" : the host */
    char  ca_file[ZGW_REDIS_PATH_MAX];    /* "" : the system store */
    char  cert_file[ZGW_REDIS_PATH_MAX];  /* "" : no client certificate */
    char  key_file[ZGW_REDIS_PATH_MAX];

    /* redis-sentinel://: host and port above are the first sentinel's */
    int   sentinel;
    char  master_name[256];
    int   nsentinels;
    struct {
        char  host[256];                  /* IPv6 without brackets */
        int   port;
        int   ipv6;
    } sentinels[ZGW_SENTINELS_MAX];
} zgw_redis_addr_t;


/*
 * Fills addr from url; ZGW_ERROR with one message in errs (the URL shown
 * redacted). The caller wipes addr->password after use.
 */
int zgw_redis_addr_parse(zgw_redis_addr_t *addr, const char *url,
    zgw_errors_t *errs);
/* the same, taking what flags allow (ZGW_REDIS_SENTINEL) */
int zgw_redis_addr_parse_ex(zgw_redis_addr_t *addr, const char *url,
    int flags, zgw_errors_t *errs);

/*
 * The URL as it may be printed or logged: the password of the user
 * information (what follows its first ':', up to its last '@') becomes
 * "***", as in "redis://user:***@host:6379/0". Everything else is kept,
 * the user name too. Works on any text, a URL or not, and on any scheme
 * (http://user:***@host/ as well). Writes at most size bytes, NUL-ended
 * (a longer result is cut; cutting never shows what was masked); returns
 * out.
 */
char *zgw_url_redact(const char *url, char *out, size_t size);

/* the same for a URL of len bytes, not necessarily NUL-ended */
char *zgw_url_redact_len(const char *url, size_t len, char *out,
    size_t size);

#endif /* ZGW_REDIS_URL_H */
