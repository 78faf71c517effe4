/*
 * libFuzzer target: what a sentinel (any peer on a sentinel's port) says,
 * as the NGINX workers, zmqd and zmqctl read it.
 *
 * The first byte picks what the rest is:
 *
 *   even: a +switch-master message (the third element of the pub/sub
 *         message the sentinel watcher gets) into
 *         zgw_sentinel_switch_is_for() and zgw_sentinel_switch_target()
 *         for the master "mymaster", with an ip buffer of (byte >> 1) + 1
 *         bytes (127: ZGW_SENTINEL_IP_MAX), allocated at that size
 *   odd:  RESP bytes, through hiredis' reader bounded as ours are, each
 *         reply into zgw_sentinel_master_reply() (the answer to SENTINEL
 *         get-master-addr-by-name), zgw_sentinel_is_master() (ROLE) and
 *         zgw_redis_is_readonly()
 *
 * What must hold: a message is taken exactly when a reference reading of
 * "<name> <old-ip> <old-port> <new-ip> <new-port>" (five fields, one
 * space between them, the name ours, the new address one inet_pton()
 * takes, the port 1-65535 in at most 5 digits) takes it, with that
 * address and port; an accepted address fits ip; every refusal of a reply
 * says why, in printable ASCII only (a peer's text is shown through
 * zgw_show), and an accepted reply names an IP address and a port
 * 1-65535.
 */

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "zgw_resp_limit.h"
#include "zgw_sentinel.h"


#define FUZZ_NAME  "mymaster"


static void
fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz_sentinel: %s\n", what);
    abort();
}


/* an IPv4 or IPv6 address, as inet_pton() takes it */
static int
fuzz_is_ip(const char *ip)
{
    unsigned char  buf[16];

    return inet_pton(AF_INET, ip, buf) == 1
           || inet_pton(AF_INET6, ip, buf) == 1;
}


/* the reference: 0 with ip and port, or -1 */
static int
fuzz_switch_ref(const char *msg, size_t len, char *ip, size_t iplen,
    int *port)
{
    size_t       i, n, start, flen[5], fpos[5];
    long         p;

    n = 0;
    start = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && msg[i] != ' ') {
            continue;
        }

        if (n == 5 || i == start) {
            return -1;
        }

        fpos[n] = start;
        flen[n] = i - start;
        n++;
        start = i + 1;
    }

    if (n != 5 || flen[0] != strlen(FUZZ_NAME)
        || memcmp(msg, FUZZ_NAME, flen[0]) != 0)
    {
        return -1;
    }

    if (flen[3] >= ZGW_SENTINEL_IP_MAX || flen[3] >= iplen
        || memchr(msg + fpos[3], '\0', flen[3]) != NULL)
    {
        return -1;
    }

    memcpy(ip, msg + fpos[3], flen[3]);
    ip[flen[3]] = '\0';

    if (!fuzz_is_ip(ip)) {
        return -1;
    }

    if (flen[4] < 1 || flen[4] > 5) {
        return -1;
    }

    p = 0;

    for (i = 0; i < flen[4]; i++) {
        if (msg[fpos[4] + i] < '0' || msg[fpos[4] + i] > '9') {
            return -1;
        }
        p = p * 10 + (msg[fpos[4] + i] - '0');
    }

    if (p < 1 || p > 65535) {
        return -1;
    }

    *port = (int) p;
    return 0;
}


static void
fuzz_switch(const uint8_t *data, size_t size, size_t iplen)
{
    int     rc, ref, port, rport;
    char   *msg, *ip, rip[ZGW_SENTINEL_IP_MAX];

    /* the message in a buffer of its own size: a read past it is caught */
    msg = malloc(size ? size : 1);
    ip = malloc(iplen);

    if (msg == NULL || ip == NULL) {
        free(msg);
        free(ip);
        return;
    }

    memcpy(msg, data, size);
    memset(ip, 'Z', iplen);
    port = -7;
    rport = 0;

    rc = zgw_sentinel_switch_target(msg, size, FUZZ_NAME, ip, iplen, &port);
    ref = fuzz_switch_ref(msg, size, rip, iplen, &rport);

    if (rc != 0 && rc != -1) {
        fuzz_fail("switch_target: neither 0 nor -1");
    }

    if (rc == 0 && !zgw_sentinel_switch_is_for(msg, size, FUZZ_NAME)) {
        fuzz_fail("switch_target took a message not for the master");
    }

    if (rc != ref) {
        fprintf(stderr, "fuzz_sentinel: '%.*s': switch_target %d, the "
                "reference %d\n", (int) size, msg, rc, ref);
        fuzz_fail("switch_target disagrees with the reference");
    }

    if (rc == 0) {
        if (memchr(ip, '\0', iplen) == NULL) {
            fuzz_fail("switch_target: ip without its NUL");
        }

        if (strcmp(ip, rip) != 0 || !fuzz_is_ip(ip)) {
            fuzz_fail("switch_target: not the address the message names");
        }

        if (port != rport || port < 1 || port > 65535) {
            fuzz_fail("switch_target: not the port the message names");
        }

    } else if (port != -7) {
        fuzz_fail("switch_target: set the port of a refused message");
    }

    free(msg);
    free(ip);
}


static void
fuzz_check_why(const char *why, size_t len, const char *what)
{
    size_t  i, n;

    n = strnlen(why, len);

    if (n == len) {
        fuzz_fail("a reason without its NUL");
    }

    if (n == 0) {
        fprintf(stderr, "fuzz_sentinel: %s\n", what);
        fuzz_fail("refused without saying why");
    }

    for (i = 0; i < n; i++) {
        if (why[i] < 0x20 || why[i] >= 0x7f) {
            fprintf(stderr, "fuzz_sentinel: %s: '%s'\n", what, why);
            fuzz_fail("a reason with a byte that is not printable ASCII");
        }
    }
}


static void
fuzz_replies(const uint8_t *data, size_t size)
{
    int                 rc, port, ipv6;
    char                ip[ZGW_SENTINEL_IP_MAX], why[256];
    void               *reply;
    redisReader        *reader;
    zgw_resp_budget_t   budget = { 0, 0, 0 };

    reader = redisReaderCreate();
    if (reader == NULL) {
        return;
    }

    /* bounded as every reader of ours is */
    zgw_resp_limit(reader, &budget);

    if (redisReaderFeed(reader, (const char *) data, size) != REDIS_OK) {
        redisReaderFree(reader);
        return;
    }

    for ( ;; ) {
        reply = NULL;

        if (redisReaderGetReply(reader, &reply) != REDIS_OK
            || reply == NULL)
        {
            break;
        }

        why[0] = '\0';
        port = -7;
        ipv6 = -7;

        rc = zgw_sentinel_master_reply(reply, FUZZ_NAME, ip, sizeof(ip),
                                       &port, &ipv6, why, sizeof(why));

        if (rc == 0) {
            if (memchr(ip, '\0', sizeof(ip)) == NULL || !fuzz_is_ip(ip)) {
                fuzz_fail("master_reply: not an IP address");
            }

            if (port < 1 || port > 65535) {
                fuzz_fail("master_reply: a port out of 1-65535");
            }

            if (ipv6 != (strchr(ip, ':') != NULL)) {
                fuzz_fail("master_reply: ipv6 says the other family");
            }

        } else if (rc == -1) {
            fuzz_check_why(why, sizeof(why), "master_reply");

        } else {
            fuzz_fail("master_reply: neither 0 nor -1");
        }

        why[0] = '\0';

        rc = zgw_sentinel_is_master(reply, why, sizeof(why));

        if (rc == 0) {
            fuzz_check_why(why, sizeof(why), "is_master");

        } else if (rc != 1) {
            fuzz_fail("is_master: neither 0 nor 1");
        }

        (void) zgw_redis_is_readonly(reply);

        freeReplyObject(reply);
    }

    redisReaderFree(reader);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t  iplen;

    if (size < 1) {
        return 0;
    }

    if (data[0] & 1) {
        fuzz_replies(data + 1, size - 1);
        return 0;
    }

    iplen = (data[0] >> 1) == 127 ? ZGW_SENTINEL_IP_MAX
                                  : (size_t) (data[0] >> 1) + 1;

    fuzz_switch(data + 1, size - 1, iplen);

    return 0;
}
