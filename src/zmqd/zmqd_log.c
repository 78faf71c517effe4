/*
 * zmqd: the log and the clock, used by every part of zmqd.
 */

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

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
