"""A small fake AMQP 0-9-1 broker for the cases a real RabbitMQ will not
produce on demand: frames sent one byte at a time, a peer that never
answers, confirms that come late or never. It speaks just enough of the
protocol for a publisher with confirms, using pika's own codec.

It can also play a hostile broker (or whoever sits between): any
frame_max in connection.tune, raw bytes after the handshake or in answer to
a publish, and basic.return for the mandatory messages it is told are
unroutable (echoing the published content header byte for byte, as
RabbitMQ does, then the ack, in RabbitMQ's order)."""

import socket
import struct
import tempfile
import threading
import time

import pika.frame
import pika.spec


class FakeAmqp:
    def __init__(self, trickle=False, silent=False, ack_delay=0.0,
                 never_ack=False, nack=False, heartbeat=0, stall=False,
                 batch_ack=0, tune_first=False, frame_max=4096,
                 channel_max=0, unroutable=(), after_ready=None,
                 on_publish=None, start=None, flood=0.0):
        self.trickle = trickle          # every frame one byte at a time
        self.silent = silent            # accept and read, never answer
        self.ack_delay = ack_delay
        self.never_ack = never_ack
        self.nack = nack
        self.heartbeat = heartbeat      # offered in tune; never sent
        self.stall = stall              # stop reading once confirms are on
        self.batch_ack = batch_ack      # one ack "multiple" per N messages
        self.tune_first = tune_first    # connection.tune before start
        self.frame_max = frame_max      # offered in connection.tune
        self.channel_max = channel_max
        # routing keys of mandatory messages to return as unroutable
        self.unroutable = set(unroutable)
        self.after_ready = after_ready  # raw bytes after confirm.select-ok
        # on_publish(fake, tag, method, props, body, raw_header) -> raw
        # bytes sent instead of the usual answer (None: the usual answer)
        self.on_publish = on_publish
        self.start = start              # raw bytes instead of start
        self.flood = flood              # seconds of heartbeats after ready
        self.flooded = 0                # bytes of them sent
        self.max_frame = 0              # largest frame received, in bytes
        self.returned = []              # delivery tags returned
        self.heartbeats = 0             # heartbeat frames received
        self.answer_heartbeats = False  # send one back for each
        self.published = []             # (method, properties, body)
        self.connections = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.05)
        self.stopping = False
        self.clients = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.accept_loop, daemon=True)
        self.thread.start()

    def close(self):
        """Stop listening and drop every connection, as a dying broker
        would."""
        self.stopping = True
        self.thread.join(5)
        self.sock.close()
        for c in self.clients:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def accept_loop(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self.connections += 1
            self.clients.append(conn)
            threading.Thread(target=self.serve, args=(conn,),
                             daemon=True).start()

    def send(self, conn, frame):
        data = frame.marshal()
        if self.trickle:
            for i in range(len(data)):
                conn.sendall(data[i:i + 1])
                time.sleep(0.002)
        else:
            conn.sendall(data)

    def serve(self, conn):
        buf = b""
        try:
            header = b""
            while len(header) < 8:
                chunk = conn.recv(8 - len(header))
                if not chunk:
                    return
                header += chunk
            assert header == b"AMQP\x00\x00\x09\x01", header
            if self.silent:
                while conn.recv(65536):
                    pass
                return
            if self.tune_first:
                self.send(conn, pika.frame.Method(0, pika.spec.Connection.Tune(
                    channel_max=self.channel_max, frame_max=self.frame_max,
                    heartbeat=0)))
            if self.start is not None:
                self.send_raw(conn, self.start)
            else:
                self.send(conn, pika.frame.Method(
                    0, pika.spec.Connection.Start(
                        server_properties={"product": "fake"},
                        mechanisms="PLAIN", locales="en_US")))
            pending = None
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while True:
                    consumed, frame = pika.frame.decode_frame(buf)
                    if frame is None:
                        break
                    self.max_frame = max(self.max_frame, consumed)
                    raw, buf = buf[:consumed], buf[consumed:]
                    pending = self.on_frame(conn, frame, pending, raw)
        except (OSError, AssertionError):
            return
        finally:
            conn.close()

    def send_raw(self, conn, data):
        if self.trickle:
            for i in range(len(data)):
                conn.sendall(data[i:i + 1])
                time.sleep(0.002)
        else:
            conn.sendall(data)

    def on_frame(self, conn, frame, pending, raw=b""):
        if isinstance(frame, pika.frame.Heartbeat):
            self.heartbeats += 1
            if self.answer_heartbeats:
                self.send(conn, pika.frame.Heartbeat())
            return pending
        if isinstance(frame, pika.frame.Method):
            m = frame.method
            if isinstance(m, pika.spec.Connection.StartOk):
                self.send(conn, pika.frame.Method(0, pika.spec.Connection.Tune(
                    channel_max=self.channel_max, frame_max=self.frame_max,
                    heartbeat=self.heartbeat)))
            elif isinstance(m, pika.spec.Connection.Open):
                self.send(conn, pika.frame.Method(
                    0, pika.spec.Connection.OpenOk()))
            elif isinstance(m, pika.spec.Channel.Open):
                self.send(conn, pika.frame.Method(
                    frame.channel_number, pika.spec.Channel.OpenOk()))
            elif isinstance(m, pika.spec.Confirm.Select):
                self.tag = 0
                self.send(conn, pika.frame.Method(
                    frame.channel_number, pika.spec.Confirm.SelectOk()))
                if self.after_ready:
                    self.send_raw(conn, self.after_ready)
                if self.flood:
                    self.flood_heartbeats(conn)
                if self.stall:
                    while not self.stopping:    # TCP backpressure
                        time.sleep(0.05)
            elif isinstance(m, pika.spec.Basic.Publish):
                return [m, None, b"", 0, b""]
            return pending
        if isinstance(frame, pika.frame.Header):
            pending[1] = frame.properties
            pending[3] = frame.body_size
            pending[4] = raw
            if frame.body_size == 0:
                self.published_one(conn, pending)
                return None
            return pending
        if isinstance(frame, pika.frame.Body):
            pending[2] += frame.fragment
            if len(pending[2]) >= pending[3]:
                self.published_one(conn, pending)
                return None
        return pending

    def published_one(self, conn, pending):
        with self.lock:
            self.published.append(tuple(pending[:3]))
        self.tag += 1
        tag = self.tag
        method, props, body, _, raw_header = pending
        if self.on_publish is not None:
            data = self.on_publish(self, tag, method, props, body, raw_header)
            if data is not None:
                self.send_raw(conn, data)
                return
        if method.mandatory and method.routing_key in self.unroutable:
            # RabbitMQ: basic.return, the original content header and
            # body, then the basic.ack of the same message
            self.returned.append(tag)
            self.send_raw(conn, self.basic_return(method, raw_header, body))
        if self.never_ack:
            return
        if self.batch_ack:
            if tag % self.batch_ack:
                return
            self.send(conn, pika.frame.Method(1, pika.spec.Basic.Ack(
                delivery_tag=tag, multiple=True)))
            return
        reply = (pika.spec.Basic.Nack(delivery_tag=tag) if self.nack
                 else pika.spec.Basic.Ack(delivery_tag=tag))

        def later():
            time.sleep(self.ack_delay)
            try:
                self.send(conn, pika.frame.Method(1, reply))
            except OSError:
                pass

        if self.ack_delay:
            threading.Thread(target=later, daemon=True).start()
        else:
            self.send(conn, pika.frame.Method(1, reply))

    def flood_heartbeats(self, conn):
        """Heartbeat frames as fast as the kernel takes them (sendfile from
        a file of them: a Python loop is slower than the reader)."""
        with tempfile.TemporaryFile() as f:
            f.write((struct.pack(">BHL", 8, 0, 0) + b"\xce") * (1 << 21))
            f.flush()
            size = f.tell()
            end = time.monotonic() + self.flood
            while time.monotonic() < end and not self.stopping:
                self.flooded += conn.sendfile(f, 0, size)

    def basic_return(self, method, raw_header, body, reply_code=312,
                     reply_text="NO_ROUTE"):
        """basic.return of a message, its content header as published (raw
        bytes of the header frame) and its body split by frame_max."""
        data = pika.frame.Method(1, pika.spec.Basic.Return(
            reply_code=reply_code, reply_text=reply_text,
            exchange=method.exchange,
            routing_key=method.routing_key)).marshal()
        data += raw_header
        chunk = (self.frame_max or 131072) - 8
        for i in range(0, len(body), chunk):
            data += frame(3, 1, body[i:i + chunk])
        return data


def frame(kind, channel, payload):
    """A raw frame: type, channel, size, payload, frame-end."""
    return struct.pack(">BHL", kind, channel, len(payload)) + payload + b"\xce"


def method_frame(channel, method):
    return pika.frame.Method(channel, method).marshal()
