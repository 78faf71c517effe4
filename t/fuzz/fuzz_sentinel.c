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
 * What must hold: a message is taken exactly when an oracle written from
 * the format "<name> <old-ip> <old-port> <new-ip> <new-port>" takes it
 * (fuzz_switch_oracle: five fields, one space between them, the name
 * ours, the new address one inet_pton() takes, the port 1-65535 in at
 * most 5 digits), with that address and port, and the port of a refused
 * one is left alone; an accepted address fits ip;
 * zgw_sentinel_switch_is_for() is whether the first field is the name;
 * every refusal of a reply says why, in printable ASCII only (a peer's
 * text is shown through zgw_show), and an accepted reply names an IP
 * address and a port 1-65535.
 */

#define _GNU_SOURCE                     /* memmem(), memrchr() */

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "zgw_resp_limit.h"
#include "zgw_sentinel.h"


#define FUZZ_NAME       "mymaster"
#define FUZZ_FIELD_MAX  64      /* more than an address or a port */


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


/* the first field, up to the first space, is the master's whole name */
static int
fuzz_names_master(const char *msg, size_t len)
{
    const char  *sp;

    sp = memchr(msg, ' ', len);

    return sp != NULL && (size_t) (sp - msg) == strlen(FUZZ_NAME)
           && strncmp(msg, FUZZ_NAME, sp - msg) == 0;
}


/*
 * The oracle for a +switch-master message, written from the message's
 * format and the rules zgw_sentinel.h and zgw_sentinel.c state, not from
 * zgw_sentinel_switch_target(), so that a slip there is not copied here.
 * Redis Sentinel publishes on +switch-master
 *
 *     <master name> <old ip> <old port> <new ip> <new port>
 *
 *   layout    five fields, one space between each two: the message has
 *             exactly four spaces, none first, none last, no two in a row
 *   name      the first field is the whole master name
 *   old       the old address and port are not looked at
 *   new ip    an IPv4 or IPv6 address as inet_pton() reads one (a sentinel
 *             never makes us resolve a name), no NUL in it, shorter than
 *             ZGW_SENTINEL_IP_MAX (INET6_ADDRSTRLEN) and, with its NUL,
 *             no longer than the caller's buffer
 *   new port  one to five decimal digits and nothing else, 1-65535
 *
 * The fields are found from the right (the port after the last space, the
 * address after the space before it), where the implementation scans from
 * the left, and each is checked on a NUL-ended copy with the C library's
 * string functions. Returns 0 with ip (NUL-ended) and port, or -1.
 */
static int
fuzz_switch_oracle(const char *msg, size_t len, size_t iplen, char *ip,
    int *port)
{
    int          value;
    char         addr[FUZZ_FIELD_MAX], digits[FUZZ_FIELD_MAX];
    size_t       spaces, addr_len, digits_len;
    const char  *p, *last, *before;

    /* layout */
    spaces = 0;

    for (p = memchr(msg, ' ', len); p != NULL;
         p = memchr(p + 1, ' ', msg + len - (p + 1)))
    {
        spaces++;
    }

    if (spaces != 4 || msg[0] == ' ' || msg[len - 1] == ' '
        || memmem(msg, len, "  ", 2) != NULL)
    {
        return -1;
    }

    /* name */
    if (!fuzz_names_master(msg, len)) {
        return -1;
    }

    /* the new port after the last space, the new address before it */
    last = memrchr(msg, ' ', len);
    before = memrchr(msg, ' ', last - msg);

    digits_len = msg + len - (last + 1);
    addr_len = last - (before + 1);

    /* new ip */
    if (addr_len >= ZGW_SENTINEL_IP_MAX || addr_len + 1 > iplen) {
        return -1;
    }

    memcpy(addr, before + 1, addr_len);
    addr[addr_len] = '\0';

    if (strlen(addr) != addr_len || !fuzz_is_ip(addr)) {
        return -1;
    }

    /* new port */
    if (digits_len > 5) {
        return -1;
    }

    memcpy(digits, last + 1, digits_len);
    digits[digits_len] = '\0';

    if (strspn(digits, "0123456789") != digits_len) {
        return -1;
    }

    value = atoi(digits);

    if (value < 1 || value > 65535) {
        return -1;
    }

    strcpy(ip, addr);
    *port = value;

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
    ref = fuzz_switch_oracle(msg, size, iplen, rip, &rport);

    if (rc != 0 && rc != -1) {
        fuzz_fail("switch_target: neither 0 nor -1");
    }

    if (rc == 0 && !zgw_sentinel_switch_is_for(msg, size, FUZZ_NAME)) {
        fuzz_fail("switch_target took a message not for the master");
    }

    if (zgw_sentinel_switch_is_for(msg, size, FUZZ_NAME)
        != fuzz_names_master(msg, size))
    {
        fuzz_fail("switch_is_for: not whether the first field is the name");
    }

    if (rc != ref) {
        fprintf(stderr, "fuzz_sentinel: '%.*s': switch_target %d, the "
                "oracle %d\n", (int) size, msg, rc, ref);
        fuzz_fail("switch_target disagrees with the oracle");
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
