"""A raw HTTP/2 client for the attack cases of spec/h2_limits_spec.lua: it
writes whatever frames a case asks for (h2's state machine would refuse
most of them) and reads the server's frames back. HPACK from python3-hpack
(a dependency of python3-h2)."""
import socket
import struct
import time

import hpack

PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20

# error codes
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL = 5, 6, 7, 8
COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 9, 11


def frame(ftype, flags, sid, payload=b''):
    n = len(payload)
    return struct.pack('>BHBBI', n >> 16, n & 0xffff, ftype, flags, sid) + payload


def settings(*pairs):
    return frame(SETTINGS, 0, 0, b''.join(struct.pack('>HI', k, v) for k, v in pairs))


def req_fields(path, method='GET', extra=()):
    return [(':method', method), (':path', path), (':scheme', 'http'),
            (':authority', 'localhost')] + list(extra)


class Conn:
    """One connection. Events the server sent are kept: statuses[sid],
    bodies[sid] (bytes), ended (sids with END_STREAM), resets[sid] = code,
    goaway = (last_sid, code) or None, closed (the server closed)."""

    def __init__(self, port, local_settings=(), ack=True, timeout=10):
        self.s = socket.create_connection(('127.0.0.1', port))
        self.s.settimeout(timeout)
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        # our encoder keeps to 4096 whatever the client advertises: a bigger
        # table size update would raise here
        self.dec.max_allowed_table_size = 4096
        self.ack = ack
        self.buf = b''
        self.statuses, self.bodies, self.resets = {}, {}, {}
        self.ended = set()
        self.goaway = None
        self.closed = False
        self.how = None
        self.pings = 0
        self.settings_acks = 0
        self.frames = 0
        self.window_updates = {}  # sid -> total granted
        self.server_settings = {}
        self.hblock = None
        self.send(PREFACE + settings(*local_settings))

    def send(self, data):
        try:
            self.s.sendall(data)
            return True
        except OSError as e:
            self.closed = True
            self.how = self.how or type(e).__name__
            return False

    def headers(self, sid, fields, end_stream=True, end_headers=True):
        flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
        return frame(HEADERS, flags, sid, self.enc.encode(fields))

    def request(self, sid, path, method='GET', end_stream=True, extra=()):
        return self.send(self.headers(sid, req_fields(path, method, extra), end_stream))

    def _frame(self, ftype, flags, sid, p):
        self.frames += 1
        if ftype == SETTINGS and not flags & ACK:
            for i in range(0, len(p), 6):
                k, v = struct.unpack('>HI', p[i:i + 6])
                self.server_settings[k] = v
            if self.ack:
                self.send(frame(SETTINGS, ACK, 0))
        elif ftype == SETTINGS:
            self.settings_acks += 1
        elif ftype == PING and flags & ACK:
            self.pings += 1
        elif ftype == GOAWAY:
            self.goaway = struct.unpack('>II', p[:8])
        elif ftype == RST_STREAM:
            self.resets[sid] = struct.unpack('>I', p)[0]
        elif ftype == WINDOW_UPDATE:
            self.window_updates[sid] = self.window_updates.get(sid, 0) + \
                struct.unpack('>I', p)[0]
        elif ftype in (HEADERS, CONTINUATION):
            if ftype == HEADERS:
                if flags & PADDED:
                    p = p[1:len(p) - p[0]]
                if flags & PRIO:
                    p = p[5:]
                self.hblock = p
            else:
                self.hblock += p
            if flags & END_HEADERS:
                for k, v in self.dec.decode(self.hblock):
                    if k in (':status', b':status'):
                        st = int(v)
                        if st >= 200:
                            self.statuses[sid] = st
            if flags & END_STREAM:
                self.ended.add(sid)
        elif ftype == DATA:
            if flags & PADDED:
                p = p[1:len(p) - p[0]]
            self.bodies[sid] = self.bodies.get(sid, b'') + p
            if flags & END_STREAM:
                self.ended.add(sid)

    def pump(self, until=lambda c: False, timeout=10):
        """Reads frames until until(self), the connection's end, or the
        timeout (seconds); returns whether until(self) came true."""
        end = time.monotonic() + timeout
        while not until(self):
            if self.closed:
                return False
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.s.settimeout(left)
            try:
                data = self.s.recv(1 << 16)
            except socket.timeout:
                return until(self)
            except OSError as e:
                self.closed, self.how = True, type(e).__name__
                return until(self)
            if not data:
                self.closed, self.how = True, 'eof'
                return until(self)
            self.buf += data
            while len(self.buf) >= 9:
                n = int.from_bytes(self.buf[:3], 'big')
                if len(self.buf) < 9 + n:
                    break
                ftype, flags = self.buf[3], self.buf[4]
                sid = int.from_bytes(self.buf[5:9], 'big') & 0x7fffffff
                p = self.buf[9:9 + n]
                self.buf = self.buf[9 + n:]
                self._frame(ftype, flags, sid, p)
        return True

    def wait_close(self, timeout=10):
        """Reads until the server closes; returns the GOAWAY code or None."""
        self.pump(lambda c: c.closed, timeout)
        return self.goaway[1] if self.goaway else None

    def close(self):
        self.s.close()


def fresh_get(port, path='/small'):
    """A new connection and one GET: its status (0 if none came)."""
    c = Conn(port)
    c.request(1, path)
    c.pump(lambda c: 1 in c.ended, 10)
    c.close()
    return c.statuses.get(1, 0)
