/*
 * zmqd: stomp_channel objects consumed into services (issue 16).
 *
 * One STOMP connection per active stomp_channel (of an active stomp_def;
 * over TLS when it has tls), one SUBSCRIBE on it with ack:client-individual and the
 * channel's prefetch (activemq.prefetchSize for ActiveMQ, prefetch-count
 * for RabbitMQ; each broker ignores the other's), confirmed by a receipt.
 *
 * Each MESSAGE becomes a zmqd_msg_t for the channel's service, its STOMP
 * headers mapped to AMQP properties (zmqd_stomp_props). It is ACKed
 * after the service succeeded. A failure is retried per the channel's
 * retry policy: the message stays unacked, held in a heap by due time,
 * while other messages go on. Then it is SENT to the dead-letter
 * destination (dead_letter, else "<destination>.dead") with x-zmq-error,
 * x-zmq-attempts and x-zmq-channel, persistent, with a receipt; only after
 * the RECEIPT is the message ACKed.
 *
 * A message with a reply-to header (a STOMP destination) is answered once
 * its service finished: a SEND to that destination with the request's
 * correlation-id, x-zmq-status and the service's answer (as replies on
 * AMQP channels), with a receipt; the message is ACKed only after the
 * RECEIPT. A final failure is answered 502 {"error": "service_failed"}
 * first, then dead-lettered. A reply the broker refuses (an ERROR) is
 * remembered by message id: when the message comes again it is
 * dead-lettered at once, not run again.
 *
 * With use_jms a dead letter of a TextMessage (a MESSAGE without
 * content-length) goes without content-length in Java's modified UTF-8,
 * so that ActiveMQ makes a TextMessage of it; any other with
 * content-length (a BytesMessage). amq-msg-type is never sent.
 *
 * Nothing is lost: when a dead letter or a reply cannot be sent (an
 * ERROR, no RECEIPT in time, a broken connection), the connection is
 * closed with the message unacked and opened again, and the broker
 * delivers the message again. zmqd never NACKs: ActiveMQ 5.17 moves a NACKed persistent message
 * straight to ActiveMQ.DLQ (and drops a non-persistent one), which would
 * bypass the retries and the channel's dead-letter destination.
 */

#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "zmqd.h"
#include "zmqd_metrics.h"
#include "zmqd_stomp_client.h"


#define ZMQD_SCH_MAX         256
#define ZMQD_SCH_BURST       64        /* frames per channel per turn */
#define ZMQD_SCH_SUB_ID      "0"
#define ZMQD_SCH_TEXT_TYPE   "text/plain; charset=utf-8"
#define ZMQD_SCH_REFUSED     64        /* replies refused, remembered */
#define ZMQD_SCH_DEST_MAX    1024


typedef struct {
    char            *name;
    char            *def;           /* its stomp_def (metrics) */
    char            *fingerprint;   /* channel and definition */
    zmqd_stomp_t    *conn;
    double           next_attempt;
    double           backoff;
    int              next_host;
    int              seen;
    int              use_jms;
    int              nretries;
} zmqd_sch_t;


/* a message held unacked for a retry */
typedef struct {
    zmqd_sch_t          *ch;
    zmqd_stomp_frame_t   f;
    int                  attempts;
    double               since;
} zmqd_sretry_t;


/* a message's properties, pointing into its frame */
typedef struct {
    amqp_basic_properties_t   props;
    amqp_table_entry_t       *entries;
    char                      expiration[24];
} zmqd_sprops_t;


static zmqd_sch_t    *zmqd_schs[ZMQD_SCH_MAX];
static int            zmqd_nschs;
static zmqd_heap_t    zmqd_sretries;
static int            zmqd_sch_changed;   /* a connection opened or closed */

/* messages whose reply the broker refused: "<channel>\n<message id>" */
static char           zmqd_srefused[ZMQD_SCH_REFUSED][512];
static int            zmqd_nsrefused;

/* the stomp_defs zmqd_connection_up was last given */
static char          *zmqd_sup_defs[ZMQD_SCH_MAX];
static int            zmqd_nsup_defs;


static void
zmqd_sretry_free(zmqd_sretry_t *r)
{
    zmqd_stomp_frame_free(&r->f);
    free(r);
}


static int
zmqd_sretry_keep(void *item, void *arg)
{
    zmqd_sretry_t  *r = item;

    if (r->ch == arg) {
        /* still unacked: the broker delivers it again */
        r->ch->nretries--;
        zmqd_sretry_free(r);
        return 0;
    }

    return 1;
}


static void
zmqd_sch_down(zmqd_sch_t *ch, const char *why, int graceful)
{
    zmqd_heap_filter(&zmqd_sretries, zmqd_sretry_keep, ch);

    if (ch->conn != NULL) {
        if (why != NULL) {
            zmqd_log("warn", "stomp_channel '%s': connection to %s lost: %s; "
                     "reconnecting in %.1f s (unacked messages are "
                     "delivered again)", ch->name,
                     zmqd_stomp_peer(ch->conn), why, ch->backoff);
        }
        zmqd_stomp_close(ch->conn, graceful);
        ch->conn = NULL;
        zmqd_sch_changed = 1;
    }

    ch->next_attempt = zmqd_now() + ch->backoff;
    ch->backoff = fmin(ch->backoff * 2, 10.0);
}


static void
zmqd_sch_free(zmqd_sch_t *ch)
{
    free(ch->name);
    free(ch->def);
    free(ch->fingerprint);
    free(ch);
}


/* ------------------------------------------------------- configuration */


static char *
zmqd_sch_fingerprint(const json_t *ch, const json_t *def)
{
    char    *a, *b, *out;
    size_t   len;

    a = zgw_object_dump(ZGW_KIND_STOMP_CHANNEL, ch);
    b = zgw_object_dump(ZGW_KIND_STOMP_DEF, def);
    out = NULL;

    if (a != NULL && b != NULL) {
        len = strlen(a) + strlen(b) + 2;
        out = malloc(len);
        if (out != NULL) {
            snprintf(out, len, "%s|%s", a, b);
        }
    }

    free(a);
    free(b);
    return out;
}


void
zmqd_stomp_channels_apply(const zgw_config_t *cfg, int *started,
    int *restarted, int *stopped)
{
    int          i;
    char        *fp;
    json_t      *obj, *def;
    zmqd_sch_t  *ch;
    const char  *name;

    for (i = 0; i < zmqd_nschs; i++) {
        zmqd_schs[i]->seen = 0;
    }

    json_object_foreach(cfg->objs[ZGW_KIND_STOMP_CHANNEL], name, obj) {
        def = zgw_config_get(cfg, ZGW_KIND_STOMP_DEF,
                             json_string_value(json_object_get(obj, "def")));

        if (!json_is_true(json_object_get(obj, "is_active"))
            || !json_is_true(json_object_get(def, "is_active")))
        {
            continue;
        }

        fp = zmqd_sch_fingerprint(obj, def);
        if (fp == NULL) {
            zmqd_log("error", "stomp_channel '%s': not started: out of "
                     "memory", name);
            continue;
        }

        for (i = 0; i < zmqd_nschs; i++) {
            if (strcmp(zmqd_schs[i]->name, name) == 0) {
                break;
            }
        }

        if (i < zmqd_nschs) {
            ch = zmqd_schs[i];
            ch->seen = 1;

            if (strcmp(ch->fingerprint, fp) == 0) {
                free(fp);
                continue;
            }

            /* changed: its unacked messages go back, it starts over */
            zmqd_sch_down(ch, NULL, 1);
            free(ch->fingerprint);
            ch->fingerprint = fp;
            free(ch->def);
            ch->def = strdup(json_string_value(json_object_get(obj, "def")));
            ch->next_attempt = 0;
            ch->backoff = 0.1;
            ch->next_host = 0;
            ch->use_jms = json_is_true(json_object_get(def, "use_jms"));
            (*restarted)++;
            continue;
        }

        ch = zmqd_nschs == ZMQD_SCH_MAX ? NULL : calloc(1, sizeof(*ch));
        if (ch == NULL || (ch->name = strdup(name)) == NULL) {
            zmqd_log("error", "stomp_channel '%s': not started: %s", name,
                     ch == NULL && zmqd_nschs == ZMQD_SCH_MAX
                     ? "more than 256 STOMP channels" : "out of memory");
            free(ch);
            free(fp);
            continue;
        }

        ch->fingerprint = fp;
        ch->def = strdup(json_string_value(json_object_get(obj, "def")));
        ch->backoff = 0.1;
        ch->seen = 1;
        ch->use_jms = json_is_true(json_object_get(def, "use_jms"));
        zmqd_schs[zmqd_nschs++] = ch;
        (*started)++;
    }

    for (i = 0; i < zmqd_nschs; i++) {
        ch = zmqd_schs[i];
        if (ch->seen) {
            continue;
        }

        zmqd_sch_down(ch, NULL, 1);
        zmqd_log("info", "stomp_channel '%s': stopped", ch->name);
        zmqd_sch_free(ch);
        zmqd_schs[i] = zmqd_schs[--zmqd_nschs];
        i--;
        (*stopped)++;
    }

    zmqd_sch_changed = 1;
}


void
zmqd_stomp_channels_close(void)
{
    int  i;

    for (i = 0; i < zmqd_nschs; i++) {
        zmqd_sch_down(zmqd_schs[i], NULL, 1);
        zmqd_sch_free(zmqd_schs[i]);
    }
    zmqd_nschs = 0;

    zmqd_heap_free(&zmqd_sretries);
    zmqd_stomp_shutdown();

    for (i = 0; i < zmqd_nsup_defs; i++) {
        free(zmqd_sup_defs[i]);
    }
    zmqd_nsup_defs = 0;
}


/*
 * zmqd_connection_up of each stomp_def: 1 when every stomp_channel of it
 * is connected; 0 for a definition no channel uses any more
 */
static void
zmqd_sch_metrics(void)
{
    int          i, j, k, up, n;
    char        *defs[ZMQD_SCH_MAX];

    if (!zmqd_sch_changed) {
        return;
    }

    zmqd_sch_changed = 0;
    n = 0;

    for (i = 0; i < zmqd_nschs; i++) {
        if (zmqd_schs[i]->def == NULL) {
            continue;
        }

        for (j = 0; j < n; j++) {
            if (strcmp(defs[j], zmqd_schs[i]->def) == 0) {
                break;
            }
        }
        if (j < n) {
            continue;
        }

        defs[n++] = zmqd_schs[i]->def;
        up = 1;
        for (k = i; k < zmqd_nschs; k++) {
            if (zmqd_schs[k]->def != NULL
                && strcmp(zmqd_schs[k]->def, zmqd_schs[i]->def) == 0
                && zmqd_schs[k]->conn == NULL)
            {
                up = 0;
            }
        }
        zmqd_metrics_stomp_up(zmqd_schs[i]->def, up);
    }

    for (i = 0; i < zmqd_nsup_defs; i++) {
        for (j = 0; j < n; j++) {
            if (strcmp(defs[j], zmqd_sup_defs[i]) == 0) {
                break;
            }
        }
        if (j == n) {
            zmqd_metrics_stomp_up(zmqd_sup_defs[i], 0);
        }
        free(zmqd_sup_defs[i]);
    }

    zmqd_nsup_defs = 0;
    for (j = 0; j < n; j++) {
        zmqd_sup_defs[zmqd_nsup_defs] = strdup(defs[j]);
        if (zmqd_sup_defs[zmqd_nsup_defs] != NULL) {
            zmqd_nsup_defs++;
        }
    }
}


/* ---------------------------------------------------------- properties */


/* a decimal number of at most 18 digits, or -1 */
static long long
zmqd_sdigits(const char *v)
{
    long long  n;

    if (v == NULL || *v == '\0' || strlen(v) > 18) {
        return -1;
    }

    for (n = 0; *v != '\0'; v++) {
        if (*v < '0' || *v > '9') {
            return -1;
        }
        n = n * 10 + (*v - '0');
    }

    return n;
}


static amqp_bytes_t
zmqd_sbytes(const char *s)
{
    amqp_bytes_t  b;

    b.len = strlen(s);
    b.bytes = (void *) s;
    return b;
}


/* what the broker adds to a MESSAGE, and what is mapped to a property */
static const char  *zmqd_stomp_wire[] = {
    "destination", "subscription", "ack", "message-id", "content-length",
    "receipt", "redelivered", "amqp-message-id", "content-type",
    "content-encoding", "correlation-id", "reply-to", "persistent",
    "expiration", "type", "timestamp", "app-id", NULL
};


static int
zmqd_stomp_is(const char *name, const char *const *list)
{
    for ( /* void */ ; *list != NULL; list++) {
        if (strcmp(name, *list) == 0) {
            return 1;
        }
    }

    return 0;
}


/* a header ActiveMQ's JMS mapping adds (use_jms): not the service's */
static int
zmqd_stomp_jms(const char *name)
{
    return strncasecmp(name, "JMS", 3) == 0
           || strcmp(name, "amq-msg-type") == 0 || strcmp(name, "expires") == 0;
}


/*
 * The STOMP headers of a MESSAGE as AMQP properties (README "STOMP
 * channels"): message-id (amqp-message-id wins: RabbitMQ's message-id is
 * its own delivery id), content-type, content-encoding, correlation-id,
 * reply-to, priority (0-9), persistent (delivery_mode 2, or 1 for
 * "false"), expiration, type, timestamp (ms when above 10^11, else s),
 * app-id; every other header but the broker's own is a header of the
 * message. use_jms: message-id without "ID:", expires (ActiveMQ's absolute
 * ms; 0 none) as the expiration left from the timestamp, a TextMessage (no
 * content-length) without content-type is text/plain; charset=utf-8, and
 * headers beginning with JMS and amq-msg-type are taken out.
 */
static int
zmqd_stomp_props(const zmqd_stomp_frame_t *f, int use_jms, zmqd_sprops_t *sp,
    char *msgid, size_t idlen)
{
    int                       i, j, n, dup;
    long long                 v, ts, exp;
    const char               *name, *val, *id;
    amqp_basic_properties_t  *p;

    memset(sp, 0, sizeof(zmqd_sprops_t));
    p = &sp->props;

    sp->entries = calloc(f->nheaders ? f->nheaders : 1,
                         sizeof(amqp_table_entry_t));
    if (sp->entries == NULL) {
        return -1;
    }

    id = zmqd_stomp_get(f, "amqp-message-id");
    if (id == NULL) {
        id = zmqd_stomp_get(f, "message-id");
        if (id != NULL && use_jms && strncmp(id, "ID:", 3) == 0) {
            id += 3;
        }
    }
    if (id != NULL && *id != '\0') {
        p->_flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        p->message_id = zmqd_sbytes(id);
        snprintf(msgid, idlen, "%s", id);
    } else {
        snprintf(msgid, idlen, "(no message-id)");
    }

#define ZMQD_SPROP(hname, flag, field)                                       \
    val = zmqd_stomp_get(f, hname);                                         \
    if (val != NULL && *val != '\0') {                                      \
        p->_flags |= flag;                                                  \
        p->field = zmqd_sbytes(val);                                        \
    }

    ZMQD_SPROP("content-type", AMQP_BASIC_CONTENT_TYPE_FLAG, content_type);
    ZMQD_SPROP("content-encoding", AMQP_BASIC_CONTENT_ENCODING_FLAG,
               content_encoding);
    ZMQD_SPROP("correlation-id", AMQP_BASIC_CORRELATION_ID_FLAG,
               correlation_id);
    ZMQD_SPROP("reply-to", AMQP_BASIC_REPLY_TO_FLAG, reply_to);
    ZMQD_SPROP("type", AMQP_BASIC_TYPE_FLAG, type);
    ZMQD_SPROP("app-id", AMQP_BASIC_APP_ID_FLAG, app_id);

#undef ZMQD_SPROP

    if (use_jms && !f->has_length
        && !(p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG))
    {
        p->_flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
        p->content_type = zmqd_sbytes(ZMQD_SCH_TEXT_TYPE);
    }

    v = zmqd_sdigits(zmqd_stomp_get(f, "priority"));
    if (v >= 0 && v <= 9) {
        p->_flags |= AMQP_BASIC_PRIORITY_FLAG;
        p->priority = (uint8_t) v;
    }

    val = zmqd_stomp_get(f, "persistent");
    if (val != NULL && (strcmp(val, "true") == 0 || strcmp(val, "false") == 0))
    {
        p->_flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
        p->delivery_mode = val[0] == 't' ? 2 : 1;
    }

    ts = zmqd_sdigits(zmqd_stomp_get(f, "timestamp"));
    if (ts > 0) {
        p->_flags |= AMQP_BASIC_TIMESTAMP_FLAG;
        p->timestamp = (uint64_t) (ts > 100000000000LL ? ts / 1000 : ts);
    }

    v = zmqd_sdigits(zmqd_stomp_get(f, "expiration"));
    if (v >= 0) {
        snprintf(sp->expiration, sizeof(sp->expiration), "%lld", v);
    }

    if (use_jms && v < 0) {
        exp = zmqd_sdigits(zmqd_stomp_get(f, "expires"));
        if (exp > 0) {
            if (ts <= 0) {
                ts = (long long) time(NULL) * 1000;
            }
            snprintf(sp->expiration, sizeof(sp->expiration), "%lld",
                     exp > ts ? exp - ts : 1);
        }
    }

    if (sp->expiration[0] != '\0') {
        p->_flags |= AMQP_BASIC_EXPIRATION_FLAG;
        p->expiration = zmqd_sbytes(sp->expiration);
    }

    n = 0;

    for (i = 0; i < f->nheaders; i++) {
        name = f->headers[i].name;

        if (zmqd_stomp_is(name, zmqd_stomp_wire)
            || (strcmp(name, "priority") == 0
                && (p->_flags & AMQP_BASIC_PRIORITY_FLAG))
            || (use_jms && zmqd_stomp_jms(name)))
        {
            continue;
        }

        /* 1.2: a repeated header is the first one */
        for (dup = 0, j = 0; j < i && !dup; j++) {
            dup = strcmp(f->headers[j].name, name) == 0;
        }
        if (dup) {
            continue;
        }

        sp->entries[n].key = zmqd_sbytes(name);
        sp->entries[n].value.kind = AMQP_FIELD_KIND_UTF8;
        sp->entries[n].value.value.bytes = zmqd_sbytes(f->headers[i].value);
        n++;
    }

    if (n > 0) {
        p->_flags |= AMQP_BASIC_HEADERS_FLAG;
        p->headers.num_entries = n;
        p->headers.entries = sp->entries;
    }

    return 0;
}


/*
 * A frame's trace context as its service sees it (the headers traceparent
 * and tracestate of its properties, checked: zmqd_trace_get), for its log
 * lines: " (trace=<trace-id>)", or "", in buf
 */
static const char *
zmqd_sch_trace(zmqd_sch_t *ch, const zmqd_stomp_frame_t *f, char *buf,
    size_t size)
{
    char           id[8];
    zmqd_sprops_t  sp;

    buf[0] = '\0';

    if (zmqd_stomp_props(f, ch->use_jms, &sp, id, sizeof(id)) == 0) {
        (void) zmqd_trace_log(&sp.props, buf, size);
    }

    free(sp.entries);
    return buf;
}


/* ------------------------------------------------------------ messages */


static const json_t *
zmqd_sch_obj(const zmqd_env_t *env, zmqd_sch_t *ch)
{
    return zgw_config_get(env->cfg, ZGW_KIND_STOMP_CHANNEL, ch->name);
}


static void
zmqd_sch_ack(zmqd_sch_t *ch, const zmqd_stomp_frame_t *f)
{
    char               err[512];
    const char        *id;
    zmqd_stomp_out_t   o;

    id = zmqd_stomp_get(f, "ack");
    if (id == NULL) {
        id = zmqd_stomp_get(f, "message-id");
    }

    memset(&o, 0, sizeof(o));
    zmqd_stomp_out_command(&o, "ACK");
    zmqd_stomp_out_header(&o, "id", id, 0);
    zmqd_stomp_out_body(&o, "", 0, 0);

    if (zmqd_stomp_send_out(ch->conn, &o, err, sizeof(err)) != 0) {
        /* unacked: delivered again after the reconnect (at least once) */
        zmqd_log("warn", "stomp_channel '%s': cannot ACK: %s", ch->name,
                 err);
    }

    zmqd_stomp_out_free(&o);
}


/* headers not copied to a dead letter (replaced, or the broker's own) */
static const char  *zmqd_stomp_dl_skip[] = {
    "destination", "subscription", "ack", "message-id", "content-length",
    "receipt", "redelivered", "persistent", "expires", "expiration",
    "user-id", "transaction", "x-zmq-error", "x-zmq-attempts",
    "x-zmq-channel", "amq-msg-type", NULL
};


/*
 * A frame's body as the broker should keep it: with use_jms, a
 * TextMessage (no content-length came) stays one (modified UTF-8, no
 * content-length); else with content-length
 */
static void
zmqd_sch_body(zmqd_sch_t *ch, const zmqd_stomp_frame_t *f,
    zmqd_stomp_out_t *o)
{
    if (ch->use_jms && !f->has_length) {
        (void) zmqd_stomp_out_text(o, f->body, f->len);
    } else {
        zmqd_stomp_out_body(o, f->body, f->len, 1);
    }
}


/* SENDs the message to the dead-letter destination; 0 after its RECEIPT */
static int
zmqd_sch_dead_letter(zmqd_sch_t *ch, const zmqd_stomp_frame_t *f,
    const char *dest, int attempts, const char *error, char *err,
    size_t errlen)
{
    int                i, rc;
    char               id[64], n[16];
    const char        *v;
    zmqd_stomp_out_t   o;

    zmqd_stomp_receipt_id(ch->conn, "dl", id, sizeof(id));
    snprintf(n, sizeof(n), "%d", attempts);

    memset(&o, 0, sizeof(o));
    zmqd_stomp_out_command(&o, "SEND");
    zmqd_stomp_out_header(&o, "destination", dest, 0);
    zmqd_stomp_out_header(&o, "persistent", "true", 0);

    for (i = 0; i < f->nheaders; i++) {
        if (!zmqd_stomp_is(f->headers[i].name, zmqd_stomp_dl_skip)) {
            zmqd_stomp_out_header(&o, f->headers[i].name,
                                  f->headers[i].value, 0);
        }
    }

    /* what would expire it, or make the broker refuse it, is kept aside */
    v = zmqd_stomp_get(f, "message-id");
    if (v != NULL) {
        zmqd_stomp_out_header(&o, "x-zmq-original-message-id", v, 0);
    }
    v = zmqd_stomp_get(f, "expires");
    if (v != NULL && strcmp(v, "0") != 0) {
        zmqd_stomp_out_header(&o, "x-zmq-original-expires", v, 0);
    }
    v = zmqd_stomp_get(f, "expiration");
    if (v != NULL) {
        zmqd_stomp_out_header(&o, "x-zmq-original-expiration", v, 0);
    }
    v = zmqd_stomp_get(f, "user-id");
    if (v != NULL) {
        zmqd_stomp_out_header(&o, "x-zmq-original-user-id", v, 0);
    }

    zmqd_stomp_out_header(&o, "x-zmq-error", error, 0);
    zmqd_stomp_out_header(&o, "x-zmq-attempts", n, 0);
    zmqd_stomp_out_header(&o, "x-zmq-channel", ch->name, 0);
    zmqd_stomp_out_header(&o, "receipt", id, 0);
    zmqd_sch_body(ch, f, &o);

    rc = zmqd_stomp_request(ch->conn, &o, id, err, errlen);
    zmqd_stomp_out_free(&o);
    return rc;
}


/* ------------------------------------------------------------- replies */


/* where a reply may go: a destination both brokers know the form of */
static const char  *zmqd_sch_reply_prefixes[] = {
    "/queue/", "/topic/", "/temp-queue/", "/temp-topic/",
    "/remote-temp-queue/", "/remote-temp-topic/", "/amq/queue/",
    "/exchange/", "/reply-queue/", NULL
};


/*
 * The reply-to of a message that is answered, or NULL: none, or one that
 * is not a STOMP destination (logged once: the message is handled as
 * without it)
 */
static const char *
zmqd_sch_reply_to(zmqd_sch_t *ch, const zmqd_stomp_frame_t *f,
    const char *msgid)
{
    int          i;
    char         trace[ZMQD_TRACE_LOG_LEN];
    size_t       len;
    const char  *to;

    to = zmqd_stomp_get(f, "reply-to");
    if (to == NULL || *to == '\0') {
        return NULL;
    }

    len = strlen(to);

    for (i = 0; zmqd_sch_reply_prefixes[i] != NULL; i++) {
        if (strncmp(to, zmqd_sch_reply_prefixes[i],
                    strlen(zmqd_sch_reply_prefixes[i])) == 0
            && len > strlen(zmqd_sch_reply_prefixes[i])
            && len <= ZMQD_SCH_DEST_MAX)
        {
            return to;
        }
    }

    zmqd_log("warn", "stomp_channel '%s': message '%s'%s: not answered: "
             "its reply-to '%.200s' is not a STOMP destination (/queue/..., "
             "/topic/..., /temp-queue/..., /reply-queue/..., up to %d "
             "bytes)", ch->name, msgid,
             zmqd_sch_trace(ch, f, trace, sizeof(trace)), to,
             ZMQD_SCH_DEST_MAX);
    return NULL;
}


/* the key of a message in zmqd_srefused */
static void
zmqd_sch_refused_key(zmqd_sch_t *ch, const char *msgid, char *key,
    size_t size)
{
    snprintf(key, size, "%.200s\n%.300s", ch->name, msgid);
}


static int
zmqd_sch_refused(zmqd_sch_t *ch, const char *msgid)
{
    int   i;
    char  key[512];

    zmqd_sch_refused_key(ch, msgid, key, sizeof(key));

    for (i = 0; i < ZMQD_SCH_REFUSED && i < zmqd_nsrefused; i++) {
        if (strcmp(zmqd_srefused[i], key) == 0) {
            return 1;
        }
    }

    return 0;
}


static void
zmqd_sch_refused_add(zmqd_sch_t *ch, const char *msgid)
{
    zmqd_sch_refused_key(ch, msgid, zmqd_srefused[zmqd_nsrefused
                                                  % ZMQD_SCH_REFUSED],
                         sizeof(zmqd_srefused[0]));
    zmqd_nsrefused++;
    if (zmqd_nsrefused == 2 * ZMQD_SCH_REFUSED) {
        zmqd_nsrefused = ZMQD_SCH_REFUSED;
    }
}


/*
 * SENDs resp to the request's reply-to with its correlation-id and
 * x-zmq-status; 0 after the RECEIPT. With use_jms a textual answer goes
 * as a TextMessage (as the gateway sends it), any other with
 * content-length.
 */
static int
zmqd_sch_reply(zmqd_sch_t *ch, const zmqd_stomp_frame_t *f, const char *to,
    const zmqd_resp_t *resp, char *err, size_t errlen)
{
    int                rc;
    char               id[64], st[16], msgid[8];
    const char        *cid, *body;
    size_t             len;
    zmqd_trace_t       tc;
    zmqd_sprops_t      sp;
    zmqd_stomp_out_t   o;

    zmqd_stomp_receipt_id(ch->conn, "re", id, sizeof(id));
    snprintf(st, sizeof(st), "%d", resp->status ? resp->status : 200);
    cid = zmqd_stomp_get(f, "correlation-id");
    body = resp->body ? resp->body : "";
    len = resp->body ? resp->len : 0;

    memset(&o, 0, sizeof(o));
    zmqd_stomp_out_command(&o, "SEND");
    zmqd_stomp_out_header(&o, "destination", to, 0);
    if (cid != NULL) {
        zmqd_stomp_out_header(&o, "correlation-id", cid, 0);
    }
    if (resp->content_type[0] != '\0') {
        zmqd_stomp_out_header(&o, "content-type", resp->content_type, 0);
    }
    zmqd_stomp_out_header(&o, "x-zmq-status", st, 0);

    /* the request's trace context, when valid (values in the frame) */
    if (zmqd_stomp_props(f, ch->use_jms, &sp, msgid, sizeof(msgid)) == 0) {
        zmqd_trace_get(&sp.props, &tc);
        if (tc.traceparent.len > 0) {
            zmqd_stomp_out_headern(&o, "traceparent", 11,
                                   tc.traceparent.bytes, tc.traceparent.len,
                                   0);
        }
        if (tc.tracestate.len > 0) {
            zmqd_stomp_out_headern(&o, "tracestate", 10, tc.tracestate.bytes,
                                   tc.tracestate.len, 0);
        }
    }
    free(sp.entries);

    zmqd_stomp_out_header(&o, "receipt", id, 0);

    if (ch->use_jms && zmqd_stomp_is_text(resp->content_type)) {
        (void) zmqd_stomp_out_text(&o, body, len);
    } else {
        zmqd_stomp_out_body(&o, body, len, 1);
    }

    rc = zmqd_stomp_request(ch->conn, &o, id, err, errlen);
    zmqd_stomp_out_free(&o);
    return rc;
}


/*
 * Answers the message; 0 when sent (its RECEIPT came). Else the message
 * stays unacked and the connection is dropped (the broker delivers it
 * again); a refusal (an ERROR) is remembered, so that it is dead-lettered
 * then, not run again.
 */
static int
zmqd_sch_answer(zmqd_sch_t *ch, const zmqd_stomp_frame_t *f, const char *to,
    const char *msgid, const zmqd_resp_t *resp)
{
    int   refused;
    char  err[1024], trace[ZMQD_TRACE_LOG_LEN];

    if (zmqd_sch_reply(ch, f, to, resp, err, sizeof(err)) == 0) {
        return 0;
    }

    refused = strncmp(err, "ERROR frame", 11) == 0;
    if (refused) {
        zmqd_sch_refused_add(ch, msgid);
    }

    zmqd_log("error", "stomp_channel '%s': message '%s'%s: the reply "
             "(status %d) to '%s' was not sent: %s; left unacked, "
             "reconnecting so that the broker delivers it again%s", ch->name,
             msgid, zmqd_sch_trace(ch, f, trace, sizeof(trace)),
             resp->status, to, err,
             refused ? " (then it is dead-lettered, not run again)" : "");
    zmqd_sch_down(ch, err, 0);
    return -1;
}


/* a final failure's answer: 502 {"error": "service_failed", ...} */
static int
zmqd_sch_answer_error(zmqd_sch_t *ch, const zmqd_stomp_frame_t *f,
    const char *to, const char *msgid, const char *error)
{
    int          rc;
    char         trace[ZMQD_TRACE_LOG_LEN];
    zmqd_resp_t  resp;

    memset(&resp, 0, sizeof(resp));
    if (zmqd_resp_error(&resp, 502, "service_failed", error) != 0) {
        zmqd_log("error", "stomp_channel '%s': message '%s'%s: out of "
                 "memory for its answer", ch->name, msgid,
                 zmqd_sch_trace(ch, f, trace, sizeof(trace)));
        zmqd_sch_down(ch, "out of memory", 0);
        return -1;
    }

    rc = zmqd_sch_answer(ch, f, to, msgid, &resp);
    zmqd_resp_free(&resp);
    return rc;
}


/* ------------------------------------------------------------ failures */


static double
zmqd_sch_delay(const json_t *retry, int attempts)
{
    double  initial, mult, max, d;

    initial = (double) json_integer_value(json_object_get(retry,
                                                          "initial_delay"));
    mult = json_number_value(json_object_get(retry, "multiplier"));
    max = (double) json_integer_value(json_object_get(retry, "max_delay"));

    d = initial * pow(mult, attempts - 1);
    return fmin(d, max) / 1000.0;
}


/*
 * A message that failed for good: answered 502 when it carries a reply-to
 * (to NULL: not answered), dead-lettered, then ACKed. When the answer or
 * the dead letter cannot go, the connection is dropped with the message
 * unacked: the broker delivers it again.
 */
static void
zmqd_sch_give_up(zmqd_sch_t *ch, const json_t *obj,
    const zmqd_stomp_frame_t *f, const char *msgid, const char *to,
    int attempts, const char *error)
{
    char         err[1024], dest[1100], trace[ZMQD_TRACE_LOG_LEN];
    const char  *dl;

    if (to != NULL && zmqd_sch_answer_error(ch, f, to, msgid, error) != 0) {
        return;
    }

    dl = json_string_value(json_object_get(obj, "dead_letter"));
    if (dl != NULL) {
        snprintf(dest, sizeof(dest), "%s", dl);
    } else {
        snprintf(dest, sizeof(dest), "%s.dead",
                 json_string_value(json_object_get(obj, "destination")));
    }

    if (zmqd_sch_dead_letter(ch, f, dest, attempts, error, err, sizeof(err))
        != 0)
    {
        zmqd_log("error", "stomp_channel '%s': message '%s'%s could not be "
                 "dead-lettered to '%s' (%s); left unacked, reconnecting "
                 "so that the broker delivers it again", ch->name, msgid,
                 zmqd_sch_trace(ch, f, trace, sizeof(trace)), dest, err);
        zmqd_sch_down(ch, err, 0);
        return;
    }

    zmqd_sch_ack(ch, f);
    zmqd_metrics_message(ch->name, ZMQD_METRICS_DEAD_LETTERED);
    zmqd_log("error", "stomp_channel '%s': message '%s'%s dead-lettered to "
             "'%s' after %d attempt(s): %s", ch->name, msgid,
             zmqd_sch_trace(ch, f, trace, sizeof(trace)), dest, attempts,
             error);
}


/*
 * A failed attempt: held for a retry (returns 1: the frame is taken), or
 * given up (answered, dead-lettered and ACKed; or, when that cannot be
 * done, the connection is dropped with the message unacked); returns 0.
 */
static int
zmqd_sch_failed(int max_hold, zmqd_sch_t *ch, const json_t *obj,
    zmqd_stomp_frame_t *f, const char *msgid, const char *to, int attempts,
    double since, const char *error, int final)
{
    int             max;
    char            why[1400], trace[ZMQD_TRACE_LOG_LEN];
    double          delay;
    json_t         *retry;
    zmqd_sretry_t  *r;

    retry = json_object_get(obj, "retry");
    max = retry ? (int) json_integer_value(json_object_get(retry,
                                                           "attempts"))
                : 3;
    delay = retry ? zmqd_sch_delay(retry, attempts) : 1.0 * attempts;

    if (!final && attempts <= max && zmqd_now() + delay - since > max_hold) {
        snprintf(why, sizeof(why), "%s (not retried: a retry in %.1f s "
                 "would keep the message unacked for more than %d s, "
                 "--max-hold)", error, delay, max_hold);
        error = why;
        final = 1;
    }

    if (!final && attempts <= max) {
        r = calloc(1, sizeof(zmqd_sretry_t));
        if (r != NULL) {
            r->ch = ch;
            r->f = *f;
            r->attempts = attempts;
            r->since = since;

            if (zmqd_heap_push(&zmqd_sretries, zmqd_now() + delay, r) == 0) {
                ch->nretries++;
                zmqd_metrics_message(ch->name, ZMQD_METRICS_RETRIED);
                zmqd_log("warn", "stomp_channel '%s': message '%s'%s "
                         "failed (attempt %d): %s; retrying in %.2f s",
                         ch->name, msgid,
                         zmqd_sch_trace(ch, f, trace, sizeof(trace)),
                         attempts, error, delay);
                return 1;
            }
            free(r);
        }

        /* cannot hold it: it is delivered again after a reconnect */
        zmqd_log("error", "stomp_channel '%s': message '%s'%s: out of "
                 "memory for a retry", ch->name, msgid,
                 zmqd_sch_trace(ch, f, trace, sizeof(trace)));
        zmqd_sch_down(ch, "out of memory for a retry", 0);
        return 0;
    }

    zmqd_sch_give_up(ch, obj, f, msgid, to, attempts, error);
    return 0;
}


/* one attempt; 1 when the frame was kept for a retry */
static int
zmqd_sch_attempt(const zmqd_env_t *env, int max_hold, int verbose,
    zmqd_sch_t *ch, zmqd_stomp_frame_t *f, int attempts, double since)
{
    int             rc;
    char            err[1024], msgid[256], why[1400];
    char            trace[ZMQD_TRACE_LOG_LEN];
    double          started;
    amqp_bytes_t    body;
    const json_t   *obj;
    const char     *service, *to;
    zmqd_msg_t      msg;
    zmqd_resp_t     resp;
    zmqd_sprops_t   sp;

    obj = zmqd_sch_obj(env, ch);
    body.bytes = f->body;
    body.len = f->len;

    if (zmqd_stomp_props(f, ch->use_jms, &sp, msgid, sizeof(msgid)) != 0) {
        free(sp.entries);
        return zmqd_sch_failed(max_hold, ch, obj, f, "(unknown)", NULL,
                               attempts, since, "out of memory", 0);
    }

    to = zmqd_sch_reply_to(ch, f, msgid);

    if (to != NULL && zmqd_sch_refused(ch, msgid)) {
        /* its reply was refused: not run again */
        free(sp.entries);
        snprintf(why, sizeof(why), "the broker refused the reply to '%s' "
                 "when the message came before", to);
        zmqd_sch_give_up(ch, obj, f, msgid, NULL, attempts, why);
        return 0;
    }

    if (zmqd_format_check(json_string_value(json_object_get(obj,
                                                            "data_format")),
                          &body, err, sizeof(err))
        != 0)
    {
        /* a bad document stays bad: no retries */
        free(sp.entries);
        return zmqd_sch_failed(max_hold, ch, obj, f, msgid, to, attempts,
                               since, err, 1);
    }

    memset(&msg, 0, sizeof(msg));
    msg.channel = ch->name;
    msg.body = &body;
    msg.props = &sp.props;
    snprintf(msg.message_id, sizeof(msg.message_id), "%s", msgid);

    service = json_string_value(json_object_get(obj, "service"));
    started = zmqd_now();
    rc = zmqd_service_call(env, service, &msg, to != NULL ? &resp : NULL,
                           err, sizeof(err));
    zmqd_metrics_service(ch->name, zmqd_now() - started);
    (void) zmqd_trace_log(&sp.props, trace, sizeof(trace));
    free(sp.entries);

    if (rc != 0) {
        if (to != NULL) {
            zmqd_resp_free(&resp);
        }
        return zmqd_sch_failed(max_hold, ch, obj, f, msgid, to, attempts,
                               since, err, rc == ZMQD_PERMANENT);
    }

    if (to != NULL) {
        rc = zmqd_sch_answer(ch, f, to, msgid, &resp);
        zmqd_resp_free(&resp);
        if (rc != 0) {
            return 0;                   /* unacked: delivered again */
        }
    }

    zmqd_sch_ack(ch, f);
    zmqd_metrics_message(ch->name, ZMQD_METRICS_ACKED);

    if (verbose) {
        zmqd_log("info", "stomp_channel '%s': message '%s'%s done by "
                 "service '%s'%s%s", ch->name, msgid, trace, service,
                 attempts > 1 ? " after a retry" : "",
                 to != NULL ? ", answered" : "");
    }

    return 0;
}


/* ----------------------------------------------------------- the loop */


static void
zmqd_sch_connect(const zmqd_env_t *env, zmqd_sch_t *ch)
{
    char               err[2048], prefetch[16], id[64];
    const json_t      *obj, *def;
    const char        *dest;
    zmqd_stomp_out_t   o;

    obj = zmqd_sch_obj(env, ch);
    def = zgw_config_get(env->cfg, ZGW_KIND_STOMP_DEF,
                         json_string_value(json_object_get(obj, "def")));
    if (obj == NULL || def == NULL) {
        ch->next_attempt = zmqd_now() + 1;
        return;
    }

    ch->conn = zmqd_stomp_open(def, env->key, &ch->next_host, err,
                               sizeof(err));
    if (ch->conn == NULL) {
        zmqd_log("warn", "stomp_channel '%s': %s; retrying in %.1f s",
                 ch->name, err, ch->backoff);
        ch->next_attempt = zmqd_now() + ch->backoff;
        ch->backoff = fmin(ch->backoff * 2, 10.0);
        return;
    }

    dest = json_string_value(json_object_get(obj, "destination"));
    snprintf(prefetch, sizeof(prefetch), "%lld",
             (long long) json_integer_value(json_object_get(obj,
                                                            "prefetch")));
    zmqd_stomp_receipt_id(ch->conn, "sub", id, sizeof(id));

    memset(&o, 0, sizeof(o));
    zmqd_stomp_out_command(&o, "SUBSCRIBE");
    zmqd_stomp_out_header(&o, "id", ZMQD_SCH_SUB_ID, 0);
    zmqd_stomp_out_header(&o, "destination", dest, 0);
    zmqd_stomp_out_header(&o, "ack", "client-individual", 0);
    zmqd_stomp_out_header(&o, "activemq.prefetchSize", prefetch, 0);
    zmqd_stomp_out_header(&o, "prefetch-count", prefetch, 0);
    zmqd_stomp_out_header(&o, "receipt", id, 0);
    zmqd_stomp_out_body(&o, "", 0, 0);

    if (zmqd_stomp_request(ch->conn, &o, id, err, sizeof(err)) != 0) {
        zmqd_stomp_out_free(&o);
        zmqd_log("error", "stomp_channel '%s': cannot subscribe to '%s' on "
                 "%s: %s; retrying in %.1f s", ch->name, dest,
                 zmqd_stomp_peer(ch->conn), err, ch->backoff);
        zmqd_sch_down(ch, NULL, 0);
        return;
    }

    zmqd_stomp_out_free(&o);
    ch->backoff = 0.1;
    zmqd_sch_changed = 1;
    zmqd_log("info", "stomp_channel '%s': consuming '%s' on %s%s%s (%s), "
             "prefetch %s", ch->name, dest, zmqd_stomp_peer(ch->conn),
             zmqd_stomp_tls(ch->conn)[0] ? " over " : "",
             zmqd_stomp_tls(ch->conn),
             zmqd_stomp_server(ch->conn)[0] ? zmqd_stomp_server(ch->conn)
                                            : "STOMP 1.2", prefetch);
}


/* one frame read on a channel's connection */
static void
zmqd_sch_frame(const zmqd_env_t *env, int max_hold, int verbose,
    zmqd_sch_t *ch, zmqd_stomp_frame_t *f)
{
    char         why[700];
    const char  *sub, *m;

    if (strcmp(f->command, "MESSAGE") == 0) {
        sub = zmqd_stomp_get(f, "subscription");

        if ((sub != NULL && strcmp(sub, ZMQD_SCH_SUB_ID) != 0)
            || (zmqd_stomp_get(f, "ack") == NULL
                && zmqd_stomp_get(f, "message-id") == NULL))
        {
            zmqd_stomp_frame_free(f);
            zmqd_sch_down(ch, "a MESSAGE of another subscription, or "
                          "without ack and message-id", 0);
            return;
        }

        /* use_jms: a TextMessage's text as UTF-8, for the service */
        if (ch->use_jms && !f->has_length && f->body != NULL) {
            f->len = zmqd_stomp_from_modified(f->body, f->len);
        }

        if (zmqd_sch_attempt(env, max_hold, verbose, ch, f, 1, zmqd_now())
            == 0)
        {
            zmqd_stomp_frame_free(f);
        }
        return;
    }

    if (strcmp(f->command, "ERROR") == 0) {
        m = zmqd_stomp_get(f, "message");
        snprintf(why, sizeof(why), "ERROR frame: %.300s%s%.300s",
                 m ? m : "(no message header)", f->len ? ": " : "",
                 f->len ? f->body : "");
        zmqd_stomp_frame_free(f);
        zmqd_sch_down(ch, why, 0);
        return;
    }

    /* a late RECEIPT, or a frame a consumer has no use for */
    zmqd_stomp_frame_free(f);
}


static void
zmqd_sch_run_retries(const zmqd_env_t *env, int max_hold, int verbose)
{
    zmqd_sretry_t  *r;

    while ((r = zmqd_heap_pop_due(&zmqd_sretries, zmqd_now())) != NULL) {
        r->ch->nretries--;

        if (r->ch->conn == NULL
            || zmqd_sch_attempt(env, max_hold, verbose, r->ch, &r->f,
                                r->attempts + 1, r->since)
               == 0)
        {
            zmqd_stomp_frame_free(&r->f);
        }

        free(r);
    }
}


int
zmqd_stomp_channels_poll(const zmqd_env_t *env, int max_hold, int verbose,
    int wait_ms, const volatile sig_atomic_t *stop)
{
    int                  i, k, n, rc, got, nfds, ms;
    char                 err[1024];
    double               now;
    zmqd_sch_t          *ch;
    struct pollfd        fds[ZMQD_SCH_MAX];
    zmqd_stomp_frame_t   f;

    if (zmqd_nschs == 0) {
        zmqd_sch_metrics();
        return 0;
    }

    zmqd_sch_run_retries(env, max_hold, verbose);

    got = 0;
    n = 0;

    for (i = 0; i < zmqd_nschs && !*stop; i++) {
        ch = zmqd_schs[i];

        if (ch->conn == NULL) {
            if (zmqd_now() < ch->next_attempt) {
                continue;
            }
            zmqd_sch_connect(env, ch);
            if (ch->conn == NULL) {
                continue;
            }
        }

        n++;

        for (k = 0; k < ZMQD_SCH_BURST && ch->conn != NULL && !*stop; k++) {
            rc = zmqd_stomp_read(ch->conn, &f, 0, err, sizeof(err));
            if (rc < 0) {
                zmqd_sch_down(ch, err, 0);
                break;
            }
            if (rc == 0) {
                break;
            }
            got = 1;
            zmqd_sch_frame(env, max_hold, verbose, ch, &f);
        }

        if (ch->conn != NULL && zmqd_stomp_broken(ch->conn)) {
            zmqd_sch_down(ch, "the heart-beat thread could not write", 0);
        }
    }

    zmqd_sch_metrics();

    if (got || n == 0 || wait_ms <= 0 || *stop) {
        return n > 0;
    }

    /* nothing came: wait for the sockets, or the next retry */
    nfds = 0;
    for (i = 0; i < zmqd_nschs; i++) {
        if (zmqd_schs[i]->conn != NULL) {
            if (zmqd_stomp_pending(zmqd_schs[i]->conn)) {
                return 1;
            }
            fds[nfds].fd = zmqd_stomp_fd(zmqd_schs[i]->conn);
            fds[nfds].events = POLLIN;
            nfds++;
        }
    }

    ms = wait_ms;
    if (zmqd_sretries.n > 0) {
        now = zmqd_now();
        if (zmqd_sretries.a[0].due - now < ms / 1000.0) {
            ms = zmqd_sretries.a[0].due <= now
                 ? 0 : (int) ((zmqd_sretries.a[0].due - now) * 1000) + 1;
        }
    }

    (void) poll(fds, (nfds_t) nfds, ms);
    return 1;
}
