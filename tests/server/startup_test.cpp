// The server's start-up configuration: TLS (a certificate made at test time), and
// the refusals that protect the encrypted templates (a missing or unusable key
// file stops `candor serve` with a clear message instead of minting a new key).
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "../common/run_command.h"
#include "candor/store.h"
#include "server_test_util.h"

namespace candor::test {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / ("candor_tls_test_" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    // A self-signed certificate for 127.0.0.1, made now (nothing secret is committed).
    const auto [status, out] =
        run_command("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
            "-keyout " + (*dir_ / "key.pem").string() + " -out " + (*dir_ / "cert.pem").string());
    openssl_ok_ = status == 0;
    if (!openssl_ok_) std::cerr << out;
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  void SetUp() override {
    if (!openssl_ok_) GTEST_SKIP() << "the openssl command could not make a certificate";
  }
  static fs::path cert() { return *dir_ / "cert.pem"; }
  static fs::path key() { return *dir_ / "key.pem"; }
  static void with_tls(ServerOptions& o) {
    o.tls_cert = cert();
    o.tls_key = key();
    o.header_timeout_s = 2;
  }
  static std::unique_ptr<httplib::SSLClient> tls_client(const TestServer& srv) {
    auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", srv.port());
    c->set_ca_cert_path(cert().c_str());
    c->enable_server_certificate_verification(true);
    c->set_read_timeout(30, 0);
    return c;
  }
  static fs::path* dir_;
  static bool openssl_ok_;
};
fs::path* TlsTest::dir_ = nullptr;
bool TlsTest::openssl_ok_ = false;

// Requests over TLS succeed with the certificate verified, keys and bodies included.
TEST_F(TlsTest, HttpsRequestsSucceedWithTheCertificateVerified) {
  TestServer srv(with_tls);
  EXPECT_EQ(srv.server().url().rfind("https://", 0), 0u);
  auto client = tls_client(srv);
  httplib::SSLClient& c = *client;
  auto health = c.Get("/healthz");
  ASSERT_TRUE(health) << httplib::to_string(health.error());
  EXPECT_EQ(health->status, 200);
  EXPECT_FALSE(health->get_header_value("Content-Security-Policy").empty());
  auto list = c.Get("/v1/collections", srv.auth());
  ASSERT_TRUE(list);
  EXPECT_EQ(list->status, 200);
  // An upload through TLS (several TLS records) is read whole.
  auto detect = c.Post("/v1/detect", srv.auth(), httplib::MultipartFormDataItems{{"image", sample(1), "s.jpg", "image/jpeg"}});
  ASSERT_TRUE(detect);
  ASSERT_EQ(detect->status, 200) << detect->body;
  EXPECT_EQ(nlohmann::json::parse(detect->body)["faces"].size(), 3u);
  // Keep-alive: several requests on one TLS connection.
  c.set_keep_alive(true);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(c.Get("/healthz")->status, 200);
  // curl agrees, with its own TLS stack and the certificate as the only CA.
  const auto [status, out] = run_command("curl -sS --max-time 20 --cacert " + cert().string() + " https://127.0.0.1:" +
                                 std::to_string(srv.port()) + "/healthz");
  if (status != 127) {  // 127: curl is not installed
    EXPECT_EQ(status, 0) << out;
    EXPECT_NE(out.find("\"ok\""), std::string::npos) << out;
  }
}

// A client that does not trust the certificate is refused by its own verification.
TEST_F(TlsTest, UntrustedCertificateFailsVerification) {
  TestServer srv(with_tls);
  httplib::SSLClient c("127.0.0.1", srv.port());
  c.enable_server_certificate_verification(true);
  c.set_ca_cert_path("/nonexistent-ca.pem");
  EXPECT_FALSE(c.Get("/healthz"));
}

// Plain HTTP to the TLS port gets no HTTP answer, and the server keeps serving TLS.
TEST_F(TlsTest, PlainHttpToTheTlsPortFails) {
  TestServer srv(with_tls);
  httplib::Client plain("127.0.0.1", srv.port());
  plain.set_read_timeout(5, 0);
  auto r = plain.Get("/healthz");
  EXPECT_TRUE(!r || r->status != 200);
  RawConn raw(srv.port());
  ASSERT_TRUE(raw.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  const std::string answer = raw.read_until_close(milliseconds(5000));
  EXPECT_EQ(raw_status(answer), 0) << answer.substr(0, 100);
  EXPECT_EQ(answer.find("\"ok\""), std::string::npos);
  EXPECT_EQ(tls_client(srv)->Get("/healthz")->status, 200);
}

// A TLS handshake that stalls is cut off at the header deadline like a slow request.
TEST_F(TlsTest, StalledHandshakeIsCutOff) {
  TestServer srv(with_tls);
  RawConn raw(srv.port());
  ASSERT_TRUE(raw.send(std::string("\x16\x03\x01", 3)));  // the start of a ClientHello, then nothing
  const auto t0 = std::chrono::steady_clock::now();
  raw.read_until_close(milliseconds(6000));
  EXPECT_TRUE(raw.closed());
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 4.0);
  EXPECT_EQ(tls_client(srv)->Get("/healthz")->status, 200);
}

TEST_F(TlsTest, HalfAPairOrUnreadableFilesAreRefused) {
  auto options = [](const fs::path& c, const fs::path& k) {
    ServerOptions o;
    o.store_uri = (*dir_ / ("half-" + std::to_string(::rand()) + ".db")).string();
    o.port = 0;
    o.engine = &shared_engine();
    o.tls_cert = c;
    o.tls_key = k;
    o.log_sink = [](std::string_view) {};
    return o;
  };
  auto only_cert = Server::create(options(cert(), ""));
  ASSERT_FALSE(only_cert);
  EXPECT_EQ(only_cert.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(only_cert.error().message.find("--tls-key"), std::string::npos) << only_cert.error().message;
  auto only_key = Server::create(options("", key()));
  ASSERT_FALSE(only_key);
  EXPECT_EQ(only_key.error().code, ErrorCode::kInvalidArgument);
  auto missing = Server::create(options(*dir_ / "nope.pem", key()));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kIoError);
  auto swapped = Server::create(options(key(), cert()));  // the key where the certificate goes
  ASSERT_FALSE(swapped);
  EXPECT_EQ(swapped.error().code, ErrorCode::kIoError);
}

// ---------------------------------------------------------------- the template key at start-up

// A store holding templates whose key file has gone: `candor serve` (and the Server
// it creates) refuses with a message saying what to do, and creates no new key.
TEST(StartupKeyFile, MissingOrUnusableKeyFileStopsTheServerWithoutANewKey) {
  const fs::path dir = fs::temp_directory_path() / ("candor_startup_key_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string db = (dir / "candor.db").string();
  const std::string key_file = db + ".key";
  {
    // A store with a face, keyed by the default file beside it (what `candor serve` uses).
    ::unsetenv("CANDOR_KEY");
    StoreOptions so;
    so.use_env_key = false;
    auto store = open_store(db, so);
    ASSERT_TRUE(store) << store.error().message;
    NewCollection c;
    c.name = "staff";
    c.purpose = "door access";
    c.retention_days = 30;
    ASSERT_TRUE((*store)->create_collection(c, {"test", "setup"}));
    NewConsent consent{"staff", "alice", "door access", std::string(64, 'a'), "hr", std::nullopt, std::nullopt};
    ASSERT_TRUE((*store)->grant_consent(consent, {"test", "setup"}));
    NewFace f;
    f.embedding.assign(512, 0.044f);
    f.image_sha256 = std::string(64, 'b');
    f.model_id = "test";
    ASSERT_TRUE((*store)->enroll("staff", "alice", {f}, {"test", "setup"}));
  }
  ASSERT_TRUE(fs::exists(key_file));
  const fs::path saved = dir / "saved.key";
  fs::rename(key_file, saved);

  ServerOptions o;
  o.store_uri = db;
  o.port = 0;
  o.engine = &shared_engine();
  o.log_sink = [](std::string_view) {};
  auto server = Server::create(o);
  ASSERT_FALSE(server) << "the server started without the store's key";
  EXPECT_NE(server.error().message.find("Refusing"), std::string::npos) << server.error().message;
  EXPECT_FALSE(fs::exists(key_file)) << "a new key was minted";

#ifdef CANDOR_BINARY
  // The command line says the same on stderr and exits 1, before loading any model.
  const auto [status, out] = run_command(std::string(CANDOR_BINARY) + " serve --port 0 --store " + db);
  EXPECT_EQ(status, 1) << out;
  EXPECT_NE(out.find("candor: not_found:"), std::string::npos) << out;
  EXPECT_NE(out.find("restore the key file or set CANDOR_KEY"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(key_file)) << "a new key was minted";
  // A directory where the key file should be is refused too.
  fs::create_directory(key_file);
  const auto [status2, out2] = run_command(std::string(CANDOR_BINARY) + " serve --port 0 --store " + db);
  EXPECT_EQ(status2, 1) << out2;
  EXPECT_NE(out2.find("not a regular file"), std::string::npos) << out2;
  fs::remove(key_file);
#endif

  // With the key file back, the server starts and the template is there.
  fs::rename(saved, key_file);
  auto restored = Server::create(o);
  ASSERT_TRUE(restored) << restored.error().message;
  restored->reset();
  auto store = open_store(db, StoreOptions{});
  ASSERT_TRUE(store);
  auto faces = (*store)->load_faces("staff");
  ASSERT_TRUE(faces) << faces.error().message;
  EXPECT_EQ(faces->size(), 1u);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace candor::test
