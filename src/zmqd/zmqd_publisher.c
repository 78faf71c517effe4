/*
 * zmqd: the publisher pool, and what is published again (a dead letter,
 * the publish service).
 *
 * One publishing connection per amqp_def, in confirm mode, opened when a
 * service or a dead letter first needs it and closed when it fails or its
 * definition changes; the same for each stomp_def a publish service with a
 * stomp_outconn sends through (a STOMP 1.2 connection, zmqd_stomp.c). It is the services' only way to the broker: they
 * get it, with the configuration, key and Redis they need, in a zmqd_env_t
 * instead of calling back into the loop.
 *
 * A message is published again with its own properties and headers, except
 * where the broker would refuse them or they would lose the message:
 *
 *   user_id     RabbitMQ closes the channel (406 PRECONDITION_FAILED) on a
 *               publish whose user_id is not the connection's login, on
 *               every attempt: a user_id other than the publishing
 *               connection's login is dropped and kept in the header
 *               x-zmq-original-user-id.
 *   expiration  (dead letters only) a dead letter must stay until someone
 *               reads it: expiration is dropped and kept in the header
 *               x-zmq-original-expiration, as RabbitMQ's own dead-lettering
 *               keeps it in x-death's original-expiration; dead letters are
 *               persistent (delivery_mode 2).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zmqd.h"
#include "zmqd_stomp_client.h"


static zmqd_publisher_slot_t *
zmqd_publisher_slot(zmqd_publishers_t *p, const char *def, int create)
{
    int  i, free_slot;

    free_slot = -1;

    for (i = 0; i < ZMQD_PUBLISHERS_MAX; i++) {
        if (p->slots[i].def != NULL && strcmp(p->slots[i].def, def) == 0) {
            return &p->slots[i];
        }
        if (p->slots[i].def == NULL && free_slot < 0) {
            free_slot = i;
        }
    }

    if (!create || free_slot < 0) {
        return NULL;
    }

    p->slots[free_slot].def = strdup(def);
    if (p->slots[free_slot].def == NULL) {
        return NULL;
    }

    return &p->slots[free_slot];
}


static void
zmqd_publisher_slot_free(zmqd_publisher_slot_t *slot)
{
    zmqd_amqp_close(slot->amqp);
    free(slot->def);
    free(slot->fingerprint);
    memset(slot, 0, sizeof(zmqd_publisher_slot_t));
}


zmqd_amqp_t *
zmqd_publisher(const zmqd_env_t *env, const char *name, char *err,
    size_t errlen)
{
    char                   *fp;
    json_t                 *def;
    zmqd_publisher_slot_t  *slot;

    slot = zmqd_publisher_slot(env->publishers, name, 0);
    if (slot != NULL && slot->amqp != NULL) {
        if (!zmqd_amqp_broken(slot->amqp)) {
            return slot->amqp;
        }

        /* it broke while idle (a broker restart): open another now */
        zmqd_amqp_close(slot->amqp);
        slot->amqp = NULL;
    }

    def = zgw_config_get(env->cfg, ZGW_KIND_AMQP_DEF, name);
    if (def == NULL) {
        snprintf(err, errlen, "amqp_def '%s' does not exist", name);
        return NULL;
    }

    fp = zgw_object_dump(ZGW_KIND_AMQP_DEF, def);
    if (fp == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }

    if (slot == NULL) {
        slot = zmqd_publisher_slot(env->publishers, name, 1);
        if (slot == NULL) {
            snprintf(err, errlen, "too many publishing connections");
            free(fp);
            return NULL;
        }
    }

    slot->amqp = zmqd_amqp_open(def, env->key, 1, err, errlen);
    if (slot->amqp == NULL) {
        free(fp);
        zmqd_publisher_slot_free(slot);
        return NULL;
    }

    free(slot->fingerprint);
    slot->fingerprint = fp;
    return slot->amqp;
}


void
zmqd_publisher_close(zmqd_publishers_t *p, const char *name)
{
    zmqd_publisher_slot_t  *slot;

    slot = zmqd_publisher_slot(p, name, 0);
    if (slot != NULL) {
        zmqd_publisher_slot_free(slot);
    }
}


/* --------------------------------------------------------------- STOMP */


static zmqd_stomp_slot_t *
zmqd_stomp_slot(zmqd_publishers_t *p, const char *def, int create)
{
    int  i, free_slot;

    free_slot = -1;

    for (i = 0; i < ZMQD_PUBLISHERS_MAX; i++) {
        if (p->stomp[i].def != NULL && strcmp(p->stomp[i].def, def) == 0) {
            return &p->stomp[i];
        }
        if (p->stomp[i].def == NULL && free_slot < 0) {
            free_slot = i;
        }
    }

    if (!create || free_slot < 0) {
        return NULL;
    }

    p->stomp[free_slot].def = strdup(def);
    if (p->stomp[free_slot].def == NULL) {
        return NULL;
    }

    return &p->stomp[free_slot];
}


static void
zmqd_stomp_slot_free(zmqd_stomp_slot_t *slot, int graceful)
{
    zmqd_stomp_close(slot->conn, graceful);
    free(slot->def);
    free(slot->fingerprint);
    memset(slot, 0, sizeof(zmqd_stomp_slot_t));
}


/*
 * An idle publishing connection still works: what the broker sent since
 * (heart-beats, a stale RECEIPT) is read; a closed connection, a broken
 * one or an ERROR means it does not
 */
static int
zmqd_stomp_idle_ok(zmqd_stomp_t *s, char *err, size_t errlen)
{
    int                  rc, n;
    zmqd_stomp_frame_t   f;

    for (n = 0; n < 64; n++) {
        if (zmqd_stomp_broken(s)) {
            snprintf(err, errlen, "the connection is broken");
            return 0;
        }

        rc = zmqd_stomp_read(s, &f, 0, err, errlen);
        if (rc < 0) {
            return 0;
        }
        if (rc == 0) {
            return 1;
        }

        rc = strcmp(f.command, "ERROR") != 0;
        if (!rc) {
            snprintf(err, errlen, "ERROR frame: %.300s",
                     zmqd_stomp_get(&f, "message") ? zmqd_stomp_get(&f,
                                                                    "message")
                                                   : "(no message header)");
        }
        zmqd_stomp_frame_free(&f);
        if (!rc) {
            return 0;
        }
    }

    return 1;
}


zmqd_stomp_t *
zmqd_stomp_publisher(const zmqd_env_t *env, const char *name, char *err,
    size_t errlen)
{
    int                 next;
    char               *fp, why[512];
    json_t             *def;
    zmqd_stomp_slot_t  *slot;

    slot = zmqd_stomp_slot(env->publishers, name, 0);
    if (slot != NULL && slot->conn != NULL) {
        if (zmqd_stomp_idle_ok(slot->conn, why, sizeof(why))) {
            return slot->conn;
        }

        /* it broke while idle (a broker restart): open another now */
        zmqd_log("warn", "stomp_def '%s': publishing connection to %s "
                 "lost while idle: %s; reconnecting", name,
                 zmqd_stomp_peer(slot->conn), why);
        zmqd_stomp_close(slot->conn, 0);
        slot->conn = NULL;
    }

    def = zgw_config_get(env->cfg, ZGW_KIND_STOMP_DEF, name);
    if (def == NULL) {
        snprintf(err, errlen, "stomp_def '%s' does not exist", name);
        return NULL;
    }

    if (!json_is_true(json_object_get(def, "is_active"))) {
        snprintf(err, errlen, "stomp_def '%s' is not active", name);
        return NULL;
    }

    fp = zgw_object_dump(ZGW_KIND_STOMP_DEF, def);
    if (fp == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }

    if (slot == NULL) {
        slot = zmqd_stomp_slot(env->publishers, name, 1);
        if (slot == NULL) {
            snprintf(err, errlen, "too many STOMP publishing connections");
            free(fp);
            return NULL;
        }
    }

    next = slot->next_host;
    slot->conn = zmqd_stomp_open(def, env->key, &next, err, errlen);
    slot->next_host = next;

    if (slot->conn == NULL) {
        free(fp);
        zmqd_stomp_slot_free(slot, 0);
        return NULL;
    }

    free(slot->fingerprint);
    slot->fingerprint = fp;
    return slot->conn;
}


void
zmqd_stomp_publisher_close(zmqd_publishers_t *p, const char *name)
{
    zmqd_stomp_slot_t  *slot;

    slot = zmqd_stomp_slot(p, name, 0);
    if (slot != NULL) {
        zmqd_stomp_slot_free(slot, 0);
    }
}


void
zmqd_publishers_apply(zmqd_publishers_t *p, const zgw_config_t *cfg)
{
    int      i, same;
    char    *fp;
    json_t  *def;

    for (i = 0; i < ZMQD_PUBLISHERS_MAX; i++) {
        if (p->slots[i].def == NULL) {
            continue;
        }

        def = zgw_config_get(cfg, ZGW_KIND_AMQP_DEF, p->slots[i].def);
        fp = def ? zgw_object_dump(ZGW_KIND_AMQP_DEF, def) : NULL;
        same = fp != NULL && p->slots[i].fingerprint != NULL
               && strcmp(fp, p->slots[i].fingerprint) == 0;
        free(fp);

        if (!same) {
            zmqd_publisher_slot_free(&p->slots[i]);
        }
    }

    for (i = 0; i < ZMQD_PUBLISHERS_MAX; i++) {
        if (p->stomp[i].def == NULL) {
            continue;
        }

        def = zgw_config_get(cfg, ZGW_KIND_STOMP_DEF, p->stomp[i].def);
        fp = def ? zgw_object_dump(ZGW_KIND_STOMP_DEF, def) : NULL;
        same = fp != NULL && p->stomp[i].fingerprint != NULL
               && strcmp(fp, p->stomp[i].fingerprint) == 0;
        free(fp);

        if (!same) {
            zmqd_stomp_slot_free(&p->stomp[i], 1);
        }
    }
}


void
zmqd_publishers_close(zmqd_publishers_t *p)
{
    int  i;

    for (i = 0; i < ZMQD_PUBLISHERS_MAX; i++) {
        if (p->slots[i].def != NULL) {
            zmqd_publisher_slot_free(&p->slots[i]);
        }
        if (p->stomp[i].def != NULL) {
            zmqd_stomp_slot_free(&p->stomp[i], 1);
        }
    }
}


int
zmqd_props_init(zmqd_props_t *p, const amqp_basic_properties_t *src,
    int extra)
{
    int                  n;
    const amqp_table_t  *t;

    memset(p, 0, sizeof(zmqd_props_t));
    p->props = *src;

    t = (src->_flags & AMQP_BASIC_HEADERS_FLAG) ? &src->headers : NULL;
    n = t ? t->num_entries : 0;

    p->cap = n + extra;
    p->entries = calloc((size_t) (p->cap > 0 ? p->cap : 1),
                        sizeof(amqp_table_entry_t));
    if (p->entries == NULL) {
        return -1;
    }

    if (n > 0) {
        memcpy(p->entries, t->entries, (size_t) n
                                       * sizeof(amqp_table_entry_t));
    }

    p->n = n;
    p->props.headers.entries = p->entries;
    p->props.headers.num_entries = n;
    return 0;
}


void
zmqd_props_free(zmqd_props_t *p)
{
    free(p->entries);
    p->entries = NULL;
}


/* the entry of a header, replaced if the message has it already */
static amqp_table_entry_t *
zmqd_props_entry(zmqd_props_t *p, const char *key)
{
    int     i;
    size_t  len;

    len = strlen(key);

    for (i = 0; i < p->n; i++) {
        if (p->entries[i].key.len == len
            && memcmp(p->entries[i].key.bytes, key, len) == 0)
        {
            return &p->entries[i];
        }
    }

    if (p->n == p->cap) {
        return NULL;                    /* cannot happen: extra was counted */
    }

    p->entries[p->n].key = amqp_cstring_bytes(key);
    p->props.headers.num_entries = ++p->n;
    p->props._flags |= AMQP_BASIC_HEADERS_FLAG;
    return &p->entries[p->n - 1];
}


void
zmqd_props_string(zmqd_props_t *p, const char *key, amqp_bytes_t value)
{
    amqp_table_entry_t  *e;

    e = zmqd_props_entry(p, key);
    if (e != NULL) {
        e->value.kind = AMQP_FIELD_KIND_UTF8;
        e->value.value.bytes = value;
    }
}


void
zmqd_props_int(zmqd_props_t *p, const char *key, int32_t value)
{
    amqp_table_entry_t  *e;

    e = zmqd_props_entry(p, key);
    if (e != NULL) {
        e->value.kind = AMQP_FIELD_KIND_I32;
        e->value.value.i32 = value;
    }
}


void
zmqd_props_user_id(zmqd_props_t *p, const char *login)
{
    if (!(p->props._flags & AMQP_BASIC_USER_ID_FLAG)) {
        return;
    }

    if (p->props.user_id.len == strlen(login)
        && memcmp(p->props.user_id.bytes, login, strlen(login)) == 0)
    {
        return;                         /* the broker accepts its own */
    }

    zmqd_props_string(p, "x-zmq-original-user-id", p->props.user_id);
    p->props._flags &= ~AMQP_BASIC_USER_ID_FLAG;
    p->props.user_id = amqp_empty_bytes;
}


void
zmqd_props_dead_letter(zmqd_props_t *p, const char *login)
{
    if (p->props._flags & AMQP_BASIC_EXPIRATION_FLAG) {
        zmqd_props_string(p, "x-zmq-original-expiration",
                          p->props.expiration);
        p->props._flags &= ~AMQP_BASIC_EXPIRATION_FLAG;
        p->props.expiration = amqp_empty_bytes;
    }

    p->props._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
    p->props.delivery_mode = 2;

    zmqd_props_user_id(p, login);
}
