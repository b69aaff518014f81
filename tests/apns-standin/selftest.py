#!/usr/bin/env python3
"""Self-test of apns-standin: starts it on a free port and checks every answer exactly.

Usage: selftest.py [path/to/apns-standin]   (default: $PASSKIT_BUILD_DIR/bin/apns-standin,
                                              else build/bin/apns-standin under the source root)

Needs curl with HTTP/2 and openssl (for tests/certs/make-dev-certs.sh); everything else is the
Python standard library: the protocol-level checks (one connection with 500 streams, garbage,
resets, clients vanishing mid-request) use a tiny hand-written HTTP/2 client below that only
encodes HPACK literals and never decodes response headers; statuses are read from the record
file. Prints one line per check and "N passed, N failed"; exits 1 on any failure, 77 when a
tool is missing.
"""
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("PASSKIT_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
TOPIC = "pass.com.example.test"
OTHER = "pass.com.example.other"
UUID = "123e4567-e89b-12d3-a456-426655440000"

passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


class Standin:
    def __init__(self, binary, certs, workdir, name, extra=()):
        self.record = os.path.join(workdir, f"{name}.jsonl")
        self.port_file = os.path.join(workdir, f"{name}.port")
        self.log = open(os.path.join(workdir, f"{name}.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--cert", f"{certs}/apns/server.pem",
             "--key", f"{certs}/apns/server-key.pem", "--client-ca", f"{certs}/ca/chain.pem",
             "--record", self.record, "--port-file", self.port_file, *extra],
            stderr=self.log)
        for _ in range(200):
            if os.path.exists(self.port_file):
                break
            time.sleep(0.05)
        with open(self.port_file) as f:
            self.port = int(f.read())
        self.seen = 0

    def new_records(self, want=None, timeout=5.0):
        """Records appended since the last call (waits until `want` of them are there)."""
        deadline = time.time() + timeout
        while True:
            with open(self.record) as f:
                lines = f.read().splitlines()
            new = lines[self.seen:]
            if want is None or len(new) >= want or time.time() > deadline:
                self.seen = len(lines)
                return [json.loads(l) for l in new]
            time.sleep(0.02)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = "timeout"
        self.log.close()
        return rc


# ---- curl ----------------------------------------------------------------------------------

def curl(st, certs, path, headers=(), data=None, method=None, cert=TOPIC, extra=()):
    args = ["curl", "-s", "--http2", "--cacert", f"{certs}/ca/root.pem", "-D", "-",
            "-w", "\n%{http_code}"]
    if cert:
        args += ["--cert", f"{certs}/{cert}/certificate.pem", "--key", f"{certs}/{cert}/private-key.pem"]
    for h in headers:
        args += ["-H", h]
    if data is not None:
        args += ["--data-binary", "@-"]
    if method:
        args += ["-X", method]
    args += list(extra) + [f"https://127.0.0.1:{st.port}{path}"]
    p = subprocess.run(args, input=data if data is not None else b"", capture_output=True)
    out = p.stdout.decode("utf-8", "replace")
    head, _, rest = out.partition("\r\n\r\n")
    body, _, code = rest.rpartition("\n")
    hdrs = {}
    for line in head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return p.returncode, int(code or 0), hdrs, body


def curl_checks(st, certs):
    base = [f"apns-topic: {TOPIC}"]
    rc, code, hdrs, body = curl(st, certs, "/3/device/abcdef", base, b"{}")
    t_answer = time.monotonic()
    while os.path.getsize(st.record) == 0 and time.monotonic() - t_answer < 5:
        time.sleep(0.002)
    waited = time.monotonic() - t_answer
    check("the record is in the file within 100 ms of the answer", waited < 0.1, f"{waited:.3f} s")
    check("200 for a valid push", (rc, code, body) == (0, 200, ""), f"{rc} {code} {body!r}")
    apns_id = hdrs.get("apns-id", "")
    check("generated apns-id is a lower-case UUID", len(apns_id) == 36 and apns_id == apns_id.lower()
          and apns_id.count("-") == 4, apns_id)
    check("200 has no content-type", "content-type" not in hdrs, str(hdrs))
    rec = st.new_records(1)
    r = rec[0] if rec else {}
    check("record of a 200", len(rec) == 1 and r.get("status") == 200 and r.get("reason") is None and
          r.get("token") == "abcdef" and r.get("topic") == TOPIC and r.get("client_uid") == TOPIC and
          r.get("method") == "POST" and r.get("path") == "/3/device/abcdef" and r.get("body") == "{}" and
          r["headers"].get("apns-topic") == TOPIC and ":path" not in r["headers"] and
          r.get("apns_id") == apns_id and r.get("error") is None, json.dumps(r))

    rc, code, hdrs, body = curl(st, certs, "/3/device/abcdef", base + [f"apns-id: {UUID}"], b"{}")
    check("apns-id is echoed", code == 200 and hdrs.get("apns-id") == UUID, str(hdrs))
    rec = st.new_records(1)
    check("record has the echoed apns-id", len(rec) == 1 and rec[0]["apns_id"] == UUID and
          rec[0]["headers"].get("apns-id") == UUID, json.dumps(rec))

    cases = [
        # name, path, headers, body, method, cert, status, reason
        ("rule 410 Unregistered", "/3/device/abcd", base, b"{}", None, TOPIC, 410, "Unregistered"),
        ("rule 400 BadDeviceToken", "/3/device/ef01", base, b"{}", None, TOPIC, 400, "BadDeviceToken"),
        ("rule 500", "/3/device/0a0a", base, b"{}", None, TOPIC, 500, "InternalServerError"),
        ("rule 429", "/3/device/0B0B", base, b"{}", None, TOPIC, 429, "TooManyRequests"),
        ("GET", "/3/device/abcdef", base, None, "GET", TOPIC, 405, "MethodNotAllowed"),
        ("bad path", "/3/devices/abcdef", base, b"{}", None, TOPIC, 404, "BadPath"),
        ("old path", "/2/device/abcdef", base, b"{}", None, TOPIC, 404, "BadPath"),
        ("empty token", "/3/device/", base, b"{}", None, TOPIC, 400, "MissingDeviceToken"),
        ("non-hex token", "/3/device/abcz", base, b"{}", None, TOPIC, 400, "BadDeviceToken"),
        ("odd-length token", "/3/device/abc", base, b"{}", None, TOPIC, 400, "BadDeviceToken"),
        ("token with a query", "/3/device/abcd?x=1", base, b"{}", None, TOPIC, 400, "BadDeviceToken"),
        ("missing topic", "/3/device/abcdef", [], b"{}", None, TOPIC, 400, "MissingTopic"),
        ("topic of another certificate", "/3/device/abcdef", base, b"{}", None, OTHER, 400, "TopicDisallowed"),
        ("priority 7", "/3/device/abcdef", base + ["apns-priority: 7"], b"{}", None, TOPIC, 400, "BadPriority"),
        ("background with priority 10", "/3/device/abcdef",
         base + ["apns-push-type: background", "apns-priority: 10"], b"{}", None, TOPIC, 400, "BadPriority"),
        ("unknown push type", "/3/device/abcdef", base + ["apns-push-type: wallet"], b"{}", None, TOPIC, 400,
         "InvalidPushType"),
        ("apns-id not a UUID", "/3/device/abcdef", base + ["apns-id: 42"], b"{}", None, TOPIC, 400, "BadMessageId"),
        ("apns-id upper case", "/3/device/abcdef", base + ["apns-id: " + UUID.upper()], b"{}", None, TOPIC, 400,
         "BadMessageId"),
        ("apns-expiration not a number", "/3/device/abcdef", base + ["apns-expiration: soon"], b"{}", None, TOPIC,
         400, "BadExpirationDate"),
        ("apns-collapse-id > 64 bytes", "/3/device/abcdef", base + ["apns-collapse-id: " + "c" * 65], b"{}", None,
         TOPIC, 400, "BadCollapseId"),
        ("duplicate header", "/3/device/abcdef", base + ["apns-priority: 5", "apns-priority: 5"], b"{}", None,
         TOPIC, 400, "DuplicateHeaders"),
        ("empty body", "/3/device/abcdef", base, b"", "POST", TOPIC, 400, "PayloadEmpty"),
        ("body 4097 bytes", "/3/device/abcdef", base, b'{"a":"' + b"a" * 4089 + b'"}', None, TOPIC, 413,
         "PayloadTooLarge"),
        ("body is an array", "/3/device/abcdef", base, b"[]", None, TOPIC, 400, "BadPayload"),
        ("body is not JSON", "/3/device/abcdef", base, b"{nope", None, TOPIC, 400, "BadPayload"),
        ("rule applies after validation", "/3/device/abcd", [], b"{}", None, TOPIC, 400, "MissingTopic"),
    ]
    for name, path, headers, data, method, cert, status, reason in cases:
        t0 = int(time.time() * 1000)
        rc, code, hdrs, body = curl(st, certs, path, headers, data, method, cert)
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        want = {"reason": reason}
        if status == 410 and isinstance(doc, dict) and isinstance(doc.get("timestamp"), int):
            ok_ts = t0 - 1000 <= doc["timestamp"] <= int(time.time() * 1000) + 1000
            want["timestamp"] = doc["timestamp"] if ok_ts else "in range"
        check(f"{name} -> {status} {reason}", rc == 0 and code == status and doc == want and
              hdrs.get("content-type") == "application/json" and len(hdrs.get("apns-id", "")) == 36,
              f"rc={rc} code={code} body={body!r} headers={hdrs}")
        rec = st.new_records(1)
        check(f"{name} is recorded", len(rec) == 1 and rec[0]["status"] == status and rec[0]["reason"] == reason,
              json.dumps(rec))

    for name, headers in [("background with priority 5", ["apns-push-type: background", "apns-priority: 5"]),
                          ("no push type, priority 10", ["apns-priority: 10"])]:
        rc, code, _, body = curl(st, certs, "/3/device/abcdef", base + headers, b"{}")
        check(f"{name} -> 200", code == 200 and body == "", f"{code} {body!r}")
    rc, code, _, _ = curl(st, certs, "/3/device/abcdef", [f"apns-topic: {OTHER}"], b"{}", cert=OTHER)
    check("other certificate with its own topic -> 200", code == 200, str(code))
    rc, code, _, _ = curl(st, certs, "/3/device/abcdef", base, b'{"a":"' + b"a" * 4088 + b'"}')
    check("body of exactly 4096 bytes -> 200", code == 200, str(code))
    st.new_records(4)

    rc, code, _, _ = curl(st, certs, "/3/device/abcdef", base, b"{}", cert=None)
    check("no client certificate: refused", rc != 0 and code == 0, f"rc={rc} code={code}")
    rc, code, _, _ = curl(st, certs, "/3/device/abcdef", base, b"{}", cert=None, extra=["--tls-max", "1.2"])
    check("no client certificate, TLS 1.2: handshake fails", rc == 35, f"rc={rc}")
    rc, code, _, _ = curl(st, certs, "/3/device/abcdef", base, b"{}", extra=["--http1.1"])
    check("client offering only http/1.1: refused", rc != 0 and code == 0, f"rc={rc} code={code}")
    rc, code, _, _ = curl(st, certs, "/3/device/abcdef", base, b"{}", extra=["--tlsv1.1", "--tls-max", "1.1"])
    check("TLS 1.1: refused", rc != 0 and code == 0, f"rc={rc} code={code}")
    rc, code, _, _ = curl(st, certs, "/3/device/abcdef", base, b"{}", extra=["--tls-max", "1.2"])
    check("TLS 1.2 with h2: accepted", code == 200, f"rc={rc} code={code}")
    rc, code, _, _ = curl(st, certs, "/3/device/abcdef", base, b"{}", cert="selfsigned")
    check("self-signed client certificate: refused", rc != 0 and code == 0, f"rc={rc} code={code}")
    rc, code, _, body = curl(st, certs, "/3/device/abcdef", base, b"{}", cert="nouid")
    check("trusted client certificate without UID -> 403 BadCertificate",
          code == 403 and body == '{"reason":"BadCertificate"}', f"rc={rc} code={code} {body!r}")
    time.sleep(0.2)
    rec = st.new_records(2, timeout=0.5)
    check("refused connections record nothing", len(rec) == 2 and rec[1]["client_uid"] is None, json.dumps(rec))


# ---- a minimal HTTP/2 client -----------------------------------------------------------------

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, CONTINUATION = 0, 1, 3, 4, 6, 7, 9
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def hpack_int(n, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if n < limit:
        return bytes([first | n])
    out = [first | limit]
    n -= limit
    while n >= 128:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def hpack(headers):
    """Every field as a literal without indexing, new name, no Huffman."""
    out = b""
    for name, value in headers:
        name = name.encode() if isinstance(name, str) else name
        value = value.encode() if isinstance(value, str) else value
        out += b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value
    return out


def request_headers(path, topic=TOPIC, extra=()):
    h = [(":method", "POST"), (":scheme", "https"), (":path", path), (":authority", "localhost")]
    if topic:
        h.append(("apns-topic", topic))
    return h + list(extra)


class H2:
    def __init__(self, port, certs, cert=TOPIC, alpn=("h2",), preface=True):
        ctx = ssl.create_default_context(cafile=f"{certs}/ca/root.pem")
        if cert:
            ctx.load_cert_chain(f"{certs}/{cert}/certificate.pem", f"{certs}/{cert}/private-key.pem")
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.buf = b""
        self.settings = {}
        self.ended = set()     # streams the server ended (END_STREAM)
        self.bodies = {}       # stream id -> DATA bytes
        self.resets = {}       # stream id -> RST_STREAM code
        self.goaway = None     # GOAWAY error code
        self.goaway_last = None  # GOAWAY last_stream_id
        self.ended_at = {}     # stream id -> time.monotonic() of END_STREAM
        self.last_sid = -1
        if preface:
            self.send(PREFACE + frame(SETTINGS, 0, 0))

    def send(self, data):
        self.sock.sendall(data)

    def sid(self):
        """The next client stream id (they must increase)."""
        self.last_sid += 2
        return self.last_sid

    def post(self, sid, path, body=b"{}", topic=TOPIC, extra=(), end=True):
        block = hpack(request_headers(path, topic, extra))
        chunks = [block[i:i + 16384] for i in range(0, len(block), 16384)]
        out = b""
        for i, chunk in enumerate(chunks):
            last = 0x4 if i == len(chunks) - 1 else 0
            out += frame(HEADERS if i == 0 else CONTINUATION, last | (0 if body or i > 0 else 0x1), sid, chunk)
        self.send(out)
        if body:
            self.send(frame(DATA, 0x1 if end else 0, sid, body))

    def read_frame(self):
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        n = int.from_bytes(self.buf[:3], "big")
        ftype, flags, sid = self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
        payload, self.buf = self.buf[9:9 + n], self.buf[9 + n:]
        if ftype == SETTINGS and not flags & 1:
            for i in range(0, len(payload), 6):
                k, v = struct.unpack(">HI", payload[i:i + 6])
                self.settings[k] = v
            self.send(frame(SETTINGS, 1, 0))
        elif ftype == PING and not flags & 1:
            self.send(frame(PING, 1, 0, payload))
        elif ftype == DATA:
            self.bodies[sid] = self.bodies.get(sid, b"") + payload
        elif ftype == RST_STREAM:
            self.resets[sid] = int.from_bytes(payload, "big")
        elif ftype == GOAWAY:
            self.goaway = int.from_bytes(payload[4:8], "big")
            self.goaway_last = int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF
        if ftype in (DATA, HEADERS) and flags & 1:
            self.ended.add(sid)
            self.ended_at[sid] = time.monotonic()
        return ftype, flags, sid, payload

    def until(self, cond, timeout=10):
        """Reads frames until cond() holds; returns False on EOF or timeout."""
        self.sock.settimeout(timeout)
        try:
            while not cond():
                if self.read_frame() is None:
                    return cond()
        except (socket.timeout, ssl.SSLError, OSError):
            return cond()
        return True

    def eof(self, timeout=5):
        """True when the server closes the connection (frames before that are consumed)."""
        self.sock.settimeout(timeout)
        try:
            while self.read_frame() is not None:
                pass
            return True
        except (socket.timeout,):
            return False
        except (ssl.SSLError, OSError):
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def hanging_closed(sock):
    """True when the server closes sock (waits up to 15 s from now)."""
    sock.settimeout(15)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except OSError:
        return True
    finally:
        sock.close()


def h2_checks(st, certs):
    hang = socket.create_connection(("127.0.0.1", st.port))  # never says anything
    c = H2(st.port, certs)
    check("SETTINGS_MAX_CONCURRENT_STREAMS is 500", c.until(lambda: 3 in c.settings) and c.settings[3] == 500,
          str(c.settings))
    n = 500
    ids = [c.sid() for _ in range(n)]
    c.send(b"".join(frame(HEADERS, 0x4, sid, hpack(request_headers(f"/3/device/{sid:04x}"))) +
                    frame(DATA, 0x1, sid, b"{}") for sid in ids))
    ok = c.until(lambda: len(c.ended) == n, timeout=30)
    check(f"{n} concurrent streams on one connection all answered", ok and not c.resets,
          f"ended={len(c.ended)} resets={len(c.resets)}")
    recs = st.new_records(n)
    check(f"{n} records, all 200, one connection", len(recs) == n and all(r["status"] == 200 for r in recs) and
          len({r["conn"] for r in recs}) == 1 and sorted(r["stream"] for r in recs) == ids,
          f"{len(recs)} records")

    # Mixed answers on the same connection: the body says which.
    s1, s3 = c.sid(), c.sid()
    c.post(s1, "/3/device/abcd")
    c.post(s3, "/3/device/zz")
    c.until(lambda: {s1, s3} <= c.ended)
    b1, b3 = json.loads(c.bodies.get(s1, b"null")), json.loads(c.bodies.get(s3, b"null"))
    check("410 body carries reason and timestamp", isinstance(b1, dict) and b1.get("reason") == "Unregistered" and
          isinstance(b1.get("timestamp"), int), str(b1))
    check("400 body on a multiplexed stream", b3 == {"reason": "BadDeviceToken"}, str(b3))
    st.new_records(2)

    # Body that is not UTF-8: answered and recorded as hex.
    s5 = c.sid()
    c.post(s5, "/3/device/abcdef", body=b"\xff\xfe{}")
    c.until(lambda: s5 in c.ended)
    rec = st.new_records(1)
    check("non-UTF-8 body -> BadPayload, recorded as body_hex",
          json.loads(c.bodies.get(s5, b"null")) == {"reason": "BadPayload"} and rec and rec[0]["body"] is None and
          rec[0].get("body_hex") == "fffe7b7d", json.dumps(rec))

    # Header lists over the limits: that stream is reset, the connection goes on.
    for name, extra in [("64 header fields", [(f"x-h{i}", "v") for i in range(70)]),
                        ("16 KiB header list", [(f"x-h{i}", "v" * 500) for i in range(40)])]:
        sid, after = c.sid(), c.sid()
        c.post(sid, "/3/device/abcdef", extra=extra)
        c.until(lambda: sid in c.resets)
        c.post(after, "/3/device/abcdef")
        c.until(lambda: after in c.ended)
        rec = st.new_records(2)
        check(f"more than {name}: stream reset, recorded, connection still serves",
              sid in c.resets and after in c.ended and len(rec) == 2 and
              rec[0]["status"] is None and rec[0]["error"].startswith("header_list_too_large") and
              rec[1]["status"] == 200, json.dumps(rec)[:400])

    # Client resets a stream mid-request.
    sid = c.sid()
    c.post(sid, "/3/device/abcdef", body=b"{", end=False)
    c.send(frame(RST_STREAM, 0, sid, struct.pack(">I", 8)))
    rec = st.new_records(1)
    check("RST_STREAM mid-request is recorded", len(rec) == 1 and rec[0]["status"] is None and
          rec[0]["error"] == "stream_reset (CANCEL)" and rec[0]["body"] == "{", json.dumps(rec))

    # Client vanishes mid-request.
    c.post(c.sid(), "/3/device/abcdef", body=b'{"a":', end=False)
    time.sleep(0.2)
    c.close()
    rec = st.new_records(1)
    check("client killed mid-request: recorded with error", len(rec) == 1 and rec[0]["status"] is None and
          rec[0]["error"].startswith("connection_closed"), json.dumps(rec))

    # Protocol garbage.
    c = H2(st.port, certs)
    c.send(frame(DATA, 0x1, 0, b"junk"))
    check("DATA on stream 0 -> GOAWAY PROTOCOL_ERROR and close", c.eof() and c.goaway == 1, str(c.goaway))
    c = H2(st.port, certs, preface=False)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(200))
    check("bad client preface -> connection closed", c.eof())
    c = H2(st.port, certs)
    c.send(os.urandom(4000))
    check("random bytes after the preface -> connection closed", c.eof())
    c = H2(st.port, certs)
    c.send(frame(HEADERS, 0x5, 1, b"\xff\xff\xff\xff\xff"))
    rec = st.new_records(1)
    check("undecodable HPACK -> GOAWAY COMPRESSION_ERROR, close, recorded", c.eof() and c.goaway == 9 and
          len(rec) == 1 and rec[0]["status"] is None and rec[0]["error"].startswith("connection_closed"),
          f"{c.goaway} {json.dumps(rec)}")
    c = H2(st.port, certs)
    c.send(frame(HEADERS, 0x5, 1, hpack([(":method", "POST"), (":path", "/3/device/ab")])))
    c.until(lambda: 1 in c.resets or 1 in c.ended)
    rec = st.new_records(1)
    check("request without :scheme -> stream reset, recorded", 1 in c.resets and len(rec) == 1 and
          rec[0]["status"] is None and rec[0]["error"].startswith("stream_reset"), json.dumps(rec))
    c.close()
    try:
        c = H2(st.port, certs, alpn=None)
        check("TLS without ALPN -> connection closed", c.eof())
    except (ssl.SSLError, OSError):
        check("TLS without ALPN -> connection closed", True)
    s = socket.create_connection(("127.0.0.1", st.port))
    s.sendall(os.urandom(3000))
    s.settimeout(5)
    try:
        while s.recv(4096):
            pass
        closed = True
    except OSError:
        closed = True
    except socket.timeout:
        closed = False
    s.close()
    check("plain-TCP garbage -> connection closed", closed)

    # Rapid reset (CVE-2023-44487): libnghttp2 answers a burst of more than 1000 RST_STREAMs with
    # GOAWAY(INTERNAL_ERROR), as APNs may; pushers must cope with that.
    c = H2(st.port, certs)
    burst = b""
    for _ in range(1100):
        sid = c.sid()
        burst += frame(HEADERS, 0x4, sid, hpack(request_headers("/3/device/abcdef"))) + \
            frame(RST_STREAM, 0, sid, struct.pack(">I", 8))
    try:
        c.send(burst)
    except OSError:
        pass
    check("a burst of 1100 client resets -> GOAWAY INTERNAL_ERROR", c.eof() and c.goaway == 2, str(c.goaway))
    rec = st.new_records(1000)
    check("each reset request is recorded", len(rec) >= 1000 and
          all(r["error"] == "stream_reset (CANCEL)" for r in rec[:1000]), f"{len(rec)}")

    check("a silent TCP client is dropped after the 10 s handshake limit", hanging_closed(hang))
    c = H2(st.port, certs)
    c.post(1, "/3/device/abcdef")
    check("still serving after all that", c.until(lambda: 1 in c.ended))
    st.new_records(1)
    return c  # left open for the shutdown check


# ---- failure modes: counted rules, --goaway-after, --drop-after, --delay-ms, --stats-file ------

def open_requests(c, n, path="/3/device/abcdef"):
    """Opens n complete requests with one write; returns their stream ids."""
    ids = [c.sid() for _ in range(n)]
    c.send(b"".join(frame(HEADERS, 0x4, sid, hpack(request_headers(path))) + frame(DATA, 0x1, sid, b"{}")
                    for sid in ids))
    return ids


def one_by_one(c, st, path, n, topic=TOPIC):
    """Sends n requests one after the other (each waits for its answer); returns the statuses."""
    out = []
    for _ in range(n):
        sid = c.sid()
        c.post(sid, path, topic=topic)
        c.until(lambda: sid in c.ended)
        rec = st.new_records(1)
        out.append(rec[0]["status"] if len(rec) == 1 else rec)
    return out


def read_stats(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def log_text(work, name):
    with open(os.path.join(work, f"{name}.log")) as f:
        return f.read()


def failure_mode_checks(binary, certs, work):
    stats_file = os.path.join(work, "rules.stats.json")
    st = Standin(binary, certs, work, "rules", [
        "--rule", "0c0c=429:TooManyRequests*2",
        "--rule", "0d0d=503:ServiceUnavailable*1", "--rule", "0d0d=500:InternalServerError*1",
        "--rule", "0e0e=410:Unregistered", "--rule", "0e0e=429:TooManyRequests*1",
        "--rule", "0f0f=400:BadDeviceToken", "--rule", "0f0f=410:Unregistered",
        "--rule", "1a1a=200:*1", "--rule", "1a1a=500:InternalServerError",
        "--stats-file", stats_file, "--log-requests"])
    try:
        c = H2(st.port, certs)
        got = one_by_one(c, st, "/3/device/0c0c", 1, topic=None) + one_by_one(c, st, "/3/device/0c0c", 1)
        c2 = H2(st.port, certs)
        got += one_by_one(c2, st, "/3/device/0C0C", 3)
        check("--rule ...*2: 429 twice, then 200 (invalid requests use nothing; counts span connections)",
              got == [400, 429, 429, 200, 200], str(got))
        got = one_by_one(c2, st, "/3/device/0d0d", 4)
        check("two counted rules of one token: 503, then 500, then 200", got == [503, 500, 200, 200], str(got))
        got = one_by_one(c2, st, "/3/device/0e0e", 3)
        check("a permanent rule answers once the counted ones are used up, wherever it stands",
              got == [429, 410, 410], str(got))
        got = one_by_one(c2, st, "/3/device/0f0f", 2)
        check("of two permanent rules the later one wins", got == [410, 410], str(got))
        got = one_by_one(c2, st, "/3/device/1a1a", 3)
        check("a counted 200 (empty reason) then a permanent 500", got == [200, 500, 500], str(got))
        deadline = time.time() + 2.5
        while time.time() < deadline and (read_stats(stats_file) or {}).get("requests") != 17:
            time.sleep(0.05)
        s = read_stats(stats_file)
        check("--stats-file is rewritten while running", s is not None and s.get("requests") == 17, str(s))
        c.close()
        c2.close()
        time.sleep(0.3)
    finally:
        rc = st.stop()
    want = {"requests": 17, "answered_by_status": {"200": 5, "400": 1, "410": 4, "429": 3, "500": 3, "503": 1},
            "connections": 2, "goaways_sent": 0, "max_open_streams": 1}
    s = read_stats(stats_file)
    check("--stats-file at exit has the exact totals", rc == 0 and s == want, f"rc={rc} {s}")
    log = log_text(work, "rules")
    check("--log-requests: one event=request line per answer", log.count(" event=request ") == 17,
          str(log.count(" event=request ")))

    # --goaway-after: GOAWAY(NO_ERROR) once the N-th request is in; later streams refused.
    stats_file = os.path.join(work, "goaway.stats.json")
    st = Standin(binary, certs, work, "goaway", ["--goaway-after", "3", "--stats-file", stats_file])
    try:
        for n, name in [(5, "first"), (4, "every")]:
            c = H2(st.port, certs)
            c.until(lambda: 3 in c.settings)
            ids = open_requests(c, n)
            closed = c.eof()
            check(f"--goaway-after 3, {n} streams at once ({name} connection): GOAWAY NO_ERROR with "
                  f"last_stream_id {ids[2]}, streams up to it answered, then close",
                  closed and c.goaway == 0 and c.goaway_last == ids[2] and c.ended == set(ids[:3]) and
                  not c.resets, f"eof={closed} goaway={c.goaway} last={c.goaway_last} ended={sorted(c.ended)}")
            rec = st.new_records(n)
            answered = sorted(r["stream"] for r in rec if r["status"] == 200)
            refused = sorted(r["stream"] for r in rec if r["error"] == "refused (goaway)")
            check(f"... recorded: {len(ids[:3])} answered, {n - 3} 'refused (goaway)' with their headers",
                  len(rec) == n and answered == ids[:3] and refused == ids[3:] and
                  all(r["path"] == "/3/device/abcdef" and r["status"] is None for r in rec if r["stream"] > ids[2]),
                  json.dumps(rec)[:400])
            c.close()
        c = H2(st.port, certs)
        ids = open_requests(c, 2)
        c.until(lambda: set(ids) <= c.ended)
        st.new_records(2)
        check("below N requests a connection gets no GOAWAY", c.ended == set(ids) and c.goaway is None,
              f"{c.goaway}")
        c.close()
        time.sleep(0.3)
    finally:
        rc = st.stop()
    s = read_stats(stats_file)
    check("--goaway-after stats: goaways_sent, answers, refusals, peak streams",
          rc == 0 and s == {"requests": 11, "answered_by_status": {"200": 8}, "connections": 3, "goaways_sent": 2,
                            "max_open_streams": 5}, f"rc={rc} {s}")
    log = log_text(work, "goaway")
    check("conn_close logs max_open_streams", "why=session_done answered=3 max_open_streams=5 " in log and
          "answered=3 max_open_streams=4 " in log, log[-600:])

    # --goaway-after with --delay-ms: streams opened after the GOAWAY went out are refused too.
    st = Standin(binary, certs, work, "goaway-late", ["--goaway-after", "1", "--delay-ms", "300"])
    try:
        c = H2(st.port, certs)
        c.post(1, "/3/device/abcdef")
        got_goaway = c.until(lambda: c.goaway is not None)
        early = 1 not in c.ended
        c.post(3, "/3/device/abcdef")
        closed = c.eof()
        check("GOAWAY comes at once, the delayed answer later, then close",
              got_goaway and early and c.goaway == 0 and c.goaway_last == 1 and c.ended == {1} and closed,
              f"goaway={c.goaway} last={c.goaway_last} ended={c.ended} eof={closed}")
        rec = {r["stream"]: r for r in st.new_records(2)}
        check("a stream opened after the GOAWAY went out: recorded 'refused (goaway)', headers unread",
              set(rec) == {1, 3} and rec[1]["status"] == 200 and rec[3]["error"] == "refused (goaway)" and
              rec[3]["method"] is None and rec[3]["path"] is None, json.dumps(rec)[:400])
        c.close()
    finally:
        check("SIGTERM -> exit 0 (goaway-late)", st.stop() == 0)

    # --drop-after: the connection is cut, in-flight requests recorded as dropped.
    stats_file = os.path.join(work, "drop.stats.json")
    st = Standin(binary, certs, work, "drop", ["--drop-after", "2", "--stats-file", stats_file])
    try:
        c = H2(st.port, certs)
        c.post(1, "/3/device/abcdef")
        c.until(lambda: 1 in c.ended)
        c.post(3, "/3/device/abcdef")
        closed = c.eof()
        check("--drop-after 2, one by one: first answered, then the connection ends without GOAWAY",
              closed and c.ended == {1} and c.goaway is None, f"eof={closed} ended={c.ended} goaway={c.goaway}")
        rec = st.new_records(2)
        check("... the second is recorded 'connection_closed (dropped by --drop-after)'",
              [(r["stream"], r["status"], r["error"]) for r in rec] ==
              [(1, 200, None), (3, None, "connection_closed (dropped by --drop-after)")], json.dumps(rec)[:400])
        c = H2(st.port, certs)
        c.until(lambda: 3 in c.settings)
        ids = open_requests(c, 4)
        closed = c.eof()
        check("--drop-after 2, 4 streams at once: no answer at all, no GOAWAY, connection ends",
              closed and not c.ended and c.goaway is None, f"eof={closed} ended={c.ended} goaway={c.goaway}")
        time.sleep(0.3)
        rec = st.new_records(2)
        check("... the 2 requests received are recorded as dropped; the ones after were never read",
              sorted(r["stream"] for r in rec) == ids[:2] and
              all(r["error"] == "connection_closed (dropped by --drop-after)" for r in rec), json.dumps(rec)[:400])
    finally:
        rc = st.stop()
    s = read_stats(stats_file)
    check("--drop-after stats", rc == 0 and s == {"requests": 4, "answered_by_status": {"200": 1}, "connections": 2,
                                                  "goaways_sent": 0, "max_open_streams": 2}, f"rc={rc} {s}")
    check("conn_close says why=drop_after", log_text(work, "drop").count("why=drop_after ") == 2)

    # --delay-ms with --max-streams: streams are held open concurrently; the limit still holds.
    stats_file = os.path.join(work, "delay.stats.json")
    st = Standin(binary, certs, work, "delay", ["--delay-ms", "300", "--max-streams", "3", "--stats-file", stats_file])
    try:
        c = H2(st.port, certs)
        c.until(lambda: 3 in c.settings)
        t0 = time.monotonic()
        ids = open_requests(c, 3)
        c.until(lambda: set(ids) <= c.ended)
        took = sorted(c.ended_at[s] - t0 for s in ids)
        check("--delay-ms 300: 3 streams answered together after 300 ms, not one after the other",
              len(took) == 3 and 0.28 <= took[0] and took[-1] < 0.6, str(took))
        st.new_records(3)
        ids = open_requests(c, 3)
        c.until(lambda: set(ids) <= c.ended)
        rec = st.new_records(3)
        check("a client that waits for free slots is served", set(ids) <= c.ended and c.goaway is None and
              [r["status"] for r in rec] == [200, 200, 200], f"{c.goaway} {json.dumps(rec)[:200]}")
        ids = open_requests(c, 4)
        closed = c.eof()
        check("--max-streams 3 with 3 streams held open: a 4th -> GOAWAY PROTOCOL_ERROR",
              closed and c.goaway == 1 and not (set(ids) & c.ended), f"eof={closed} goaway={c.goaway}")
        rec = st.new_records(4)
        check("... the refused stream and the 3 held ones are recorded",
              len(rec) == 4 and rec[0]["stream"] == ids[3] and rec[0]["error"] == "refused (Protocol error)" and
              sorted(r["stream"] for r in rec[1:]) == ids[:3] and
              all(r["error"].startswith("connection_closed") for r in rec[1:]), json.dumps(rec)[:400])
    finally:
        rc = st.stop()
    s = read_stats(stats_file)
    check("--delay-ms stats: max_open_streams is the peak", rc == 0 and s is not None and
          s.get("max_open_streams") == 3 and s.get("answered_by_status") == {"200": 6}, f"rc={rc} {s}")
    check("conn_close logs max_open_streams=3", "max_open_streams=3 " in log_text(work, "delay"))


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.environ.get("PASSKIT_BUILD_DIR", os.path.join(SRC, "build")), "bin", "apns-standin")
    for tool in ("curl", "openssl"):
        if shutil.which(tool) is None:
            print(f"skip: {tool} not found")
            return 77
    if not os.access(binary, os.X_OK):
        print(f"apns-standin not found at {binary}")
        return 1
    work = tempfile.mkdtemp(prefix="apns-standin-test-")
    certs = os.path.join(work, "certs")
    subprocess.run([os.path.join(SRC, "tests/certs/make-dev-certs.sh"), certs, "TEAMID1234", TOPIC, OTHER],
                   check=True)
    for name, subj, signer in [("selfsigned", f"/UID={TOPIC}/CN=Pass Type ID: {TOPIC}", None),
                               ("nouid", "/CN=no uid/O=PassKit Backend Test", "ca/root")]:
        d = os.path.join(certs, name)
        os.makedirs(d)
        cmd = ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{d}/private-key.pem",
               "-subj", subj, "-days", "2"]
        if signer:
            subprocess.run(cmd + ["-out", f"{d}/req.csr"], check=True, capture_output=True)
            subprocess.run(["openssl", "x509", "-req", "-in", f"{d}/req.csr", "-CA", f"{certs}/{signer}.pem",
                            "-CAkey", f"{certs}/{signer}-key.pem", "-CAcreateserial", "-days", "2",
                            "-out", f"{d}/certificate.pem"], check=True, capture_output=True)
        else:
            subprocess.run(cmd + ["-x509", "-out", f"{d}/certificate.pem"], check=True, capture_output=True)
    rules = ["--rule", "abcd=410:Unregistered", "--rule", "ef01=400:BadDeviceToken",
             "--rule", "0a0a=500:InternalServerError", "--rule", "0b0b=429:TooManyRequests"]
    st = Standin(binary, certs, work, "main", rules)
    try:
        curl_checks(st, certs)
        left_open = h2_checks(st, certs)
        rc = st.stop()
        check("SIGTERM with a client connected -> exit 0", rc == 0, f"rc={rc}")
        check("the connected client got GOAWAY NO_ERROR", left_open.eof() and left_open.goaway == 0,
              str(left_open.goaway))
        left_open.close()
        log = log_text(work, "main")
        check("no event=request log line per answer without --log-requests", " event=request " not in log)
        check("every conn_close line has max_open_streams=", log.count(" event=conn_close ") > 40 and
              log.count(" event=conn_close ") == log.count(" max_open_streams="), str(log.count(" event=conn_close ")))

        small = Standin(binary, certs, work, "small", ["--max-streams", "7"])
        c = H2(small.port, certs)
        check("--max-streams 7 is advertised", c.until(lambda: 3 in c.settings) and c.settings[3] == 7,
              str(c.settings))
        ids = [c.sid() for _ in range(8)]
        for sid in ids:
            c.post(sid, "/3/device/abcdef", body=b"{", end=False)
        # As APNs is reported to do, exceeding the limit ends the connection (nghttp2: GOAWAY).
        check("an 8th open stream -> GOAWAY PROTOCOL_ERROR", c.eof() and c.goaway == 1, str(c.goaway))
        rec = small.new_records(8)
        check("the refused stream and the 7 open ones are recorded", len(rec) == 8 and
              rec[0]["stream"] == ids[-1] and rec[0]["error"] == "refused (Protocol error)" and
              sorted(r["stream"] for r in rec[1:]) == ids[:-1] and
              all(r["error"].startswith("connection_closed") and r["body"] == "{" for r in rec[1:]),
              json.dumps(rec)[:300])
        c.close()
        check("SIGTERM -> exit 0", small.stop() == 0)
        failure_mode_checks(binary, certs, work)
        bad = subprocess.run([binary, "--listen", "127.0.0.1:0", "--rule", "xyz=200:", "--rule", "abcd=429:X*0",
                              "--goaway-after", "0", "--drop-after", "x", "--delay-ms", "-1", "--batch-us", "1e3"],
                             capture_output=True)
        check("bad arguments -> exit 2 naming each", bad.returncode == 2 and b"--rule xyz" in bad.stderr and
              b"--rule abcd=429:X*0" in bad.stderr and b"--goaway-after 0" in bad.stderr and
              b"--drop-after x" in bad.stderr and b"--delay-ms -1" in bad.stderr and
              b"--batch-us 1e3" in bad.stderr and b"--cert is required" in bad.stderr, bad.stderr.decode()[:600])
    finally:
        if st.proc.poll() is None:
            st.proc.kill()
    if failed == 0:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"logs and records kept in {work}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
