"""A scripted STOMP 1.2 broker for the error paths a real broker will not
take on demand: ERROR frames, receipts that never come, garbage, huge
headers, frames without their NUL. It parses what the gateway sends (and
checks it is well-formed STOMP 1.2), records every frame, and answers by a
script: a function of (broker, frame) that returns the bytes to send back,
or None (to say nothing), or FakeStomp.CLOSE.
"""

import socket
import threading


def unescape(s):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            nxt = s[i + 1]
            out.append({"n": "\n", "r": "\r", "c": ":", "\\": "\\"}[nxt])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def escape(s):
    return (s.replace("\\", "\\\\").replace(":", "\\c")
            .replace("\n", "\\n").replace("\r", "\\r"))


def frame(command, headers=(), body=b"", escaped=True):
    head = command + "\n"
    for k, v in headers:
        if escaped:
            k, v = escape(k), escape(v)
        head += "%s:%s\n" % (k, v)
    return head.encode() + b"\n" + body + b"\0"


class Frame:
    def __init__(self, command, headers, body):
        self.command = command
        self.headers = headers          # a list of (name, value)
        self.body = body

    def get(self, name, default=None):
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def __repr__(self):
        return "Frame(%r, %r, %r)" % (self.command, self.headers,
                                      self.body[:40])


def receipt(f):
    return frame("RECEIPT", [("receipt-id", f.get("receipt"))])


def ok_script(broker, f):
    if f.command == "SEND":
        return receipt(f)
    return None


class FakeStomp:
    CLOSE = object()

    def __init__(self, script=ok_script, heart_beat="0,0",
                 connected=None):
        self.script = script
        self.heart_beat = heart_beat
        self.connected = connected      # bytes instead of CONNECTED
        self.frames = []
        self.connects = 0
        self.errors = []                # malformed input from the gateway
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.closing = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def sends(self):
        with self.lock:
            return [f for f in self.frames if f.command == "SEND"]

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        buf = b""
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    return
                buf += data
                while True:
                    buf = buf.lstrip(b"\r\n")       # heart-beats
                    f, buf = self._parse(buf)
                    if f is None:
                        break
                    with self.lock:
                        self.frames.append(f)
                    out = self._answer(f)
                    if out is FakeStomp.CLOSE:
                        c.close()
                        return
                    if out:
                        c.sendall(out)
        except OSError:
            return

    def _answer(self, f):
        if f.command == "CONNECT":
            self.connects += 1
            if self.connected is not None:
                return self.connected
            return frame("CONNECTED", [("version", "1.2"),
                                       ("heart-beat", self.heart_beat),
                                       ("server", "fake/1")],
                         escaped=False)
        return self.script(self, f)

    def _parse(self, buf):
        end = buf.find(b"\n\n")
        if end < 0:
            return None, buf
        head = buf[:end].decode()
        lines = head.split("\n")
        command = lines[0]
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if command != "CONNECT":
                k, v = unescape(k), unescape(v)
            headers.append((k, v))
        f = Frame(command, headers, b"")
        length = f.get("content-length")
        start = end + 2
        if length is None:
            if command == "SEND":
                self.errors.append("SEND without content-length")
            nul = buf.find(b"\0", start)
            if nul < 0:
                return None, buf
            f.body = buf[start:nul]
            return f, buf[nul + 1:]
        n = int(length)
        if len(buf) < start + n + 1:
            return None, buf
        f.body = buf[start:start + n]
        if buf[start + n:start + n + 1] != b"\0":
            self.errors.append("no NUL after the body")
        return f, buf[start + n + 1:]

    def drop_all(self):
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        self.conns = []

    def close(self):
        self.closing = True
        try:
            self.sock.close()
        except OSError:
            pass
        self.drop_all()
