// Shared by the server tests: a real Server in-process on an ephemeral loopback
// port (sharing one Engine), test images, and a raw TCP client for the requests a
// well-behaved HTTP client would never send.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "candor/server.h"
#include "test_support.h"

namespace candor::test {

inline std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary | std::ios::ate);
  std::string out(static_cast<std::size_t>(std::max<std::streamoff>(0, in.tellg())), '\0');
  in.seekg(0);
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  return out;
}

inline std::string sample(int i) { return read_all(testdata("face-api/sample" + std::to_string(i) + ".jpg")); }

inline std::string jpeg(const cv::Mat& m) {
  std::vector<std::uint8_t> buf;
  cv::imencode(".jpg", m, buf, {cv::IMWRITE_JPEG_QUALITY, 95});
  return {buf.begin(), buf.end()};
}

// One face of a sample photo as a one-face portrait (test_support.h).
inline std::string face_crop(int sample_no, int face_index, float margin) {
  const auto bytes = face_crop_jpeg(sample_no, face_index, margin);
  return {bytes.begin(), bytes.end()};
}

inline std::string base64(const std::string& bytes) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) | (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += t[v >> 18], out += t[(v >> 12) & 63], out += t[(v >> 6) & 63], out += t[v & 63];
  }
  if (i + 1 == bytes.size()) {
    const unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    out += t[v >> 18], out += t[(v >> 12) & 63], out += "==";
  } else if (i + 2 == bytes.size()) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) | (static_cast<unsigned char>(bytes[i + 1]) << 8);
    out += t[v >> 18], out += t[(v >> 12) & 63], out += t[(v >> 6) & 63], out += '=';
  }
  return out;
}

inline std::string error_code(const httplib::Result& r) {
  // Read through const find(): GCC 12 reports a false null dereference in the inlined
  // non-const operator[] / value() path under -Werror (seen with more tests in server_test).
  const auto j = nlohmann::json::parse(r->body, nullptr, false);
  if (!j.is_object()) return "";
  const auto error = j.find("error");
  if (error == j.end() || !error->is_object()) return "";
  const auto code = error->find("code");
  return code != error->end() && code->is_string() ? code->get<std::string>() : "";
}

// A running server in its own temporary directory; its JSON log is captured.
class TestServer {
 public:
  explicit TestServer(const std::function<void(ServerOptions&)>& adjust = {}) {
    static std::atomic<int> counter{0};
    dir_ = std::filesystem::temp_directory_path() /
           ("candor_server_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "web");
    std::ofstream(dir_ / "web" / "index.html") << "<!doctype html><title>console</title>";
    std::ofstream(dir_ / "secret.txt") << "TOP-SECRET-OUTSIDE-WEB-ROOT";
    ServerOptions o;
    o.store_uri = (dir_ / "store.db").string();
    o.port = 0;
    o.engine = &shared_engine();
    o.web_dir = dir_ / "web";
    o.workers = 2;
    o.queue = 8;
    o.max_body_bytes = 4u << 20;
    o.log_sink = [this](std::string_view line) {
      std::lock_guard lock(log_mutex_);
      log_ += line;
    };
    if (adjust) adjust(o);
    auto created = Server::create(o);
    if (!created) throw std::runtime_error("server: " + created.error().message);
    server_ = std::move(*created);
    admin_key = server_->take_bootstrap_key().value();
    thread_ = std::thread([this] { run_status_ = server_->run().ok(); });
    std::string last_body;
    for (int i = 0; i < 500; ++i) {
      int status = 0;
      if (o.tls_cert.empty()) {
        auto r = client().Get("/readyz");
        status = r ? r->status : 0;
        last_body = r ? r->body : httplib::to_string(r.error());
      } else {
        httplib::SSLClient tls("127.0.0.1", server_->port());  // tests verify the certificate themselves
        tls.enable_server_certificate_verification(false);
        auto r = tls.Get("/readyz");
        status = r ? r->status : 0;
      }
      if (status == 200) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    server_->stop();
    thread_.join();
    throw std::runtime_error("server did not become ready (" + last_body + "); its log:\n" + log());
  }
  ~TestServer() {
    server_->stop();
    thread_.join();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", server_->port());
    c.set_read_timeout(60, 0);
    c.set_write_timeout(60, 0);
    return c;
  }
  httplib::Headers auth(const std::string& key = "") const { return {{"X-API-Key", key.empty() ? admin_key : key}}; }
  std::string log() {
    std::lock_guard lock(log_mutex_);
    return log_;
  }
  Server& server() { return *server_; }
  int port() const { return server_->port(); }
  const std::filesystem::path& dir() const { return dir_; }
  bool run_ok() const { return run_status_; }

  httplib::Result post_json(const std::string& path, const nlohmann::json& body, const std::string& key = "") {
    return client().Post(path.c_str(), auth(key), body.dump(), "application/json");
  }
  httplib::Result post_image(const std::string& path, const std::string& field, const std::string& bytes,
                             const std::string& key = "", httplib::MultipartFormDataItems extra = {}) {
    extra.push_back({field, bytes, "photo.jpg", "image/jpeg"});
    return client().Post(path.c_str(), auth(key), extra);
  }
  std::string create_key(const nlohmann::json& spec) {
    auto r = post_json("/v1/keys", spec);
    EXPECT_EQ(r->status, 201) << r->body;
    return nlohmann::json::parse(r->body)["key"];
  }
  void create_collection(const std::string& name) {
    auto r = post_json("/v1/collections", {{"name", name}, {"purpose", "door access"}, {"retention_days", 30}});
    ASSERT_EQ(r->status, 201) << r->body;
  }
  void grant(const std::string& collection, const std::string& subject) {
    auto r = post_json("/v1/collections/" + collection + "/consents",
                       {{"subject", subject}, {"evidence_sha256", std::string(64, 'a')}, {"collected_by", "test"}});
    ASSERT_EQ(r->status, 201) << r->body;
  }

  std::string admin_key;

 private:
  std::filesystem::path dir_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  std::atomic<bool> run_status_{false};
  std::mutex log_mutex_;
  std::string log_;
};

// A suite whose tests share one TestServer, started before its first test and stopped
// after its last (a server start loads the models: seconds).
class SharedServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { srv_ = new TestServer(); }
  static void TearDownTestSuite() {
    delete srv_;
    srv_ = nullptr;
  }
  static inline TestServer* srv_ = nullptr;
};

// A raw TCP connection to the server: byte-exact requests, partial sends, timing.
class RawConn {
 public:
  // Connects to 127.0.0.1:port, from `source_ip` when given (any 127.x.y.z works on Linux).
  explicit RawConn(int port, const char* source_ip = nullptr) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error("socket");
    if (source_ip != nullptr) {
      sockaddr_in src{};
      src.sin_family = AF_INET;
      ::inet_pton(AF_INET, source_ip, &src.sin_addr);
      if (::bind(fd_, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) throw std::runtime_error("bind source");
    }
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_port = htons(static_cast<std::uint16_t>(port));
    ::inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) throw std::runtime_error("connect");
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~RawConn() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  // ensures: false once the peer has closed or reset the connection.
  bool send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  // Whether a byte (or the peer's close) is waiting within `timeout`.
  bool readable(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
  }
  // Everything until the peer closes, or until `timeout` passes (then closed() is false).
  std::string read_until_close(std::chrono::milliseconds timeout) {
    return read_while(timeout, [](const std::string&) { return true; });
  }
  // One response: the headers and a Content-Length body (or what arrived before `timeout`).
  std::string read_response(std::chrono::milliseconds timeout) {
    return read_while(timeout, [](const std::string& out) {
      const auto end = out.find("\r\n\r\n");
      if (end == std::string::npos) return true;
      std::size_t length = 0;
      const auto cl = out.find("Content-Length: ");
      if (cl != std::string::npos && cl < end) length = std::stoul(out.substr(cl + 16));
      return out.size() < end + 4 + length;
    });
  }
  bool closed() const { return closed_; }
  int fd() const { return fd_; }

 private:
  // Reads while `more(what arrived so far)` holds, the peer is open and `timeout` has not passed.
  template <typename More>
  std::string read_while(std::chrono::milliseconds timeout, More more) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[16384];
    while (more(out)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !readable(left)) return out;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        closed_ = true;
        return out;
      }
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }

  int fd_ = -1;
  bool closed_ = false;
};

// "HTTP/1.1 413 Payload Too Large\r\n..." -> 413; 0 when there is no status line.
inline int raw_status(const std::string& response) {
  if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12) return 0;
  return std::atoi(response.c_str() + 9);
}

inline std::string raw_body(const std::string& response) {
  const auto end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

}  // namespace candor::test
