// What a Stream needs, for tests that are about its sources and sinks rather than its
// decisions: a temporary SQLite store holding one empty collection, "staff", with the
// test purpose, and Collections over the shared engine.
#pragma once

#include <memory>
#include <string>

#include "../engine/test_support.h"
#include "../store/store_test_util.h"
#include "candor/collections.h"
#include "candor/stream.h"

namespace candor::test {

struct StreamEnv {
  TempDir dir;
  TestClock clock;
  std::unique_ptr<Store> store;
  std::unique_ptr<Collections> collections;

  // ensures: the store and collection exist, or the error that stopped them.
  Status open() {
    auto s = open_store(dir.file("s.db"), options_with_key(&clock));
    if (!s) return s.error();
    store = std::move(*s);
    auto c = Collections::open(shared_engine(), *store, {});
    if (!c) return c.error();
    collections = std::move(*c);
    NewCollection spec;
    spec.name = "staff";
    spec.purpose = std::string(kPurpose);
    if (auto created = collections->create_collection(spec, "fmr-1e-4", {"admin", ""}); !created) return created.error();
    return ok_status();
  }

  // A stream's options over that collection (name "door 1", no analyser needed).
  static StreamOptions stream_options() {
    StreamOptions o;
    o.name = "door 1";
    o.collection = "staff";
    o.purpose = std::string(kPurpose);
    o.context = {"watcher", "door 1 entry control"};
    return o;
  }
};

}  // namespace candor::test
