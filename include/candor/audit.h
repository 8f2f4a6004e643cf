// Candor: the tamper-evident audit log (hash chain).
//
// Every change to the system of record and every search appends one
// AuditEntry. Entries are chained:
//
//   hash(e) = SHA-256( e.prev_hash (64 hex chars) || canonical_bytes(e) )
//
// where prev_hash is the hash of the entry before (64 '0' for the first) and
// canonical_bytes is a length-prefixed encoding of every hashed field (below),
// so no two different entries serialise alike. Editing, removing or reordering
// entries breaks the chain, and AuditChainVerifier says where and how.
//
// Subjects and erasure. An entry does not hash subject identifiers: it hashes
// a tag per subject, SHA-256(label || per-subject random salt || subject).
// The names live beside the chain in an index the store can scrub. Erasing a
// subject (GDPR Art. 17) deletes the names and the salt, leaving tags that no
// one can link back to the person, while the chain still verifies. `details`
// is hashed verbatim and so must never hold subject identifiers, templates or
// images: only ids, scores and counts.
//
// Limits: the chain is tamper-evident, not tamper-proof. Someone with write
// access to the database can rewrite the whole chain from the point of an
// edit onwards; anchor the head (seq, hash) outside the database (a log
// shipper, a signed daily note) to catch that.
//
// Storage (appends under the writer's transaction, listing, verification over
// the rows) is the Store's job; this header holds what does not depend on a
// database: the entry, its hashing, and the verifier.
//
// Thread safety: plain values and pure functions; an AuditChainVerifier
// instance is used by one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "candor/result.h"

namespace candor {

// Wall-clock time with millisecond resolution (Unix epoch, UTC). Stored as an
// integer count of milliseconds.
using TimePoint = std::chrono::sys_time<std::chrono::milliseconds>;

// ensures: the current system time, truncated to milliseconds.
TimePoint now_ms();

// ensures: e.g. "2024-05-01T12:00:00.123Z".
std::string format_time(TimePoint t);

// Parses "YYYY-MM-DD" (the whole named day included: the end of that day, UTC) or an
// RFC 3339 date-time, "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)" ('T' and 'Z' in
// either case), converted to UTC by its offset (a fraction is kept to the millisecond).
// ensures: kInvalidArgument naming the text for anything else: no zone, trailing text,
//          out-of-range fields (a leap second, :60, is read as :59.999).
Result<TimePoint> parse_time(std::string_view text);

// 64 '0' characters: the prev_hash of the first entry.
inline constexpr std::string_view kAuditGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

struct AuditEntry {
  std::int64_t seq = 0;        // 1, 2, 3 ... with no gaps
  TimePoint time{};
  std::string actor;           // who asked (API key name, CLI user)
  std::string operation;       // "enroll", "search", "revoke_consent", ...
  std::string collection;      // collection name, or "" for store-wide operations
  std::vector<std::string> subject_tags;  // hashed: one tag per subject named
  std::string details;         // hashed: compact JSON (ids, scores, counts)
  std::string reason;          // the stated reason (searches, erasures)
  std::string result;          // "ok" or "refused: <error code name>"
  std::string prev_hash;       // hash of entry seq-1, or kAuditGenesisHash
  std::string hash;            // SHA-256 over prev_hash and the fields above
  // Not hashed: the subjects' names while they are still held (erasure removes them).
  std::vector<std::string> subjects;
};

// The length-prefixed serialisation that is hashed: a version label, then
// seq, time (ms), actor, operation, collection, the subject tags, details,
// reason and result, each as an 8-byte big-endian length followed by the bytes.
// ensures: different field values give different bytes.
std::string audit_canonical_bytes(const AuditEntry& entry);

// ensures: sha256_hex(entry.prev_hash + audit_canonical_bytes(entry)).
std::string audit_entry_hash(const AuditEntry& entry);

// ensures: the tag under which `subject` is recorded, given its salt.
std::string audit_subject_tag(std::string_view salt_hex, std::string_view subject);

enum class AuditBreak {
  kEdited,        // an entry's fields no longer match its hash, or its link was rewritten
  kRemoved,       // a gap in seq: entries were deleted
  kReordered,     // an entry sits at a position other than the one it was chained at
  kTruncated,     // the chain head records entries beyond the last one present
  kSubjectIndex,  // the (unhashed) subject names disagree with the hashed tags
};
std::string_view audit_break_name(AuditBreak kind) noexcept;

struct AuditIssue {
  std::int64_t seq = 0;  // the first seq the problem shows at
  AuditBreak kind = AuditBreak::kEdited;
  std::string message;
};

struct AuditVerification {
  bool intact = true;
  std::int64_t entries = 0;      // rows examined
  std::int64_t last_seq = 0;     // highest seq present
  std::string head_hash;         // hash of the last entry (kAuditGenesisHash when empty)
  std::vector<AuditIssue> issues;  // ordered by discovery; capped at kMaxIssues

  static constexpr std::size_t kMaxIssues = 64;
  // ensures: "audit chain intact: N entries, head H" or the first issue, e.g.
  // "audit chain broken at seq 7 (edited): ...".
  std::string summary() const;
};

// Recomputes a chain entry by entry.
//
// Usage: add() every entry in ascending seq order, then finish() with the
// head recorded by the writer. The verifier keeps O(1) state besides the
// issues, so it scales to long logs; to tell a reordering from an edit it asks
// `find_seq_by_hash` where a given hash is stored (only when a link fails).
class AuditChainVerifier {
 public:
  using FindSeqByHash = std::function<std::optional<std::int64_t>(std::string_view hash)>;
  explicit AuditChainVerifier(FindSeqByHash find_seq_by_hash);

  // requires: entry.seq greater than that of the previous add() (else throws std::logic_error).
  void add(const AuditEntry& entry);

  // Records a problem found outside the chain proper (e.g. the subject index).
  void add_issue(std::int64_t seq, AuditBreak kind, std::string message);

  // ensures: the verdict. head_seq/head_hash: what the writer recorded as the
  // last appended entry (0 and kAuditGenesisHash for an empty log).
  AuditVerification finish(std::int64_t head_seq, std::string_view head_hash);

 private:
  FindSeqByHash find_;
  AuditVerification result_;
  std::int64_t expected_seq_ = 1;
  std::string prev_hash_{kAuditGenesisHash};
};

}  // namespace candor
