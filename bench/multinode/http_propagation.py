#!/usr/bin/env python3
"""Propagation through the HTTP API: enroll real LFW photos on node A, time until
node B's /metrics counts each new template (its index holds it, so a search on B
can find it). Two `candor serve` processes on one store must be running.

  bench/multinode/http_propagation.py --a http://127.0.0.1:8080 --b http://127.0.0.1:8081 \
      --key cnd_... --count 200 [--lfw ../shared/datasets/lfw]

The time starts when A's enroll request has returned (committed); B is polled as
fast as it answers (about 1 ms a scrape on loopback), which bounds the resolution.
"""
import argparse
import json
import os
import re
import statistics
import sys
import time
import urllib.request
import uuid


def request(url, key=None, body=None, content_type=None):
    req = urllib.request.Request(url, data=body)
    if key:
        req.add_header("X-API-Key", key)
    if content_type:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, r.read()


def multipart(field, filename, data):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def templates(base, collection, key):
    # Collection series are in /metrics only for a key that sees the collection.
    _, text = request(base + "/metrics", key)
    m = re.search(r'candor_collection_templates\{collection="%s"\} (\d+)' % re.escape(collection), text.decode())
    return int(m.group(1)) if m else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--a", required=True)
    p.add_argument("--b", required=True)
    p.add_argument("--key", required=True, help="an admin key")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--lfw", default=os.path.join(os.path.dirname(__file__), "../../../shared/datasets/lfw"))
    p.add_argument("--collection", default="httpprop")
    a = p.parse_args()
    root = os.path.join(a.lfw, "lfw")
    if not os.path.isdir(root):
        sys.exit(f"LFW is absent ({root}): this benchmark enrolls real photos")
    photos = []
    for person in sorted(os.listdir(root)):
        photos.append(os.path.join(root, person, person + "_0001.jpg"))
        if len(photos) >= a.count * 2:
            break
    hdr = "application/json"
    try:
        request(f"{a.a}/v1/collections/{a.collection}", a.key, None)
        req = urllib.request.Request(f"{a.a}/v1/collections/{a.collection}", method="DELETE",
                                     headers={"X-API-Key": a.key})
        urllib.request.urlopen(req, timeout=60)
    except urllib.error.HTTPError:
        pass
    request(f"{a.a}/v1/collections", a.key,
            json.dumps({"name": a.collection, "purpose": "propagation bench", "retention_days": 30}).encode(), hdr)
    request(f"{a.a}/v1/collections/{a.collection}/consents", a.key,
            json.dumps({"subject": "s", "evidence_sha256": "a" * 64, "collected_by": "bench"}).encode(), hdr)
    delays, held = [], 0
    for path in photos:
        if held >= a.count:
            break
        body, ctype = multipart("images", os.path.basename(path), open(path, "rb").read())
        try:
            _, answer = request(f"{a.a}/v1/collections/{a.collection}/subjects/s/faces", a.key, body, ctype)
        except urllib.error.HTTPError:
            continue  # a photo the quality gate refuses
        if json.loads(answer).get("enrolled", 0) != 1:
            continue
        t0 = time.monotonic()
        held += 1
        while templates(a.b, a.collection, a.key) < held:
            if time.monotonic() - t0 > 10:
                sys.exit("node B did not see a template within 10 s")
        delays.append((time.monotonic() - t0) * 1000)
    delays.sort()
    print(f"http propagation: {len(delays)} enrollments on A; B's index held each after "
          f"median {statistics.median(delays):.1f} ms, p90 {delays[int(0.9 * (len(delays) - 1))]:.1f} ms, "
          f"max {delays[-1]:.1f} ms (from A's answer to B's /metrics)")


if __name__ == "__main__":
    main()
