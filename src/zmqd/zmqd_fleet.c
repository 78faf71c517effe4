/*
 * zmqd: the fleet. The configuration thread reports this process into
 * the store every --fleet-interval seconds (see zgw_fleet.h), on the
 * connection it follows the store with: a zmqd that cannot reach the
 * store stops reporting and leaves the fleet when its entry expires.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "zgw_err.h"
#include "zgw_fleet.h"
#include "zgw_redis_conn.h"
#include "zmqd.h"


int
zmqd_fleet_init(zmqd_follower_t *f, const char *instance, int interval,
    int workers, char *err, size_t errlen)
{
    char  host[128];

    f->fleet_interval = interval;
    f->fleet_next = 0;
    f->fleet_started = (long long) time(NULL);
    f->fleet_warned = 0;

    if (gethostname(host, sizeof(host)) != 0) {
        snprintf(host, sizeof(host), "zmqd");
    }
    host[sizeof(host) - 1] = '\0';
    snprintf(f->fleet_host, sizeof(f->fleet_host), "%s", host);

    if (instance != NULL && !zgw_fleet_name_ok(instance)) {
        snprintf(err, errlen, "--instance '%.64s': 1-127 of letters, "
                 "digits and . _ : @ / -", instance);
        return -1;
    }

    /* the PID is added in each process (workers fork after this) */
    snprintf(f->fleet_name, sizeof(f->fleet_name), "%s",
             instance ? instance : host);
    f->fleet_named = instance != NULL && workers <= 1;

    return 0;
}


void
zmqd_fleet_tick(zmqd_follower_t *f)
{
    char         *entry, id[ZGW_FLEET_INSTANCE_MAX + 16], ttl[16];
    char          name[ZGW_FLEET_INSTANCE_MAX], shown[ZGW_SHOW_SIZE];
    double        now;
    redisReply   *r;
    const char   *argv[6];

    if (f->fleet_interval <= 0 || f->store == NULL || f->down) {
        return;
    }

    now = zmqd_now();
    if (now < f->fleet_next) {
        return;
    }
    f->fleet_next = now + f->fleet_interval;

    /* unnamed, or one of several workers: the PID tells them apart */
    if (f->fleet_named) {
        snprintf(name, sizeof(name), "%s", f->fleet_name);

    } else {
        snprintf(name, sizeof(name), "%.100s/%ld", f->fleet_name,
                 (long) getpid());
    }

    if (!zgw_fleet_name_ok(name)) {
        snprintf(name, sizeof(name), "zmqd/%ld", (long) getpid());
    }

    entry = zgw_fleet_entry("zmqd", name, f->fleet_host, (long) getpid(),
                            f->version, f->version,
                            f->regressed ? "regressed" : "connected", 1,
                            f->fleet_started, f->fleet_interval);
    if (entry == NULL) {
        return;
    }

    snprintf(id, sizeof(id), "zmqd:%s", name);
    snprintf(ttl, sizeof(ttl), "%d", 3 * f->fleet_interval);

    argv[0] = "EVAL";
    argv[1] = zgw_fleet_report_lua;
    argv[2] = "0";
    argv[3] = id;
    argv[4] = entry;
    argv[5] = ttl;

    r = zgw_redis_command_argv(zgw_store_context(f->store), 6, argv, NULL);
    free(entry);

    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        if (!f->fleet_warned) {
            zmqd_log("warn", "fleet: the store %s did not take this "
                     "zmqd's report: %s", f->source,
                     r ? zgw_show(shown, sizeof(shown), r->str, r->len)
                       : zgw_redis_error(zgw_store_context(f->store)));
            f->fleet_warned = 1;
        }

    } else {
        f->fleet_warned = 0;
    }

    if (r != NULL) {
        freeReplyObject(r);
    }
}
