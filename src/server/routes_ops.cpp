// Operations routes: liveness, readiness, Prometheus metrics, the OpenAPI document.
#include "http_util.h"
#include "server_context.h"

namespace candor::server {

void register_ops_routes(Router& router) {
  router.add({"GET", "/healthz", Access::kPublic, "", false}, [](Context&, Call& call) {
    send_json(call.res, 200, {{"status", "ok"}});
  });

  // Ready = the engine and collections are loaded and the store answers a ping (cached
  // for a second: load balancers probe often). A node whose database is down says so
  // and is taken out of rotation; it comes back by itself when the store reconnects.
  router.add({"GET", "/readyz", Access::kPublic, "", false}, [](Context& ctx, Call& call) {
    if (ctx.load_failed.load()) {
      send_json(call.res, 503, {{"status", "failed"}, {"detail", "the engine or the collections failed to load"}});
      return;
    }
    if (!ctx.loaded.load()) {
      send_json(call.res, 503, {{"status", "loading"}});
      return;
    }
    if (auto ping = ctx.store_health.check(*ctx.store); !ping) {
      send_json(call.res, 503, {{"status", "store_unavailable"}, {"detail", error_code_name(ping.error().code)}});
      return;
    }
    send_json(call.res, 200, {{"status", "ready"}});
  });

  // Without a key: the server's own series only. With a key holding "metrics" (a
  // Prometheus bearer token, docs/api.md): also the templates of each collection the
  // key sees; the others stay invisible, as everywhere else.
  router.add({"GET", "/metrics", Access::kOptional, "metrics", false}, [](Context& ctx, Call& call) {
    Metrics::Gauges g;
    g.inference_active = ctx.gate->active();
    g.inference_waiting = ctx.gate->waiting();
    g.inference_workers = ctx.gate->workers();
    g.inference_queue_capacity = ctx.gate->queue_capacity();
    g.ready = ctx.loaded.load();
    g.store_up = ctx.store_health.check(*ctx.store).ok();
    if (g.ready) {
      if (*g.store_up && call.key != nullptr) {
        g.templates.emplace();
        if (auto list = ctx.store->list_collections()) {
          for (const auto& c : *list) {
            if (call.key->sees_collection(c.name)) g.templates->emplace_back(c.name, ctx.collections->indexed_faces(c.name));
          }
        }
      }
      g.feed = ctx.collections->follow_status();
    }
    call.res.status = 200;
    call.res.set_content(ctx.metrics.render(g), "text/plain; version=0.0.4; charset=utf-8");
  });

  router.add({"GET", "/v1/openapi.json", Access::kPublic, "", false}, [](Context&, Call& call) {
    call.res.status = 200;
    call.res.set_content(std::string(openapi_document()), "application/json");
  });
}

}  // namespace candor::server
