"""JMS test infrastructure (issue 16): Debian's ActiveMQ 5.17 as a private,
loopback-only broker; a Java JMS tool (t/jms/JmsTool.java) that consumes,
produces, browses and counts through Debian's OpenWire client; a raw STOMP
client; and a RabbitMQ with its STOMP plugin on.

    from activemq_helpers import activemq, rabbitmq_stomp   # the fixtures

activemq (module-scoped): an ActiveMQ with everything in one temporary
directory: its activemq.xml, log4j.properties, KahaDB data and log. No
systemd, nothing in /etc or /var. Listens on 127.0.0.1 only: OpenWire
(.openwire_port, .openwire_url) and STOMP over NIO (.stomp_port), both on
free random ports; no web console, no JMX, a 64 MB broker memory limit and a
192 MB heap; persistence on (KahaDB, journal synced). .stop() (SIGTERM, the
broker's clean shutdown), .kill() (SIGKILL), .start() again on the same data
and ports; at the end of the module it is stopped by its PID.

Java tool wrappers, all on the fixture object: .produce(), .consume(),
.browse(), .browse_messages(), .stats(), .queue_size(), .dlq_count(),
.start_consume() / .finish_consume() (a consumer running in the background);
.problems() reads the broker's log for WARN/ERROR lines.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from conftest import BUILD, ROOT, RabbitServer, free_port, stop_pid, wait_port

ACTIVEMQ_HOME = "/usr/share/activemq"
ACTIVEMQ_JAR = os.path.join(ACTIVEMQ_HOME, "bin", "activemq.jar")
JAVA = shutil.which("java") or "/usr/bin/java"
JAVAC = shutil.which("javac") or "/usr/bin/javac"
JMS_SRC = os.path.join(ROOT, "t", "jms")
# the client side: Debian's OpenWire client and what it needs (packages
# libactivemq-java, libgeronimo-jms-1.1-spec-java and their dependencies
# libgeronimo-j2ee-management-1.1-spec-java, libhawtbuf-java,
# libslf4j-java, libjackson2-*-java)
JAVA_LIB = "/usr/share/java"
CLIENT_JARS = ["activemq-client.jar", "geronimo-jms_1.1_spec.jar",
               "geronimo-j2ee-management-1.1-spec.jar", "hawtbuf.jar",
               "slf4j-api.jar", "slf4j-nop.jar", "jackson-core.jar",
               "jackson-databind.jar", "jackson-annotations.jar"]
# a fast-starting, small JVM (the tests start many short-lived ones)
JVM_SMALL = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-XX:-UsePerfData", "-Xss512k"]
# the module openings of /usr/bin/activemq's invokeJar (Java > 8)
BROKER_JVM_OPENS = [
    "--add-reads=java.xml=java.logging",
    "--add-opens", "java.base/java.security=ALL-UNNAMED",
    "--add-opens", "java.base/java.net=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang=ALL-UNNAMED",
    "--add-opens", "java.base/java.util=ALL-UNNAMED",
    "--add-opens", "java.naming/javax.naming.spi=ALL-UNNAMED",
    "--add-opens", "java.rmi/sun.rmi.transport.tcp=ALL-UNNAMED",
    "--add-opens", "java.base/java.util.concurrent=ALL-UNNAMED",
    "--add-opens", "java.base/java.util.concurrent.atomic=ALL-UNNAMED",
]

ACTIVEMQ_XML = """<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans
    http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
    http://activemq.apache.org/schema/core
    http://activemq.apache.org/schema/core/activemq-core.xsd">
  <!-- ngx_zmq test broker: written by t/activemq_helpers.py -->
  <broker xmlns="http://activemq.apache.org/schema/core"
          brokerName="zmqtest" useJmx="false" persistent="true"
          dataDirectory="{data}" tmpDataDirectory="{data}/tmp_storage"
          schedulerSupport="false" useShutdownHook="true">
    <destinationPolicy>
      <policyMap><policyEntries>
        <!-- a QueueBrowser sees up to 400 messages by default -->
        <policyEntry queue="&gt;" maxBrowsePageSize="{browse_max}"
                     maxPageSize="{browse_max}"/>
      </policyEntries></policyMap>
    </destinationPolicy>
    <plugins>
      <!-- queue depth without JMX: ActiveMQ.Statistics.Destination.<q> -->
      <statisticsBrokerPlugin/>
    </plugins>
    <persistenceAdapter>
      <kahaDB directory="{data}/kahadb" journalMaxFileLength="8mb"/>
    </persistenceAdapter>
    <systemUsage><systemUsage>
      <memoryUsage><memoryUsage limit="{memory_mb} mb"/></memoryUsage>
      <storeUsage><storeUsage limit="1 gb"/></storeUsage>
      <tempUsage><tempUsage limit="256 mb"/></tempUsage>
    </systemUsage></systemUsage>
    <transportConnectors>
      <transportConnector name="openwire"
          uri="tcp://127.0.0.1:{openwire}?maximumConnections=1000"/>
      <transportConnector name="stomp"
          uri="stomp+nio://127.0.0.1:{stomp}{stomp_options}"/>
    </transportConnectors>
  </broker>
</beans>
"""

# Debian's broker logs through log4j 1.2 (slf4j-log4j12 is on its class
# path), not the log4j2.properties it ships
LOG4J_PROPERTIES = """log4j.rootLogger=INFO, logfile
log4j.logger.org.apache.activemq.spring=WARN
log4j.logger.org.springframework=WARN
log4j.logger.org.apache.xbean=WARN
log4j.appender.logfile=org.apache.log4j.FileAppender
log4j.appender.logfile.file={log}
log4j.appender.logfile.append=true
log4j.appender.logfile.layout=org.apache.log4j.PatternLayout
log4j.appender.logfile.layout.ConversionPattern=%d | %-5p | %m | %c | %t%n
"""


def activemq_installed():
    return (os.path.isfile(ACTIVEMQ_JAR) and os.access(JAVA, os.X_OK)
            and os.access(JAVAC, os.X_OK)
            and all(os.path.isfile(os.path.join(JAVA_LIB, j))
                    for j in CLIENT_JARS))


def client_classpath(extra=()):
    return ":".join(list(extra) + [os.path.join(JAVA_LIB, j)
                                   for j in CLIENT_JARS])


def jms_classes():
    """Compiles t/jms/*.java into BUILD/jms/<hash of the sources>/ (once:
    the directory appears by an atomic rename, so concurrent test runs
    share it) and returns that directory."""
    sources = sorted(f for f in os.listdir(JMS_SRC) if f.endswith(".java"))
    h = hashlib.sha256()
    for name in sources:
        h.update(name.encode() + b"\0")
        with open(os.path.join(JMS_SRC, name), "rb") as f:
            h.update(f.read() + b"\0")
    out = os.path.join(BUILD, "jms", h.hexdigest()[:16])
    if os.path.isdir(out):
        return out
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="javac.", dir=os.path.dirname(out))
    r = subprocess.run([JAVAC, "-Xlint:all", "-Werror", "-encoding", "UTF-8",
                        "-d", tmp, "-cp", client_classpath()]
                       + [os.path.join(JMS_SRC, s) for s in sources],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError("javac t/jms failed:\n" + r.stdout + r.stderr)
    try:
        os.rename(tmp, out)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)     # another run was first
    return out


def unique_queue(prefix="q"):
    """A queue name no other test of the module uses."""
    return "%s.%s" % (prefix, uuid.uuid4().hex[:12])


def decode_message(m):
    """A JmsTool JSON line, with "body_bytes" added: the body as bytes
    (UTF-8 of a TextMessage's text, the bytes of a BytesMessage)."""
    if m.get("body_encoding") == "base64":
        m["body_bytes"] = base64.b64decode(m["body"])
    elif m.get("body") is not None:
        m["body_bytes"] = m["body"].encode("utf-8")
    else:
        m["body_bytes"] = None
    return m


class JmsToolError(RuntimeError):
    pass


# ------------------------------------------------------------------ ActiveMQ

class ActiveMQ:
    """One private broker. memory_mb: the broker's memory limit (producer
    flow control starts there); stomp_options: a query string for the STOMP
    connector's URI (e.g. "?transport.hbGracePeriodMultiplier=1.5")."""

    def __init__(self, tmp, memory_mb=64, heap_mb=192, stomp_options="",
                 browse_max=100000):
        if not activemq_installed():
            pytest.skip("activemq, libactivemq-java or a JDK is not "
                        "installed (make deps-test)")
        self.dir = str(tmp)
        self.conf = os.path.join(self.dir, "conf")
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.data, "activemq.log")
        self.out_path = os.path.join(self.dir, "broker.out")
        for d in (self.conf, self.data, os.path.join(self.dir, "tmp")):
            os.makedirs(d, exist_ok=True)
        self.openwire_port = free_port()
        self.stomp_port = free_port()
        self.heap_mb = heap_mb
        with open(os.path.join(self.conf, "activemq.xml"), "w") as f:
            f.write(ACTIVEMQ_XML.format(
                data=self.data, openwire=self.openwire_port,
                stomp=self.stomp_port, stomp_options=stomp_options,
                memory_mb=memory_mb, browse_max=browse_max))
        with open(os.path.join(self.conf, "log4j.properties"), "w") as f:
            f.write(LOG4J_PROPERTIES.format(log=self.log_path))
        self.classes = jms_classes()
        self.proc = None
        self.starts = 0
        self.start()

    @property
    def openwire_url(self):
        return "tcp://127.0.0.1:%d" % self.openwire_port

    def command(self):
        return ([JAVA, "-Xms64m", "-Xmx%dm" % self.heap_mb] + JVM_SMALL
                + BROKER_JVM_OPENS + [
                    "-Djava.io.tmpdir=" + os.path.join(self.dir, "tmp"),
                    "-Dlog4j.configuration=file:" +
                    os.path.join(self.conf, "log4j.properties"),
                    "-Dactivemq.classpath=" + self.conf,
                    "-Dactivemq.home=" + ACTIVEMQ_HOME,
                    "-Dactivemq.base=" + self.dir,
                    "-Dactivemq.conf=" + self.conf,
                    "-Dactivemq.data=" + self.data,
                    "-jar", ACTIVEMQ_JAR, "start",
                    "xbean:file:" + os.path.join(self.conf, "activemq.xml")])

    def start(self, timeout=90):
        """Starts the broker (again: same configuration, data and ports)
        and waits until both connectors accept."""
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        with open(self.out_path, "ab") as out:
            out.write(b"=== start %d\n" % self.starts)
            out.flush()
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, cwd=self.dir,
                start_new_session=True)
        # wait for the broker's own "started" line, not by connecting:
        # a probe that connects and closes makes the broker log a WARN
        deadline = time.monotonic() + timeout
        while len(self.STARTED.findall(self._read(self.log_path))) \
                < self.starts:
            if self.proc.poll() is not None:
                raise RuntimeError("activemq exited with %s:\n%s" % (
                    self.proc.returncode, self.log()[-3000:]))
            if time.monotonic() > deadline:
                raise TimeoutError("activemq did not start in %.0fs"
                                   % timeout)
            time.sleep(0.1)

    STARTED = re.compile(r"\| INFO +\| Apache ActiveMQ \S+ \(zmqtest, "
                         r"\S+\) started \|")

    @staticmethod
    def _read(path):
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30):
        """SIGTERM: the broker shuts down cleanly (its shutdown hook)."""
        if self.proc is None:
            return
        stop_pid(self.proc, signal.SIGTERM, timeout)

    def kill(self):
        """SIGKILL, as a crash: KahaDB recovers on the next start."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def restart(self):
        self.stop()
        self.start()

    # ---------------------------------------------------------- its log

    def log(self):
        """The broker's log (log4j) and its stdout/stderr, all starts."""
        return self._read(self.log_path) + self._read(self.out_path)

    PROBLEM = re.compile(r"\| (WARN|ERROR|FATAL) +\||^Exception in thread|"
                         r"OutOfMemoryError|^ERROR:|SEVERE", re.M)

    def problems(self, ignore=()):
        """Lines of the broker's log at WARN or worse, and JVM errors,
        less those matching a regular expression in ignore."""
        bad = []
        for line in self.log().splitlines():
            if self.PROBLEM.search(line) and not any(
                    re.search(i, line) for i in ignore):
                bad.append(line)
        return bad

    # ---------------------------------------------------- the Java tool

    def tool_command(self, *args):
        return ([JAVA, "-Xmx96m"] + JVM_SMALL
                + ["-cp", client_classpath([self.classes]), "JmsTool"]
                + [args[0], "--url", self.openwire_url] + list(args[1:]))

    def tool(self, *args, input=None, timeout=120, check=True):
        r = subprocess.run(self.tool_command(*args), input=input,
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise JmsToolError("JmsTool %s: exit %d: %s" % (
                " ".join(args), r.returncode, r.stderr.strip()))
        return r

    def produce(self, messages, queue=None, timeout=120):
        """Sends through JMS: messages is a list of dicts (the keys of
        JmsTool.produce: "text" or "bytes_b64" (or "bytes": raw bytes),
        "correlation_id", "type", "reply_to", "priority", "persistent",
        "ttl_ms", "properties", "queue"). Returns one dict per message:
        {"id": JMSMessageID, "timestamp", "expiration", "queue"}."""
        lines = []
        for m in messages:
            m = dict(m)
            if "bytes" in m:
                m["bytes_b64"] = base64.b64encode(m.pop("bytes")).decode()
            lines.append(json.dumps(m))
        args = ["produce"] + (["--queue", queue] if queue else [])
        r = self.tool(*args, input="\n".join(lines) + "\n", timeout=timeout)
        return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]

    def consume(self, queue, count=0, idle=3.0, timeout=60.0, selector=None,
                ack=True):
        """Receives (and acknowledges, unless ack=False) up to count
        messages (0: all), stopping after idle seconds without one or
        timeout seconds in all. Returns the messages as dicts (see
        decode_message; keys: class, body, body_encoding, body_bytes,
        JMSMessageID, JMSCorrelationID, JMSPriority, JMSExpiration, JMSType,
        JMSReplyTo ("queue://x"), JMSDestination, JMSDeliveryMode (1 non-
        persistent, 2 persistent), JMSTimestamp, JMSRedelivered,
        properties: {name: {"type": "String"|"Integer"|..., "value": v}})."""
        r = self.tool(*self._consume_args(queue, count, idle, timeout,
                                          selector, ack),
                      timeout=timeout + 60)
        return [decode_message(json.loads(x))
                for x in r.stdout.splitlines() if x.strip()]

    @staticmethod
    def _consume_args(queue, count, idle, timeout, selector, ack):
        args = ["consume", "--queue", queue, "--count", str(count),
                "--idle", str(idle), "--timeout", str(timeout)]
        if selector:
            args += ["--selector", selector]
        if not ack:
            args.append("--no-ack")
        return args

    def start_consume(self, queue, count=0, idle=3.0, timeout=300.0,
                      selector=None, ack=True, failover=False):
        """A consumer running in the background (e.g. during a load test);
        with failover=True its URL is failover:(tcp://...) so it rides out
        a broker restart. Collect it with finish_consume()."""
        cmd = self.tool_command(*self._consume_args(queue, count, idle,
                                                    timeout, selector, ack))
        if failover:
            i = cmd.index("--url")
            cmd[i + 1] = ("failover:(%s)?initialReconnectDelay=100"
                          "&maxReconnectDelay=1000" % self.openwire_url)
        out = tempfile.TemporaryFile(dir=self.dir)
        err = tempfile.TemporaryFile(dir=self.dir)
        p = subprocess.Popen(cmd, stdout=out, stderr=err,
                             stdin=subprocess.DEVNULL)
        p.zmq_out, p.zmq_err, p.zmq_timeout = out, err, timeout
        return p

    def finish_consume(self, p, check=True):
        try:
            p.wait(p.zmq_timeout + 60)
        except subprocess.TimeoutExpired:
            stop_pid(p, signal.SIGKILL)
            raise
        p.zmq_out.seek(0)
        p.zmq_err.seek(0)
        out = p.zmq_out.read().decode()
        err = p.zmq_err.read().decode()
        p.zmq_out.close()
        p.zmq_err.close()
        if check and p.returncode != 0:
            raise JmsToolError("JmsTool consume: exit %d: %s"
                               % (p.returncode, err.strip()))
        return [decode_message(json.loads(x))
                for x in out.splitlines() if x.strip()]

    def browse_messages(self, queue, selector=None):
        """The messages in a queue, left there (a QueueBrowser)."""
        args = ["browse", "--queue", queue, "--print"]
        if selector:
            args += ["--selector", selector]
        lines = [json.loads(x)
                 for x in self.tool(*args).stdout.splitlines() if x.strip()]
        return [decode_message(m) for m in lines[:-1]]

    def browse(self, queue, selector=None):
        """How many messages a QueueBrowser sees in a queue."""
        args = ["browse", "--queue", queue]
        if selector:
            args += ["--selector", selector]
        lines = self.tool(*args).stdout.splitlines()
        return json.loads(lines[-1])["count"]

    def stats(self, queue):
        """The broker's statistics of a queue (statisticsBrokerPlugin):
        size (messages in it now), enqueueCount, dequeueCount,
        inflightCount, expiredCount, consumerCount, producerCount, ...;
        {"size": 0, "exists": False} for a queue the broker does not
        have."""
        lines = self.tool("stats", "--queue", queue).stdout.splitlines()
        return json.loads(lines[-1])

    def queue_size(self, queue):
        return self.stats(queue)["size"]

    def dlq_count(self, dlq="ActiveMQ.DLQ"):
        """Messages in a dead-letter queue (ActiveMQ's shared one by
        default)."""
        return self.browse(dlq)


@pytest.fixture(scope="module")
def activemq(tmp_path_factory):
    broker = ActiveMQ(tmp_path_factory.mktemp("activemq"))
    yield broker
    broker.stop()


# ------------------------------------------------------------ raw STOMP

def stomp_escape(value):
    """A STOMP 1.2 header value, escaped."""
    return (value.replace("\\", "\\\\").replace("\r", "\\r")
            .replace("\n", "\\n").replace(":", "\\c"))


def stomp_unescape(value):
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            out.append({"\\": "\\", "r": "\r", "n": "\n",
                        "c": ":"}.get(value[i + 1], "\\" + value[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def stomp_frame(command, headers=(), body=b"", escape=True):
    """The bytes of a frame. headers: a list of (name, value) pairs (or a
    dict), sent as given, in order: no content-length is added."""
    if isinstance(headers, dict):
        headers = list(headers.items())
    if isinstance(body, str):
        body = body.encode("utf-8")
    lines = [command]
    for k, v in headers:
        v = str(v)
        lines.append("%s:%s" % (stomp_escape(k) if escape else k,
                                stomp_escape(v) if escape else v))
    return ("\n".join(lines) + "\n\n").encode("utf-8") + body + b"\0"


class StompFrame:
    def __init__(self, command, headers, body):
        self.command = command
        self.headers = headers      # dict: the first of repeated headers
        self.header_list = []       # every (name, value), in order
        self.body = body

    def __repr__(self):
        return "StompFrame(%r, %r, %r)" % (self.command, self.headers,
                                           self.body[:200])


class RawStomp:
    """A minimal STOMP 1.2 client on a raw socket, for tests: it sends
    exactly the bytes it is given (stomp_frame) and parses what comes
    back (content-length bodies, heart-beat newlines skipped)."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.timeout = timeout

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, command, headers=(), body=b"", escape=True):
        self.send_raw(stomp_frame(command, headers, body, escape))

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no STOMP frame in time")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("STOMP connection closed by the broker")
        self.buf += data

    def read_frame(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            self.buf = self.buf.lstrip(b"\r\n")       # heart-beats
            end = self.buf.find(b"\n\n")
            if end >= 0:
                break
            self._fill(deadline)
        head = self.buf[:end].decode("utf-8").split("\n")
        command = head[0].rstrip("\r")
        headers, hlist = {}, []
        for line in head[1:]:
            k, _, v = line.rstrip("\r").partition(":")
            if command != "CONNECTED":
                k, v = stomp_unescape(k), stomp_unescape(v)
            hlist.append((k, v))
            headers.setdefault(k, v)
        start = end + 2
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < start + n + 1:
                self._fill(deadline)
            body = self.buf[start:start + n]
            assert self.buf[start + n:start + n + 1] == b"\0", "no NUL"
            self.buf = self.buf[start + n + 1:]
        else:
            while self.buf.find(b"\0", start) < 0:
                self._fill(deadline)
            nul = self.buf.find(b"\0", start)
            body = self.buf[start:nul]
            self.buf = self.buf[nul + 1:]
        f = StompFrame(command, headers, body)
        f.header_list = hlist
        return f

    def connect(self, login=None, passcode=None, vhost="/",
                heart_beat="0,0", version="1.2"):
        h = [("accept-version", version), ("host", vhost),
             ("heart-beat", heart_beat)]
        if login is not None:
            h += [("login", login), ("passcode", passcode)]
        self.send_frame("CONNECT", h)
        f = self.read_frame()
        if f.command != "CONNECTED":
            raise ConnectionError("STOMP CONNECT refused: %r" % (f,))
        return f

    def send(self, destination, body=b"", headers=(), receipt=True,
             content_length=True):
        """SEND with a receipt (returns the RECEIPT or ERROR frame) or
        without (returns None). content_length: add one for the body."""
        if isinstance(body, str):
            body = body.encode("utf-8")
        h = [("destination", destination)] + list(
            headers.items() if isinstance(headers, dict) else headers)
        if content_length:
            h.append(("content-length", str(len(body))))
        rid = None
        if receipt:
            rid = "r-" + uuid.uuid4().hex[:8]
            h.append(("receipt", rid))
        self.send_frame("SEND", h, body)
        if not receipt:
            return None
        f = self.read_frame()
        if f.command == "RECEIPT":
            assert f.headers.get("receipt-id") == rid, f
        return f

    def disconnect(self):
        rid = "bye-" + uuid.uuid4().hex[:6]
        self.send_frame("DISCONNECT", [("receipt", rid)])
        try:
            return self.read_frame(timeout=5)
        finally:
            self.close()


# --------------------------------------------------- RabbitMQ with STOMP

class RabbitStompServer(RabbitServer):
    """conftest's RabbitServer with Debian's rabbitmq_stomp plugin on: the
    plugin named in the node's private enabled_plugins file (what
    rabbitmq-plugins enable --offline writes) and its listener in the
    private rabbitmq.conf, stomp.listeners.tcp.1 = 127.0.0.1:<free port>,
    before the node starts. AMQP on .port as usual (pika checks)."""

    def __init__(self, tmp):
        self.stomp_port = free_port()
        self._stomp_configured = False
        super().__init__(tmp)

    def start(self):
        if not self._stomp_configured:
            with open(self.env["RABBITMQ_CONFIG_FILE"], "a") as f:
                f.write("stomp.listeners.tcp.1 = 127.0.0.1:%d\n"
                        % self.stomp_port)
            with open(self.env["RABBITMQ_ENABLED_PLUGINS_FILE"], "w") as f:
                f.write("[rabbitmq_stomp].\n")
            self._stomp_configured = True
        super().start()
        wait_port(self.stomp_port, 60, self.proc)


@pytest.fixture(scope="module")
def rabbitmq_stomp(tmp_path_factory):
    """A RabbitMQ of its own (module-scoped, not the session's rabbitmq)
    with the STOMP plugin listening on 127.0.0.1:.stomp_port; login
    guest/guest; /queue/<name> is the AMQP queue <name>."""
    server = RabbitStompServer(str(tmp_path_factory.mktemp("rabbitstomp")))
    yield server
    server.close()
