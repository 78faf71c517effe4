/*
 * Unit tests: the Redis store, against a real redis-server started on a
 * free loopback port in a temporary directory (skipped when redis-server
 * is not installed).
 */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "zgw_test_util.h"

#include "zgw_store.h"


static char    tmpdir[] = "/tmp/zgw-store-XXXXXX";
static char    url[64];
static int     port;
static pid_t   redis_pid = -1;


#define DOC \
    "{\"amqp_def\":[{\"name\":\"crm\",\"password\":\"guest\"}]," \
    "\"amqp_outconn\":[{\"name\":\"crm.out\",\"def\":\"crm\"}]," \
    "\"service\":[{\"name\":\"pub\",\"kind\":\"publish\"," \
    "\"outconn\":\"crm.out\"}]}"


static int
free_port(void)
{
    int                 fd, p;
    socklen_t           len;
    struct sockaddr_in  sa;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(sa);

    if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0
        || getsockname(fd, (struct sockaddr *) &sa, &len) != 0)
    {
        return -1;
    }

    p = ntohs(sa.sin_port);
    close(fd);
    return p;
}


static redisContext *
raw_connect(void)
{
    struct timeval  tv = { 2, 0 };

    return redisConnectWithTimeout("127.0.0.1", port, tv);
}


static zgw_config_t *
load_text(const char *text)
{
    zgw_errors_t   errs;
    zgw_config_t  *cfg;

    cfg = zgw_config_new();
    zgw_errors_init(&errs);
    if (zgw_config_load_text(cfg, text, strlen(text), NULL, 0, &errs)
        != ZGW_OK)
    {
        zgw_test_print_errors(&errs);
        fail();
    }
    zgw_errors_free(&errs);
    return cfg;
}


static zgw_config_t *
load_store(zgw_store_t *st)
{
    zgw_errors_t   errs;
    zgw_config_t  *cfg;

    cfg = zgw_config_new();
    zgw_errors_init(&errs);
    if (zgw_store_load(st, cfg, &errs) != ZGW_OK) {
        zgw_test_print_errors(&errs);
        fail();
    }
    zgw_errors_free(&errs);
    return cfg;
}


static void
flush(void)
{
    redisContext  *c;

    c = raw_connect();
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    redisFree(c);
}


static void
test_write_then_load(void **state)
{
    size_t         changes;
    json_t        *obj;
    zgw_key_t      key;
    long long      version;
    redisReply    *r;
    zgw_store_t   *st;
    redisContext  *c;
    zgw_errors_t   errs;
    zgw_config_t  *empty, *next, *loaded;

    (void) state;
    flush();
    memset(key.bytes, 1, sizeof(key.bytes));
    zgw_errors_init(&errs);

    st = zgw_store_connect(url, 2000, &errs);
    assert_non_null(st);

    empty = load_store(st);
    assert_int_equal(empty->version, 0);
    assert_int_equal(zgw_config_total(empty), 0);

    next = load_text(DOC);
    assert_int_equal(zgw_config_seal(next, empty, &key, &errs), ZGW_OK);
    assert_int_equal(zgw_store_apply(st, empty, next, 0, &version, &changes,
                                     &errs), ZGW_OK);
    assert_int_equal(changes, 3);
    assert_int_equal(version, 3);

    /* the layout: one key per object, an index per kind, the version */
    c = raw_connect();
    r = redisCommand(c, "SMEMBERS zmq:index:amqp_def");
    assert_int_equal(r->elements, 1);
    assert_string_equal(r->element[0]->str, "crm");
    freeReplyObject(r);
    r = redisCommand(c, "GET zmq:obj:amqp_def:crm");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    /* the password is sealed, never in clear */
    assert_null(strstr(r->str, "\"password\":\"guest\""));
    assert_non_null(strstr(r->str, "$sealed"));
    freeReplyObject(r);
    r = redisCommand(c, "GET zmq:version");
    assert_string_equal(r->str, "3");
    freeReplyObject(r);
    redisFree(c);

    loaded = load_store(st);
    assert_int_equal(loaded->version, 3);
    assert_int_equal(zgw_config_total(loaded), 3);
    obj = zgw_config_get(loaded, ZGW_KIND_SERVICE, "pub");
    assert_non_null(obj);
    assert_string_equal(json_string_value(json_object_get(obj, "outconn")),
                        "crm.out");

    /* the same configuration again changes nothing */
    assert_int_equal(zgw_store_apply(st, loaded, next, 0, &version,
                                     &changes, &errs), ZGW_OK);
    assert_int_equal(changes, 0);
    assert_int_equal(version, 3);

    zgw_config_free(empty);
    zgw_config_free(next);
    zgw_config_free(loaded);
    zgw_store_close(st);
    zgw_errors_free(&errs);
}


/* every write records the version it wrote each object at (the ETag) */
static void
test_objects_carry_their_versions(void **state)
{
    long long      version;
    zgw_key_t      key;
    zgw_store_t   *st;
    zgw_errors_t   errs;
    redisReply    *r;
    redisContext  *c;
    zgw_config_t  *empty, *next, *loaded, *again, *replaced;

    (void) state;
    flush();
    memset(key.bytes, 1, sizeof(key.bytes));
    zgw_errors_init(&errs);

    st = zgw_store_connect(url, 2000, &errs);
    assert_non_null(st);

    empty = load_store(st);
    next = load_text(DOC);
    assert_int_equal(zgw_config_seal(next, empty, &key, &errs), ZGW_OK);
    assert_int_equal(zgw_store_apply(st, empty, next, 0, &version, NULL,
                                     &errs), ZGW_OK);
    assert_int_equal(version, 3);

    /* three changes, three versions, in the order they were written */
    loaded = load_store(st);
    assert_int_equal(zgw_config_object_version(loaded, ZGW_KIND_AMQP_DEF,
                                               "crm"), 1);
    assert_int_equal(zgw_config_object_version(loaded,
                                               ZGW_KIND_AMQP_OUTCONN,
                                               "crm.out"), 2);
    assert_int_equal(zgw_config_object_version(loaded, ZGW_KIND_SERVICE,
                                               "pub"), 3);
    assert_int_equal(zgw_config_object_version(loaded, ZGW_KIND_SERVICE,
                                               "nope"), 0);

    /* a change moves only the changed object's version; a delete drops it */
    zgw_config_free(next);
    next = zgw_config_copy(loaded);
    json_object_set_new(zgw_config_get(next, ZGW_KIND_SERVICE, "pub"),
                        "routing_key", json_string("changed"));
    assert_int_equal(zgw_store_apply(st, loaded, next, 0, &version, NULL,
                                     &errs), ZGW_OK);
    assert_int_equal(version, 4);

    again = load_store(st);
    assert_int_equal(zgw_config_object_version(again, ZGW_KIND_SERVICE,
                                               "pub"), 4);
    assert_int_equal(zgw_config_object_version(again, ZGW_KIND_AMQP_DEF,
                                               "crm"), 1);

    /* a copy keeps them */
    zgw_config_free(next);
    next = zgw_config_copy(again);
    assert_int_equal(zgw_config_object_version(next, ZGW_KIND_SERVICE,
                                               "pub"), 4);

    /* replace: what it writes gets the new version, deletes drop theirs */
    assert_int_equal(zgw_config_delete(next, ZGW_KIND_SERVICE, "pub"),
                     ZGW_OK);
    assert_int_equal(zgw_config_object_version(next, ZGW_KIND_SERVICE,
                                               "pub"), 0);
    json_object_set_new(zgw_config_get(next, ZGW_KIND_AMQP_OUTCONN,
                                       "crm.out"),
                        "app_id", json_string("other"));
    assert_int_equal(zgw_store_replace(st, again, next, 10, "import",
                                       &version, NULL, &errs), ZGW_OK);
    assert_int_equal(version, 10);

    replaced = load_store(st);
    assert_int_equal(zgw_config_object_version(replaced,
                                               ZGW_KIND_AMQP_OUTCONN,
                                               "crm.out"), 10);
    assert_int_equal(zgw_config_object_version(replaced, ZGW_KIND_AMQP_DEF,
                                               "crm"), 1);

    c = raw_connect();
    r = redisCommand(c, "HEXISTS zmq:objver service:pub");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    redisFree(c);

    zgw_config_free(empty);
    zgw_config_free(next);
    zgw_config_free(loaded);
    zgw_config_free(again);
    zgw_config_free(replaced);
    zgw_store_close(st);
    zgw_errors_free(&errs);
}


static void
test_events_are_published(void **state)
{
    long long      version;
    redisReply    *r;
    zgw_store_t   *st;
    redisContext  *sub;
    zgw_errors_t   errs;
    zgw_config_t  *prev, *next;

    (void) state;
    flush();
    zgw_errors_init(&errs);

    sub = raw_connect();
    freeReplyObject(redisCommand(sub, "SUBSCRIBE zmq:events"));

    st = zgw_store_connect(url, 2000, &errs);
    prev = load_store(st);
    next = load_text("{\"service\":[{\"name\":\"s\",\"kind\":\"redis\","
                     "\"key\":\"k\"}]}");

    assert_int_equal(zgw_store_apply(st, prev, next, 0, &version, NULL,
                                     &errs), ZGW_OK);
    assert_int_equal(version, 1);

    assert_int_equal(redisGetReply(sub, (void **) &r), REDIS_OK);
    assert_int_equal(r->elements, 3);
    assert_string_equal(r->element[0]->str, "message");
    assert_string_equal(r->element[1]->str, "zmq:events");
    assert_string_equal(r->element[2]->str,
                        "{\"version\":1,\"kind\":\"service\",\"name\":\"s\","
                        "\"op\":\"put\"}");
    freeReplyObject(r);

    /* delete */
    zgw_config_free(prev);
    prev = load_store(st);
    zgw_config_delete(next, ZGW_KIND_SERVICE, "s");
    assert_int_equal(zgw_store_apply(st, prev, next, 0, &version, NULL,
                                     &errs), ZGW_OK);
    assert_int_equal(version, 2);

    assert_int_equal(redisGetReply(sub, (void **) &r), REDIS_OK);
    assert_string_equal(r->element[2]->str,
                        "{\"version\":2,\"kind\":\"service\",\"name\":\"s\","
                        "\"op\":\"delete\"}");
    freeReplyObject(r);

    zgw_config_free(prev);
    prev = load_store(st);
    assert_int_equal(zgw_config_total(prev), 0);

    redisFree(sub);
    zgw_config_free(prev);
    zgw_config_free(next);
    zgw_store_close(st);
    zgw_errors_free(&errs);
}


static void
test_concurrent_change_is_refused(void **state)
{
    long long      version;
    redisReply    *r;
    zgw_store_t   *st;
    redisContext  *c;
    zgw_errors_t   errs;
    zgw_config_t  *prev, *next;

    (void) state;
    flush();
    zgw_errors_init(&errs);

    st = zgw_store_connect(url, 2000, &errs);
    prev = load_store(st);
    next = load_text("{\"service\":[{\"name\":\"s\",\"kind\":\"redis\","
                     "\"key\":\"k\"}]}");

    /* someone else writes between our load and our write */
    c = raw_connect();
    freeReplyObject(redisCommand(c, "INCR zmq:version"));

    assert_int_equal(zgw_store_apply(st, prev, next, 0, &version, NULL,
                                     &errs), ZGW_ERROR);
    assert_true(zgw_test_errors_have(&errs, "CONFLICT"));

    /* and nothing was written */
    r = redisCommand(c, "EXISTS zmq:obj:service:s");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    r = redisCommand(c, "GET zmq:version");
    assert_string_equal(r->str, "1");
    freeReplyObject(r);

    redisFree(c);
    zgw_config_free(prev);
    zgw_config_free(next);
    zgw_store_close(st);
    zgw_errors_free(&errs);
}


static void
test_corrupt_object_is_named(void **state)
{
    redisContext  *c;
    zgw_store_t   *st;
    zgw_errors_t   errs;
    zgw_config_t  *cfg;

    (void) state;
    flush();
    zgw_errors_init(&errs);

    c = raw_connect();
    freeReplyObject(redisCommand(c, "SET zmq:obj:service:bad {oops"));
    freeReplyObject(redisCommand(c, "SADD zmq:index:service bad good"));
    freeReplyObject(redisCommand(c, "SET zmq:obj:service:good %s",
                                 "{\"name\":\"good\",\"kind\":\"redis\","
                                 "\"key\":\"k\"}"));
    redisFree(c);

    st = zgw_store_connect(url, 2000, &errs);
    cfg = zgw_config_new();

    assert_int_equal(zgw_store_load(st, cfg, &errs), ZGW_ERROR);
    assert_true(zgw_test_errors_have(&errs, "zmq:obj:service:bad: invalid "
                                            "JSON"));
    assert_non_null(zgw_config_get(cfg, ZGW_KIND_SERVICE, "good"));
    assert_null(zgw_config_get(cfg, ZGW_KIND_SERVICE, "bad"));

    zgw_config_free(cfg);
    zgw_store_close(st);
    zgw_errors_free(&errs);
}


static void
test_unreachable_redis_is_an_error(void **state)
{
    char           bad[64];
    zgw_store_t   *st;
    zgw_errors_t   errs;

    (void) state;
    zgw_errors_init(&errs);
    snprintf(bad, sizeof(bad), "redis://127.0.0.1:%d/0", free_port());

    st = zgw_store_connect(bad, 1000, &errs);
    assert_null(st);
    assert_true(zgw_test_errors_have(&errs, "cannot connect"));

    zgw_errors_free(&errs);
}


static void
test_redis_urls(void **state)
{
    zgw_errors_t      errs;
    zgw_redis_addr_t  a;

    (void) state;
    zgw_errors_init(&errs);

    assert_int_equal(zgw_redis_addr_parse(&a, "redis://h:1234/5", &errs),
                     ZGW_OK);
    assert_string_equal(a.host, "h");
    assert_int_equal(a.port, 1234);
    assert_int_equal(a.db, 5);

    assert_int_equal(zgw_redis_addr_parse(&a, "redis://:pw@h", &errs),
                     ZGW_OK);
    assert_string_equal(a.password, "pw");
    assert_int_equal(a.port, 6379);

    assert_int_equal(zgw_redis_addr_parse(&a, "127.0.0.1:7000", &errs),
                     ZGW_OK);
    assert_int_equal(a.port, 7000);

    assert_int_equal(zgw_redis_addr_parse(&a, "http://h", &errs), ZGW_ERROR);
    assert_int_equal(zgw_redis_addr_parse(&a, "redis://h:0", &errs),
                     ZGW_ERROR);
    assert_int_equal(zgw_redis_addr_parse(&a, "redis://h/x", &errs),
                     ZGW_ERROR);

    zgw_errors_free(&errs);
}


static int
setup(void **state)
{
    int            i;
    char           portarg[16];
    redisContext  *c;

    (void) state;

    if (access("/usr/bin/redis-server", X_OK) != 0) {
        return 0;
    }

    if (mkdtemp(tmpdir) == NULL) {
        return -1;
    }

    port = free_port();
    snprintf(portarg, sizeof(portarg), "%d", port);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", port);

    redis_pid = fork();
    if (redis_pid == 0) {
        execl("/usr/bin/redis-server", "redis-server", "--port", portarg,
              "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
              "--dir", tmpdir, "--logfile", "/dev/null", "--loglevel", "warning",
              (char *) NULL);
        _exit(127);
    }

    for (i = 0; i < 100; i++) {
        c = raw_connect();
        if (c != NULL && !c->err) {
            redisFree(c);
            return 0;
        }
        if (c != NULL) {
            redisFree(c);
        }
        usleep(50000);
    }

    return -1;
}


static int
teardown(void **state)
{
    char  cmd[128];

    (void) state;

    if (redis_pid > 0) {
        kill(redis_pid, SIGTERM);
        waitpid(redis_pid, NULL, 0);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
        if (system(cmd) != 0) {
            return -1;
        }
    }

    return 0;
}


static int
need_redis(void **state)
{
    (void) state;

    if (redis_pid <= 0) {
        print_message("redis-server is not installed\n");
        skip();
    }

    return 0;
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test_setup(test_write_then_load, need_redis),
        cmocka_unit_test_setup(test_objects_carry_their_versions,
                               need_redis),
        cmocka_unit_test_setup(test_events_are_published, need_redis),
        cmocka_unit_test_setup(test_concurrent_change_is_refused,
                               need_redis),
        cmocka_unit_test_setup(test_corrupt_object_is_named, need_redis),
        cmocka_unit_test(test_unreachable_redis_is_an_error),
        cmocka_unit_test(test_redis_urls),
    };

    return cmocka_run_group_tests_name("store", tests, setup, teardown);
}
