// Internal: what the photo-library operations (store_library.cpp) need from the store
// core, so that they run in the core's transactions and append to its audit chain
// without store_core.cpp holding them.
#pragma once

#include <functional>
#include <memory>

#include "candor/library_store.h"
#include "store_driver.h"

namespace candor::store_detail {

class LibraryCore {
 public:
  virtual ~LibraryCore() = default;
  // Runs `fn` in a write transaction under the store's mutex, as every Store mutation
  // runs (write_op in store_core.cpp): fn fills in the draft's details; the entry is
  // appended before COMMIT; a StoreFailure rolls back and audits the refusal.
  virtual Status write(const AuditContext& ctx, AuditDraft draft,
                       const std::function<void(Driver&, AuditDraft&)>& fn) = 0;
  // Runs `fn` in a read snapshot under the store's mutex.
  virtual Status read(const std::function<void(Driver&)>& fn) = 0;
  virtual const TemplateCipher& cipher() const = 0;
  virtual TimePoint now() const = 0;
};

// A key rotation's share (reencrypt in store_core.cpp): every library template still held
// (forgotten faces hold none) opened under `from` and sealed again under `to`, with the
// same associated data; the updates are deferred to the caller's transaction.
// requires: a write transaction.
// ensures: returns how many templates were sealed again; throws StoreFailure
//   (kIntegrityError) naming the face when one does not open under `from`.
std::int64_t reseal_library_templates(Driver& db, const TemplateCipher& from, const TemplateCipher& to);

// The associated data of a library face's template: the collection template's format
// (template_ad) with the library's audit scope as the collection and no subject, so a
// library ciphertext opens in no collection's row and no other library's.
std::string library_template_ad(std::int64_t library_id, std::string_view library_name, std::int64_t face,
                                std::string_view model_id);

// A retention run's share (retention_run in store_core.cpp): in every library, the active
// faces whose templates were computed more than the library's retention_days before `now`
// are deleted with the corrections that name them, the labels of numbers no face holds any
// more, and the records of photos left with no face at all (so a later `library add`
// computes fresh templates for them; a photo that keeps a forgotten face's marker is kept,
// and so does not come back). Forgotten faces hold no template and are kept as markers.
// requires: a write transaction. ensures: one audit draft ("library_retention_purge",
//   the library's scope, counts and face ids) per library that lost a face; `expired`
//   grows by the faces deleted.
std::vector<AuditDraft> expire_library_faces(Driver& db, TimePoint now, std::int64_t& expired);

// The LibraryStore over `core`, which must outlive it.
std::unique_ptr<LibraryStore> make_library_store(LibraryCore& core);

}  // namespace candor::store_detail
