/*
 * zmqctl: the operator's command line for ngx_zmq.
 *
 * Imports and exports the whole configuration (one JSON document, all or
 * nothing), reads, lists and deletes objects, restores a lost store from a
 * gateway's cache or an export, empties it on purpose, and makes the key
 * file that seals secrets. Talks to Redis with the blocking store client.
 *
 * Followers (NGINX workers, zmqd) apply a snapshot only at a version at
 * least the one they run: a store found at a lower version was lost, not
 * emptied. So restore and wipe always move the version above what
 * followers run, and import says so when it writes into an empty store.
 */

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "zgw_apikey.h"
#include "zgw_crypto.h"
#include "zgw_err.h"
#include "zgw_model.h"
#include "zgw_store.h"
#include "zmqctl.h"


typedef struct {
    const char   *name;
    int         (*run)(zmqctl_opts_t *o);
    const char   *usage;
    const char   *help;
} zmqctl_cmd_t;


static int zmqctl_import(zmqctl_opts_t *o);
static int zmqctl_restore(zmqctl_opts_t *o);
static int zmqctl_wipe(zmqctl_opts_t *o);
static int zmqctl_export(zmqctl_opts_t *o);
static int zmqctl_get(zmqctl_opts_t *o);
static int zmqctl_list(zmqctl_opts_t *o);
static int zmqctl_delete(zmqctl_opts_t *o);
static int zmqctl_keygen(zmqctl_opts_t *o);
static int zmqctl_apikey(zmqctl_opts_t *o);
static int zmqctl_version(zmqctl_opts_t *o);
static int zmqctl_send_args(zmqctl_opts_t *o, const zmqctl_cmd_t *cmd);
static int zmqctl_ping_cmd(zmqctl_opts_t *o);


static const zmqctl_cmd_t  zmqctl_cmds[] = {

    { "import", zmqctl_import,
      "import [--check] [--replace] [--version-floor N] FILE",
      "Imports a whole configuration from one JSON file (the format that\n"
      "'export' writes). All or nothing: every object is validated, every\n"
      "reference is checked against the file plus what Redis holds, and on\n"
      "any error nothing is written and every error is listed.\n"
      "Secrets in the file are sealed with the key file before they are\n"
      "stored; a secret the file leaves out keeps its stored value.\n"
      "Into a store without a version (a new Redis, or one that lost its\n"
      "data) it warns: gateways and zmqd that ran a configuration keep it\n"
      "(\"regressed\") until the store's version reaches theirs.\n"
      "\n"
      "  --check            validate only; write nothing\n"
      "  --replace          also delete the objects that the file does not\n"
      "                     have\n"
      "  --version-floor N  the store's version afterwards is at least N\n"
      "                     (and the change is one version step)\n" },

    { "restore", zmqctl_restore,
      "restore [--check] [--version-floor N] FILE",
      "Brings a lost store back: makes Redis hold exactly the configuration\n"
      "of FILE, either a gateway's snapshot cache (zmq_config_cache DIR,\n"
      "file config.json: sealed secrets included, no key file needed) or\n"
      "an export (which leaves secrets out: write them into the file in\n"
      "clear and they are sealed with the key file, as import does; a\n"
      "secret still left out keeps the store's value, else becomes a\n"
      "random one that nobody knows).\n"
      "The store's version becomes the largest of its version + 1, the\n"
      "cache's version + 1 and N: followers apply a configuration only at\n"
      "a version at least theirs, so give N above every config_version\n"
      "that zmq_status shows when the file is an export or an older cache.\n"
      "\n"
      "  --check            validate only; write nothing\n"
      "  --version-floor N  the store's version afterwards is at least N\n" },

    { "wipe", zmqctl_wipe, "wipe --yes [--version-floor N]",
      "Deletes every object, on purpose, at a new version: every gateway\n"
      "and zmqd then runs an empty configuration (REST channels answer\n"
      "404, channels stop). The version becomes the larger of the store's\n"
      "version + 1 and N. A store that has no version (already emptied by\n"
      "accident) needs N above the config_version that zmq_status shows.\n"
      "\n"
      "  --yes              required: there is no undo but 'restore'\n"
      "  --version-floor N  the store's version afterwards is at least N\n" },

    { "export", zmqctl_export, "export [-o FILE]",
      "Writes the whole configuration as JSON that 'import' accepts.\n"
      "Secrets are left out.\n"
      "\n"
      "  -o, --output FILE   write to FILE instead of standard output\n" },

    { "get", zmqctl_get, "get KIND NAME",
      "Prints one object as JSON (secrets left out).\n" },

    { "list", zmqctl_list, "list [KIND]",
      "Lists objects, one per line: kind, name, active or inactive.\n" },

    { "fleet", zmqctl_fleet, "fleet [--json]",
      "Lists every gateway and zmqd that follows this store, as each last\n"
      "reported itself: kind, instance, host, PID, the configuration\n"
      "version it runs, its lag behind the store's version, the seconds\n"
      "since it reported and how it follows the store. Exits 1 when an\n"
      "instance lags, 0 when every one runs the store's version.\n"
      "\n"
      "  --json   the whole list as JSON, as zmq_status shows it\n" },

    { "delete", zmqctl_delete, "delete KIND NAME",
      "Deletes one object. Refuses while other objects refer to it, and\n"
      "names them.\n" },

    { "keygen", zmqctl_keygen, "keygen [--force]",
      "Writes a new random 256-bit key to the key file (mode 0600).\n"
      "Refuses to replace an existing key file unless --force is given:\n"
      "secrets sealed with the old key no longer open with a new one.\n"
      "Missing directories of its path are created with mode 0700\n"
      "(like install -d -m 0700); existing ones are left as they are.\n" },

    { "apikey", zmqctl_apikey, "apikey [--id ID | --revoke ID] NAME",
      "Adds a new key to the incoming apikey security definition NAME and\n"
      "prints it, once: 32 random bytes in base64url. Only its SHA-256\n"
      "digest is stored. Keys of one definition are all valid together,\n"
      "so a key is rotated without downtime: add the new one, move the\n"
      "clients, then revoke the old one.\n"
      "\n"
      "  --id ID       the new key's id (default: k1, k2, ...); requests\n"
      "                it admits carry x-zmq-auth = NAME:ID\n"
      "  --revoke ID   removes the key ID instead\n" },

    { "ping", zmqctl_ping_cmd,
      "ping [--timeout MS] amqp_def|stomp_def|http_outconn NAME",
      "Checks that a definition's server can be reached, over a fresh\n"
      "connection that is closed afterwards, and prints the time taken:\n"
      "  ok 2.8 ms, RabbitMQ 3.10.8\n"
      "or the reason, with exit status 1:\n"
      "  failed: ACCESS_REFUSED - Login was refused using authentication ...\n"
      "amqp_def: TCP connect (TLS when 'tls' is true: the certificate\n"
      "verified against 'ca_file' or the system's certificate authorities\n"
      "and for 'server_name' or the host unless 'verify' is false, a client\n"
      "certificate from 'cert_file'/'key_file'; the answer then ends with\n"
      "\"over TLSv1.3, certificate verified\" or names why the handshake\n"
      "failed), the AMQP handshake with the\n"
      "definition's vhost, username and password (opened with the key\n"
      "file), up to channel.open; 'host' first, then each of 'hosts' until\n"
      "one answers. The version is the broker's, from connection.start.\n"
      "stomp_def: TCP connect, STOMP 1.2 CONNECT with the definition's\n"
      "virtual_host, login and passcode up to CONNECTED (then DISCONNECT);\n"
      "'host' first, then each of 'hosts' until one answers; a broker's\n"
      "ERROR (a refused login) is the answer. The server is CONNECTED's.\n"
      "http_outconn: TCP connect to the url's host and port, and the TLS\n"
      "handshake when the url is https (the certificate and host name\n"
      "verified when 'tls' is true); no HTTP request is sent.\n"
      "\n"
      "  --timeout MS  bound of the connect and of each wait for the\n"
      "                server (default 5000, at most 3600000)\n" },

    { "passwd", zmqctl_passwd, "passwd KIND NAME",
      "Sets the secret of one object, read from the terminal twice without\n"
      "echo (they must match) or, when standard input is not a terminal,\n"
      "as its first line (without the line end). Never from the command\n"
      "line; an empty one is refused. It is sealed with the key file (or\n"
      "hashed, for incoming basic_auth) as import does, written in one\n"
      "step, and every gateway and zmqd takes it live. Prints the new\n"
      "version, never the secret.\n"
      "  amqp_def NAME                  password\n"
      "  stomp_def NAME                 passcode\n"
      "  security NAME   basic_auth     password (in: hashed; out: sealed)\n"
      "                  apikey (out)   key (incoming ones: 'zmqctl apikey')\n"
      "                  jwt HS*        secret (at least 32/48/64 bytes)\n"
      "  service NAME    kind redis     password of its url\n"
      "An http_outconn holds no secret: set the one of its security\n"
      "definition.\n" },

    { "send", zmqctl_send,
      "send [--timeout MS] --exchange EX --routing-key RK [--property K=V]... "
      "[--header K=V]... [--mandatory] OUTCONN FILE|-",
      "Publishes the bytes of FILE (- for standard input) through the\n"
      "amqp_outconn OUTCONN, over a fresh connection to its amqp_def, with\n"
      "publisher confirms, and prints the outcome:\n"
      "  confirmed MESSAGE_ID    the broker took it (exit 0)\n"
      "  returned: NO_ROUTE      --mandatory and no queue is bound (exit 1)\n"
      "  nacked                  the broker refused it (exit 1)\n"
      "  failed: REASON          e.g. a missing exchange (exit 1)\n"
      "Properties not given come from the outgoing connection as the\n"
      "gateway sends them (delivery_mode, priority, expiration,\n"
      "content_type, content_encoding, user_id, app_id), timestamp is now\n"
      "and message_id a new UUID.\n"
      "\n"
      "  --exchange EX      the exchange ('' for the default exchange)\n"
      "  --routing-key RK   the routing key (may be '')\n"
      "  --property K=V     K one of content_type, content_encoding,\n"
      "                     delivery_mode (1, 2, transient, persistent),\n"
      "                     priority (0-9), correlation_id, reply_to,\n"
      "                     expiration (ms), message_id, timestamp (Unix\n"
      "                     seconds), type, user_id, app_id\n"
      "  --header K=V       a string header (token characters; not x-*,\n"
      "                     CC or BCC)\n"
      "  --mandatory        ask the broker to return it when unroutable\n"
      "  --timeout MS       bound of the connect and of each wait for the\n"
      "                     broker, the confirm included (default 5000)\n" },

    { "invoke", zmqctl_invoke, "invoke SERVICE [FILE|-]",
      "Runs the service SERVICE as zmqd would, on the configuration in\n"
      "Redis, with the bytes of FILE (- for standard input; none: empty)\n"
      "as the message body, and prints the answer's body on standard\n"
      "output and its status on standard error (\"status 200\n"
      "application/json\"). Exit 0 when the status is 2xx, else 1.\n"
      "  http     the endpoint's status, content type and body\n"
      "  rpc      the reply (status from x-zmq-status); none within the\n"
      "           service's timeout is a failure\n"
      "  invoke   modes sync and sync_async wait for zmqd's reply (up to\n"
      "           the service's timeout); async prints 202\n"
      "           {\"accepted\": true, \"cid\": ...} once confirmed\n"
      "  others   {\"ok\": true}\n"
      "A failure without an answer of the service's own prints status 502\n"
      "{\"error\": \"service_failed\", \"message\": ...}.\n" },

    { "version", zmqctl_version, "version",
      "Prints zmqctl's version and the configuration version in Redis.\n" },

    { NULL, NULL, NULL, NULL }
};


static void
zmqctl_usage(FILE *out)
{
    const zmqctl_cmd_t  *c;

    fprintf(out,
            "usage: zmqctl [--redis URL] [--key-file PATH] COMMAND [ARGS]\n"
            "\n"
            "commands:\n");

    for (c = zmqctl_cmds; c->name; c++) {
        fprintf(out, "  %s\n", c->usage);
    }

    fprintf(out,
            "\n"
            "options:\n"
            "  --redis URL        redis://[[user]:password@]host[:port][/db]"
            ";\n"
            "                     rediss://... for TLS, options in the "
            "query:\n"
            "                     ?ca_file=&verify=0|1&server_name=&"
            "cert_file=&key_file=\n"
            "                     redis-sentinel://[[user]:password@]"
            "host[:port],...\n"
            "                     /master[/db]: the master named, asked "
            "of the sentinels\n"
            "                     default $ZMQ_REDIS, else %s\n"
            "  --key-file PATH    key that seals secrets; default\n"
            "                     $ZMQ_KEY_FILE, else %s\n"
            "  --version-floor N  import, restore, wipe: the store's version "
            "afterwards\n"
            "                     is at least N\n"
            "  --timeout MS       ping, send: bound of each wait for the "
            "server\n"
            "                     (default %d)\n"
            "  -h, --help         help; 'zmqctl COMMAND --help' for one "
            "command\n"
            "\n"
            "exit status: 0 success, 1 failure, 2 usage error\n",
            ZGW_REDIS_DEFAULT, ZMQCTL_KEY_DEFAULT, ZMQCTL_NET_TIMEOUT);
}


void
zmqctl_print_errors(const char *what, zgw_errors_t *errs)
{
    size_t  i;

    if (errs->n == 1) {
        fprintf(stderr, "zmqctl: %s: %s\n", what, errs->msgs[0]);
        return;
    }

    fprintf(stderr, "zmqctl: %s: %zu errors:\n", what, errs->n);
    for (i = 0; i < errs->n; i++) {
        fprintf(stderr, "  - %s\n", errs->msgs[i]);
    }
}


/* why a stored object is corrupt, as zgw_store_load() noted it */
static const char *
zmqctl_reason(const json_t *why)
{
    return json_is_string(why) ? json_string_value(why)
                               : "it does not validate";
}


zgw_store_t *
zmqctl_connect(zmqctl_opts_t *o)
{
    zgw_store_t   *st;
    zgw_errors_t   errs;

    zgw_errors_init(&errs);
    st = zgw_store_connect(o->redis, ZMQCTL_TIMEOUT_MS, &errs);
    if (st == NULL) {
        zmqctl_print_errors("store", &errs);
    }
    zgw_errors_free(&errs);
    return st;
}


/*
 * What every write does before it is sent, as import does: references
 * checked (unless refs is 0), then secrets sealed or hashed, the key read
 * only when a clear secret needs it (and wiped after). ZGW_OK or errors.
 */
int
zmqctl_seal(zmqctl_opts_t *o, zgw_config_t *next, const zgw_config_t *prev,
    int refs, zgw_errors_t *errs)
{
    zgw_key_t  key, *keyp;

    keyp = NULL;

    if (refs) {
        zgw_config_check_refs(next, errs);
    }

    if (errs->n == 0 && zgw_config_needs_key(next, prev)) {
        if (zgw_key_load(&key, o->key_file, errs) == ZGW_OK) {
            keyp = &key;
        }
    }

    if (errs->n == 0) {
        zgw_config_seal(next, prev, keyp, errs);
    }

    if (keyp != NULL) {
        OPENSSL_cleanse(&key, sizeof(key));
    }

    return errs->n == 0 ? ZGW_OK : ZGW_ERROR;
}


/*
 * Loads the stored configuration. Objects that do not load (corrupt JSON,
 * a name that does not match the key, a field the model refuses) are in
 * cfg->invalid with their reasons: every follower refuses the whole
 * configuration while one is stored, so zmqctl shows them (warn) and can
 * delete or replace them.
 */
zgw_config_t *
zmqctl_load(zgw_store_t *st, int warn)
{
    int            k;
    size_t         n;
    json_t        *why;
    const char    *name;
    zgw_config_t  *cfg;
    zgw_errors_t   errs;

    cfg = zgw_config_new();
    if (cfg == NULL) {
        fprintf(stderr, "zmqctl: out of memory\n");
        return NULL;
    }

    zgw_errors_init(&errs);

    if (zgw_store_load(st, cfg, &errs) != ZGW_OK) {
        n = 0;
        for (k = 0; k < ZGW_KIND_MAX; k++) {
            n += json_object_size(cfg->invalid[k]);
        }

        /* not one object's fault: the store's */
        if (n == 0 || strncmp(errs.msgs[0], "redis ", 6) == 0) {
            zmqctl_print_errors("store", &errs);
            zgw_errors_free(&errs);
            zgw_config_free(cfg);
            return NULL;
        }

        for (k = 0; k < ZGW_KIND_MAX && warn; k++) {
            json_object_foreach(cfg->invalid[k], name, why) {
                fprintf(stderr, "zmqctl: warning: %s '%s' is corrupt: %s\n",
                        zgw_kind_name(k), name, zmqctl_reason(why));
            }
        }

        if (warn) {
            fprintf(stderr, "zmqctl: warning: gateways and zmqd refuse the "
                    "whole configuration while a corrupt object is stored: "
                    "'zmqctl delete KIND NAME' removes one, 'zmqctl import' "
                    "of a valid object of that name replaces it\n");
        }
    }

    zgw_errors_free(&errs);
    return cfg;
}


/* the stored configuration, read over a connection of its own */
zgw_config_t *
zmqctl_snapshot(zmqctl_opts_t *o, int warn)
{
    zgw_store_t   *st;
    zgw_config_t  *cfg;

    st = zmqctl_connect(o);
    if (st == NULL) {
        return NULL;
    }

    cfg = zmqctl_load(st, warn);
    zgw_store_close(st);
    return cfg;
}


/* ping: a stomp_def in zmqctl_stomp.c, the other kinds in zmqctl_amqp.c */
static int
zmqctl_ping_cmd(zmqctl_opts_t *o)
{
    if (strcmp(o->argv[0], "stomp_def") == 0) {
        return zmqctl_ping_stomp(o);
    }

    return zmqctl_ping(o);
}


static int
zmqctl_need_args(zmqctl_opts_t *o, const zmqctl_cmd_t *cmd, int min, int max)
{
    if (o->argc < min || o->argc > max) {
        fprintf(stderr, "usage: zmqctl %s\n", cmd->usage);
        return 0;
    }

    return 1;
}


int
zmqctl_kind_arg(const char *s)
{
    int  k;

    k = zgw_kind_from_name(s);
    if (k < 0) {
        fprintf(stderr, "zmqctl: unknown kind '%s' (expected one of: "
                ZGW_KIND_NAMES ")\n", s);
    }

    return k;
}


json_t *
zmqctl_object(zgw_config_t *cfg, int kind, const char *name)
{
    json_t  *obj, *why;

    obj = zgw_config_get(cfg, kind, name);
    if (obj != NULL) {
        return obj;
    }

    why = json_object_get(cfg->invalid[kind], name);
    if (why != NULL) {
        fprintf(stderr, "zmqctl: %s '%s' is corrupt: %s\n",
                zgw_kind_name(kind), name, zmqctl_reason(why));
    } else {
        fprintf(stderr, "zmqctl: %s '%s' does not exist\n",
                zgw_kind_name(kind), name);
    }

    return NULL;
}


/* a write into a store that had no version: followers may not take it */
static void
zmqctl_warn_unversioned(long long version)
{
    fprintf(stderr,
            "zmqctl: warning: the store had no version (a new Redis, or one "
            "that lost its data).\n"
            "zmqctl: gateways and zmqd that ran a configuration before keep "
            "it (\"regressed\" in\n"
            "zmqctl: zmq_status) until the store's version, now %lld, "
            "reaches theirs. If Redis\n"
            "zmqctl: lost its data, bring it back with 'zmqctl restore' "
            "from a gateway's cache\n"
            "zmqctl: (DIR/config.json), or give --version-floor N above "
            "their config_version.\n", version);
}


static int
zmqctl_import(zmqctl_opts_t *o)
{
    int            rc, k;
    size_t         changes;
    json_t        *obj;
    long long      version;
    const char    *file, *name;
    zgw_store_t   *st;
    zgw_errors_t   errs;
    zgw_config_t  *file_cfg, *prev, *next;

    file = o->argv[0];
    rc = ZMQCTL_EXIT_FAIL;
    st = NULL;
    prev = NULL;
    next = NULL;
    changes = 0;
    version = 0;
    zgw_errors_init(&errs);

    file_cfg = zgw_config_new();
    if (file_cfg == NULL) {
        fprintf(stderr, "zmqctl: out of memory\n");
        return ZMQCTL_EXIT_FAIL;
    }

    /*
     * Every object of the file is validated on its own first; references
     * are checked once the file is merged with what the store holds.
     */
    zgw_config_load_file(file_cfg, file, ZGW_LOAD_NO_REFS, &errs);

    st = zmqctl_connect(o);
    if (st == NULL) {
        goto done;
    }

    prev = zmqctl_load(st, 1);
    if (prev == NULL) {
        goto done;
    }

    next = o->replace ? zgw_config_new() : zgw_config_copy(prev);
    if (next == NULL) {
        fprintf(stderr, "zmqctl: out of memory\n");
        goto done;
    }

    next->version = prev->version;

    for (k = 0; k < ZGW_KIND_MAX; k++) {
        json_object_foreach(file_cfg->objs[k], name, obj) {
            json_object_set(next->objs[k], name, obj);
        }
        json_object_update(next->invalid[k], file_cfg->invalid[k]);
    }

    (void) zmqctl_seal(o, next, prev, 1, &errs);

    if (errs.n == 0 && o->floor >= 0 && !o->check) {
        zgw_store_replace(st, prev, next, o->floor, "import", &version,
                          &changes, &errs);

    } else if (errs.n == 0) {
        zgw_store_apply(st, prev, next, o->check, &version, &changes, &errs);
    }

    if (errs.n) {
        zmqctl_print_errors(file, &errs);
        fprintf(stderr, "zmqctl: nothing was written\n");
        goto done;
    }

    if (o->check) {
        printf("%s: valid (%zu objects); an import would change %zu\n",
               file, zgw_config_total(file_cfg), changes);
        rc = ZMQCTL_EXIT_OK;
        goto done;
    }

    printf("imported %s: %zu objects, %zu changed, version %lld\n", file,
           zgw_config_total(file_cfg), changes, version);

    if (prev->version == 0 && o->floor < 0 && changes > 0) {
        zmqctl_warn_unversioned(version);
    }

    rc = ZMQCTL_EXIT_OK;

done:

    zgw_errors_free(&errs);
    zgw_config_free(file_cfg);
    zgw_config_free(prev);
    zgw_config_free(next);
    zgw_store_close(st);
    return rc;
}


static int
zmqctl_restore(zmqctl_opts_t *o)
{
    int            rc;
    size_t         changes;
    json_t        *doc, *conf;
    long long      snap, floor, version;
    const char    *file;
    zgw_store_t   *st;
    json_error_t   jerr;
    zgw_errors_t   errs;
    zgw_config_t  *file_cfg, *prev;

    file = o->argv[0];
    rc = ZMQCTL_EXIT_FAIL;
    st = NULL;
    prev = NULL;
    changes = 0;
    version = 0;
    zgw_errors_init(&errs);

    doc = json_load_file(file, 0, &jerr);
    if (doc == NULL) {
        fprintf(stderr, "zmqctl: %s: line %d, column %d: %s\n", file,
                jerr.line, jerr.column, jerr.text);
        return ZMQCTL_EXIT_FAIL;
    }

    /* a gateway's cache is {"version": N, "config": {...}}; else an export */
    snap = -1;
    conf = doc;

    if (json_is_object(json_object_get(doc, "config"))
        && json_is_integer(json_object_get(doc, "version")))
    {
        conf = json_object_get(doc, "config");
        snap = json_integer_value(json_object_get(doc, "version"));
    }

    file_cfg = zgw_config_new();
    if (file_cfg == NULL) {
        fprintf(stderr, "zmqctl: out of memory\n");
        json_decref(doc);
        return ZMQCTL_EXIT_FAIL;
    }

    zgw_config_load_doc(file_cfg, conf, 0, &errs);
    json_decref(doc);

    if (errs.n) {
        zmqctl_print_errors(file, &errs);
        fprintf(stderr, "zmqctl: nothing was written\n");
        goto done;
    }

    st = zmqctl_connect(o);
    if (st == NULL) {
        goto done;
    }

    prev = zmqctl_load(st, 1);
    if (prev == NULL) {
        goto done;
    }

    if (errs.n == 0) {
        (void) zmqctl_seal(o, file_cfg, prev, 0, &errs);
    }

    if (errs.n) {
        zmqctl_print_errors(file, &errs);
        fprintf(stderr, "zmqctl: nothing was written\n");
        goto done;
    }

    floor = snap >= 0 ? snap + 1 : 0;
    if (o->floor > floor) {
        floor = o->floor;
    }

    if (floor < prev->version + 1) {
        floor = prev->version + 1;
    }

    if (o->check) {
        printf("%s: valid (%zu objects%s); a restore would make the store "
               "version %lld\n", file, zgw_config_total(file_cfg),
               snap >= 0 ? ", a gateway's cache" : ", an export", floor);
        rc = ZMQCTL_EXIT_OK;
        goto done;
    }

    if (zgw_store_replace(st, prev, file_cfg, floor, "restore", &version,
                          &changes, &errs)
        != ZGW_OK)
    {
        zmqctl_print_errors("restore", &errs);
        fprintf(stderr, "zmqctl: nothing was written\n");
        goto done;
    }

    if (snap >= 0) {
        printf("restored %s: %zu objects (cached version %lld), %zu "
               "changed, version %lld\n", file, zgw_config_total(file_cfg),
               snap, changes, version);

    } else {
        printf("restored %s: %zu objects, %zu changed, version %lld\n",
               file, zgw_config_total(file_cfg), changes, version);

        if (o->floor < 0) {
            fprintf(stderr,
                    "zmqctl: warning: %s holds no version (an export): "
                    "followers that ran a\n"
                    "zmqctl: version above %lld keep it (\"regressed\" in "
                    "zmq_status); run again with\n"
                    "zmqctl: --version-floor N, N above their "
                    "config_version.\n", file, version);
        }
    }

    rc = ZMQCTL_EXIT_OK;

done:

    zgw_errors_free(&errs);
    zgw_config_free(file_cfg);
    zgw_config_free(prev);
    zgw_store_close(st);
    return rc;
}


static int
zmqctl_wipe(zmqctl_opts_t *o)
{
    int            rc;
    size_t         changes;
    long long      version;
    zgw_store_t   *st;
    zgw_errors_t   errs;
    zgw_config_t  *prev, *next;

    if (!o->yes) {
        fprintf(stderr, "zmqctl: wipe deletes every object of the "
                "configuration: give --yes\n");
        return ZMQCTL_EXIT_USAGE;
    }

    st = zmqctl_connect(o);
    if (st == NULL) {
        return ZMQCTL_EXIT_FAIL;
    }

    rc = ZMQCTL_EXIT_FAIL;
    next = NULL;
    changes = 0;
    version = 0;
    zgw_errors_init(&errs);

    prev = zmqctl_load(st, 1);
    if (prev == NULL) {
        goto done;
    }

    if (prev->version == 0 && o->floor < 0) {
        fprintf(stderr,
                "zmqctl: the store has no version: it is empty already, "
                "maybe by accident.\n"
                "zmqctl: Followers keep their configuration until the "
                "store's version reaches\n"
                "zmqctl: theirs: give --version-floor N above the "
                "config_version that zmq_status\n"
                "zmqctl: shows to make them run an empty one. Nothing was "
                "written.\n");
        goto done;
    }

    next = zgw_config_new();
    if (next == NULL) {
        fprintf(stderr, "zmqctl: out of memory\n");
        goto done;
    }

    if (zgw_store_replace(st, prev, next, o->floor, "wipe", &version,
                          &changes, &errs)
        != ZGW_OK)
    {
        zmqctl_print_errors("wipe", &errs);
        fprintf(stderr, "zmqctl: nothing was written\n");
        goto done;
    }

    printf("wiped: %zu objects deleted, version %lld\n", changes, version);
    rc = ZMQCTL_EXIT_OK;

done:

    zgw_errors_free(&errs);
    zgw_config_free(prev);
    zgw_config_free(next);
    zgw_store_close(st);
    return rc;
}


static int
zmqctl_export(zmqctl_opts_t *o)
{
    int            rc;
    FILE          *out;
    json_t        *doc;
    zgw_config_t  *cfg;

    cfg = zmqctl_snapshot(o, 1);
    if (cfg == NULL) {
        return ZMQCTL_EXIT_FAIL;
    }

    doc = zgw_config_export(cfg, 0);
    zgw_config_free(cfg);
    if (doc == NULL) {
        fprintf(stderr, "zmqctl: out of memory\n");
        return ZMQCTL_EXIT_FAIL;
    }

    out = stdout;
    if (o->output != NULL) {
        out = fopen(o->output, "w");
        if (out == NULL) {
            perror(o->output);
            json_decref(doc);
            return ZMQCTL_EXIT_FAIL;
        }
    }

    rc = json_dumpf(doc, out, JSON_INDENT(2) | JSON_SORT_KEYS) == 0
         && fputc('\n', out) != EOF;

    if (out != stdout) {
        rc = (fclose(out) == 0) && rc;
    } else {
        rc = (fflush(out) == 0) && rc;
    }

    json_decref(doc);

    if (!rc) {
        fprintf(stderr, "zmqctl: export: write failed\n");
        return ZMQCTL_EXIT_FAIL;
    }

    return ZMQCTL_EXIT_OK;
}


static int
zmqctl_get(zmqctl_opts_t *o)
{
    int            k;
    json_t        *obj, *shown, *why;
    zgw_config_t  *cfg;

    k = zmqctl_kind_arg(o->argv[0]);
    if (k < 0) {
        return ZMQCTL_EXIT_USAGE;
    }

    cfg = zmqctl_snapshot(o, 0);
    if (cfg == NULL) {
        return ZMQCTL_EXIT_FAIL;
    }

    obj = zgw_config_get(cfg, k, o->argv[1]);

    why = json_object_get(cfg->invalid[k], o->argv[1]);
    if (obj == NULL && why != NULL) {
        fprintf(stderr, "zmqctl: %s '%s' is corrupt: %s\n"
                "zmqctl: gateways and zmqd refuse the whole configuration "
                "while it is stored: 'zmqctl delete %s %s' removes it, "
                "'zmqctl import' of a valid %s '%s' replaces it\n",
                o->argv[0], o->argv[1], zmqctl_reason(why), o->argv[0],
                o->argv[1], o->argv[0], o->argv[1]);
        zgw_config_free(cfg);
        return ZMQCTL_EXIT_FAIL;
    }

    if (obj == NULL) {
        fprintf(stderr, "zmqctl: %s '%s' does not exist\n", o->argv[0],
                o->argv[1]);
        zgw_config_free(cfg);
        return ZMQCTL_EXIT_FAIL;
    }

    shown = zgw_object_export(k, obj, 0);
    json_dumpf(shown, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
    putchar('\n');
    json_decref(shown);
    zgw_config_free(cfg);
    return ZMQCTL_EXIT_OK;
}


static int
zmqctl_list(zmqctl_opts_t *o)
{
    int            k, only, corrupt;
    json_t        *doc, *list, *obj, *why;
    size_t         i;
    const char    *name;
    zgw_config_t  *cfg;

    only = -1;
    if (o->argc == 1) {
        only = zmqctl_kind_arg(o->argv[0]);
        if (only < 0) {
            return ZMQCTL_EXIT_USAGE;
        }
    }

    cfg = zmqctl_snapshot(o, 0);
    if (cfg == NULL) {
        return ZMQCTL_EXIT_FAIL;
    }

    doc = zgw_config_export(cfg, 0);
    corrupt = 0;

    for (k = 0; k < ZGW_KIND_MAX; k++) {
        if (only >= 0 && k != only) {
            continue;
        }

        list = json_object_get(doc, zgw_kind_name(k));
        json_array_foreach(list, i, obj) {
            printf("%s\t%s\t%s\n", zgw_kind_name(k),
                   json_string_value(json_object_get(obj, "name")),
                   json_is_true(json_object_get(obj, "is_active"))
                   ? "active" : "inactive");
        }

        /* what followers refuse: "corrupt" and why */
        json_object_foreach(cfg->invalid[k], name, why) {
            printf("%s\t%s\tcorrupt\t%s\n", zgw_kind_name(k), name,
                   zmqctl_reason(why));
            corrupt++;
        }
    }

    if (corrupt) {
        fprintf(stderr, "zmqctl: warning: %d corrupt object%s: gateways and "
                "zmqd refuse the whole configuration while one is stored; "
                "'zmqctl delete KIND NAME' removes one, 'zmqctl import' of a "
                "valid object of that name replaces it\n", corrupt,
                corrupt == 1 ? "" : "s");
    }

    json_decref(doc);
    zgw_config_free(cfg);
    return ZMQCTL_EXIT_OK;
}


static int
zmqctl_delete(zmqctl_opts_t *o)
{
    int            k, rc;
    size_t         i;
    long long      version;
    zgw_store_t   *st;
    zgw_errors_t   errs, refs;
    zgw_config_t  *prev, *next;

    k = zmqctl_kind_arg(o->argv[0]);
    if (k < 0) {
        return ZMQCTL_EXIT_USAGE;
    }

    st = zmqctl_connect(o);
    if (st == NULL) {
        return ZMQCTL_EXIT_FAIL;
    }

    rc = ZMQCTL_EXIT_FAIL;
    next = NULL;
    zgw_errors_init(&errs);
    zgw_errors_init(&refs);

    prev = zmqctl_load(st, 1);
    if (prev == NULL) {
        goto done;
    }

    if (zgw_config_get(prev, k, o->argv[1]) == NULL
        && json_object_get(prev->invalid[k], o->argv[1]) == NULL)
    {
        fprintf(stderr, "zmqctl: %s '%s' does not exist\n", o->argv[0],
                o->argv[1]);
        goto done;
    }

    if (zgw_config_referrers(prev, k, o->argv[1], &refs) > 0) {
        fprintf(stderr, "zmqctl: %s '%s' is still used by:\n", o->argv[0],
                o->argv[1]);
        for (i = 0; i < refs.n; i++) {
            fprintf(stderr, "  - %s\n", refs.msgs[i]);
        }
        fprintf(stderr, "zmqctl: nothing was deleted\n");
        goto done;
    }

    next = zgw_config_copy(prev);
    if (next == NULL) {
        goto done;
    }

    zgw_config_delete(next, k, o->argv[1]);
    json_object_del(next->invalid[k], o->argv[1]);      /* a corrupt one */

    if (zgw_store_apply(st, prev, next, 0, &version, NULL, &errs) != ZGW_OK) {
        zmqctl_print_errors("delete", &errs);
        goto done;
    }

    printf("deleted %s '%s', version %lld\n", o->argv[0], o->argv[1],
           version);
    rc = ZMQCTL_EXIT_OK;

done:

    zgw_errors_free(&errs);
    zgw_errors_free(&refs);
    zgw_config_free(prev);
    zgw_config_free(next);
    zgw_store_close(st);
    return rc;
}


/*
 * Creates the missing directories of the key file's path, as
 * "install -d -m 0700" with "mkdir -p": every directory made here gets
 * mode 0700 whatever the umask; directories that exist are left as they
 * are. Returns -1 (with the error printed) when one cannot be made.
 */
static int
zmqctl_keygen_dirs(const char *path)
{
    int          rc, last;
    char        *dir, *p;
    size_t       len;
    struct stat  st;

    len = strlen(path);
    dir = malloc(len + 1);
    if (dir == NULL) {
        fprintf(stderr, "zmqctl: keygen: out of memory\n");
        return -1;
    }

    memcpy(dir, path, len + 1);

    p = strrchr(dir, '/');
    if (p == NULL || p == dir) {
        free(dir);
        return 0;
    }

    *p = '\0';

    if (stat(dir, &st) == 0) {
        free(dir);
        return 0;
    }

    rc = 0;

    for (p = dir + 1; /* void */; p++) {
        if (*p != '/' && *p != '\0') {
            continue;
        }

        last = (*p == '\0');

        if (!last && p[-1] == '/') {
            continue;
        }

        *p = '\0';

        if (mkdir(dir, 0700) == 0) {
            if (chmod(dir, 0700) != 0) {
                fprintf(stderr, "zmqctl: keygen: directory '%s': %s\n",
                        dir, strerror(errno));
                rc = -1;
                break;
            }

            fprintf(stderr, "zmqctl: created directory %s (mode 0700)\n",
                    dir);

        } else if (errno != EEXIST) {
            fprintf(stderr, "zmqctl: keygen: cannot create directory "
                    "'%s': %s\n", dir, strerror(errno));
            rc = -1;
            break;
        }

        if (last) {
            break;
        }

        *p = '/';
    }

    free(dir);
    return rc;
}


static int
zmqctl_keygen(zmqctl_opts_t *o)
{
    zgw_errors_t  errs;

    zgw_errors_init(&errs);

    if (zmqctl_keygen_dirs(o->key_file) != 0) {
        return ZMQCTL_EXIT_FAIL;
    }

    if (zgw_key_generate(o->key_file, o->force, &errs) != ZGW_OK) {
        zmqctl_print_errors("keygen", &errs);
        zgw_errors_free(&errs);
        return ZMQCTL_EXIT_FAIL;
    }

    printf("wrote a new key to %s\n", o->key_file);
    return ZMQCTL_EXIT_OK;
}


/* the key list of an incoming apikey definition, changed in a copy */
static int
zmqctl_apikey_change(zmqctl_opts_t *o, json_t *obj, char *key, char *id,
    size_t idlen)
{
    size_t       i, n;
    json_t      *keys, *k;
    const char  *kid;
    zgw_errors_t errs;
    char         hex[ZGW_SHA256_HEX_LEN + 1];

    keys = json_object_get(obj, "keys");
    if (keys == NULL) {
        keys = json_array();
        json_object_set_new(obj, "keys", keys);
    }

    if (o->revoke != NULL) {
        json_array_foreach(keys, i, k) {
            kid = json_string_value(json_object_get(k, "id"));
            if (kid != NULL && strcmp(kid, o->revoke) == 0) {
                json_array_remove(keys, i);
                snprintf(id, idlen, "%s", o->revoke);
                return ZGW_OK;
            }
        }

        fprintf(stderr, "zmqctl: security '%s' has no key '%s'\n",
                o->argv[0], o->revoke);
        return ZGW_ERROR;
    }

    if (o->id != NULL) {
        snprintf(id, idlen, "%s", o->id);
    }

    for (n = json_array_size(keys) + 1; o->id == NULL; n++) {
        snprintf(id, idlen, "k%zu", n);
        o->id = id;
        json_array_foreach(keys, i, k) {
            kid = json_string_value(json_object_get(k, "id"));
            if (kid != NULL && strcmp(kid, id) == 0) {
                o->id = NULL;
                break;
            }
        }
    }

    json_array_foreach(keys, i, k) {
        kid = json_string_value(json_object_get(k, "id"));
        if (kid != NULL && strcmp(kid, id) == 0) {
            fprintf(stderr, "zmqctl: security '%s' already has a key '%s': "
                    "revoke it first, or choose another --id\n", o->argv[0],
                    id);
            return ZGW_ERROR;
        }
    }

    zgw_errors_init(&errs);
    if (zgw_apikey_generate(key, hex, &errs) != ZGW_OK) {
        zmqctl_print_errors("apikey", &errs);
        zgw_errors_free(&errs);
        return ZGW_ERROR;
    }

    json_array_append_new(keys, json_pack("{s:s,s:s}", "id", id,
                                          "sha256", hex));
    return ZGW_OK;
}


static int
zmqctl_apikey(zmqctl_opts_t *o)
{
    int            rc;
    char           key[ZGW_APIKEY_LEN + 1], id[ZGW_APIKEY_ID_MAX + 1];
    json_t        *cur, *obj;
    long long      version;
    size_t         changes;
    const char    *type, *dir, *name;
    zgw_store_t   *st;
    zgw_errors_t   errs;
    zgw_config_t  *prev, *next;

    name = o->argv[0];
    rc = ZMQCTL_EXIT_FAIL;
    prev = NULL;
    next = NULL;
    obj = NULL;
    key[0] = '\0';
    zgw_errors_init(&errs);

    if (o->id != NULL && o->revoke != NULL) {
        fprintf(stderr, "zmqctl: give --id or --revoke, not both\n");
        return ZMQCTL_EXIT_USAGE;
    }

    st = zmqctl_connect(o);
    if (st == NULL) {
        return ZMQCTL_EXIT_FAIL;
    }

    prev = zmqctl_load(st, 1);
    if (prev == NULL) {
        goto done;
    }

    cur = zgw_config_get(prev, ZGW_KIND_SECURITY, name);
    type = json_string_value(json_object_get(cur, "type"));
    dir = json_string_value(json_object_get(cur, "direction"));

    if (cur == NULL || type == NULL || strcmp(type, "apikey") != 0
        || (dir != NULL && strcmp(dir, "in") != 0))
    {
        fprintf(stderr, "zmqctl: there is no incoming apikey security "
                "definition '%s'\n", name);
        goto done;
    }

    next = zgw_config_copy(prev);
    obj = json_deep_copy(cur);
    if (next == NULL || obj == NULL) {
        fprintf(stderr, "zmqctl: out of memory\n");
        goto done;
    }

    next->version = prev->version;

    if (zmqctl_apikey_change(o, obj, key, id, sizeof(id)) != ZGW_OK) {
        goto done;
    }

    if (zgw_config_put(next, ZGW_KIND_SECURITY, obj, name, &errs) == ZGW_OK
        && zmqctl_seal(o, next, prev, 1, &errs) == ZGW_OK)
    {
        zgw_store_apply(st, prev, next, 0, &version, &changes, &errs);
    }

    if (errs.n) {
        zmqctl_print_errors(name, &errs);
        fprintf(stderr, "zmqctl: nothing was written\n");
        goto done;
    }

    if (o->revoke != NULL) {
        printf("revoked key '%s' of security '%s': version %lld\n", id,
               name, version);
    } else {
        printf("added key '%s' to security '%s': version %lld\n"
               "the key (shown only now; only its digest is stored):\n"
               "%s\n", id, name, version, key);
    }

    rc = ZMQCTL_EXIT_OK;

done:

    OPENSSL_cleanse(key, sizeof(key));
    json_decref(obj);
    zgw_errors_free(&errs);
    zgw_config_free(prev);
    zgw_config_free(next);
    zgw_store_close(st);
    return rc;
}


static int
zmqctl_version(zmqctl_opts_t *o)
{
    char           shown[ZGW_URL_SHOW_MAX];
    long long      version;
    zgw_store_t   *st;
    zgw_errors_t   errs;

    printf("zmqctl %s\n", ZGW_VERSION);

    st = zmqctl_connect(o);
    if (st == NULL) {
        return ZMQCTL_EXIT_FAIL;
    }

    zgw_errors_init(&errs);

    if (zgw_store_version(st, &version, &errs) != ZGW_OK) {
        zmqctl_print_errors("version", &errs);
        zgw_errors_free(&errs);
        zgw_store_close(st);
        return ZMQCTL_EXIT_FAIL;
    }

    printf("configuration version %lld at %s\n", version,
           zgw_url_redact(o->redis, shown, sizeof(shown)));
    zgw_store_close(st);
    return ZMQCTL_EXIT_OK;
}


/* send OUTCONN FILE|-, with --exchange and --routing-key given */
static int
zmqctl_send_args(zmqctl_opts_t *o, const zmqctl_cmd_t *cmd)
{
    if (o->argc != 2 || o->exchange == NULL || o->routing_key == NULL) {
        fprintf(stderr, "usage: zmqctl %s\n", cmd->usage);
        if (o->argc == 2) {
            fprintf(stderr, "zmqctl: send needs --exchange and "
                    "--routing-key ('' for the default exchange or an "
                    "empty key)\n");
        }
        return 0;
    }

    return 1;
}


static int
zmqctl_main(int argc, char **argv, const zmqctl_opts_t *op)
{
    int                  c, help;
    long                 n;
    char                *end;
    const char          *env;
    zmqctl_opts_t        o;
    const zmqctl_cmd_t  *cmd;

    static const struct option  longopts[] = {
        { "redis", required_argument, NULL, 'r' },
        { "key-file", required_argument, NULL, 'k' },
        { "output", required_argument, NULL, 'o' },
        { "check", no_argument, NULL, 'c' },
        { "replace", no_argument, NULL, 'R' },
        { "force", no_argument, NULL, 'f' },
        { "yes", no_argument, NULL, 'y' },
        { "version-floor", required_argument, NULL, 'V' },
        { "id", required_argument, NULL, 'i' },
        { "revoke", required_argument, NULL, 'x' },
        { "timeout", required_argument, NULL, 't' },
        { "exchange", required_argument, NULL, 'e' },
        { "routing-key", required_argument, NULL, 'K' },
        { "property", required_argument, NULL, 'P' },
        { "header", required_argument, NULL, 'H' },
        { "mandatory", no_argument, NULL, 'm' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };

    o = *op;
    help = 0;

    /* a peer that closes a socket is an error to report, not a signal */
    (void) signal(SIGPIPE, SIG_IGN);

    env = getenv("ZMQ_REDIS");
    o.redis = env && *env ? env : ZGW_REDIS_DEFAULT;
    env = getenv("ZMQ_KEY_FILE");
    o.key_file = env && *env ? env : ZMQCTL_KEY_DEFAULT;

    while ((c = getopt_long(argc, argv, "ho:", longopts, NULL)) != -1) {
        switch (c) {
        case 'r':
            o.redis = optarg;
            break;
        case 'k':
            o.key_file = optarg;
            break;
        case 'o':
            o.output = optarg;
            break;
        case 'c':
            o.check = 1;
            break;
        case 'R':
            o.replace = 1;
            break;
        case 'f':
            o.force = 1;
            break;
        case 'i':
            o.id = optarg;
            break;
        case 'x':
            o.revoke = optarg;
            break;
        case 'y':
            o.yes = 1;
            break;
        case 't':
            errno = 0;
            n = strtol(optarg, &end, 10);
            if (errno || *optarg == '\0' || *end != '\0' || n < 1
                || n > ZMQCTL_NET_TIMEOUT_MAX)
            {
                fprintf(stderr, "zmqctl: --timeout needs milliseconds "
                        "1-%d, not '%s'\n", ZMQCTL_NET_TIMEOUT_MAX, optarg);
                return ZMQCTL_EXIT_USAGE;
            }
            o.timeout = (int) n;
            break;
        case 'e':
            o.exchange = optarg;
            break;
        case 'K':
            o.routing_key = optarg;
            break;
        case 'P':
            o.props[o.nprops++] = optarg;
            break;
        case 'H':
            o.headers[o.nheaders++] = optarg;
            break;
        case 'm':
            o.mandatory = 1;
            break;
        case 'j':
            o.json = 1;
            break;
        case 'V':
            errno = 0;
            o.floor = strtoll(optarg, &end, 10);
            if (errno || *optarg == '\0' || *end != '\0' || o.floor < 0) {
                fprintf(stderr, "zmqctl: --version-floor needs a number "
                        "0 or more, not '%s'\n", optarg);
                return ZMQCTL_EXIT_USAGE;
            }
            break;
        case 'h':
            help = 1;
            break;
        default:
            zmqctl_usage(stderr);
            return ZMQCTL_EXIT_USAGE;
        }
    }

    if (optind >= argc) {
        zmqctl_usage(help ? stdout : stderr);
        return help ? ZMQCTL_EXIT_OK : ZMQCTL_EXIT_USAGE;
    }

    for (cmd = zmqctl_cmds; cmd->name; cmd++) {
        if (strcmp(cmd->name, argv[optind]) == 0) {
            break;
        }
    }

    if (cmd->name == NULL) {
        if (strcmp(argv[optind], "help") == 0) {
            zmqctl_usage(stdout);
            return ZMQCTL_EXIT_OK;
        }
        fprintf(stderr, "zmqctl: unknown command '%s'\n\n", argv[optind]);
        zmqctl_usage(stderr);
        return ZMQCTL_EXIT_USAGE;
    }

    if (help) {
        printf("usage: zmqctl [--redis URL] [--key-file PATH] %s\n\n%s",
               cmd->usage, cmd->help);
        return ZMQCTL_EXIT_OK;
    }

    o.argc = argc - optind - 1;
    o.argv = argv + optind + 1;

    if (o.replace && cmd->run != zmqctl_import) {
        fprintf(stderr, "zmqctl: --replace applies to import\n");
        return ZMQCTL_EXIT_USAGE;
    }

    if (o.check && cmd->run != zmqctl_import && cmd->run != zmqctl_restore) {
        fprintf(stderr, "zmqctl: --check applies to import and restore\n");
        return ZMQCTL_EXIT_USAGE;
    }

    if (o.floor >= 0 && cmd->run != zmqctl_import
        && cmd->run != zmqctl_restore && cmd->run != zmqctl_wipe)
    {
        fprintf(stderr, "zmqctl: --version-floor applies to import, restore "
                "and wipe\n");
        return ZMQCTL_EXIT_USAGE;
    }

    if (o.yes && cmd->run != zmqctl_wipe) {
        fprintf(stderr, "zmqctl: --yes applies to wipe\n");
        return ZMQCTL_EXIT_USAGE;
    }

    if (o.force && cmd->run != zmqctl_keygen) {
        fprintf(stderr, "zmqctl: --force applies to keygen\n");
        return ZMQCTL_EXIT_USAGE;
    }

    if (o.output && cmd->run != zmqctl_export) {
        fprintf(stderr, "zmqctl: --output applies to export\n");
        return ZMQCTL_EXIT_USAGE;
    }

    if ((o.id != NULL || o.revoke != NULL) && cmd->run != zmqctl_apikey) {
        fprintf(stderr, "zmqctl: --id and --revoke apply to apikey\n");
        return ZMQCTL_EXIT_USAGE;
    }

    if (o.json && cmd->run != zmqctl_fleet) {
        fprintf(stderr, "zmqctl: --json applies to fleet\n");
        return ZMQCTL_EXIT_USAGE;
    }

    if (o.timeout && cmd->run != zmqctl_ping_cmd && cmd->run != zmqctl_send) {
        fprintf(stderr, "zmqctl: --timeout applies to ping and send\n");
        return ZMQCTL_EXIT_USAGE;
    }

    if ((o.exchange != NULL || o.routing_key != NULL || o.nprops
         || o.nheaders || o.mandatory)
        && cmd->run != zmqctl_send)
    {
        fprintf(stderr, "zmqctl: --exchange, --routing-key, --property, "
                "--header and --mandatory apply to send\n");
        return ZMQCTL_EXIT_USAGE;
    }

    if (o.timeout == 0) {
        o.timeout = ZMQCTL_NET_TIMEOUT;
    }

    if (((cmd->run == zmqctl_import || cmd->run == zmqctl_restore
          || cmd->run == zmqctl_apikey)
         && !zmqctl_need_args(&o, cmd, 1, 1))
        || (cmd->run == zmqctl_invoke && !zmqctl_need_args(&o, cmd, 1, 2))
        || ((cmd->run == zmqctl_ping_cmd || cmd->run == zmqctl_passwd)
            && !zmqctl_need_args(&o, cmd, 2, 2))
        || (cmd->run == zmqctl_send && !zmqctl_send_args(&o, cmd))
        || (cmd->run == zmqctl_wipe && !zmqctl_need_args(&o, cmd, 0, 0))
        || ((cmd->run == zmqctl_get || cmd->run == zmqctl_delete)
            && !zmqctl_need_args(&o, cmd, 2, 2))
        || (cmd->run == zmqctl_list && !zmqctl_need_args(&o, cmd, 0, 1))
        || ((cmd->run == zmqctl_export || cmd->run == zmqctl_keygen
             || cmd->run == zmqctl_version)
            && !zmqctl_need_args(&o, cmd, 0, 0)))
    {
        return ZMQCTL_EXIT_USAGE;
    }

    return cmd->run(&o);
}


int
main(int argc, char **argv)
{
    int            rc;
    zmqctl_opts_t  o;

    memset(&o, 0, sizeof(o));
    o.floor = -1;

    /* at most one of each argument: the lists need no more room */
    o.props = calloc((size_t) argc + 1, sizeof(char *));
    o.headers = calloc((size_t) argc + 1, sizeof(char *));

    if (o.props == NULL || o.headers == NULL) {
        fprintf(stderr, "zmqctl: out of memory\n");
        rc = ZMQCTL_EXIT_FAIL;

    } else {
        rc = zmqctl_main(argc, argv, &o);
    }

    free(o.props);
    free(o.headers);
    return rc;
}
