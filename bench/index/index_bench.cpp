// `candor bench search`: see index_bench.h. Every figure names its data: the
// synthetic model (or the real templates it was fitted to) is printed first.
#include "index/index_bench.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <sstream>
#include <thread>
#include <string>
#include <vector>

#include "candor/index.h"
#include "index/gallery.h"

// OpenBLAS's thread control; weak so the bench still links against another BLAS.
extern "C" void openblas_set_num_threads(int threads) __attribute__((weak));

namespace candor::bench {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

struct Options {
  std::vector<size_t> sizes = {10000, 100000};
  int dim = 512;
  size_t queries = 200;
  std::string specs = "Flat;FaissFlat;SQ8;SQ8,Refine;HNSW32,efc=200";
  std::vector<size_t> ef = {64, 128, 256, 512};
  int repeat = 5;
  double latency_budget = 1.0;
  std::string real;
  bool json = false;
  uint64_t seed = 42;
  int threads = 1;
};

struct Row {
  std::string spec;
  size_t n = 0;
  double build_s = 0;
  double bytes_per_template = 0;
  double latency_ms = 0;     // median over repeats of the mean single-query time
  double stream_ms = 0;      // time to stream memory_bytes() once at the measured bandwidth
  double batch_qps = 0;      // all probes in one search() call
  double recall10 = 0;       // vs exact Flat
  double mate10 = 0;         // planted mate in the top 10
  double speedup = 0;        // baseline scan latency / latency_ms
};

std::vector<std::string> split_specs(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ';'))
    if (!item.empty()) out.push_back(item);
  return out;
}

// Seconds per byte of a pure streaming read: a sum over n floats, the floor
// for any exhaustive scan of that many bytes.
double stream_seconds_per_byte(const std::vector<float>& data, int repeat) {
  std::vector<double> t;
  volatile float sink = 0.0F;
  for (int r = 0; r < std::max(3, repeat); ++r) {
    const auto t0 = Clock::now();
    // Eight partial sums: independent chains so the loop is bound by loads.
    float s[8] = {};
    size_t i = 0;
    for (; i + 8 <= data.size(); i += 8)
      for (size_t j = 0; j < 8; ++j) s[j] += data[i + j];
    for (; i < data.size(); ++i) s[0] += data[i];
    sink = sink + s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
    t.push_back(seconds_since(t0));
  }
  return median(t) / static_cast<double>(data.size() * sizeof(float));
}

// The baseline: the plainest float32 exhaustive scan (scalar loop, top 10 by
// insertion), what a first implementation would do.
std::vector<int64_t> baseline_search(const std::vector<float>& gallery, const float* q, size_t d) {
  const size_t n = gallery.size() / d;
  std::vector<std::pair<float, int64_t>> top;
  for (size_t i = 0; i < n; ++i) {
    const float* g = gallery.data() + i * d;
    float s = 0.0F;
    for (size_t j = 0; j < d; ++j) s += q[j] * g[j];
    if (top.size() < 10 || s > top.back().first) {
      auto it = std::upper_bound(top.begin(), top.end(), s,
                                 [](float v, const auto& e) { return v > e.first; });
      top.insert(it, {s, static_cast<int64_t>(i)});
      if (top.size() > 10) top.pop_back();
    }
  }
  std::vector<int64_t> ids;
  for (const auto& e : top) ids.push_back(e.second);
  return ids;
}

// Mean seconds per single-probe call, over as many probes as fit in budget
// seconds (at least 3), median over repeat runs.
template <typename SearchOne>
double single_query_seconds(size_t nq, int repeat, double budget, SearchOne&& search_one) {
  std::vector<double> per_query;
  for (int r = 0; r < repeat; ++r) {
    const auto t0 = Clock::now();
    size_t done = 0;
    while (done < nq && (done < 3 || seconds_since(t0) < budget)) search_one(done++);
    per_query.push_back(seconds_since(t0) / static_cast<double>(done));
  }
  return median(per_query);
}

void measure(const Options& o, Index& index, const std::string& spec, size_t n, double build_s,
             const Probes& probes, const std::vector<std::vector<Neighbor>>& truth,
             double stream_spb, double baseline_s, std::vector<Row>& rows) {
  const auto d = static_cast<size_t>(o.dim);
  const size_t nq = probes.mate.size();
  Row row;
  row.spec = spec;
  row.n = n;
  row.build_s = build_s;
  row.bytes_per_template = static_cast<double>(index.memory_bytes()) / static_cast<double>(n);
  row.stream_ms = 1e3 * stream_spb * static_cast<double>(index.memory_bytes());
  row.latency_ms = 1e3 * single_query_seconds(nq, o.repeat, o.latency_budget, [&](size_t i) {
    (void)index.search(std::span<const float>(probes.vectors.data() + i * d, d), 10);
  });
  std::vector<std::vector<Neighbor>> got;
  std::vector<double> batch_s;
  for (int r = 0; r < std::min(o.repeat, 3); ++r) {
    const auto t0 = Clock::now();
    got = index.search(probes.vectors, 10);
    batch_s.push_back(seconds_since(t0));
  }
  row.batch_qps = static_cast<double>(nq) / median(batch_s);
  size_t hits = 0, total = 0, mates = 0;
  for (size_t i = 0; i < nq; ++i) {
    std::set<int64_t> t;
    for (const Neighbor& nb : truth[i]) t.insert(nb.id);
    for (const Neighbor& nb : got[i]) {
      hits += t.count(nb.id);
      if (nb.id == static_cast<int64_t>(probes.mate[i])) ++mates;
    }
    total += truth[i].size();
  }
  row.recall10 = static_cast<double>(hits) / static_cast<double>(total);
  row.mate10 = static_cast<double>(mates) / static_cast<double>(nq);
  row.speedup = baseline_s / (row.latency_ms * 1e-3);
  if (!o.json)
    std::fprintf(stderr, "  %-28s n=%zu build %.2fs  %.0f B/tmpl  %.3f ms/query  recall@10 %.4f  mate@10 %.3f\n",
                 spec.c_str(), n, row.build_s, row.bytes_per_template, row.latency_ms,
                 row.recall10, row.mate10);
  rows.push_back(row);
}

int run(const Options& o) {
  if (openblas_set_num_threads) openblas_set_num_threads(o.threads);
  omp_set_num_threads(o.threads);
  const auto d = static_cast<size_t>(o.dim);
  TemplateModel model = o.real.empty() ? TemplateModel::synthetic(o.dim, o.seed)
                                       : TemplateModel::fitted(o.dim, read_templates(o.real, o.dim));
  nlohmann::json report;
  report["data"] = model.source();
  report["variance_dims_50_80_90_95"] = model.variance_dims();
  report["search_threads"] = o.threads;
  report["hnsw_build_threads"] = std::thread::hardware_concurrency();
  report["probes"] = o.queries;
  report["mate_cosine"] = "uniform in [0.4, 0.7]";
  std::fprintf(stderr, "data: %s\n", model.source().c_str());

  std::vector<Row> rows;
  nlohmann::json per_size = nlohmann::json::array();
  for (size_t n : o.sizes) {
    auto t0 = Clock::now();
    const std::vector<float> gallery = model.sample(n, o.seed + n);
    const Probes probes = plant_mates(model, gallery, o.queries, o.seed + n + 1);
    std::fprintf(stderr, "n=%zu: gallery and %zu probes generated in %.1fs\n", n, o.queries,
                 seconds_since(t0));
    std::vector<int64_t> ids(n);
    std::iota(ids.begin(), ids.end(), int64_t{0});

    const double spb = stream_seconds_per_byte(gallery, o.repeat);
    const double baseline_s =
        single_query_seconds(o.queries, o.repeat, o.latency_budget, [&](size_t i) {
          (void)baseline_search(gallery, probes.vectors.data() + i * d, d);
        });
    nlohmann::json size_info = {{"n", n},
                                {"stream_gb_per_s", 1e-9 / spb},
                                {"float32_stream_ms", 1e3 * spb * static_cast<double>(gallery.size() * 4)},
                                {"baseline_scalar_scan_ms", 1e3 * baseline_s}};
    per_size.push_back(size_info);
    std::fprintf(stderr, "  stream %.1f GB/s (float32 gallery %.1f ms); baseline scalar scan %.1f ms/query\n",
                 1e-9 / spb, 1e3 * spb * static_cast<double>(gallery.size() * 4), 1e3 * baseline_s);

    // Ground truth: the exact Flat index, batched (one sgemm per block).
    t0 = Clock::now();
    auto flat = make_index(o.dim, "Flat");
    flat->add(ids, gallery);
    const double flat_build = seconds_since(t0);
    const auto truth = flat->search(probes.vectors, 10);

    for (const std::string& spec : split_specs(o.specs)) {
      std::unique_ptr<Index> index;
      double build_s = flat_build;
      if (spec == "Flat") {
        index = std::move(flat);
      } else {
        t0 = Clock::now();
        index = make_index(o.dim, spec);
        index->add(ids, gallery);
        build_s = seconds_since(t0);
      }
      if (spec.rfind("HNSW", 0) == 0 && !o.ef.empty()) {
        for (size_t ef : o.ef) {
          index->set_search_parameters("ef=" + std::to_string(ef));
          measure(o, *index, index->description(), n, build_s, probes, truth, spb, baseline_s, rows);
        }
      } else {
        measure(o, *index, index->description(), n, build_s, probes, truth, spb, baseline_s, rows);
      }
    }
  }

  if (o.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const Row& r : rows)
      out.push_back({{"spec", r.spec}, {"n", r.n}, {"build_s", r.build_s},
                     {"bytes_per_template", r.bytes_per_template}, {"latency_ms", r.latency_ms},
                     {"stream_ms", r.stream_ms}, {"batch_qps", r.batch_qps},
                     {"recall_at_10", r.recall10}, {"mate_in_top10", r.mate10},
                     {"speedup_vs_scalar_scan", r.speedup}});
    report["sizes"] = per_size;
    report["results"] = out;
    std::cout << report.dump(2) << "\n";
    return 0;
  }
  std::printf("data: %s\n", model.source().c_str());
  std::printf("search threads: %d; HNSW build threads: %u; %zu probes, mate cosine U[0.4, 0.7]\n",
              o.threads, std::thread::hardware_concurrency(), o.queries);
  for (const auto& s : per_size)
    std::printf("n=%zu: streaming read %.1f GB/s; plain scalar float32 scan (baseline) %.1f ms/query\n",
                s["n"].get<size_t>(), s["stream_gb_per_s"].get<double>(),
                s["baseline_scalar_scan_ms"].get<double>());
  std::printf("%-26s %9s %8s %9s %10s %9s %10s %9s %8s %8s\n", "spec", "n", "build_s", "B/tmpl",
              "query_ms", "stream_ms", "batch_q/s", "recall@10", "mate@10", "speedup");
  for (const Row& r : rows)
    std::printf("%-26s %9zu %8.2f %9.0f %10.3f %9.1f %10.1f %9.4f %8.3f %8.1f\n", r.spec.c_str(),
                r.n, r.build_s, r.bytes_per_template, r.latency_ms, r.stream_ms, r.batch_qps,
                r.recall10, r.mate10, r.speedup);
  return 0;
}

}  // namespace

void register_index_bench_commands(CLI::App& bench) {
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = bench.add_subcommand(
      "search", "1:N index: build time, bytes/template, latency, recall@10 vs exact, planted-mate rate");
  cmd->add_option("--sizes", opts->sizes, "Gallery sizes")->delimiter(',')->capture_default_str();
  cmd->add_option("--dim", opts->dim, "Template dimension")->capture_default_str();
  cmd->add_option("--queries", opts->queries, "Probes (each with a planted mate)")->capture_default_str();
  cmd->add_option("--specs", opts->specs,
                  "Index specs separated by ';' (specs contain commas), see include/candor/index.h")
      ->capture_default_str();
  cmd->add_option("--ef", opts->ef, "HNSW search ef values to sweep (one build)")
      ->delimiter(',')->capture_default_str();
  cmd->add_option("--repeat", opts->repeat, "Repeats; latencies are medians")->capture_default_str();
  cmd->add_option("--latency-budget", opts->latency_budget,
                  "Seconds of single-probe searches per repeat (at least 3 probes)")
      ->capture_default_str();
  cmd->add_option("--real", opts->real,
                  "Raw float32 file of n x dim real templates: fit the generator's mean and covariance to them");
  cmd->add_option("--threads", opts->threads, "Search threads for BLAS/OpenMP (1 = the single-thread figures)")
      ->capture_default_str();
  cmd->add_option("--seed", opts->seed)->capture_default_str();
  cmd->add_flag("--json", opts->json, "Print JSON instead of a table");
  cmd->callback([opts] {
    if (opts->dim <= 0 || opts->queries == 0 || opts->repeat <= 0 || opts->sizes.empty())
      throw CLI::ValidationError("--dim, --queries, --repeat and --sizes must be positive");
    int rc = 0;
    try {
      rc = run(*opts);
    } catch (const std::exception& e) {
      std::cerr << "candor bench search: " << e.what() << "\n";
      rc = 1;
    }
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace candor::bench
