// Internal: the streams table (Store::create_stream and friends, store.h), written once
// over a Driver. The core (store_core.cpp) calls these inside its transactions: write_op
// for the audited changes, read_op for reads, and a plain write for the lease.
#pragma once

#include <chrono>
#include <string_view>
#include <vector>

#include "candor/crypto.h"
#include "candor/store.h"
#include "store_driver.h"

namespace candor::store_detail {

// requires: a write transaction; `audit` is the draft of "stream_create".
StreamRecord insert_stream(Driver& db, const TemplateCipher& cipher, TimePoint now, const NewStream& spec,
                           AuditDraft& audit);
std::vector<StreamRecord> select_streams(Driver& db);
// ensures: throws StoreFailure(kNotFound) when there is no such stream.
StreamRecord select_stream(Driver& db, std::string_view id);
StreamSecrets open_stream_secrets(Driver& db, const TemplateCipher& cipher, std::string_view id);
// requires: a write transaction; `audit` is the draft of "stream_start" / "stream_stop".
StreamRecord update_stream_running(Driver& db, std::string_view id, bool running, AuditDraft& audit);
// requires: a write transaction; `audit` is the draft of "stream_delete".
void remove_stream(Driver& db, std::string_view id, AuditDraft& audit);
// requires: a write transaction.
bool claim_stream_lease(Driver& db, std::string_view id, std::string_view node, TimePoint now,
                        std::chrono::milliseconds ttl);
void release_stream_lease(Driver& db, std::string_view id, std::string_view node);
// A key rotation's share (reencrypt in store_core.cpp): each stream's sealed source and
// outputs opened under `from` and sealed again under `to`, deferred to the caller's
// transaction. requires: a write transaction. ensures: returns how many streams were
// sealed again; throws StoreFailure (kIntegrityError) when one does not open under `from`.
std::int64_t reseal_streams(Driver& db, const TemplateCipher& from, const TemplateCipher& to);

// The associated data binding a stream's sealed `field` ("source" or "outputs") to its id:
// the ciphertext opens only in that stream's row and field (store copy re-seals with it).
std::string stream_ad(std::string_view id, std::string_view field);

}  // namespace candor::store_detail
