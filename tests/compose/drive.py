"""Drives the compose stack through its published port only, as a user would (tests/compose/run.sh
starts it). Phases, each run by run.sh at its moment:

  lifecycle   template, pass, signed bundle checked with openssl and our reader, a device registers,
              fetches the pass, the pass changes, the push reaches the APNs stand-in exactly once
  fanout      (after `--scale pusher=3`) FANOUT_DEVICES devices register on a new pass; one change;
              every token receives exactly one push, chunks shared by the pushers (their /metrics)
  persisted   (after redis was recreated on its volume) the passes and registrations are still there, and one
              more change still pushes every device once

Environment: API_PORT (the published port), COMPOSE (the docker-compose command line, project and
file included, split on spaces), FANOUT_DEVICES (default 90).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import make_zip, request, sample_template, wait_until  # noqa: E402
from pkpass_check import check_bundle  # noqa: E402

API_PORT = int(os.environ["API_PORT"])
COMPOSE = os.environ["COMPOSE"].split()
ADMIN = {"Authorization": "Bearer " + os.environ.get("ADMIN_TOKEN", "dev-admin-token-0123456789")}
PASS_TYPE = "pass.com.example.concert"
FANOUT_DEVICES = int(os.environ.get("FANOUT_DEVICES", "90"))
STATE = os.path.join(tempfile.gettempdir(), "passkit-compose-%d.json" % API_PORT)


def say(*args):
    print("compose-test:", *args, flush=True)


def compose(*args):
    p = subprocess.run(COMPOSE + list(args), capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(args), p.returncode, p.stderr.strip()))
    return p.stdout


def succeeds(fn):
    """A wait_until predicate: fn() is truthy and raised nothing (a service still starting refuses)."""
    def attempt():
        try:
            return fn()
        except (OSError, AssertionError):
            return False
    return attempt


def api(method, path, body=None, headers=None):
    return request(API_PORT, method, path, body, headers)


def admin(method, path, body=None):
    return api(method, "/admin/v1" + path, body, ADMIN)


def expect(r, status, what):
    if r.status != status:
        raise AssertionError("%s: HTTP %d, expected %d: %s" % (what, r.status, status, r.body[:300]))
    return r


def pushes():
    """Every request the APNs stand-in recorded, read from its container."""
    out = compose("exec", "-T", "apns-standin", "cat", "/var/lib/apns-standin/requests.jsonl")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def pushes_by_token(since):
    counts = {}
    for q in pushes()[since:]:
        assert q["status"] == 200 and q["topic"] == PASS_TYPE and q["client_uid"] == PASS_TYPE, q
        counts[q["token"]] = counts.get(q["token"], 0) + 1
    return counts


def wait_for_pushes(since, tokens, what):
    """Waits until every token got a push after record `since`, then 3 s more for duplicates;
    asserts that each got exactly one and nobody else got any."""
    wait_until(lambda: set(pushes_by_token(since)) >= set(tokens), timeout=60, what=what)
    time.sleep(3)
    counts = pushes_by_token(since)
    extra = {t: n for t, n in counts.items() if t not in tokens}
    twice = {t: n for t, n in counts.items() if n != 1}
    assert not extra and not twice, "pushes not exactly once: extra=%s repeated=%s" % (extra, twice)
    return counts


def root_ca():
    """The development root CA (made by the stack's certs step), for openssl's verification."""
    pem = compose("exec", "-T", "apns-standin", "cat", "/etc/passkit/certs/ca/root.pem")
    f = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)
    f.write(pem)
    f.close()
    return f.name


def register(serial, token, device, auth):
    r = api("POST", "/v1/devices/%s/registrations/%s/%s" % (device, PASS_TYPE, serial), {"pushToken": token}, auth)
    if r.status not in (200, 201):
        raise AssertionError("register %s: HTTP %d %s" % (device, r.status, r.body[:200]))


def change(serial, value):
    expect(admin("PATCH", "/passes/%s/%s" % (PASS_TYPE, serial),
                 {"pass": {"eventTicket": {"primaryFields": [{"key": "event", "label": "EVENT", "value": value}]}}}),
           200, "PATCH " + serial)


def lifecycle():
    wait_until(succeeds(lambda: api("GET", "/readyz").status == 200), timeout=180, what="api /readyz 200")
    ca = root_ca()
    expect(admin("PUT", "/templates/concert", make_zip(sample_template())), 201, "template upload")
    created = expect(admin("PUT", "/passes/%s/ticket-1" % PASS_TYPE,
                           {"templateId": "concert", "pass": {"barcodes": [
                               {"message": "TICKET-1", "format": "PKBarcodeFormatQR",
                                "messageEncoding": "iso-8859-1"}]}}), 201, "pass creation").json()
    auth = {"Authorization": "ApplePass " + created["authenticationToken"]}
    r = admin("GET", "/passes/%s/ticket-1/pkpass" % PASS_TYPE)
    expect(r, 200, "admin download")
    _, pj = check_bundle(r.body, ca, "Test Worldwide Developer Relations")
    assert (pj["serialNumber"], pj["teamIdentifier"], pj["webServiceURL"]) == \
        ("ticket-1", "DEVTEAM123", "http://localhost:8080"), pj
    say("signed pass verified (openssl cms -verify, manifest, pkpass-inspect): %d bytes" % len(r.body))
    token = "aa" * 32
    register("ticket-1", token, "device-1", auth)
    r = expect(api("GET", "/v1/devices/device-1/registrations/" + PASS_TYPE), 200, "list serials")
    assert r.json()["serialNumbers"] == ["ticket-1"], r.body
    r = expect(api("GET", "/v1/passes/%s/ticket-1" % PASS_TYPE, headers=auth), 200, "device fetch")
    check_bundle(r.body, ca)
    since = len(pushes())
    change("ticket-1", "Moved to Hall B")
    wait_for_pushes(since, {token}, "the push for ticket-1")
    r = expect(api("GET", "/v1/passes/%s/ticket-1" % PASS_TYPE, headers=auth), 200, "fetch after change")
    _, pj = check_bundle(r.body, ca)
    assert pj["eventTicket"]["primaryFields"][0]["value"] == "Moved to Hall B", pj
    say("lifecycle passed: template, pass, register, fetch, update, one push at the stand-in")
    with open(STATE, "w") as f:
        json.dump({"auth": auth}, f)


def fanout_tokens():
    return {"%064x" % (0xf0000 + i) for i in range(FANOUT_DEVICES)}


def pusher_metrics(index):
    out = compose("exec", "-T", "--index=%d" % index, "pusher", "curl", "-fsS", "http://127.0.0.1:9102/metrics")
    ok = 0.0
    for line in out.splitlines():
        if line.startswith("pusher_pushes_total{") and 'outcome="ok"' in line:
            ok += float(line.rsplit(" ", 1)[1])
    return ok


def fanout():
    pushers = [1, 2, 3]
    for i in pushers:
        wait_until(succeeds(lambda: compose("exec", "-T", "--index=%d" % i, "pusher", "curl", "-fsS",
                                            "http://127.0.0.1:9102/readyz")), timeout=60, what="pusher %d ready" % i)
    before = [pusher_metrics(i) for i in pushers]
    created = expect(admin("PUT", "/passes/%s/ticket-fanout" % PASS_TYPE,
                           {"templateId": "concert", "pass": {}}), 201, "fan-out pass").json()
    auth = {"Authorization": "ApplePass " + created["authenticationToken"]}
    tokens = fanout_tokens()
    for i, t in enumerate(sorted(tokens)):
        register("ticket-fanout", t, "fan-device-%d" % i, auth)
    since = len(pushes())
    change("ticket-fanout", "Doors at 19:00")
    counts = wait_for_pushes(since, tokens, "the fan-out pushes")
    shares = [pusher_metrics(i) - b for i, b in zip(pushers, before)]
    say("fan-out: %d devices, %d pushes, each token once; pushes per pusher %s" %
        (len(tokens), sum(counts.values()), [int(s) for s in shares]))
    assert sum(shares) == len(tokens), shares
    assert sum(1 for s in shares if s > 0) >= 2, "the chunks were not shared by the pushers: %s" % shares


def persisted():
    wait_until(succeeds(lambda: api("GET", "/readyz").status == 200), timeout=60,
               what="api ready after the redis restart")
    with open(STATE) as f:
        auth = json.load(f)["auth"]
    r = expect(api("GET", "/v1/devices/device-1/registrations/" + PASS_TYPE), 200, "serials after restart")
    assert r.json()["serialNumbers"] == ["ticket-1"], r.body
    expect(api("GET", "/v1/passes/%s/ticket-1" % PASS_TYPE, headers=auth), 200, "fetch after restart")
    since = len(pushes())
    change("ticket-fanout", "Doors at 19:30")
    wait_for_pushes(since, fanout_tokens(), "the pushes after the redis restart")
    say("persisted: data survived a new redis container (append-only file on the volume), %d devices pushed once again" %
        len(fanout_tokens()))


if __name__ == "__main__":
    {"lifecycle": lifecycle, "fanout": fanout, "persisted": persisted}[sys.argv[1]]()
