/*
 * ngx_zmq core: the JMS wire headers of RabbitMQ's JMS client (see
 * zgw_jms.h for what that client writes and reads).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "zgw_amqp_check.h"
#include "zgw_jms.h"


/* the last millisecond of year 9999: a later JMSTimestamp is nonsense */
#define ZGW_JMS_MS_MAX  253402300799999LL


typedef enum {
    ZGW_JMS_DELIVERY_MODE = 0,
    ZGW_JMS_MESSAGE_ID,
    ZGW_JMS_TIMESTAMP,
    ZGW_JMS_PRIORITY,
    ZGW_JMS_CORRELATION_ID,
    ZGW_JMS_TYPE,
    ZGW_JMS_EXPIRATION,
    ZGW_JMS_NAMES
} zgw_jms_name_e;


/* the names, exactly as the client spells and compares them */
static const char  *zgw_jms_names[ZGW_JMS_NAMES] = {
    "JMSDeliveryMode",
    "JMSMessageID",
    "JMSTimestamp",
    "JMSPriority",
    "JMSCorrelationID",
    "JMSType",
    "JMSExpiration"
};


/* application/<subtype> that is text */
static const char  *zgw_jms_text_subtypes[] = {
    "json", "xml", "javascript", "ecmascript", "x-www-form-urlencoded",
    "yaml", "x-yaml", "ndjson", "x-ndjson", NULL
};


static int zgw_jms_token_is(const char *s, size_t len, const char *word);
static int zgw_jms_charset_ok(const char *v, size_t len);
static void zgw_jms_string(amqp_table_entry_t *e, zgw_jms_name_e name,
    const void *value, size_t len);
static void zgw_jms_int64(amqp_table_entry_t *e, zgw_jms_name_e name,
    int64_t value);
static size_t zgw_jms_id(char *id, const amqp_bytes_t *message_id);
static int zgw_jms_str(const amqp_field_value_t *v, amqp_bytes_t *out,
    size_t min, size_t max);
static int zgw_jms_num(const amqp_field_value_t *v, int64_t *out);


static int
zgw_jms_token_is(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp(s, word, len) == 0;
}


static int
zgw_jms_charset_ok(const char *v, size_t len)
{
    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
        v++;
        len -= 2;
    }

    return zgw_jms_token_is(v, len, "utf-8")
           || zgw_jms_token_is(v, len, "utf8")
           || zgw_jms_token_is(v, len, "us-ascii");
}


int
zgw_jms_is_text(const char *ct, size_t len, int encoded)
{
    size_t       i, t, s, n, v;
    const char  *sub;

    if (encoded || ct == NULL) {
        return 0;
    }

    for (i = 0; i < len && (ct[i] == ' ' || ct[i] == '\t'); i++) {
        /* void */
    }

    /* type "/" subtype */

    t = i;
    while (i < len && ct[i] != '/' && ct[i] != ';') {
        i++;
    }
    if (i == len || ct[i] != '/' || i == t) {
        return 0;
    }

    s = ++i;
    while (i < len && ct[i] != ';' && ct[i] != ' ' && ct[i] != '\t') {
        i++;
    }
    if (i == s) {
        return 0;
    }

    sub = ct + s;
    n = i - s;

    if (!zgw_jms_token_is(ct + t, s - 1 - t, "text")
        && !(n > 5 && strncasecmp(sub + n - 5, "+json", 5) == 0)
        && !(n > 4 && strncasecmp(sub + n - 4, "+xml", 4) == 0))
    {
        if (!zgw_jms_token_is(ct + t, s - 1 - t, "application")) {
            return 0;
        }

        for (t = 0; zgw_jms_text_subtypes[t] != NULL; t++) {
            if (zgw_jms_token_is(sub, n, zgw_jms_text_subtypes[t])) {
                break;
            }
        }

        if (zgw_jms_text_subtypes[t] == NULL) {
            return 0;
        }
    }

    /* parameters: a charset must be one Java decodes as UTF-8 */

    while (i < len) {
        while (i < len && (ct[i] == ' ' || ct[i] == '\t' || ct[i] == ';')) {
            i++;
        }

        n = i;
        while (i < len && ct[i] != '=' && ct[i] != ';') {
            i++;
        }

        if (i == len || ct[i] == ';') {
            continue;
        }

        v = ++i;
        while (i < len && ct[i] != ';') {
            i++;
        }

        t = i;
        while (t > v && (ct[t - 1] == ' ' || ct[t - 1] == '\t')) {
            t--;
        }

        if (zgw_jms_token_is(ct + n, v - 1 - n, "charset")
            && !zgw_jms_charset_ok(ct + v, t - v))
        {
            return 0;
        }
    }

    return 1;
}


static void
zgw_jms_string(amqp_table_entry_t *e, zgw_jms_name_e name,
    const void *value, size_t len)
{
    e->key.bytes = (void *) zgw_jms_names[name];
    e->key.len = strlen(zgw_jms_names[name]);
    e->value.kind = AMQP_FIELD_KIND_UTF8;
    e->value.value.bytes.bytes = (void *) value;
    e->value.value.bytes.len = len;
}


static void
zgw_jms_int64(amqp_table_entry_t *e, zgw_jms_name_e name, int64_t value)
{
    e->key.bytes = (void *) zgw_jms_names[name];
    e->key.len = strlen(zgw_jms_names[name]);
    e->value.kind = AMQP_FIELD_KIND_I64;             /* Java's Long: 'l' */
    e->value.value.i64 = value;
}


/* "ID:" + the message id (at most 255 bytes), NUL-ended; its length */
static size_t
zgw_jms_id(char *id, const amqp_bytes_t *message_id)
{
    size_t  len;

    len = message_id->len < ZGW_JMS_ID_SIZE - 4
          ? message_id->len : ZGW_JMS_ID_SIZE - 4;
    memcpy(id, "ID:", 3);
    memcpy(id + 3, message_id->bytes, len);
    id[3 + len] = '\0';

    return 3 + len;
}


int
zgw_jms_headers(const amqp_basic_properties_t *p, uint64_t ms,
    amqp_table_entry_t *entries, char *id)
{
    int                  n, text;
    unsigned long long   ttl;
    const char          *s;

    n = 0;

    s = (p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG) && p->delivery_mode == 2
        ? "PERSISTENT" : "NON_PERSISTENT";
    zgw_jms_string(&entries[n++], ZGW_JMS_DELIVERY_MODE, s, strlen(s));

    if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
        zgw_jms_string(&entries[n], ZGW_JMS_MESSAGE_ID, id,
                       zgw_jms_id(id, &p->message_id));
        n++;
    }

    zgw_jms_int64(&entries[n++], ZGW_JMS_TIMESTAMP, (int64_t) ms);

    entries[n].key.bytes = (void *) zgw_jms_names[ZGW_JMS_PRIORITY];
    entries[n].key.len = strlen(zgw_jms_names[ZGW_JMS_PRIORITY]);
    entries[n].value.kind = AMQP_FIELD_KIND_I32;     /* Java's Integer: 'I' */
    entries[n].value.value.i32 = (p->_flags & AMQP_BASIC_PRIORITY_FLAG)
                                 ? p->priority : ZGW_JMS_PRIORITY_DEFAULT;
    n++;

    if (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) {
        zgw_jms_string(&entries[n++], ZGW_JMS_CORRELATION_ID,
                       p->correlation_id.bytes, p->correlation_id.len);
    }

    text = (p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
           && zgw_jms_is_text(p->content_type.bytes, p->content_type.len,
                              (p->_flags & AMQP_BASIC_CONTENT_ENCODING_FLAG)
                              && p->content_encoding.len > 0);
    s = text ? ZGW_JMS_TEXT : ZGW_JMS_BYTES;
    zgw_jms_string(&entries[n++], ZGW_JMS_TYPE, s, strlen(s));

    /* JMS' expiration is a time: when the time-to-live ends */
    if ((p->_flags & AMQP_BASIC_EXPIRATION_FLAG)
        && zgw_amqp_expiration_check(p->expiration.bytes, p->expiration.len,
                                     &ttl)
           == NULL)
    {
        zgw_jms_int64(&entries[n++], ZGW_JMS_EXPIRATION,
                      (int64_t) (ms + ttl));
    }

    return n;
}


int
zgw_jms_reserved(const void *name, size_t len)
{
    return (len >= 3 && strncasecmp(name, "JMS", 3) == 0)
           || (len >= 4 && strncasecmp(name, "rmq.", 4) == 0);
}


/* a string header of min-max bytes a header value may hold */
static int
zgw_jms_str(const amqp_field_value_t *v, amqp_bytes_t *out, size_t min,
    size_t max)
{
    if (v->kind != AMQP_FIELD_KIND_UTF8 && v->kind != AMQP_FIELD_KIND_BYTES) {
        return 0;
    }

    if (v->value.bytes.len < min || v->value.bytes.len > max
        || (v->value.bytes.len > 0 && v->value.bytes.bytes == NULL)
        || zgw_amqp_header_value_check(v->value.bytes.bytes,
                                       v->value.bytes.len)
           != NULL)
    {
        return 0;
    }

    *out = v->value.bytes;
    return 1;
}


/* an integer header, or a decimal string as Java's Long.valueOf reads it */
static int
zgw_jms_num(const amqp_field_value_t *v, int64_t *out)
{
    int             neg;
    size_t          i, len;
    uint64_t        n;
    const uint8_t  *s;

    switch (v->kind) {
    case AMQP_FIELD_KIND_I8:  *out = v->value.i8;  return 1;
    case AMQP_FIELD_KIND_U8:  *out = v->value.u8;  return 1;
    case AMQP_FIELD_KIND_I16: *out = v->value.i16; return 1;
    case AMQP_FIELD_KIND_U16: *out = v->value.u16; return 1;
    case AMQP_FIELD_KIND_I32: *out = v->value.i32; return 1;
    case AMQP_FIELD_KIND_U32: *out = v->value.u32; return 1;
    case AMQP_FIELD_KIND_I64: *out = v->value.i64; return 1;

    case AMQP_FIELD_KIND_U64:
        if (v->value.u64 > INT64_MAX) {
            return 0;
        }
        *out = (int64_t) v->value.u64;
        return 1;

    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        break;

    default:
        return 0;
    }

    s = v->value.bytes.bytes;
    len = v->value.bytes.len;

    if (len == 0 || len > 20 || s == NULL) {
        return 0;
    }

    i = 0;
    neg = 0;
    if (s[0] == '-' || s[0] == '+') {
        neg = s[0] == '-';
        i = 1;
    }

    if (i == len) {
        return 0;
    }

    for (n = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || n > (uint64_t) INT64_MAX / 10) {
            return 0;
        }
        n = n * 10 + (uint64_t) (s[i] - '0');
        if (n > (uint64_t) INT64_MAX) {
            return 0;
        }
    }

    *out = neg ? -(int64_t) n : (int64_t) n;
    return 1;
}


int
zgw_jms_unmap(const amqp_basic_properties_t *in, zgw_jms_in_t *out)
{
    int                        i, j, k, has_ms;
    int64_t                    n, ms, exp;
    amqp_bytes_t               s;
    amqp_basic_properties_t   *p;
    const amqp_table_entry_t  *e, *found[ZGW_JMS_NAMES];

    ms = 0;
    memset(out, 0, sizeof(zgw_jms_in_t));
    out->props = *in;
    p = &out->props;

    if (!(in->_flags & AMQP_BASIC_HEADERS_FLAG)
        || in->headers.num_entries <= 0)
    {
        return 0;
    }

    out->entries = malloc((size_t) in->headers.num_entries
                          * sizeof(amqp_table_entry_t));
    if (out->entries == NULL) {
        return -1;
    }

    memset(found, 0, sizeof(found));
    j = 0;

    for (i = 0; i < in->headers.num_entries; i++) {
        e = &in->headers.entries[i];

        if (!zgw_jms_reserved(e->key.bytes, e->key.len)) {
            out->entries[j++] = *e;
            continue;
        }

        out->removed++;

        /* the first of a name given twice, as exactly spelled */
        for (k = 0; k < ZGW_JMS_NAMES; k++) {
            if (e->key.len == strlen(zgw_jms_names[k])
                && memcmp(e->key.bytes, zgw_jms_names[k], e->key.len) == 0
                && found[k] == NULL)
            {
                found[k] = e;
                break;
            }
        }
    }

    p->headers.entries = out->entries;
    p->headers.num_entries = j;

    if (j == 0) {
        p->_flags &= ~AMQP_BASIC_HEADERS_FLAG;
    }

    /* what the message lacks, from what its JMS headers say */

    if (!(p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        && found[ZGW_JMS_MESSAGE_ID] != NULL
        && zgw_jms_str(&found[ZGW_JMS_MESSAGE_ID]->value, &s, 1,
                       ZGW_JMS_ID_SIZE - 2))
    {
        if (s.len > 3 && memcmp(s.bytes, "ID:", 3) == 0) {
            s.bytes = (char *) s.bytes + 3;
            s.len -= 3;
        }

        if (s.len <= ZGW_AMQP_SHORTSTR_MAX) {
            p->_flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
            p->message_id = s;
        }
    }

    if (!(p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG)
        && found[ZGW_JMS_CORRELATION_ID] != NULL
        && zgw_jms_str(&found[ZGW_JMS_CORRELATION_ID]->value, &s, 1,
                       ZGW_AMQP_SHORTSTR_MAX))
    {
        p->_flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
        p->correlation_id = s;
    }

    has_ms = found[ZGW_JMS_TIMESTAMP] != NULL
             && zgw_jms_num(&found[ZGW_JMS_TIMESTAMP]->value, &ms)
             && ms > 0 && ms <= ZGW_JMS_MS_MAX;

    if (!(p->_flags & AMQP_BASIC_TIMESTAMP_FLAG) && has_ms) {
        p->_flags |= AMQP_BASIC_TIMESTAMP_FLAG;
        p->timestamp = (uint64_t) ms / 1000;
    }

    if (!has_ms && (p->_flags & AMQP_BASIC_TIMESTAMP_FLAG)
        && p->timestamp <= (uint64_t) ZGW_JMS_MS_MAX / 1000)
    {
        ms = (int64_t) p->timestamp * 1000;
        has_ms = 1;
    }

    if (!(p->_flags & AMQP_BASIC_PRIORITY_FLAG)
        && found[ZGW_JMS_PRIORITY] != NULL
        && zgw_jms_num(&found[ZGW_JMS_PRIORITY]->value, &n)
        && n >= 0 && n <= 9)
    {
        p->_flags |= AMQP_BASIC_PRIORITY_FLAG;
        p->priority = (uint8_t) n;
    }

    if (!(p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG)
        && found[ZGW_JMS_DELIVERY_MODE] != NULL)
    {
        e = found[ZGW_JMS_DELIVERY_MODE];
        n = 0;

        /* the names the client writes, or JMS' DeliveryMode constants */
        if (zgw_jms_str(&e->value, &s, 1, 14)) {
            n = s.len == 10 && memcmp(s.bytes, "PERSISTENT", 10) == 0 ? 2
                : s.len == 14 && memcmp(s.bytes, "NON_PERSISTENT", 14) == 0
                  ? 1 : 0;

        } else if (!zgw_jms_num(&e->value, &n) || (n != 1 && n != 2)) {
            n = 0;
        }

        if (n != 0) {
            p->_flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
            p->delivery_mode = (uint8_t) n;
        }
    }

    /* a time-to-live from the time it ends and the time it was sent */
    if (!(p->_flags & AMQP_BASIC_EXPIRATION_FLAG)
        && found[ZGW_JMS_EXPIRATION] != NULL && has_ms
        && zgw_jms_num(&found[ZGW_JMS_EXPIRATION]->value, &exp)
        && exp > 0 && exp <= ZGW_JMS_MS_MAX
        && exp >= ms && (uint64_t) (exp - ms) <= ZGW_AMQP_EXPIRATION_MAX)
    {
        p->_flags |= AMQP_BASIC_EXPIRATION_FLAG;
        p->expiration.len = (size_t) snprintf(out->expiration,
                                              sizeof(out->expiration),
                                              "%lld", (long long) (exp - ms));
        p->expiration.bytes = out->expiration;
    }

    if (found[ZGW_JMS_TYPE] != NULL
        && zgw_jms_str(&found[ZGW_JMS_TYPE]->value, &s, 1,
                       ZGW_AMQP_SHORTSTR_MAX))
    {
        if (s.len == sizeof(ZGW_JMS_TEXT) - 1
            && memcmp(s.bytes, ZGW_JMS_TEXT, s.len) == 0)
        {
            if (!(p->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG)
                || (p->content_type.len == 24
                    && strncasecmp(p->content_type.bytes,
                                   "application/octet-stream", 24) == 0))
            {
                p->_flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
                p->content_type.bytes = (void *) ZGW_JMS_TEXT_CONTENT_TYPE;
                p->content_type.len = sizeof(ZGW_JMS_TEXT_CONTENT_TYPE) - 1;
            }

        } else if (!(s.len == sizeof(ZGW_JMS_BYTES) - 1
                     && memcmp(s.bytes, ZGW_JMS_BYTES, s.len) == 0)
                   && !(p->_flags & AMQP_BASIC_TYPE_FLAG))
        {
            p->_flags |= AMQP_BASIC_TYPE_FLAG;
            p->type = s;
        }
    }

    return 0;
}


void
zgw_jms_in_free(zgw_jms_in_t *out)
{
    free(out->entries);
    out->entries = NULL;
}
