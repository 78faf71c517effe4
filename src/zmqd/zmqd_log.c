/*
 * zmqd: the log and the clock, used by every part of zmqd; and a
 * message's trace context, which its log lines show.
 */

#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "zgw_trace.h"
#include "zmqd.h"


/*
 * One line on stderr. Values in a line come from messages and the
 * configuration (a message_id, a queue name, an error text): a control
 * byte in them is written as \xNN, so that no value can end the line and
 * forge the next one.
 */
void
zmqd_log(const char *level, const char *fmt, ...)
{
    int            n, m, i;
    char           line[2048], msg[1536], ts[32];
    time_t         now;
    va_list        ap;
    struct tm      tm;
    unsigned char  c;

    now = time(NULL);
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);

    n = snprintf(line, sizeof(line), "%s zmqd[%d] %s: ", ts, (int) getpid(),
                 level);

    va_start(ap, fmt);
    m = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    if (m < 0) {
        m = 0;
    } else if (m >= (int) sizeof(msg)) {
        m = (int) sizeof(msg) - 1;
    }

    for (i = 0; i < m && n < (int) sizeof(line) - 5; i++) {
        c = (unsigned char) msg[i];
        if (c < 0x20 || c == 0x7f) {
            n += snprintf(line + n, sizeof(line) - n, "\\x%02x", c);
        } else {
            line[n++] = (char) c;
        }
    }

    line[n++] = '\n';

    /* one write per line: the workers of one master share the log */
    if (write(STDERR_FILENO, line, (size_t) n) < 0) {
        /* nowhere to report it */
    }
}


double
zmqd_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


/* ------------------------------------------------------- trace context */


int
zmqd_trace_name(const void *name, size_t len)
{
    if (len == 11 && strncasecmp(name, "traceparent", 11) == 0) {
        return ZMQD_TRACE_PARENT;
    }

    if (len == 10 && strncasecmp(name, "tracestate", 10) == 0) {
        return ZMQD_TRACE_STATE;
    }

    return 0;
}


void
zmqd_trace_get(const amqp_basic_properties_t *p, zmqd_trace_t *t)
{
    int                        i, k, nparent, nstate;
    const amqp_table_entry_t  *e;
    const amqp_field_value_t  *parent, *state;

    t->traceparent = amqp_empty_bytes;
    t->tracestate = amqp_empty_bytes;

    if (p == NULL || !(p->_flags & AMQP_BASIC_HEADERS_FLAG)) {
        return;
    }

    nparent = 0;
    nstate = 0;
    parent = NULL;
    state = NULL;

    for (i = 0; i < p->headers.num_entries; i++) {
        e = &p->headers.entries[i];
        k = zmqd_trace_name(e->key.bytes, e->key.len);

        if (k == ZMQD_TRACE_PARENT) {
            nparent++;
            parent = &e->value;

        } else if (k == ZMQD_TRACE_STATE) {
            nstate++;
            state = &e->value;
        }
    }

    /* as the gateway: one value of the right form, else none */

    if (nparent != 1
        || (parent->kind != AMQP_FIELD_KIND_UTF8
            && parent->kind != AMQP_FIELD_KIND_BYTES)
        || zgw_traceparent_check(parent->value.bytes.bytes,
                                 parent->value.bytes.len)
           != NULL)
    {
        return;
    }

    t->traceparent = parent->value.bytes;

    if (nstate == 1
        && (state->kind == AMQP_FIELD_KIND_UTF8
            || state->kind == AMQP_FIELD_KIND_BYTES)
        && zgw_tracestate_check(state->value.bytes.bytes,
                                state->value.bytes.len)
           == NULL)
    {
        t->tracestate = state->value.bytes;
    }
}


const char *
zmqd_trace_log(const amqp_basic_properties_t *p, char *buf, size_t size)
{
    zmqd_trace_t  t;

    zmqd_trace_get(p, &t);

    if (t.traceparent.len == 0) {
        buf[0] = '\0';
        return buf;
    }

    /* "00-<trace-id>-...": the 32 digits from offset 3 */
    snprintf(buf, size, " (trace=%.32s)", (char *) t.traceparent.bytes + 3);
    return buf;
}


int
zmqd_trace_entries(const amqp_basic_properties_t *p, amqp_table_entry_t *e)
{
    int           n;
    zmqd_trace_t  t;

    zmqd_trace_get(p, &t);

    n = 0;

    if (t.traceparent.len > 0) {
        e[n].key = amqp_cstring_bytes("traceparent");
        e[n].value.kind = AMQP_FIELD_KIND_UTF8;
        e[n].value.value.bytes = t.traceparent;
        n++;
    }

    if (t.tracestate.len > 0) {
        e[n].key = amqp_cstring_bytes("tracestate");
        e[n].value.kind = AMQP_FIELD_KIND_UTF8;
        e[n].value.value.bytes = t.tracestate;
        n++;
    }

    return n;
}
