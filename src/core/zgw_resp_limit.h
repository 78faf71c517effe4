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
 */

#ifndef ZGW_RESP_LIMIT_H
#define ZGW_RESP_LIMIT_H

#include <stddef.h>

#include <hiredis/hiredis.h>


/* 4 Mi slots (32 MB of pointers): a snapshot of 500,000 objects fits */
#define ZGW_RESP_MAX_SLOTS  (4u * 1024 * 1024)


/* one per reader; it must live as long as the reader */
typedef struct {
    size_t  slots;      /* slots allocated for the reply being read */
    size_t  max;        /* ZGW_RESP_MAX_SLOTS unless a test lowers it */
} zgw_resp_budget_t;


/* installs the bounded functions in a reader created by hiredis */
void zgw_resp_limit(redisReader *reader, zgw_resp_budget_t *budget);


#endif /* ZGW_RESP_LIMIT_H */
