
/*
 * ngx_zmq fuzzing inside Debian's nginx.
 *
 * Debian's nginx-dev ships NGINX's headers but not its sources, so the
 * targets that need NGINX are built as a dynamic module of the real
 * /usr/sbin/nginx (with the same --with-compat configuration as the
 * module) and libFuzzer runs inside it: nginx starts in single-process
 * mode, initializes its cycle, event module, timers and pools as always,
 * and this module's init_process hands control to libFuzzer
 * (LLVMFuzzerRunDriver), which never returns. Each target is a file that
 * #includes the module source under test, so its static functions are
 * reachable, and defines LLVMFuzzerTestOneInput.
 *
 * The sockets the code under test opens are fakes that the harness feeds:
 * a target includes its source after defining
 *
 *     #define ngx_event_connect_peer  ngx_fuzz_connect_peer
 *     #define ngx_close_connection    ngx_fuzz_close_connection
 *
 * and pool allocations go to malloc() one by one (NGX_FUZZ_POOLS), so
 * that ASan sees the bounds of each.
 */


#ifndef _NGX_FUZZ_H_INCLUDED_
#define _NGX_FUZZ_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>


typedef struct {
    ngx_connection_t   *c;              /* the open fake connection */
    const u_char       *in;             /* what recv() hands out next */
    size_t              in_len;
    ngx_flag_t          eof;            /* recv() then returns 0 */
    ngx_flag_t          recv_error;     /* recv() then returns an error */
    size_t              send_budget;    /* what send() still takes */
    ngx_flag_t          send_stalled;   /* send() says NGX_AGAIN */
    ngx_int_t           connect_rc;     /* NGX_AGAIN, NGX_OK, NGX_ERROR */
    ngx_uint_t          connects;
    void              (*sent)(const u_char *p, size_t n);
} ngx_fuzz_peer_t;


extern ngx_fuzz_peer_t   ngx_fuzz_peer;
extern ngx_log_t        *ngx_fuzz_log;


ngx_int_t ngx_fuzz_connect_peer(ngx_peer_connection_t *pc);
void ngx_fuzz_close_connection(ngx_connection_t *c);

/* hands n bytes to the open connection's read handler (and then EAGAIN) */
void ngx_fuzz_feed(const u_char *p, size_t n);
/* the broker closes (eof) or the socket fails */
void ngx_fuzz_hangup(ngx_flag_t error);
/* the socket takes budget more bytes (0: it is full) */
void ngx_fuzz_writable(size_t budget, ngx_flag_t unlimited);

/* what the event loop does between two events */
void ngx_fuzz_run_posted(void);
void ngx_fuzz_advance(ngx_msec_t ms);
/* no timer and no posted event is left (of those the target added) */
void ngx_fuzz_check_quiet(const char *when);

void ngx_fuzz_start_input(void);
/*
 * Makes conf the HTTP main configuration of module, which this nginx did
 * not load (there is no http block): code that asks the cycle for it
 * (ngx_http_zmq_worker()) finds it.
 */
void ngx_fuzz_http_main_conf(ngx_module_t *module, void *conf);
/* NGINX formats: %V, %ui, %*s (size_t length) */
void ngx_fuzz_fail(const char *fmt, ...);


/* allocations that ASan can bound one by one */
void *ngx_fuzz_palloc(ngx_pool_t *pool, size_t size);
void *ngx_fuzz_pcalloc(ngx_pool_t *pool, size_t size);


#endif /* _NGX_FUZZ_H_INCLUDED_ */
