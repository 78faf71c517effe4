/*
 * ngx_zmq core: Redis addresses.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "zgw_redis_url.h"


int
zgw_redis_addr_parse(zgw_redis_addr_t *addr, const char *url,
    zgw_errors_t *errs)
{
    long         n;
    char        *end;
    size_t       len;
    const char  *p, *at, *slash, *colon, *host_end;

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
    colon = memchr(p, ':', (size_t) (host_end - p));
    len = (size_t) ((colon ? colon : host_end) - p);

    if (len == 0 || len >= sizeof(addr->host)) {
        zgw_errors_add(errs, "redis address '%s': no host", url);
        return ZGW_ERROR;
    }

    memcpy(addr->host, p, len);

    if (colon != NULL) {
        errno = 0;
        n = strtol(colon + 1, &end, 10);
        if (errno || end != host_end || n < 1 || n > 65535) {
            zgw_errors_add(errs, "redis address '%s': port is out of range "
                           "1-65535", url);
            return ZGW_ERROR;
        }
        addr->port = (int) n;
    }

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
