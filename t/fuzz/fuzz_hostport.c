/*
 * libFuzzer target: host:port, the one parser every part uses (amqp_def
 * host and hosts, Redis addresses, the module's addresses).
 *
 * The input is the text after one byte that picks the default port (0:
 * none, the port is required). Never crashes, explains every refusal, and
 * what it accepts is a host that inet_pton() takes when it says IPv4 or
 * IPv6, a port 1-65535, and the same result when written back as
 * host:port ([host]:port for IPv6) and parsed again.
 */

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zgw_hostport.h"


static void
fuzz_fail(const char *text, size_t len, const char *what)
{
    fprintf(stderr, "fuzz_hostport: '%.*s': %s\n", (int) len, text, what);
    abort();
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int               rc, def;
    char             *text, again[ZGW_HOST_NAME_MAX + 16];
    size_t            len, n;
    zgw_errors_t      errs;
    zgw_hostport_t    hp, hp2;
    unsigned char     addr[16];

    if (size < 1) {
        return 0;
    }

    def = data[0] == 0 ? 0 : data[0] * 257;
    len = size - 1;

    /* exactly as large as the text: ASan sees reads past its end */
    text = malloc(len ? len : 1);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, data + 1, len);

    zgw_errors_init(&errs);
    rc = zgw_hostport_parse(&hp, text, len, def, "fuzz", &errs);

    if (rc != ZGW_OK) {
        if (errs.n == 0 || errs.msgs[0][0] == '\0') {
            fuzz_fail(text, len, "refused without saying why");
        }
        goto done;
    }

    if (memchr(hp.host, '\0', sizeof(hp.host)) == NULL || hp.host[0] == '\0')
    {
        fuzz_fail(text, len, "accepted without a NUL-terminated host");
    }

    if (hp.port < 1 || hp.port > 65535) {
        fuzz_fail(text, len, "port out of range");
    }

    if ((hp.kind == ZGW_HOST_IS_IPV4 && inet_pton(AF_INET, hp.host, addr) != 1)
        || (hp.kind == ZGW_HOST_IS_IPV6
            && inet_pton(AF_INET6, hp.host, addr) != 1))
    {
        fuzz_fail(text, len, "an address inet_pton() does not take");
    }

    if (hp.kind != ZGW_HOST_IS_NAME && hp.kind != ZGW_HOST_IS_IPV4
        && hp.kind != ZGW_HOST_IS_IPV6)
    {
        fuzz_fail(text, len, "of no kind");
    }

    /* written back and parsed again: the same */

    n = (size_t) snprintf(again, sizeof(again),
                          hp.kind == ZGW_HOST_IS_IPV6 ? "[%s]:%d" : "%s:%d",
                          hp.host, hp.port);

    zgw_errors_clear(&errs);
    if (zgw_hostport_parse(&hp2, again, n, 0, "fuzz", &errs) != ZGW_OK
        || strcmp(hp.host, hp2.host) != 0 || hp.port != hp2.port
        || hp.kind != hp2.kind)
    {
        fuzz_fail(again, n, "what was accepted does not parse back the same");
    }

done:

    zgw_errors_free(&errs);
    free(text);

    return 0;
}
