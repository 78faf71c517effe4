/*
 * Bounds on what a Redis reply may make us allocate.
 *
 * hiredis 0.14 (Debian 12) allocates an array reply's element slots as
 * soon as it reads the count: "*100000000\r\n", 12 bytes from whatever
 * answers on the Redis port, costs 800 MB before a single element
 * arrives, and nested counts multiply it. Every reader we create (the
 * NGINX workers' event-driven one, the blocking contexts of zmqctl and
 * zmqd) gets reply functions that refuse a reply whose arrays hold more
 * than ZGW_RESP_MAX_SLOTS element slots in all; hiredis then fails the
 * reply as out of memory and the caller drops the connection.
 *
 * hiredis also keeps what it has not parsed yet in reader->buf, without a
 * bound: "$999999999\r\n" followed by an endless stream of bytes (or a
 * status line that never ends) grows it until the process runs out of
 * memory (and a line without end is searched for its end from its start
 * on every parse: time in the square of its length). Every caller checks
 * zgw_resp_buffer_ok() after each redisReaderFeed() and drops the
 * connection when it fails: the bytes held unparsed, and the length a
 * bulk string being read announces, must stay within ZGW_RESP_MAX_BUFFER,
 * a line within ZGW_RESP_MAX_LINE.
 */

#ifndef ZGW_RESP_LIMIT_H
#define ZGW_RESP_LIMIT_H

#include <stddef.h>

#include <hiredis/hiredis.h>


/* 4 Mi slots (32 MB of pointers): a snapshot of 500,000 objects fits */
#define ZGW_RESP_MAX_SLOTS  (4u * 1024 * 1024)


/*
 * 64 MiB unparsed. The parser runs after every read (16 KiB in zmqd and
 * zmqctl, at most 1 MiB in an NGINX worker), and hiredis drops what it
 * has parsed, so what it holds unparsed is the element being read plus
 * at most one read: the largest legitimate element is one stored object
 * (a JSON definition, kilobytes), however large the snapshot array is.
 */
#define ZGW_RESP_MAX_BUFFER  ((size_t) 64 * 1024 * 1024)

/* a line (status, error, integer, a count): 64 KiB, or the buffer bound
   if lower */
#define ZGW_RESP_MAX_LINE    ((size_t) 64 * 1024)


/* one per reader; it must live as long as the reader */
typedef struct {
    size_t  slots;      /* slots allocated for the reply being read */
    size_t  max;        /* ZGW_RESP_MAX_SLOTS unless a test lowers it */
    size_t  max_buffer; /* ZGW_RESP_MAX_BUFFER unless a test lowers it */
} zgw_resp_budget_t;


/* installs the bounded functions in a reader created by hiredis */
void zgw_resp_limit(redisReader *reader, zgw_resp_budget_t *budget);

/*
 * After each redisReaderFeed(): 1 while the reader holds at most
 * budget->max_buffer bytes unparsed, the bulk string it is reading (if
 * any) announces no more than that, and the line it is reading (if any)
 * is no longer than ZGW_RESP_MAX_LINE; else 0 with why filled (when not
 * NULL): "reply too large: a bulk string of 999999999 bytes (the bound is
 * 67108864)", "reply too large: a line of more than 65536 bytes". The
 * caller then drops the connection.
 */
int zgw_resp_buffer_ok(const redisReader *reader,
    const zgw_resp_budget_t *budget, char *why, size_t len);


#endif /* ZGW_RESP_LIMIT_H */
