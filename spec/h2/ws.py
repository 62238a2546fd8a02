"""WebSockets over HTTP/2 (RFC 8441) for spec/h2_websocket_spec.lua, with
Python's h2 (python3-h2) as the client and WebSocket frames made here:
ws.py CASE PORT; prints what the spec checks, one fact a line.

  echo     an Extended CONNECT to /echo: text, binary, a fragmented message,
           a ping, then the close handshake
  big      a binary message of N MiB (argv[3]) in 64 KiB fragments to /echo,
           echoed while it is being sent: "echoed N" and the first echoed
           byte's offset in the sending
  mux      two websockets and a GET on one connection, interleaved
  noread   a websocket to /sink (whose handler never reads) filled until its
           window closes, then a GET and a websocket echo on the same
           connection
  stall    a binary message of 16 MiB to /echo from a client that does not
           read the echo: "sent N" once nothing moved for a second
  gone     a websocket to /echo, a message, then the connection drops
  deflate  permessage-deflate offered: the answer's extension, then a
           message echoed compressed
  stop     a websocket to /echo left open (the spec stops the server):
           prints the server's close frame and GOAWAY's code
  refused  a plain CONNECT, a :protocol other than websocket, a GET to a
           websocket route, and a websocket without sec-websocket-version
  h1       the HTTP/2 preface and an Extended CONNECT sent to a listener
           without http2: prints what came back
"""
import hashlib
import os
import socket
import struct
import sys
import zlib

import h2.config
import h2.connection
import h2.events
import h2.settings


def frame(op, payload, fin=True):
    """A client frame: masked."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | op])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack('!H', n)
    else:
        head += bytes([0x80 | 127]) + struct.pack('!Q', n)
    m = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, 'big') ^ int.from_bytes(m, 'big')).to_bytes(n, 'big') \
        if n else b''
    return head + mask + body


class Frames:
    """Server frames (unmasked) parsed from the bytes of a stream."""

    def __init__(self):
        self.buf = b''
        self.rsv1 = 0  # frames that came with RSV1 (compressed)

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            b = self.buf
            if len(b) < 2:
                return out
            fin, op, masked, n = b[0] >> 7, b[0] & 15, b[1] >> 7, b[1] & 127
            at = 2
            if n == 126:
                if len(b) < 4:
                    return out
                n, at = struct.unpack('!H', b[2:4])[0], 4
            elif n == 127:
                if len(b) < 10:
                    return out
                n, at = struct.unpack('!Q', b[2:10])[0], 10
            if masked:
                raise Exception('a server frame was masked')
            if len(b) < at + n:
                return out
            self.rsv1 += (b[0] >> 6) & 1
            out.append((fin, op, b[at:at + n]))
            self.buf = b[at + n:]


class Client:
    def __init__(self, port, validate=True):
        self.s = socket.create_connection(('127.0.0.1', port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s.settimeout(10)
        self.c = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding='utf-8',
                                      validate_outbound_headers=validate))
        self.c.initiate_connection()
        self.s.sendall(self.c.data_to_send())
        self.streams = {}  # id -> dict(status=, headers=, frames=, data=, ended=, reset=)
        self.settings = {}
        self.goaway = None
        self.ack = True  # False: received DATA is not acknowledged (windows stay shut)
        while h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL not in self.settings:
            self.pump()

    def pump(self):
        """Reads once and handles the events; acks DATA (opens windows)."""
        data = self.s.recv(65536)
        if not data:
            raise Exception('the server closed the connection')
        for e in self.c.receive_data(data):
            st = self.streams.get(getattr(e, 'stream_id', None))
            if isinstance(e, h2.events.RemoteSettingsChanged):
                for k, v in e.changed_settings.items():
                    self.settings[k] = v.new_value
            elif isinstance(e, h2.events.ResponseReceived):
                st['headers'] = dict(e.headers)
                st['status'] = st['headers'][':status']
            elif isinstance(e, h2.events.DataReceived):
                if st['parser']:
                    st['frames'] += st['parser'].feed(e.data)
                else:
                    st['data'] += e.data
                if self.ack:
                    self.c.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            elif isinstance(e, h2.events.StreamEnded):
                st['ended'] = True
            elif isinstance(e, h2.events.StreamReset):
                st['reset'] = e.error_code
            elif isinstance(e, h2.events.ConnectionTerminated):
                self.goaway = e.error_code
        self.flush()

    def flush(self):
        out = self.c.data_to_send()
        if out:
            self.s.sendall(out)

    def open(self, path, method='CONNECT', protocol='websocket', extra=None, end=False):
        sid = self.c.get_next_available_stream_id()
        h = [(':method', method)]
        if protocol is not None:
            h.append((':protocol', protocol))
        if path is not None:
            h += [(':scheme', 'http'), (':path', path)]
        h.append((':authority', 'localhost'))
        if protocol == 'websocket':
            h.append(('sec-websocket-version', '13'))
        h += extra or []
        self.streams[sid] = dict(status=None, headers=None, frames=[], data=b'', ended=False,
                                 reset=None, parser=Frames() if protocol else None)
        self.c.send_headers(sid, h, end_stream=end)
        self.flush()
        return sid

    def until(self, cond, what):
        while not cond():
            try:
                self.pump()
            except socket.timeout:
                raise Exception('timed out waiting for ' + what)

    def answered(self, sid):
        st = self.streams[sid]
        self.until(lambda: st['status'] or st['reset'] is not None, 'a response')
        return st['status'] or 'reset %d' % st['reset']

    def send(self, sid, data, end=False):
        """Sends all of data as the windows allow (reading meanwhile)."""
        while data:
            n = min(self.c.local_flow_control_window(sid), self.c.max_outbound_frame_size,
                    len(data))
            if n <= 0:
                self.pump()
                continue
            self.c.send_data(sid, data[:n])
            data = data[n:]
            self.flush()
        if end:
            self.c.end_stream(sid)
            self.flush()

    def message(self, sid):
        """The next whole message (fragments joined; control frames as they
        are): (op, payload, number of frames)."""
        st = self.streams[sid]
        parts, op, n = [], None, 0
        while True:
            self.until(lambda: st['frames'], 'a frame')
            fin, fop, payload = st['frames'].pop(0)
            if fop >= 8:
                return fop, payload, 1
            n += 1
            if op is None:
                op = fop
            parts.append(payload)
            if fin:
                return op, b''.join(parts), n


def echo(port):
    c = Client(port)
    print('enable_connect_protocol',
          c.settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL])
    sid = c.open('/echo?x=1', extra=[('sec-websocket-protocol', 'chat, other'),
                                     ('origin', 'http://localhost')])
    print('status', c.answered(sid))
    hd = c.streams[sid]['headers']
    print('protocol', hd.get('sec-websocket-protocol'))
    print('accept', hd.get('sec-websocket-accept'))
    c.send(sid, frame(1, 'héllo'.encode()))
    op, p, _ = c.message(sid)
    print('text', op, p.decode())
    blob = bytes(range(256)) * 40
    c.send(sid, frame(2, blob))
    op, p, _ = c.message(sid)
    print('binary', op, len(p), p == blob)
    c.send(sid, frame(1, b'frag', fin=False) + frame(0, b'men', fin=False) +
           frame(9, b'mid') + frame(0, b'ted'))
    op, p, _ = c.message(sid)
    print('pong', op, p.decode())
    op, p, _ = c.message(sid)
    print('fragmented', op, p.decode())
    c.send(sid, frame(9, b'p1'))
    op, p, _ = c.message(sid)
    print('pong', op, p.decode())
    c.send(sid, frame(8, struct.pack('!H', 1000) + b'bye'))
    op, p, _ = c.message(sid)
    print('close', op, struct.unpack('!H', p[:2])[0])
    st = c.streams[sid]
    # the server's END_STREAM, then (our side being open) RST_STREAM NO_ERROR
    c.until(lambda: st['ended'], 'the end of the stream')
    print('ended', st['ended'], 'reset', st['reset'] or 0)
    # the connection goes on
    g = c.open('/hello', method='GET', protocol=None, end=True)
    c.answered(g)
    c.until(lambda: c.streams[g]['ended'], 'the GET')
    print('get', c.streams[g]['status'], c.streams[g]['data'].decode())


def big(port, mib):
    c = Client(port)
    sid = c.open('/echo')
    print('status', c.answered(sid))
    st = c.streams[sid]
    total = mib << 20
    chunk = bytes(range(256)) * 256  # 64 KiB
    sent, got, first_at, nframes = 0, 0, None, 0
    hs, hr = hashlib.sha256(), hashlib.sha256()
    fin_seen = False

    def take():
        nonlocal got, first_at, nframes, fin_seen
        while st['frames']:
            fin, op, p = st['frames'].pop(0)
            if first_at is None:
                first_at = sent
            hr.update(p)
            got += len(p)
            nframes += 1
            fin_seen = fin_seen or fin

    while sent < total:
        last = sent + len(chunk) >= total
        c.send(sid, frame(2 if sent == 0 else 0, chunk, fin=last))
        hs.update(chunk)
        sent += len(chunk)
        take()
    while not fin_seen:
        c.until(lambda: st['frames'], 'the echo')
        take()
    print('echoed', got, 'same', hs.digest() == hr.digest(), 'frames', nframes > 1)
    print('first_at', first_at, 'total', total)
    c.send(sid, frame(8, struct.pack('!H', 1000)))
    op, p, _ = c.message(sid)
    print('close', op)


def mux(port):
    c = Client(port)
    a = c.open('/echo')
    b = c.open('/echo')
    print('status', c.answered(a), c.answered(b))
    for i in range(5):
        c.send(a, frame(1, ('a%d' % i).encode()))
        c.send(b, frame(1, ('b%d' % i).encode()))
    g = c.open('/hello', method='GET', protocol=None, end=True)
    c.until(lambda: c.streams[g]['ended'], 'the GET')
    print('get', c.streams[g]['status'], c.streams[g]['data'].decode())
    got = []
    for i in range(5):
        got.append(c.message(a)[1].decode())
        got.append(c.message(b)[1].decode())
    print('messages', ' '.join(got))
    for sid in (a, b):
        c.send(sid, frame(8, struct.pack('!H', 1000)))
        print('close', c.message(sid)[0])


def noread(port):
    c = Client(port)
    sink = c.open('/sink')
    print('status', c.answered(sink))
    posted = 0
    blob = frame(2, b'x' * 65536)
    # fill the sink's window: nobody reads it
    while True:
        n = min(c.c.local_flow_control_window(sink), c.c.max_outbound_frame_size)
        if n <= 0:
            break
        k = min(n, len(blob) - posted % len(blob))
        start = posted % len(blob)
        c.c.send_data(sink, blob[start:start + k])
        posted += k
        c.flush()
    print('posted', posted)
    g = c.open('/hello', method='GET', protocol=None, end=True)
    c.until(lambda: c.streams[g]['ended'], 'the GET')
    print('get', c.streams[g]['status'], c.streams[g]['data'].decode())
    e = c.open('/echo')
    c.answered(e)
    c.send(e, frame(1, b'still here'))
    print('echo', c.message(e)[1].decode())
    print('sink window', c.c.local_flow_control_window(sink))


def stall(port):
    c = Client(port)
    sid = c.open('/echo')
    c.answered(sid)
    c.ack = False
    chunk = b'y' * 65536
    total, sent = 16 << 20, 0
    c.s.settimeout(1)
    pending = b''
    while sent < total:
        if not pending:
            pending = frame(2 if sent == 0 else 0, chunk, fin=sent + len(chunk) >= total)
            sent += len(chunk)
        n = min(c.c.local_flow_control_window(sid), c.c.max_outbound_frame_size, len(pending))
        if n > 0:
            c.c.send_data(sid, pending[:n])
            pending = pending[n:]
            c.flush()
            continue
        try:
            c.pump()
        except socket.timeout:
            break
    print('sent', sent - len(pending), 'of', total)


def gone(port):
    c = Client(port)
    sid = c.open('/echo')
    c.answered(sid)
    c.send(sid, frame(1, b'one'))
    print('echo', c.message(sid)[1].decode())
    c.s.close()


def deflate(port):
    c = Client(port)
    sid = c.open('/echo', extra=[('sec-websocket-extensions',
                                  'permessage-deflate; client_max_window_bits')])
    print('status', c.answered(sid))
    print('extensions', c.streams[sid]['headers'].get('sec-websocket-extensions'))
    text = b'over and over ' * 100
    c.send(sid, frame(1, text))  # uncompressed: RSV1 clear is allowed
    op, p, _ = c.message(sid)
    rsv1 = c.streams[sid]['parser'].rsv1
    z = zlib.decompressobj(-15)
    print('echo', op, 'compressed', rsv1 > 0, len(p) < len(text),
          z.decompress(p + b'\x00\x00\xff\xff') == text)


def stop(port):
    c = Client(port)
    sid = c.open('/echo')
    c.answered(sid)
    c.send(sid, frame(1, b'open'))
    print('echo', c.message(sid)[1].decode())
    c.s.settimeout(20)
    op, p, _ = c.message(sid)
    print('close', op, struct.unpack('!H', p[:2])[0], p[2:].decode())
    # (the server going away does not wait for our close, nor may it)
    c.until(lambda: c.goaway is not None, 'GOAWAY')
    print('goaway', c.goaway)


def refused(port):
    c = Client(port, validate=False)
    s = c.open(None, protocol=None)  # a plain CONNECT: :method and :authority
    print('plain', c.answered(s))
    s = c.open('/echo', protocol='connect-udp')
    print('other protocol', c.answered(s))
    s = c.open('/echo', method='GET', protocol=None, end=True)
    print('get', c.answered(s))
    s = c.open('/echo', protocol='websocket')
    # a websocket without sec-websocket-version: the header list without it
    print('ok', c.answered(s))
    c2 = Client(port)
    sid = c2.c.get_next_available_stream_id()
    c2.streams[sid] = dict(status=None, headers=None, frames=[], data=b'', ended=False,
                           reset=None, parser=Frames())
    c2.c.send_headers(sid, [(':method', 'CONNECT'), (':protocol', 'websocket'),
                            (':scheme', 'http'), (':path', '/echo'),
                            (':authority', 'localhost')])
    c2.flush()
    print('no version', c2.answered(sid))


def untunneled(port):
    c = Client(port)
    print('plain route', c.answered(c.open('/hello')))
    print('silent route', c.answered(c.open('/silent')))
    s = c.open('/hello', method='GET', protocol=None, end=True)
    c.answered(s)
    c.until(lambda: c.streams[s]['ended'], 'the body')
    print('get', c.streams[s]['status'], c.streams[s]['data'].decode())


def h1(port):
    s = socket.create_connection(('127.0.0.1', port))
    s.settimeout(10)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.send_headers(1, [(':method', 'CONNECT'), (':protocol', 'websocket'), (':scheme', 'http'),
                       (':path', '/echo'), (':authority', 'localhost'),
                       ('sec-websocket-version', '13')])
    s.sendall(c.data_to_send())
    data = b''
    while True:
        try:
            d = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not d:
            break
        data += d
    print('answer', data.split(b'\r\n')[0].decode('latin-1'))


if __name__ == '__main__':
    case, port = sys.argv[1], int(sys.argv[2])
    if case == 'big':
        big(port, int(sys.argv[3]))
    else:
        globals()[case](port)
