#include "engine/engine_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/core/utility.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>

#include "align/landmarker.h"
#include "engine/lfw.h"
#include "engine/lfw_bench.h"
#include "engine/lfw_embeddings.h"
#include "engine/lfw_ident.h"
#include "infer/net_pool.h"

namespace candor::bench {
namespace {

using Clock = std::chrono::steady_clock;

float dot(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.empty() || b.empty()) return -1.0f;  // an unreadable image never matches
  return cosine_similarity(a, b);
}

void run_lfw(const EngineOptions& options, const LfwArgs& a) {
  require_lfw(a.root);
  auto pairs = read_lfw_pairs(a.root / a.pairs);
  if (!pairs) die(pairs.error().message);
  std::set<std::string> unique;
  for (const auto& p : *pairs) unique.insert(key_of(p.name_a, p.index_a)), unique.insert(key_of(p.name_b, p.index_b));
  const std::vector<std::string> keys(unique.begin(), unique.end());
  const ImageTemplates t = embed_lfw_images(options, a.root, keys, a.threads, a.cache);
  std::map<std::string, std::size_t> at;
  for (std::size_t i = 0; i < keys.size(); ++i) at[keys[i]] = i;

  std::vector<float> scores, genuine, impostor;
  std::vector<bool> same;
  std::vector<int> folds;
  for (const auto& p : *pairs) {
    const float s = dot(t.templates[at[key_of(p.name_a, p.index_a)]], t.templates[at[key_of(p.name_b, p.index_b)]]);
    scores.push_back(s);
    same.push_back(p.same);
    folds.push_back(p.fold);
    (p.same ? genuine : impostor).push_back(s);
  }
  const FoldAccuracy acc = ten_fold_accuracy(scores, same, folds);
  const RateAtThreshold far3 = tar_at_far(genuine, impostor, 1e-3);
  const RateAtThreshold far2 = tar_at_far(genuine, impostor, 1e-2);
  const double n = static_cast<double>(keys.size());
  nlohmann::json j = {
      {"protocol", a.pairs},
      {"pairs", pairs->size()},
      {"folds", acc.per_fold.size()},
      {"accuracy_mean_pct", pct(acc.mean)},
      {"accuracy_std_pct", pct(acc.stddev)},
      {"tar_at_far_1e-3_pct", pct(far3.rate)},
      {"threshold_far_1e-3", far3.threshold},
      {"tar_at_far_1e-2_pct", pct(far2.rate)},
      {"threshold_far_1e-2", far2.threshold},
      {"far_1e-4", "not reported: " + std::to_string(impostor.size()) + " impostor pairs cannot resolve FAR 1e-4"},
      {"images", keys.size()},
      {"images_without_detected_face", t.no_face},
      {"images_unreadable", t.unreadable},
  };
  if (t.wall_seconds > 0) {
    j["ms_per_image_per_thread"] = {{"decode", t.totals.decode_ms / n}, {"detect", t.totals.detect_ms / n},
                                    {"landmarks", t.totals.landmarks_ms / n}, {"embed", t.totals.embed_ms / n}};
    j["threads"] = a.threads;
    j["images_per_second"] = n / t.wall_seconds;
  }
  if (a.json) {
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("LFW %s: %zu pairs, %zu folds, %zu images (%zu without a detected face, %zu unreadable)\n",
              a.pairs.c_str(), pairs->size(), acc.per_fold.size(), keys.size(), t.no_face, t.unreadable);
  std::printf("accuracy        %.2f%% +- %.2f  (10-fold, threshold chosen on the other 9 folds)\n", 100 * acc.mean,
              100 * acc.stddev);
  std::printf("TAR @ FAR=1e-3  %.2f%%  (threshold %.3f, %zu impostor pairs)\n", 100 * far3.rate, far3.threshold,
              far3.impostors);
  std::printf("TAR @ FAR=1e-2  %.2f%%  (threshold %.3f)\n", 100 * far2.rate, far2.threshold);
  std::printf("FAR=1e-4        not reported: %zu impostor pairs cannot resolve it (see `candor bench calibrate`)\n",
              impostor.size());
  if (t.wall_seconds > 0) {
    std::printf("per image, per thread: decode %.1f ms, detect %.1f ms, landmarks %.1f ms, embed %.1f ms; "
                "%.1f images/s on %d threads\n",
                t.totals.decode_ms / n, t.totals.detect_ms / n, t.totals.landmarks_ms / n, t.totals.embed_ms / n,
                n / t.wall_seconds, a.threads);
  }
}

// Thresholds for the operating points, from LFW View 1 (DevTrain + DevTest) images:
// every pair of images of different people is an impostor comparison (millions of
// them, enough to resolve FMR 1e-4), every pair of the same person a genuine one.
void run_calibrate(const EngineOptions& options, const LfwArgs& a) {
  require_lfw(a.root);
  const std::vector<std::string> keys = view_one_keys(a.root);
  const ImageTemplates t = embed_lfw_images(options, a.root, keys, a.threads, a.cache);
  std::vector<float> genuine, impostor;
  auto person = [](const std::string& key) { return key.substr(0, key.find('/')); };
  for (std::size_t i = 0; i < keys.size(); ++i) {
    for (std::size_t k = i + 1; k < keys.size(); ++k) {
      if (t.templates[i].empty() || t.templates[k].empty()) continue;
      const float s = cosine_similarity(t.templates[i], t.templates[k]);
      (person(keys[i]) == person(keys[k]) ? genuine : impostor).push_back(s);
    }
  }
  nlohmann::json j = {{"images", keys.size()}, {"genuine_pairs", genuine.size()}, {"impostor_pairs", impostor.size()}};
  std::printf("calibration on LFW View 1 images: %zu images, %zu genuine and %zu impostor pairs\n", keys.size(),
              genuine.size(), impostor.size());
  for (double fmr : {1e-2, 1e-3, 1e-4, 1e-5}) {
    const RateAtThreshold r = tar_at_far(genuine, impostor, fmr);
    std::printf("FMR %.0e: threshold %.4f  TAR %.2f%%  (achieved FMR %.2e)\n", fmr, r.threshold, 100 * r.rate,
                r.achieved_false_rate);
    char name[16];
    std::snprintf(name, sizeof name, "%.0e", fmr);
    j["operating_points"][name] = {{"threshold", r.threshold}, {"tar_pct", pct(r.rate)}};
  }
  if (a.json) std::cout << j.dump(2) << "\n";
}

struct PipelineArgs {
  std::filesystem::path image;
  int repeat = 50;
  int runs = 5;
  int threads = 2;
  int throughput_images = 200;
  std::filesystem::path frame = std::filesystem::path(CANDOR_SOURCE_DIR) / "testdata" / "face-api" / "sample1.jpg";
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// A network with a random input of the shape the pipeline feeds it; run() is one inference
// on the engine's runtime (`pool`, with its `outputs`), or on the OpenCV net when there is
// no pool. The OpenCV net also counts the FLOPs.
struct BareNet {
  cv::dnn::Net net;
  cv::Mat input;
  std::shared_ptr<NetPool> pool;
  std::vector<std::string> outputs;
  void run() {
    if (pool) {
      (void)pool->run(input, outputs);
      return;
    }
    net.setInput(input);
    net.forward();
  }
};

// The plain single-pass pipeline over the same three networks, issue 14's baseline: the
// image stretched into one detector view, the best box, one landmark pass on its square
// crop, the five points onto the ArcFace template, one recogniser pass. No pyramid, no
// tiles, no refinement: what a straightforward OpenCV DNN program does.
struct PlainPipeline {
  cv::dnn::Net det, lmk, rec;
  ModelSpec det_spec, lmk_spec, rec_spec;

  std::vector<float> run(const cv::Mat& bgr) {
    const InputSpec& di = det_spec.input;
    det.setInput(cv::dnn::blobFromImage(bgr, di.scale, cv::Size(di.width, di.height), cv::Scalar::all(di.mean),
                                        di.color == ColorOrder::kRgb, false, CV_32F));
    std::vector<cv::Mat> outs;
    det.forward(outs, std::vector<std::string>{det_spec.outputs.at("boxes"), det_spec.outputs.at("scores")});
    const float* b = outs[0].ptr<float>();
    const float* s = outs[1].ptr<float>();
    int best = 0;
    for (int i = 1; i < outs[0].size[1]; ++i) best = s[2 * i + 1] > s[2 * best + 1] ? i : best;
    const float w = static_cast<float>(bgr.cols), h = static_cast<float>(bgr.rows);
    const cv::Rect2f box(b[4 * best] * w, b[4 * best + 1] * h, (b[4 * best + 2] - b[4 * best]) * w,
                         (b[4 * best + 3] - b[4 * best + 1]) * h);
    cv::Mat gray;
    cv::cvtColor(bgr, gray, cv::COLOR_BGR2GRAY);
    const cv::Rect region = square_region((box.tl() + box.br()) * 0.5f, std::max(box.width, box.height));
    const InputSpec& li = lmk_spec.input;
    lmk.setInput(cv::dnn::blobFromImage(crop_resized(gray, region, cv::Size(li.width, li.height)), li.scale, {},
                                        cv::Scalar::all(li.mean), false, false, CV_32F));
    const cv::Mat p = lmk.forward(lmk_spec.outputs.at("points"));
    std::vector<cv::Point2f> points(68);
    for (int k = 0; k < 68; ++k) {
      points[static_cast<std::size_t>(k)] = {static_cast<float>(region.x) + p.ptr<float>()[2 * k] * static_cast<float>(region.width),
                                             static_cast<float>(region.y) + p.ptr<float>()[2 * k + 1] * static_cast<float>(region.height)};
    }
    const auto five = five_points_from_68(points);
    const InputSpec& ri = rec_spec.input;
    auto to = arcface_template_112();
    for (auto& q : to) q *= static_cast<float>(ri.width) / 112.0f;
    cv::Mat crop;
    cv::warpAffine(bgr, crop, similarity_transform(five, to), cv::Size(ri.width, ri.height));
    rec.setInput(cv::dnn::blobFromImage(crop, ri.scale, {}, cv::Scalar::all(ri.mean), ri.color == ColorOrder::kRgb,
                                        false, CV_32F));
    const cv::Mat e = rec.forward(rec_spec.outputs.at("embedding"));
    std::vector<float> t(e.ptr<float>(), e.ptr<float>() + e.total());
    const double n = cv::norm(e);
    for (float& x : t) x = static_cast<float>(x / n);
    return t;
  }
};

// The FLOPs of one inference of `net` on `input`. OpenCV 4.6's Net::getFLOPS counts a
// grouped convolution as if every output saw every input channel, 2 x k x k x C_in per
// output, so a depthwise layer (groups = C_in) is overcounted C_in times (3.4 GFLOP
// instead of 0.03 for MobileFaceNet's); here a convolution counts 2 x k x k x C_in/groups
// (the weight blob's second dimension) per output, every other layer as OpenCV counts it.
double network_flops(cv::dnn::Net& net, const cv::Mat& input) {
  const std::vector<cv::dnn::MatShape> in{cv::dnn::MatShape(input.size.p, input.size.p + input.dims)};
  double flops = 0;
  for (const std::string& name : net.getLayerNames()) {
    const int id = net.getLayerId(name);
    const cv::Ptr<cv::dnn::Layer> layer = net.getLayer(id);
    if (layer->type != "Convolution" || layer->blobs.empty()) {
      flops += static_cast<double>(net.getFLOPS(id, in));
      continue;
    }
    std::vector<cv::dnn::MatShape> layer_in, layer_out;
    net.getLayerShapes(in, id, layer_in, layer_out);
    const cv::Mat& w = layer->blobs[0];  // C_out x C_in/groups x kh x kw
    double outputs = 1;
    for (int d : layer_out[0]) outputs *= d;
    flops += outputs * 2.0 * w.size[1] * w.size[2] * w.size[3];
  }
  return flops;
}

// Per-stage latency on one thread, from encoded bytes and from decoded pixels to a
// template, against the networks' own forward time measured in the same run.
void run_pipeline(const EngineOptions& options, const PipelineArgs& a) {
  std::filesystem::path path = a.image;
  if (path.empty()) path = lfw_image_path(default_lfw(), "Aaron_Eckhart", 1);
  auto bytes = read_file_bytes(path, 20u << 20);
  if (!bytes) die(path.string() + ": " + bytes.error().message + " (pass an image with --image)");
  cv::setNumThreads(1);
  EngineOptions opts = options;
  opts.replicas = std::max(1, a.threads);
  auto created = Engine::create(opts);
  if (!created) die(created.error().message);
  const Engine& engine = **created;
  auto image = decode_image(*bytes);
  if (!image) die(image.error().message);

  // The networks alone, on blobs of the shapes the pipeline feeds them.
  auto manifest = load_manifest(resolve_manifest(opts.manifest));
  if (!manifest) die(manifest.error().message);
  const std::filesystem::path model_dir = resolve_model_dir(opts.model_dir);
  auto spec_of = [&](ModelRole role) {
    auto spec = manifest->find(role);
    if (!spec) die(spec.error().message);
    return *spec;
  };
  const ModelSpec det_spec = spec_of(ModelRole::kDetector), lmk_spec = spec_of(ModelRole::kLandmarks),
                  rec_spec = spec_of(ModelRole::kRecognizer);
  // engine_runtime: time the network on the engine's runtime (--inference), else on
  // OpenCV DNN (the plain pipeline's).
  auto net_for = [&](const ModelSpec& spec, int batch, bool engine_runtime = true) {
    auto file = locate_model(spec, model_dir, false);
    if (!file) die(file.error().message);
    cv::dnn::Net net = cv::dnn::readNetFromONNX(file->string());
    int shape[4] = {batch, spec.input.color == ColorOrder::kGray ? 1 : 3, spec.input.height, spec.input.width};
    cv::Mat blob(4, shape, CV_32F);
    cv::randu(blob, -1, 1);
    BareNet bare{net, blob, nullptr, {}};
    if (engine_runtime && opts.inference != InferenceBackend::kOpenCv) {
      auto pool = NetPool::load(*file, 1, opts.inference);
      if (!pool) die(pool.error().message);
      bare.pool = std::move(*pool);
      for (const auto& [role, name] : spec.outputs) bare.outputs.push_back(name);
    }
    bare.run();  // the first inference allocates (and compiles); keep it out of the timings
    return bare;
  };
  BareNet det = net_for(det_spec, 1);
  // The landmark network runs once on the box crop, then on landmark_passes - 1 refined
  // crops in one batch.
  const int refined = opts.landmark_passes - 1;
  BareNet lmk = net_for(lmk_spec, 1);
  std::optional<BareNet> lmk_refined;
  if (refined > 0) lmk_refined = net_for(lmk_spec, refined);
  BareNet rec = net_for(rec_spec, 1);
  PlainPipeline plain{net_for(det_spec, 1, false).net, net_for(lmk_spec, 1, false).net,
                      net_for(rec_spec, 1, false).net, det_spec, lmk_spec, rec_spec};
  auto time_ms = [](auto&& fn) {
    const auto t = Clock::now();
    fn();
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  };

  std::vector<double> decode, boxes, landmarks, embed, total, net_det, net_lmk, net_rec, ratio, plain_ms, speedup;
  std::size_t faces_found = 0;
  float plain_vs_candor = 0;
  for (int run = 0; run < a.runs; ++run) {
    std::vector<double> d, b, l, e, tot, nd, nl, nr, pl;
    for (int i = 0; i < a.repeat; ++i) {
      d.push_back(time_ms([&] { (void)decode_image(*bytes); }));
      std::vector<Face> faces;
      b.push_back(time_ms([&] { faces = engine.detect_boxes(*image); }));
      faces_found = faces.size();
      l.push_back(time_ms([&] { engine.locate_landmarks(*image, faces); }));
      e.push_back(time_ms([&] { engine.embed(*image, faces); }));
      tot.push_back(b.back() + l.back() + e.back());
      nd.push_back(time_ms([&] { det.run(); }));
      nl.push_back(time_ms([&] {
        lmk.run();
        if (lmk_refined) lmk_refined->run();
      }));
      nr.push_back(time_ms([&] { rec.run(); }));
      std::vector<float> t;
      pl.push_back(time_ms([&] { t = plain.run(*image); }));
      if (!t.empty() && !faces.empty()) plain_vs_candor = cosine_similarity(t, faces.front().embedding);
    }
    decode.push_back(median(d)), boxes.push_back(median(b)), landmarks.push_back(median(l)), embed.push_back(median(e));
    total.push_back(median(tot)), net_det.push_back(median(nd)), net_lmk.push_back(median(nl)), net_rec.push_back(median(nr));
    ratio.push_back(median(tot) / (median(nd) + median(nl) + median(nr)));
    plain_ms.push_back(median(pl));
    speedup.push_back(median(pl) / median(tot));
  }
  const double nets = median(net_det) + median(net_lmk) + median(net_rec);
  std::printf("image %s (%dx%d, %zu face%s), one thread, medians of %d runs x %d repeats, networks on %s\n",
              path.c_str(), image->cols, image->rows, faces_found, faces_found == 1 ? "" : "s", a.runs, a.repeat,
              std::string(inference_backend_name(opts.inference)).c_str());
  std::printf("  decode            %7.2f ms\n", median(decode));
  std::printf("  detect            %7.2f ms   (detector network alone %.2f ms)\n", median(boxes), median(net_det));
  std::printf("  landmarks         %7.2f ms   (landmark network, 1 + %d crops, alone %.2f ms)\n", median(landmarks), refined,
              median(net_lmk));
  std::printf("  align + embed     %7.2f ms   (recogniser network alone %.2f ms)\n", median(embed), median(net_rec));
  std::printf("  pixels->template  %7.2f ms   networks alone %.2f ms: Candor's own work adds %.1f%% (median of per-run ratios)\n",
              median(total), nets, 100.0 * (median(ratio) - 1.0));
  std::printf("  plain pipeline    %7.2f ms   (one detector, one landmark, one recogniser pass, float32, OpenCV DNN;\n"
              "                                its template at cosine %.3f to Candor's): Candor is %.2fx as fast "
              "(median of per-run ratios)\n",
              median(plain_ms), plain_vs_candor, median(speedup));

  // How far each network is from the hardware: its FLOPs (convolutions counted per group,
  // see network_flops) over its time alone in this run.
  std::printf("  network      input        GFLOP     ms   GFLOP/s\n");
  const std::pair<const char*, std::pair<BareNet*, double>> rows[] = {
      {"detector", {&det, median(net_det)}}, {"landmarks", {&lmk, median(net_lmk)}}, {"recogniser", {&rec, median(net_rec)}}};
  for (const auto& [name, net_ms] : rows) {
    const auto& [bare, ms] = net_ms;
    double flops = network_flops(bare->net, bare->input);
    if (bare == &lmk) flops *= 1 + refined;  // timed as 1 + refined crops
    std::printf("  %-11s  %4dx%-4d %9.3f %7.2f %8.1f\n", name, bare->input.size[3], bare->input.size[2], flops / 1e9,
                ms, flops / 1e6 / ms);
  }

  // Detection of a 1920x1080 frame (the door-camera case): face-api sample 1 (1920x1280,
  // three faces) cut to 1080 rows, at minimum faces of 40 and 24 px.
  if (auto frame = read_image(a.frame)) {
    const cv::Mat hd = (*frame)(cv::Rect(0, 0, std::min(1920, frame->cols), std::min(1080, frame->rows))).clone();
    for (int min_face : {40, 24}) {
      DetectOptions o;
      o.min_face_size = min_face;
      std::vector<double> t;
      std::size_t n = 0;
      for (int i = 0; i < std::max(3, a.runs); ++i) t.push_back(time_ms([&] { n = engine.detect_boxes(hd, o).size(); }));
      std::printf("  detect %dx%d, faces >= %d px: %7.1f ms = %.1f x the detector network alone (%zu faces; median of %zu)\n",
                  hd.cols, hd.rows, min_face, median(t), median(t) / median(net_det), n, t.size());
    }
  } else {
    std::printf("  (no frame for the 1080p detection figure: %s)\n", frame.error().message.c_str());
  }

  // Enrollment throughput: whole pipeline from bytes, N images over T threads.
  for (int threads : {1, a.threads}) {
    std::atomic<int> next{0};
    std::atomic<std::size_t> faces{0};
    const auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (int k = 0; k < threads; ++k) {
      pool.emplace_back([&] {
        while (next++ < a.throughput_images) {
          auto img = decode_image(*bytes);
          if (img) faces += engine.analyze(*img).size();
        }
      });
    }
    for (auto& th : pool) th.join();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("  throughput %d thread%s: %.1f faces/s (%d images, bytes to templates)\n", threads,
                threads == 1 ? "" : "s", static_cast<double>(faces) / s, a.throughput_images);
  }
}

}  // namespace

void register_engine_bench_commands(CLI::App& bench, const EngineOptions& options) {
  auto add_lfw_options = [](CLI::App* cmd, LfwArgs& a) {
    cmd->add_option("dir", a.root, "LFW directory (holds lfw/ and the pairs files)")->capture_default_str();
    cmd->add_option("--threads", a.threads, "Worker threads")->capture_default_str();
    cmd->add_option("--cache", a.cache, "Template cache file: reused when it covers the images, else written");
    cmd->add_flag("--json", a.json, "Print JSON");
  };
  auto lfw = std::make_shared<LfwArgs>();
  CLI::App* c = bench.add_subcommand("lfw", "LFW verification: 10-fold accuracy, TAR@FAR, stage latency");
  add_lfw_options(c, *lfw);
  c->add_option("--pairs", lfw->pairs, "pairs.txt (View 2) or pairsDevTest.txt / pairsDevTrain.txt (View 1)")
      ->capture_default_str();
  c->callback([&options, lfw] { run_lfw(options, *lfw); });

  auto cal = std::make_shared<LfwArgs>();
  c = bench.add_subcommand("calibrate", "Operating-point thresholds from LFW View 1 (all cross-identity pairs)");
  add_lfw_options(c, *cal);
  c->add_flag("--subjects", cal->subjects,
              "Thresholds for subject templates of k = 1..5 photos (the manifest's subject_thresholds)");
  c->callback([&options, cal] { cal->subjects ? run_calibrate_subjects(options, *cal) : run_calibrate(options, *cal); });

  auto ident = std::make_shared<IdentArgs>();
  c = bench.add_subcommand("lfw-ident", "LFW open-set 1:N: rank-1, FNIR at FPIR 1e-2 and 1e-3");
  add_lfw_options(c, *ident);
  CLI::Option* multi[] = {
      c->add_option("--enroll-images", ident->enroll_images,
                    "Multi-photo protocol (issue 11): enrol people with 4+ photos from their first K")
          ->check(CLI::Range(1, kMaxIdentEnrollImages))
          ->capture_default_str(),
      c->add_option("--aggregate", ident->aggregate, "Multi-photo protocol: how a subject of K faces is scored")
          ->check(CLI::IsMember({"centroid", "max", "mean"}))
          ->capture_default_str(),
      c->add_flag("--all-k", ident->all_k, "Multi-photo protocol: every K (1..3) and aggregate in one table"),
  };
  c->callback([&options, ident, multi] {
    ident->multi_photo = std::any_of(std::begin(multi), std::end(multi), [](const CLI::Option* o) { return o->count() > 0; });
    run_ident(options, *ident);
  });

  auto pipe = std::make_shared<PipelineArgs>();
  c = bench.add_subcommand("pipeline", "Per-stage latency on one thread vs the networks alone; throughput");
  c->add_option("--image", pipe->image, "A single-face image (default: LFW Aaron_Eckhart_0001, 250x250)");
  c->add_option("--repeat", pipe->repeat, "Iterations per run")->capture_default_str();
  c->add_option("--runs", pipe->runs, "Runs (the median is reported)")->capture_default_str();
  c->add_option("--threads", pipe->threads, "Threads for the throughput figure")->capture_default_str();
  c->add_option("--images", pipe->throughput_images, "Images per throughput run")->capture_default_str();
  c->add_option("--frame", pipe->frame, "An image cut to 1920x1080 for the detection figure")->capture_default_str();
  c->callback([&options, pipe] { run_pipeline(options, *pipe); });
}

}  // namespace candor::bench
