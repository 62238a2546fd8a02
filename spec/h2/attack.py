"""Attacks on rill's HTTP/2 server, one per case, for spec/h2_limits_spec.lua:
attack.py CASE PORT prints "key value" lines that the spec checks, and last
"fresh STATUS": a GET on a new connection afterwards (the server lives).

The server under attack (spec/h2_limits_spec.lua's handler) answers /small
at once, /hang after 300 ms, reads /echo whole (up to 1 MB) and answers
"got N" (nothing on a failed read: 408 or 413), reads /sink to its end in
pieces and answers "got N", and answers /big with 4 MiB in 64 KiB writes."""
import socket
import struct
import sys
import time

from raw import (Conn, frame, settings, req_fields, fresh_get, DATA, HEADERS,
                 PRIORITY, RST_STREAM, SETTINGS, PING, WINDOW_UPDATE,
                 CONTINUATION, END_STREAM, END_HEADERS, PADDED)


def say(*a, **kw):
    print(*a, flush=True, **kw)


def streams(port, ack=0):
    """Past SETTINGS_MAX_CONCURRENT_STREAMS: the next stream is refused, the
    others are answered. ack: the client acknowledged our SETTINGS first."""
    c = Conn(port, ack=bool(ack))
    c.pump(lambda c: 3 in c.server_settings)
    limit = c.server_settings.get(3)
    say('limit', limit)
    data = b''
    for i in range(limit + 1):
        data += c.headers(1 + 2 * i, req_fields('/hang'))
    c.send(data)
    last = 1 + 2 * limit
    c.pump(lambda c: last in c.resets or c.closed, 10)
    say('refused', c.resets.get(last))
    say('goaway', c.goaway and c.goaway[1])
    # released: the others are answered
    c.pump(lambda c: len(c.ended) >= limit, 20)
    say('answered', sum(1 for s, v in c.statuses.items() if v == 200))
    # a new stream once there is room
    c.request(last + 2, '/small')
    c.pump(lambda c: last + 2 in c.ended, 10)
    say('after', c.statuses.get(last + 2))
    c.close()


def header_list(port):
    """A request head past max_header_bytes: 431 on its stream, the
    connection goes on."""
    c = Conn(port)
    c.request(1, '/small', extra=[('x-big', 'a' * 8000), ('x-big2', 'b' * 8000),
                                  ('x-big3', 'c' * 8000)])
    c.request(3, '/small')
    c.pump(lambda c: 1 in c.ended and 3 in c.ended, 10)
    say('big', c.statuses.get(1, c.resets.get(1)))
    say('next', c.statuses.get(3))
    # many small fields
    c.request(5, '/small', extra=[('x-f%d' % i, 'v') for i in range(500)])
    c.request(7, '/small')
    c.pump(lambda c: 5 in c.ended and 7 in c.ended, 10)
    say('many', c.statuses.get(5, c.resets.get(5)))
    say('next', c.statuses.get(7))
    say('goaway', c.goaway and c.goaway[1])
    c.close()


def hpack_bomb(port):
    """An HPACK bomb: a 4000-byte field put in the table, then named by its
    one-byte index over and over, a HEADERS and 8 CONTINUATION frames full
    (147 KB that decode to about 600 MB of fields): reset early, cheaply
    (the server answers the next request on the connection at once), and
    the same in trailers."""
    for trailers in (False, True):
        c = Conn(port)
        c.pump(lambda c: c.settings_acks > 0)
        if trailers:
            c.request(1, '/echo', 'POST', end_stream=False)
            c.send(frame(DATA, 0, 1, b'x'))
            blk = b''
        else:
            blk = c.enc.encode(req_fields('/small'))
        blk += c.enc.encode([('x-bomb', 'v' * 4000)])  # the newest entry: 62
        ref = bytes([0x80 | 62])
        t0 = time.monotonic()
        x = frame(HEADERS, END_STREAM, 1, blk + ref * (16384 - len(blk)))
        for i in range(8):
            x += frame(CONTINUATION, END_HEADERS if i == 7 else 0, 1, ref * 16384)
        c.send(x)
        c.request(3, '/small')
        c.pump(lambda c: 3 in c.ended or c.closed, 10)
        say('trailers' if trailers else 'head', 'status', c.statuses.get(1),
            'reset', c.resets.get(1), 'next', c.statuses.get(3))
        say('seconds', round(time.monotonic() - t0, 3), file=sys.stderr)
        c.close()


def hpack_table(port):
    """Our decoder's table is the 4096 we advertised: a table size update past
    it is a COMPRESSION_ERROR; a client advertising a huge table for our
    encoder gets answers it can decode, within 4096."""
    c = Conn(port, local_settings=[(1, 0xffffffff)])  # HEADER_TABLE_SIZE
    c.pump(lambda c: c.settings_acks > 0)
    say('advertised', c.server_settings.get(1))
    # fill the table with indexed fields, many requests
    sid = 1
    for i in range(50):
        c.request(sid, '/small', extra=[('x-fill-%d' % i, 'z' * 3000)])
        sid += 2
    c.pump(lambda c: len(c.ended) >= 50, 10)
    say('filled', sum(1 for v in c.statuses.values() if v == 200))
    say('goaway', c.goaway and c.goaway[1])
    c.close()
    # a dynamic table size update to 4096 is fine, past it is not
    for size in (4096, 65536):
        c = Conn(port)
        c.pump(lambda c: c.settings_acks > 0)
        upd = bytes([0x3f]) + _hpack_int(size - 31)
        block = upd + c.enc.encode(req_fields('/small'))
        c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, block))
        code = c.wait_close(3) if size > 4096 else None
        if size <= 4096:
            c.pump(lambda c: 1 in c.ended, 10)
            say('update%d' % size, c.statuses.get(1))
        else:
            say('update%d' % size, 'goaway', code)
        c.close()


def _hpack_int(v):
    out = b''
    while v >= 128:
        out += bytes([(v & 0x7f) | 0x80])
        v >>= 7
    return out + bytes([v])


def continuation(port):
    """HEADERS without END_HEADERS and CONTINUATION frames that never end
    (CVE-2024-27316): the connection is closed, early."""
    c = Conn(port)
    block = c.enc.encode(req_fields('/small'))
    c.send(frame(HEADERS, END_STREAM, 1, block))
    sent = 0
    for i in range(10000):
        if not c.send(frame(CONTINUATION, 0, 1, b'')):
            break
        sent += 1
    code = c.wait_close(10)
    say('goaway', code)
    c.close()
    # the same with fields in each frame (HPACK decoded as they come)
    c = Conn(port)
    c.send(frame(HEADERS, END_STREAM, 1, block))
    for i in range(10000):
        if not c.send(frame(CONTINUATION, 0, 1,
                            c.enc.encode([('x-c%d' % (i % 50), 'v' * 1000)]))):
            break
    code = c.wait_close(10)
    say('closed', c.closed)
    c.close()


def settings_flood(port):
    """SETTINGS frames as fast as we can, never reading the ACKs."""
    c = Conn(port, ack=False)
    one = settings((4, 65535))
    batch = one * 1000
    n = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20:
        if not c.send(batch):
            break
        n += 1
    say('cut', 'yes' if c.closed else 'no')
    say('goaway', c.wait_close(10))
    c.close()


def ping_flood(port):
    """PING frames, never reading the ACKs."""
    c = Conn(port, ack=True)
    batch = frame(PING, 0, 0, b'12345678') * 1000
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20:
        if not c.send(batch):
            break
    say('cut', 'yes' if c.closed else 'no')
    say('goaway', c.wait_close(10))
    c.close()


def flood_burst(port):
    """1500 PINGs (or SETTINGS) in one write, then reading: past nghttp2's
    1000 unsent ACKs the server says ENHANCE_YOUR_CALM."""
    for f in (frame(PING, 0, 0, b'12345678'), settings((4, 65535))):
        c = Conn(port)
        c.pump(lambda c: c.settings_acks > 0)
        c.send(f * 1500)
        say('goaway', c.wait_close(10))
        c.close()


def window(port):
    """WINDOW_UPDATE past 2^31-1: on the connection FLOW_CONTROL_ERROR
    (GOAWAY); on a stream RST_STREAM FLOW_CONTROL_ERROR."""
    c = Conn(port)
    c.request(1, '/hang')
    c.send(frame(WINDOW_UPDATE, 0, 1, struct.pack('>I', 0x7fffffff)))
    c.pump(lambda c: 1 in c.resets or c.closed, 5)
    say('stream', c.resets.get(1), 'goaway', c.goaway and c.goaway[1])
    c.request(3, '/small')
    c.pump(lambda c: 3 in c.ended or c.closed, 5)
    say('next', c.statuses.get(3))
    c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack('>I', 0x7fffffff)))
    say('conn', c.wait_close(5))
    c.close()
    # a zero increment: PROTOCOL_ERROR
    c = Conn(port)
    c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack('>I', 0)))
    say('zero', c.wait_close(5))
    c.close()


def idle(port):
    """No stream open: GOAWAY NO_ERROR, then closed, after the idle timeout."""
    c = Conn(port)
    c.request(1, '/small')
    c.pump(lambda c: 1 in c.ended, 5)
    t0 = time.monotonic()
    code = c.wait_close(20)
    say('goaway', code, 'closed', c.closed)
    say('took', round(time.monotonic() - t0, 1))
    c.close()


def head_timeout(port):
    """A HEADERS frame without END_HEADERS, never continued: closed after
    the header timeout."""
    c = Conn(port)
    c.request(1, '/small')
    c.pump(lambda c: 1 in c.ended, 5)
    c.send(frame(HEADERS, END_STREAM, 3, c.enc.encode(req_fields('/small'))))
    code = c.wait_close(20)
    say('goaway', code, 'closed', c.closed)
    c.close()


def trailer_timeout(port):
    """Trailers begun (HEADERS without END_HEADERS after the body) and never
    ended, while the handler (/long) runs on: the connection, which can take
    no other frame meanwhile, is closed after the header timeout, before the
    handler could answer. Then a malformed head (a stream error mid-block)
    leaves no header timer behind: a connection busy with /long is not
    closed."""
    c = Conn(port)
    c.pump(lambda c: c.settings_acks > 0)  # our ACK must not cut the block
    c.request(1, '/long', 'POST', end_stream=False)
    c.send(frame(DATA, 0, 1, b'x'))
    c.send(frame(HEADERS, END_STREAM, 1, c.enc.encode([('x-trailer', 'v')])))
    code = c.wait_close(20)
    say('goaway', code, 'answered', c.statuses.get(1))
    c.close()
    c = Conn(port)
    c.request(1, '/small', extra=[('X-Upper', 'v')])  # malformed: RST_STREAM
    c.request(3, '/long')
    c.pump(lambda c: 3 in c.ended or c.closed, 20)
    say('busy', c.statuses.get(3), 'reset', c.resets.get(1))
    c.close()


def body_stall(port):
    """A request body that stops coming: the handler's read ends (body
    timeout) and the stream gets an answer; the connection lives."""
    c = Conn(port)
    c.request(1, '/echo', 'POST', end_stream=False)
    c.send(frame(DATA, 0, 1, b'x' * 100))
    c.pump(lambda c: 1 in c.ended or 1 in c.resets or c.closed, 20)
    say('status', c.statuses.get(1), 'reset', c.resets.get(1))
    say('body', c.bodies.get(1, b'').decode())
    c.request(3, '/small')
    c.pump(lambda c: 3 in c.ended or c.closed, 5)
    say('next', c.statuses.get(3))
    c.close()


def body_slow(port):
    """A request body that trickles in (10 bytes each 100 ms) under the
    server's min_body_rate: the reader's "timeout", a 408, well before the
    body would end (10 s)."""
    c = Conn(port)
    c.request(1, '/echo', 'POST', end_stream=False)
    t0 = time.monotonic()
    for i in range(100):
        c.send(frame(DATA, 0, 1, b'x' * 10))
        c.pump(lambda c: 1 in c.ended or c.closed, 0.1)
        if 1 in c.ended or c.closed:
            break
    say('status', c.statuses.get(1), 'early', time.monotonic() - t0 < 9)
    c.request(3, '/small')
    c.pump(lambda c: 3 in c.ended or c.closed, 5)
    say('next', c.statuses.get(3))
    c.close()


def zero_window(port):
    """A client that grants no window for our response: the handler's write
    ends at send_timeout, and the stream and its queue go."""
    c = Conn(port, local_settings=[(4, 0)])  # INITIAL_WINDOW_SIZE 0
    c.request(1, '/big')
    c.pump(lambda c: 1 in c.resets or 1 in c.ended or c.closed, 20)
    say('reset', c.resets.get(1), 'status', c.statuses.get(1))
    c.request(3, '/small')
    c.pump(lambda c: 3 in c.statuses or c.closed, 5)
    say('next', c.statuses.get(3))
    c.close()


def upload(port, size=1 << 30, smalls=20):
    """size bytes up on one stream (to /sink, which reads them all) while
    small GETs go on the same connection, one after each size/smalls bytes:
    each must be answered before the upload ends. DATA frames honour the
    server's windows; one 16 KiB payload is reused."""
    c = Conn(port)
    c.pump(lambda c: c.settings_acks > 0)
    swin0 = c.server_settings.get(4, 65535)
    c.request(1, '/sink', 'POST', end_stream=False)
    chunk = b'u' * 16384
    fr = frame(DATA, 0, 1, chunk)
    sent = 0
    every = size // smalls
    next_small, sid = every, 3
    asked = {}
    t0 = time.monotonic()
    while sent < size:
        cwin = 65535 + c.window_updates.get(0, 0) - sent
        swin = swin0 + c.window_updates.get(1, 0) - sent
        n = min(cwin, swin, size - sent) // 16384
        if n > 0:
            batch = fr * n
            if sent + n * 16384 >= next_small and sid < 3 + 2 * smalls:
                batch += c.headers(sid, req_fields('/small'))
                asked[sid] = sent
                sid += 2
                next_small += every
            if not c.send(batch):
                break
            sent += n * 16384
        elif size - sent < 16384 and min(cwin, swin) >= size - sent:
            c.send(frame(DATA, 0, 1, b'u' * (size - sent)))
            sent = size
        if sent < size:
            before = sum(c.window_updates.values())
            c.pump(lambda c: sum(c.window_updates.values()) != before or c.closed, 10)
            if c.closed:
                break
    # the upload's end is not sent yet: answers now came during it
    c.pump(lambda c: all(s in c.ended for s in asked) or c.closed, 10)
    small_before = sum(1 for s in asked if s in c.ended and c.statuses.get(s) == 200)
    c.send(frame(DATA, END_STREAM, 1, b''))
    c.pump(lambda c: 1 in c.ended or c.closed, 30)
    say('asked', len(asked))
    say('small before the end', small_before)
    say('upload', c.statuses.get(1), c.bodies.get(1, b'').decode())
    say('seconds', round(time.monotonic() - t0, 1), file=sys.stderr)
    c.close()


def no_read_tcp(port):
    """A client that opens every window but never reads the socket: the
    handler's write ends at send_timeout, then the connection, whose bytes
    cannot leave, is reset rather than held."""
    c = Conn(port, local_settings=[(4, 0x7fffffff)])
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.send(frame(WINDOW_UPDATE, 0, 0, struct.pack('>I', 0x7fff0000)))
    c.request(1, '/big')
    state = 1  # TCP_ESTABLISHED
    end = time.monotonic() + 20
    while state == 1 and time.monotonic() < end:
        time.sleep(0.1)
        state = c.s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    say('held', 'no' if state != 1 else 'yes')
    c.close()


def padded_upload(port, size=4 << 20):
    """A body in DATA frames carrying 255 bytes of padding each: padding
    counts against the windows, so the server must grant it back, or the
    upload stalls."""
    c = Conn(port)
    c.pump(lambda c: c.settings_acks > 0)
    swin0 = c.server_settings.get(4, 65535)
    c.request(1, '/sink', 'POST', end_stream=False)
    payload = 16384 - 256
    fr = frame(DATA, PADDED, 1, bytes([255]) + b'p' * payload + bytes(255))
    sent = used = 0
    while sent < size:
        cwin = 65535 + c.window_updates.get(0, 0) - used
        swin = swin0 + c.window_updates.get(1, 0) - used
        n = min(cwin, swin) // 16384
        if n > 0:
            n = min(n, (size - sent + payload - 1) // payload)
            c.send(fr * n)
            sent += n * payload
            used += n * 16384
            continue
        before = sum(c.window_updates.values())
        if not c.pump(lambda c: sum(c.window_updates.values()) != before or c.closed, 5):
            break
    c.send(frame(DATA, END_STREAM, 1, b''))
    c.pump(lambda c: 1 in c.ended or c.closed, 10)
    say('upload', c.statuses.get(1), c.bodies.get(1, b'').decode() == 'got %d' % sent)
    c.close()


def zero_tail(port):
    """The handler answered and ended, but the client grants no window for
    the body: the stream must not be held forever (reset at send_timeout;
    the connection goes on)."""
    c = Conn(port, local_settings=[(4, 0)])
    c.request(1, '/small')
    c.pump(lambda c: 1 in c.statuses or c.closed, 5)
    say('status', c.statuses.get(1))
    t0 = time.monotonic()
    c.pump(lambda c: 1 in c.resets or c.closed, 10)
    say('closed', c.closed, 'reset', c.resets.get(1))
    say('seconds', round(time.monotonic() - t0, 1), file=sys.stderr)
    c.close()


def _base(path='/bad'):
    return [(':method', 'GET'), (':scheme', 'http'), (':authority', 'localhost'),
            (':path', path)]


# name -> (fields, end_stream, then): malformed requests; each must get a
# stream error (RST_STREAM PROTOCOL_ERROR) or a 400 (host-differs: Host
# naming another server than :authority), and never reach a handler; the
# next stream on the connection is answered.
_MALFORMED = {
    'dup-path': (_base() + [(':path', '/bad2')], True, b''),
    'no-method': ([(':scheme', 'http'), (':path', '/bad')], True, b''),
    'no-path': ([(':method', 'GET'), (':scheme', 'http')], True, b''),
    'empty-path': (_base('') , True, b''),
    'upper-name': (_base() + [('X-Upper', 'v')], True, b''),
    'connection': (_base() + [('connection', 'keep-alive')], True, b''),
    'keep-alive': (_base() + [('keep-alive', '5')], True, b''),
    'te-gzip': (_base() + [('te', 'gzip')], True, b''),
    'transfer-encoding': (_base() + [('transfer-encoding', 'chunked')], True, b''),
    'upgrade': (_base() + [('upgrade', 'websocket')], True, b''),
    'pseudo-after': ([(':method', 'GET'), ('x-a', 'b'), (':path', '/bad'),
                      (':scheme', 'http')], True, b''),
    'unknown-pseudo': (_base() + [(':foo', 'bar')], True, b''),
    'status-in-request': (_base() + [(':status', '200')], True, b''),
    'crlf-value': (_base() + [('x-a', 'b\r\nx-b: c')], True, b''),
    'nul-value': (_base() + [('x-a', 'b\x00c')], True, b''),
    'space-name': (_base() + [('x a', 'b')], True, b''),
    'cl-short': (_base('/echo') + [('content-length', '10')], False, b'01234'),
    'cl-long': (_base('/echo') + [('content-length', '5')], False, b'0123456789'),
    'cl-two': (_base('/echo') + [('content-length', '5'), ('content-length', '6')], False,
               b'01234'),
    'cl-bad': (_base() + [('content-length', '5x')], False, b'01234'),
    'connect-no-authority': ([(':method', 'CONNECT')], True, b''),
    'host-differs': (_base() + [('host', 'other.test')], True, b''),
}


def malformed(port):
    for name, (fields, end, body) in _MALFORMED.items():
        c = Conn(port)
        c.s.sendall(c.headers(1, fields, end_stream=end))
        if body:
            c.send(frame(DATA, END_STREAM, 1, body))
        c.request(3, '/small')
        c.pump(lambda c: (1 in c.ended or 1 in c.resets) and 3 in c.ended or c.closed, 5)
        say(name, 'status=%s reset=%s next=%s goaway=%s' % (
            c.statuses.get(1), c.resets.get(1), c.statuses.get(3),
            c.goaway and c.goaway[1]))
        c.close()


def frames_bad(port):
    """Frames that break the connection's rules: GOAWAY with the code the
    RFC names; the server lives."""
    cases = [
        ('even-stream', lambda c: c.headers(2, req_fields('/bad'))),
        ('data-idle', lambda c: frame(DATA, END_STREAM, 5, b'x')),
        ('rst-idle', lambda c: frame(RST_STREAM, 0, 5, struct.pack('>I', 8))),
        ('self-dependency', lambda c: frame(PRIORITY, 0, 5, struct.pack('>IB', 5, 16))),
        ('pad-too-long', lambda c: frame(DATA, PADDED, 1, bytes([200]) + b'x' * 10)),
        ('headers-pad-too-long', lambda c: frame(HEADERS, PADDED | END_HEADERS, 5,
                                                  bytes([250]) + b'x')),
        ('frame-too-big', lambda c: frame(DATA, 0, 1, b'x' * 20000)),
        ('window-update-len', lambda c: frame(WINDOW_UPDATE, 0, 0, b'\0\0\1')),
        ('settings-len', lambda c: frame(SETTINGS, 0, 0, b'\0\4\0')),
        ('settings-push', lambda c: settings((2, 2))),
        ('settings-window', lambda c: settings((4, 0x80000000))),
        ('settings-frame-size', lambda c: settings((5, 100))),
        ('push-promise', lambda c: frame(5, END_HEADERS, 1, struct.pack('>I', 2))),
        ('ping-len', lambda c: frame(PING, 0, 0, b'1234')),
        ('ping-stream', lambda c: frame(PING, 0, 1, b'12345678')),
        ('continuation-alone', lambda c: frame(CONTINUATION, END_HEADERS, 7, b'')),
        ('lower-stream-id', lambda c: c.headers(1, req_fields('/small'))),
        ('hpack-garbage', lambda c: frame(HEADERS, END_HEADERS | END_STREAM, 5,
                                          b'\xff\xff\xff\xff\xff\xff\x7f')),
    ]
    for name, mk in cases:
        c = Conn(port)
        c.pump(lambda c: c.settings_acks > 0)
        if name in ('pad-too-long', 'frame-too-big'):
            c.request(1, '/echo', 'POST', end_stream=False)
        if name == 'lower-stream-id':
            c.request(3, '/small')
            c.pump(lambda c: 3 in c.ended or c.closed, 5)
        c.send(mk(c))
        code = c.wait_close(5)
        say(name, 'goaway=%s closed=%s' % (code, c.closed))
        c.close()


def priority_flood(port, n=100000):
    """PRIORITY frames for n idle streams (each a tree node nghttp2 keeps):
    memory stays bounded, requests are answered meanwhile."""
    c = Conn(port)
    c.pump(lambda c: c.settings_acks > 0)
    batch = b''
    for i in range(n):
        sid = 3 + 2 * i
        batch += frame(PRIORITY, 0, sid, struct.pack('>IB', sid - 2, 200))
        if len(batch) > 1 << 16:
            if not c.send(batch):
                break
            batch = b''
    c.send(batch)
    c.request(1 + 2 * (n + 2), '/small')
    c.pump(lambda c: 1 + 2 * (n + 2) in c.ended or c.closed, 10)
    say('after', c.statuses.get(1 + 2 * (n + 2)), 'goaway', c.goaway and c.goaway[1])
    c.close()


def priority_loop(port):
    """Streams made to depend on each other in a loop (RFC 7540 5.3.3: the
    tree is reorganized), and requests on them: all answered."""
    c = Conn(port)
    c.pump(lambda c: c.settings_acks > 0)
    x = b''
    for a, b in ((3, 5), (5, 7), (7, 3), (1, 7)):
        x += frame(PRIORITY, 0, a, struct.pack('>IB', b | 0x80000000, 15))
    x += b''.join(c.headers(sid, req_fields('/small')) for sid in (1, 3, 5, 7))
    x += frame(PRIORITY, 0, 9, struct.pack('>IB', 1, 0))
    c.send(x)
    c.pump(lambda c: len(c.ended) >= 4 or c.closed, 5)
    say('answered', sum(1 for v in c.statuses.values() if v == 200),
        'goaway', c.goaway and c.goaway[1])
    c.close()


def over_window(port):
    """DATA past the stream's window (the handler does not read): a flow
    control error."""
    c = Conn(port)
    c.pump(lambda c: c.settings_acks > 0)
    c.request(1, '/hang', 'POST', end_stream=False)
    data = b''.join(frame(DATA, 0, 1, b'x' * 16384) for _ in range(5))  # 80 KiB
    c.send(data)
    c.pump(lambda c: 1 in c.resets or c.closed, 5)
    say('reset', c.resets.get(1), 'goaway', c.goaway and c.goaway[1])
    c.close()


def closed_stream_data(port):
    """DATA on a stream we answered and closed: STREAM_CLOSED, the
    connection goes on."""
    c = Conn(port)
    c.request(1, '/small')
    c.pump(lambda c: 1 in c.ended, 5)
    c.send(frame(DATA, 0, 1, b'late'))
    c.request(3, '/small')
    c.pump(lambda c: 3 in c.ended or c.closed, 5)
    say('reset', c.resets.get(1), 'goaway', c.goaway and c.goaway[1])
    say('next', c.statuses.get(3))
    c.close()


def early_answer(port):
    """A body still coming after the server answered without reading it and
    reset the stream (NO_ERROR): the late DATA is ignored, the connection
    goes on."""
    c = Conn(port)
    c.request(1, '/small', 'POST', end_stream=False)
    c.send(frame(DATA, 0, 1, b'x' * 1000))
    c.pump(lambda c: 1 in c.ended and 1 in c.resets or c.closed, 5)
    say('status', c.statuses.get(1), 'reset', c.resets.get(1))
    for i in range(3):
        c.send(frame(DATA, 0, 1, b'x' * 1000))
    c.send(frame(DATA, END_STREAM, 1, b'x'))
    c.request(3, '/small')
    c.pump(lambda c: 3 in c.ended or c.closed, 5)
    say('next', c.statuses.get(3), 'goaway', c.goaway and c.goaway[1])
    c.close()


def made_you_reset(port, n=2000):
    """Streams the server itself must reset once their handlers started
    (a WINDOW_UPDATE past 2^31-1 on each: FLOW_CONTROL_ERROR), so that the
    concurrency limit never holds them (CVE-2025-8671, "MadeYouReset"):
    they count against the reset budget: GOAWAY ENHANCE_YOUR_CALM."""
    c = Conn(port)
    c.pump(lambda c: c.settings_acks > 0)
    sid = 1
    big = struct.pack('>I', 0x7fffffff)
    sent = 0
    while sent < n and not c.goaway and not c.closed:
        data = b''
        for i in range(50):  # fewer than the concurrency limit at a time
            data += c.headers(sid, req_fields('/hang')) + frame(WINDOW_UPDATE, 0, sid, big)
            sid += 2
        sent += 50
        c.send(data)
        last = sid - 2
        c.pump(lambda c: last in c.resets or c.closed, 5)
    say('resets', 'budget' if sent < n else 'unbounded')
    say('goaway', c.wait_close(5))
    c.close()


def many_conns(port, n=50):
    """n connections, each with max streams open on /hang: every stream is
    answered."""
    conns = []
    for i in range(n):
        c = Conn(port)
        conns.append(c)
    for c in conns:
        c.pump(lambda c: 3 in c.server_settings)
        limit = c.server_settings[3]
        c.send(b''.join(c.headers(1 + 2 * i, req_fields('/hang')) for i in range(limit)))
    total = 0
    for c in conns:
        c.pump(lambda c: len(c.ended) >= limit or c.closed, 30)
        total += sum(1 for v in c.statuses.values() if v == 200)
        c.close()
    say('answered', total, 'of', n * limit)


def graceful(port):
    """Five streams in flight to /slowN when the server is told to stop
    (the spec sends SIGTERM once the handlers log): GOAWAY NO_ERROR naming
    the last stream taken, every stream answered, a stream opened after the
    GOAWAY is not served, then the connection closes."""
    c = Conn(port)
    for i in range(5):
        c.request(1 + 2 * i, '/slow%d' % (i + 1))
    c.pump(lambda c: c.goaway is not None or c.closed, 20)
    say('goaway', c.goaway and c.goaway[1], 'last', c.goaway and c.goaway[0])
    c.request(11, '/small')
    c.pump(lambda c: c.closed, 20)
    say('answered', sum(1 for i in range(5) if c.statuses.get(1 + 2 * i) == 200
                        and c.bodies.get(1 + 2 * i) == b'finished'))
    say('late', c.statuses.get(11), 'closed', c.closed)
    c.close()


CASES = {k: v for k, v in list(globals().items()) if callable(v)
         and not k.startswith('_') and getattr(v, '__module__', None) == '__main__'
         and k != 'say'}

if __name__ == '__main__':
    port = int(sys.argv[2])
    CASES[sys.argv[1]](port, *(int(a) for a in sys.argv[3:]))
    if sys.argv[1] != 'graceful':  # that server is gone
        say('fresh', fresh_get(port))
