/*
 * Unit tests: the blocking Redis transport (zgw_redis_conn), plain, against
 * small fake servers on loopback that answer in fragments, stay silent,
 * close, or send what no Redis sends. TLS is tested against redis-server
 * with --tls-port in t/test_tls_zmqd.py.
 */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "zgw_test_util.h"

#include "zgw_redis_conn.h"


#define FAKE_CHUNKS  8


typedef struct {
    int           lfd;
    int           port;
    size_t        want;                 /* bytes read before answering */
    const char   *chunks[FAKE_CHUNKS];  /* then written one by one */
    int           delay_ms;             /* between chunks */
    int           hold_ms;              /* silent, then close */
    char          got[4096];
    size_t        ngot;
    pthread_t     thread;
} fake_t;


static double
now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}


static void *
fake_run(void *arg)
{
    int            fd, i;
    ssize_t        n;
    fake_t        *f = arg;
    struct pollfd  pfd;

    fd = accept(f->lfd, NULL, NULL);
    if (fd < 0) {
        return NULL;
    }

    while (f->ngot < f->want) {
        pfd.fd = fd;
        pfd.events = POLLIN;
        if (poll(&pfd, 1, 3000) != 1) {
            break;
        }
        n = read(fd, f->got + f->ngot, sizeof(f->got) - 1 - f->ngot);
        if (n <= 0) {
            break;
        }
        f->ngot += (size_t) n;
    }

    for (i = 0; i < FAKE_CHUNKS && f->chunks[i] != NULL; i++) {
        if (i > 0 && f->delay_ms) {
            usleep(f->delay_ms * 1000);
        }
        if (send(fd, f->chunks[i], strlen(f->chunks[i]), MSG_NOSIGNAL)
            < 0)
        {
            break;
        }
    }

    if (f->hold_ms) {
        usleep(f->hold_ms * 1000);
    }

    close(fd);
    return NULL;
}


static void
fake_start(fake_t *f)
{
    socklen_t           len;
    struct sockaddr_in  sa;

    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->lfd >= 0);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(sa);

    assert_int_equal(bind(f->lfd, (struct sockaddr *) &sa, sizeof(sa)), 0);
    assert_int_equal(listen(f->lfd, 4), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *) &sa, &len), 0);
    f->port = ntohs(sa.sin_port);

    assert_int_equal(pthread_create(&f->thread, NULL, fake_run, f), 0);
}


static void
fake_stop(fake_t *f)
{
    pthread_join(f->thread, NULL);
    close(f->lfd);
}


static zgw_redis_conn_t *
connect_to(int port, const char *path, int timeout_ms, char *err,
    size_t errlen)
{
    char               url[128];
    zgw_errors_t       errs;
    zgw_redis_addr_t   addr;

    snprintf(url, sizeof(url), "redis://127.0.0.1:%d%s", port, path);
    zgw_errors_init(&errs);
    assert_int_equal(zgw_redis_addr_parse(&addr, url, &errs), ZGW_OK);
    zgw_errors_free(&errs);

    return zgw_redis_connect(&addr, timeout_ms, err, errlen);
}


static void
test_a_reply_in_fragments_is_read_whole(void **state)
{
    char               err[256];
    fake_t             f = { 0 };
    redisReply        *r;
    zgw_redis_conn_t  *c;

    (void) state;

    f.want = strlen("*1\r\n$4\r\nPING\r\n");
    f.chunks[0] = "+";
    f.chunks[1] = "PO";
    f.chunks[2] = "NG\r";
    f.chunks[3] = "\n";
    f.delay_ms = 30;
    fake_start(&f);

    c = connect_to(f.port, "/0", 2000, err, sizeof(err));
    assert_non_null(c);
    assert_null(zgw_redis_tls_version(c));

    r = zgw_redis_command(c, "PING");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    assert_string_equal(r->str, "PONG");
    freeReplyObject(r);

    zgw_redis_close(c);
    fake_stop(&f);
    assert_memory_equal(f.got, "*1\r\n$4\r\nPING\r\n", f.want);
}


static void
test_pipelined_commands_go_out_together_and_replies_come_in_order(
    void **state)
{
    char               err[256];
    fake_t             f = { 0 };
    redisReply        *r;
    const char        *argv[3] = { "SET", "k", "v\0w" };
    const size_t       argvlen[3] = { 3, 1, 3 };
    zgw_redis_conn_t  *c;
    static const char  sent[] = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\0w\r\n"
                                "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
                                "*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n";
    size_t             sent_len = sizeof(sent) - 1;

    (void) state;

    /* the fake answers only once all three arrived */
    f.want = sent_len;
    f.chunks[0] = "+OK\r\n$3\r\nabc\r\n:7\r\n";
    fake_start(&f);

    c = connect_to(f.port, "", 2000, err, sizeof(err));
    assert_non_null(c);

    assert_int_equal(zgw_redis_append_argv(c, 3, argv, argvlen), ZGW_OK);
    assert_int_equal(zgw_redis_append(c, "GET %s", "k"), ZGW_OK);
    assert_int_equal(zgw_redis_append(c, "INCR %b", "n", (size_t) 1),
                     ZGW_OK);

    assert_int_equal(zgw_redis_get_reply(c, &r), ZGW_OK);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    assert_int_equal(zgw_redis_get_reply(c, &r), ZGW_OK);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "abc");
    freeReplyObject(r);
    assert_int_equal(zgw_redis_get_reply(c, &r), ZGW_OK);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 7);
    freeReplyObject(r);

    zgw_redis_close(c);
    fake_stop(&f);
    assert_int_equal(f.ngot, sent_len);
    assert_memory_equal(f.got, sent, sent_len);
}


static void
test_a_silent_server_fails_the_call_at_the_timeout(void **state)
{
    char               err[256];
    double             start, took;
    fake_t             f = { 0 };
    zgw_redis_conn_t  *c;

    (void) state;

    f.want = 1;
    f.hold_ms = 1500;
    fake_start(&f);

    c = connect_to(f.port, "", 300, err, sizeof(err));
    assert_non_null(c);

    start = now_ms();
    assert_null(zgw_redis_command(c, "GET zmq:version"));
    took = now_ms() - start;
    assert_true(took >= 290 && took < 1200);
    assert_string_equal(zgw_redis_error(c), "no answer within 300 ms");

    /* broken for good: the next call fails at once, with the same reason */
    start = now_ms();
    assert_null(zgw_redis_command(c, "PING"));
    assert_true(now_ms() - start < 50);
    assert_string_equal(zgw_redis_error(c), "no answer within 300 ms");

    zgw_redis_close(c);
    fake_stop(&f);
}


static void
test_a_server_that_closes_is_an_error(void **state)
{
    char               err[256];
    fake_t             f = { 0 };
    zgw_redis_conn_t  *c;

    (void) state;

    f.want = 1;
    f.chunks[0] = "$10\r\nonly";          /* half a reply, then EOF */
    fake_start(&f);

    c = connect_to(f.port, "", 2000, err, sizeof(err));
    assert_non_null(c);
    assert_null(zgw_redis_command(c, "GET k"));
    assert_string_equal(zgw_redis_error(c), "Server closed the connection");

    zgw_redis_close(c);
    fake_stop(&f);
}


static void
test_a_huge_array_is_refused_before_allocating(void **state)
{
    char               err[256];
    fake_t             f = { 0 };
    zgw_redis_conn_t  *c;

    (void) state;

    f.want = 1;
    f.chunks[0] = "*2000000000\r\n";
    f.hold_ms = 200;
    fake_start(&f);

    c = connect_to(f.port, "", 2000, err, sizeof(err));
    assert_non_null(c);
    assert_null(zgw_redis_command(c, "KEYS *"));
    assert_non_null(zgw_redis_error(c));
    assert_string_equal(zgw_redis_error(c), "Out of memory");

    zgw_redis_close(c);
    fake_stop(&f);
}


static void
test_a_trickling_server_fails_the_call_at_the_timeout(void **state)
{
    char               err[256];
    double             start, took;
    fake_t             f = { 0 };
    zgw_redis_conn_t  *c;

    (void) state;

    /* a byte every 100 ms: each wait is short, the reply never ends */
    f.want = 1;
    f.chunks[0] = "$1000\r\n";
    f.chunks[1] = f.chunks[2] = f.chunks[3] = f.chunks[4] = "a";
    f.chunks[5] = f.chunks[6] = f.chunks[7] = "a";
    f.delay_ms = 100;
    f.hold_ms = 500;
    fake_start(&f);

    c = connect_to(f.port, "", 300, err, sizeof(err));
    assert_non_null(c);

    start = now_ms();
    assert_null(zgw_redis_command(c, "GET k"));
    took = now_ms() - start;
    assert_true(took >= 290 && took < 700);
    assert_non_null(zgw_redis_error(c));
    assert_true(strncmp(zgw_redis_error(c), "no complete answer within "
                        "300 ms (", 34) == 0);

    zgw_redis_close(c);
    fake_stop(&f);
}


static void
test_a_pipeline_shares_one_deadline(void **state)
{
    char               err[256];
    redisReply        *r;
    fake_t             f = { 0 };
    zgw_redis_conn_t  *c;

    (void) state;

    /* three replies, 200 ms apart: the third comes after 400 ms */
    f.want = 3 * 14;
    f.chunks[0] = "+OK\r\n";
    f.chunks[1] = "+OK\r\n";
    f.chunks[2] = "+OK\r\n";
    f.delay_ms = 200;
    f.hold_ms = 300;
    fake_start(&f);

    c = connect_to(f.port, "", 300, err, sizeof(err));
    assert_non_null(c);

    assert_int_equal(zgw_redis_append(c, "PING"), ZGW_OK);
    assert_int_equal(zgw_redis_append(c, "PING"), ZGW_OK);
    assert_int_equal(zgw_redis_append(c, "PING"), ZGW_OK);
    assert_int_equal(zgw_redis_get_reply(c, &r), ZGW_OK);
    freeReplyObject(r);
    assert_int_equal(zgw_redis_get_reply(c, &r), ZGW_OK);
    freeReplyObject(r);
    assert_int_equal(zgw_redis_get_reply(c, &r), ZGW_ERROR);
    assert_string_equal(zgw_redis_error(c), "no complete answer within "
                                            "300 ms (10 bytes came)");

    zgw_redis_close(c);
    fake_stop(&f);
}


static void
test_an_endless_bulk_is_refused_at_the_bound(void **state)
{
    char               err[256], big[2100];
    fake_t             f = { 0 };
    zgw_redis_conn_t  *c;

    (void) state;

    /* announced: refused before its bytes come */
    f.want = 1;
    f.chunks[0] = "$999999999\r\n";
    f.hold_ms = 1000;
    fake_start(&f);

    c = connect_to(f.port, "", 2000, err, sizeof(err));
    assert_non_null(c);
    assert_null(zgw_redis_command(c, "GET k"));
    assert_string_equal(zgw_redis_error(c), "reply too large: a bulk string "
                        "of 999999999 bytes (the bound is 67108864)");
    zgw_redis_close(c);
    fake_stop(&f);

    /* 2 KB in one read, over a lowered bound of 2 KB */
    memset(&f, 0, sizeof(f));
    memset(big, 'x', sizeof(big) - 1);
    big[0] = '+';
    big[sizeof(big) - 1] = '\0';
    f.want = 1;
    f.chunks[0] = big;
    f.hold_ms = 1000;
    fake_start(&f);

    c = connect_to(f.port, "", 2000, err, sizeof(err));
    assert_non_null(c);
    zgw_redis_set_max_buffer(c, 2048);
    assert_null(zgw_redis_command(c, "GET k"));
    assert_string_equal(zgw_redis_error(c), "reply too large: 2098 bytes "
                        "unparsed (the bound is 2048)");
    zgw_redis_close(c);
    fake_stop(&f);
}


static void
test_what_redis_never_sends_is_a_protocol_error(void **state)
{
    char               err[256];
    fake_t             f = { 0 };
    zgw_redis_conn_t  *c;

    (void) state;

    f.want = 1;
    f.chunks[0] = "HTTP/1.1 400 Bad Request\r\n";
    f.hold_ms = 200;
    fake_start(&f);

    c = connect_to(f.port, "", 2000, err, sizeof(err));
    assert_non_null(c);
    assert_null(zgw_redis_command(c, "PING"));
    assert_non_null(strstr(zgw_redis_error(c), "Protocol error"));

    zgw_redis_close(c);
    fake_stop(&f);
}


static void
test_auth_and_select_go_first_and_a_refusal_fails_the_connect(void **state)
{
    char               url[128], err[256];
    fake_t             f = { 0 };
    zgw_errors_t       errs;
    zgw_redis_addr_t   addr;
    zgw_redis_conn_t  *c;
    const char        *sent = "*3\r\n$4\r\nAUTH\r\n$2\r\nu1\r\n$3\r\np:w\r\n"
                              "*2\r\n$6\r\nSELECT\r\n$2\r\n99\r\n";

    (void) state;

    f.want = strlen(sent);
    f.chunks[0] = "+OK\r\n-ERR DB index is out of range\r\n";
    fake_start(&f);

    snprintf(url, sizeof(url), "redis://u1:p:w@127.0.0.1:%d/99", f.port);
    zgw_errors_init(&errs);
    assert_int_equal(zgw_redis_addr_parse(&addr, url, &errs), ZGW_OK);
    zgw_errors_free(&errs);

    c = zgw_redis_connect(&addr, 2000, err, sizeof(err));
    assert_null(c);
    assert_string_equal(err, "SELECT: ERR DB index is out of range");

    fake_stop(&f);
    assert_int_equal(f.ngot, strlen(sent));
    assert_memory_equal(f.got, sent, strlen(sent));
}


static void
test_a_closed_port_is_refused(void **state)
{
    char               err[256];
    fake_t             f = { 0 };
    zgw_redis_conn_t  *c;

    (void) state;

    /* a port that was listening a moment ago */
    f.lfd = -1;
    {
        socklen_t           len;
        struct sockaddr_in  sa;
        int                 fd = socket(AF_INET, SOCK_STREAM, 0);

        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(sa);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
        f.port = ntohs(sa.sin_port);
        close(fd);
    }

    c = connect_to(f.port, "", 2000, err, sizeof(err));
    assert_null(c);
    assert_string_equal(err, "cannot connect: Connection refused");
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_reply_in_fragments_is_read_whole),
        cmocka_unit_test(
            test_pipelined_commands_go_out_together_and_replies_come_in_order),
        cmocka_unit_test(test_a_silent_server_fails_the_call_at_the_timeout),
        cmocka_unit_test(test_a_server_that_closes_is_an_error),
        cmocka_unit_test(test_a_huge_array_is_refused_before_allocating),
        cmocka_unit_test(
            test_a_trickling_server_fails_the_call_at_the_timeout),
        cmocka_unit_test(test_a_pipeline_shares_one_deadline),
        cmocka_unit_test(test_an_endless_bulk_is_refused_at_the_bound),
        cmocka_unit_test(test_what_redis_never_sends_is_a_protocol_error),
        cmocka_unit_test(test_auth_and_select_go_first_and_a_refusal_fails_the_connect),
        cmocka_unit_test(test_a_closed_port_is_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
