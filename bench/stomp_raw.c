/*
 * bench/stomp_raw: the baseline for bench/stomp. A plain STOMP 1.2
 * publisher on a blocking socket: SENDs with a receipt header each,
 * pipelined, up to WINDOW without their RECEIPT, written in one write()
 * per batch.
 *
 *     stomp_raw HOST PORT DESTINATION SECONDS SIZE WINDOW [COUNT]
 *
 * With COUNT it stops after COUNT messages.
 *
 * Prints "rate=<msg/s> p50_ms=<x> p99_ms=<y> confirmed=<n>", the latencies
 * from a SEND's write to its RECEIPT. An ERROR frame ends it with exit 1.
 *
 * It sends what the gateway sends for the benchmark's requests (a
 * stomp_def without use_jms): destination, receipt, content-length,
 * content-type, persistent:true and a 36-character amqp-message-id unique
 * per message, so the broker's work per message is the same.
 */

#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>


static double
now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}


static int
cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return (x > y) - (x < y);
}


static void
die(const char *what)
{
    fprintf(stderr, "stomp_raw: %s: %s\n", what,
            errno ? strerror(errno) : "failed");
    exit(1);
}


static void
write_all(int fd, const char *p, size_t n)
{
    ssize_t  w;

    while (n > 0) {
        w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("write");
        }
        p += w;
        n -= (size_t) w;
    }
}


/* the input: frames end with NUL; heart-beat newlines between them */
static char    *in;
static size_t   in_len, in_size;


static char *
next_frame(int fd, int block)
{
    char     *nul;
    size_t    start;
    ssize_t   r;

    for ( ;; ) {
        start = 0;
        while (start < in_len && (in[start] == '\n' || in[start] == '\r')) {
            start++;
        }
        if (start > 0) {
            memmove(in, in + start, in_len - start);
            in_len -= start;
        }

        nul = memchr(in, '\0', in_len);
        if (nul != NULL) {
            return nul;
        }

        if (!block) {
            return NULL;
        }

        if (in_len == in_size) {
            in_size *= 2;
            in = realloc(in, in_size);
            if (in == NULL) {
                die("realloc");
            }
        }

        r = read(fd, in + in_len, in_size - in_len);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            errno = r == 0 ? 0 : errno;
            die(r == 0 ? "closed by the broker" : "read");
        }
        in_len += (size_t) r;
    }
}


static void
drop_frame(char *nul)
{
    size_t  n = (size_t) (nul + 1 - in);

    memmove(in, in + n, in_len - n);
    in_len -= n;
}


int
main(int argc, char **argv)
{
    int               fd, one, rc;
    char             *out, *body, *nul, *h;
    double            start, end, t, last, *sent_at, *lat;
    size_t            out_len, out_size, size, window, cap;
    uint64_t          seq, confirmed, count, outstanding, id;
    struct addrinfo   hints, *ai;

    if (argc < 7) {
        fprintf(stderr, "usage: stomp_raw HOST PORT DESTINATION SECONDS "
                        "SIZE WINDOW [COUNT]\n");
        return 2;
    }

    size = (size_t) atol(argv[5]);
    window = (size_t) atol(argv[6]);
    count = argc > 7 ? (uint64_t) atoll(argv[7]) : 0;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(argv[1], argv[2], &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "stomp_raw: %s\n", gai_strerror(rc));
        return 1;
    }

    fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        die("connect");
    }
    freeaddrinfo(ai);

    one = 1;
    (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    in_size = 65536;
    in = malloc(in_size);
    out_size = window * (size + 512) + 4096;
    out = malloc(out_size);
    body = malloc(size + 1);
    cap = 1 << 20;
    sent_at = malloc(cap * sizeof(double));
    lat = malloc(cap * sizeof(double));
    if (in == NULL || out == NULL || body == NULL || sent_at == NULL
        || lat == NULL)
    {
        die("malloc");
    }
    memset(body, 'x', size);

    h = "CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n";
    write_all(fd, h, strlen(h) + 1);
    nul = next_frame(fd, 1);
    if (strncmp(in, "CONNECTED\n", 10) != 0) {
        fprintf(stderr, "stomp_raw: CONNECT refused: %.*s\n",
                (int) (nul - in), in);
        return 1;
    }
    drop_frame(nul);

    seq = confirmed = outstanding = 0;
    start = now_ms();
    end = start + atof(argv[4]) * 1000.0;
    last = start;

    for ( ;; ) {
        t = now_ms();
        out_len = 0;

        while (t < end && outstanding < window
               && (count == 0 || seq < count))
        {
            if (seq == cap) {
                cap *= 2;
                sent_at = realloc(sent_at, cap * sizeof(double));
                lat = realloc(lat, cap * sizeof(double));
                if (sent_at == NULL || lat == NULL) {
                    die("realloc");
                }
            }

            id = seq;
            out_len += (size_t) snprintf(out + out_len, out_size - out_len,
                "SEND\ndestination:%s\nreceipt:%llu\ncontent-length:%zu\n"
                "content-type:text/plain\npersistent:true\n"
                "amqp-message-id:%08x-0000-4000-8000-%012llx\n\n",
                argv[3], (unsigned long long) id, size,
                (unsigned) getpid(), (unsigned long long) id);
            memcpy(out + out_len, body, size);
            out_len += size;
            out[out_len++] = '\0';

            sent_at[seq++] = t;
            outstanding++;
        }

        if (out_len > 0) {
            write_all(fd, out, out_len);
        }

        if (outstanding == 0) {
            break;
        }

        /* one blocking read, then every whole frame it brought */
        nul = next_frame(fd, 1);

        while (nul != NULL) {
            if (strncmp(in, "RECEIPT\n", 8) == 0) {
                h = strstr(in, "\nreceipt-id:");
                if (h == NULL || h > nul) {
                    fprintf(stderr, "stomp_raw: a RECEIPT without id\n");
                    return 1;
                }
                id = strtoull(h + 12, NULL, 10);
                t = now_ms();
                if (id < seq) {
                    lat[confirmed] = t - sent_at[id];
                }
                confirmed++;
                outstanding--;
                last = t;

            } else {
                fprintf(stderr, "stomp_raw: %.*s\n", (int) (nul - in), in);
                return 1;
            }

            drop_frame(nul);
            nul = next_frame(fd, 0);
        }
    }

    qsort(lat, confirmed, sizeof(double), cmp_double);
    printf("rate=%.0f p50_ms=%.2f p99_ms=%.2f confirmed=%llu\n",
           confirmed / ((last - start) / 1000.0),
           confirmed ? lat[confirmed / 2] : 0.0,
           confirmed ? lat[(size_t) (confirmed * 0.99)] : 0.0,
           (unsigned long long) confirmed);

    h = "DISCONNECT\n\n";
    write_all(fd, h, strlen(h) + 1);
    close(fd);

    return 0;
}
