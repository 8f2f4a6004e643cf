// Shared fixtures for the store tests: a temporary directory per test, a
// settable clock, synthetic faces, and raw SQLite access for tampering.
#pragma once

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "candor/crypto.h"
#include "candor/library_store.h"
#include "candor/store.h"

namespace candor::test {

inline constexpr std::string_view kPurpose = "door access for staff, building A";
inline constexpr std::string_view kTestKey = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "candor-store-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A clock tests can move; shared so the store's copy sees the changes.
struct TestClock {
  std::shared_ptr<std::atomic<std::int64_t>> ms =
      std::make_shared<std::atomic<std::int64_t>>(1'700'000'000'000);  // Nov 2023
  std::function<TimePoint()> fn() const {
    auto p = ms;
    return [p] { return TimePoint(std::chrono::milliseconds(p->load())); };
  }
  TimePoint now() const { return TimePoint(std::chrono::milliseconds(ms->load())); }
  void advance_days(int days) { *ms += static_cast<std::int64_t>(days) * 86'400'000; }
};

inline StoreOptions options_with_key(const TestClock* clock = nullptr) {
  StoreOptions o;
  o.key_hex = std::string(kTestKey);
  o.use_env_key = false;
  o.durability = Durability::kNormal;  // tests exercise logic, not fsync
  if (clock != nullptr) o.clock = clock->fn();
  return o;
}

inline std::unique_ptr<Store> open_or_die(const std::string& path, const StoreOptions& options) {
  Result<std::unique_ptr<Store>> s = open_store(path, options);
  if (!s) throw std::runtime_error("open_store failed: " + s.error().message);
  return std::move(s).value();
}

inline std::vector<float> synthetic_embedding(std::uint32_t seed, std::size_t dim = 512) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0F, 1.0F);
  std::vector<float> v(dim);
  for (float& x : v) x = n(rng);
  return v;
}

inline NewFace synthetic_face(std::uint32_t seed, std::size_t dim = 512) {
  NewFace f;
  f.embedding = synthetic_embedding(seed, dim);
  f.box = FaceBox{10, 20, 100, 120};
  f.detector_score = 0.98F;
  f.quality_level = "good";
  f.quality_json = R"({"sharpness":0.8})";
  f.image_sha256 = sha256_hex("image-" + std::to_string(seed));
  f.model_id = "arcface-r100-test";
  return f;
}

inline AuditContext who(std::string reason = "test") { return AuditContext{"tester", std::move(reason)}; }

// A camera stream on the "staff" collection whose source and outputs hold secrets
// (a password, a webhook secret): what the streams and key-rotation tests seal.
inline constexpr const char* kSecretSource = "rtsp://cam:Hunter2-x9@10.0.0.5/h264";
inline NewStream door_stream() {
  NewStream s;
  s.name = "door-1";
  s.source = kSecretSource;
  s.source_redacted = "rtsp://***@10.0.0.5/h264";
  s.collection = "staff";
  s.purpose = std::string(kPurpose);
  s.reason = "door 1 entry control";
  s.outputs_json = R"({"webhook":{"url":"http://h/x","secret":"0123456789abcdef-secret"}})";
  s.outputs_redacted_json = R"({"webhook":{"url":"http://h/x"}})";
  s.created_by = "key:ops";
  return s;
}

// A photo library "family" in `store` holding one photo, /photos/a.jpg, with a face of
// each template (64-d, side by side); the photo's result.
inline Result<AddedPhoto> family_library_with(Store& store, const std::vector<std::vector<float>>& templates) {
  const AuditContext owner{"test:owner", "my photos"};
  if (auto made = store.library().create_library(NewPhotoLibrary{"family", "owner", 365}, owner); !made) {
    return made.error();
  }
  LibraryPhoto photo;
  photo.path = "/photos/a.jpg";
  photo.sha256 = std::string(64, 'a');
  photo.size = 10;
  photo.ingested = true;
  std::vector<NewLibraryFace> faces;
  for (std::size_t i = 0; i < templates.size(); ++i) {
    faces.push_back(NewLibraryFace{FaceBox{10.0F + 80.0F * static_cast<float>(i), 10, 50, 60}, 0.99F, templates[i],
                                   "synthetic-64"});
  }
  return store.library().add_photo("family", photo, faces, owner);
}

inline NewCollection staff_collection(std::string name = "staff") {
  NewCollection c;
  c.name = std::move(name);
  c.purpose = std::string(kPurpose);
  c.retention_days = 30;
  c.match_threshold = 0.4F;
  return c;
}

inline NewConsent consent_for(std::string subject, std::string collection = "staff") {
  NewConsent c;
  c.collection = std::move(collection);
  c.subject = std::move(subject);
  c.purpose = std::string(kPurpose);
  c.evidence_sha256 = sha256_hex("signed form of " + c.subject);
  c.collected_by = "hr-desk";
  return c;
}

// Creates the "staff" collection, grants "alice" consent and enrolls `faces` synthetic
// faces for her, one per call; returns their templates in enrollment order.
inline std::vector<std::vector<float>> enroll_alice(Store& s, int faces) {
  EXPECT_TRUE(s.create_collection(staff_collection(), who()).ok());
  EXPECT_TRUE(s.grant_consent(consent_for("alice"), who()).ok());
  std::vector<std::vector<float>> out;
  for (int i = 0; i < faces; ++i) {
    NewFace f = synthetic_face(static_cast<std::uint32_t>(100 + i));
    out.push_back(f.embedding);
    EXPECT_TRUE(s.enroll("staff", "alice", {f}, who()).ok());
  }
  return out;
}

// A store reopened after a crash or a failure, and the faces of "staff" it holds.
struct ReopenedStore {
  std::unique_ptr<Store> store;
  std::set<FaceId> stored;
};

// Reopens the store at `path` and checks what must hold whatever happened to it before:
// the audit chain verifies, every face of "staff" decrypts to a `dim`-d template, and
// the faces stored are exactly those that successful enroll entries of the audit name.
inline ReopenedStore reopen_and_check(const std::string& path, std::size_t dim) {
  ReopenedStore out{open_or_die(path, options_with_key()), {}};
  Result<AuditVerification> v = out.store->audit_verify();
  EXPECT_TRUE(v.ok() && v->intact) << (v.ok() ? v->summary() : v.error().message);
  Result<std::vector<FaceRecord>> faces = out.store->load_faces("staff");
  EXPECT_TRUE(faces.ok()) << faces.error().message;  // every stored template decrypts
  if (faces.ok()) {
    for (const FaceRecord& f : *faces) {
      out.stored.insert(f.id);
      EXPECT_EQ(f.embedding.size(), dim);
    }
  }
  AuditFilter filter;
  filter.operation = "enroll";
  Result<std::vector<AuditEntry>> entries = out.store->audit_list(filter);
  EXPECT_TRUE(entries.ok());
  std::set<FaceId> audited;
  if (entries.ok()) {
    for (const AuditEntry& e : *entries) {
      if (e.result != "ok") continue;
      const nlohmann::json details = nlohmann::json::parse(e.details);  // named: the loop must not outlive it
      for (const auto& x : details.at("face_ids")) audited.insert(x.get<FaceId>());
    }
  }
  EXPECT_EQ(out.stored, audited) << "a face without its audit entry, or an entry without its face";
  return out;
}

// Raw access for tampering, bypassing the Store.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) throw std::runtime_error("raw open failed");
    sqlite3_busy_timeout(db_, 5000);
  }
  ~RawDb() { sqlite3_close(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;
  void exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err != nullptr ? err : "?";
      sqlite3_free(err);
      throw std::runtime_error("raw exec failed: " + msg + " in " + sql);
    }
  }
  std::int64_t scalar(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) throw std::runtime_error("prepare");
    std::int64_t v = -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
  }

 private:
  sqlite3* db_ = nullptr;
};

}  // namespace candor::test
