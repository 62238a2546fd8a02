#!/usr/bin/python3
"""Writes tests/fuzz/corpus/fuzz_h2/: client connections made with Python's
h2 (Debian's python3-h2), each under a few settings bytes (fuzz_h2.c)."""
import os

import h2.config
import h2.connection

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'fuzz_h2')


def conn():
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    return c


def hdrs(path, method='GET', extra=()):
    return [(':method', method), (':path', path), (':scheme', 'http'),
            (':authority', 'example.org')] + list(extra)


def seeds():
    c = conn()
    c.send_headers(1, hdrs('/z'), end_stream=True)
    c.send_headers(3, hdrs('/zd'), end_stream=True)
    yield 'zip', c.data_to_send()
    c = conn()
    c.send_headers(1, hdrs('/h'), end_stream=True)
    c.send_headers(3, hdrs('/t'), end_stream=True)
    c.send_headers(5, hdrs('/b'), end_stream=True)
    yield 'get_three', c.data_to_send()
    c = conn()
    c.send_headers(1, hdrs('/e', 'POST', [('content-length', '10')]))
    c.send_data(1, b'0123456789', end_stream=True)
    c.send_headers(3, hdrs('/h'), end_stream=True)
    yield 'post_echo', c.data_to_send()
    c = conn()
    for i in range(1, 40, 2):
        c.send_headers(i, hdrs('/w'), end_stream=True)
        c.reset_stream(i)
    yield 'rapid_reset', c.data_to_send()
    c = conn()
    c.send_headers(1, hdrs('/e', 'POST'))
    c.send_data(1, b'x' * 16000)
    c.ping(b'12345678')
    c.increment_flow_control_window(100000)
    c.send_headers(3, hdrs('/r'), end_stream=True)
    c.send_headers(5, hdrs('/x'), end_stream=True)
    c.end_stream(1)
    yield 'mixed', c.data_to_send()
    c = conn()
    c.send_headers(1, hdrs('/h', extra=[('x-big', 'a' * 1000)]), end_stream=True)
    c.close_connection()
    yield 'big_head_goaway', c.data_to_send()


def upgraded():
    """After an HTTP/1.1 Upgrade: h2c (bit 6): stream 1 is the server's."""
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_upgrade_connection()
    c.send_headers(3, hdrs('/h'), end_stream=True)
    c.send_headers(5, hdrs('/e', 'POST', [('content-length', '3')]))
    c.send_data(5, b'abc', end_stream=True)
    return c.data_to_send()


os.makedirs(OUT, exist_ok=True)
for name, data in seeds():
    # h2 writes the preface itself: bit 0 clear.
    for cfg in (0, 2, 4, 8, 32, 34):
        with open(os.path.join(OUT, '%s_%02x' % (name, cfg)), 'wb') as f:
            f.write(bytes([cfg]) + data)
for cfg in (0x40, 0x42, 0x60):
    with open(os.path.join(OUT, 'upgraded_%02x' % cfg), 'wb') as f:
        f.write(bytes([cfg]) + upgraded())
# The whole input is also tried as an HTTP2-Settings value: base64url of
# MAX_CONCURRENT_STREAMS 100 and INITIAL_WINDOW_SIZE 65535 ('A', the
# settings byte, is 0x41: preface in front, upgraded).
with open(os.path.join(OUT, 'settings_b64'), 'wb') as f:
    f.write(b'AAMAAABkAAQAAP__')
