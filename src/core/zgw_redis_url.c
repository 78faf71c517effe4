/*
 * ngx_zmq core: Redis addresses.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "zgw_hostport.h"
#include "zgw_redis_url.h"


int
zgw_redis_addr_parse(zgw_redis_addr_t *addr, const char *url,
    zgw_errors_t *errs)
{
    long             n;
    char            *end;
    const char      *p, *at, *slash, *host_end;
    zgw_errors_t     why;
    zgw_hostport_t   hp;

    memset(addr, 0, sizeof(*addr));
    addr->port = 6379;

    p = url;
    if (strncmp(p, "redis://", 8) == 0) {
        p += 8;
    } else if (strstr(p, "://") != NULL) {
        zgw_errors_add(errs, "redis address '%s': only redis:// is "
                       "supported", url);
        return ZGW_ERROR;
    }

    slash = strchr(p, '/');
    at = strchr(p, '@');
    if (at != NULL && (slash == NULL || at < slash)) {
        if (*p != ':' || (size_t) (at - p - 1) >= sizeof(addr->password)) {
            zgw_errors_add(errs, "redis address '%s': credentials must be "
                           "':password@'", url);
            return ZGW_ERROR;
        }
        memcpy(addr->password, p + 1, (size_t) (at - p - 1));
        p = at + 1;
    }

    host_end = slash ? slash : p + strlen(p);

    zgw_errors_init(&why);

    if (zgw_hostport_parse(&hp, p, (size_t) (host_end - p), 6379, NULL, &why)
        != ZGW_OK)
    {
        zgw_errors_add(errs, "redis address '%s': %s", url,
                       zgw_errors_first(&why));
        zgw_errors_free(&why);
        return ZGW_ERROR;
    }

    zgw_errors_free(&why);

    memcpy(addr->host, hp.host, strlen(hp.host) + 1);
    addr->port = hp.port;

    if (slash != NULL && slash[1] != '\0') {
        errno = 0;
        n = strtol(slash + 1, &end, 10);
        if (errno || *end != '\0' || n < 0 || n > 65535) {
            zgw_errors_add(errs, "redis address '%s': database must be a "
                           "number", url);
            return ZGW_ERROR;
        }
        addr->db = (int) n;
    }

    return ZGW_OK;
}
