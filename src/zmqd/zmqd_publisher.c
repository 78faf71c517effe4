/*
 * zmqd: what is published again (a dead letter, the publish service).
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

#include <stdlib.h>
#include <string.h>

#include "zmqd.h"


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
