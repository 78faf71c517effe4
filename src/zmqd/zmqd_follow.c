/*
 * zmqd: loading and following the configuration, on a thread of its own.
 *
 * Following may block: a GET of zmq:version, a reconnect, AUTH and a whole
 * snapshot, each bounded by ZMQD_TIMEOUT_MS, can take seconds when the
 * configuration's Redis hangs. On the consuming thread that stalled every
 * channel; here it only delays the next configuration. The thread hands
 * each new configuration to the loop through a slot under a mutex (a
 * newer one replaces one the loop has not taken yet); the loop applies
 * whatever it takes, so the version handed over is the version that runs.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "zmqd.h"


#define ZMQD_POLL_MS    500

/* as zgw_config_load_file() */
#define ZMQD_FILE_MAX   (64 * 1024 * 1024)

/*
 * File timestamps come from a coarse clock (a tick of a few ms; 2 s on
 * FAT), and mtime can be set back (cp -p, rsync -t, touch -r): a file read
 * less than this long after its last change may change again with the
 * same stat, so its contents are compared on every look until it is older.
 */
#define ZMQD_RACY_S     2


/*
 * --------------------------------------------------------------- a file
 *
 * A change is noticed by stat (device, inode, size, mtime and ctime to the
 * nanosecond), then confirmed by a SHA-256 of the contents: an edit is
 * applied whatever its timing, and a file touched but not changed is not
 * loaded again. What was read is remembered whether it was applied or
 * refused, so a refused file is logged once, until it changes again.
 */

static int
zmqd_ts_eq(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}


static int
zmqd_stat_eq(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino
           && a->st_size == b->st_size
           && zmqd_ts_eq(&a->st_mtim, &b->st_mtim)
           && zmqd_ts_eq(&a->st_ctim, &b->st_ctim);
}


static int
zmqd_file_unchanged(const zmqd_follower_t *f, const struct stat *st)
{
    return f->file_seen && st->st_dev == f->file_dev
           && st->st_ino == f->file_ino && st->st_size == f->file_size
           && zmqd_ts_eq(&st->st_mtim, &f->file_mtim)
           && zmqd_ts_eq(&st->st_ctim, &f->file_ctim);
}


static void
zmqd_file_remember(zmqd_follower_t *f, const struct stat *st,
    const unsigned char *hash)
{
    time_t           changed;
    struct timespec  now;

    f->file_seen = 1;
    f->file_dev = st->st_dev;
    f->file_ino = st->st_ino;
    f->file_size = st->st_size;
    f->file_mtim = st->st_mtim;
    f->file_ctim = st->st_ctim;
    memcpy(f->file_hash, hash, sizeof(f->file_hash));

    changed = st->st_mtim.tv_sec > st->st_ctim.tv_sec ? st->st_mtim.tv_sec
                                                      : st->st_ctim.tv_sec;
    clock_gettime(CLOCK_REALTIME, &now);
    f->file_racy = now.tv_sec - changed <= ZMQD_RACY_S;
}


/*
 * Reads a whole regular file: 0 with *buf (malloc'd, NUL-terminated),
 * *len, *st (as it was before the read) and hash filled; 1 the same, but
 * the file changed while it was read (a writer is at work); -1 with
 * *err_no and errs filled.
 */
static int
zmqd_file_read(const char *path, char **buf, size_t *len, struct stat *st,
    unsigned char *hash, int *err_no, zgw_errors_t *errs)
{
    int          fd, rc, tries;
    char        *b, *nb;
    size_t       n, cap;
    ssize_t      got;
    struct stat  after;

    for (tries = 0; ; tries++) {
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd == -1) {
            *err_no = errno;
            zgw_errors_add(errs, "%s: %s", path, strerror(errno));
            return -1;
        }

        if (fstat(fd, st) != 0) {
            *err_no = errno;
            zgw_errors_add(errs, "%s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }

        if (!S_ISREG(st->st_mode)) {
            *err_no = EINVAL;
            zgw_errors_add(errs, "%s: not a regular file", path);
            close(fd);
            return -1;
        }

        if (st->st_size > ZMQD_FILE_MAX) {
            *err_no = EFBIG;
            zgw_errors_add(errs, "%s: %lld bytes is larger than the 64 MiB "
                           "limit", path, (long long) st->st_size);
            close(fd);
            return -1;
        }

        cap = (size_t) st->st_size + 1;
        b = malloc(cap);
        n = 0;

        while (b != NULL) {
            if (n + 1 == cap) {
                if (cap > ZMQD_FILE_MAX) {
                    break;
                }
                nb = realloc(b, cap * 2);
                if (nb == NULL) {
                    free(b);
                    b = NULL;
                    break;
                }
                b = nb;
                cap *= 2;
            }

            got = read(fd, b + n, cap - 1 - n);
            if (got == 0) {
                break;
            }

            if (got < 0) {
                if (errno == EINTR) {
                    continue;
                }
                *err_no = errno;
                zgw_errors_add(errs, "%s: %s", path, strerror(errno));
                free(b);
                close(fd);
                return -1;
            }

            n += (size_t) got;
        }

        if (b == NULL) {
            *err_no = ENOMEM;
            zgw_errors_add(errs, "%s: out of memory", path);
            close(fd);
            return -1;
        }

        rc = fstat(fd, &after) != 0 || !zmqd_stat_eq(st, &after)
             || n != (size_t) st->st_size;
        close(fd);

        if (rc && tries < 4) {
            /* a writer is at work: give it a moment */
            free(b);
            usleep(20000);
            continue;
        }

        if (n > ZMQD_FILE_MAX) {
            *err_no = EFBIG;
            zgw_errors_add(errs, "%s: larger than the 64 MiB limit", path);
            free(b);
            return -1;
        }

        b[n] = '\0';
        *buf = b;
        *len = n;
        (void) EVP_Digest(b, n, hash, NULL, EVP_sha256(), NULL);
        return rc;
    }
}


/* the file cannot be read: said once per reason, and at every SIGHUP */
static void
zmqd_file_failed(zmqd_follower_t *f, int err_no, const char *why,
    int reload)
{
    if (reload || err_no != f->file_errno) {
        zmqd_log("error", "configuration from %s cannot be read: %s; "
                 "keeping the configuration that runs", f->source, why);
    }

    f->file_errno = err_no;
    f->file_seen = 0;           /* when it is back, it is loaded again */
}


static int
zmqd_file_load(zmqd_follower_t *f, zgw_config_t *cfg, int *changing,
    unsigned char *hash, struct stat *st, zgw_errors_t *errs)
{
    int      rc, err_no;
    char    *buf;
    size_t   len;

    rc = zmqd_file_read(f->url + 5, &buf, &len, st, hash, &err_no, errs);
    if (rc < 0) {
        return -err_no - 1;
    }

    *changing = rc;
    rc = zgw_config_load_text(cfg, buf, len, f->url + 5, 0, errs);
    free(buf);
    return rc == ZGW_OK ? 0 : 1;
}


zgw_config_t *
zmqd_follow_load(zmqd_follower_t *f, int quiet)
{
    int            rc, changing;
    size_t         i;
    struct stat    st;
    zgw_errors_t   errs;
    zgw_config_t  *cfg;
    unsigned char  hash[32];

    cfg = zgw_config_new();
    if (cfg == NULL) {
        return NULL;
    }

    zgw_errors_init(&errs);

    if (strncmp(f->source, "file:", 5) == 0) {
        rc = zmqd_file_load(f, cfg, &changing, hash, &st, &errs);
        if (rc >= 0) {
            /* what runs, or what was refused: a change is what differs */
            zmqd_file_remember(f, &st, hash);
            f->file_errno = 0;
        }

        if (rc != 0) {
            goto failed;
        }

    } else {
        if (f->store == NULL) {
            f->store = zgw_store_connect(f->url, ZMQD_TIMEOUT_MS, &errs);
            if (f->store == NULL) {
                goto failed;
            }
        }

        if (zgw_store_load(f->store, cfg, &errs) != ZGW_OK
            || zgw_config_check_refs(cfg, &errs) != ZGW_OK)
        {
            if (errs.n && strncmp(errs.msgs[0], "redis ", 6) == 0) {
                zgw_store_close(f->store);
                f->store = NULL;
            }
            goto failed;
        }
    }

    zgw_errors_free(&errs);
    return cfg;

failed:

    for (i = 0; i < errs.n && !quiet; i++) {
        zmqd_log("error", "configuration from %s refused: %s", f->source,
                 errs.msgs[i]);
    }

    zgw_errors_free(&errs);
    zgw_config_free(cfg);
    return NULL;
}


/* a configuration that does not validate: one line, with every reason */
static void
zmqd_refused(zmqd_follower_t *f, const zgw_config_t *cfg,
    const zgw_errors_t *errs)
{
    int     n;
    char    why[1024];
    size_t  i, len;

    len = 0;
    why[0] = '\0';

    for (i = 0; i < errs->n; i++) {
        n = snprintf(why + len, sizeof(why) - len, "%s%s", i ? "; " : "",
                     errs->msgs[i]);
        if (n < 0 || (size_t) n >= sizeof(why) - len) {
            why[len] = '\0';
            snprintf(why + len, sizeof(why) - len, "%s(and %zu more)",
                     len ? "; " : "", errs->n - i);
            break;
        }
        len += (size_t) n;
    }

    if (cfg == NULL) {
        zmqd_log("error", "configuration from %s refused; keeping the "
                 "configuration that runs: %s", f->source, why);

    } else {
        zmqd_log("error", "configuration version %lld from %s refused; "
                 "keeping version %lld: %s", cfg->version, f->source,
                 f->version, why);
    }
}


/* one look at a file: a configuration to run, or NULL */
static zgw_config_t *
zmqd_follow_file(zmqd_follower_t *f, int reload)
{
    int            rc, changing;
    struct stat    st;
    zgw_errors_t   errs;
    zgw_config_t  *cfg;
    unsigned char  hash[32];

    if (!reload) {
        if (stat(f->url + 5, &st) != 0) {
            zmqd_file_failed(f, errno, strerror(errno), 0);
            return NULL;
        }

        if (zmqd_file_unchanged(f, &st) && !f->file_racy) {
            return NULL;
        }
    }

    cfg = zgw_config_new();
    if (cfg == NULL) {
        return NULL;
    }

    zgw_errors_init(&errs);
    changing = 0;

    rc = zmqd_file_load(f, cfg, &changing, hash, &st, &errs);
    if (rc < 0) {
        zmqd_file_failed(f, -rc - 1, zgw_errors_first(&errs), reload);
        goto done;
    }

    if (changing && !reload) {
        goto done;              /* the next look reads the finished file */
    }

    f->file_errno = 0;

    if (!reload && f->file_seen
        && memcmp(hash, f->file_hash, sizeof(hash)) == 0)
    {
        zmqd_file_remember(f, &st, hash);       /* touched, not changed */
        goto done;
    }

    zmqd_file_remember(f, &st, hash);

    if (rc != 0) {
        zmqd_refused(f, NULL, &errs);
        goto done;
    }

    zgw_errors_free(&errs);
    return cfg;

done:

    zgw_errors_free(&errs);
    zgw_config_free(cfg);
    return NULL;
}


/*
 * ---------------------------------------------------------------- Redis
 *
 * zmq:version says when to download a snapshot: when it differs from the
 * version that runs and from the version last refused. A refused version
 * is logged once and not downloaded again, after a reconnect neither;
 * the next version is.
 */

/*
 * The store is at a version lower than the one running: it lost its data
 * (a restart without persistence, FLUSHALL, an empty replica, an old
 * backup) far more likely than someone emptied it, which 'zmqctl wipe'
 * does at a higher version. Keep running; say it once per store version.
 */
static void
zmqd_regressed(zmqd_follower_t *f, long long store)
{
    if (!f->regressed || f->store_version != store) {
        zmqd_log("warn", "configuration store %s is regressed: at version "
                 "%lld, lower than version %lld that zmqd runs; keeping "
                 "version %lld and following on. Redis lost its data? "
                 "Bring it back with 'zmqctl restore' (from a gateway's "
                 "cache or an export); 'zmqctl wipe' empties it on purpose",
                 f->source, store, f->version, f->version);
    }

    f->regressed = 1;
    f->store_version = store;
}


/* the store cannot be reached: said once until it answers again */
static void
zmqd_store_lost(zmqd_follower_t *f, const zgw_errors_t *errs)
{
    if (!f->down) {
        zmqd_log("warn", "redis: %s; running on configuration version %lld",
                 zgw_errors_first(errs), f->version);
        f->down = 1;
    }

    zgw_store_close(f->store);
    f->store = NULL;
}


/* one look at the store: a configuration to run, or NULL */
static zgw_config_t *
zmqd_follow_redis(zmqd_follower_t *f, int reload)
{
    long long      version;
    zgw_errors_t   errs;
    zgw_config_t  *cfg;

    zgw_errors_init(&errs);
    cfg = NULL;

    if (f->store == NULL) {
        f->store = zgw_store_connect(f->url, ZMQD_TIMEOUT_MS, &errs);
        if (f->store == NULL) {
            zmqd_store_lost(f, &errs);
            goto done;
        }
    }

    if (zgw_store_version(f->store, &version, &errs) != ZGW_OK) {
        zmqd_store_lost(f, &errs);
        goto done;
    }

    if (f->down) {
        zmqd_log("info", "configuration store %s answers again, at version "
                 "%lld (running %lld)", f->source, version, f->version);
        f->down = 0;
    }

    if (version < f->refused) {
        f->refused = -1;        /* it went back: that number means another
                                   configuration when it comes again */
    }

    if (!reload) {
        if (version == f->version || version == f->refused) {
            goto done;
        }

        if (version < f->version) {
            zmqd_regressed(f, version);
            goto done;
        }
    }

    cfg = zgw_config_new();
    if (cfg == NULL) {
        goto done;
    }

    if (zgw_store_load(f->store, cfg, &errs) != ZGW_OK
        || zgw_config_check_refs(cfg, &errs) != ZGW_OK)
    {
        if (errs.n && strncmp(errs.msgs[0], "redis ", 6) == 0) {
            zmqd_store_lost(f, &errs);

        } else if (cfg->version < f->version) {
            zmqd_regressed(f, cfg->version);

        } else {
            if (reload || cfg->version != f->refused) {
                zmqd_refused(f, cfg, &errs);
            }
            f->refused = cfg->version;
        }

        zgw_config_free(cfg);
        cfg = NULL;
        goto done;
    }

    if (cfg->version < f->version) {
        zmqd_regressed(f, cfg->version);
        zgw_config_free(cfg);
        cfg = NULL;
        goto done;
    }

    if (f->regressed) {
        zmqd_log("warn", "configuration store %s is at version %lld again "
                 "(running %lld): following it", f->source, cfg->version,
                 f->version);
        f->regressed = 0;
    }

done:

    zgw_errors_free(&errs);
    return cfg;
}


/* one look at the source: a configuration to run, or NULL */
static zgw_config_t *
zmqd_follow_once(zmqd_follower_t *f, int reload)
{
    zgw_config_t  *cfg;

    if (strncmp(f->source, "file:", 5) == 0) {
        return zmqd_follow_file(f, reload);
    }

    cfg = zmqd_follow_redis(f, reload);
    if (cfg != NULL) {
        f->version = cfg->version;
    }

    zmqd_fleet_tick(f);

    return cfg;
}


static void *
zmqd_follow_loop(void *arg)
{
    int               reload;
    zmqd_follower_t  *f = arg;
    zgw_config_t     *cfg;
    struct timespec   ts;

    (void) pthread_mutex_lock(&f->lock);

    while (!f->stop) {
        if (!f->reload) {
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += ZMQD_POLL_MS / 1000;
            ts.tv_nsec += (ZMQD_POLL_MS % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            (void) pthread_cond_timedwait(&f->cond, &f->lock, &ts);
        }

        if (f->stop) {
            break;
        }

        reload = f->reload;
        f->reload = 0;

        /* the slow part, with nothing locked */
        (void) pthread_mutex_unlock(&f->lock);
        cfg = zmqd_follow_once(f, reload);
        (void) pthread_mutex_lock(&f->lock);

        if (cfg != NULL) {
            zgw_config_free(f->slot);
            f->slot = cfg;
        }
    }

    f->done = 1;
    (void) pthread_cond_broadcast(&f->cond);
    (void) pthread_mutex_unlock(&f->lock);
    return NULL;
}


int
zmqd_follow_start(zmqd_follower_t *f, long long version, char *err,
    size_t errlen)
{
    int       rc;
    sigset_t  all, old;

    f->version = version;
    f->refused = -1;
    f->down = 0;
    f->slot = NULL;
    f->reload = 0;
    f->stop = 0;
    f->done = 0;

    if (pthread_mutex_init(&f->lock, NULL) != 0
        || pthread_cond_init(&f->cond, NULL) != 0)
    {
        snprintf(err, errlen, "cannot make a mutex");
        return -1;
    }

    /* signals are for the main thread */
    sigfillset(&all);
    (void) pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&f->thread, NULL, zmqd_follow_loop, f);
    (void) pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (rc != 0) {
        snprintf(err, errlen, "cannot start the configuration thread: %s",
                 strerror(rc));
        return -1;
    }

    f->running = 1;
    return 0;
}


void
zmqd_follow_reload(zmqd_follower_t *f)
{
    (void) pthread_mutex_lock(&f->lock);
    f->reload = 1;
    (void) pthread_cond_signal(&f->cond);
    (void) pthread_mutex_unlock(&f->lock);
}


zgw_config_t *
zmqd_follow_take(zmqd_follower_t *f)
{
    zgw_config_t  *cfg;

    (void) pthread_mutex_lock(&f->lock);
    cfg = f->slot;
    f->slot = NULL;
    (void) pthread_mutex_unlock(&f->lock);

    return cfg;
}


/*
 * Stops the thread. It may be inside a Redis call that takes up to its
 * timeout: wait a second for it, then leave it to the process's exit
 * (it owns nothing the caller frees). Returns 0 when it has stopped.
 */
int
zmqd_follow_stop(zmqd_follower_t *f)
{
    int              rc;
    struct timespec  ts;

    if (!f->running) {
        return 0;
    }

    (void) pthread_mutex_lock(&f->lock);
    f->stop = 1;
    (void) pthread_cond_signal(&f->cond);

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 1;

    rc = 0;
    while (!f->done && rc != ETIMEDOUT) {
        rc = pthread_cond_timedwait(&f->cond, &f->lock, &ts);
    }

    rc = f->done;
    (void) pthread_mutex_unlock(&f->lock);

    if (!rc) {
        return -1;
    }

    (void) pthread_join(f->thread, NULL);
    f->running = 0;

    zgw_config_free(f->slot);
    f->slot = NULL;
    zgw_store_close(f->store);
    f->store = NULL;
    return 0;
}
