// The oneDNN runtime (src/infer/dnnl_net.h) against OpenCV DNN on the same ONNX files.
#include <cmath>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <opencv2/dnn.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "candor/engine.h"
#include "candor/models.h"
#include "infer/dnnl_net.h"
#include "infer/net_pool.h"
#include "infer/onnx_model.h"
#include "test_support.h"

namespace candor {
namespace {

std::filesystem::path model_file(ModelRole role) {
  auto spec = load_manifest(resolve_manifest({}))->find(role);
  if (!spec) throw std::runtime_error(spec.error().message);
  auto file = locate_model(*spec, resolve_model_dir({}), false);
  if (!file) throw std::runtime_error(file.error().message);
  return *file;
}

std::string file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return std::string(bytes.data(), bytes.size());
}

// A face-api sample photo (a real image, so activations are those the engine sees), as
// the network's input blob: RGB (x-127)/128, or grey x/256 for the landmark network
// (docs: ../shared/docs/model-pack.md).
cv::Mat input_blob(ModelRole role, cv::Size size) {
  const cv::Mat bgr = cv::imread(test::testdata("face-api/sample1.jpg").string());
  if (bgr.empty()) throw std::runtime_error("face-api/sample1.jpg is missing (run `make setup`)");
  if (role == ModelRole::kLandmarks) {
    cv::Mat grey;
    cv::cvtColor(bgr, grey, cv::COLOR_BGR2GRAY);
    return cv::dnn::blobFromImage(grey, 1.0 / 256, size);
  }
  return cv::dnn::blobFromImage(bgr, 1.0 / 128, size, cv::Scalar(127, 127, 127), true);
}

struct Case {
  ModelRole role;
  cv::Size size;
  std::vector<std::string> outputs;
};

std::vector<Case> native_cases() {
  return {{ModelRole::kDetector, {320, 240}, {"boxes", "scores"}},
          {ModelRole::kLandmarks, {64, 64}, {"output"}},
          {ModelRole::kRecognizer, {112, 112}, {"output"}}};
}

double max_abs_diff(const cv::Mat& a, const cv::Mat& b) {
  EXPECT_EQ(a.total(), b.total());
  if (a.total() != b.total()) return 1e9;
  return cv::norm(a.reshape(1, 1), b.reshape(1, 1), cv::NORM_INF);
}

double cosine(const cv::Mat& a, const cv::Mat& b) {
  const cv::Mat x = a.reshape(1, 1), y = b.reshape(1, 1);
  return x.dot(y) / (cv::norm(x) * cv::norm(y));
}

// Largest |difference| allowed per network output, relative to the output's largest |value|.
// float32: both runtimes sum the same products in a different order (blocked layouts,
// folded BatchNorm); 1e-4 of the range is ~100x float32's rounding after ~50 layers.
// bf16: bfloat16 keeps 8 significant bits (relative step 2^-8 = 0.4%) per activation and
// weight; over ~50 layers the error grows to a few percent of the range — what matters
// downstream is checked separately (template cosine, landmark pixels).
void expect_close(const Case& c, InferencePrecision precision) {
  const auto file = model_file(c.role);
  auto reference = NetPool::load(file, 1, InferenceBackend::kOpenCv);
  ASSERT_TRUE(reference) << reference.error().message;
  auto model = onnx::parse_onnx(file_bytes(file), file.string());
  ASSERT_TRUE(model) << model.error().message;
  auto net = DnnlNet::create(std::make_shared<const onnx::Model>(std::move(*model)), precision, file.string());
  ASSERT_TRUE(net) << net.error().message;
  const cv::Mat blob = input_blob(c.role, c.size);
  const auto expected = (*reference)->run(blob, c.outputs);
  auto got = (*net)->run(blob, c.outputs);
  ASSERT_TRUE(got) << got.error().message;
  ASSERT_EQ(got->size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    ASSERT_EQ(got->at(i).total(), expected[i].total()) << c.outputs[i];
    const double range = cv::norm(expected[i].reshape(1, 1), cv::NORM_INF);
    const double diff = max_abs_diff(got->at(i), expected[i]);
    const double limit = precision == InferencePrecision::kF32 ? 1e-4 : 0.05;
    std::printf("%s %s: max |diff| %.3g of range %.3g, cosine %.6f\n", file.filename().c_str(), c.outputs[i].c_str(),
                diff, range, cosine(got->at(i), expected[i]));
    EXPECT_LE(diff, limit * range) << file.filename() << " " << c.outputs[i];
    if (c.role == ModelRole::kRecognizer) {
      EXPECT_GE(cosine(got->at(i), expected[i]), precision == InferencePrecision::kF32 ? 0.99999 : 0.995);
    }
  }
}

TEST(DnnlNet, MatchesOpenCvOnAllThreeNetworksInFloat32) {
  for (const Case& c : native_cases()) expect_close(c, InferencePrecision::kF32);
}

TEST(DnnlNet, MatchesOpenCvOnAllThreeNetworksInBf16) {
  for (const Case& c : native_cases()) expect_close(c, InferencePrecision::kBf16);
}

std::unique_ptr<DnnlNet> detector(InferencePrecision precision = InferencePrecision::kF32) {
  const auto file = model_file(ModelRole::kDetector);
  auto model = onnx::parse_onnx(file_bytes(file), file.string());
  if (!model) throw std::runtime_error(model.error().message);
  auto net = DnnlNet::create(std::make_shared<const onnx::Model>(std::move(*model)), precision, file.string());
  if (!net) throw std::runtime_error(net.error().message);
  return std::move(net).value();
}

// The detector's first class head (tensor "319", 1x6x30x40 at 320x240: 3 anchors x 2
// logits per cell), named as an output, agrees with the graph's own "scores": scores'
// first 3600 rows are the softmax of that head's logits, cell by cell (NHWC order).
TEST(DnnlNet, ReturnsANamedIntermediateTensor) {
  auto net = detector();
  const cv::Mat blob = input_blob(ModelRole::kDetector, {320, 240});
  auto out = net->run(blob, {"319", "scores"});
  ASSERT_TRUE(out) << out.error().message;
  const cv::Mat& head = out->at(0);
  ASSERT_EQ(head.dims, 4);
  ASSERT_EQ(head.size[1], 6);
  const int h = head.size[2], w = head.size[3];
  const auto* scores = out->at(1).ptr<float>();
  double worst = 0;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int a = 0; a < 3; ++a) {
        const float l0 = head.ptr<float>()[((2 * a) * h + y) * w + x];
        const float l1 = head.ptr<float>()[((2 * a + 1) * h + y) * w + x];
        const double p1 = 1.0 / (1.0 + std::exp(static_cast<double>(l0 - l1)));
        worst = std::max(worst, std::abs(p1 - scores[((y * w + x) * 3 + a) * 2 + 1]));
      }
    }
  }
  EXPECT_LE(worst, 1e-5);
}

// The conv body runs on a whole 960x540 image (the lead's C++ decoding cuts the graph
// there); the packaged box-decoding tail does not fit that size and says so.
TEST(DnnlNet, RunsAnotherInputSize) {
  auto net = detector();
  const cv::Mat blob = input_blob(ModelRole::kDetector, {960, 540});
  auto heads = net->run(blob, {"319", "449"});
  ASSERT_TRUE(heads) << heads.error().message;
  ASSERT_EQ(heads->at(0).dims, 4);
  EXPECT_EQ(heads->at(0).size[2], 68);  // the first head's stride is 8: ceil(540 / 8) rows
  EXPECT_EQ(heads->at(0).size[3], 120);
  auto full = net->run(blob, {"boxes"});
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(full.error().message.find("do not broadcast"), std::string::npos) << full.error().message;
  auto unknown = net->run(blob, {"no-such-tensor"});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("no-such-tensor"), std::string::npos);
}

// A replica keeps at most kMaxPlans compiled plans (each owns its tensors' buffers): the
// least recently used goes, and a shape met again is compiled again with the same result.
TEST(DnnlNet, KeepsABoundedNumberOfPlans) {
  auto net = detector();
  const cv::Mat first = input_blob(ModelRole::kDetector, {64, 64});
  auto before = net->run(first, {"319"});
  ASSERT_TRUE(before) << before.error().message;
  for (int k = 1; k <= static_cast<int>(DnnlNet::kMaxPlans) + 2; ++k) {
    ASSERT_TRUE(net->run(input_blob(ModelRole::kDetector, {64 + 32 * k, 64}), {"319"}));
    EXPECT_LE(net->plans(), DnnlNet::kMaxPlans);
  }
  auto again = net->run(first, {"319"});
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(cv::norm(before->at(0), again->at(0), cv::NORM_INF), 0.0);
}

// Truncated and corrupted files are refused with kModelInvalid naming the file, never a crash.
TEST(DnnlNet, RefusesATruncatedOrCorruptFile) {
  const auto file = model_file(ModelRole::kLandmarks);
  const std::string bytes = file_bytes(file);
  for (const std::size_t keep : {std::size_t{0}, std::size_t{1}, std::size_t{7}, bytes.size() / 2, bytes.size() - 1}) {
    auto model = onnx::parse_onnx(std::string_view(bytes).substr(0, keep), "cut.onnx");
    ASSERT_FALSE(model) << keep;
    EXPECT_EQ(model.error().code, ErrorCode::kModelInvalid);
    EXPECT_NE(model.error().message.find("cut.onnx"), std::string::npos) << model.error().message;
  }
  cv::RNG rng(14);
  int refused = 0;
  for (int trial = 0; trial < 200; ++trial) {
    std::string corrupt = bytes.substr(0, 4096);
    for (int k = 0; k < 8; ++k) corrupt[static_cast<std::size_t>(rng.uniform(0, 4096))] = static_cast<char>(rng.uniform(0, 256));
    auto model = onnx::parse_onnx(corrupt, "bad.onnx");  // must return, whatever the bytes
    refused += model ? 0 : 1;
  }
  EXPECT_EQ(refused, 200);  // 4 KB of a 1.1 MB model is never a whole model
  const auto dir = std::filesystem::temp_directory_path() / ("candor-dnnl-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto cut = dir / "fr_landmark.onnx";
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 3);
  auto pool = NetPool::load(cut, 1, InferenceBackend::kOneDnn);
  std::filesystem::remove_all(dir);
  ASSERT_FALSE(pool);
  EXPECT_EQ(pool.error().code, ErrorCode::kModelInvalid);
  EXPECT_NE(pool.error().message.find(cut.string()), std::string::npos) << pool.error().message;
}

// Two replicas on two threads give the same templates as one thread does.
TEST(DnnlNet, TwoThreadsRunConcurrentInferences) {
  auto pool = NetPool::load(model_file(ModelRole::kRecognizer), 2, InferenceBackend::kOneDnn);
  ASSERT_TRUE(pool) << pool.error().message;
  const cv::Mat blob = input_blob(ModelRole::kRecognizer, {112, 112});
  const cv::Mat expected = (*pool)->run(blob, {"output"}).front();
  std::vector<double> worst(2, 0.0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        const cv::Mat got = (*pool)->run(blob, {"output"}).front();
        worst[static_cast<std::size_t>(t)] = std::max(worst[static_cast<std::size_t>(t)], max_abs_diff(got, expected));
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(worst[0], 0.0);
  EXPECT_EQ(worst[1], 0.0);
}

}  // namespace
}  // namespace candor

namespace candor {
namespace {

// EngineOptions::inference reaches the networks: the bf16 engine's templates of the same
// faces differ from OpenCV's (bfloat16 rounding) yet stay close, and the f32 one's do not
// differ beyond float32 rounding.
TEST(DnnlNet, TheEngineRunsTheChosenBackend) {
  const cv::Mat image = cv::imread(test::testdata("face-api/sample1.jpg").string());
  ASSERT_FALSE(image.empty());
  std::map<InferenceBackend, std::vector<Face>> faces;
  for (const auto backend : {InferenceBackend::kOpenCv, InferenceBackend::kOneDnn, InferenceBackend::kOneDnnBf16}) {
    EngineOptions options;
    options.replicas = 1;
    options.verify_hashes = false;
    options.inference = backend;
    auto engine = Engine::create(options);
    ASSERT_TRUE(engine) << engine.error().message;
    EXPECT_EQ((*engine)->inference(), backend);
    faces[backend] = (*engine)->analyze(image);
    ASSERT_EQ(faces[backend].size(), 3u) << inference_backend_name(backend);
  }
  // The same face in another backend's list: the one whose box centre is nearest (the
  // order, by detector score, may differ where two scores are within bf16 rounding).
  auto same_face = [&](InferenceBackend backend, const Face& f) -> const Face& {
    const auto centre = [](const Box& b) { return cv::Point2f(b.x + b.width / 2, b.y + b.height / 2); };
    const Face* best = nullptr;
    for (const Face& g : faces[backend]) {
      if (best == nullptr || cv::norm(centre(g.box) - centre(f.box)) < cv::norm(centre(best->box) - centre(f.box))) best = &g;
    }
    return *best;
  };
  for (std::size_t i = 0; i < 3; ++i) {
    const Face& face = faces[InferenceBackend::kOpenCv][i];
    const auto& reference = face.embedding;
    const double f32 = cosine_similarity(same_face(InferenceBackend::kOneDnn, face).embedding, reference);
    const double bf16 = cosine_similarity(same_face(InferenceBackend::kOneDnnBf16, face).embedding, reference);
    EXPECT_GT(f32, 0.99999) << i;
    EXPECT_LT(bf16, 0.99999) << i;  // the same value would mean bf16 never ran
    EXPECT_GT(bf16, 0.99) << i;
  }
}

// image_to_blob writes what cv::dnn::blobFromImage makes of the tile padded with the mean,
// for a part of an image (not continuous) smaller than the view, in both colour orders, and
// reuses the blob's memory for a second view of the same size.
TEST(ImageToBlob, MatchesBlobFromImageOfThePaddedTile) {
  cv::Mat image(300, 400, CV_8UC3);
  cv::randu(image, 0, 256);
  const cv::Mat part = image(cv::Rect(30, 20, 250, 190));
  const cv::Size view(320, 240);
  for (const ColorOrder color : {ColorOrder::kRgb, ColorOrder::kBgr}) {
    const InputSpec spec{view.width, view.height, color, 127.0f, 1.0f / 128};
    cv::Mat tile(view, CV_8UC3, cv::Scalar::all(spec.mean));
    part.copyTo(tile(cv::Rect(0, 0, part.cols, part.rows)));
    const cv::Mat expected = cv::dnn::blobFromImage(tile, spec.scale, view, cv::Scalar::all(spec.mean),
                                                    color == ColorOrder::kRgb, false, CV_32F);
    cv::Mat blob;
    image_to_blob(part, view, spec, blob);
    ASSERT_EQ(blob.dims, 4);
    ASSERT_EQ(blob.total(), expected.total());
    EXPECT_LE(cv::norm(blob, expected, cv::NORM_INF), 1e-6) << (color == ColorOrder::kRgb ? "rgb" : "bgr");
    const float* memory = blob.ptr<float>();
    const cv::Mat whole = image(cv::Rect(0, 0, 320, 240));  // no padding left from the first call
    image_to_blob(whole, view, spec, blob);
    EXPECT_EQ(blob.ptr<float>(), memory);
    const cv::Mat expected_whole = cv::dnn::blobFromImage(whole, spec.scale, view, cv::Scalar::all(spec.mean),
                                                          color == ColorOrder::kRgb, false, CV_32F);
    EXPECT_LE(cv::norm(blob, expected_whole, cv::NORM_INF), 1e-6);
  }
}

}  // namespace
}  // namespace candor
