/*
 * libFuzzer target: Redis addresses (zmq_config redis://..., ZMQ_REDIS,
 * zmqctl --redis, a service's "url").
 *
 * Never crashes, explains every refusal, and what it accepts is a host of
 * 1-255 bytes without a NUL in the middle, a port in 1-65535, a database
 * in 0-65535 and a NUL-terminated password.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zgw_redis_url.h"


static void
fuzz_fail(const char *url, const char *what)
{
    fprintf(stderr, "fuzz_redis_url: '%s': %s\n", url, what);
    abort();
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                rc;
    char              *url;
    zgw_errors_t       errs;
    zgw_redis_addr_t   addr;

    /* a C string, as every caller has */
    url = malloc(size + 1);
    if (url == NULL) {
        return 0;
    }
    memcpy(url, data, size);
    url[size] = '\0';

    zgw_errors_init(&errs);

    /* the sentinel form too, as the callers that take it parse it */
    rc = zgw_redis_addr_parse_ex(&addr, url, ZGW_REDIS_SENTINEL, &errs);

    if (rc != ZGW_OK) {
        if (errs.n == 0 || errs.msgs[0][0] == '\0') {
            fuzz_fail(url, "refused without saying why");
        }

    } else {
        if (memchr(addr.host, '\0', sizeof(addr.host)) == NULL
            || memchr(addr.password, '\0', sizeof(addr.password)) == NULL)
        {
            fuzz_fail(url, "not NUL-terminated");
        }

        if (addr.host[0] == '\0') {
            fuzz_fail(url, "accepted without a host");
        }

        if (addr.sentinel
            && (addr.nsentinels < 1 || addr.nsentinels > ZGW_SENTINELS_MAX
                || addr.master_name[0] == '\0'
                || memchr(addr.master_name, '\0',
                          sizeof(addr.master_name)) == NULL))
        {
            fuzz_fail(url, "a sentinel URL without sentinels or a master");
        }

        if (addr.tls
            && (memchr(addr.ca_file, '\0', sizeof(addr.ca_file)) == NULL
                || memchr(addr.server_name, '\0',
                          sizeof(addr.server_name)) == NULL))
        {
            fuzz_fail(url, "TLS options not NUL-terminated");
        }

        if (addr.port < 1 || addr.port > 65535) {
            fuzz_fail(url, "port out of range");
        }

        if (addr.db < 0 || addr.db > 65535) {
            fuzz_fail(url, "database out of range");
        }
    }

    zgw_errors_free(&errs);
    free(url);

    return 0;
}
