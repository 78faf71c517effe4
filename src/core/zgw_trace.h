/*
 * ngx_zmq core: W3C Trace Context level 1 (traceparent, tracestate), as the
 * gateway copies it from an HTTP request into a message's headers table.
 *
 * traceparent: exactly "00-<trace-id>-<parent-id>-<flags>", 55 bytes:
 * version 00 (the only version level 1 defines; any other is refused, as
 * the gateway cannot know a later version's fields), trace-id 32 and
 * parent-id 16 lowercase hex digits, neither all zeros, flags 2 lowercase
 * hex digits.
 *
 * tracestate: at most 512 bytes and 32 list members, separated by commas
 * with optional spaces and tabs around them (empty members are allowed and
 * not counted); each member "key=value": key a simple-key (lcalpha then up
 * to 255 of lcalpha, DIGIT, _ - * /) or a multi-tenant key
 * "tenant@system" (tenant: lcalpha or DIGIT then up to 240 of those, system:
 * lcalpha then up to 13), value 1-256 printable ASCII characters other than
 * ',' and '=' (spaces inside, not at its end); no key twice.
 *
 * Each check returns NULL when the value is acceptable, otherwise a static
 * sentence saying why not. Nothing is allocated.
 */

#ifndef ZGW_TRACE_H
#define ZGW_TRACE_H

#include <stddef.h>


#define ZGW_TRACEPARENT_LEN         55
#define ZGW_TRACESTATE_MAX          512
#define ZGW_TRACESTATE_MEMBERS_MAX  32


const char *zgw_traceparent_check(const char *p, size_t len);
const char *zgw_tracestate_check(const char *p, size_t len);

/*
 * A new traceparent (version 00, flags 01 "sampled") into out (at least
 * ZGW_TRACEPARENT_LEN bytes, not NUL-terminated) from 24 random bytes:
 * the first 16 the trace-id, the last 8 the parent-id. An all-zero id is
 * made non-zero (its last digit becomes 1).
 */
void zgw_traceparent_format(char *out, const unsigned char *random);


#endif /* ZGW_TRACE_H */
