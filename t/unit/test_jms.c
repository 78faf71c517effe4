/*
 * Unit tests: the JMS wire headers of RabbitMQ's JMS client, both ways.
 * Each case is one input and what must come out.
 */

#include "zgw_test_util.h"

#include "zgw_jms.h"


#define B(s)  ((amqp_bytes_t) { sizeof(s) - 1, (void *) (s) })


typedef struct {
    const char  *content_type;
    int          encoded;
    int          text;
} text_case_t;


static const text_case_t  text_cases[] = {
    { "text/plain", 0, 1 },
    { "TEXT/HTML", 0, 1 },
    { "text/csv; charset=utf-8", 0, 1 },
    { "text/plain;charset=\"UTF-8\"", 0, 1 },
    { "text/plain; charset=us-ascii", 0, 1 },
    { "text/plain; charset=iso-8859-1", 0, 0 },
    { "text/plain; format=flowed; charset=latin1", 0, 0 },
    { "text/plain; format=flowed", 0, 1 },
    { "application/json", 0, 1 },
    { "  application/json ; charset=utf-8", 0, 1 },
    { "application/xml", 0, 1 },
    { "application/problem+json", 0, 1 },
    { "application/atom+xml", 0, 1 },
    { "image/svg+xml", 0, 1 },
    { "application/x-www-form-urlencoded", 0, 1 },
    { "application/yaml", 0, 1 },
    { "application/json", 1, 0 },
    { "text/plain", 1, 0 },
    { "application/octet-stream", 0, 0 },
    { "application/jsonx", 0, 0 },
    { "application/x-thing", 0, 0 },
    { "image/png", 0, 0 },
    { "text", 0, 0 },
    { "text/", 0, 0 },
    { "/plain", 0, 0 },
    { "", 0, 0 },
    { "+json", 0, 0 },
    { "application/+json", 0, 0 },
};


static void
test_text_content_types(void **state)
{
    size_t  i;

    (void) state;

    for (i = 0; i < sizeof(text_cases) / sizeof(text_cases[0]); i++) {
        if (zgw_jms_is_text(text_cases[i].content_type,
                            strlen(text_cases[i].content_type),
                            text_cases[i].encoded)
            != text_cases[i].text)
        {
            fail_msg("'%s' (encoded %d) should be %s",
                     text_cases[i].content_type, text_cases[i].encoded,
                     text_cases[i].text ? "text" : "bytes");
        }
    }

    assert_int_equal(zgw_jms_is_text(NULL, 0, 0), 0);
}


static const amqp_table_entry_t *
find(const amqp_table_entry_t *e, int n, const char *name)
{
    int  i;

    for (i = 0; i < n; i++) {
        if (e[i].key.len == strlen(name)
            && memcmp(e[i].key.bytes, name, e[i].key.len) == 0)
        {
            return &e[i];
        }
    }

    return NULL;
}


static void
assert_str(const amqp_table_entry_t *e, const char *value)
{
    assert_non_null(e);
    assert_int_equal(e->value.kind, AMQP_FIELD_KIND_UTF8);
    assert_int_equal(e->value.value.bytes.len, strlen(value));
    assert_memory_equal(e->value.value.bytes.bytes, value, strlen(value));
}


static void
test_headers_of_a_full_text_message(void **state)
{
    int                      n;
    char                     id[ZGW_JMS_ID_SIZE];
    amqp_table_entry_t       e[ZGW_JMS_HEADERS_MAX];
    amqp_basic_properties_t  p;

    (void) state;

    memset(&p, 0, sizeof(p));
    p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG
               | AMQP_BASIC_PRIORITY_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG
               | AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_EXPIRATION_FLAG
               | AMQP_BASIC_REPLY_TO_FLAG;
    p.delivery_mode = 2;
    p.message_id = B("m-1");
    p.priority = 7;
    p.correlation_id = B("c-1");
    p.content_type = B("application/json");
    p.expiration = B("60000");
    p.reply_to = B("replies");

    n = zgw_jms_headers(&p, 1700000000123ULL, e, id);
    assert_int_equal(n, 7);

    assert_str(find(e, n, "JMSDeliveryMode"), "PERSISTENT");
    assert_str(find(e, n, "JMSMessageID"), "ID:m-1");
    assert_str(find(e, n, "JMSCorrelationID"), "c-1");
    assert_str(find(e, n, "JMSType"), "TextMessage");

    assert_non_null(find(e, n, "JMSTimestamp"));
    assert_int_equal(find(e, n, "JMSTimestamp")->value.kind,
                     AMQP_FIELD_KIND_I64);
    assert_int_equal(find(e, n, "JMSTimestamp")->value.value.i64,
                     1700000000123LL);

    assert_non_null(find(e, n, "JMSPriority"));
    assert_int_equal(find(e, n, "JMSPriority")->value.kind,
                     AMQP_FIELD_KIND_I32);
    assert_int_equal(find(e, n, "JMSPriority")->value.value.i32, 7);

    assert_non_null(find(e, n, "JMSExpiration"));
    assert_int_equal(find(e, n, "JMSExpiration")->value.kind,
                     AMQP_FIELD_KIND_I64);
    assert_int_equal(find(e, n, "JMSExpiration")->value.value.i64,
                     1700000060123LL);

    /* the client reads JMSReplyTo from reply_to, never from a header */
    assert_null(find(e, n, "JMSReplyTo"));
}


static void
test_headers_of_a_bare_binary_message(void **state)
{
    int                      n;
    char                     id[ZGW_JMS_ID_SIZE];
    amqp_table_entry_t       e[ZGW_JMS_HEADERS_MAX];
    amqp_basic_properties_t  p;

    (void) state;

    memset(&p, 0, sizeof(p));
    p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG
               | AMQP_BASIC_CONTENT_TYPE_FLAG;
    p.delivery_mode = 1;
    p.message_id = B("m-2");
    p.content_type = B("image/png");

    n = zgw_jms_headers(&p, 5, e, id);
    assert_int_equal(n, 5);
    assert_str(find(e, n, "JMSDeliveryMode"), "NON_PERSISTENT");
    assert_str(find(e, n, "JMSType"), "BytesMessage");
    assert_int_equal(find(e, n, "JMSPriority")->value.value.i32, 4);
    assert_null(find(e, n, "JMSCorrelationID"));
    assert_null(find(e, n, "JMSExpiration"));

    /* gzip'd JSON is no text */
    p._flags |= AMQP_BASIC_CONTENT_ENCODING_FLAG;
    p.content_type = B("application/json");
    p.content_encoding = B("gzip");
    n = zgw_jms_headers(&p, 5, e, id);
    assert_str(find(e, n, "JMSType"), "BytesMessage");
}


static void
test_a_longest_message_id_fits(void **state)
{
    int                      n;
    char                     id[ZGW_JMS_ID_SIZE], mid[255];
    amqp_table_entry_t       e[ZGW_JMS_HEADERS_MAX];
    amqp_basic_properties_t  p;

    (void) state;

    memset(mid, 'a', sizeof(mid));
    memset(&p, 0, sizeof(p));
    p._flags = AMQP_BASIC_MESSAGE_ID_FLAG;
    p.message_id.bytes = mid;
    p.message_id.len = sizeof(mid);

    n = zgw_jms_headers(&p, 5, e, id);
    assert_int_equal(find(e, n, "JMSMessageID")->value.value.bytes.len, 258);
    assert_memory_equal(id + 3, mid, sizeof(mid));
}


static void
test_reserved_names(void **state)
{
    (void) state;

    assert_true(zgw_jms_reserved("JMSType", 7));
    assert_true(zgw_jms_reserved("jmstype", 7));
    assert_true(zgw_jms_reserved("JMSXGroupID", 11));
    assert_true(zgw_jms_reserved("JMS", 3));
    assert_true(zgw_jms_reserved("rmq.jms.message.id", 18));
    assert_true(zgw_jms_reserved("RMQ.x", 5));
    assert_false(zgw_jms_reserved("JM", 2));
    assert_false(zgw_jms_reserved("rmq", 3));
    assert_false(zgw_jms_reserved("Customer", 8));
    assert_false(zgw_jms_reserved("x-jms", 5));
}


/* a message as RabbitMQ's JMS client sends it, and what zmqd makes of it */

#define NH  12

static void
java_message(amqp_basic_properties_t *p, amqp_table_entry_t *h)
{
    memset(p, 0, sizeof(*p));
    memset(h, 0, NH * sizeof(*h));

    p->_flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG
                | AMQP_BASIC_PRIORITY_FLAG | AMQP_BASIC_HEADERS_FLAG;
    p->content_type = B("application/octet-stream");
    p->delivery_mode = 2;
    p->priority = 6;

    h[0].key = B("JMSDeliveryMode");
    h[0].value.kind = AMQP_FIELD_KIND_UTF8;
    h[0].value.value.bytes = B("PERSISTENT");
    h[1].key = B("JMSMessageID");
    h[1].value.kind = AMQP_FIELD_KIND_UTF8;
    h[1].value.value.bytes = B("ID:3f1a");
    h[2].key = B("JMSTimestamp");
    h[2].value.kind = AMQP_FIELD_KIND_I64;
    h[2].value.value.i64 = 1700000000999LL;
    h[3].key = B("JMSPriority");
    h[3].value.kind = AMQP_FIELD_KIND_I32;
    h[3].value.value.i32 = 6;
    h[4].key = B("JMSCorrelationID");
    h[4].value.kind = AMQP_FIELD_KIND_UTF8;
    h[4].value.value.bytes = B("corr-9");
    h[5].key = B("JMSType");
    h[5].value.kind = AMQP_FIELD_KIND_UTF8;
    h[5].value.value.bytes = B("TextMessage");
    h[6].key = B("Customer");
    h[6].value.kind = AMQP_FIELD_KIND_UTF8;
    h[6].value.value.bytes = B("ACME");
    h[7].key = B("rmq.jms.message.id");
    h[7].value.kind = AMQP_FIELD_KIND_UTF8;
    h[7].value.value.bytes = B("internal");
    h[8].key = B("JMSExpiration");
    h[8].value.kind = AMQP_FIELD_KIND_I64;
    h[8].value.value.i64 = 1700000030999LL;
    h[9].key = B("Count");
    h[9].value.kind = AMQP_FIELD_KIND_I32;
    h[9].value.value.i32 = 3;

    p->headers.entries = h;
    p->headers.num_entries = 10;
}


static void
test_unmap_a_java_message(void **state)
{
    zgw_jms_in_t             in;
    amqp_table_entry_t       h[NH];
    amqp_basic_properties_t  p;

    (void) state;

    java_message(&p, h);
    assert_int_equal(zgw_jms_unmap(&p, &in), 0);

    assert_int_equal(in.removed, 8);
    assert_int_equal(in.props.headers.num_entries, 2);
    assert_non_null(find(in.props.headers.entries, 2, "Customer"));
    assert_non_null(find(in.props.headers.entries, 2, "Count"));

    assert_true(in.props._flags & AMQP_BASIC_MESSAGE_ID_FLAG);
    assert_int_equal(in.props.message_id.len, 4);
    assert_memory_equal(in.props.message_id.bytes, "3f1a", 4);

    assert_true(in.props._flags & AMQP_BASIC_CORRELATION_ID_FLAG);
    assert_memory_equal(in.props.correlation_id.bytes, "corr-9", 6);

    assert_true(in.props._flags & AMQP_BASIC_TIMESTAMP_FLAG);
    assert_int_equal(in.props.timestamp, 1700000000);

    assert_int_equal(in.props.priority, 6);
    assert_int_equal(in.props.delivery_mode, 2);

    assert_true(in.props._flags & AMQP_BASIC_EXPIRATION_FLAG);
    assert_int_equal(in.props.expiration.len, 5);
    assert_memory_equal(in.props.expiration.bytes, "30000", 5);

    assert_int_equal(in.props.content_type.len,
                     strlen(ZGW_JMS_TEXT_CONTENT_TYPE));
    assert_memory_equal(in.props.content_type.bytes,
                        ZGW_JMS_TEXT_CONTENT_TYPE,
                        strlen(ZGW_JMS_TEXT_CONTENT_TYPE));
    assert_false(in.props._flags & AMQP_BASIC_TYPE_FLAG);

    /* the message's own headers are untouched */
    assert_int_equal(p.headers.num_entries, 10);
    assert_ptr_equal(p.headers.entries, h);

    zgw_jms_in_free(&in);
}


static void
test_unmap_keeps_the_properties_present(void **state)
{
    zgw_jms_in_t             in;
    amqp_table_entry_t       h[NH];
    amqp_basic_properties_t  p;

    (void) state;

    java_message(&p, h);
    p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TIMESTAMP_FLAG
                | AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_EXPIRATION_FLAG;
    p.message_id = B("mine");
    p.timestamp = 42;
    p.content_type = B("application/json");
    p.expiration = B("5");
    p.priority = 1;

    assert_int_equal(zgw_jms_unmap(&p, &in), 0);
    assert_memory_equal(in.props.message_id.bytes, "mine", 4);
    assert_int_equal(in.props.timestamp, 42);
    assert_memory_equal(in.props.content_type.bytes, "application/json",
                        16);
    assert_memory_equal(in.props.expiration.bytes, "5", 1);
    assert_int_equal(in.props.priority, 1);

    zgw_jms_in_free(&in);
}


static void
test_unmap_hostile_headers(void **state)
{
    char                     big[9000];
    zgw_jms_in_t             in;
    amqp_table_entry_t       h[NH];
    amqp_basic_properties_t  p;

    (void) state;

    memset(big, 'a', sizeof(big));

    memset(&p, 0, sizeof(p));
    memset(h, 0, sizeof(h));
    p._flags = AMQP_BASIC_HEADERS_FLAG;

    h[0].key = B("JMSMessageID");
    h[0].value.kind = AMQP_FIELD_KIND_UTF8;
    h[0].value.value.bytes.bytes = big;                /* too long */
    h[0].value.value.bytes.len = sizeof(big);
    h[1].key = B("JMSTimestamp");
    h[1].value.kind = AMQP_FIELD_KIND_UTF8;
    h[1].value.value.bytes = B("99999999999999999999999");
    h[2].key = B("JMSPriority");
    h[2].value.kind = AMQP_FIELD_KIND_I32;
    h[2].value.value.i32 = 200;
    h[3].key = B("JMSCorrelationID");
    h[3].value.kind = AMQP_FIELD_KIND_UTF8;
    h[3].value.value.bytes = B("a\r\nX-Evil: 1");
    h[4].key = B("JMSDeliveryMode");
    h[4].value.kind = AMQP_FIELD_KIND_UTF8;
    h[4].value.value.bytes = B("persistent-ish");
    h[5].key = B("JMSType");
    h[5].value.kind = AMQP_FIELD_KIND_TABLE;
    h[6].key = B("JMSExpiration");
    h[6].value.kind = AMQP_FIELD_KIND_I64;
    h[6].value.value.i64 = INT64_MIN;
    h[7].key = B("jmsmessageid");                      /* other case */
    h[7].value.kind = AMQP_FIELD_KIND_UTF8;
    h[7].value.value.bytes = B("sneaky");
    h[8].key = B("JMSReplyTo");
    h[8].value.kind = AMQP_FIELD_KIND_UTF8;
    h[8].value.value.bytes = B("amq.rabbitmq.reply-to.forged");
    h[9].key = B("JMSMessageID");                      /* a second one */
    h[9].value.kind = AMQP_FIELD_KIND_UTF8;
    h[9].value.value.bytes = B("ID:second");
    h[10].key = B("JMSTimestamp");
    h[10].value.kind = AMQP_FIELD_KIND_U64;
    h[10].value.value.u64 = UINT64_MAX;
    p.headers.entries = h;
    p.headers.num_entries = 11;

    assert_int_equal(zgw_jms_unmap(&p, &in), 0);
    assert_int_equal(in.removed, 11);
    assert_false(in.props._flags & AMQP_BASIC_HEADERS_FLAG);
    assert_int_equal(in.props._flags, 0);

    zgw_jms_in_free(&in);

    /* numbers as strings, as Java's Long.valueOf reads them */
    h[0].key = B("JMSTimestamp");
    h[0].value.kind = AMQP_FIELD_KIND_UTF8;
    h[0].value.value.bytes = B("1700000000000");
    h[1].key = B("JMSPriority");
    h[1].value.kind = AMQP_FIELD_KIND_UTF8;
    h[1].value.value.bytes = B("+3");
    h[2].key = B("JMSDeliveryMode");
    h[2].value.kind = AMQP_FIELD_KIND_I8;
    h[2].value.value.i8 = 1;
    h[3].key = B("JMSType");
    h[3].value.kind = AMQP_FIELD_KIND_UTF8;
    h[3].value.value.bytes = B("OrderCreated");
    h[4].key = B("JMSMessageID");
    h[4].value.kind = AMQP_FIELD_KIND_UTF8;
    h[4].value.value.bytes = B("ID:");                 /* only the prefix */
    p.headers.num_entries = 5;

    assert_int_equal(zgw_jms_unmap(&p, &in), 0);
    assert_int_equal(in.props.timestamp, 1700000000);
    assert_int_equal(in.props.priority, 3);
    assert_int_equal(in.props.delivery_mode, 1);
    assert_true(in.props._flags & AMQP_BASIC_TYPE_FLAG);
    assert_memory_equal(in.props.type.bytes, "OrderCreated", 12);
    assert_memory_equal(in.props.message_id.bytes, "ID:", 3);
    zgw_jms_in_free(&in);
}


static void
test_unmap_without_headers(void **state)
{
    zgw_jms_in_t             in;
    amqp_basic_properties_t  p;

    (void) state;

    memset(&p, 0, sizeof(p));
    p._flags = AMQP_BASIC_MESSAGE_ID_FLAG;
    p.message_id = B("x");

    assert_int_equal(zgw_jms_unmap(&p, &in), 0);
    assert_null(in.entries);
    assert_int_equal(in.props._flags, AMQP_BASIC_MESSAGE_ID_FLAG);
    zgw_jms_in_free(&in);
}


/* what the gateway writes, zmqd reads back as the same properties */
static void
test_round_trip(void **state)
{
    int                      n;
    char                     id[ZGW_JMS_ID_SIZE];
    zgw_jms_in_t             in;
    amqp_table_entry_t       e[ZGW_JMS_HEADERS_MAX];
    amqp_basic_properties_t  p, q;

    (void) state;

    memset(&p, 0, sizeof(p));
    p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG
               | AMQP_BASIC_PRIORITY_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG
               | AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_EXPIRATION_FLAG
               | AMQP_BASIC_TIMESTAMP_FLAG;
    p.delivery_mode = 2;
    p.message_id = B("m-1");
    p.priority = 7;
    p.correlation_id = B("c-1");
    p.content_type = B("text/plain");
    p.expiration = B("60000");
    p.timestamp = 1700000000;

    n = zgw_jms_headers(&p, 1700000000123ULL, e, id);

    /* as a sender that wrote only the headers (no properties) */
    memset(&q, 0, sizeof(q));
    q._flags = AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
    q.content_type = p.content_type;
    q.headers.entries = e;
    q.headers.num_entries = n;

    assert_int_equal(zgw_jms_unmap(&q, &in), 0);
    assert_int_equal(in.props._flags, p._flags);
    assert_int_equal(in.props.delivery_mode, 2);
    assert_memory_equal(in.props.message_id.bytes, "m-1", 3);
    assert_int_equal(in.props.message_id.len, 3);
    assert_int_equal(in.props.priority, 7);
    assert_memory_equal(in.props.correlation_id.bytes, "c-1", 3);
    assert_int_equal(in.props.expiration.len, 5);
    assert_memory_equal(in.props.expiration.bytes, "60000", 5);
    assert_int_equal(in.props.timestamp, 1700000000);
    zgw_jms_in_free(&in);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_text_content_types),
        cmocka_unit_test(test_headers_of_a_full_text_message),
        cmocka_unit_test(test_headers_of_a_bare_binary_message),
        cmocka_unit_test(test_a_longest_message_id_fits),
        cmocka_unit_test(test_reserved_names),
        cmocka_unit_test(test_unmap_a_java_message),
        cmocka_unit_test(test_unmap_keeps_the_properties_present),
        cmocka_unit_test(test_unmap_hostile_headers),
        cmocka_unit_test(test_unmap_without_headers),
        cmocka_unit_test(test_round_trip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
