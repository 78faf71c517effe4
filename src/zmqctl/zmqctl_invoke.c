/*
 * zmqctl: invoke SERVICE [FILE|-]: runs any service as zmqd would, with
 * zmqd's own service code (src/zmqd, linked in), on the configuration in
 * Redis: the payload is FILE, standard input (-) or empty. The answer's
 * body goes to standard output, "status N" to standard error; exit 0 on
 * 2xx, else 1. Invocations of invoke services in modes sync and
 * sync_async wait for zmqd's reply (wait_invocations), up to the
 * service's timeout.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "zgw_crypto.h"
#include "zgw_redis_url.h"
#include "zmqctl.h"
#include "zmqd.h"


int
zmqctl_invoke(zmqctl_opts_t *o)
{
    int                       fd, rc, has_key;
    char                      err[1024], channel[300];
    size_t                    len;
    json_t                   *svc;
    const char               *name, *file;
    zgw_key_t                 key;
    zmqd_env_t                env;
    zmqd_msg_t                msg;
    zmqd_resp_t               resp;
    zgw_errors_t              errs;
    zgw_config_t             *cfg;
    amqp_bytes_t              body;
    unsigned char            *data;
    zmqd_publishers_t        *pubs;
    amqp_basic_properties_t   props;

    name = o->argv[0];
    file = o->argc > 1 ? o->argv[1] : NULL;
    data = NULL;
    len = 0;

    /* the payload first: no connection waits while it is read */
    if (file != NULL) {
        if (strcmp(file, "-") == 0) {
            fd = STDIN_FILENO;

        } else {
            fd = open(file, O_RDONLY | O_CLOEXEC);
            if (fd == -1) {
                fprintf(stderr, "zmqctl: %s: %s\n", file, strerror(errno));
                return ZMQCTL_EXIT_FAIL;
            }
        }

        data = zmqctl_read_all(fd, fd == STDIN_FILENO ? "standard input"
                                                      : file,
                               ZGW_BODY_MAX, ZMQCTL_INPUT_TIMEOUT_MS, &len);
        if (fd != STDIN_FILENO) {
            close(fd);
        }
        if (data == NULL) {
            return ZMQCTL_EXIT_FAIL;
        }
    }

    cfg = zmqctl_snapshot(o, 1);
    if (cfg == NULL) {
        free(data);
        return ZMQCTL_EXIT_FAIL;
    }

    svc = zmqctl_object(cfg, ZGW_KIND_SERVICE, name);
    if (svc == NULL) {
        zgw_config_free(cfg);
        free(data);
        return ZMQCTL_EXIT_FAIL;
    }

    /* without a key file, a sealed secret says it cannot be opened */
    zgw_errors_init(&errs);
    has_key = zgw_key_load(&key, o->key_file, &errs) == ZGW_OK;
    zgw_errors_free(&errs);

    pubs = calloc(1, sizeof(zmqd_publishers_t));
    if (pubs == NULL) {
        fprintf(stderr, "zmqctl: out of memory\n");
        zgw_config_free(cfg);
        free(data);
        return ZMQCTL_EXIT_FAIL;
    }

    memset(&env, 0, sizeof(env));
    env.cfg = cfg;
    env.key = has_key ? &key : NULL;
    env.redis_url = o->redis;
    env.publishers = pubs;
    env.wait_invocations = 1;

    memset(&props, 0, sizeof(props));
    memset(&msg, 0, sizeof(msg));

    snprintf(channel, sizeof(channel), "zmqctl");
    if (zgw_uuid4(msg.message_id) != ZGW_OK) {
        snprintf(msg.message_id, sizeof(msg.message_id), "zmqctl");
    }
    props._flags = AMQP_BASIC_MESSAGE_ID_FLAG;
    props.message_id = amqp_cstring_bytes(msg.message_id);

    body.bytes = data;
    body.len = len;
    msg.channel = channel;
    msg.body = &body;
    msg.props = &props;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    (void) zmqd_heartbeat_start(err, sizeof(err));

    rc = zmqd_service_call(&env, name, &msg, &resp, err, sizeof(err));

    if (resp.status == 0) {
        /* the service gave no answer of its own */
        if (zmqd_resp_error(&resp, rc == 0 ? 200 : 502,
                            rc == 0 ? "ok" : "service_failed", err)
            != 0)
        {
            fprintf(stderr, "zmqctl: out of memory\n");
        }
    }

    if (resp.body != NULL && resp.len > 0) {
        if (fwrite(resp.body, 1, resp.len, stdout) != resp.len) {
            rc = -1;
        }
        if (resp.body[resp.len - 1] != '\n') {
            fputc('\n', stdout);
        }
    }
    fflush(stdout);

    if (rc != 0 && resp.status >= 200 && resp.status <= 299) {
        resp.status = 502;
    }

    fprintf(stderr, "status %d%s%s\n", resp.status,
            resp.content_type[0] ? " " : "", resp.content_type);
    if (rc != 0) {
        fprintf(stderr, "zmqctl: %s\n", err);
    }

    rc = resp.status >= 200 && resp.status <= 299 && rc == 0
         ? ZMQCTL_EXIT_OK : ZMQCTL_EXIT_FAIL;

    zmqd_resp_free(&resp);
    zmqd_publishers_close(pubs);
    zmqd_heartbeat_stop();
    zmqd_services_reset();
    curl_global_cleanup();
    free(pubs);
    if (has_key) {
        OPENSSL_cleanse(&key, sizeof(key));
    }
    zgw_config_free(cfg);
    free(data);
    return rc;
}
