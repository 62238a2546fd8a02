"""Hostile peers against the newest HTTP/2 surfaces (issue 18), for
spec/h2_attack_spec.lua, with Python's h2 (python3-h2): surfaces.py CASE PORT
[ARGS]; prints what the spec checks, one fact a line.

  file_reset N          N GETs of /big with shut windows, reset once their
                        heads came; then a GET of /small
  file_cold_reset PATH N  the same, one at a time, PATH out of the page cache
                        (the read is in the pool when the reset comes)
  file_zero N           N GETs of /big whose windows never open: the resets
                        (send_timeout) and the connection's end
  file_truncate PATH    a GET of /trunc, PATH cut to 100000 bytes meanwhile
  trailers KIND         pseudo | huge | get | after (see trailers())
  trailers_raw KIND     noend | twice | uppercase: shapes h2 will not send
  tunnel KIND           a websocket to /echo (or /flood): flood | rst |
                        after_end | hugeframe | nohandshake | goaway
  toobig                a message past max_message beside another websocket
  many_tunnels N        N idle websockets on one connection
  upgrade KIND          the HTTP/1.1 Upgrade to h2c: nopreface | h1after |
                        h1later | keepalive | twice | hugesettings |
                        badsettings | connect | options | expect | websocket |
                        halfclose
  body_wait KIND        a POST to /block: stall (no body) | trickle
  stuck PATH N [slow]   N GETs of PATH whose windows stay shut (slow: open
                        by 1000 bytes every 100 ms)
  burst N               one write opening N each of /err, /spawn, /small and
                        a POST to /block whose body comes later
"""
import os
import socket
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ws import Client, frame  # noqa: E402


def hdrs(path, method='GET'):
    return [(':method', method), (':path', path), (':scheme', 'http'),
            (':authority', 'localhost')]


def raw_client(port, window=None):
    s = socket.create_connection(('127.0.0.1', port))
    s.settimeout(10)
    cfg = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                    validate_inbound_headers=False)
    c = h2.connection.H2Connection(cfg)
    c.initiate_connection()
    if window is not None:
        c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
    s.sendall(c.data_to_send())
    return s, c


def pump(s, c, ack=True):
    """Reads once; returns the events (None when the server closed)."""
    try:
        data = s.recv(65536)
    except ConnectionResetError:
        return None
    if not data:
        return None
    evs = c.receive_data(data)
    for e in evs:
        if ack and isinstance(e, h2.events.DataReceived):
            c.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
    out = c.data_to_send()
    if out:
        s.sendall(out)
    return evs


def get(s, c, path, method='GET', body=None):
    """Opens a stream and reads until its end: (status, body) or
    ('reset N', body)."""
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, hdrs(path, method), end_stream=body is None)
    if body is not None:
        c.send_data(sid, body, end_stream=True)
    s.sendall(c.data_to_send())
    status, data = None, b''
    while True:
        evs = pump(s, c)
        if evs is None:
            return 'closed', data
        for e in evs:
            if getattr(e, 'stream_id', None) != sid:
                continue
            if isinstance(e, h2.events.ResponseReceived):
                status = dict(e.headers)[b':status'].decode()
            elif isinstance(e, h2.events.DataReceived):
                data += e.data
            elif isinstance(e, h2.events.StreamEnded):
                return status, data
            elif isinstance(e, h2.events.StreamReset):
                return 'reset %d' % e.error_code, data


# ---- files ----

def file_reset(port, n):
    """n GETs of /big with a shut window, each reset once its head came;
    then a GET on the same connection."""
    s, c = raw_client(port, window=0)
    n = int(n)
    sids = []
    for _ in range(n):
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, hdrs('/big'), end_stream=True)
        sids.append(sid)
    s.sendall(c.data_to_send())
    heads = set()
    while len(heads) < n:
        evs = pump(s, c)
        if evs is None:
            raise SystemExit('closed')
        for e in evs:
            if isinstance(e, h2.events.ResponseReceived):
                heads.add(e.stream_id)
    for sid in sids:
        c.reset_stream(sid, 8)
    s.sendall(c.data_to_send())
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 65535})
    s.sendall(c.data_to_send())
    print('heads', len(heads))
    print('after', *get(s, c, '/small'))


def file_zero(port, n):
    """n GETs of /big on a connection whose windows stay shut: the
    handlers wait; returns once all heads came (the server holds them)."""
    s, c = raw_client(port, window=0)
    n = int(n)
    for _ in range(n):
        c.send_headers(c.get_next_available_stream_id(), hdrs('/big'), end_stream=True)
    s.sendall(c.data_to_send())
    heads = 0
    while heads < n:
        evs = pump(s, c, ack=False)
        if evs is None:
            raise SystemExit('closed')
        heads += sum(isinstance(e, h2.events.ResponseReceived) for e in evs)
    print('heads', heads)
    sys.stdout.flush()
    # hold until the server gives up (send_timeout) or the spec kills us
    while True:
        evs = pump(s, c, ack=False)
        if evs is None:
            print('closed')
            return
        for e in evs:
            if isinstance(e, h2.events.StreamReset):
                print('reset', e.stream_id, e.error_code)
            elif isinstance(e, h2.events.ConnectionTerminated):
                print('goaway', e.error_code)


# ---- trailers ----

def trailers(port, kind):
    s, c = raw_client(port)
    sid = 1
    if kind == 'pseudo':
        c.send_headers(sid, hdrs('/trailers', 'POST'))
        c.send_data(sid, b'abc')
        c.send_headers(sid, [(':path', '/x'), ('x-t', '1')], end_stream=True)
    elif kind == 'huge':
        c.send_headers(sid, hdrs('/trailers', 'POST'))
        c.send_data(sid, b'abc')
        c.send_headers(sid, [('x-t%d' % i, 'v' * 100) for i in range(300)], end_stream=True)
    elif kind == 'get':
        c.send_headers(sid, hdrs('/trailers', 'POST'))
        c.send_headers(sid, [('x-t', '1')], end_stream=True)
    elif kind == 'after':
        c.send_headers(sid, hdrs('/early', 'POST'))
        c.send_data(sid, b'abc')
    s.sendall(c.data_to_send())
    status, data = None, b''
    done = False
    while not done:
        evs = pump(s, c)
        if evs is None:
            print('closed')
            break
        for e in evs:
            if isinstance(e, h2.events.ResponseReceived):
                status = dict(e.headers)[b':status'].decode()
            elif isinstance(e, h2.events.DataReceived):
                data += e.data
            elif isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)):
                if isinstance(e, h2.events.StreamReset):
                    status = 'reset %d' % e.error_code
                done = True
            elif isinstance(e, h2.events.ConnectionTerminated):
                print('goaway', e.error_code)
                done = True
    if kind == 'after':
        try:
            c.send_headers(sid, [('x-t%d' % i, 'v' * 100) for i in range(50)],
                           end_stream=True)
            s.sendall(c.data_to_send())
        except Exception as ex:
            print('late', type(ex).__name__)
    print(status, data.decode())
    print('then', *get(s, c, '/small'))



# ---- tunnels ----

def raw_frame(ftype, flags, sid, payload):
    return struct.pack('!I', len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack('!I', sid) + payload


def drain_until(c, cond, secs):
    c.s.settimeout(secs)
    end = time.time() + secs
    while not cond() and time.time() < end:
        try:
            c.pump()
        except socket.timeout:
            break
        except Exception as ex:
            print('pump', type(ex).__name__, ex)
            return


def tunnel(port, kind):
    c = Client(port)
    sid = c.open('/flood' if kind == 'flood' else '/echo')
    print('status', c.answered(sid))
    st = c.streams[sid]
    if kind == 'flood':
        c.ack = False  # the server's sends fill our window, then wait
        drain_until(c, lambda: st["reset"] is not None or st["ended"], 30)
        print('frames', len(st['frames']), 'reset', st['reset'], 'ended', st['ended'])
    elif kind == 'rst':
        c.send(sid, frame(2, b'q' * 50000)[:20000])  # mid-message
        c.c.reset_stream(sid, 8)
        c.flush()
    elif kind == 'after_end':
        c.send(sid, frame(1, b'hi'), end=True)
        c.s.sendall(raw_frame(0, 1, sid, frame(1, b'late')))
        drain_until(c, lambda: st['ended'] or st['reset'] is not None, 5)
        print('frames', [(f[1], f[2][:8]) for f in st['frames']], 'reset', st['reset'])
    elif kind == 'hugeframe':
        # a frame header announcing 2^62 bytes
        hdr = bytes([0x82, 0x80 | 127]) + struct.pack('!Q', 1 << 62) + b'mask'
        c.send(sid, hdr + b'x' * 1000)
        drain_until(c, lambda: st['ended'] or st['reset'] is not None, 5)
        print('frames', [(f[1], f[2][:2]) for f in st['frames']], 'reset', st['reset'])
    elif kind == 'nohandshake':
        c.c.end_stream(sid)
        c.flush()
        drain_until(c, lambda: st['ended'] or st['reset'] is not None, 5)
        print('frames', [(f[1], f[2][:2]) for f in st['frames']], 'ended', st['ended'],
              'reset', st['reset'])
    elif kind == 'goaway':
        c.c.close_connection()
        c.flush()
        drain_until(c, lambda: st['ended'] or st['reset'] is not None, 5)
        print('frames', [(f[1], f[2][:2]) for f in st['frames']], 'ended', st['ended'],
              'reset', st['reset'])
    s2, c2 = raw_client(port)
    print('then', *get(s2, c2, '/small'))


def many_tunnels(port, n):
    c = Client(port)
    sids = [c.open('/echo') for _ in range(int(n))]
    for sid in sids:
        c.answered(sid)
    print('open', len(sids), 'max', c.settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS))
    sys.stdout.flush()
    drain_until(c, lambda: all(c.streams[s]['ended'] or c.streams[s]['reset'] is not None
                               for s in sids), 20)
    print('closed', sum(1 for s in sids if c.streams[s]['ended'] or
                        c.streams[s]['reset'] is not None), 'goaway', c.goaway)



def toobig(port):
    """A message past max_message on one websocket: that one closes (1009),
    the connection and its other streams go on."""
    c = Client(port)
    other = c.open('/echo')
    c.answered(other)
    sid = c.open('/echo')
    print('status', c.answered(sid))
    st = c.streams[sid]
    data = frame(2, b'q' * 200000)
    try:
        while data and not (st['ended'] or st['reset'] is not None):
            n = min(c.c.local_flow_control_window(sid), c.c.max_outbound_frame_size, len(data))
            if n <= 0:
                c.pump()
                continue
            c.c.send_data(sid, data[:n])
            data = data[n:]
            c.flush()
        drain_until(c, lambda: st['ended'] or st['reset'] is not None, 5)
    except Exception as ex:
        print('error', ex)
    print('frames', [(f[1], f[2][:2]) for f in st['frames']], 'ended', st['ended'],
          'reset', st['reset'], 'goaway', c.goaway)
    try:
        c.send(other, frame(1, b'other'))
        print('other', c.message(other)[1].decode())
    except Exception as ex:
        print('other error', ex)



# ---- the Upgrade ----

def upgrade_head(path='/small', settings=None, method='GET', extra=b''):
    if settings is None:
        settings = b'AAMAAABkAAQAAP__'
    return (method.encode() + b' ' + path.encode() + b' HTTP/1.1\r\nHost: 127.0.0.1\r\n'
            b'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n'
            b'HTTP2-Settings: ' + settings + b'\r\n' + extra + b'\r\n')


def read_all(s, secs=5):
    s.settimeout(secs)
    buf = b''
    t0 = time.time()
    while True:
        try:
            d = s.recv(65536)
        except socket.timeout:
            return buf, 'timeout', time.time() - t0
        except ConnectionResetError:
            return buf, 'reset', time.time() - t0
        if not d:
            return buf, 'eof', time.time() - t0
        buf += d


def upgrade(port, kind):
    s = socket.create_connection(('127.0.0.1', port))
    if kind == 'nopreface':
        s.sendall(upgrade_head())
    elif kind == 'h1after':
        s.sendall(upgrade_head() + b'GET /small HTTP/1.1\r\nHost: x\r\n\r\n')
    elif kind == 'h1later':
        s.sendall(upgrade_head())
        time.sleep(0.2)
        s.sendall(b'GET /small HTTP/1.1\r\nHost: x\r\n\r\n')
    elif kind == 'keepalive':
        s.sendall(b'GET /small HTTP/1.1\r\nHost: x\r\n\r\nGET /small HTTP/1.1\r\nHost: x\r\n\r\n'
                  + upgrade_head())
    elif kind == 'twice':
        s.sendall(upgrade_head() + upgrade_head())
    elif kind == 'hugesettings':
        s.sendall(upgrade_head(settings=b'A' * 20000))
    elif kind == 'badsettings':
        s.sendall(upgrade_head(settings=b'AAMAAABkAAQAAP__' + b'!'))
    elif kind == 'connect':
        s.sendall(upgrade_head(path='127.0.0.1:1', method='CONNECT'))
    elif kind == 'options':
        s.sendall(upgrade_head(path='*', method='OPTIONS'))
    elif kind == 'expect':
        s.sendall(upgrade_head(extra=b'Expect: 100-continue\r\nContent-Length: 0\r\n'))
    elif kind == 'websocket':
        s.sendall(upgrade_head(path='/echo', extra=b'Sec-WebSocket-Version: 13\r\n'
                               b'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n'))
    elif kind == 'halfclose':
        s.sendall(upgrade_head())
        s.shutdown(socket.SHUT_WR)
    buf, how, secs = read_all(s, 8)
    first = buf.split(b'\r\n', 1)[0].decode(errors='replace')
    print('first', first)
    print('bytes', len(buf), 'end', how, 'after %.1f' % secs)
    # the h2 frames after the 101, if any
    if '101' in first and b'\r\n\r\n' in buf:
        rest = buf.split(b'\r\n\r\n', 1)[1]
        types = []
        while len(rest) >= 9:
            n = int.from_bytes(rest[:3], 'big')
            types.append((rest[3], rest[4], int.from_bytes(rest[5:9], 'big') & 0x7fffffff))
            rest = rest[9 + n:]
        print('frames', types)
    else:
        print('text', buf[:300])



# ---- the hold: many handlers started by one read ----

def burst(port, n):
    """One write opens n streams of each kind: /err (raises), /spawn
    (spawns a task), /small, and a POST to /block whose body comes after
    the answers to the others; prints the statuses counted."""
    s, c = raw_client(port)
    n = int(n)
    kinds = {}
    for _ in range(n):
        for path, method in (('/err', 'GET'), ('/spawn', 'GET'), ('/small', 'GET'),
                             ('/block', 'POST')):
            sid = c.get_next_available_stream_id()
            c.send_headers(sid, hdrs(path, method), end_stream=method == 'GET')
            kinds[sid] = path
    s.sendall(c.data_to_send())
    got = {}
    bodies = {}

    def run(want):
        while len(got) < want:
            evs = pump(s, c)
            if evs is None:
                raise SystemExit('closed after %d answers' % len(got))
            for e in evs:
                sid = getattr(e, 'stream_id', None)
                if isinstance(e, h2.events.ResponseReceived):
                    bodies[sid] = [dict(e.headers)[b':status'].decode(), b'']
                elif isinstance(e, h2.events.DataReceived):
                    bodies[sid][1] += e.data
                elif isinstance(e, h2.events.StreamEnded):
                    got[sid] = bodies[sid]
                elif isinstance(e, h2.events.StreamReset):
                    got[sid] = ['reset %d' % e.error_code, b'']
    run(3 * n)
    for sid, path in kinds.items():
        if path == '/block':
            c.send_data(sid, b'b' * 100, end_stream=True)
    s.sendall(c.data_to_send())
    run(4 * n)
    count = {}
    for sid, (st, body) in got.items():
        k = '%s %s %s' % (kinds[sid], st, body.decode())
        count[k] = count.get(k, 0) + 1
    for k in sorted(count):
        print(k, count[k])
    print('then', *get(s, c, '/small'))



def trailers_raw(port, kind):
    """Trailer shapes python3-h2 will not send: a trailer HEADERS without
    END_STREAM (then DATA), trailers twice."""
    s, c = raw_client(port)
    c.send_headers(1, hdrs('/trailers', 'POST'))
    c.send_data(1, b'abc')
    s.sendall(c.data_to_send())
    block = c.encoder.encode([('x-t', '1')])
    if kind == 'noend':
        s.sendall(raw_frame(1, 0x4, 1, block) + raw_frame(0, 0x1, 1, b'more'))
    elif kind == 'twice':
        s.sendall(raw_frame(1, 0x4, 1, block) + raw_frame(1, 0x5, 1,
                                                           c.encoder.encode([('x-u', '2')])))
    elif kind == 'uppercase':
        s.sendall(raw_frame(1, 0x5, 1, c.encoder.encode([('X-Upper', '1')])))
    out, how, secs = read_all(s, 3)
    # parse the frames' types by hand (the state machine would object)
    types = []
    rest = out
    while len(rest) >= 9:
        n = int.from_bytes(rest[:3], 'big')
        t, fl, sid = rest[3], rest[4], int.from_bytes(rest[5:9], 'big') & 0x7fffffff
        extra = ''
        if t in (3, 7):
            extra = int.from_bytes(rest[9 + n - 4:9 + n], 'big')
        types.append((t, fl, sid, extra))
        rest = rest[9 + n:]
    print('frames', types, 'end', how)



def evict(path):
    """Drops path's pages from the page cache (the next reads go to the
    pool, not read_now)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def file_cold_reset(port, path, n):
    """n GETs of /big, its file out of the page cache, each reset as soon
    as its head came (while a read is in the pool); then a GET."""
    n = int(n)
    s, c = raw_client(port)
    for round_ in range(n):
        evict(path)
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, hdrs('/big'), end_stream=True)
        s.sendall(c.data_to_send())
        head = False
        while not head:
            evs = pump(s, c)
            if evs is None:
                raise SystemExit('closed')
            head = any(isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid
                       for e in evs)
        c.reset_stream(sid, 8)
        s.sendall(c.data_to_send())
    print('after', *get(s, c, '/small'))


def file_truncate(port, path):
    """A GET of /trunc whose file is cut to 100000 bytes once 64 KiB came:
    prints how the stream ended and the bytes that came."""
    s, c = raw_client(port, window=65536)
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, hdrs('/trunc'), end_stream=True)
    s.sendall(c.data_to_send())
    got, clen, how, cut = 0, None, None, False
    while how is None:
        evs = pump(s, c, ack=cut)
        if evs is None:
            how = 'closed'
            break
        for e in evs:
            if isinstance(e, h2.events.ResponseReceived):
                clen = dict(e.headers).get(b'content-length')
            elif isinstance(e, h2.events.DataReceived):
                got += len(e.data)
            elif isinstance(e, h2.events.StreamEnded):
                how = 'ended'
            elif isinstance(e, h2.events.StreamReset):
                how = 'reset %d' % e.error_code
        if got >= 65535 and not cut:
            os.truncate(path, 100000)
            evict(path)
            cut = True
            c.increment_flow_control_window(1 << 24)
            c.increment_flow_control_window(1 << 24, sid)
            s.sendall(c.data_to_send())
    print('clen', clen.decode() if clen else None, 'got', got, how)



def body_wait(port, kind):
    """POSTs to /block: 'stall' sends no body (the server's body_timeout
    answers); 'trickle' sends 30 bytes one at a time, 50 ms apart, each within it. Then
    late bytes on the stalled stream and a GET on the same connection."""
    s, c = raw_client(port)
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, hdrs('/block', 'POST'))
    s.sendall(c.data_to_send())
    if kind == 'trickle':
        for i in range(30):
            time.sleep(0.05)
            c.send_data(sid, b't', end_stream=i == 29)
            s.sendall(c.data_to_send())
    status, data, how = None, b'', None
    while how is None:
        evs = pump(s, c)
        if evs is None:
            raise SystemExit('closed')
        for e in evs:
            if getattr(e, 'stream_id', None) != sid:
                continue
            if isinstance(e, h2.events.ResponseReceived):
                status = dict(e.headers)[b':status'].decode()
            elif isinstance(e, h2.events.DataReceived):
                data += e.data
            elif isinstance(e, h2.events.StreamEnded):
                how = 'ended'
    print(status, data.decode(), how)
    if kind == 'stall':
        s.sendall(raw_frame(0, 1, sid, b'late'))
    print('then', *get(s, c, '/small'))



def stuck(port, path, n, slow=None):
    """n GETs of path whose windows stay shut (or, with slow, open by 1000
    bytes every 100 ms): prints each stream's end and the bytes that came."""
    s, c = raw_client(port, window=0)
    n = int(n)
    sids = []
    for _ in range(n):
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, hdrs(path), end_stream=True)
        sids.append(sid)
    s.sendall(c.data_to_send())
    got = dict((sid, 0) for sid in sids)
    ends = {}
    s.settimeout(0.1)
    while len(ends) < n:
        try:
            data = s.recv(65536)
        except socket.timeout:
            data = None
        if data == b'':
            print('closed')
            break
        for e in c.receive_data(data or b''):
            if isinstance(e, h2.events.DataReceived):
                got[e.stream_id] += len(e.data)
                c.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            elif isinstance(e, h2.events.StreamEnded):
                ends[e.stream_id] = 'ended'
            elif isinstance(e, h2.events.StreamReset):
                ends[e.stream_id] = 'reset %d' % e.error_code
        if slow and data is None:
            for sid in sids:
                if sid not in ends:
                    c.increment_flow_control_window(1000, sid)
        s.sendall(c.data_to_send())
    for sid in sids:
        print(sid, ends.get(sid), got[sid])


if __name__ == '__main__':
    case, port = sys.argv[1], int(sys.argv[2])
    globals()[case](port, *sys.argv[3:])
