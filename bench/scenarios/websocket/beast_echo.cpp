// websocket, Boost.Beast: a single-threaded asynchronous echo server.
//   beast_echo PORT        (listens on 127.0.0.1:PORT, WebSocket on any path)
//
// One io_context run by the main thread (a concurrency hint of 1, so Asio
// skips its locking), one session object per connection: accept the
// upgrade, then read a whole message into a flat_buffer and write it back
// as one frame, and again. Beast cuts outgoing messages into frames of
// write_buffer_bytes (4 KiB) by default; auto_fragment(false) sends each
// echo as a single frame, as a Beast user tuning for throughput would.
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <cstdio>
#include <cstdlib>
#include <memory>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ws = boost::beast::websocket;
using tcp = asio::ip::tcp;

class Session : public std::enable_shared_from_this<Session> {
 public:
  explicit Session(tcp::socket sock) : stream_(std::move(sock)) {}

  void Start() {
    stream_.next_layer().set_option(tcp::no_delay(true));
    stream_.read_message_max(1024 * 1024 * 1024);  // as rill's ws_echo.lua
    stream_.auto_fragment(false);
    stream_.async_accept([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->Read();
    });
  }

 private:
  void Read() {
    stream_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (!ec) self->Echo();
    });
  }

  void Echo() {
    stream_.binary(stream_.got_binary());
    stream_.async_write(buffer_.data(),
                        [self = shared_from_this()](beast::error_code ec, std::size_t) {
                          if (ec) return;
                          self->buffer_.consume(self->buffer_.size());
                          self->Read();
                        });
  }

  ws::stream<tcp::socket> stream_;
  beast::flat_buffer buffer_;
};

// Accepts connections for ever, each into a Session of its own.
static void Accept(tcp::acceptor& acceptor) {
  acceptor.async_accept([&acceptor](beast::error_code ec, tcp::socket sock) {
    if (!ec) std::make_shared<Session>(std::move(sock))->Start();
    Accept(acceptor);
  });
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: beast_echo PORT\n");
    return 2;
  }
  asio::io_context ioc(1);
  tcp::endpoint where(asio::ip::make_address("127.0.0.1"),
                      static_cast<unsigned short>(std::atoi(argv[1])));
  tcp::acceptor acceptor(ioc, where);  // binds and listens (SOMAXCONN), SO_REUSEADDR
  Accept(acceptor);
  // SIGTERM (the harness's stop) ends the loop, so the process exits 0.
  asio::signal_set signals(ioc, SIGTERM, SIGINT);
  signals.async_wait([&ioc](beast::error_code, int) { ioc.stop(); });
  ioc.run();
  return 0;
}
