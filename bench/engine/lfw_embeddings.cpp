#include "engine/lfw_embeddings.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <opencv2/core/utility.hpp>

namespace candor::bench {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// "LNDN": each template is followed by its norm (Face::embedding_norm). A cache of the
// earlier format ("LNDC", templates only) does not read, so it is computed again rather
// than grouped without norms.
constexpr std::uint32_t kCacheMagic = 0x4e444e4c;

struct Cached {
  std::vector<float> vector;
  float norm = 0;
};

bool read_cache(const std::filesystem::path& file, std::unordered_map<std::string, Cached>& out) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return false;
  std::uint32_t magic = 0, count = 0, dim = 0;
  in.read(reinterpret_cast<char*>(&magic), 4).read(reinterpret_cast<char*>(&count), 4).read(reinterpret_cast<char*>(&dim), 4);
  if (!in || magic != kCacheMagic || dim > 4096) return false;
  for (std::uint32_t i = 0; i < count; ++i) {
    std::uint32_t len = 0;
    in.read(reinterpret_cast<char*>(&len), 4);
    if (!in || len > 4096) return false;
    std::string key(len, '\0');
    in.read(key.data(), len);
    std::uint8_t has = 0;
    in.read(reinterpret_cast<char*>(&has), 1);
    Cached c;
    if (has) {
      c.vector.resize(dim);
      in.read(reinterpret_cast<char*>(c.vector.data()), static_cast<std::streamsize>(dim * sizeof(float)));
      in.read(reinterpret_cast<char*>(&c.norm), sizeof c.norm);
    }
    if (!in) return false;
    out.emplace(std::move(key), std::move(c));
  }
  return true;
}

void write_cache(const std::filesystem::path& file, const ImageTemplates& r) {
  std::uint32_t dim = 0;
  for (const auto& t : r.templates) dim = std::max<std::uint32_t>(dim, static_cast<std::uint32_t>(t.size()));
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  const auto count = static_cast<std::uint32_t>(r.keys.size());
  out.write(reinterpret_cast<const char*>(&kCacheMagic), 4).write(reinterpret_cast<const char*>(&count), 4)
      .write(reinterpret_cast<const char*>(&dim), 4);
  for (std::size_t i = 0; i < r.keys.size(); ++i) {
    const auto len = static_cast<std::uint32_t>(r.keys[i].size());
    out.write(reinterpret_cast<const char*>(&len), 4).write(r.keys[i].data(), len);
    const std::uint8_t has = r.templates[i].size() == dim ? 1 : 0;
    out.write(reinterpret_cast<const char*>(&has), 1);
    if (has) {
      out.write(reinterpret_cast<const char*>(r.templates[i].data()), static_cast<std::streamsize>(dim * sizeof(float)));
      out.write(reinterpret_cast<const char*>(&r.norms[i]), sizeof r.norms[i]);
    }
  }
}

const Face* centre_face(const std::vector<Face>& faces, const cv::Mat& image) {
  const cv::Point2f c(static_cast<float>(image.cols) / 2, static_cast<float>(image.rows) / 2);
  const Face* best = nullptr;
  float best_d = 0;
  for (const Face& f : faces) {
    const cv::Point2f d = f.box.center() - c;
    const float dist = d.dot(d);
    if (best == nullptr || dist < best_d) best = &f, best_d = dist;
  }
  return best;
}

}  // namespace

ImageTemplates embed_lfw_images(const EngineOptions& options, const std::filesystem::path& root,
                                const std::vector<std::string>& keys, int threads,
                                const std::filesystem::path& cache) {
  ImageTemplates r;
  r.keys = keys;
  r.templates.resize(keys.size());
  r.norms.assign(keys.size(), 0.0F);
  if (!cache.empty()) {
    std::unordered_map<std::string, Cached> cached;
    if (read_cache(cache, cached)) {
      bool complete = true;
      for (std::size_t i = 0; i < keys.size() && complete; ++i) {
        auto it = cached.find(keys[i]);
        if (it == cached.end()) complete = false;
        else r.templates[i] = it->second.vector, r.norms[i] = it->second.norm;
      }
      if (complete) {
        std::cerr << "templates: " << keys.size() << " read from cache " << cache << "\n";
        return r;
      }
    }
  }
  EngineOptions opts = options;
  opts.replicas = threads;
  auto engine = Engine::create(opts);
  if (!engine) {
    std::cerr << "candor: " << error_code_name(engine.error().code) << ": " << engine.error().message << "\n";
    std::exit(1);
  }
  cv::setNumThreads(1);  // parallel over images, one core each
  std::atomic<std::size_t> next{0}, done{0}, no_face{0}, unreadable{0};
  std::mutex totals_mutex;
  const auto start = Clock::now();
  auto worker = [&] {
    StageTotals local;
    for (std::size_t i; (i = next++) < keys.size();) {
      auto t = Clock::now();
      auto image = read_image(root / "lfw" / keys[i]);
      local.decode_ms += ms_since(t);
      if (!image) { ++unreadable; continue; }
      t = Clock::now();
      auto faces = (*engine)->detect_boxes(*image);
      if (faces.empty()) {
        DetectOptions low;
        low.score_threshold = 0.3f;
        faces = (*engine)->detect_boxes(*image, low);
      }
      local.detect_ms += ms_since(t);
      Face face;
      if (const Face* f = centre_face(faces, *image)) {
        face = *f;
      } else {
        // LFW's labelled face is centred and about 40% of the frame.
        ++no_face;
        const float w = static_cast<float>(image->cols), h = static_cast<float>(image->rows);
        face.box = {0.3f * w, 0.28f * h, 0.4f * w, 0.46f * h};
      }
      t = Clock::now();
      (*engine)->locate_landmarks(*image, std::span<Face>(&face, 1));
      local.landmarks_ms += ms_since(t);
      t = Clock::now();
      (*engine)->embed(*image, std::span<Face>(&face, 1));
      local.embed_ms += ms_since(t);
      r.templates[i] = std::move(face.embedding);
      r.norms[i] = face.embedding_norm;
      const std::size_t n = ++done;
      if (n % 1000 == 0) std::cerr << "templates: " << n << "/" << keys.size() << "\n";
    }
    std::lock_guard lock(totals_mutex);
    r.totals.decode_ms += local.decode_ms;
    r.totals.detect_ms += local.detect_ms;
    r.totals.landmarks_ms += local.landmarks_ms;
    r.totals.embed_ms += local.embed_ms;
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, threads); ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  r.wall_seconds = ms_since(start) / 1000.0;
  r.no_face = no_face;
  r.unreadable = unreadable;
  if (!cache.empty()) write_cache(cache, r);
  return r;
}

}  // namespace candor::bench
