#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ (run from anywhere).

Each seed is one byte of settings (what each target makes of it is at the top
of its .c file) followed by the bytes of the peer: RFC 9112 and RFC 6455
examples, pipelined requests, chunked bodies with trailers, smuggling shapes,
control frames inside fragmented messages. run.sh fuzzes a copy of these;
the committed corpus never grows.
"""
import os
import shutil
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, cfg, data):
    """cfg: the settings byte, or a list of them."""
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("latin-1")
    blob = bytes(cfg if isinstance(cfg, list) else [cfg]) + data
    assert len(blob) < 2048, (target, name, len(blob))
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob)


def frame(op, payload=b"", fin=True, mask=None, rsv=0, ext=None):
    """An RFC 6455 frame; mask is 4 bytes or None; ext forces the 16 or 64 bit
    length form."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    b0 = (0x80 if fin else 0) | rsv | op
    n = len(payload)
    mbit = 0x80 if mask else 0
    if ext == 64 or n >= 65536:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    elif ext == 16 or n >= 126:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | n])
    if mask:
        head += mask
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return head + payload


M = b"\x37\xfa\x21\x3d"  # the mask of RFC 6455 5.7's examples
M2 = b"\x01\x02\x03\x04"


def close_payload(code, reason=b""):
    return struct.pack(">H", code) + reason


def http_head():
    t = "fuzz_http_head"
    # settings: bits 0-1 the head's byte limit (16384, 8192, 200, 40),
    # bits 2-4 the field limit (100, default, 1, 2, 12, 13, 24, 5)
    write(t, "get", 0, "GET /hello.txt HTTP/1.1\r\nUser-Agent: curl/7.64.1\r\n"
          "Host: www.example.com\r\nAccept-Language: en, mi\r\n\r\n")
    write(t, "pipelined", 0, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
          "HEAD /b?x=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
          "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
    write(t, "post_length", 0, "POST /form HTTP/1.1\r\nHost: a\r\n"
          "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\n")
    write(t, "post_chunked", 0, "POST /up HTTP/1.1\r\nHost: a\r\n"
          "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
    write(t, "smuggle_cl_te", 0, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n"
          "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nG")
    write(t, "smuggle_two_cl", 0, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n"
          "Content-Length: 5\r\n\r\n")
    write(t, "smuggle_te_list", 0, "POST / HTTP/1.1\r\nHost: a\r\n"
          "Transfer-Encoding: gzip, chunked\r\n\r\n"
          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
          "Transfer-Encoding: identity\r\n\r\n")
    write(t, "obs_fold", 0, "GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n")
    write(t, "space_colon", 0, "GET / HTTP/1.1\r\nHost : a\r\n\r\n")
    write(t, "http10", 0, "GET / HTTP/1.0\r\n\r\nPOST / HTTP/1.0\r\n"
          "Transfer-Encoding: chunked\r\n\r\n")
    write(t, "targets", 0, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
          "GET http://example.com/x HTTP/1.1\r\nHost: example.com\r\n\r\n"
          "GET x HTTP/1.1\r\nHost: a\r\n\r\n")
    write(t, "upgrade", 0, "GET /chat HTTP/1.1\r\nHost: server.example.com\r\n"
          "Upgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    write(t, "bare_cr", 0, "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n")
    write(t, "small_limits", 2 | (3 << 2), "GET /a/long/target?with=query HTTP/1.1\r\n"
          "Host: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n")


def chunked():
    t = "fuzz_chunked"
    # settings: bits 0-2 the trailer limit (16384, 1, 2, 3, 16, 64, 255, 256),
    # bits 3-4 how many trailer fields may be returned (64, 0, 1, 2)
    write(t, "rfc9112", 0, "4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n")
    write(t, "extensions", 0, "5;name=value\r\nhello\r\n6 ; a=\"q\";b\r\n world\r\n"
          "0;last\r\n\r\n")
    write(t, "trailers", 0, "3\r\nabc\r\n0\r\nExpires: Wed, 21 Oct 2015 07:28:00 GMT\r\n"
          "X-Sum:\t1 \r\n\r\nGET / HTTP/1.1\r\n")
    write(t, "trailers_small", 4 | (2 << 3), "1\r\nx\r\n0\r\nA: 1\r\nB: 2\r\n\r\n")
    write(t, "hex_case", 0, "a\r\n0123456789\r\nA\r\n0123456789\r\n00\r\n\r\n")
    write(t, "bad_size", 0, "g\r\nhello\r\n0\r\n\r\n")
    write(t, "bad_data_end", 0, "5\r\nhelloX\r\n0\r\n\r\n")
    write(t, "bare_lf", 0, "5\nhello\n0\n\n")
    write(t, "overflow", 0, "10000000000000000\r\n")
    write(t, "ws_then_ext", 0, "5 \t;x\r\nhello\r\n5 \r\n")
    write(t, "trailer_lf", 0, "0\r\nA: 1\nB: 2\r\n\r\n")
    write(t, "trailer_fold", 0, "0\r\nA: 1\r\n 2\r\n\r\n")


def ws_frame():
    t = "fuzz_ws_frame"
    # settings: bit 0 a server (frames must be masked); bits 1-3 max_frame
    # (none, 125, 126, 127, 65535, 65536, 1000, 1); bits 4-5 max_message
    # (none, 1, 200, 70000); bit 6 RSV1 allowed
    # RFC 6455 5.7, as a client and as a server receives them
    write(t, "rfc_text_unmasked", 0, bytes.fromhex("810548656c6c6f"))
    write(t, "rfc_text_masked", 1, bytes.fromhex("818537fa213d7f9f4d5158"))
    write(t, "rfc_fragments", 0, bytes.fromhex("010348656c") + bytes.fromhex("80026c6f"))
    write(t, "rfc_ping_pong", 1, frame(9, "Hello", mask=M) + frame(10, "Hello", mask=M))
    write(t, "rfc_256_binary", 0, frame(2, bytes(range(256))))
    write(t, "fragments_ping_inside", 1,
          frame(1, "frag", fin=False, mask=M) + frame(9, "", mask=M2) +
          frame(0, "ment", fin=False, mask=M) + frame(10, "p", mask=M2) +
          frame(0, "ed", mask=M) + frame(2, bytes(300), mask=M2))
    write(t, "utf8_split", 1, frame(1, b"\xce", fin=False, mask=M) +
          frame(0, b"\xba\xe1\xbd\xb9\xcf", fin=False, mask=M) +
          frame(0, b"\x83\xce\xbc\xce\xb5\xf0\x9f\x98\x80", mask=M))
    write(t, "utf8_bad", 1, frame(1, b"ok \xed\xa0\x80 surrogate", mask=M))
    write(t, "close_code_reason", 1, frame(8, close_payload(1000, b"bye"), mask=M))
    write(t, "close_empty", 1, frame(9, "", mask=M) + frame(8, "", mask=M))
    write(t, "close_bad", 0, frame(8, b"\x03"))
    write(t, "errors", 1, frame(1, "x", mask=M, rsv=0x40) + frame(3, "", mask=M))
    write(t, "non_minimal", 0, frame(2, "short", ext=16) + frame(2, "x", ext=64))
    write(t, "limits", 1 | (1 << 1) | (2 << 4), frame(2, bytes(130), mask=M) +
          frame(2, bytes(100), fin=False, mask=M) + frame(0, bytes(101), mask=M))


def http_response():
    t = "fuzz_http_response"
    # settings: bits 0-1 the request's method (GET, HEAD, CONNECT, POST),
    # bit 2 small limits (120 bytes, 3 fields), bit 3 a body limit of 40
    write(t, "length", 0, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
          "Content-Length: 5\r\n\r\nhelloHTTP/1.1 204 No Content\r\n\r\n")
    write(t, "chunked_trailers", 0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
          "Trailer: X-Sum\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Sum: 42\r\n\r\nrest")
    write(t, "continue_then_200", 3, "HTTP/1.1 100 Continue\r\n\r\n"
          "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
          "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    write(t, "eof_body", 0, "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nuntil the end")
    write(t, "head", 1, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    write(t, "nobody", 0, "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n")
    write(t, "switching", 0, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
          "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
          "\x81\x02hi")
    write(t, "connect", 2, "HTTP/1.1 200 Connection established\r\n\r\ntunnel bytes")
    write(t, "te_and_cl", 0, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
          "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    write(t, "te_not_chunked", 0, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz")
    write(t, "body_limit", 8, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
          "20\r\n" + "a" * 32 + "\r\n20\r\n" + "b" * 32 + "\r\n0\r\n\r\n")
    write(t, "bad", 0, "HTTP/2 200 OK\r\n\r\nHTTP/1.1 200 OK\rX\r\n\r\n")


def http_conn():
    t = "fuzz_http_conn"
    # settings: bit 0 small limits; bits 1-2 the transport's write limit
    # (none, none, 100, 3000); bit 3 make room at the end; bit 4 a graceful
    # stop at the end. The handler is picked by the path's first letter (see
    # handler_kind in fuzz_http_conn.c).
    H = "Host: example.com\r\n"
    write(t, "echo_pipelined", 0, "GET /hello HTTP/1.1\r\n" + H + "\r\n"
          "HEAD /hello HTTP/1.1\r\n" + H + "\r\n"
          "GET /bye HTTP/1.1\r\n" + H + "Connection: close\r\n\r\n"
          "GET /never HTTP/1.1\r\n" + H + "\r\n")
    write(t, "read_length", 0, "POST /read HTTP/1.1\r\n" + H +
          "Content-Length: 11\r\n\r\nhello world"
          "POST /read HTTP/1.1\r\n" + H + "Content-Length: 0\r\n\r\n")
    write(t, "read_chunked_trailers", 0, "POST /trailers HTTP/1.1\r\n" + H +
          "Transfer-Encoding: chunked\r\n\r\n"
          "4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Sum: 9\r\nX-Two: 2\r\n\r\n"
          "GET /after HTTP/1.1\r\n" + H + "\r\n")
    write(t, "partial_then_drain", 0, "POST /p2 HTTP/1.1\r\n" + H +
          "Content-Length: 40\r\n\r\n" + "x" * 40 +
          "POST /p0 HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n"
          "a\r\n0123456789\r\n0\r\n\r\nGET /n HTTP/1.1\r\n" + H + "\r\n")
    write(t, "echo_ignores_body", 1, "POST /a HTTP/1.1\r\n" + H +
          "Content-Length: 30\r\n\r\n" + "y" * 30 +
          "POST /a HTTP/1.1\r\n" + H + "Content-Length: 80\r\n\r\n" + "z" * 80)
    write(t, "stream_chunked", 2 << 1, "GET /stream HTTP/1.1\r\n" + H + "\r\n"
          "GET /length HTTP/1.1\r\n" + H + "\r\n"
          "GET /over HTTP/1.1\r\n" + H + "\r\n")
    write(t, "stream_http10", 0, "GET /stream HTTP/1.0\r\n\r\n")
    write(t, "upgrade_and_tunnel", 0, "GET /upgrade HTTP/1.1\r\n" + H +
          "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x80abcd")
    write(t, "tunnel", 3 << 1, "GET /w HTTP/1.1\r\n" + H +
          "Upgrade: echo\r\nConnection: Upgrade\r\n\r\nraw bytes after the head")
    write(t, "fail_mid_answer", 0, "GET /fail HTTP/1.1\r\n" + H + "\r\n"
          "GET /error HTTP/1.1\r\n" + H + "\r\n")
    write(t, "error_500", 0, "GET /error HTTP/1.1\r\n" + H + "\r\n")
    write(t, "broken_chunked", 0, "POST /broken HTTP/1.1\r\n" + H +
          "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n\r\n")
    write(t, "expect_continue", 0, "POST /read HTTP/1.1\r\n" + H +
          "Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc"
          "POST /a HTTP/1.1\r\n" + H + "Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc")
    write(t, "misc_handlers", 1 | 8, "GET /defer HTTP/1.1\r\n" + H + "\r\n"
          "GET /close HTTP/1.1\r\n" + H + "\r\n")
    write(t, "bad_heads", 0, "GET /x HTTP/1.1\r\n" + H + "\r\n"
          "POST / HTTP/1.1\r\n" + H + "Content-Length: 6\r\n"
          "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nG")
    write(t, "reset_mid_body", 32, "POST /read HTTP/1.1\r\n" + H +
          "Content-Length: 100\r\n\r\nonly part of it")
    write(t, "writes_fail", 64 | (2 << 1), "GET /stream HTTP/1.1\r\n" + H + "\r\n"
          "GET /g HTTP/1.1\r\n" + H + "\r\n" "GET /w HTTP/1.1\r\n" + H +
          "Upgrade: echo\r\nConnection: upgrade\r\n\r\necho these bytes back")
    write(t, "teardown_mid_body", 128, "POST /read HTTP/1.1\r\n" + H +
          "Content-Length: 100\r\n\r\nonly part of it")
    write(t, "teardown_draining", 128 | (2 << 1), "POST /p1 HTTP/1.1\r\n" + H +
          "Transfer-Encoding: chunked\r\n\r\n20\r\n" + "d" * 32 + "\r\n10\r\npart")
    write(t, "teardown_tunnel", 128, "GET /w HTTP/1.1\r\n" + H +
          "Upgrade: echo\r\nConnection: upgrade\r\n\r\nbytes in the tunnel")
    write(t, "more_handlers", 16, "GET /xbad HTTP/1.1\r\n" + H + "\r\n"
          "GET /nobody HTTP/1.1\r\n" + H + "\r\nGET /g HTTP/1.1\r\n" + H + "\r\n"
          "GET /k HTTP/1.1\r\n" + H + "\r\nGET /idle HTTP/1.1\r\n" + H + "\r\n")


def ws_conn():
    t = "fuzz_ws_conn"
    # settings: bit 0 a client (else a server); bits 1-2 max_frame (none,
    # 125, 1000, 65536); bits 3-4 max_message (none, 200, 1, 5000); bits 5-6
    # the transport's write limit (none, 50, 300, 3000); bit 7 the byte
    # stream handler (else messages; "frag", "close", "fail", "ping", "skip"
    # at the start of a text message ask the handler for something). Second
    # byte: bit 0 a reset at the end, bit 1 writes fail from the middle on.
    write(t, "echo", [0, 0], frame(1, "Hello", mask=M) + frame(2, bytes(range(200)), mask=M2) +
          frame(8, close_payload(1000, b"done"), mask=M))
    write(t, "fragments_pings", [0, 0],
          frame(1, "frag", fin=False, mask=M) + frame(9, "p1", mask=M2) +
          frame(0, "ment", fin=False, mask=M) + frame(9, "", mask=M2) +
          frame(0, "ed", mask=M) + frame(10, "unsolicited", mask=M2) +
          frame(1, "frag: echoed piece by piece", mask=M))
    write(t, "utf8_split_across_frames", [0, 0],
          frame(1, b"\xce", fin=False, mask=M) + frame(0, b"\xba\xe1\xbd", fin=False, mask=M) +
          frame(0, b"\xb9\xcf\x83\xce\xbc\xce\xb5", mask=M))
    write(t, "utf8_bad", [0, 0], frame(1, "frag fine, then ", fin=False, mask=M) +
          frame(0, b"\xed\xa0\x80", mask=M))
    write(t, "we_close", [0, 0], frame(1, "close", mask=M) + frame(1, "dropped", mask=M) +
          frame(9, "no pong now", mask=M2) + frame(8, close_payload(1000), mask=M))
    write(t, "we_fail", [0, 0], frame(1, "fail", mask=M))
    write(t, "teardown_mid_message", [0, 4], frame(1, "Hello", mask=M) +
          frame(2, b"half of a fragmented message", fin=False, mask=M))
    write(t, "teardown_byte_stream", [0x80, 4], frame(2, b"bytes", mask=M) + b"\x82\xff")
    write(t, "reset_and_broken_writes", [0, 3], frame(1, "Hello", mask=M) +
          frame(9, "ping", mask=M2) + frame(1, "frag then reset", fin=False, mask=M))
    write(t, "we_ping_skip", [0, 0], frame(1, "ping me", mask=M) + frame(10, "ping me", mask=M2) +
          frame(1, "skip this one", fin=False, mask=M) + frame(0, "and this", mask=M) +
          frame(2, b"kept", mask=M2))
    write(t, "empty_close", [0, 0], frame(9, "", mask=M) + frame(8, "", mask=M))
    write(t, "bad_close", [0, 0], frame(8, close_payload(1005), mask=M))
    write(t, "unmasked_from_client", [0, 0], frame(1, "x"))
    write(t, "limits", [(1 << 1) | (1 << 3), 0], frame(2, bytes(100), fin=False, mask=M) +
          frame(0, bytes(100), fin=False, mask=M) + frame(0, bytes(1), mask=M))
    write(t, "backpressure_pings", [1 << 5, 0], b"".join(frame(9, bytes([i]) * 100, mask=M)
                                                 for i in range(8)) +
          frame(2, bytes(400), mask=M2))
    write(t, "client_side", [1, 0], frame(1, "Hello") + frame(9, "Hello") +
          frame(8, close_payload(1001, b"going away")))
    write(t, "byte_stream", [0x80 | (2 << 5), 0], frame(2, b"first ", fin=False, mask=M) +
          frame(9, "", mask=M2) + frame(0, b"second", mask=M) + frame(1, "third", mask=M) +
          frame(2, bytes(600), mask=M2))
    # Second byte bit 3: permessage-deflate; bits 4-5 its mode (takeover,
    # none, window 9, our window 8). RSV1 (0x40) marks compressed messages.
    hello = b"\xf2\x48\xcd\xc9\xc9\x07\x00"  # RFC 7692's "Hello"
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    big = (z.compress(b"frag " + bytes(70000)) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]
    again = (z.compress(b"Hello again " * 50) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]
    write(t, "deflate_rfc7692", [0, 8], frame(1, hello, rsv=0x40, mask=M) +
          frame(1, b"\xf2\x48\xcd", fin=False, rsv=0x40, mask=M) + frame(9, "p", mask=M2) +
          frame(0, b"\xc9\xc9\x07\x00", mask=M) +
          frame(1, b"\xf2\x00\x11\x00\x00", rsv=0x40, mask=M2) +
          frame(2, b"\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00", rsv=0x40, mask=M) +
          frame(1, b"\xf3\x48\xcd\xc9\xc9\x07\x00\x00", rsv=0x40, mask=M) +
          frame(1, "plain", mask=M))
    write(t, "deflate_fragments", [0, 8], frame(1, big[:100], fin=False, rsv=0x40, mask=M) +
          frame(0, big[100:], mask=M2) + frame(1, again, rsv=0x40, mask=M))
    write(t, "deflate_no_takeover", [0, 8 | 16], frame(1, hello, rsv=0x40, mask=M) +
          frame(1, hello, rsv=0x40, mask=M2))
    write(t, "deflate_window9_bomb", [3 << 3, 8 | 32], frame(2, big, rsv=0x40, mask=M))
    write(t, "deflate_bytes_window8", [0x80, 8 | 48], frame(2, big, rsv=0x40, mask=M) +
          frame(2, b"short", mask=M2))
    write(t, "deflate_client", [1, 8], frame(1, hello, rsv=0x40) + frame(2, b"\xff\xff", rsv=0x40))
    write(t, "deflate_bad_rsv1", [0, 8], frame(1, b"x", fin=False, rsv=0x40, mask=M) +
          frame(0, b"y", rsv=0x40, mask=M))


# Inputs that found bugs (settings byte included), kept as seeds so that
# every run replays them.
REGRESSIONS = [
    ('fuzz_http_head', 'regress_field_split', b'(GET /a HTTP/1.1\r\nHost: a\r\n\r\nHEAD /b?x=0 HTTP/1.1\r\nHost: a\r\nCofnez\xddtion:;close\r\n\r\nOPTIONS * HTTP/2.1\r\nHost: a\r\n\r\n'),
    ('fuzz_http_response', 'regress_body_max_eof', b"\x08HTTP/1.1 200 OK\r\nTransfer-Encodin2g: chunked\r\n\r\n20\r\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n20\r\nbbbbbbb'bbbbbbbbbbbbbbbbbbb+bbbbb\r\n0\r\n\r\n"),
    ('fuzz_http_response', 'regress_status_range', b'\x08HTTP/1.1 2 * OK\r\nTransfer-Encoding: chunked\r\n\r\n20\r\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n20\r\nbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n0\r\n\r\n'),
    ('fuzz_http_conn', 'regress_werr_idle', b'zPOST /p2 HTTP/1.1\r\nHost: example.kom\r\nContent-Length: 40\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxxxx35426789\r\n0\r\n\r\nGET /n HTTP/1.1\r\nHost: example.com\r\n\r\n'),
    ('fuzz_http_conn', 'regress_eof_unread_head', b'\x06GET /w HTTP/1.1\r\nHost: example.com\r\nUost: example.com\r\nUpgrade: echo\r\nConnection: Upgradr the head'),
]


def regressions():
    for target, name, blob in REGRESSIONS:
        write(target, name, blob[0], blob[1:])


def multipart():
    t = "fuzz_multipart"
    # settings: bits 0-1 the boundary ("b", "boundary", "----x=y", "AaB03x"),
    # bits 2-3 max_parts (1000, 1, 2, 3), bits 4-5 max_header_bytes (16384,
    # 2, 20, 100), bit 6 read 2 bytes of each part, bit 7 a byte per consume
    write(t, "rfc7578", 3, "--AaB03x\r\n"
          "Content-Disposition: form-data; name=\"submit-name\"\r\n\r\nLarry\r\n"
          "--AaB03x\r\nContent-Disposition: form-data; name=\"files\"; "
          "filename=\"file1.txt\"\r\nContent-Type: text/plain\r\n\r\n"
          "... contents of file1.txt ...\r\n--AaB03x--\r\n")
    write(t, "preamble_epilogue", 1, "preamble\r\n--boundary \t\r\nA: 1\r\n\r\n"
          "data\r\n--boundary--\r\nepilogue")
    write(t, "awkward", 0, "--b\r\n\r\n\r\n-\r\n--\r\n--c\r\r\n--b\r\n\r\n\r\n--b--")
    write(t, "skip_and_bytes", 0x80 | 0x40 | 2, "------x=y\r\nX: y\r\n\r\n0123456789"
          "\r\n-----x=y\r\n\r\nabc\r\n-----x=y--")
    write(t, "limits", (2 << 2) | (2 << 4), "--b\r\nA: 1\r\n\r\n\r\n--b\r\n"
          "A-long-name: a long value\r\n\r\n\r\n--b\r\n\r\n\r\n--b--")
    write(t, "broken", 0, "--b\r\nA: 1\r\n 2\r\n\r\n--bX")


def inflate():
    """fuzz_inflate: gzip (cfg bit 0 clear) and zlib (set) streams; bits 1-3
    the limit, bits 4-5 the output buffer."""
    import gzip
    import zlib
    t = "fuzz_inflate"
    text = b"alpha bravo charlie delta echo " * 40
    write(t, "gzip", 3 << 1 | 2 << 4, gzip.compress(text))
    write(t, "gzip_small_limit", 2 << 1, gzip.compress(text))
    write(t, "gzip_two_members", 5 << 1 | 1 << 4, gzip.compress(b"one ") + gzip.compress(b"two"))
    write(t, "zlib", 1 | 4 << 1 | 3 << 4, zlib.compress(text, 9))
    write(t, "zlib_trailing", 1 | 3 << 1, zlib.compress(b"abc") + b"junk")
    write(t, "bomb", 5 << 1 | 3 << 4, gzip.compress(bytes(1 << 20), 9))
    sync = zlib.compressobj(6, zlib.DEFLATED, 31)
    write(t, "gzip_sync_flushed", 3 << 1, sync.compress(text) + sync.flush(zlib.Z_SYNC_FLUSH))
    write(t, "truncated", 6 << 1, gzip.compress(text)[:40])
    write(t, "not_gzip", 0, b"hello, world")


def main():
    for target in os.listdir(CORPUS) if os.path.isdir(CORPUS) else []:
        shutil.rmtree(os.path.join(CORPUS, target))
    http_head()
    chunked()
    ws_frame()
    http_response()
    http_conn()
    ws_conn()
    multipart()
    inflate()
    regressions()


if __name__ == "__main__":
    main()
