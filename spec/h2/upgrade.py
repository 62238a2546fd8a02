"""Raw cases of the HTTP/1.1 Upgrade to h2c for spec/h2_upgrade_spec.lua,
with Python's h2 (python3-h2) as the client: upgrade.py CASE PORT; prints
what the spec checks.

  eager  one write holds the upgrade request (GET /one), the client
         preface with its SETTINGS, and a second request (GET /two, stream
         3): nothing after the head may be lost. Prints the 101's status
         line, then "stream ID STATUS BODY" for each answer, in stream order
  probe  a GET with the upgrade's headers and the HTTP2-Settings value(s)
         given after PORT: prints the answer's status line
"""
import socket
import sys

import h2.config
import h2.connection
import h2.events


def eager(port):
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = c.initiate_upgrade_connection()
    if isinstance(settings, str):
        settings = settings.encode()
    preface = c.data_to_send()
    c.send_headers(3, [(':method', 'GET'), (':path', '/two'), (':scheme', 'http'),
                       (':authority', '127.0.0.1')], end_stream=True)
    head = (b'GET /one HTTP/1.1\r\nHost: 127.0.0.1\r\n'
            b'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n'
            b'HTTP2-Settings: ' + settings + b'\r\n\r\n')
    s = socket.create_connection(('127.0.0.1', port))
    s.settimeout(10)
    s.sendall(head + preface + c.data_to_send())
    buf = b''
    while b'\r\n\r\n' not in buf:
        d = s.recv(65536)
        if not d:
            raise SystemExit('closed before the 101: %r' % buf)
        buf += d
    head, rest = buf.split(b'\r\n\r\n', 1)
    print(head.split(b'\r\n')[0].decode())
    answers = {1: [None, b''], 3: [None, b'']}
    ended = set()
    data = rest
    while len(ended) < 2:
        for ev in c.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                answers[ev.stream_id][0] = dict(ev.headers)[b':status'].decode()
            elif isinstance(ev, h2.events.DataReceived):
                answers[ev.stream_id][1] += ev.data
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                ended.add(ev.stream_id)
        s.sendall(c.data_to_send())
        if len(ended) < 2:
            data = s.recv(65536)
            if not data:
                raise SystemExit('closed before both answers')
    for sid in sorted(answers):
        print('stream %d %s %s' % (sid, answers[sid][0], answers[sid][1].decode()))
    c.close_connection()
    s.sendall(c.data_to_send())
    s.close()


def probe(port, *settings):
    head = (b'GET /probe HTTP/1.1\r\nHost: 127.0.0.1\r\n'
            b'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n')
    for v in settings:
        head += b'HTTP2-Settings: ' + v.encode() + b'\r\n'
    s = socket.create_connection(('127.0.0.1', port))
    s.settimeout(10)
    s.sendall(head + b'\r\n')
    buf = b''
    while b'\r\n' not in buf:
        d = s.recv(65536)
        if not d:
            raise SystemExit('closed before an answer: %r' % buf)
        buf += d
    print(buf.split(b'\r\n')[0].decode())
    s.close()


if __name__ == '__main__':
    case = {'eager': eager, 'probe': probe}[sys.argv[1]]
    case(int(sys.argv[2]), *sys.argv[3:])
