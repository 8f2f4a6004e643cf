#include "candor/audit.h"

#include <cstdio>
#include <string>
#include <ctime>
#include <stdexcept>

#include "candor/crypto.h"

namespace candor {
namespace {

// Bumped if the hashed layout ever changes; old entries keep verifying under
// the label they were written with only if a verifier knows both, so changing
// this is a migration, not an edit.
constexpr std::string_view kCanonicalLabel = "candor-audit-v1";

void put_field(std::string& out, std::string_view bytes) {
  const std::uint64_t n = bytes.size();
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((n >> shift) & 0xFF));
  out.append(bytes);
}

}  // namespace

TimePoint now_ms() {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

namespace {

// Reads exactly `n` decimal digits at text[at...]; false if any is not a digit.
bool digits(std::string_view text, std::size_t at, std::size_t n, int& out) {
  if (at + n > text.size()) return false;
  out = 0;
  for (std::size_t i = at; i < at + n; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    out = out * 10 + (text[i] - '0');
  }
  return true;
}

}  // namespace

Result<TimePoint> parse_time(std::string_view text) {
  const auto refuse = [&](std::string_view why) {
    // Appended piecewise: GCC 12 warns (-Wrestrict, a false positive) on a chain of operator+.
    std::string message = "'";
    message.append(text.substr(0, 64));
    message.append("' is not a date (YYYY-MM-DD) or RFC 3339 date-time (YYYY-MM-DDTHH:MM:SSZ, or +01:00 for Z): ");
    message.append(why);
    return Error{ErrorCode::kInvalidArgument, std::move(message)};
  };
  // RFC 3339 section 5.6: full-date "T" partial-time time-offset.
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0, ms = 0, off_h = 0, off_m = 0;
  if (!digits(text, 0, 4, y) || text.size() < 10 || text[4] != '-' || !digits(text, 5, 2, mo) || text[7] != '-' ||
      !digits(text, 8, 2, d)) {
    return refuse("the date must be YYYY-MM-DD");
  }
  const std::chrono::year_month_day ymd{std::chrono::year{y}, std::chrono::month{static_cast<unsigned>(mo)},
                                        std::chrono::day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return refuse("no such day");
  if (text.size() == 10) {  // the whole named day is included
    return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::sys_days{ymd} + std::chrono::days{1});
  }
  if ((text[10] != 'T' && text[10] != 't') || !digits(text, 11, 2, h) || text.size() < 19 || text[13] != ':' ||
      !digits(text, 14, 2, mi) || text[16] != ':' || !digits(text, 17, 2, s)) {
    return refuse("the time must be THH:MM:SS");
  }
  if (h > 23 || mi > 59 || s > 60) return refuse("hour, minute or second out of range");
  std::size_t at = 19;
  if (at < text.size() && text[at] == '.') {
    std::size_t n = 0;
    for (++at; at < text.size() && text[at] >= '0' && text[at] <= '9'; ++at, ++n) {
      if (n < 3) ms = ms * 10 + (text[at] - '0');
    }
    if (n == 0) return refuse("a '.' must be followed by digits");
    for (; n < 3; ++n) ms *= 10;
  }
  int sign = 0;
  if (at < text.size() && (text[at] == 'Z' || text[at] == 'z')) {
    ++at;
  } else if (at < text.size() && (text[at] == '+' || text[at] == '-')) {
    sign = text[at] == '+' ? 1 : -1;
    if (!digits(text, at + 1, 2, off_h) || at + 3 >= text.size() || text[at + 3] != ':' ||
        !digits(text, at + 4, 2, off_m) || off_h > 23 || off_m > 59) {
      return refuse("the offset must be +HH:MM or -HH:MM");
    }
    at += 6;
  } else {
    return refuse("a time zone is required (Z or +HH:MM)");
  }
  if (at != text.size()) return refuse("unexpected text after the time zone");
  if (s == 60) s = 59, ms = 999;  // a leap second: the last instant of its minute
  auto t = std::chrono::sys_days{ymd} + std::chrono::hours{h} + std::chrono::minutes{mi} + std::chrono::seconds{s} +
           std::chrono::milliseconds{ms};
  // Local time = UTC + offset, so UTC = local - offset.
  t -= sign * (std::chrono::hours{off_h} + std::chrono::minutes{off_m});
  return std::chrono::time_point_cast<std::chrono::milliseconds>(t);
}

std::string format_time(TimePoint t) {
  const std::int64_t ms = t.time_since_epoch().count();
  std::int64_t secs = ms / 1000;
  std::int64_t rem = ms % 1000;
  if (rem < 0) {
    rem += 1000;
    secs -= 1;
  }
  const std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[96];  // roomy: the compiler cannot prove the year has four digits
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(rem));
  return buf;
}

std::string audit_canonical_bytes(const AuditEntry& e) {
  std::string out;
  out.reserve(256 + e.details.size());
  put_field(out, kCanonicalLabel);
  put_field(out, std::to_string(e.seq));
  put_field(out, std::to_string(e.time.time_since_epoch().count()));
  put_field(out, e.actor);
  put_field(out, e.operation);
  put_field(out, e.collection);
  put_field(out, std::to_string(e.subject_tags.size()));
  for (const std::string& tag : e.subject_tags) put_field(out, tag);
  put_field(out, e.details);
  put_field(out, e.reason);
  put_field(out, e.result);
  return out;
}

std::string audit_entry_hash(const AuditEntry& e) {
  // prev_hash is hashed as its 64 hex characters, so a malformed stored value
  // still hashes (and fails to match) instead of failing to parse.
  std::string material = e.prev_hash;
  material += audit_canonical_bytes(e);
  return sha256_hex(material);
}

std::string audit_subject_tag(std::string_view salt_hex, std::string_view subject) {
  std::string material = "candor-subject-tag-v1";
  put_field(material, salt_hex);
  put_field(material, subject);
  return sha256_hex(material);
}

std::string_view audit_break_name(AuditBreak kind) noexcept {
  switch (kind) {
    case AuditBreak::kEdited: return "edited";
    case AuditBreak::kRemoved: return "removed";
    case AuditBreak::kReordered: return "reordered";
    case AuditBreak::kTruncated: return "truncated";
    case AuditBreak::kSubjectIndex: return "subject_index";
  }
  return "edited";
}

std::string AuditVerification::summary() const {
  if (intact) {
    return "audit chain intact: " + std::to_string(entries) + " entries, head seq " +
           std::to_string(last_seq) + " hash " + head_hash;
  }
  if (issues.empty()) return "audit chain broken";
  const AuditIssue& first = issues.front();
  std::string s = "audit chain broken at seq " + std::to_string(first.seq) + " (" +
                  std::string(audit_break_name(first.kind)) + "): " + first.message;
  if (issues.size() > 1) s += " (+" + std::to_string(issues.size() - 1) + " more issues)";
  return s;
}

AuditChainVerifier::AuditChainVerifier(FindSeqByHash find_seq_by_hash)
    : find_(std::move(find_seq_by_hash)) {
  result_.head_hash = std::string(kAuditGenesisHash);
}

void AuditChainVerifier::add_issue(std::int64_t seq, AuditBreak kind, std::string message) {
  result_.intact = false;
  if (result_.issues.size() < AuditVerification::kMaxIssues) {
    result_.issues.push_back(AuditIssue{seq, kind, std::move(message)});
  }
}

void AuditChainVerifier::add(const AuditEntry& e) {
  if (e.seq <= result_.last_seq && result_.entries > 0) {
    throw std::logic_error("AuditChainVerifier::add: entries must come in ascending seq order");
  }
  const std::string seq_s = std::to_string(e.seq);
  bool gap = false;
  if (e.seq > expected_seq_) {
    gap = true;
    add_issue(expected_seq_, AuditBreak::kRemoved,
              e.seq == expected_seq_ + 1
                  ? "entry " + std::to_string(expected_seq_) + " is missing (deleted)"
                  : "entries " + std::to_string(expected_seq_) + ".." +
                        std::to_string(e.seq - 1) + " are missing (deleted)");
  } else if (e.seq < expected_seq_) {
    // Only possible before the first entry (seq <= 0).
    add_issue(e.seq, AuditBreak::kEdited, "seq " + seq_s + " is out of range");
  }

  bool moved_intact = false;  // a whole entry, chained elsewhere, now sits here
  if (e.prev_hash != prev_hash_) {
    const std::optional<std::int64_t> j = find_ ? find_(e.prev_hash) : std::nullopt;
    if (j && *j != e.seq - 1) {
      AuditEntry as_written = e;
      as_written.seq = *j + 1;
      moved_intact = audit_entry_hash(as_written) == e.hash;
      add_issue(e.seq, AuditBreak::kReordered,
                moved_intact ? "the entry at seq " + seq_s + " was written as seq " +
                                   std::to_string(*j + 1) + " (it chains after the entry now at seq " +
                                   std::to_string(*j) + ")"
                             : "the entry at seq " + seq_s +
                                   " chains after the entry now at seq " + std::to_string(*j) +
                                   ", not after its predecessor");
    } else if (!gap) {
      add_issue(e.seq, AuditBreak::kEdited,
                "prev_hash of seq " + seq_s +
                    " does not match the hash of the entry before it: that entry was rewritten "
                    "(with a recomputed hash) or this link was edited");
    }
    // With a gap and no relocated predecessor, the deletion explains the broken link.
  }
  if (!moved_intact && audit_entry_hash(e) != e.hash) {
    add_issue(e.seq, AuditBreak::kEdited,
              "the fields of seq " + seq_s + " do not match its stored hash (edited)");
  }
  prev_hash_ = e.hash;
  expected_seq_ = e.seq + 1;
  result_.last_seq = e.seq;
  ++result_.entries;
}

AuditVerification AuditChainVerifier::finish(std::int64_t head_seq, std::string_view head_hash) {
  const std::int64_t last = result_.entries == 0 ? 0 : result_.last_seq;
  if (head_seq > last) {
    add_issue(last + 1, AuditBreak::kTruncated,
              "the chain head records seq " + std::to_string(head_seq) + " but the log ends at seq " +
                  std::to_string(last) + ": the newest entries were deleted");
  } else if (head_seq < last) {
    add_issue(head_seq + 1, AuditBreak::kEdited,
              "entries after seq " + std::to_string(head_seq) +
                  " were added without advancing the chain head (forged)");
  } else if (head_hash != prev_hash_) {
    add_issue(last, AuditBreak::kEdited,
              "the chain head hash differs from the hash of the last entry (seq " +
                  std::to_string(last) + ")");
  }
  result_.head_hash = prev_hash_;
  return result_;
}

}  // namespace candor
