/*
 * An LD_PRELOAD shim for tests: malloc() of exactly FAILMALLOC_SIZE bytes
 * (a comma-separated list of sizes) fails with ENOMEM while the file
 * FAILMALLOC_TRIGGER exists. The test creates the file once the server is
 * up, so that only the allocations it aims at fail. Each failure appends
 * a line to FAILMALLOC_LOG, if set, so that a test can tell that it fired.
 *
 * The variables are read when the shim is loaded: NGINX clears the
 * environment of its workers.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#define FAILMALLOC_MAX  16


extern void *__libc_malloc(size_t size);


static size_t  failmalloc_sizes[FAILMALLOC_MAX];
static int     failmalloc_n;
static char    failmalloc_trigger[4096];
static char    failmalloc_logfile[4096];


__attribute__((constructor))
static void
failmalloc_init(void)
{
    char        *end;
    const char  *p, *v;

    v = getenv("FAILMALLOC_TRIGGER");
    if (v == NULL || strlen(v) >= sizeof(failmalloc_trigger)) {
        return;
    }
    strcpy(failmalloc_trigger, v);

    v = getenv("FAILMALLOC_LOG");
    if (v != NULL && strlen(v) < sizeof(failmalloc_logfile)) {
        strcpy(failmalloc_logfile, v);
    }

    v = getenv("FAILMALLOC_SIZE");
    for (p = v; p != NULL && *p != '\0' && failmalloc_n < FAILMALLOC_MAX;
         p = end)
    {
        failmalloc_sizes[failmalloc_n] = strtoul(p, &end, 10);
        if (end == p) {
            break;
        }
        failmalloc_n++;
        if (*end == ',') {
            end++;
        }
    }
}


static int
failmalloc_hit(size_t size)
{
    int  i;

    for (i = 0; i < failmalloc_n; i++) {
        if (failmalloc_sizes[i] == size) {
            return access(failmalloc_trigger, F_OK) == 0;
        }
    }

    return 0;
}


static void
failmalloc_log(size_t size)
{
    int   fd, n;
    char  line[64];

    if (failmalloc_logfile[0] == '\0') {
        return;
    }

    fd = open(failmalloc_logfile, O_WRONLY | O_APPEND | O_CREAT, 0666);
    if (fd == -1) {
        return;
    }

    n = snprintf(line, sizeof(line), "malloc(%zu)\n", size);
    if (write(fd, line, n) != n) {
        /* nothing to do */
    }
    close(fd);
}


void *
malloc(size_t size)
{
    if (failmalloc_n > 0 && failmalloc_hit(size)) {
        failmalloc_log(size);
        errno = ENOMEM;
        return NULL;
    }

    return __libc_malloc(size);
}
