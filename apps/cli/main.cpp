// `candor`: the command-line client of the Candor engine. Every subcommand is a thin
// layer over the library; see README for the commands and what they print.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <set>

#include <opencv2/core/utility.hpp>
#include <opencv2/core/version.hpp>

#include "candor/platform.h"
#include "cli_context.h"
#include "analyze/analyze_bench.h"
#include "engine/engine_bench.h"
#include "stream/stream_bench.h"
#include "library/library_bench.h"
#include "server_commands.h"
#if CANDOR_HAVE_INDEX_BENCH
#include "index/index_bench.h"
#endif
#if CANDOR_HAVE_STORE_BENCH
#include "store/store_bench.h"
#endif

namespace candor::cli {

const Engine& CliContext::engine() {
  if (!engine_) {
    auto created = Engine::create(engine_options);
    if (!created) std::exit(fail(created.error()));
    engine_ = std::move(*created);
  }
  return *engine_;
}

int CliContext::prepare_workers(int requested, std::size_t jobs) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int workers = std::clamp(requested > 0 ? requested : cores, 1, static_cast<int>(std::max<std::size_t>(jobs, 1)));
  if (engine_options.replicas < workers) engine_options.replicas = workers;
  if (workers > 1 && opencv_threads == 0) cv::setNumThreads(1);
  return workers;
}

const FaceAnalyzer& CliContext::analyzer() {
  if (!analyzer_) {
    AnalyzerOptions options;
    options.model_dir = engine_options.model_dir;
    options.manifest = engine_options.manifest;
    auto created = FaceAnalyzer::create(options);
    if (!created) std::exit(fail(created.error()));
    analyzer_ = std::move(*created);
  }
  return *analyzer_;
}

// store_commands.cpp: candor migrate, candor store copy.
void register_store_commands(CLI::App& app, CliContext& ctx);

int fail(const Error& error) {
  std::cerr << "candor: " << error_code_name(error.code) << ": " << error.message << "\n";
  return 1;
}

}  // namespace candor::cli

int main(int argc, char** argv) {
  candor::ensure_vector_blas_kernel(argv);  // before anything else: it may restart the process
  using namespace candor::cli;
  CLI::App app{"Candor: consent-first face recognition (detect, compare, embed, collections, bench)"};
  app.require_subcommand(1);
  CliContext ctx;
  candor::add_model_options(app, ctx.engine_options);
  app.add_option("--threads", ctx.opencv_threads, "Threads per inference (OpenCV); 0 = all cores");
  app.add_option("--index", ctx.index_spec, "1:N index of each collection, a make_index spec (README)")
      ->capture_default_str();
  double max_image_mb = 20, max_megapixels = 40;
  app.add_option("--max-image-mb", max_image_mb, "Largest image file accepted, MB")->capture_default_str();
  app.add_option("--max-megapixels", max_megapixels, "Largest image accepted, megapixels (checked before decoding)")
      ->capture_default_str();
  app.parse_complete_callback([&] {
    if (ctx.opencv_threads > 0) cv::setNumThreads(ctx.opencv_threads);
    ctx.limits.max_bytes = static_cast<std::size_t>(max_image_mb * 1024 * 1024);
    ctx.limits.max_pixels = static_cast<std::int64_t>(max_megapixels * 1e6);
  });

  {
    CLI::App* c = app.add_subcommand("version", "Print Candor's version and what it runs on (OpenCV, BLAS kernels)");
    c->callback([] {
      const std::string core = candor::blas_core();
      std::cout << "candor " << CANDOR_VERSION << "\nOpenCV " << CV_VERSION << "\nBLAS "
                << (core.empty() ? std::string("(not OpenBLAS)") : "OpenBLAS, " + core + " kernels") << "\n";
    });
  }
  register_engine_commands(app, ctx);
  register_collection_commands(app, ctx);
  register_library_commands(app, ctx);
  register_store_commands(app, ctx);
  candor::register_server_commands(app, ctx.engine_options);
  CLI::App* bench = app.add_subcommand("bench", "Measure accuracy and speed (see README 'Measuring')");
  bench->require_subcommand(1);
  candor::bench::register_engine_bench_commands(*bench, ctx.engine_options);
  candor::bench::register_analyze_bench_commands(*bench, ctx.engine_options);
  candor::bench::register_stream_bench_commands(*bench, ctx.engine_options);
  candor::bench::register_library_bench_commands(*bench, ctx.engine_options);
#if CANDOR_HAVE_INDEX_BENCH
  candor::bench::register_index_bench_commands(*bench);
#endif
#if CANDOR_HAVE_STORE_BENCH
  candor::register_store_bench_commands(*bench);
#endif

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return ctx.exit_code;
}
