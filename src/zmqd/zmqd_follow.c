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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "zmqd.h"


#define ZMQD_POLL_MS  500


zgw_config_t *
zmqd_follow_load(zmqd_follower_t *f, int quiet)
{
    size_t         i;
    struct stat    st;
    zgw_errors_t   errs;
    zgw_config_t  *cfg;

    cfg = zgw_config_new();
    if (cfg == NULL) {
        return NULL;
    }

    zgw_errors_init(&errs);

    if (strncmp(f->source, "file:", 5) == 0) {
        if (stat(f->url + 5, &st) == 0) {
            f->file_mtime = st.st_mtime;
        }
        if (zgw_config_load_file(cfg, f->url + 5, 0, &errs) != ZGW_OK) {
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


/* one look at the source: a configuration to run, or NULL */
static zgw_config_t *
zmqd_follow_once(zmqd_follower_t *f, int reload)
{
    int            redis;
    long long      version;
    struct stat    st;
    zgw_errors_t   errs;
    zgw_config_t  *cfg;

    redis = strncmp(f->source, "file:", 5) != 0;

    if (!redis) {
        if (!reload
            && (stat(f->url + 5, &st) != 0
                || st.st_mtime == f->file_mtime))
        {
            return NULL;
        }

    } else if (!reload) {
        zgw_errors_init(&errs);

        if (f->store == NULL
            || zgw_store_version(f->store, &version, &errs) != ZGW_OK)
        {
            if (f->store != NULL) {
                zmqd_log("warn", "redis: %s; running on configuration "
                         "version %lld", zgw_errors_first(&errs),
                         f->version);
                zgw_store_close(f->store);
                f->store = NULL;
            }
            zgw_errors_free(&errs);
            version = -1;           /* reconnect and reload */

        } else {
            zgw_errors_free(&errs);
            if (version == f->version) {
                return NULL;
            }

            if (version < f->version) {
                zmqd_regressed(f, version);
                return NULL;
            }
        }
    }

    cfg = zmqd_follow_load(f, f->store == NULL);
    if (cfg == NULL) {
        return NULL;
    }

    if (redis && cfg->version < f->version) {
        zmqd_regressed(f, cfg->version);
        zgw_config_free(cfg);
        return NULL;
    }

    if (f->regressed) {
        zmqd_log("warn", "configuration store %s is at version %lld again "
                 "(running %lld): following it", f->source, cfg->version,
                 f->version);
        f->regressed = 0;
    }

    f->version = cfg->version;
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
