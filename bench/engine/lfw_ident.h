// Open-set 1:N identification on LFW (issue 11): who is enrolled from which photos,
// which photos probe, how a probe is scored against a subject enrolled from several
// photos, and the thresholds of subject templates. Pure bookkeeping over template
// indices, kept apart from the commands so that tests/engine can check it without LFW.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/lfw.h"

namespace candor::bench {

// One person's images (candor::PersonImages), in LFW order (_0001 first).

// Every image under <root>/lfw as "Name/Name_NNNN.jpg", grouped by person, in name then
// index order (the keys of the template cache).
std::vector<std::string> all_lfw_keys(const std::filesystem::path& root);

// Groups sorted "Name/Name_NNNN.jpg" keys by person: indices into `keys`.
std::vector<PersonImages> group_by_person(const std::vector<std::string>& keys);

struct IdentProbe {
  std::size_t image = 0;
  int mate = -1;  // the gallery subject it belongs to; -1: nobody enrolled (non-mated)
};

struct IdentProtocol {
  std::vector<std::vector<std::size_t>> gallery;  // per subject: the images it is enrolled from
  std::vector<IdentProbe> mated, non_mated;
  std::size_t distractors = 0;  // gallery subjects no probe belongs to
};

// The multi-photo protocol uses photos 1..K for enrolment and probes from this photo
// on, so the probes stay the same for every K up to kMaxIdentEnrollImages.
inline constexpr int kMaxIdentEnrollImages = 3;
inline constexpr std::size_t kFirstProbePhoto = 4;

// The one-photo protocol: the first image of each person with two or more enrolled;
// their other images are mated probes; people with one image are non-mated probes.
IdentProtocol one_photo_protocol(const std::vector<PersonImages>& people);

// Issue 11's protocol: people with four or more photos enrolled from their first
// `enroll_images` photos and probed with their 4th and later photos; people with two or
// three photos enrolled from their first photo as distractors (their other photos are
// not used); people with one photo are non-mated probes.
// requires: 1 <= enroll_images <= kMaxIdentEnrollImages (else std::invalid_argument).
IdentProtocol multi_photo_protocol(const std::vector<PersonImages>& people, int enroll_images);

// How a probe's score against a subject enrolled from several faces is made.
enum class Aggregate {
  kCentroid,  // cosine with subject_template() of the faces (what Candor stores, issue 11)
  kMax,       // the best single face
  kMean,      // the mean of the face scores
};
inline constexpr Aggregate kAggregates[] = {Aggregate::kCentroid, Aggregate::kMax, Aggregate::kMean};
const char* aggregate_name(Aggregate a);
std::optional<Aggregate> parse_aggregate(std::string_view name);

struct FnirAtFpir {
  double fpir = 0;
  double threshold = 0;              // chosen on the non-mated probes' top scores only
  double fnir = 0;                   // mated probes whose mate is not top-1 at or above it
  std::size_t false_positives = 0;   // non-mated probes at or above it
};

struct IdentResult {
  std::size_t rank1_hits = 0;
  double rank1 = 0;  // of the mated probes
  std::vector<FnirAtFpir> at;  // one per requested FPIR
  // At thresholds fixed beforehand (one per requested FPIR, when given): what a collection
  // searching at SearchOptions::fpir decides at, read from the shipped points for the
  // gallery's size without looking at these probes; `fpir` is the rate asked for.
  std::vector<FnirAtFpir> at_fixed;
};

// Scores every probe against every gallery subject and keeps the top-1 (the first
// subject on ties). An empty template (an unreadable image) is a zero vector: it scores
// 0 as a face, is left out of a centroid, and as a probe finds nobody (score -2).
// requires: templates cover every index of the protocol; non-empty ones share one size.
// `fixed_thresholds`, when not empty, holds one threshold per FPIR (IdentResult::at_fixed).
IdentResult evaluate_ident(const IdentProtocol& protocol, const std::vector<std::vector<float>>& templates,
                           Aggregate aggregate, std::span<const double> fpirs,
                           std::span<const double> fixed_thresholds = {});

// Subject-template thresholds: the subject template of the first `photos` images of each
// person with at least that many, against every image of the other people (impostor
// scores) and against the person's own later images (genuine scores, for TAR).
struct SubjectCalibration {
  int photos = 0;
  std::size_t subjects = 0;
  std::size_t impostor_scores = 0;
  std::size_t genuine_scores = 0;
  std::vector<RateAtThreshold> at;  // one per requested FMR
};

// requires: as evaluate_ident; photos >= 1.
SubjectCalibration calibrate_subject_thresholds(const std::vector<PersonImages>& people,
                                                const std::vector<std::vector<float>>& templates, int photos,
                                                std::span<const double> fmrs);

}  // namespace candor::bench
