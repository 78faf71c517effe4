/*
 * A small JMS application for the tests (issue 16): the Java side of the
 * JMS interop tests, speaking OpenWire to ActiveMQ through Debian's
 * activemq-client, so that what it sees is what a Java JMS program sees.
 *
 *   JmsTool consume --url U --queue Q [--count N] [--idle S] [--timeout S]
 *                   [--selector SQL] [--no-ack]
 *       receives up to N messages (0: no limit) until none came for S
 *       seconds (idle, default 5) or the whole run took --timeout seconds;
 *       prints one JSON line per message (see describe()), flushed, then
 *       acknowledges it (CLIENT_ACKNOWLEDGE, one by one); --no-ack leaves
 *       every message in the queue (redelivered to the next consumer).
 *   JmsTool produce --url U [--queue Q]
 *       reads JSON lines on stdin, sends one message per line (see send()),
 *       prints one JSON line per message sent: {"id": JMSMessageID,
 *       "timestamp": JMSTimestamp, "queue": ...}.
 *   JmsTool browse --url U --queue Q [--print] [--selector SQL]
 *       counts the messages in a queue with a QueueBrowser (nothing is
 *       consumed); prints {"queue": Q, "count": N}; with --print one JSON
 *       line per message first (the consume format).
 *   JmsTool stats --url U --queue Q
 *       the broker's own statistics of a queue (statisticsBrokerPlugin):
 *       {"size": ..., "enqueueCount": ..., "dequeueCount": ..., ...};
 *       {"size": 0, "exists": false} for a queue the broker does not have.
 *
 * Exit status: 0 done, 2 bad arguments or input, 1 a JMS error (message
 * on stderr).
 */

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.Enumeration;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;

import javax.jms.BytesMessage;
import javax.jms.Connection;
import javax.jms.DeliveryMode;
import javax.jms.Destination;
import javax.jms.JMSException;
import javax.jms.MapMessage;
import javax.jms.Message;
import javax.jms.MessageConsumer;
import javax.jms.MessageProducer;
import javax.jms.ObjectMessage;
import javax.jms.Queue;
import javax.jms.QueueBrowser;
import javax.jms.Session;
import javax.jms.StreamMessage;
import javax.jms.TextMessage;

import org.apache.activemq.ActiveMQConnectionFactory;
import org.apache.activemq.command.ActiveMQQueue;
import org.apache.activemq.command.ActiveMQTopic;

public class JmsTool {

    static final ObjectMapper JSON = new ObjectMapper();
    static final PrintStream OUT =
        new PrintStream(System.out, false, StandardCharsets.UTF_8);

    public static void main(String[] argv) {
        if (argv.length < 1) {
            usage("no command");
        }
        Map<String, String> a = new HashMap<>();
        for (int i = 1; i < argv.length; i++) {
            String k = argv[i];
            if (!k.startsWith("--")) {
                usage("unexpected " + k);
            }
            k = k.substring(2);
            if (k.equals("print") || k.equals("no-ack")) {
                a.put(k, "1");
            } else if (i + 1 < argv.length) {
                a.put(k, argv[++i]);
            } else {
                usage("--" + k + " needs a value");
            }
        }
        String url = a.getOrDefault("url", "tcp://127.0.0.1:61616");
        int rc = 0;
        Connection c = null;
        try {
            ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(url);
            c = f.createConnection();
            c.start();
            switch (argv[0]) {
            case "consume":
                consume(c, need(a, "queue"),
                        Integer.parseInt(a.getOrDefault("count", "0")),
                        Double.parseDouble(a.getOrDefault("idle", "5")),
                        Double.parseDouble(a.getOrDefault("timeout", "0")),
                        a.get("selector"), a.containsKey("no-ack"));
                break;
            case "produce":
                rc = produce(c, a.get("queue"));
                break;
            case "browse":
                browse(c, need(a, "queue"), a.containsKey("print"),
                       a.get("selector"));
                break;
            case "stats":
                stats(c, need(a, "queue"));
                break;
            default:
                usage("unknown command " + argv[0]);
            }
        } catch (JMSException e) {
            System.err.println("JmsTool: " + e);
            rc = 1;
        } catch (Exception e) {
            System.err.println("JmsTool: " + e);
            rc = 2;
        } finally {
            OUT.flush();
            if (c != null) {
                try {
                    c.close();
                } catch (JMSException e) {
                    System.err.println("JmsTool: close: " + e);
                }
            }
        }
        System.exit(rc);
    }

    static void usage(String why) {
        System.err.println("JmsTool: " + why + "\nusage: JmsTool "
            + "consume|produce|browse|stats --url URL --queue Q ...");
        System.exit(2);
    }

    static String need(Map<String, String> a, String k) {
        String v = a.get(k);
        if (v == null) {
            usage("--" + k + " is required");
        }
        return v;
    }

    /* "queue://x" or "topic://x" or a bare queue name */
    static Destination destination(String s) {
        if (s.startsWith("topic://")) {
            return new ActiveMQTopic(s.substring(8));
        }
        if (s.startsWith("queue://")) {
            return new ActiveMQQueue(s.substring(8));
        }
        return new ActiveMQQueue(s);
    }

    /* ---------------------------------------------------------- consume */

    static void consume(Connection c, String queue, int count, double idle,
                        double timeout, String selector, boolean noAck)
        throws JMSException
    {
        Session s = c.createSession(false, Session.CLIENT_ACKNOWLEDGE);
        MessageConsumer mc = s.createConsumer(s.createQueue(queue), selector);
        long end = timeout > 0
            ? System.nanoTime() + (long) (timeout * 1e9) : Long.MAX_VALUE;
        int got = 0;
        while (count == 0 || got < count) {
            long wait = (long) (idle * 1000);
            long left = (end - System.nanoTime()) / 1000000;
            if (left <= 0) {
                break;
            }
            Message m = mc.receive(Math.max(1, Math.min(wait, left)));
            if (m == null) {
                break;
            }
            OUT.println(describe(m).toString());
            OUT.flush();
            if (!noAck) {
                m.acknowledge();
            }
            got++;
        }
        mc.close();
        s.close();
    }

    /* One message as JSON: every JMS header, the body, every property
     * with its Java type. */
    static ObjectNode describe(Message m) throws JMSException {
        ObjectNode o = JSON.createObjectNode();
        if (m instanceof TextMessage) {
            o.put("class", "TextMessage");
            String t = ((TextMessage) m).getText();
            o.put("body", t);
            o.put("body_encoding", "text");
        } else if (m instanceof BytesMessage) {
            BytesMessage b = (BytesMessage) m;
            byte[] bytes = new byte[(int) b.getBodyLength()];
            b.readBytes(bytes);
            o.put("class", "BytesMessage");
            o.put("body", Base64.getEncoder().encodeToString(bytes));
            o.put("body_encoding", "base64");
        } else {
            o.put("class", m instanceof MapMessage ? "MapMessage"
                  : m instanceof ObjectMessage ? "ObjectMessage"
                  : m instanceof StreamMessage ? "StreamMessage" : "Message");
            o.putNull("body");
            o.putNull("body_encoding");
        }
        o.put("JMSMessageID", m.getJMSMessageID());
        o.put("JMSCorrelationID", m.getJMSCorrelationID());
        o.put("JMSPriority", m.getJMSPriority());
        o.put("JMSExpiration", m.getJMSExpiration());
        o.put("JMSType", m.getJMSType());
        Destination r = m.getJMSReplyTo();
        o.put("JMSReplyTo", r == null ? null : r.toString());
        Destination d = m.getJMSDestination();
        o.put("JMSDestination", d == null ? null : d.toString());
        o.put("JMSDeliveryMode", m.getJMSDeliveryMode());
        o.put("JMSTimestamp", m.getJMSTimestamp());
        o.put("JMSRedelivered", m.getJMSRedelivered());
        ObjectNode props = o.putObject("properties");
        for (Enumeration<?> e = m.getPropertyNames(); e.hasMoreElements();) {
            String name = (String) e.nextElement();
            Object v = m.getObjectProperty(name);
            ObjectNode p = props.putObject(name);
            p.put("type", v == null ? "null" : v.getClass().getSimpleName());
            if (v == null) {
                p.putNull("value");
            } else if (v instanceof String) {
                p.put("value", (String) v);
            } else if (v instanceof Boolean) {
                p.put("value", (Boolean) v);
            } else if (v instanceof Byte || v instanceof Short
                       || v instanceof Integer || v instanceof Long) {
                p.put("value", ((Number) v).longValue());
            } else if (v instanceof Float || v instanceof Double) {
                p.put("value", ((Number) v).doubleValue());
            } else if (v instanceof byte[]) {
                p.put("value",
                      Base64.getEncoder().encodeToString((byte[]) v));
            } else {
                p.put("value", v.toString());
            }
        }
        return o;
    }

    /* ---------------------------------------------------------- produce */

    /*
     * One JSON object per line:
     *   "queue": "name"            (else --queue)
     *   "text": "..."              a TextMessage (the default, "" if no body)
     *   "bytes_b64": "..."         a BytesMessage with these bytes
     *   "correlation_id", "type" (JMSType), "reply_to" ("q" or
     *   "queue://q" or "topic://t"), "priority" (0-9),
     *   "persistent" (default true), "ttl_ms" (0: never expires),
     *   "properties": {"name": value}      a JSON string, boolean, integer
     *        (Integer if it fits, else Long) or number (Double) property,
     *        or {"name": {"type": "Short", "value": 3}} for an explicit type
     *        (String Boolean Byte Short Integer Long Float Double)
     */
    static int produce(Connection c, String defQueue) throws Exception {
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageProducer p = s.createProducer(null);
        BufferedReader in = new BufferedReader(
            new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isBlank()) {
                continue;
            }
            JsonNode j = JSON.readTree(line);
            String q = j.has("queue") ? j.get("queue").asText() : defQueue;
            if (q == null) {
                throw new IllegalArgumentException("no queue for " + line);
            }
            Message m;
            if (j.has("bytes_b64")) {
                BytesMessage b = s.createBytesMessage();
                b.writeBytes(Base64.getDecoder().decode(
                    j.get("bytes_b64").asText()));
                m = b;
            } else {
                m = s.createTextMessage(
                    j.has("text") ? j.get("text").asText() : "");
            }
            if (j.has("correlation_id")) {
                m.setJMSCorrelationID(j.get("correlation_id").asText());
            }
            if (j.has("type")) {
                m.setJMSType(j.get("type").asText());
            }
            if (j.has("reply_to")) {
                m.setJMSReplyTo(destination(j.get("reply_to").asText()));
            }
            JsonNode props = j.get("properties");
            if (props != null) {
                for (Iterator<Map.Entry<String, JsonNode>> it = props.fields();
                     it.hasNext();) {
                    Map.Entry<String, JsonNode> e = it.next();
                    setProperty(m, e.getKey(), e.getValue());
                }
            }
            int mode = j.path("persistent").asBoolean(true)
                ? DeliveryMode.PERSISTENT : DeliveryMode.NON_PERSISTENT;
            int prio = j.path("priority").asInt(Message.DEFAULT_PRIORITY);
            long ttl = j.path("ttl_ms").asLong(0);
            p.send(destination(q), m, mode, prio, ttl);
            ObjectNode o = JSON.createObjectNode();
            o.put("id", m.getJMSMessageID());
            o.put("timestamp", m.getJMSTimestamp());
            o.put("expiration", m.getJMSExpiration());
            o.put("queue", q);
            OUT.println(o.toString());
            OUT.flush();
        }
        p.close();
        s.close();
        return 0;
    }

    static void setProperty(Message m, String name, JsonNode v)
        throws JMSException
    {
        if (v.isObject()) {
            String t = v.path("type").asText();
            JsonNode x = v.get("value");
            switch (t) {
            case "String": m.setStringProperty(name, x.asText()); return;
            case "Boolean": m.setBooleanProperty(name, x.asBoolean()); return;
            case "Byte": m.setByteProperty(name, (byte) x.asInt()); return;
            case "Short": m.setShortProperty(name, (short) x.asInt()); return;
            case "Integer": m.setIntProperty(name, x.asInt()); return;
            case "Long": m.setLongProperty(name, x.asLong()); return;
            case "Float": m.setFloatProperty(name, (float) x.asDouble());
                return;
            case "Double": m.setDoubleProperty(name, x.asDouble()); return;
            default:
                throw new IllegalArgumentException(
                    "property " + name + ": unknown type " + t);
            }
        }
        if (v.isTextual()) {
            m.setStringProperty(name, v.asText());
        } else if (v.isBoolean()) {
            m.setBooleanProperty(name, v.asBoolean());
        } else if (v.isInt()) {
            m.setIntProperty(name, v.asInt());
        } else if (v.isIntegralNumber()) {
            m.setLongProperty(name, v.asLong());
        } else if (v.isNumber()) {
            m.setDoubleProperty(name, v.asDouble());
        } else {
            throw new IllegalArgumentException(
                "property " + name + ": not a string, boolean or number");
        }
    }

    /* ----------------------------------------------------------- browse */

    static void browse(Connection c, String queue, boolean print,
                       String selector) throws JMSException
    {
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Queue q = s.createQueue(queue);
        QueueBrowser b = s.createBrowser(q, selector);
        int n = 0;
        for (Enumeration<?> e = b.getEnumeration(); e.hasMoreElements();) {
            Message m = (Message) e.nextElement();
            if (print) {
                OUT.println(describe(m).toString());
            }
            n++;
        }
        b.close();
        s.close();
        ObjectNode o = JSON.createObjectNode();
        o.put("queue", queue);
        o.put("count", n);
        OUT.println(o.toString());
    }

    /* ------------------------------------------------------------ stats */

    static void stats(Connection c, String queue) throws JMSException {
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Queue reply = s.createTemporaryQueue();
        MessageConsumer mc = s.createConsumer(reply);
        MessageProducer p = s.createProducer(
            s.createQueue("ActiveMQ.Statistics.Destination." + queue));
        Message req = s.createMessage();
        req.setJMSReplyTo(reply);
        p.send(req);
        /* the plugin answers once per matching destination, and not at
         * all for a queue the broker does not have */
        Message m = mc.receive(3000);
        if (m == null) {
            ObjectNode o = JSON.createObjectNode();
            o.put("destinationName", "queue://" + queue);
            o.put("size", 0);
            o.put("exists", false);
            OUT.println(o.toString());
            p.close();
            mc.close();
            s.close();
            return;
        }
        if (!(m instanceof MapMessage)) {
            throw new JMSException("statistics answer is not a MapMessage");
        }
        MapMessage mm = (MapMessage) m;
        ObjectNode o = JSON.createObjectNode();
        for (Enumeration<?> e = mm.getMapNames(); e.hasMoreElements();) {
            String k = (String) e.nextElement();
            Object v = mm.getObject(k);
            if (v instanceof Number && !(v instanceof Double
                                         || v instanceof Float)) {
                o.put(k, ((Number) v).longValue());
            } else if (v instanceof Number) {
                o.put(k, ((Number) v).doubleValue());
            } else {
                o.put(k, String.valueOf(v));
            }
        }
        OUT.println(o.toString());
        p.close();
        mc.close();
        s.close();
    }
}
