
/*
 * ngx_zmq fuzzing inside Debian's nginx: the module that runs libFuzzer,
 * fake sockets, and what the event loop does. See ngx_fuzz.h.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>

#include "ngx_fuzz.h"


int LLVMFuzzerRunDriver(int *argc, char ***argv,
    int (*cb)(const uint8_t *data, size_t size));
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));


static ngx_int_t ngx_fuzz_init_process(ngx_cycle_t *cycle);
static void ngx_fuzz_log_writer(ngx_log_t *log, ngx_uint_t level,
    u_char *buf, size_t len);


ngx_fuzz_peer_t   ngx_fuzz_peer;
ngx_log_t        *ngx_fuzz_log;

static ngx_log_t  ngx_fuzz_log_copy;
static ngx_uint_t ngx_fuzz_verbose;


static ngx_core_module_t  ngx_fuzz_module_ctx = {
    ngx_string("zmq_fuzz"),
    NULL,
    NULL
};


ngx_module_t  ngx_zmq_fuzz_module = {
    NGX_MODULE_V1,
    &ngx_fuzz_module_ctx,                  /* module context */
    NULL,                                  /* module directives */
    NGX_CORE_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_fuzz_init_process,                 /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* what a dynamic module exports for ngx_load_module() */

ngx_module_t *ngx_modules[] = {
    &ngx_zmq_fuzz_module,
    NULL
};

char *ngx_module_names[] = {
    "ngx_zmq_fuzz_module",
    NULL
};

char *ngx_module_order[] = {
    NULL
};


/*
 * Runs libFuzzer with the arguments in ZMQ_FUZZ_ARGS (split at spaces) and
 * exits with its status: nginx never gets to its event loop.
 */

static ngx_int_t
ngx_fuzz_init_process(ngx_cycle_t *cycle)
{
    int     argc;
    char   *args, *p, **argv, *verbose;

    ngx_fuzz_log_copy = *cycle->log;
    ngx_fuzz_log_copy.next = NULL;
    ngx_fuzz_log_copy.writer = ngx_fuzz_log_writer;
    ngx_fuzz_log_copy.log_level = NGX_LOG_ALERT;
    ngx_fuzz_log = &ngx_fuzz_log_copy;

    verbose = getenv("ZMQ_FUZZ_VERBOSE");
    if (verbose != NULL && verbose[0] != '\0' && verbose[0] != '0') {
        ngx_fuzz_verbose = 1;
        ngx_fuzz_log_copy.log_level = NGX_LOG_DEBUG;
    }

    p = getenv("ZMQ_FUZZ_ARGS");
    args = strdup(p ? p : "");
    argv = calloc(strlen(args) + 2, sizeof(char *));
    if (args == NULL || argv == NULL) {
        exit(2);
    }

    argc = 0;
    argv[argc++] = "ngx_zmq_fuzz";

    for (p = strtok(args, " "); p != NULL; p = strtok(NULL, " ")) {
        argv[argc++] = p;
    }

    argv[argc] = NULL;

    /*
     * nginx's signal handlers only set flags for its event loop, which
     * never runs here, and libFuzzer keeps a handler it finds installed:
     * give the signals back their defaults (a timeout is SIGALRM, ^C is
     * SIGINT), so that libFuzzer installs its own and a stop stops
     */
    signal(SIGALRM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGQUIT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGUSR1, SIG_DFL);
    signal(SIGUSR2, SIG_DFL);
    signal(SIGWINCH, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGIO, SIG_DFL);

    if (LLVMFuzzerInitialize) {
        LLVMFuzzerInitialize(&argc, &argv);
    }

    exit(LLVMFuzzerRunDriver(&argc, &argv, LLVMFuzzerTestOneInput));
}


/* "[alert]" is the level for what cannot happen: it ends the run */

static void
ngx_fuzz_log_writer(ngx_log_t *log, ngx_uint_t level, u_char *buf,
    size_t len)
{
    if (ngx_fuzz_verbose || level <= NGX_LOG_ALERT) {
        fprintf(stderr, "%.*s\n", (int) len, buf);
    }

    if (level <= NGX_LOG_ALERT) {
        ngx_fuzz_fail("logged at [alert] or above: %*s", len, buf);
    }
}


/* NGINX's formats (%V, %ui, %*s with a size_t length) */
void
ngx_fuzz_fail(const char *fmt, ...)
{
    u_char   *p;
    va_list   args;
    u_char    text[2048];

    va_start(args, fmt);
    p = ngx_vslprintf(text, text + sizeof(text), fmt, args);
    va_end(args);

    fprintf(stderr, "ngx_zmq_fuzz: %.*s\n", (int) (p - text), text);
    abort();
}


/* ----------------------------------------------------------- pools */

static void
ngx_fuzz_free(void *data)
{
    free(data);
}


void *
ngx_fuzz_palloc(ngx_pool_t *pool, size_t size)
{
    void                *p;
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    p = malloc(size ? size : 1);
    if (p == NULL) {
        return NULL;
    }

    cln->handler = ngx_fuzz_free;
    cln->data = p;

    return p;
}


void *
ngx_fuzz_pcalloc(ngx_pool_t *pool, size_t size)
{
    void  *p;

    p = ngx_fuzz_palloc(pool, size);
    if (p != NULL) {
        ngx_memzero(p, size);
    }

    return p;
}


/* --------------------------------------------------------- sockets */

static ssize_t
ngx_fuzz_recv(ngx_connection_t *c, u_char *buf, size_t size)
{
    size_t  n;

    if (ngx_fuzz_peer.in_len > 0) {
        n = ngx_min(size, ngx_fuzz_peer.in_len);
        ngx_memcpy(buf, ngx_fuzz_peer.in, n);
        ngx_fuzz_peer.in += n;
        ngx_fuzz_peer.in_len -= n;
        return n;
    }

    if (ngx_fuzz_peer.eof) {
        c->read->eof = 1;
        c->read->ready = 0;
        return 0;
    }

    if (ngx_fuzz_peer.recv_error) {
        c->read->error = 1;
        c->read->ready = 0;
        return NGX_ERROR;
    }

    c->read->ready = 0;
    return NGX_AGAIN;
}


static ssize_t
ngx_fuzz_send(ngx_connection_t *c, u_char *buf, size_t size)
{
    size_t  n;

    if (ngx_fuzz_peer.recv_error) {
        c->write->error = 1;
        return NGX_ERROR;
    }

    if (ngx_fuzz_peer.send_stalled || ngx_fuzz_peer.send_budget == 0) {
        c->write->ready = 0;
        return NGX_AGAIN;
    }

    n = ngx_min(size, ngx_fuzz_peer.send_budget);
    ngx_fuzz_peer.send_budget -= n;

    if (ngx_fuzz_peer.sent) {
        ngx_fuzz_peer.sent(buf, n);
    }

    return n;
}


ngx_int_t
ngx_fuzz_connect_peer(ngx_peer_connection_t *pc)
{
    ngx_socket_t       s;
    ngx_event_t       *rev, *wev;
    ngx_connection_t  *c;

    ngx_fuzz_peer.connects++;

    if (ngx_fuzz_peer.c != NULL) {
        ngx_fuzz_fail("a second connection while one is open");
    }

    if (ngx_fuzz_peer.connect_rc == NGX_ERROR
        || ngx_fuzz_peer.connect_rc == NGX_DECLINED)
    {
        return ngx_fuzz_peer.connect_rc;
    }

    /* a real socket, for getsockopt(SO_ERROR) and the like */
    s = socket(AF_INET, SOCK_STREAM, 0);
    if (s == (ngx_socket_t) -1) {
        ngx_fuzz_fail("socket() failed: %s", strerror(errno));
    }

    c = calloc(1, sizeof(ngx_connection_t));
    rev = calloc(1, sizeof(ngx_event_t));
    wev = calloc(1, sizeof(ngx_event_t));
    if (c == NULL || rev == NULL || wev == NULL) {
        ngx_fuzz_fail("out of memory");
    }

    c->fd = s;
    c->read = rev;
    c->write = wev;
    c->recv = ngx_fuzz_recv;
    c->send = ngx_fuzz_send;
    c->log = pc->log;
    c->sockaddr = pc->sockaddr;
    c->socklen = pc->socklen;
    c->addr_text = *pc->name;

    rev->data = c;
    wev->data = c;
    wev->write = 1;
    rev->log = pc->log;
    wev->log = pc->log;

    /* as if registered with epoll: ngx_handle_*_event() add nothing */
    rev->active = 1;
    wev->active = 1;

    if (ngx_fuzz_peer.connect_rc == NGX_OK) {
        wev->ready = 1;
    }

    ngx_fuzz_peer.c = c;
    ngx_fuzz_peer.eof = 0;
    ngx_fuzz_peer.recv_error = 0;
    ngx_fuzz_peer.in_len = 0;

    pc->connection = c;

    return ngx_fuzz_peer.connect_rc == NGX_OK ? NGX_OK : NGX_AGAIN;
}


void
ngx_fuzz_close_connection(ngx_connection_t *c)
{
    ngx_event_t  *ev[2];
    ngx_uint_t    i;

    if (c != ngx_fuzz_peer.c) {
        ngx_fuzz_fail("closing a connection that is not open");
    }

    ev[0] = c->read;
    ev[1] = c->write;

    for (i = 0; i < 2; i++) {
        if (ev[i]->timer_set) {
            ngx_del_timer(ev[i]);
        }

        if (ev[i]->posted) {
            ngx_delete_posted_event(ev[i]);
        }
    }

    close(c->fd);

    /* poisoned by ASan: a handler that still uses it is caught */
    free(c->read);
    free(c->write);
    free(c);

    ngx_fuzz_peer.c = NULL;
}


void
ngx_fuzz_feed(const u_char *p, size_t n)
{
    ngx_connection_t  *c;

    c = ngx_fuzz_peer.c;
    if (c == NULL) {
        return;
    }

    ngx_fuzz_peer.in = p;
    ngx_fuzz_peer.in_len = n;

    c->read->ready = 1;
    c->read->handler(c->read);

    /* what the handler did not read is lost with the connection */
    ngx_fuzz_peer.in_len = 0;
}


void
ngx_fuzz_hangup(ngx_flag_t error)
{
    ngx_connection_t  *c;

    c = ngx_fuzz_peer.c;
    if (c == NULL) {
        return;
    }

    if (error) {
        ngx_fuzz_peer.recv_error = 1;
    } else {
        ngx_fuzz_peer.eof = 1;
    }

    c->read->ready = 1;
    c->read->handler(c->read);
}


void
ngx_fuzz_writable(size_t budget, ngx_flag_t unlimited)
{
    ngx_connection_t  *c;

    ngx_fuzz_peer.send_budget = unlimited ? (size_t) -1 : budget;
    ngx_fuzz_peer.send_stalled = (!unlimited && budget == 0);

    c = ngx_fuzz_peer.c;
    if (c == NULL || ngx_fuzz_peer.send_stalled) {
        return;
    }

    c->write->ready = 1;
    c->write->handler(c->write);
}


/* ------------------------------------------------------ event loop */

void
ngx_fuzz_run_posted(void)
{
    ngx_uint_t  n;

    for (n = 0; !ngx_queue_empty(&ngx_posted_events); n++) {
        if (n > 100000) {
            ngx_fuzz_fail("posted events that post themselves forever");
        }

        ngx_event_process_posted((ngx_cycle_t *) ngx_cycle,
                                 &ngx_posted_events);
    }
}


void
ngx_fuzz_advance(ngx_msec_t ms)
{
    ngx_current_msec += ms;
    ngx_event_expire_timers();
    ngx_fuzz_run_posted();
}


void
ngx_fuzz_check_quiet(const char *when)
{
    if (ngx_event_timer_rbtree.root != ngx_event_timer_rbtree.sentinel) {
        ngx_fuzz_fail("%s: a timer is left", when);
    }

    if (!ngx_queue_empty(&ngx_posted_events)) {
        ngx_fuzz_fail("%s: a posted event is left", when);
    }

    if (ngx_fuzz_peer.c != NULL) {
        ngx_fuzz_fail("%s: a connection is left open", when);
    }
}


void
ngx_fuzz_start_input(void)
{
    ngx_memzero(&ngx_fuzz_peer, sizeof(ngx_fuzz_peer_t));
    ngx_fuzz_peer.connect_rc = NGX_AGAIN;
    ngx_fuzz_peer.send_budget = (size_t) -1;

    /* the same input does the same thing: jitter comes from random() */
    srandom(1);
}


void
ngx_fuzz_http_main_conf(ngx_module_t *module, void *conf)
{
    static void                 *main_conf[1];
    static ngx_http_conf_ctx_t   ctx;

    module->ctx_index = 0;
    main_conf[0] = conf;
    ctx.main_conf = main_conf;

    ngx_cycle->conf_ctx[ngx_http_module.index] = (void ***) &ctx;
}
