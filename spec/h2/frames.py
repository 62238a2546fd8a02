"""Raw HTTP/2 cases for spec/h2_spec.lua, with Python's h2 (python3-h2) as
the client: frames.py CASE PORT; prints what the spec checks.

  noread   a POST of 1 MiB to /noread (whose handler never reads its body)
           on one stream, then ten GETs on the same connection: the GETs
           complete; prints "gets N" and "posted N" (bytes the server's
           window let through for the POST)
  reset    streams opened and reset at once, past the server's budget:
           prints "goaway CODE" (11: ENHANCE_YOUR_CALM)
  trailers a POST to /trailers with a body, then trailer fields (a HEADERS
           frame with END_STREAM): prints the answer's status and body
  rst      a GET of /hang: once the answer's head came, RST_STREAM CANCEL;
           then a GET of /after on the same connection: prints its body
  drop     a GET of /hang: once the answer's head came, the connection is
           closed; prints "dropped"
  continue a POST to /continue with expect: 100-continue and no body until
           the 100 came: prints "100" for it, then the final status and body
"""
import socket
import sys

import h2.config
import h2.connection
import h2.events


def connect(port):
    s = socket.create_connection(('127.0.0.1', port))
    s.settimeout(5)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    s.sendall(c.data_to_send())
    return s, c


def hdrs(path, method='GET'):
    return [(':method', method), (':path', path), (':scheme', 'http'),
            (':authority', 'localhost')]


def noread(port):
    s, c = connect(port)
    c.send_headers(1, hdrs('/noread', 'POST'))
    posted = 0
    body = b'x' * (1 << 20)
    gets = {}
    for i in range(10):
        gets[3 + 2 * i] = False
        c.send_headers(3 + 2 * i, hdrs('/small'), end_stream=True)
    s.sendall(c.data_to_send())
    done = 0
    while done < 10:
        # send what the POST's window allows
        while posted < len(body):
            n = min(c.local_flow_control_window(1), c.max_outbound_frame_size,
                    len(body) - posted)
            if n <= 0:
                break
            c.send_data(1, body[posted:posted + n])
            posted += n
        s.sendall(c.data_to_send())
        try:
            data = s.recv(65536)
        except socket.timeout:
            break
        if not data:
            break
        for e in c.receive_data(data):
            if isinstance(e, h2.events.StreamEnded) and e.stream_id in gets:
                gets[e.stream_id] = True
                done += 1
        s.sendall(c.data_to_send())
    print('gets', done)
    print('posted', posted)


def reset(port):
    s, c = connect(port)
    code = None
    sid = 1
    try:
        for _ in range(2000):
            c.send_headers(sid, hdrs('/hang'), end_stream=True)
            c.reset_stream(sid)
            sid += 2
            s.sendall(c.data_to_send())
        while code is None:
            data = s.recv(65536)
            if not data:
                break
            for e in c.receive_data(data):
                if isinstance(e, h2.events.ConnectionTerminated):
                    code = e.error_code
    except (OSError, h2.exceptions.ProtocolError):
        pass
    print('goaway', int(code) if code is not None else -1)


def answer(s, c, sid, until_head=False):
    """Reads until stream sid's answer ended (or its final head came):
    returns (informational statuses, final status, body)."""
    info, status, body = [], None, b''
    while True:
        data = s.recv(65536)
        if not data:
            raise SystemExit('connection closed before the answer ended')
        for e in c.receive_data(data):
            if getattr(e, 'stream_id', None) != sid:
                continue
            if isinstance(e, h2.events.InformationalResponseReceived):
                info.append(dict(e.headers)[b':status'].decode())
            elif isinstance(e, h2.events.ResponseReceived):
                status = dict(e.headers)[b':status'].decode()
                if until_head:
                    s.sendall(c.data_to_send())
                    return info, status, body
            elif isinstance(e, h2.events.DataReceived):
                body += e.data
                c.acknowledge_received_data(e.flow_controlled_length, sid)
            elif isinstance(e, h2.events.StreamEnded):
                s.sendall(c.data_to_send())
                return info, status, body
            elif isinstance(e, h2.events.StreamReset):
                raise SystemExit('stream %d reset: %s' % (sid, e.error_code))
        s.sendall(c.data_to_send())


def trailers(port):
    s, c = connect(port)
    c.send_headers(1, hdrs('/trailers', 'POST'))
    c.send_data(1, b'hello body')
    c.send_headers(1, [('x-checksum', 'abc123'), ('x-many', 'one'), ('x-many', 'two')],
                   end_stream=True)
    s.sendall(c.data_to_send())
    _, status, body = answer(s, c, 1)
    print(status, body.decode())


def rst(port):
    s, c = connect(port)
    c.send_headers(1, hdrs('/hang'), end_stream=True)
    s.sendall(c.data_to_send())
    answer(s, c, 1, until_head=True)
    c.reset_stream(1, 8)  # CANCEL
    c.send_headers(3, hdrs('/after'), end_stream=True)
    s.sendall(c.data_to_send())
    _, status, body = answer(s, c, 3)
    print(status, body.decode())


def drop(port):
    s, c = connect(port)
    c.send_headers(1, hdrs('/hang'), end_stream=True)
    s.sendall(c.data_to_send())
    answer(s, c, 1, until_head=True)
    s.close()
    print('dropped')


def expect_body(port):
    s, c = connect(port)
    c.send_headers(1, hdrs('/continue', 'POST') + [('expect', '100-continue')])
    s.sendall(c.data_to_send())
    info = []
    while not info:
        data = s.recv(65536)
        if not data:
            raise SystemExit('closed before the 100')
        for e in c.receive_data(data):
            if isinstance(e, h2.events.InformationalResponseReceived):
                info.append(dict(e.headers)[b':status'].decode())
            elif isinstance(e, (h2.events.ResponseReceived, h2.events.StreamReset)):
                raise SystemExit('a final answer (or a reset) before the 100: %r' % e)
        s.sendall(c.data_to_send())
    c.send_data(1, b'x' * 5000, end_stream=True)
    s.sendall(c.data_to_send())
    more, status, body = answer(s, c, 1)
    print(' '.join(info + more), status, body.decode())


if __name__ == '__main__':
    {'noread': noread, 'reset': reset, 'trailers': trailers, 'rst': rst, 'drop': drop,
     'continue': expect_body}[sys.argv[1]](int(sys.argv[2]))
