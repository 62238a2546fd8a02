// transports, Boost.Beast: the length-prefixed echo (a 4-byte big-endian
// length, then that many bytes, sent back as they came) over four
// transports, single-threaded and asynchronous on one io_context:
//   PORT     WebSocket  (each message is one record; echoed as one frame)
//   WSS      WebSocket over TLS
//   TCP      TCP        (read the length, then the bytes, write both back)
//   TLS      TLS over TCP
// TLS is OpenSSL's (Boost.Asio ssl), TLS 1.2, with CERT and KEY.
//   beast_lp PORT CERT KEY WSS TCP TLS
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = beast::error_code;

static const std::size_t MAX = 1 << 30;

// Raw records over a stream (a socket, or a TLS stream on one).
template <class Stream>
struct Raw : std::enable_shared_from_this<Raw<Stream>> {
  Stream s;
  unsigned char head[4];
  std::vector<char> body;
  template <class... Args>
  explicit Raw(Args &&...args) : s(std::forward<Args>(args)...) {}

  void read_head() {
    auto self = this->shared_from_this();
    asio::async_read(s, asio::buffer(head), [self](error_code ec, std::size_t) {
      if (ec) return;
      std::size_t n = std::size_t(self->head[0]) << 24 | std::size_t(self->head[1]) << 16 |
                      std::size_t(self->head[2]) << 8 | self->head[3];
      if (n > MAX) return;
      self->body.resize(n);
      asio::async_read(self->s, asio::buffer(self->body), [self](error_code ec, std::size_t) {
        if (ec) return;
        std::array<asio::const_buffer, 2> out{asio::buffer(self->head),
                                              asio::buffer(self->body)};
        asio::async_write(self->s, out, [self](error_code ec, std::size_t) {
          if (!ec) self->read_head();
        });
      });
    });
  }
};

// WebSocket messages, each echoed as one binary frame.
template <class Stream>
struct Ws : std::enable_shared_from_this<Ws<Stream>> {
  websocket::stream<Stream> ws;
  beast::flat_buffer buf;
  template <class... Args>
  explicit Ws(Args &&...args) : ws(std::forward<Args>(args)...) {}

  void start() {
    ws.read_message_max(MAX);
    ws.auto_fragment(false);
    ws.binary(true);
    auto self = this->shared_from_this();
    ws.async_accept([self](error_code ec) {
      if (!ec) self->read();
    });
  }
  void read() {
    auto self = this->shared_from_this();
    ws.async_read(buf, [self](error_code ec, std::size_t) {
      if (ec) return;
      self->ws.async_write(self->buf.data(), [self](error_code ec, std::size_t) {
        if (ec) return;
        self->buf.consume(self->buf.size());
        self->read();
      });
    });
  }
};

template <class F>
static void accept_loop(std::shared_ptr<tcp::acceptor> a, F on_socket) {
  a->async_accept([a, on_socket](error_code ec, tcp::socket sock) {
    if (!ec) {
      sock.set_option(tcp::no_delay(true));
      on_socket(std::move(sock));
    }
    accept_loop(a, on_socket);
  });
}

static std::shared_ptr<tcp::acceptor> listen(asio::io_context &io, int port) {
  auto a = std::make_shared<tcp::acceptor>(io);
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), (unsigned short)port);
  a->open(ep.protocol());
  a->set_option(asio::socket_base::reuse_address(true));
  a->bind(ep);
  a->listen(4096);
  return a;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: beast_lp PORT CERT KEY WSS TCP TLS\n");
    return 2;
  }
  int port = std::atoi(argv[1]);
  asio::io_context io(1);
  ssl::context tls(ssl::context::tls_server);
  tls.set_options(ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  SSL_CTX_set_max_proto_version(tls.native_handle(), TLS1_2_VERSION);
  tls.use_certificate_chain_file(argv[2]);
  tls.use_private_key_file(argv[3], ssl::context::pem);

  // The plain TCP port last: the harness starts measuring once PORT accepts,
  // so every port listens before that one.
  auto wss = listen(io, std::atoi(argv[4])), raw = listen(io, std::atoi(argv[5])),
       raws = listen(io, std::atoi(argv[6]));
  accept_loop(wss, [&tls](tcp::socket sock) {
    auto w = std::make_shared<Ws<ssl::stream<tcp::socket>>>(std::move(sock), tls);
    w->ws.next_layer().async_handshake(ssl::stream_base::server, [w](error_code ec) {
      if (!ec) w->start();
    });
  });
  accept_loop(raw, [](tcp::socket sock) {
    std::make_shared<Raw<tcp::socket>>(std::move(sock))->read_head();
  });
  accept_loop(raws, [&tls](tcp::socket sock) {
    auto r = std::make_shared<Raw<ssl::stream<tcp::socket>>>(std::move(sock), tls);
    r->s.async_handshake(ssl::stream_base::server, [r](error_code ec) {
      if (!ec) r->read_head();
    });
  });
  auto ws = listen(io, port);
  accept_loop(ws, [](tcp::socket sock) {
    std::make_shared<Ws<tcp::socket>>(std::move(sock))->start();
  });
  io.run();
}
