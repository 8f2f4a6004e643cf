// The subject gallery: subject templates in an Index, face templates beside it.
#include "subject_gallery.h"

#include <algorithm>
#include <stdexcept>

#include "candor/collections.h"

namespace candor::collections_detail {

SubjectGallery::SubjectGallery(int dim, const std::string& index_spec)
    : dim_(dim), index_(make_index(dim, index_spec)) {}

void SubjectGallery::reindex(Subject& s) {
  const std::size_t d = static_cast<std::size_t>(dim_);
  std::vector<std::vector<float>> rows;
  rows.reserve(s.ids.size());
  for (std::size_t i = 0; i < s.ids.size(); ++i) rows.emplace_back(s.templates.begin() + i * d, s.templates.begin() + (i + 1) * d);
  const std::vector<float> t = subject_template(rows);
  const std::int64_t key = s.key;
  index_->add(std::span<const std::int64_t>(&key, 1), t);  // replaces the subject's old template
}

void SubjectGallery::add(const std::string& subject, std::span<const FaceId> ids, std::span<const float> templates) {
  const std::size_t d = static_cast<std::size_t>(dim_);
  if (templates.size() != ids.size() * d) throw std::invalid_argument("SubjectGallery::add: sizes do not match");
  auto [it, created] = subjects_.try_emplace(subject);
  Subject& s = it->second;
  if (created) {
    s.key = next_key_++;
    subject_by_key_[s.key] = subject;
  }
  bool changed = false;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (!subject_of_.emplace(ids[i], subject).second) continue;  // held already
    s.ids.push_back(ids[i]);
    s.templates.insert(s.templates.end(), templates.begin() + i * d, templates.begin() + (i + 1) * d);
    changed = true;
  }
  if (s.ids.empty()) {  // nothing new and nothing before: do not keep an empty subject
    subject_by_key_.erase(s.key);
    subjects_.erase(it);
    return;
  }
  if (changed) reindex(s);
}

std::size_t SubjectGallery::remove(std::span<const FaceId> ids) {
  const std::size_t d = static_cast<std::size_t>(dim_);
  std::set<std::string> touched;
  std::size_t removed = 0;
  for (FaceId id : ids) {
    auto found = subject_of_.find(id);
    if (found == subject_of_.end()) continue;
    Subject& s = subjects_.at(found->second);
    const auto at = static_cast<std::size_t>(std::find(s.ids.begin(), s.ids.end(), id) - s.ids.begin());
    s.ids.erase(s.ids.begin() + static_cast<std::ptrdiff_t>(at));
    s.templates.erase(s.templates.begin() + static_cast<std::ptrdiff_t>(at * d),
                      s.templates.begin() + static_cast<std::ptrdiff_t>((at + 1) * d));
    touched.insert(found->second);
    subject_of_.erase(found);
    ++removed;
  }
  for (const std::string& name : touched) {
    auto it = subjects_.find(name);
    if (it->second.ids.empty()) {
      const std::int64_t key = it->second.key;
      index_->remove(std::span<const std::int64_t>(&key, 1));
      subject_by_key_.erase(key);
      subjects_.erase(it);
    } else {
      reindex(it->second);
    }
  }
  return removed;
}

std::vector<SubjectHit> SubjectGallery::search(std::span<const float> probe, std::size_t k) const {
  std::vector<SubjectHit> out;
  if (index_->size() == 0 || k == 0) return out;
  const auto found = index_->search(probe, std::min(k, index_->size()));  // named: the loop must not outlive it
  for (const Neighbor& n : found.front()) {
    const std::string& name = subject_by_key_.at(n.id);
    out.push_back({name, n.score, subjects_.at(name).ids.size()});
  }
  return out;
}

std::optional<std::pair<FaceId, float>> SubjectGallery::best_face(const std::string& subject,
                                                                  std::span<const float> probe,
                                                                  const std::set<FaceId>& live) const {
  auto it = subjects_.find(subject);
  if (it == subjects_.end()) return std::nullopt;
  const std::size_t d = static_cast<std::size_t>(dim_);
  std::optional<std::pair<FaceId, float>> best;
  for (std::size_t i = 0; i < it->second.ids.size(); ++i) {
    if (!live.count(it->second.ids[i])) continue;
    const float score = dot(probe, std::span<const float>(it->second.templates).subspan(i * d, d));
    if (!best || score > best->second) best = std::make_pair(it->second.ids[i], score);
  }
  return best;
}

std::vector<std::vector<float>> SubjectGallery::templates_of(const std::string& subject) const {
  std::vector<std::vector<float>> out;
  auto it = subjects_.find(subject);
  if (it == subjects_.end()) return out;
  const std::size_t d = static_cast<std::size_t>(dim_);
  for (std::size_t i = 0; i < it->second.ids.size(); ++i) {
    out.emplace_back(it->second.templates.begin() + i * d, it->second.templates.begin() + (i + 1) * d);
  }
  return out;
}

std::vector<FaceId> SubjectGallery::faces_of(const std::string& subject) const {
  auto it = subjects_.find(subject);
  return it == subjects_.end() ? std::vector<FaceId>{} : it->second.ids;
}

}  // namespace candor::collections_detail
