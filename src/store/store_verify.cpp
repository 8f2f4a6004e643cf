// verify_store (candor/backup.h): the check to run after a restore, through the public
// Store API only, so it holds for both backends and for whatever a backend keeps inside.
#include <set>

#include "candor/backup.h"
#include "candor/library_store.h"

namespace candor {
namespace {

// Checks one collection's templates and counts, appending what does not verify.
// ensures: an Error only when the store could not be read at all.
Status verify_collection(Store& store, const Collection& c, StoreCheck& check) {
  Result<std::vector<Consent>> consents = store.list_consents(c.name, "");
  if (!consents) return consents.error();
  check.consents += static_cast<std::int64_t>(consents->size());
  std::set<std::string> consented;
  for (const Consent& k : *consents) consented.insert(k.subject);

  Result<std::vector<SubjectSummary>> subjects = store.list_subjects(c.name);
  if (!subjects) return subjects.error();
  std::int64_t counted = 0;  // by the store, without reading a template
  for (const SubjectSummary& s : *subjects) counted += s.faces;

  Result<std::vector<FaceRecord>> faces = store.load_faces(c.name);  // decrypts every template
  if (!faces) {
    if (faces.error().code != ErrorCode::kIntegrityError) return faces.error();
    check.problems.push_back("collection " + c.name + ": " + faces.error().message);
    return ok_status();
  }
  check.faces += static_cast<std::int64_t>(faces->size());
  if (static_cast<std::int64_t>(faces->size()) != counted) {
    check.problems.push_back("collection " + c.name + ": the store counts " + std::to_string(counted) +
                             " faces but " + std::to_string(faces->size()) + " load");
  }
  for (const FaceRecord& f : *faces) {
    if (f.embedding.empty()) {
      check.problems.push_back("collection " + c.name + ": face " + std::to_string(f.id) + " holds an empty template");
    }
    if (consented.count(f.subject) == 0) {
      check.problems.push_back("collection " + c.name + ": face " + std::to_string(f.id) +
                               " belongs to a subject with no consent record");
    }
  }
  return ok_status();
}

// Checks one photo library: every active face's template decrypts (list_faces opens each)
// and is not empty; a forgotten face holds none.
// ensures: an Error only when the store could not be read at all.
Status verify_library(LibraryStore& libraries, const PhotoLibrary& lib, StoreCheck& check) {
  Result<std::vector<LibraryFace>> faces = libraries.list_faces(lib.name, /*with_templates=*/true,
                                                                /*with_forgotten=*/true);
  if (!faces) {
    if (faces.error().code != ErrorCode::kIntegrityError) return faces.error();
    check.problems.push_back("library " + lib.name + ": " + faces.error().message);
    return ok_status();
  }
  for (const LibraryFace& f : *faces) {
    if (f.forgotten) continue;
    ++check.library_faces;
    if (f.embedding.empty()) {
      check.problems.push_back("library " + lib.name + ": face " + std::to_string(f.id) + " holds an empty template");
    }
  }
  return ok_status();
}

}  // namespace

Result<StoreCheck> verify_store(std::string_view uri, const StoreOptions& options) {
  StoreOptions existing = options;
  existing.create_if_missing = false;  // verifying never creates a store, or a key
  existing.read_only = true;           // nor writes to one: checking a backup leaves it as it was
  Result<std::unique_ptr<Store>> opened = open_store(uri, existing);
  if (!opened) return opened.error();
  Store& store = **opened;

  StoreCheck check;
  Result<std::vector<Collection>> collections = store.list_collections();
  if (!collections) return collections.error();
  check.collections = static_cast<std::int64_t>(collections->size());
  for (const Collection& c : *collections) {
    if (Status st = verify_collection(store, c, check); !st) return st.error();
  }
  Result<std::vector<FaceId>> orphans = store.faces_without_collection();
  if (!orphans) return orphans.error();
  for (const FaceId id : *orphans) {
    check.problems.push_back("face " + std::to_string(id) + " belongs to no collection (its collection is gone)");
  }
  Result<std::vector<PhotoLibrary>> libraries = store.library().list_libraries();
  if (!libraries) return libraries.error();
  check.libraries = static_cast<std::int64_t>(libraries->size());
  for (const PhotoLibrary& lib : *libraries) {
    if (Status st = verify_library(store.library(), lib, check); !st) return st.error();
  }
  Result<AuditVerification> audit = store.audit_verify();
  if (!audit) return audit.error();
  check.audit_entries = audit->entries;
  if (!audit->intact) check.problems.push_back(audit->summary());
  return check;
}

}  // namespace candor
