#include "library/library_bench.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "candor/library.h"
#include "engine/lfw_bench.h"
#include "engine/lfw_embeddings.h"
#include "engine/lfw_ident.h"
#include "index/gallery.h"
#include "library/cluster_metrics.h"
#include "library/ingest_bench.h"

namespace candor::bench {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// User plus system CPU seconds of this process so far: on a shared machine the wall
// time of a run depends on the other load, its CPU time much less.
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // Linux reports KiB
}

// LFW under CANDOR_SHARED_DIR when set at run time, else where the build was told.
std::filesystem::path lfw_root() {
  if (const char* dir = std::getenv("CANDOR_SHARED_DIR"); dir != nullptr && *dir != '\0') {
    return std::filesystem::path(dir) / "datasets" / "lfw";
  }
  return default_lfw();
}

struct LibraryArgs {
  std::filesystem::path root = lfw_root();
  std::filesystem::path cache;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string spec = kDefaultGroupingSpec;
  std::string index_spec;  // empty: GroupingOptions' default
  bool tune = false;
  std::vector<std::string> grid;  // --tune: these specs instead of the built-in grid
  bool tune_only = false;
  bool local_grid = false;  // --tune: the grid over local too
  bool qual_grid = false;   // --tune: the grid over the quality term (qual, qref) and merge
  bool json = false;
  std::size_t synthetic = 0;
  std::size_t add = 1000;
  int runs = 3;
  std::size_t ingest = 0;  // photos of the ingest bench (ingest_bench.h)
};

GroupingOptions grouping_options(const LibraryArgs& a, const std::string& spec) {
  GroupingOptions o;
  o.spec = spec;
  if (!a.index_spec.empty()) o.index_spec = a.index_spec;
  o.threads = a.threads;
  return o;
}

// The faces of LFW that have a template: one face per image, each image its own photo.
struct LfwFaces {
  std::size_t dim = 0;
  std::vector<std::size_t> image;       // index into the keys
  std::vector<std::int64_t> person;     // the truth
  std::vector<bool> first_half;         // the person's name starts with A-M
  std::vector<float> vectors;           // row-major
  std::vector<float> norms;             // Face::embedding_norm

  // The grouping's view of face i: its id is i, its photo the image's.
  GroupingFace face(std::size_t i) const {
    return {static_cast<std::int64_t>(i), static_cast<std::int64_t>(image[i]), norms[i]};
  }
  void append_vector(std::size_t i, std::vector<float>& out) const {
    out.insert(out.end(), vectors.begin() + static_cast<std::ptrdiff_t>(i * dim),
               vectors.begin() + static_cast<std::ptrdiff_t>((i + 1) * dim));
  }
};

LfwFaces lfw_faces(const std::vector<std::string>& keys, const std::vector<std::vector<float>>& templates,
                   const std::vector<float>& norms) {
  LfwFaces f;
  const std::vector<PersonImages> people = group_by_person(keys);
  for (std::size_t p = 0; p < people.size(); ++p) {
    for (std::size_t i : people[p]) {
      if (templates[i].empty()) continue;
      f.dim = templates[i].size();
      f.image.push_back(i);
      f.person.push_back(static_cast<std::int64_t>(p));
      f.first_half.push_back(std::toupper(static_cast<unsigned char>(keys[i][0])) <= 'M');
      f.vectors.insert(f.vectors.end(), templates[i].begin(), templates[i].end());
      f.norms.push_back(norms[i]);
    }
  }
  return f;
}

// Candor's grouping of a subset of the faces (positions into f); labels per position.
std::vector<std::int64_t> group_subset(const LfwFaces& f, const std::vector<std::size_t>& subset,
                                       const GroupingOptions& o) {
  std::vector<GroupingFace> faces;
  std::vector<float> vectors;
  for (std::size_t i : subset) {
    faces.push_back(f.face(i));
    f.append_vector(i, vectors);
  }
  auto grouped = group_faces(static_cast<int>(f.dim), faces, vectors, {}, o);
  if (!grouped) die(grouped.error().message);
  std::vector<std::int64_t> labels;
  for (std::size_t i : subset) labels.push_back(grouped->at(static_cast<std::int64_t>(i)));
  return labels;
}

ClusterScores score_subset(const LfwFaces& f, const std::vector<std::size_t>& subset,
                           const std::vector<std::int64_t>& labels) {
  std::vector<std::int64_t> truth;
  for (std::size_t i : subset) truth.push_back(f.person[i]);
  return score_clusters(labels, truth);
}

nlohmann::json scores_json(const ClusterScores& s) {
  return {{"bcubed_precision", s.bcubed_precision}, {"bcubed_recall", s.bcubed_recall}, {"bcubed_f", s.bcubed_f},
          {"pair_f", s.pair_f}, {"groups", s.groups}};
}

void print_row(const std::string& name, const std::string& setting, const ClusterScores& s) {
  std::printf("%-44s %-22s %6.4f %6.4f %6.4f  %6.4f  %6zu\n", name.c_str(), setting.c_str(), s.bcubed_precision,
              s.bcubed_recall, s.bcubed_f, s.pair_f, s.groups);
}

std::string fixed(double v, int decimals = 2) {
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", decimals, v);
  return text;
}

// The spec with the best BCubed F on the tuning subset, over a grid of edge, merge and
// grow (--local-grid: also local, the merge values then centred on 0.50 - 0.28 * local,
// as the local term adds local times a face's local scale, at least 0.28; --qual-grid:
// qual, qref and merge at the default edge and grow).
std::string tune_spec(const LibraryArgs& a, const LfwFaces& f, const std::vector<std::size_t>& tuning) {
  std::string best;
  double best_f = -1;
  std::vector<std::string> grid = a.grid;
  if (grid.empty()) {
    if (a.local_grid) {
      for (double edge = 0.52; edge <= 0.5601; edge += 0.02) {
        for (double local : {0.0, 0.25, 0.5}) {
          for (int step = -2; step <= 2; ++step) {
            const double merge = 0.50 - 0.28 * local + 0.01 * step;
            for (double grow : {0.0, 0.1, 0.2}) {
              grid.push_back("cw,k=24,edge=" + fixed(edge) + ",sharp=10,merge=" + fixed(merge) + ",grow=" +
                             fixed(grow) + ",local=" + fixed(local) + ",iter=20");
            }
          }
        }
      }
    } else if (a.qual_grid) {
      // The quality term (library.h, qual=): weights and reference ratios around where a
      // lowered bar starts to let weak faces in, with the merge bar it then wants.
      for (double qual : {0.0, 0.2, 0.3, 0.4}) {
        for (double qref : {0.9, 0.95, 1.0}) {
          if (qual == 0 && qref != 1.0) continue;
          for (double merge = 0.50; merge <= 0.5301; merge += 0.01) {
            grid.push_back("cw,k=24,edge=0.54,sharp=10,merge=" + fixed(merge) + ",grow=0.1,qual=" + fixed(qual) +
                           ",qref=" + fixed(qref) + ",iter=20");
          }
        }
      }
    } else {
      for (double edge = 0.50; edge <= 0.5601; edge += 0.02) {
        for (double merge = 0.48; merge <= 0.5201; merge += 0.02) {
          for (double grow : {0.0, 0.1, 0.2}) {
            grid.push_back("cw,k=24,edge=" + fixed(edge) + ",sharp=10,merge=" + fixed(merge) + ",grow=" +
                           fixed(grow) + ",iter=20");
          }
        }
      }
    }
  }
  for (const std::string& spec : grid) {
    const ClusterScores s = score_subset(f, tuning, group_subset(f, tuning, grouping_options(a, spec)));
    std::printf("tune A-M  %-50s BCubed P %.4f R %.4f F %.4f  groups %zu\n", spec.c_str(), s.bcubed_precision,
                s.bcubed_recall, s.bcubed_f, s.groups);
    std::fflush(stdout);
    if (s.bcubed_f > best_f) best_f = s.bcubed_f, best = spec;
  }
  std::printf("tuned on A-M: %s (BCubed F %.4f)\n", best.c_str(), best_f);
  return best;
}

struct Swept {
  float threshold = 0;
  ClusterScores scores;
};

template <typename Labels>
Swept sweep(const std::vector<std::int64_t>& truth, float lo, float hi, Labels&& labels) {
  Swept best;
  best.scores.bcubed_f = -1;
  for (float t = lo; t <= hi + 1e-4F; t += 0.01F) {
    const ClusterScores s = score_clusters(labels(t), truth);
    if (s.bcubed_f > best.scores.bcubed_f) best = {t, s};
  }
  return best;
}

void run_lfw(const EngineOptions& options, const LibraryArgs& a) {
  require_lfw(a.root);
  const std::vector<std::string> keys = all_lfw_keys(a.root);
  const ImageTemplates t = embed_lfw_images(options, a.root, keys, a.threads, a.cache);
  const LfwFaces f = lfw_faces(keys, t.templates, t.norms);
  const std::size_t n = f.person.size();
  std::vector<std::size_t> all(n), am, nz;
  std::iota(all.begin(), all.end(), 0);
  for (std::size_t i = 0; i < n; ++i) (f.first_half[i] ? am : nz).push_back(i);
  std::printf("LFW: %zu images of %lld people (%zu without a template); tuning set A-M %zu images, "
              "test set N-Z %zu images\n",
              n, static_cast<long long>(f.person.back() + 1), keys.size() - n, am.size(), nz.size());

  const std::string spec = a.tune ? tune_spec(a, f, am) : a.spec;
  if (a.tune_only) return;
  const GroupingOptions o = grouping_options(a, spec);
  nlohmann::json j = {{"images", n}, {"spec", spec}, {"index", o.index_spec}};
  std::printf("\n%-44s %-22s %6s %6s %6s  %6s  %6s\n", "algorithm", "setting", "B3 P", "B3 R", "B3 F", "pair F",
              "groups");
  for (const auto& [name, subset] : {std::pair{"A-M (tuning set)", &am}, std::pair{"N-Z", &nz}, std::pair{"all", &all}}) {
    const auto start = Clock::now();
    const std::vector<std::int64_t> labels = group_subset(f, *subset, o);
    const double s = seconds_since(start);
    const ClusterScores scores = score_subset(f, *subset, labels);
    print_row(std::string("Candor, ") + name, "spec tuned on A-M", scores);
    j["candor"][name] = scores_json(scores);
    j["candor"][name]["seconds"] = s;
  }

  // The baselines, each at its best threshold on all of LFW (optimistic for them).
  const std::vector<std::int64_t>& truth = f.person;
  const std::vector<float> sim = similarity_matrix(f.vectors, n, f.dim);
  const std::vector<ScoredPair> pairs = pairs_at_least(sim, n, 0.35F);
  const Swept cw = sweep(truth, 0.45F, 0.60F, [&](float x) { return chinese_whispers_baseline(pairs, n, x); });
  print_row("Chinese whispers, pairs >= t (dlib)", "t=" + fixed(cw.threshold), cw.scores);
  const Dendrogram tree = average_linkage(sim, n);
  const Swept avg = sweep(truth, 0.35F, 0.55F, [&](float x) { return cut(tree, n, x); });
  print_row("average linkage, cut at t", "t=" + fixed(avg.threshold), avg.scores);
  const Swept cc = sweep(truth, 0.45F, 0.65F, [&](float x) { return connected_components(pairs, n, x); });
  print_row("connected components, pairs >= t", "t=" + fixed(cc.threshold), cc.scores);
  const Swept immich = sweep(truth, 0.35F, 0.60F, [&](float x) { return immich_rule(sim, n, x); });
  print_row("Immich's rule (minFaces 3)", "maxDistance=" + fixed(immich.threshold), immich.scores);
  for (const auto& [name, s] : {std::pair{"chinese_whispers", &cw}, std::pair{"average_linkage", &avg},
                                std::pair{"connected_components", &cc}, std::pair{"immich", &immich}}) {
    j["baselines"][name] = scores_json(s->scores);
    j["baselines"][name]["threshold"] = s->threshold;
  }

  // Incremental: LFW in ten random batches into one grouping, in three batch orders (the
  // gap to grouping all at once depends on which faces come first); the first order is
  // also re-grouped at the end.
  constexpr std::size_t kBatches = 10;
  std::vector<double> batch_seconds;
  auto incremental_run = [&](std::uint64_t seed) {
    std::vector<std::size_t> order = all;
    std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
    auto g = FaceGrouping::create(static_cast<int>(f.dim), o);
    if (!g) die(g.error().message);
    for (std::size_t b = 0; b < kBatches; ++b) {
      std::vector<GroupingFace> faces;
      std::vector<float> vectors;
      for (std::size_t k = b * n / kBatches; k < (b + 1) * n / kBatches; ++k) {
        faces.push_back(f.face(order[k]));
        f.append_vector(order[k], vectors);
      }
      const auto start = Clock::now();
      if (auto added = (*g)->add(faces, vectors); !added) die(added.error().message);
      batch_seconds.push_back(seconds_since(start));
    }
    return std::move(*g);
  };
  auto labels_of = [&](const FaceGrouping& g) {
    std::vector<std::int64_t> labels;
    for (std::size_t i = 0; i < n; ++i) labels.push_back(*g.group_of(static_cast<std::int64_t>(i)));
    return labels;
  };
  const std::unique_ptr<FaceGrouping> grouping = incremental_run(2026);
  const ClusterScores inc = score_clusters(labels_of(*grouping), truth);
  print_row("Candor, all, incremental (10 random batches)", "spec tuned on A-M", inc);
  j["incremental"] = scores_json(inc);
  std::vector<double> orders{inc.bcubed_f};
  for (std::uint64_t seed : {2027U, 2028U}) {
    const ClusterScores other = score_clusters(labels_of(*incremental_run(seed)), truth);
    print_row("  ... another batch order", "seed " + std::to_string(seed), other);
    orders.push_back(other.bcubed_f);
  }
  j["incremental"]["bcubed_f_orders"] = orders;
  j["incremental"]["batch_seconds_median"] = median(batch_seconds);
  if (auto r = grouping->regroup(); !r) die(r.error().message);
  const ClusterScores re = score_clusters(labels_of(*grouping), truth);
  print_row("Candor, all, incremental then regroup()", "spec tuned on A-M", re);
  j["regrouped"] = scores_json(re);
  std::printf("baselines: best threshold swept on all of LFW (step 0.01), optimistic for them; "
              "Candor's spec: %s, index %s\n", spec.c_str(), o.index_spec.c_str());
  if (a.json) std::cout << j.dump(2) << "\n";
}

// Synthetic libraries: people drawn from the template model of `candor bench search`,
// each face a planted mate of its person's centre (cosine 0.72-0.86, so two faces of one
// person score about 0.5-0.75, as LFW's genuine pairs do); two faces per photo.
void run_synthetic(const LibraryArgs& a) {
  constexpr int kDim = 512;
  const std::size_t n = a.synthetic, extra = a.add * static_cast<std::size_t>(std::max(1, a.runs));
  const TemplateModel model = TemplateModel::synthetic(kDim, 7);
  const std::size_t people = std::max<std::size_t>(1, n / 5);
  const std::vector<float> centres = model.sample(people, 11);
  const Probes faces = plant_mates(model, centres, n + extra, 13, 0.72F, 0.86F);
  auto slice = [&](std::size_t lo, std::size_t hi, std::vector<GroupingFace>& ids, std::vector<float>& vectors) {
    for (std::size_t i = lo; i < hi; ++i) ids.push_back({static_cast<std::int64_t>(i), static_cast<std::int64_t>(i / 2)});
    vectors.assign(faces.vectors.begin() + static_cast<std::ptrdiff_t>(lo * kDim),
                   faces.vectors.begin() + static_cast<std::ptrdiff_t>(hi * kDim));
  };
  std::vector<GroupingFace> ids;
  std::vector<float> vectors;
  slice(0, n, ids, vectors);
  const GroupingOptions o = grouping_options(a, a.spec);
  std::printf("synthetic library: %zu faces of %zu people (%s), spec %s, index %s, %d threads\n", n, people,
              model.source().c_str(), o.spec.c_str(), o.index_spec.c_str(), a.threads);
  std::vector<double> full, full_cpu;
  std::unique_ptr<FaceGrouping> kept;
  for (int r = 0; r < std::max(1, a.runs); ++r) {
    kept.reset();
    auto g = FaceGrouping::create(kDim, o);
    if (!g) die(g.error().message);
    const auto start = Clock::now();
    const double cpu = cpu_seconds();
    if (auto added = (*g)->add(ids, vectors); !added) die(added.error().message);
    full.push_back(seconds_since(start));
    full_cpu.push_back(cpu_seconds() - cpu);
    std::printf("full grouping run %d: %.2f s (CPU %.2f s), peak RSS %.0f MB\n", r + 1, full.back(), full_cpu.back(),
                peak_rss_mb());
    std::fflush(stdout);
    kept = std::move(*g);
  }
  std::vector<std::int64_t> labels, truth;
  for (std::size_t i = 0; i < n; ++i) {
    labels.push_back(*kept->group_of(static_cast<std::int64_t>(i)));
    truth.push_back(static_cast<std::int64_t>(faces.mate[i]));
  }
  const ClusterScores s = score_clusters(labels, truth);
  std::vector<double> adds, adds_cpu;
  for (int r = 0; r < std::max(1, a.runs); ++r) {
    std::vector<GroupingFace> more;
    std::vector<float> more_vectors;
    slice(n + static_cast<std::size_t>(r) * a.add, n + static_cast<std::size_t>(r + 1) * a.add, more, more_vectors);
    const auto start = Clock::now();
    const double cpu = cpu_seconds();
    if (auto added = kept->add(more, more_vectors); !added) die(added.error().message);
    adds.push_back(seconds_since(start));
    adds_cpu.push_back(cpu_seconds() - cpu);
  }
  std::printf("group %zu faces: median %.2f s (CPU %.2f s) of %zu runs; add %zu to %zu: median %.3f s (CPU %.3f s) "
              "of %zu; peak RSS %.0f MB; BCubed F %.4f (%zu groups for %zu people)\n",
              n, median(full), median(full_cpu), full.size(), a.add, n, median(adds), median(adds_cpu), adds.size(),
              peak_rss_mb(), s.bcubed_f, s.groups, people);
  if (a.json) {
    nlohmann::json j = {{"faces", n}, {"people", people}, {"spec", o.spec}, {"index", o.index_spec},
                        {"group_seconds_median", median(full)}, {"group_cpu_seconds_median", median(full_cpu)},
                        {"add", a.add}, {"add_seconds_median", median(adds)}, {"add_cpu_seconds_median", median(adds_cpu)},
                        {"peak_rss_mb", peak_rss_mb()}, {"bcubed_f", s.bcubed_f}, {"groups", s.groups}};
    std::cout << j.dump(2) << "\n";
  }
}

}  // namespace

void register_library_bench_commands(CLI::App& bench, const EngineOptions& options) {
  auto a = std::make_shared<LibraryArgs>();
  CLI::App* c = bench.add_subcommand(
      "library", "Photo-library grouping (issue 13): BCubed F on LFW beside the baselines; --synthetic N: speed");
  c->add_option("dir", a->root, "LFW directory (holds lfw/)")->capture_default_str();
  c->add_option("--cache", a->cache, "Template cache file: reused when it covers the images, else written");
  c->add_option("--threads", a->threads, "Worker threads")->capture_default_str();
  c->add_option("--spec", a->spec, "Grouping spec (include/candor/library.h)")->capture_default_str();
  c->add_option("--index", a->index_spec, "Neighbour index, a make_index spec (default: GroupingOptions')");
  c->add_flag("--tune", a->tune, "Choose edge, merge and grow on the people A-M first (a grid), then report");
  c->add_option("--grid", a->grid, "--tune: the specs to try instead of the built-in grid");
  c->add_flag("--tune-only", a->tune_only, "--tune: stop after tuning");
  c->add_flag("--local-grid", a->local_grid, "--tune: also try the local-scale term (local=0, 0.25, 0.5)");
  c->add_flag("--qual-grid", a->qual_grid, "--tune: try the quality term (qual, qref) and merge instead");
  c->add_option("--synthetic", a->synthetic, "Time grouping N synthetic templates instead of LFW");
  c->add_option("--add", a->add, "--synthetic: faces added to the grouping per timed add")->capture_default_str();
  c->add_option("--runs", a->runs, "--synthetic: runs (medians are reported)")->capture_default_str();
  c->add_flag("--json", a->json, "Print JSON");
  c->add_option("--ingest", a->ingest, "Time `library add` on N synthetic 12 MP JPEGs made from LFW faces (--threads workers)");
  c->callback([&options, a] {
    if (a->ingest > 0) return run_ingest(options, a->root, a->ingest, a->threads, a->json);
    a->synthetic > 0 ? run_synthetic(*a) : run_lfw(options, *a);
  });
}

}  // namespace candor::bench
