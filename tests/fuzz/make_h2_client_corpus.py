#!/usr/bin/python3
"""Writes tests/fuzz/corpus/fuzz_h2_client/: server bytes for the client
role (fuzz_h2_client.c), frames and HPACK written by hand (static-table
entries and literals without indexing), each under a few settings bytes."""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'fuzz_h2_client')

DATA, HEADERS, RST, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS = 1, 1, 4


def frame(typ, flags, sid, payload=b''):
    n = len(payload)
    return struct.pack('>BHBBI', n >> 16, n & 0xffff, typ, flags, sid) + payload


def string(b):  # an HPACK string, no Huffman: a 7-bit prefix length
    n, out = len(b), b''
    if n < 127:
        return bytes([n]) + b
    out, n = bytes([127]), n - 127
    while n >= 128:
        out, n = out + bytes([(n & 127) | 128]), n >> 7
    return out + bytes([n]) + b


def lit(name, value):  # a literal field without indexing, new name
    return bytes([0]) + string(name) + string(value)


def status(code):
    static = {200: 0x88, 204: 0x89, 206: 0x8a, 304: 0x8b, 400: 0x8c, 404: 0x8d, 500: 0x8e}
    if code in static:
        return bytes([static[code]])
    return bytes([0x08, 3]) + str(code).encode()  # literal, :status's name indexed


def head(sid, code, extra=b'', end=False):
    return frame(HEADERS, END_HEADERS | (END_STREAM if end else 0), sid, status(code) + extra)


def answer(sid, body=b'hello', code=200):
    return head(sid, code, lit(b'x-test', b'yes')) + frame(DATA, END_STREAM, sid, body)


def seeds():
    s = frame(SETTINGS, 0, 0, struct.pack('>HI', 3, 100)) + frame(SETTINGS, ACK, 0)
    yield 'four_answers', s + answer(1) + answer(3) + head(5, 200, end=True) + answer(7, b'10')
    yield 'interim_trailers', s + head(1, 100) + head(1, 103, lit(b'link', b'</a>')) + \
        head(1, 200) + frame(DATA, 0, 1, b'abc') + \
        frame(HEADERS, END_HEADERS | END_STREAM, 1, lit(b'grpc-status', b'0'))
    yield 'reset_goaway', s + answer(1) + frame(RST, 0, 3, struct.pack('>I', 2)) + \
        frame(GOAWAY, 0, 0, struct.pack('>II', 3, 0)) + answer(3)
    yield 'windows', s + frame(PING, 0, 0, b'12345678') + \
        frame(WINDOW_UPDATE, 0, 0, struct.pack('>I', 100000)) + \
        frame(WINDOW_UPDATE, 0, 7, struct.pack('>I', 100000)) + answer(7, b'x' * 5000)
    yield 'continuation', s + frame(HEADERS, 0, 1, status(404)) + \
        frame(CONTINUATION, END_HEADERS, 1, lit(b'x-big', b'a' * 200)) + \
        frame(DATA, END_STREAM, 1, b'nope') + head(3, 204, end=True)
    yield 'bad', s + head(1, 200) + frame(DATA, END_STREAM, 1, b'x' * 70000) + \
        frame(HEADERS, END_HEADERS, 2, status(200))


os.makedirs(OUT, exist_ok=True)
for name, data in seeds():
    for cfg in (0, 1, 2, 4, 8, 16, 6):
        with open(os.path.join(OUT, '%s_%02x' % (name, cfg)), 'wb') as f:
            f.write(bytes([cfg]) + data)
