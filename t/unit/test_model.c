/*
 * Unit tests: the configuration model. Each case is one document and the
 * error it must produce (or none).
 */

#include "zgw_test_util.h"

#include "zgw_model.h"


typedef struct {
    const char  *title;
    const char  *doc;
    const char  *error;     /* a substring of some error, or NULL: valid */
} model_case_t;


#define DEF  "\"amqp_def\":[{\"name\":\"crm\",\"password\":\"p\"}]"
#define OUT  "\"amqp_outconn\":[{\"name\":\"crm.out\",\"def\":\"crm\"}]"
#define PUB  "\"service\":[{\"name\":\"pub\",\"kind\":\"publish\"," \
             "\"outconn\":\"crm.out\",\"routing_key\":\"q\"}]"
#define SDEF "\"stomp_def\":[{\"name\":\"amq\",\"passcode\":\"pc\"}]"
#define SOUT "\"stomp_outconn\":[{\"name\":\"amq.out\",\"def\":\"amq\"}]"
#define SPUB "\"service\":[{\"name\":\"spub\",\"kind\":\"publish\"," \
             "\"stomp_outconn\":\"amq.out\",\"destination\":\"/queue/{id}\"}]"
#define REDIS_SVC "\"service\":[{\"name\":\"a\",\"kind\":\"redis\"," \
                  "\"key\":\"k\"}]"
#define HEX64  "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HEX64U "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"
#define SEC  "\"security\":[{\"name\":\"in\",\"type\":\"basic_auth\"," \
             "\"username\":\"u\",\"password\":\"p\"}," \
             "{\"name\":\"out\",\"type\":\"basic_auth\",\"direction\":\"out\"," \
             "\"username\":\"u\",\"password\":\"p\"}]"


static const model_case_t  model_cases[] = {

    /* documents */
    { "an empty document is valid", "{}", NULL },
    { "a document must be an object", "[]", "must be a JSON object" },
    { "an unknown kind is rejected", "{\"amqp_defs\":[]}",
      "unknown kind 'amqp_defs'" },
    { "a kind holds an array", "{\"amqp_def\":{}}",
      "amqp_def: must be an array" },
    { "a name may be defined once",
      "{\"amqp_def\":[{\"name\":\"a\"},{\"name\":\"a\"}]}",
      "amqp_def 'a': defined more than once" },

    /* amqp_def */
    { "amqp_def: defaults make a minimal definition valid",
      "{\"amqp_def\":[{\"name\":\"crm\"}]}", NULL },
    { "amqp_def: a full definition is valid",
      "{\"amqp_def\":[{\"name\":\"crm\",\"host\":\"rabbit.example.com\","
      "\"port\":5671,\"vhost\":\"/crm\",\"username\":\"u\",\"password\":"
      "\"p\",\"heartbeat\":10,\"frame_max\":131072,\"tls\":true,"
      "\"use_jms\":true,\"hosts\":[\"r1:5672\",\"r2\",\"[::1]:5673\"]}]}",
      NULL },
    { "amqp_def: port out of range",
      "{\"amqp_def\":[{\"name\":\"crm\",\"port\":70000}]}",
      "amqp_def 'crm': port 70000 is out of range 1-65535" },
    { "amqp_def: port must be an integer",
      "{\"amqp_def\":[{\"name\":\"crm\",\"port\":\"5672\"}]}",
      "amqp_def 'crm': field 'port' must be an integer" },
    { "amqp_def: unknown fields are rejected",
      "{\"amqp_def\":[{\"name\":\"crm\",\"portt\":5672}]}",
      "amqp_def 'crm': unknown field 'portt'" },
    { "amqp_def: name is required",
      "{\"amqp_def\":[{\"host\":\"h\"}]}",
      "amqp_def #1: missing required field 'name'" },
    { "amqp_def: names are restricted",
      "{\"amqp_def\":[{\"name\":\"a b\"}]}", "name 'a b' must be" },
    { "amqp_def: hosts entries are host[:port]",
      "{\"amqp_def\":[{\"name\":\"crm\",\"hosts\":[\"r1:99999\"]}]}",
      "amqp_def 'crm': hosts[0] 'r1:99999': port 99999 is out of range "
      "1-65535" },
    { "amqp_def: a lone '[' is not a host",
      "{\"amqp_def\":[{\"name\":\"crm\",\"hosts\":[\"r1\",\"[\"]}]}",
      "amqp_def 'crm': hosts[1] '[': '[' without a closing ']'" },
    { "amqp_def: '[' and a port are not a host",
      "{\"amqp_def\":[{\"name\":\"crm\",\"hosts\":[\"[:5672\"]}]}",
      "hosts[0] '[:5672': '[' without a closing ']'" },
    { "amqp_def: empty brackets are not a host",
      "{\"amqp_def\":[{\"name\":\"crm\",\"hosts\":[\"[]:5672\"]}]}",
      "no IPv6 address between '[' and ']'" },
    { "amqp_def: IPv6 in hosts needs brackets",
      "{\"amqp_def\":[{\"name\":\"crm\",\"hosts\":[\"::1\"]}]}",
      "hosts[0] '::1': an IPv6 address must be written in brackets" },
    { "amqp_def: an empty hosts entry",
      "{\"amqp_def\":[{\"name\":\"crm\",\"hosts\":[\"\"]}]}",
      "hosts[0] '': is empty" },
    { "amqp_def: hosts entries are names by RFC 1123",
      "{\"amqp_def\":[{\"name\":\"crm\",\"hosts\":[\"-r1:5672\"]}]}",
      "a label of the host name begins or ends with '-'" },
    { "amqp_def: hosts entries hold no control characters",
      "{\"amqp_def\":[{\"name\":\"crm\",\"hosts\":[\"r1\\t:1\"]}]}",
      "contains white space, a control character or NUL" },
    { "amqp_def: host is a host without a port",
      "{\"amqp_def\":[{\"name\":\"crm\",\"host\":\"r1:5672\"}]}",
      "amqp_def 'crm': host 'r1:5672': a host without a port" },
    { "amqp_def: host may be a bare IPv6 address",
      "{\"amqp_def\":[{\"name\":\"crm\",\"host\":\"::1\"}]}", NULL },
    { "amqp_def: host is not a lone '['",
      "{\"amqp_def\":[{\"name\":\"crm\",\"host\":\"[\"}]}",
      "host '[': a host in brackets is an IPv6 address" },
    { "amqp_def: host of digits must be an IPv4 address",
      "{\"amqp_def\":[{\"name\":\"crm\",\"host\":\"10.0.0.256\"}]}",
      "'10.0.0.256' is not an IPv4 address" },
    { "amqp_def: frame_max has a floor",
      "{\"amqp_def\":[{\"name\":\"crm\",\"frame_max\":100}]}",
      "frame_max 100 is out of range 4096-2097152" },
    { "amqp_def: is_active is a boolean",
      "{\"amqp_def\":[{\"name\":\"crm\",\"is_active\":1}]}",
      "field 'is_active' must be true or false" },
    { "amqp_def: a password is a non-empty string",
      "{\"amqp_def\":[{\"name\":\"crm\",\"password\":\"\"}]}",
      "secret 'password' must be a non-empty string" },

    /* amqp_outconn */
    { "amqp_outconn: valid", "{" DEF "," OUT "}", NULL },
    { "amqp_outconn: def must exist",
      "{\"amqp_outconn\":[{\"name\":\"crm.out\",\"def\":\"crm\"}]}",
      "amqp_outconn 'crm.out': def 'crm' does not exist" },
    { "amqp_outconn: def is required",
      "{\"amqp_outconn\":[{\"name\":\"crm.out\"}]}",
      "amqp_outconn 'crm.out': missing required field 'def'" },
    { "amqp_outconn: delivery_mode is 1 or 2",
      "{" DEF ",\"amqp_outconn\":[{\"name\":\"o\",\"def\":\"crm\","
      "\"delivery_mode\":3}]}", "delivery_mode 3 is out of range 1-2" },
    { "amqp_outconn: priority is 0-9",
      "{" DEF ",\"amqp_outconn\":[{\"name\":\"o\",\"def\":\"crm\","
      "\"priority\":10}]}", "priority 10 is out of range 0-9" },
    { "amqp_outconn: max_inflight is at least 1",
      "{" DEF ",\"amqp_outconn\":[{\"name\":\"o\",\"def\":\"crm\","
      "\"max_inflight\":0}]}", "max_inflight 0 is out of range" },
    { "amqp_outconn: user_id must be the definition's user",
      "{" DEF ",\"amqp_outconn\":[{\"name\":\"o\",\"def\":\"crm\","
      "\"user_id\":\"mallory\"}]}",
      "amqp_outconn 'o': user_id 'mallory' is not the user of amqp_def "
      "'crm' ('guest')" },
    { "amqp_outconn: user_id equal to the definition's user is valid",
      "{" DEF ",\"amqp_outconn\":[{\"name\":\"o\",\"def\":\"crm\","
      "\"user_id\":\"guest\"}]}", NULL },
    { "rest_channel: max_body at most RabbitMQ's largest message",
      "{" DEF "," OUT "," PUB ",\"rest_channel\":[{\"name\":\"r\","
      "\"url_path\":\"/a\",\"service\":\"pub\","
      "\"max_body\":134217729}]}",
      "max_body 134217729 is out of range 0-134217728" },
    { "amqp_outconn: max_inflight is at most 65536 (the module's cap)",
      "{" DEF ",\"amqp_outconn\":[{\"name\":\"o\",\"def\":\"crm\","
      "\"max_inflight\":65537}]}", "max_inflight 65537 is out of range 1-65536" },

    /* amqp_channel */
    { "amqp_channel: valid",
      "{" DEF "," OUT "," PUB ",\"amqp_channel\":[{\"name\":\"c\",\"def\":"
      "\"crm\",\"queue\":\"q\",\"service\":\"pub\",\"data_format\":\"json\","
      "\"retry\":{\"attempts\":2},\"dead_letter\":{\"routing_key\":\"dl\"}}]}",
      NULL },
    { "amqp_channel: service must exist",
      "{" DEF ",\"amqp_channel\":[{\"name\":\"c\",\"def\":\"crm\",\"queue\":"
      "\"q\",\"service\":\"nope\"}]}",
      "amqp_channel 'c': service 'nope' does not exist" },
    { "amqp_channel: data_format is an enumeration",
      "{" DEF "," OUT "," PUB ",\"amqp_channel\":[{\"name\":\"c\",\"def\":"
      "\"crm\",\"queue\":\"q\",\"service\":\"pub\",\"data_format\":"
      "\"yaml\"}]}", "data_format 'yaml' is not one of: none, json, xml" },
    { "amqp_channel: nested unknown fields are named",
      "{" DEF "," OUT "," PUB ",\"amqp_channel\":[{\"name\":\"c\",\"def\":"
      "\"crm\",\"queue\":\"q\",\"service\":\"pub\",\"retry\":{\"tries\":1}}]}",
      "unknown field 'retry.tries'" },
    { "amqp_channel: retry delays are ordered",
      "{" DEF "," OUT "," PUB ",\"amqp_channel\":[{\"name\":\"c\",\"def\":"
      "\"crm\",\"queue\":\"q\",\"service\":\"pub\",\"retry\":"
      "{\"initial_delay\":5000,\"max_delay\":10}}]}",
      "retry.max_delay 10 is less than retry.initial_delay 5000" },
    { "amqp_channel: queue is required",
      "{" DEF "," OUT "," PUB ",\"amqp_channel\":[{\"name\":\"c\",\"def\":"
      "\"crm\",\"service\":\"pub\"}]}", "missing required field 'queue'" },
    { "amqp_channel: dead_letter outconn must exist",
      "{" DEF "," OUT "," PUB ",\"amqp_channel\":[{\"name\":\"c\",\"def\":"
      "\"crm\",\"queue\":\"q\",\"service\":\"pub\",\"dead_letter\":"
      "{\"outconn\":\"x\",\"routing_key\":\"dl\"}}]}",
      "dead_letter.outconn 'x' does not exist" },

    /* http_outconn */
    { "http_outconn: valid",
      "{" SEC ",\"http_outconn\":[{\"name\":\"h\",\"url\":"
      "\"https://api.example.com/hook\",\"security\":\"out\"}]}", NULL },
    { "http_outconn: url scheme",
      "{\"http_outconn\":[{\"name\":\"h\",\"url\":\"ftp://x/y\"}]}",
      "url 'ftp://x/y' must start with http:// or https://" },
    { "http_outconn: security must be outgoing",
      "{" SEC ",\"http_outconn\":[{\"name\":\"h\",\"url\":\"http://x/\","
      "\"security\":\"in\"}]}",
      "security 'in' has direction 'in'; http_outconn needs direction 'out'"
    },
    { "http_outconn: url host is a host",
      "{\"http_outconn\":[{\"name\":\"h\",\"url\":\"http://[/x\"}]}",
      "http_outconn 'h': url host '[': '[' without a closing ']'" },
    { "http_outconn: url port is in range",
      "{\"http_outconn\":[{\"name\":\"h\",\"url\":"
      "\"https://api.example.com:0/x\"}]}",
      "url host 'api.example.com:0': port 0 is out of range" },
    { "http_outconn: url with IPv6, port, query",
      "{\"http_outconn\":[{\"name\":\"h\",\"url\":"
      "\"http://[::1]:8080?a=b\"}]}", NULL },
    { "http_outconn: timeout is positive",
      "{\"http_outconn\":[{\"name\":\"h\",\"url\":\"http://x/\","
      "\"timeout\":0}]}", "timeout 0 is out of range" },

    /* service */
    { "service: publish is valid", "{" DEF "," OUT "," PUB "}", NULL },
    { "service: kind is required",
      "{\"service\":[{\"name\":\"s\"}]}", "missing required field 'kind'" },
    { "service: unknown kind",
      "{\"service\":[{\"name\":\"s\",\"kind\":\"smtp\"}]}",
      "kind 'smtp' is not one of: publish, rpc, http, redis, fanout" },
    { "service: fields of another kind are unknown",
      "{\"service\":[{\"name\":\"s\",\"kind\":\"redis\",\"key\":\"k\","
      "\"outconn\":\"o\"}]}", "service 's': unknown field 'outconn'" },
    { "service: publish outconn must be an amqp_outconn",
      "{\"http_outconn\":[{\"name\":\"h\",\"url\":\"http://x/\"}],"
      "\"service\":[{\"name\":\"s\",\"kind\":\"publish\",\"outconn\":\"h\"}]}",
      "outconn 'h' does not exist (amqp_outconn expected)" },
    { "service: http is valid",
      "{\"http_outconn\":[{\"name\":\"h\",\"url\":\"http://x/\"}],"
      "\"service\":[{\"name\":\"s\",\"kind\":\"http\",\"outconn\":\"h\"}]}",
      NULL },
    { "service: redis is valid",
      "{\"service\":[{\"name\":\"s\",\"kind\":\"redis\",\"op\":\"zadd\","
      "\"key\":\"k\",\"score_field\":\"ts\"}]}", NULL },
    { "service: score_field only with zadd",
      "{\"service\":[{\"name\":\"s\",\"kind\":\"redis\",\"key\":\"k\","
      "\"score_field\":\"ts\"}]}", "score_field applies only to op 'zadd'" },
    { "service: redis_page is valid",
      "{\"service\":[{\"name\":\"p\",\"kind\":\"redis_page\","
      "\"source\":\"zset\",\"key\":\"feed:{user}\",\"score_min\":\"(1.5\","
      "\"score_max\":\"+inf\",\"reverse\":true,\"withscores\":true}]}",
      NULL },
    { "service: redis_page needs a key",
      "{\"service\":[{\"name\":\"p\",\"kind\":\"redis_page\"}]}",
      "missing required field 'key'" },
    { "service: redis_page source is list or zset",
      "{\"service\":[{\"name\":\"p\",\"kind\":\"redis_page\",\"key\":\"k\","
      "\"source\":\"hash\"}]}", "source 'hash' is not one of: list, zset" },
    { "service: redis_page per_page is at most max_per_page",
      "{\"service\":[{\"name\":\"p\",\"kind\":\"redis_page\",\"key\":\"k\","
      "\"per_page\":50,\"max_per_page\":10}]}",
      "per_page 50 is more than max_per_page 10" },
    { "service: redis_page per_page is positive",
      "{\"service\":[{\"name\":\"p\",\"kind\":\"redis_page\",\"key\":\"k\","
      "\"per_page\":0}]}", "per_page 0 is out of range" },
    { "service: redis_page score bound is a number",
      "{\"service\":[{\"name\":\"p\",\"kind\":\"redis_page\",\"key\":\"k\","
      "\"source\":\"zset\",\"score_min\":\"nan\"}]}",
      "score_min 'nan' is not a Redis score bound" },
    { "service: redis_page score bound is not hexadecimal",
      "{\"service\":[{\"name\":\"p\",\"kind\":\"redis_page\",\"key\":\"k\","
      "\"source\":\"zset\",\"score_max\":\"0x10\"}]}",
      "score_max '0x10' is not a Redis score bound" },
    { "service: redis_page scores only for a zset",
      "{\"service\":[{\"name\":\"p\",\"kind\":\"redis_page\",\"key\":\"k\","
      "\"withscores\":true}]}", "withscores applies only to source 'zset'" },
    { "service: redis_page url holds no password",
      "{\"service\":[{\"name\":\"p\",\"kind\":\"redis_page\",\"key\":\"k\","
      "\"url\":\"redis://:pw@127.0.0.1:6379/0\"}]}", "holds a password" },
    { "service: redis_page url is redis://",
      "{\"service\":[{\"name\":\"p\",\"kind\":\"redis_page\",\"key\":\"k\","
      "\"url\":\"http://127.0.0.1/\"}]}", "must start with redis://" },
    { "service: redis_page channel answers GET",
      "{\"service\":[{\"name\":\"p\",\"kind\":\"redis_page\",\"key\":\"k\"}],"
      "\"rest_channel\":[{\"name\":\"c\",\"url_path\":\"/p\","
      "\"service\":\"p\"}]}",
      "rest_channel 'c': service 'p' is of kind 'redis_page', which answers "
      "GET: the method must be GET or ANY, not POST" },
    { "service: redis_page channel with GET is valid",
      "{\"service\":[{\"name\":\"p\",\"kind\":\"redis_page\",\"key\":\"k\"}],"
      "\"rest_channel\":[{\"name\":\"c\",\"url_path\":\"/p\",\"method\":\"GET\","
      "\"service\":\"p\"}]}", NULL },
    { "service: redis_page is not in a fanout",
      "{\"service\":[{\"name\":\"p\",\"kind\":\"redis_page\",\"key\":\"k\"},"
      "{\"name\":\"f\",\"kind\":\"fanout\",\"services\":[\"p\"]}]}",
      "service 'f': services: 'p' is of kind 'redis_page'" },
    { "service: rpc needs a routing key",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"s\",\"kind\":\"rpc\","
      "\"outconn\":\"crm.out\"}]}", "missing required field 'routing_key'" },
    { "service: fanout is valid",
      "{\"service\":[{\"name\":\"a\",\"kind\":\"redis\",\"key\":\"k\"},"
      "{\"name\":\"f\",\"kind\":\"fanout\",\"services\":[\"a\"]}]}", NULL },
    { "service: fanout needs services",
      "{\"service\":[{\"name\":\"f\",\"kind\":\"fanout\",\"services\":[]}]}",
      "field 'services' must name at least one object" },
    { "service: fanout cycles are found",
      "{\"service\":[{\"name\":\"a\",\"kind\":\"fanout\",\"services\":"
      "[\"b\"]},{\"name\":\"b\",\"kind\":\"fanout\",\"services\":[\"a\"]}]}",
      "fanout cycle a -> b -> a" },
    { "service: invoke is valid with a callback and any JSON context",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"t\",\"kind\":\"redis\","
      "\"key\":\"k\"},{\"name\":\"i\",\"kind\":\"invoke\","
      "\"outconn\":\"crm.out\",\"target\":\"t\",\"callback\":\"t\","
      "\"mode\":\"sync_async\",\"repeats\":5,\"seconds\":2,"
      "\"context\":[1,\"two\",{\"three\":null}]}]}", NULL },
    { "service: invoke needs a target",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"i\",\"kind\":\"invoke\","
      "\"outconn\":\"crm.out\"}]}", "missing required field 'target'" },
    { "service: invoke modes are sync, sync_async and async",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"t\",\"kind\":\"redis\","
      "\"key\":\"k\"},{\"name\":\"i\",\"kind\":\"invoke\","
      "\"outconn\":\"crm.out\",\"target\":\"t\",\"mode\":\"later\"}]}",
      "mode 'later' is not one of: sync, sync_async, async" },
    { "service: invoke repeats at least once",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"t\",\"kind\":\"redis\","
      "\"key\":\"k\"},{\"name\":\"i\",\"kind\":\"invoke\","
      "\"outconn\":\"crm.out\",\"target\":\"t\",\"repeats\":0}]}",
      "repeats 0 is out of range 1-100" },
    { "service: an invocation's target is not an invocation",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"t\",\"kind\":\"redis\","
      "\"key\":\"k\"},{\"name\":\"i\",\"kind\":\"invoke\","
      "\"outconn\":\"crm.out\",\"target\":\"t\"},{\"name\":\"j\","
      "\"kind\":\"invoke\",\"outconn\":\"crm.out\",\"target\":\"i\"}]}",
      "service 'j': target 'i' is a service of kind 'invoke'" },
    { "service: an invocation's callback is not an invocation",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"t\",\"kind\":\"redis\","
      "\"key\":\"k\"},{\"name\":\"i\",\"kind\":\"invoke\","
      "\"outconn\":\"crm.out\",\"target\":\"t\",\"callback\":\"j\"},"
      "{\"name\":\"j\",\"kind\":\"invoke\",\"outconn\":\"crm.out\","
      "\"target\":\"t\"}]}",
      "service 'i': callback 'j' is a service of kind 'invoke'" },
    { "service: an invocation queue is not the broker's",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"t\",\"kind\":\"redis\","
      "\"key\":\"k\"},{\"name\":\"i\",\"kind\":\"invoke\","
      "\"outconn\":\"crm.out\",\"target\":\"t\",\"queue\":\"amq.x\"}]}",
      "names starting with 'amq.' are reserved" },
    { "service: rpc takes mandatory and headers",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"s\",\"kind\":\"rpc\","
      "\"outconn\":\"crm.out\",\"routing_key\":\"q\",\"mandatory\":false,"
      "\"headers\":{\"tenant\":\"a\"}}]}", NULL },
    { "service: a fanout may not name itself",
      "{\"service\":[{\"name\":\"a\",\"kind\":\"fanout\",\"services\":"
      "[\"a\"]}]}", "refers to the service itself" },

    /* service: what RabbitMQ would close the channel or connection for */
    { "service: headers with ordinary names and values are valid",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"s\",\"kind\":\"publish\","
      "\"outconn\":\"crm.out\",\"headers\":{\"tenant-id\":\"Z\\u00fcrich\","
      "\"Source\":\"gw\",\"empty\":\"\"}}]}", NULL },
    { "service: a CC header is RabbitMQ's",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"s\",\"kind\":\"publish\","
      "\"outconn\":\"crm.out\",\"headers\":{\"CC\":\"q2\"}}]}",
      "service 's': headers 'CC': CC and BCC are RabbitMQ's sender-selected "
      "distribution headers" },
    { "service: a bcc header, in any case",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"s\",\"kind\":\"publish\","
      "\"outconn\":\"crm.out\",\"headers\":{\"bcc\":\"q2\"}}]}",
      "service 's': headers 'bcc': CC and BCC" },
    { "service: x- header names are RabbitMQ's",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"s\",\"kind\":\"publish\","
      "\"outconn\":\"crm.out\",\"headers\":{\"x-death\":\"1\"}}]}",
      "service 's': headers 'x-death': header names beginning with x- are "
      "RabbitMQ's" },
    { "service: a header name over 128 bytes",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"s\",\"kind\":\"publish\","
      "\"outconn\":\"crm.out\",\"headers\":{\""
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "\":\"1\"}}]}",
      "...': a header name is at most 128 bytes" },
    { "service: a header name is an HTTP token",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"s\",\"kind\":\"publish\","
      "\"outconn\":\"crm.out\",\"headers\":{\"a b\":\"1\"}}]}",
      "service 's': headers 'a b': a header name has letters, digits" },
    { "service: an empty header name",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"s\",\"kind\":\"publish\","
      "\"outconn\":\"crm.out\",\"headers\":{\"\":\"1\"}}]}",
      "service 's': headers '': a header name must not be empty" },
    { "service: a header value without line breaks",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"s\",\"kind\":\"publish\","
      "\"outconn\":\"crm.out\",\"headers\":{\"h\":\"a\\r\\nX-B: c\"}}]}",
      "service 's': headers 'h': a header value has no control characters" },
    { "service: every bad header is named",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"s\",\"kind\":\"publish\","
      "\"outconn\":\"crm.out\",\"headers\":{\"ok\":\"1\",\"X-Delay\":\"5\","
      "\"Cc\":\"q\"}}]}",
      "service 's': headers 'X-Delay': header names beginning with x-" },
    { "service: a routing key that is a forged direct reply-to address",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"s\",\"kind\":\"publish\","
      "\"outconn\":\"crm.out\",\"routing_key\":"
      "\"amq.rabbitmq.reply-to.{id}\"}]}",
      "service 's': routing_key 'amq.rabbitmq.reply-to.{id}': a routing key "
      "beginning with amq.rabbitmq.reply-to. is a direct reply-to address" },
    { "service: the same routing key through another exchange is fine",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"s\",\"kind\":\"publish\","
      "\"outconn\":\"crm.out\",\"exchange\":\"amq.topic\",\"routing_key\":"
      "\"amq.rabbitmq.reply-to.x\"}]}", NULL },
    { "service: rpc routing keys are checked too",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"s\",\"kind\":\"rpc\","
      "\"outconn\":\"crm.out\",\"routing_key\":"
      "\"AMQ.RABBITMQ.REPLY-TO.x\"}]}", "direct reply-to address" },
    { "amqp_channel: dead_letter routing key",
      "{" DEF "," OUT "," PUB ",\"amqp_channel\":[{\"name\":\"c\",\"def\":"
      "\"crm\",\"queue\":\"q\",\"service\":\"pub\",\"dead_letter\":"
      "{\"routing_key\":\"amq.rabbitmq.reply-to.a.b\"}}]}",
      "amqp_channel 'c': dead_letter.routing_key "
      "'amq.rabbitmq.reply-to.a.b': a routing key beginning with" },

    /* rest_channel */
    { "rest_channel: valid",
      "{" DEF "," OUT "," PUB "," SEC ",\"rest_channel\":[{\"name\":\"r\","
      "\"url_path\":\"/api/{id}/x\",\"service\":\"pub\",\"security\":"
      "\"in\",\"data_format\":\"json\"}]}", NULL },
    { "rest_channel: url_path starts with a slash",
      "{" DEF "," OUT "," PUB ",\"rest_channel\":[{\"name\":\"r\","
      "\"url_path\":\"api\",\"service\":\"pub\"}]}",
      "url_path 'api' must start with '/'" },
    { "rest_channel: params are whole segments",
      "{" DEF "," OUT "," PUB ",\"rest_channel\":[{\"name\":\"r\","
      "\"url_path\":\"/a{id}\",\"service\":\"pub\"}]}",
      "a {param} must be a whole path segment" },
    { "rest_channel: at most 16 params",
      "{" DEF "," OUT "," PUB ",\"rest_channel\":[{\"name\":\"r\","
      "\"url_path\":\"/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}/{j}/{k}/{l}/{m}/"
      "{n}/{o}/{p}\",\"service\":\"pub\"}]}", NULL },
    { "rest_channel: not 17 params (the 17th would be left empty)",
      "{" DEF "," OUT "," PUB ",\"rest_channel\":[{\"name\":\"r\","
      "\"url_path\":\"/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}/{j}/{k}/{l}/{m}/"
      "{n}/{o}/{p}/{q}\",\"service\":\"pub\"}]}",
      "has more than 16 {param} segments" },
    { "rest_channel: method is an enumeration",
      "{" DEF "," OUT "," PUB ",\"rest_channel\":[{\"name\":\"r\","
      "\"url_path\":\"/a\",\"method\":\"post\",\"service\":\"pub\"}]}",
      "method 'post' is not one of" },
    { "rest_channel: security must be incoming",
      "{" DEF "," OUT "," PUB "," SEC ",\"rest_channel\":[{\"name\":\"r\","
      "\"url_path\":\"/a\",\"service\":\"pub\",\"security\":\"out\"}]}",
      "rest_channel needs direction 'in'" },
    { "rest_channel: max_body has a ceiling",
      "{" DEF "," OUT "," PUB ",\"rest_channel\":[{\"name\":\"r\","
      "\"url_path\":\"/a\",\"service\":\"pub\",\"max_body\":"
      "2000000000}]}", "max_body 2000000000 is out of range" },

    /* security */
    { "security: basic_auth is valid", "{" SEC "}", NULL },
    { "security: an outgoing apikey sends a key",
      "{\"security\":[{\"name\":\"k\",\"type\":\"apikey\","
      "\"direction\":\"out\",\"key\":\"s\"}]}", NULL },
    { "security: an incoming apikey holds digests",
      "{\"security\":[{\"name\":\"k\",\"type\":\"apikey\",\"keys\":"
      "[{\"id\":\"k1\",\"sha256\":\"" HEX64 "\"},"
      "{\"id\":\"k2\",\"sha256\":\"" HEX64 "\"}]}]}", NULL },
    { "security: an incoming apikey stores no clear key",
      "{\"security\":[{\"name\":\"k\",\"type\":\"apikey\",\"key\":"
      "\"s\"}]}", "does not store keys" },
    { "security: apikey ids are unique",
      "{\"security\":[{\"name\":\"k\",\"type\":\"apikey\",\"keys\":"
      "[{\"id\":\"k1\",\"sha256\":\"" HEX64 "\"},"
      "{\"id\":\"k1\",\"sha256\":\"" HEX64 "\"}]}]}",
      "keys[1].id 'k1' is used twice" },
    { "security: apikey digests are lowercase hex",
      "{\"security\":[{\"name\":\"k\",\"type\":\"apikey\",\"keys\":"
      "[{\"id\":\"k1\",\"sha256\":\"" HEX64U "\"}]}]}",
      "keys[0].sha256 must be 64 lowercase hex digits" },
    { "security: apikey digests are 64 characters",
      "{\"security\":[{\"name\":\"k\",\"type\":\"apikey\",\"keys\":"
      "[{\"id\":\"k1\",\"sha256\":\"abc\"}]}]}",
      "keys[0].sha256' is 3 characters long" },
    { "security: apikey header is a header name",
      "{\"security\":[{\"name\":\"k\",\"type\":\"apikey\",\"header\":"
      "\"X Key\"}]}", "header must be an HTTP header name" },
    { "security: jwt HS512 is valid",
      "{\"security\":[{\"name\":\"j\",\"type\":\"jwt\",\"secret\":\""
      HEX64 "\",\"alg\":\"HS512\",\"iss\":\"me\",\"aud\":[\"a\","
      "\"b\"],\"claims_to_headers\":[\"tenant\"]}]}", NULL },
    { "security: jwt HS256 secret is at least 32 bytes",
      "{\"security\":[{\"name\":\"j\",\"type\":\"jwt\",\"secret\":"
      "\"short\"}]}", "alg HS256 needs a secret of at least 32 bytes" },
    { "security: jwt RS256 needs a key",
      "{\"security\":[{\"name\":\"j\",\"type\":\"jwt\",\"alg\":"
      "\"RS256\"}]}", "needs exactly one of 'public_key' (PEM) and 'jwks'" },
    { "security: jwt RS256 takes no secret",
      "{\"security\":[{\"name\":\"j\",\"type\":\"jwt\",\"alg\":"
      "\"RS256\",\"secret\":\"" HEX64 "\"}]}", "remove 'secret'" },
    { "security: jwt is incoming only",
      "{\"security\":[{\"name\":\"j\",\"type\":\"jwt\",\"direction\":"
      "\"out\",\"secret\":\"" HEX64 "\"}]}", "direction must be \"in\"" },
    { "security: jwt algorithms are pinned, none is none of them",
      "{\"security\":[{\"name\":\"j\",\"type\":\"jwt\",\"alg\":"
      "\"none\"}]}", "alg 'none' is not one of: HS256, HS384, HS512, RS256" },
    { "security: jwt claims_to_headers are claim names",
      "{\"security\":[{\"name\":\"j\",\"type\":\"jwt\",\"secret\":\""
      HEX64 "\",\"claims_to_headers\":[\"a b\"]}]}",
      "claims_to_headers[0] must be a claim name" },
    { "security: aud is a string or a list of them",
      "{\"security\":[{\"name\":\"j\",\"type\":\"jwt\",\"secret\":\""
      HEX64 "\",\"aud\":[]}]}", "field 'aud' must be a string or a non-empty" },
    { "security: basic_auth username has no colon",
      "{\"security\":[{\"name\":\"s\",\"type\":\"basic_auth\","
      "\"username\":\"a:b\"}]}", "username may not hold ':'" },
    { "security: basic_auth realm has no quote",
      "{\"security\":[{\"name\":\"s\",\"type\":\"basic_auth\","
      "\"username\":\"a\",\"realm\":\"x\\\"y\"}]}",
      "realm may not hold" },
    { "security: type is required",
      "{\"security\":[{\"name\":\"s\"}]}", "missing required field 'type'" },
    { "security: basic_auth needs a username",
      "{\"security\":[{\"name\":\"s\",\"type\":\"basic_auth\"}]}",
      "missing required field 'username'" },
    { "security: direction is in or out",
      "{\"security\":[{\"name\":\"s\",\"type\":\"apikey\",\"direction\":"
      "\"both\"}]}", "direction 'both' is not one of: in, out" },
    { "security: role viewer is valid for direction in",
      "{\"security\":[{\"name\":\"v\",\"type\":\"basic_auth\","
      "\"username\":\"u\",\"role\":\"viewer\"}]}", NULL },
    { "security: role is admin or viewer",
      "{\"security\":[{\"name\":\"v\",\"type\":\"apikey\","
      "\"role\":\"root\"}]}", "role 'root' is not one of: admin, viewer" },
    { "security: direction out has no role",
      "{\"security\":[{\"name\":\"o\",\"type\":\"apikey\","
      "\"direction\":\"out\",\"role\":\"viewer\"}]}",
      "security 'o': 'role' is what the clients a definition checks may do "
      "in the admin API: direction \"out\" has none" },

    /* startup */
    { "startup: valid",
      "{\"service\":[{\"name\":\"a\",\"kind\":\"redis\",\"key\":\"k\"}],"
      "\"startup\":[{\"name\":\"s\",\"service\":\"a\",\"payload\":\"{}\"}]}",
      NULL },
    { "startup: payload or payload_file, not both",
      "{\"service\":[{\"name\":\"a\",\"kind\":\"redis\",\"key\":\"k\"}],"
      "\"startup\":[{\"name\":\"s\",\"service\":\"a\",\"payload\":\"{}\","
      "\"payload_file\":\"/x\"}]}", "set payload or payload_file, not both" },
    { "startup: when is first or each",
      "{\"service\":[{\"name\":\"a\",\"kind\":\"redis\",\"key\":\"k\"}],"
      "\"startup\":[{\"name\":\"s\",\"service\":\"a\",\"when\":\"all\"}]}",
      "when 'all' is not one of: first, each" },
    { "startup: payload_file file:// with a path is valid",
      "{\"service\":[{\"name\":\"a\",\"kind\":\"redis\",\"key\":\"k\"}],"
      "\"startup\":[{\"name\":\"s\",\"service\":\"a\",\"when\":\"each\","
      "\"payload_file\":\"file:///etc/boot.json\"}]}", NULL },
    { "startup: payload_file file:// alone names no file",
      "{\"service\":[{\"name\":\"a\",\"kind\":\"redis\",\"key\":\"k\"}],"
      "\"startup\":[{\"name\":\"s\",\"service\":\"a\","
      "\"payload_file\":\"file://\"}]}",
      "startup 's': payload_file 'file://' names no file" },
    { "startup: service must exist",
      "{\"startup\":[{\"name\":\"s\",\"service\":\"a\"}]}",
      "startup 's': service 'a' does not exist" },

    /* stomp_def */
    { "stomp_def: defaults make a minimal definition valid",
      "{\"stomp_def\":[{\"name\":\"amq\"}]}", NULL },
    { "stomp_def: a full definition is valid",
      "{\"stomp_def\":[{\"name\":\"amq\",\"host\":\"mq.example.com\","
      "\"port\":61614,\"hosts\":[\"mq2\",\"[::1]:61615\"],"
      "\"virtual_host\":\"/\",\"login\":\"\",\"passcode\":\"p:w\","
      "\"heartbeat\":0,\"use_jms\":true,\"tls\":true}]}", NULL },
    { "stomp_def: port out of range",
      "{\"stomp_def\":[{\"name\":\"amq\",\"port\":0}]}",
      "stomp_def 'amq': port 0 is out of range 1-65535" },
    { "stomp_def: heartbeat at most 600 s",
      "{\"stomp_def\":[{\"name\":\"amq\",\"heartbeat\":601}]}",
      "heartbeat 601 is out of range 0-600" },
    { "stomp_def: hosts entries are host[:port]",
      "{\"stomp_def\":[{\"name\":\"amq\",\"hosts\":[\"m:99999\"]}]}",
      "stomp_def 'amq': hosts[0] 'm:99999': port 99999 is out of range" },
    { "stomp_def: host is a host without a port",
      "{\"stomp_def\":[{\"name\":\"amq\",\"host\":\"m:61613\"}]}",
      "stomp_def 'amq': host 'm:61613': a host without a port" },
    { "stomp_def: virtual_host is not empty",
      "{\"stomp_def\":[{\"name\":\"amq\",\"virtual_host\":\"\"}]}",
      "field 'virtual_host' must not be empty" },
    { "stomp_def: login has no line feed",
      "{\"stomp_def\":[{\"name\":\"amq\",\"login\":\"a\\nb\"}]}",
      "stomp_def 'amq': login 'a?b' holds a NUL, carriage return or line "
      "feed" },
    { "stomp_def: virtual_host has no carriage return",
      "{\"stomp_def\":[{\"name\":\"amq\",\"virtual_host\":\"a\\rb\"}]}",
      "virtual_host 'a?b' holds a NUL" },
    { "stomp_def: a passcode with a line feed is refused, not echoed",
      "{\"stomp_def\":[{\"name\":\"amq\",\"passcode\":\"se\\ncret\"}]}",
      "stomp_def 'amq': passcode holds a NUL, carriage return or line feed"
    },
    { "stomp_def: a passcode is a non-empty string",
      "{\"stomp_def\":[{\"name\":\"amq\",\"passcode\":\"\"}]}",
      "secret 'passcode' must be a non-empty string" },
    { "stomp_def: the AMQP fields are unknown",
      "{\"stomp_def\":[{\"name\":\"amq\",\"vhost\":\"/\"}]}",
      "stomp_def 'amq': unknown field 'vhost'" },

    /* stomp_outconn */
    { "stomp_outconn: valid", "{" SDEF "," SOUT "}", NULL },
    { "stomp_outconn: all fields",
      "{" SDEF ",\"stomp_outconn\":[{\"name\":\"o\",\"def\":\"amq\","
      "\"persistent\":false,\"priority\":9,\"expires\":60000,"
      "\"content_type\":\"application/json\",\"max_inflight\":65536}]}",
      NULL },
    { "stomp_outconn: def is required",
      "{\"stomp_outconn\":[{\"name\":\"o\"}]}",
      "stomp_outconn 'o': missing required field 'def'" },
    { "stomp_outconn: def must be a stomp_def",
      "{" DEF ",\"stomp_outconn\":[{\"name\":\"o\",\"def\":\"crm\"}]}",
      "stomp_outconn 'o': def 'crm' does not exist (stomp_def expected)" },
    { "stomp_outconn: priority is 0-9",
      "{" SDEF ",\"stomp_outconn\":[{\"name\":\"o\",\"def\":\"amq\","
      "\"priority\":10}]}", "priority 10 is out of range 0-9" },
    { "stomp_outconn: expires is at least 1 ms",
      "{" SDEF ",\"stomp_outconn\":[{\"name\":\"o\",\"def\":\"amq\","
      "\"expires\":0}]}", "expires 0 is out of range 1-2147483647" },
    { "stomp_outconn: max_inflight at most 65536",
      "{" SDEF ",\"stomp_outconn\":[{\"name\":\"o\",\"def\":\"amq\","
      "\"max_inflight\":65537}]}", "max_inflight 65537 is out of range" },
    { "stomp_outconn: content_type has no line feed",
      "{" SDEF ",\"stomp_outconn\":[{\"name\":\"o\",\"def\":\"amq\","
      "\"content_type\":\"text/plain\\n\"}]}",
      "stomp_outconn 'o': content_type 'text/plain?' holds a NUL" },
    { "stomp_outconn: persistent is a boolean",
      "{" SDEF ",\"stomp_outconn\":[{\"name\":\"o\",\"def\":\"amq\","
      "\"persistent\":\"yes\"}]}", "field 'persistent' must be true or false"
    },

    /* stomp_channel */
    { "stomp_channel: valid",
      "{" SDEF "," REDIS_SVC ",\"stomp_channel\":[{\"name\":\"c\","
      "\"def\":\"amq\",\"destination\":\"/queue/orders\",\"service\":"
      "\"a\",\"prefetch\":1,\"data_format\":\"json\",\"retry\":"
      "{\"attempts\":2},\"dead_letter\":\"/queue/orders.failed\"}]}", NULL },
    { "stomp_channel: destination is required",
      "{" SDEF "," REDIS_SVC ",\"stomp_channel\":[{\"name\":\"c\","
      "\"def\":\"amq\",\"service\":\"a\"}]}",
      "stomp_channel 'c': missing required field 'destination'" },
    { "stomp_channel: service is required",
      "{" SDEF ",\"stomp_channel\":[{\"name\":\"c\",\"def\":\"amq\","
      "\"destination\":\"/queue/q\"}]}",
      "stomp_channel 'c': missing required field 'service'" },
    { "stomp_channel: service must exist",
      "{" SDEF ",\"stomp_channel\":[{\"name\":\"c\",\"def\":\"amq\","
      "\"destination\":\"/queue/q\",\"service\":\"nosuch\"}]}",
      "stomp_channel 'c': service 'nosuch' does not exist" },
    { "stomp_channel: def must exist",
      "{" REDIS_SVC ",\"stomp_channel\":[{\"name\":\"c\",\"def\":\"amq\","
      "\"destination\":\"/queue/q\",\"service\":\"a\"}]}",
      "stomp_channel 'c': def 'amq' does not exist (stomp_def expected)" },
    { "stomp_channel: prefetch is at least 1",
      "{" SDEF "," REDIS_SVC ",\"stomp_channel\":[{\"name\":\"c\","
      "\"def\":\"amq\",\"destination\":\"/queue/q\",\"service\":\"a\","
      "\"prefetch\":0}]}", "prefetch 0 is out of range 1-65535" },
    { "stomp_channel: destination has no line feed",
      "{" SDEF "," REDIS_SVC ",\"stomp_channel\":[{\"name\":\"c\","
      "\"def\":\"amq\",\"destination\":\"/queue/q\\nreceipt:x\","
      "\"service\":\"a\"}]}",
      "stomp_channel 'c': destination '/queue/q?receipt:x' holds a NUL" },
    { "stomp_channel: destination is at most 1024 characters",
      "{" SDEF "," REDIS_SVC ",\"stomp_channel\":[{\"name\":\"c\","
      "\"def\":\"amq\",\"destination\":\"/queue/"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
      "\",\"service\":\"a\"}]}",
      "field 'destination' is 1042 characters long; allowed 1-1024" },
    { "stomp_channel: dead_letter has no carriage return",
      "{" SDEF "," REDIS_SVC ",\"stomp_channel\":[{\"name\":\"c\","
      "\"def\":\"amq\",\"destination\":\"/queue/q\",\"service\":\"a\","
      "\"dead_letter\":\"/queue/d\\r\"}]}",
      "stomp_channel 'c': dead_letter '/queue/d?' holds a NUL" },
    { "stomp_channel: dead_letter is not the consumed destination",
      "{" SDEF "," REDIS_SVC ",\"stomp_channel\":[{\"name\":\"c\","
      "\"def\":\"amq\",\"destination\":\"/queue/q\",\"service\":\"a\","
      "\"dead_letter\":\"/queue/q\"}]}",
      "stomp_channel 'c': dead_letter is the consumed destination" },
    { "stomp_channel: dead_letter is a destination, not an AMQP object",
      "{" SDEF "," REDIS_SVC ",\"stomp_channel\":[{\"name\":\"c\","
      "\"def\":\"amq\",\"destination\":\"/queue/q\",\"service\":\"a\","
      "\"dead_letter\":{\"routing_key\":\"dl\"}}]}",
      "field 'dead_letter' must be a string" },
    { "stomp_channel: retry as amqp_channel's",
      "{" SDEF "," REDIS_SVC ",\"stomp_channel\":[{\"name\":\"c\","
      "\"def\":\"amq\",\"destination\":\"/queue/q\",\"service\":\"a\","
      "\"retry\":{\"initial_delay\":5000,\"max_delay\":10}}]}",
      "retry.max_delay 10 is less than retry.initial_delay 5000" },
    { "stomp_channel: data_format is none, json or xml",
      "{" SDEF "," REDIS_SVC ",\"stomp_channel\":[{\"name\":\"c\","
      "\"def\":\"amq\",\"destination\":\"/queue/q\",\"service\":\"a\","
      "\"data_format\":\"csv\"}]}", "data_format 'csv' is not one of" },

    { "stomp_channel: not to a redis_page service",
      "{" SDEF ",\"service\":[{\"name\":\"p\",\"kind\":\"redis_page\","
      "\"key\":\"k\"}],\"stomp_channel\":[{\"name\":\"c\",\"def\":"
      "\"amq\",\"destination\":\"/queue/q\",\"service\":\"p\"}]}",
      "stomp_channel 'c': service 'p' is of kind 'redis_page', which only "
      "answers HTTP GET" },

    /* service publish: AMQP or STOMP */
    { "service: a STOMP publish is valid",
      "{" SDEF "," SOUT "," SPUB "}", NULL },
    { "service: a STOMP publish with the publish properties",
      "{" SDEF "," SOUT ",\"service\":[{\"name\":\"s\",\"kind\":"
      "\"publish\",\"stomp_outconn\":\"amq.out\",\"destination\":"
      "\"/topic/$host.{id}\",\"confirm\":false,\"priority\":1,"
      "\"delivery_mode\":1,\"expiration\":5,\"content_type\":\"text/plain\","
      "\"headers\":{\"tenant\":\"a\"},\"exchange\":\"\",\"routing_key\":"
      "\"\",\"mandatory\":false}]}", NULL },
    { "service: publish needs outconn or stomp_outconn",
      "{\"service\":[{\"name\":\"s\",\"kind\":\"publish\"}]}",
      "service 's': a publish service needs 'outconn' (an amqp_outconn) or "
      "'stomp_outconn' (a stomp_outconn)" },
    { "service: publish takes outconn or stomp_outconn, not both",
      "{" DEF "," OUT "," SDEF "," SOUT ",\"service\":[{\"name\":\"s\","
      "\"kind\":\"publish\",\"outconn\":\"crm.out\",\"stomp_outconn\":"
      "\"amq.out\",\"destination\":\"/queue/q\"}]}",
      "service 's': set 'outconn' (AMQP) or 'stomp_outconn' (STOMP), not "
      "both" },
    { "service: a STOMP publish needs a destination",
      "{" SDEF "," SOUT ",\"service\":[{\"name\":\"s\",\"kind\":"
      "\"publish\",\"stomp_outconn\":\"amq.out\"}]}",
      "service 's': a STOMP publish (stomp_outconn) needs a 'destination'" },
    { "service: destination is refused with outconn",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"s\",\"kind\":\"publish\","
      "\"outconn\":\"crm.out\",\"destination\":\"/queue/q\"}]}",
      "service 's': 'destination' is a STOMP destination, for "
      "'stomp_outconn'" },
    { "service: a routing key is refused with stomp_outconn",
      "{" SDEF "," SOUT ",\"service\":[{\"name\":\"s\",\"kind\":"
      "\"publish\",\"stomp_outconn\":\"amq.out\",\"destination\":\"/q\","
      "\"routing_key\":\"k\"}]}",
      "service 's': exchange, routing_key and mandatory are AMQP's" },
    { "service: an exchange is refused with stomp_outconn",
      "{" SDEF "," SOUT ",\"service\":[{\"name\":\"s\",\"kind\":"
      "\"publish\",\"stomp_outconn\":\"amq.out\",\"destination\":\"/q\","
      "\"exchange\":\"amq.topic\"}]}", "exchange, routing_key and mandatory" },
    { "service: mandatory is refused with stomp_outconn",
      "{" SDEF "," SOUT ",\"service\":[{\"name\":\"s\",\"kind\":"
      "\"publish\",\"stomp_outconn\":\"amq.out\",\"destination\":\"/q\","
      "\"mandatory\":true}]}", "exchange, routing_key and mandatory" },
    { "service: stomp_outconn must be a stomp_outconn",
      "{" DEF "," OUT ",\"service\":[{\"name\":\"s\",\"kind\":\"publish\","
      "\"stomp_outconn\":\"crm.out\",\"destination\":\"/q\"}]}",
      "service 's': stomp_outconn 'crm.out' does not exist" },
    { "service: a destination has no line feed",
      "{" SDEF "," SOUT ",\"service\":[{\"name\":\"s\",\"kind\":"
      "\"publish\",\"stomp_outconn\":\"amq.out\",\"destination\":"
      "\"/q\\nx\"}]}", "service 's': destination '/q?x' holds a NUL" },
    { "service: a STOMP content_type has no line feed",
      "{" SDEF "," SOUT ",\"service\":[{\"name\":\"s\",\"kind\":"
      "\"publish\",\"stomp_outconn\":\"amq.out\",\"destination\":\"/q\","
      "\"content_type\":\"a\\r\\nb\"}]}", "content_type 'a??b' holds a NUL" },
    { "service: a STOMP publish's headers are checked as AMQP ones",
      "{" SDEF "," SOUT ",\"service\":[{\"name\":\"s\",\"kind\":"
      "\"publish\",\"stomp_outconn\":\"amq.out\",\"destination\":\"/q\","
      "\"headers\":{\"h\":\"a\\nb\"}}]}", "service 's': headers 'h'" },
    { "service: rpc takes no stomp_outconn",
      "{" SDEF "," SOUT ",\"service\":[{\"name\":\"s\",\"kind\":\"rpc\","
      "\"stomp_outconn\":\"amq.out\",\"routing_key\":\"q\"}]}",
      "service 's': unknown field 'stomp_outconn'" },

    /* syntax */
    { "syntax errors carry line and column",
      "{\n  \"amqp_def\": [\n    {\"name\": \"a\",}\n  ]\n}",
      "test.json:3:" },
};


static void
test_model_cases(void **state)
{
    int            rc, failed;
    size_t         i;
    zgw_errors_t   errs;
    zgw_config_t  *cfg;
    const char    *doc;

    (void) state;
    failed = 0;

    for (i = 0; i < sizeof(model_cases) / sizeof(model_cases[0]); i++) {
        cfg = zgw_config_new();
        assert_non_null(cfg);
        zgw_errors_init(&errs);

        doc = model_cases[i].doc;
        rc = zgw_config_load_text(cfg, doc, strlen(doc), "test.json", 0,
                                  &errs);

        if (model_cases[i].error == NULL) {
            if (rc != ZGW_OK || errs.n) {
                print_message("FAIL: %s: expected valid\n",
                              model_cases[i].title);
                zgw_test_print_errors(&errs);
                failed++;
            }

        } else if (rc == ZGW_OK
                   || !zgw_test_errors_have(&errs, model_cases[i].error))
        {
            print_message("FAIL: %s: expected an error with \"%s\"\n",
                          model_cases[i].title, model_cases[i].error);
            zgw_test_print_errors(&errs);
            failed++;
        }

        zgw_errors_free(&errs);
        zgw_config_free(cfg);
    }

    assert_int_equal(failed, 0);
}


/* more amqp_outconn objects than a worker has connection slots for */
static void
test_outconn_count_is_bounded(void **state)
{
    int            n, rc;
    char          *doc, *p;
    size_t         size;
    zgw_errors_t   errs;
    zgw_config_t  *cfg;

    (void) state;

    for (n = ZGW_OUTCONNS_MAX; n <= ZGW_OUTCONNS_MAX + 1; n++) {
        size = 256 + (size_t) n * 64;
        doc = malloc(size);
        assert_non_null(doc);
        p = doc + sprintf(doc, "{" DEF ",\"amqp_outconn\":[");
        for (rc = 0; rc < n; rc++) {
            p += sprintf(p, "%s{\"name\":\"o%d\",\"def\":\"crm\"}",
                         rc ? "," : "", rc);
        }
        strcpy(p, "]}");

        cfg = zgw_config_new();
        assert_non_null(cfg);
        zgw_errors_init(&errs);
        rc = zgw_config_load_text(cfg, doc, strlen(doc), "test.json", 0,
                                  &errs);

        if (n == ZGW_OUTCONNS_MAX) {
            assert_int_equal(rc, ZGW_OK);
        } else {
            assert_int_equal(rc, ZGW_ERROR);
            assert_true(zgw_test_errors_have(&errs, "amqp_outconn: 33 "
                                             "objects, at most 32"));
        }

        zgw_errors_free(&errs);
        zgw_config_free(cfg);
        free(doc);
    }
}


static void
test_defaults_are_filled(void **state)
{
    json_t        *def;
    zgw_errors_t   errs;
    zgw_config_t  *cfg;
    const char    *doc = "{\"amqp_def\":[{\"name\":\"crm\"}]}";

    (void) state;
    cfg = zgw_config_new();
    zgw_errors_init(&errs);

    assert_int_equal(zgw_config_load_text(cfg, doc, strlen(doc), NULL, 0,
                                          &errs), ZGW_OK);

    def = zgw_config_get(cfg, ZGW_KIND_AMQP_DEF, "crm");
    assert_non_null(def);
    assert_int_equal(json_integer_value(json_object_get(def, "port")), 5672);
    assert_string_equal(json_string_value(json_object_get(def, "vhost")),
                        "/");
    assert_true(json_is_true(json_object_get(def, "is_active")));
    assert_int_equal(json_integer_value(json_object_get(def, "frame_max")),
                     131072);

    zgw_errors_free(&errs);
    zgw_config_free(cfg);

    /* a startup service runs once per cluster start unless said */
    doc = "{\"service\":[{\"name\":\"a\",\"kind\":\"redis\",\"key\":\"k\"}],"
          "\"startup\":[{\"name\":\"s\",\"service\":\"a\"}]}";
    cfg = zgw_config_new();
    zgw_errors_init(&errs);

    assert_int_equal(zgw_config_load_text(cfg, doc, strlen(doc), NULL, 0,
                                          &errs), ZGW_OK);

    def = zgw_config_get(cfg, ZGW_KIND_STARTUP, "s");
    assert_non_null(def);
    assert_string_equal(json_string_value(json_object_get(def, "when")),
                        "first");

    zgw_errors_free(&errs);
    zgw_config_free(cfg);
}


/* role: "admin" unless said, for incoming definitions only */
static void
test_role_defaults_to_admin_for_in(void **state)
{
    json_t        *sec;
    zgw_errors_t   errs;
    zgw_config_t  *cfg;
    const char    *doc = "{" SEC "}";

    (void) state;
    cfg = zgw_config_new();
    zgw_errors_init(&errs);

    assert_int_equal(zgw_config_load_text(cfg, doc, strlen(doc), NULL, 0,
                                          &errs), ZGW_OK);

    sec = zgw_config_get(cfg, ZGW_KIND_SECURITY, "in");
    assert_string_equal(json_string_value(json_object_get(sec, "role")),
                        "admin");

    sec = zgw_config_get(cfg, ZGW_KIND_SECURITY, "out");
    assert_null(json_object_get(sec, "role"));

    zgw_errors_free(&errs);
    zgw_config_free(cfg);
}


/* the admin API's form: a set secret, clear, sealed or hashed, reads as
 * {"$set": true}; an absent one stays absent */
static void
test_export_marks_set_secrets(void **state)
{
    char          *text;
    json_t        *obj, *shown;
    zgw_key_t      key;
    zgw_errors_t   errs;
    zgw_config_t  *cfg;
    const char    *clear = "{" DEF "," SEC "}";
    int            sealed;

    (void) state;
    memset(key.bytes, 7, sizeof(key.bytes));

    for (sealed = 0; sealed < 2; sealed++) {
        cfg = zgw_config_new();
        zgw_errors_init(&errs);
        assert_int_equal(zgw_config_load_text(cfg, clear, strlen(clear), NULL,
                                              0, &errs), ZGW_OK);
        if (sealed) {
            assert_int_equal(zgw_config_seal(cfg, NULL, &key, &errs),
                             ZGW_OK);
        }

        obj = zgw_config_get(cfg, ZGW_KIND_AMQP_DEF, "crm");
        shown = zgw_object_export(ZGW_KIND_AMQP_DEF, obj,
                                  ZGW_EXPORT_MARK_SET);
        text = json_dumps(json_object_get(shown, "password"), JSON_COMPACT);
        assert_string_equal(text, "{\"$set\":true}");
        free(text);
        json_decref(shown);

        obj = zgw_config_get(cfg, ZGW_KIND_SECURITY, "in");
        shown = zgw_object_export(ZGW_KIND_SECURITY, obj,
                                  ZGW_EXPORT_MARK_SET);
        text = json_dumps(shown, JSON_COMPACT | JSON_SORT_KEYS);
        assert_non_null(strstr(text, "\"password\":{\"$set\":true}"));
        assert_null(strstr(text, "$hash"));
        assert_null(strstr(text, "$sealed"));
        free(text);
        json_decref(shown);

        /* the stored object is left as it was */
        assert_non_null(json_object_get(obj, "password"));
        assert_false(json_is_object(json_object_get(obj, "password"))
                     && json_object_get(json_object_get(obj, "password"),
                                        "$set") != NULL);

        zgw_errors_free(&errs);
        zgw_config_free(cfg);
    }
}


static void
test_every_error_is_reported(void **state)
{
    zgw_errors_t   errs;
    zgw_config_t  *cfg;
    const char    *doc =
        "{\"amqp_def\":[{\"name\":\"a\",\"port\":0},"
        "{\"name\":\"b\",\"colour\":\"red\"}],"
        "\"amqp_outconn\":[{\"name\":\"o\",\"def\":\"zzz\"}]}";

    (void) state;
    cfg = zgw_config_new();
    zgw_errors_init(&errs);

    assert_int_equal(zgw_config_load_text(cfg, doc, strlen(doc), NULL, 0,
                                          &errs), ZGW_ERROR);
    assert_int_equal(errs.n, 3);
    assert_true(zgw_test_errors_have(&errs, "amqp_def 'a': port 0"));
    assert_true(zgw_test_errors_have(&errs, "amqp_def 'b': unknown field "
                                            "'colour'"));
    assert_true(zgw_test_errors_have(&errs, "def 'zzz' does not exist"));

    zgw_errors_free(&errs);
    zgw_config_free(cfg);
}


static void
test_invalid_referent_does_not_cascade(void **state)
{
    zgw_errors_t   errs;
    zgw_config_t  *cfg;
    const char    *doc =
        "{\"amqp_def\":[{\"name\":\"a\",\"port\":0}],"
        "\"amqp_outconn\":[{\"name\":\"o\",\"def\":\"a\"}]}";

    (void) state;
    cfg = zgw_config_new();
    zgw_errors_init(&errs);

    assert_int_equal(zgw_config_load_text(cfg, doc, strlen(doc), NULL, 0,
                                          &errs), ZGW_ERROR);
    assert_int_equal(errs.n, 1);

    zgw_errors_free(&errs);
    zgw_config_free(cfg);
}


static void
test_export_round_trips(void **state)
{
    char          *a, *b;
    json_t        *doc;
    zgw_errors_t   errs;
    zgw_config_t  *cfg, *again;
    const char    *text = "{" DEF "," OUT "," PUB "," SEC "}";

    (void) state;
    cfg = zgw_config_new();
    again = zgw_config_new();
    zgw_errors_init(&errs);

    assert_int_equal(zgw_config_load_text(cfg, text, strlen(text), NULL, 0,
                                          &errs), ZGW_OK);

    doc = zgw_config_export(cfg, 0);
    assert_non_null(doc);

    /* secrets are left out of an export */
    assert_null(json_object_get(json_array_get(json_object_get(doc,
                "amqp_def"), 0), "password"));
    assert_null(json_object_get(json_array_get(json_object_get(doc,
                "security"), 0), "password"));

    assert_int_equal(zgw_config_load_doc(again, doc, 0, &errs), ZGW_OK);

    json_decref(doc);
    doc = zgw_config_export(again, 0);
    a = json_dumps(doc, JSON_SORT_KEYS);
    json_decref(doc);
    doc = zgw_config_export(cfg, 0);
    b = json_dumps(doc, JSON_SORT_KEYS);
    json_decref(doc);

    assert_string_equal(a, b);

    free(a);
    free(b);
    zgw_errors_free(&errs);
    zgw_config_free(cfg);
    zgw_config_free(again);
}


static void
test_referrers_are_listed(void **state)
{
    zgw_errors_t   errs, refs;
    zgw_config_t  *cfg;
    const char    *text = "{" DEF "," OUT "," PUB "}";

    (void) state;
    cfg = zgw_config_new();
    zgw_errors_init(&errs);
    zgw_errors_init(&refs);

    assert_int_equal(zgw_config_load_text(cfg, text, strlen(text), NULL, 0,
                                          &errs), ZGW_OK);
    assert_int_equal(zgw_config_referrers(cfg, ZGW_KIND_AMQP_OUTCONN,
                                          "crm.out", &refs), 1);
    assert_true(zgw_test_errors_have(&refs, "service 'pub' (field outconn)"));
    assert_int_equal(zgw_config_referrers(cfg, ZGW_KIND_SERVICE, "pub",
                                          &refs), 0);

    zgw_errors_free(&errs);
    zgw_errors_free(&refs);
    zgw_config_free(cfg);
}


static void
test_jwt_secret_kept_or_required(void **state)
{
    zgw_key_t      key;
    zgw_errors_t   errs;
    zgw_config_t  *cfg, *next, *none;
    const char    *with = "{\"security\":[{\"name\":\"j\",\"type\":"
                          "\"jwt\",\"secret\":\"" HEX64 "\"}]}";
    const char    *without = "{\"security\":[{\"name\":\"j\",\"type\":"
                             "\"jwt\"}]}";

    (void) state;
    memset(key.bytes, 7, sizeof(key.bytes));
    cfg = zgw_config_new();
    next = zgw_config_new();
    none = zgw_config_new();
    zgw_errors_init(&errs);

    assert_int_equal(zgw_config_load_text(cfg, with, strlen(with), NULL, 0,
                                          &errs), ZGW_OK);
    assert_int_equal(zgw_config_seal(cfg, NULL, &key, &errs), ZGW_OK);

    /* an export leaves the secret out: the stored one is kept */
    assert_int_equal(zgw_config_load_text(next, without, strlen(without),
                                          NULL, 0, &errs), ZGW_OK);
    assert_int_equal(zgw_config_seal(next, cfg, &key, &errs), ZGW_OK);
    assert_non_null(json_object_get(json_object_get(zgw_config_get(next,
                    ZGW_KIND_SECURITY, "j"), "secret"), "$sealed"));

    /* none stored, none given: refused */
    assert_int_equal(zgw_config_load_text(none, without, strlen(without),
                                          NULL, 0, &errs), ZGW_OK);
    assert_int_equal(zgw_config_seal(none, NULL, &key, &errs), ZGW_ERROR);
    assert_non_null(strstr(zgw_errors_first(&errs),
                           "alg HS256 needs a 'secret'"));

    zgw_errors_free(&errs);
    zgw_config_free(cfg);
    zgw_config_free(next);
    zgw_config_free(none);
}


static void
test_seal_secrets(void **state)
{
    json_t        *def, *sec, *pw;
    char          *clear;
    zgw_key_t      key;
    zgw_errors_t   errs;
    zgw_config_t  *cfg, *next;
    const char    *text = "{" DEF "," SEC "}";
    const char    *text2 = "{\"amqp_def\":[{\"name\":\"crm\"}],"
                           "\"security\":[{\"name\":\"in\",\"type\":"
                           "\"basic_auth\",\"username\":\"u\"}]}";

    (void) state;
    memset(key.bytes, 7, sizeof(key.bytes));
    cfg = zgw_config_new();
    next = zgw_config_new();
    zgw_errors_init(&errs);

    assert_int_equal(zgw_config_load_text(cfg, text, strlen(text), NULL, 0,
                                          &errs), ZGW_OK);
    assert_true(zgw_config_needs_key(cfg, NULL));
    assert_int_equal(zgw_config_seal(cfg, NULL, &key, &errs), ZGW_OK);

    def = zgw_config_get(cfg, ZGW_KIND_AMQP_DEF, "crm");
    pw = json_object_get(def, "password");
    assert_true(json_is_string(json_object_get(pw, "$sealed")));

    clear = zgw_object_secret(ZGW_KIND_AMQP_DEF, def, "password", &key,
                              &errs);
    assert_non_null(clear);
    assert_string_equal(clear, "p");
    free(clear);

    sec = zgw_config_get(cfg, ZGW_KIND_SECURITY, "in");
    pw = json_object_get(sec, "password");
    assert_int_equal(zgw_password_verify(json_string_value(
                     json_object_get(pw, "$hash")), "p"), 1);

    sec = zgw_config_get(cfg, ZGW_KIND_SECURITY, "out");
    assert_non_null(json_object_get(json_object_get(sec, "password"),
                                    "$sealed"));

    /* a file without secrets keeps the stored ones */
    assert_int_equal(zgw_config_load_text(next, text2, strlen(text2), NULL,
                                          0, &errs), ZGW_OK);
    assert_false(zgw_config_needs_key(next, cfg));
    assert_int_equal(zgw_config_seal(next, cfg, NULL, &errs), ZGW_OK);
    assert_true(json_equal(json_object_get(zgw_config_get(next,
                               ZGW_KIND_AMQP_DEF, "crm"), "password"),
                           json_object_get(zgw_config_get(cfg,
                               ZGW_KIND_AMQP_DEF, "crm"), "password")));

    zgw_errors_free(&errs);
    zgw_config_free(cfg);
    zgw_config_free(next);
}


static void
test_new_secret_is_random(void **state)
{
    json_t        *def;
    char          *clear;
    zgw_key_t      key;
    zgw_errors_t   errs;
    zgw_config_t  *cfg;
    const char    *text = "{\"amqp_def\":[{\"name\":\"crm\"}]}";

    (void) state;
    memset(key.bytes, 9, sizeof(key.bytes));
    cfg = zgw_config_new();
    zgw_errors_init(&errs);

    assert_int_equal(zgw_config_load_text(cfg, text, strlen(text), NULL, 0,
                                          &errs), ZGW_OK);
    assert_int_equal(zgw_config_seal(cfg, NULL, &key, &errs), ZGW_OK);

    def = zgw_config_get(cfg, ZGW_KIND_AMQP_DEF, "crm");
    clear = zgw_object_secret(ZGW_KIND_AMQP_DEF, def, "password", &key,
                              &errs);
    assert_non_null(clear);
    assert_int_equal(strlen(clear), ZGW_UUID_LEN);
    assert_int_equal(clear[14], '4');
    free(clear);

    zgw_errors_free(&errs);
    zgw_config_free(cfg);
}


/* STOMP: defaults, a passcode sealed and opened like amqp_def's password,
 * none when absent, referrers of the new kinds, a STOMP publish without
 * the AMQP fields */
static void
test_stomp_objects(void **state)
{
    char          *clear;
    json_t        *obj, *doc;
    zgw_key_t      key;
    zgw_errors_t   errs, refs;
    zgw_config_t  *cfg, *next;
    const char    *text = "{" SDEF "," SOUT ",\"service\":[{\"name\":"
                          "\"spub\",\"kind\":\"publish\",\"stomp_outconn\":"
                          "\"amq.out\",\"destination\":\"/queue/{id}\"},"
                          "{\"name\":\"b\",\"kind\":\"redis\",\"key\":"
                          "\"k\"}],"
                          "\"stomp_channel\":[{\"name\":\"c\",\"def\":"
                          "\"amq\",\"destination\":\"/queue/q\","
                          "\"service\":\"b\"}]}";
    const char    *nopass = "{\"stomp_def\":[{\"name\":\"amq\"},"
                            "{\"name\":\"other\"}]}";

    (void) state;
    memset(key.bytes, 7, sizeof(key.bytes));
    cfg = zgw_config_new();
    next = zgw_config_new();
    zgw_errors_init(&errs);
    zgw_errors_init(&refs);

    assert_int_equal(zgw_config_load_text(cfg, text, strlen(text), NULL, 0,
                                          &errs), ZGW_OK);

    obj = zgw_config_get(cfg, ZGW_KIND_STOMP_DEF, "amq");
    assert_int_equal(json_integer_value(json_object_get(obj, "port")),
                     61613);
    assert_int_equal(json_integer_value(json_object_get(obj, "heartbeat")),
                     10);
    assert_string_equal(json_string_value(json_object_get(obj, "host")),
                        "127.0.0.1");
    assert_true(json_is_false(json_object_get(obj, "use_jms")));
    assert_true(json_is_false(json_object_get(obj, "tls")));
    assert_null(json_object_get(obj, "virtual_host"));
    assert_null(json_object_get(obj, "login"));

    obj = zgw_config_get(cfg, ZGW_KIND_STOMP_OUTCONN, "amq.out");
    assert_true(json_is_true(json_object_get(obj, "persistent")));
    assert_int_equal(json_integer_value(json_object_get(obj,
                                                        "max_inflight")),
                     1024);
    assert_null(json_object_get(obj, "priority"));
    assert_null(json_object_get(obj, "expires"));

    obj = zgw_config_get(cfg, ZGW_KIND_STOMP_CHANNEL, "c");
    assert_int_equal(json_integer_value(json_object_get(obj, "prefetch")),
                     10);
    assert_string_equal(json_string_value(json_object_get(obj,
                                                          "data_format")),
                        "none");
    assert_true(json_is_true(json_object_get(obj, "is_active")));
    assert_null(json_object_get(obj, "dead_letter"));

    /* a STOMP publish keeps none of AMQP's fields */
    obj = zgw_config_get(cfg, ZGW_KIND_SERVICE, "spub");
    assert_null(json_object_get(obj, "outconn"));
    assert_null(json_object_get(obj, "exchange"));
    assert_null(json_object_get(obj, "routing_key"));
    assert_null(json_object_get(obj, "mandatory"));
    assert_true(json_is_true(json_object_get(obj, "confirm")));
    assert_string_equal(json_string_value(json_object_get(obj,
                                                          "destination")),
                        "/queue/{id}");

    /* referrers, for the admin API's and zmqctl's cascade */
    assert_int_equal(zgw_config_referrers(cfg, ZGW_KIND_STOMP_DEF, "amq",
                                          &refs), 2);
    assert_true(zgw_test_errors_have(&refs, "stomp_outconn 'amq.out' "
                                            "(field def)"));
    assert_true(zgw_test_errors_have(&refs, "stomp_channel 'c' (field "
                                            "def)"));
    assert_int_equal(zgw_config_referrers(cfg, ZGW_KIND_STOMP_OUTCONN,
                                          "amq.out", &refs), 1);
    assert_true(zgw_test_errors_have(&refs, "service 'spub' (field "
                                            "stomp_outconn)"));
    assert_int_equal(zgw_config_referrers(cfg, ZGW_KIND_SERVICE, "b",
                                          &refs), 1);
    assert_true(zgw_test_errors_have(&refs, "stomp_channel 'c' (field "
                                            "service)"));

    /* the passcode is sealed with the key and opens with it */
    assert_true(zgw_config_needs_key(cfg, NULL));
    assert_int_equal(zgw_config_seal(cfg, NULL, &key, &errs), ZGW_OK);
    obj = zgw_config_get(cfg, ZGW_KIND_STOMP_DEF, "amq");
    assert_true(json_is_string(json_object_get(json_object_get(obj,
                                                               "passcode"),
                                               "$sealed")));
    clear = zgw_object_secret(ZGW_KIND_STOMP_DEF, obj, "passcode", &key,
                              &errs);
    assert_non_null(clear);
    assert_string_equal(clear, "pc");
    free(clear);

    /* sealed for this object and field only */
    json_object_set_new(obj, "name", json_string("other"));
    assert_null(zgw_object_secret(ZGW_KIND_STOMP_DEF, obj, "passcode", &key,
                                  &errs));
    json_object_set_new(obj, "name", json_string("amq"));

    /* left out of an export, and of the stored text never in clear */
    doc = zgw_config_export(cfg, 0);
    assert_null(json_object_get(json_array_get(json_object_get(doc,
                "stomp_def"), 0), "passcode"));
    json_decref(doc);
    clear = zgw_object_dump(ZGW_KIND_STOMP_DEF, obj);
    assert_null(strstr(clear, "\"pc\""));
    assert_non_null(strstr(clear, "$sealed"));
    free(clear);

    /* an import without it keeps the stored one; none stored: none (no
     * random passcode: STOMP brokers may take connections without one) */
    assert_int_equal(zgw_config_load_text(next, nopass, strlen(nopass),
                                          NULL, 0, &errs), ZGW_OK);
    assert_false(zgw_config_needs_key(next, cfg));
    assert_int_equal(zgw_config_seal(next, cfg, NULL, &errs), ZGW_OK);
    assert_true(json_equal(json_object_get(zgw_config_get(next,
                               ZGW_KIND_STOMP_DEF, "amq"), "passcode"),
                           json_object_get(obj, "passcode")));
    assert_null(json_object_get(zgw_config_get(next, ZGW_KIND_STOMP_DEF,
                                               "other"), "passcode"));

    zgw_errors_free(&errs);
    zgw_errors_free(&refs);
    zgw_config_free(cfg);
    zgw_config_free(next);
}


/* every kind has a name that round-trips, listed in ZGW_KIND_NAMES */
static void
test_kind_names(void **state)
{
    int  k;

    (void) state;

    assert_int_equal(ZGW_KIND_MAX, 11);
    assert_int_equal(zgw_kind_from_name("stomp_def"), ZGW_KIND_STOMP_DEF);
    assert_int_equal(zgw_kind_from_name("stomp_outconn"),
                     ZGW_KIND_STOMP_OUTCONN);
    assert_int_equal(zgw_kind_from_name("stomp_channel"),
                     ZGW_KIND_STOMP_CHANNEL);

    for (k = 0; k < ZGW_KIND_MAX; k++) {
        assert_int_equal(zgw_kind_from_name(zgw_kind_name(k)), k);
        assert_non_null(strstr(ZGW_KIND_NAMES, zgw_kind_name(k)));
    }
}


/* names: what the model accepts is what a URL path segment can name */
static void
test_names(void **state)
{
    char  long_name[ZGW_NAME_MAX + 2];

    (void) state;

    assert_true(zgw_name_valid("crm.out"));
    assert_true(zgw_name_valid("a-b_c:d@e"));
    assert_true(zgw_name_valid("..."));
    assert_true(zgw_name_valid(".a"));
    assert_false(zgw_name_valid(""));
    assert_false(zgw_name_valid("."));
    assert_false(zgw_name_valid(".."));
    assert_false(zgw_name_valid("a/b"));
    assert_false(zgw_name_valid("a b"));
    assert_false(zgw_name_valid("a%2F"));

    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[ZGW_NAME_MAX] = '\0';
    assert_true(zgw_name_valid(long_name));
    long_name[ZGW_NAME_MAX] = 'x';
    long_name[ZGW_NAME_MAX + 1] = '\0';
    assert_false(zgw_name_valid(long_name));
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_model_cases),
        cmocka_unit_test(test_outconn_count_is_bounded),
        cmocka_unit_test(test_defaults_are_filled),
        cmocka_unit_test(test_role_defaults_to_admin_for_in),
        cmocka_unit_test(test_export_marks_set_secrets),
        cmocka_unit_test(test_every_error_is_reported),
        cmocka_unit_test(test_invalid_referent_does_not_cascade),
        cmocka_unit_test(test_export_round_trips),
        cmocka_unit_test(test_referrers_are_listed),
        cmocka_unit_test(test_seal_secrets),
        cmocka_unit_test(test_jwt_secret_kept_or_required),
        cmocka_unit_test(test_new_secret_is_random),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_stomp_objects),
        cmocka_unit_test(test_kind_names),
    };

    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
