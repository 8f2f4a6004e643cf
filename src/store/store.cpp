// open_store: picks the Store implementation from the URI; helpers over any Store.
#include <algorithm>
#include <string>

#include "candor/store.h"
#include "pg_store.h"
#include "sqlite_store.h"

namespace candor {

bool is_valid_collection_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Result<std::vector<std::string>> subjects_sharing_evidence(Store& store, const Consent& consent) {
  auto all = store.list_consents(consent.collection, "");
  if (!all) return all.error();
  std::vector<std::string> out;
  for (const Consent& c : *all) {
    if (c.evidence_sha256 == consent.evidence_sha256 && c.subject != consent.subject) out.push_back(c.subject);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Result<std::unique_ptr<Store>> open_store(std::string_view uri, const StoreOptions& options) {
  if (uri.starts_with("postgresql://") || uri.starts_with("postgres://")) {
    return store_detail::open_pg_store(std::string(uri), options);
  }
  std::string_view path = uri;
  if (path.starts_with("sqlite:")) path.remove_prefix(7);
  if (path.empty()) return Error{ErrorCode::kInvalidArgument, "store URI names no database file"};
  return store_detail::open_sqlite_store(std::string(path), options);
}

}  // namespace candor
