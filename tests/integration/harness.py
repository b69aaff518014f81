"""Integration-test harness: a private redis-server, the APNs stand-in, and the three services,
started on free loopback ports in a temporary folder, driven over real HTTP.

Environment: PASSKIT_BUILD_DIR (default <repo>/build), PASSKIT_SOURCE_DIR (default <repo>),
PASSKIT_SHARED_DIR (default <repo>/../shared; tests that need it are skipped when it is absent).
"""
import http.client
import io
import json
import os
import shutil
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("PASSKIT_SOURCE_DIR", os.path.normpath(os.path.join(HERE, "..", "..")))
BUILD_DIR = os.environ.get("PASSKIT_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
SHARED_DIR = os.environ.get("PASSKIT_SHARED_DIR", os.path.normpath(os.path.join(SOURCE_DIR, "..", "shared")))
BIN = os.path.join(BUILD_DIR, "bin")
TEAM_ID = "TEAM123456"
PASS_TYPE = "pass.com.example.integration"
OTHER_PASS_TYPE = "pass.com.example.other"
ADMIN_TOKEN = "admin-token-for-tests-0123456789"
SIGNER_TOKEN = "signer-token-for-tests-0123456789"
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=10.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def signer_unreachable(stack):
    """True when the api's /readyz says the signer cannot be reached; the reason is libcurl's detailed
    message, which names the signer's address and port."""
    body = stack.api("GET", "/readyz").json()
    pattern = r"signer unreachable: Failed to connect to 127\.0\.0\.1 port %d after \d+ ?ms: .+" % stack.signer_port
    return body.get("status") == "not ready" and re.fullmatch(pattern, body.get("reason", "")) is not None


def metric_value(text, metric, **labels):
    """Sum of the series of metric in a Prometheus text page whose labels include the given ones (0 when
    absent)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, _, value = line.rpartition(" ")
        mname, _, lab = series.partition("{")
        if mname != metric:
            continue
        if all(('%s="%s"' % (k, v)) in lab for k, v in labels.items()):
            total += float(value)
    return total


def make_zip(files, folder=None):
    """files: {name: bytes or str} -> zip bytes (optionally inside one top-level folder)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr((folder + "/" + name) if folder else name, data)
    return buf.getvalue()


def zip_dir(path):
    files = {}
    for root, _, names in os.walk(path):
        for n in names:
            full = os.path.join(root, n)
            with open(full, "rb") as f:
                files[os.path.relpath(full, path)] = f.read()
    return make_zip(files)


def sample_template(**extra_pass):
    pass_json = {
        "formatVersion": 1,
        "organizationName": "Example Venue",
        "description": "Integration test ticket",
        "eventTicket": {"primaryFields": [{"key": "event", "label": "EVENT", "value": "Opening night"}]},
        "barcodes": [{"message": "1234", "format": "PKBarcodeFormatQR", "messageEncoding": "iso-8859-1"}],
    }
    pass_json.update(extra_pass)
    return {"pass.json": json.dumps(pass_json, indent=2), "icon.png": PNG_1X1, "logo.png": PNG_1X1,
            "en.lproj/pass.strings": '"EVENT" = "Event";\n'}


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)


def request(port, method, path, body=None, headers=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    conn.close()
    return Response(r.status, hdrs, data)


class Service:
    def __init__(self, name, argv, env, log_dir):
        self.name = name
        self.log_path = os.path.join(log_dir, name + ".log")
        self.log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env)
        self.proc = subprocess.Popen(argv, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


def redis_server(name, port, directory, log_dir):
    """A private redis-server on 127.0.0.1:port, data (none saved) in directory, its log in log_dir."""
    return Service(name, ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                          "--dir", directory], {}, log_dir)


class Stack:
    """Redis + APNs stand-in + signer + api + pusher. Use start()/stop() (or a with-block)."""

    def __init__(self, apns_rules=(), start_pusher=True, pass_types=(PASS_TYPE, OTHER_PASS_TYPE), apns_args=(),
                 pusher_env=None, signer_env=None):
        self.tmp = tempfile.mkdtemp(prefix="passkit-it-")
        self.apns_rules = list(apns_rules)
        self.apns_args = list(apns_args)
        self.pusher_env_overrides = dict(pusher_env or {})
        self.signer_env_overrides = dict(signer_env or {})
        self.pusher_ports = {}
        self.start_pusher = start_pusher
        self.pass_types = pass_types
        self.services = {}
        self.certs = os.path.join(self.tmp, "certs")

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self):
        subprocess.run([os.path.join(SOURCE_DIR, "tests", "certs", "make-dev-certs.sh"), self.certs, TEAM_ID,
                        *self.pass_types], check=True)
        self.start_redis()
        self.start_apns()
        self.start_signer()
        self.start_api()
        if self.start_pusher:
            self.start_pusher_service()
        return self

    def start_redis(self):
        redis_dir = os.path.join(self.tmp, "redis")
        os.makedirs(redis_dir)
        for attempt in range(3):  # a free port can be taken by a parallel test before we bind it
            self.redis_port = free_port()
            self.redis = redis_server("redis", self.redis_port, redis_dir, self.tmp)
            if self._wait_started(self.redis, lambda: "Ready to accept connections" in self.redis.output()) \
                    or attempt == 2:
                break
        wait_until(lambda: self._redis_ping(), what="redis-server")
        assert self.redis_cli("DBSIZE") == "0", "refusing a non-empty Redis"

    def restart_redis(self):
        """Starts the stack's redis-server again (after a test stopped or killed it), same port and folder."""
        self.redis = redis_server("redis", self.redis_port, os.path.join(self.tmp, "redis"), self.tmp)

    def _redis_ping(self):
        try:
            return self.redis_cli("PING") == "PONG"
        except Exception:
            return False

    def redis_cli(self, *args):
        out = subprocess.run(["redis-cli", "-p", str(self.redis_port), "--no-raw" if False else "--raw", *args],
                             capture_output=True, check=True)
        return out.stdout.decode().rstrip("\n")

    def redis_pipe(self, commands):
        """Sends many commands at once (redis-cli --pipe); commands: iterable of argument tuples."""
        out = []
        for args in commands:
            out.append(b"*%d\r\n" % len(args))
            for a in args:
                a = a if isinstance(a, bytes) else str(a).encode()
                out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        subprocess.run(["redis-cli", "-p", str(self.redis_port), "--pipe"], input=b"".join(out), check=True,
                       capture_output=True)

    def register_many(self, ptid, serial, count, prefix="d"):
        """Registers count devices for a pass straight in Redis (the layout of common/keys.h), as the
        api would; returns {device library id: push token}."""
        devices = {}
        cmds = []
        for i in range(count):
            dli, token = "%s%06d" % (prefix, i), "%s%06x" % (prefix.encode().hex()[:8], i)
            if len(token) % 2:
                token = "0" + token
            devices[dli] = token
            cmds += [("SET", "pk:devtoken:%s:%s" % (dli, ptid), token),
                     ("SADD", "pk:devpasses:%s:%s" % (dli, ptid), serial),
                     ("SADD", "pk:regs:%s:%s" % (ptid, serial), dli)]
        self.redis_pipe(cmds)
        return devices

    @property
    def redis_url(self):
        return "redis://127.0.0.1:%d/0" % self.redis_port

    def start_apns(self, port=0):
        """Starts the stand-in (again: pass the port it had, to come back at the same address)."""
        self.apns_record = os.path.join(self.tmp, "apns.jsonl")
        port_file = os.path.join(self.tmp, "apns.port")
        if os.path.exists(port_file):
            os.remove(port_file)
        argv = [os.path.join(BIN, "apns-standin"), "--listen", "127.0.0.1:%d" % port, "--port-file", port_file,
                "--cert", os.path.join(self.certs, "apns", "server.pem"),
                "--key", os.path.join(self.certs, "apns", "server-key.pem"),
                "--client-ca", os.path.join(self.certs, "ca", "chain.pem"), "--record", self.apns_record]
        for rule in self.apns_rules:
            argv += ["--rule", rule]
        argv += self.apns_args
        self.services["apns"] = Service("apns", argv, {}, self.tmp)
        def read_port():
            if not os.path.exists(port_file):
                return None
            with open(port_file) as f:
                return f.read().strip()
        self.apns_port = int(wait_until(read_port, what="apns-standin port"))

    def signer_env(self):
        env = {"REDIS_URL": self.redis_url, "SIGNER_LISTEN": "127.0.0.1:%d" % self.signer_port,
               "CERTS_DIR": self.certs, "PUBLIC_URL": "http://127.0.0.1:%d/passes" % self.api_port,
               "SIGNER_TOKEN": SIGNER_TOKEN, "LOG_LEVEL": "debug"}
        env.update(self.signer_env_overrides)
        return env

    def _wait_started(self, service, check, timeout=10.0):
        """True once check() holds; False if the process exited first (e.g. its port was taken)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if check():
                return True
            if service.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def start_signer(self, env_overrides=None):
        fresh = not hasattr(self, "signer_port")
        if fresh:
            self.api_port = free_port()
        for attempt in range(3):
            if fresh or attempt > 0:
                self.signer_port = free_port()
            env = self.signer_env()
            env.update(env_overrides or {})
            self.services["signer"] = Service("signer", [os.path.join(BIN, "passkit-signer")], env, self.tmp)
            signer = self.services["signer"]
            if self._wait_started(signer, lambda: "event=listening" in signer.output()) or attempt == 2:
                break
        wait_until(lambda: self._healthy(self.signer_port), what="signer /healthz")

    def start_api(self):
        env = {"REDIS_URL": self.redis_url, "API_LISTEN": "127.0.0.1:%d" % self.api_port,
               "SIGNER_URL": "http://127.0.0.1:%d" % self.signer_port, "ADMIN_TOKEN": ADMIN_TOKEN,
               "PUBLIC_URL": "http://127.0.0.1:%d/passes" % self.api_port, "MAX_BODY_BYTES": "2097152",
               "SIGNER_TOKEN": SIGNER_TOKEN, "LOG_LEVEL": "debug"}
        self.services["api"] = Service("api", [os.path.join(BIN, "passkit-api")], env, self.tmp)
        api = self.services["api"]
        if not self._wait_started(api, lambda: "event=listening" in api.output()):
            # its port was taken meanwhile: the signer must then sign for another PUBLIC_URL too
            self.stop_service("api")
            self.stop_service("signer")
            self.api_port = free_port()
            self.start_signer()
            return self.start_api()
        wait_until(lambda: self._healthy(self.api_port), what="api /healthz")
        wait_until(lambda: self._ready(self.api_port), what="api /readyz")

    def pusher_env(self):
        return {"REDIS_URL": self.redis_url, "CERTS_DIR": self.certs,
                "APNS_URL": "https://127.0.0.1:%d" % self.apns_port,
                "APNS_CA_FILE": os.path.join(self.certs, "ca", "root.pem"), "PUSHER_BLOCK_MS": "200",
                "PUSHER_COALESCE_MS": "0", "LOG_LEVEL": "debug"}

    def start_pusher_service(self, name="pusher", env_overrides=None, wait_ready=True):
        """Starts a pusher with its status listener on a free port (self.pusher_ports[name])."""
        for attempt in range(3):
            port = free_port()
            env = self.pusher_env()
            env["PUSHER_LISTEN"] = "127.0.0.1:%d" % port
            env.update(self.pusher_env_overrides)
            env.update(env_overrides or {})
            svc = Service(name, [os.path.join(BIN, "passkit-pusher")], env, self.tmp)
            self.services[name] = svc
            self.pusher_ports[name] = port
            if not wait_ready:
                return svc
            if self._wait_started(svc, lambda: self._ready(port), timeout=15) or attempt == 2:
                break
            if svc.proc.poll() is None:
                raise AssertionError("pusher %s not ready:\n%s" % (name, svc.output()[-3000:]))
            svc.stop()
        return self.services[name]

    def pusher_get(self, name, path):
        return request(self.pusher_ports[name], "GET", path, timeout=5)

    def pusher_metric(self, name, metric, **labels):
        """Sum of the metric's series whose labels include the given ones (0 when absent)."""
        return metric_value(self.pusher_get(name, "/metrics").body.decode(), metric, **labels)

    def signer_metric(self, metric, **labels):
        """The signer's /metrics, as pusher_metric."""
        return metric_value(request(self.signer_port, "GET", "/metrics", timeout=5).body.decode(), metric, **labels)

    def signer_bundle(self, ptid, serial, method="GET"):
        """A bundle straight from the signer (with SIGNER_TOKEN)."""
        return request(self.signer_port, method, "/v1/bundles/%s/%s" % (ptid, serial),
                       headers={"Authorization": "Bearer " + SIGNER_TOKEN})

    def make_certs(self, *options, pass_types=None, out=None):
        """Runs make-dev-certs.sh with options ("--replace", "--expired", ...) on the stack's hierarchy
        (or out) for pass_types (default: the stack's)."""
        subprocess.run([os.path.join(SOURCE_DIR, "tests", "certs", "make-dev-certs.sh"), *options,
                        out or self.certs, TEAM_ID, *(pass_types or self.pass_types)], check=True)

    def _healthy(self, port):
        try:
            return request(port, "GET", "/healthz", timeout=1).status == 200
        except OSError:
            return False

    def _ready(self, port):
        try:
            return request(port, "GET", "/readyz", timeout=1).status == 200
        except OSError:
            return False

    def stop_service(self, name, sig=signal.SIGTERM):
        svc = self.services.pop(name)
        return svc.stop(sig), svc.output()

    def stop(self):
        """Stops everything; returns {name: (exit code, output)} for the services."""
        results = {}
        for name in list(self.services):
            results[name] = self.stop_service(name)
        self.redis.stop()
        self.results = results
        return results

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- HTTP helpers ----------------------------------------------------------------------------
    def api(self, method, path, body=None, headers=None):
        return request(self.api_port, method, path, body, headers)

    def admin(self, method, path, body=None, headers=None):
        h = {"Authorization": "Bearer " + ADMIN_TOKEN}
        h.update(headers or {})
        return request(self.api_port, method, "/admin/v1" + path, body, h)

    def apns_request_count(self):
        if not os.path.exists(self.apns_record):
            return 0
        with open(self.apns_record, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))

    def apns_requests(self):
        if not os.path.exists(self.apns_record):
            return []
        with open(self.apns_record) as f:
            return [json.loads(line) for line in f if line.strip()]


class StackTestCase(unittest.TestCase):
    """Starts one Stack for the whole class; a service that exits non-zero or prints a sanitizer
    report fails the class."""
    stack_kwargs = {}

    @classmethod
    def setUpClass(cls):
        cls.stack = Stack(**cls.stack_kwargs)
        try:
            cls.stack.start()
        except Exception:
            cls.stack.stop()
            for name, (code, out) in cls.stack.results.items():
                print("---", name, code, "\n", out[-3000:])
            raise

    @classmethod
    def tearDownClass(cls):
        results = cls.stack.stop()
        problems = []
        for name, (code, out) in results.items():
            if code != 0 or "ERROR: AddressSanitizer" in out or "runtime error:" in out or "LeakSanitizer" in out:
                problems.append("%s exited %s:\n%s" % (name, code, out[-4000:]))
        if problems:
            raise AssertionError("\n".join(problems))
        cls.stack.cleanup()

    # convenience
    def put_template(self, template_id, files, folder=None):
        return self.stack.admin("PUT", "/templates/" + template_id, make_zip(files, folder))

    def put_pass(self, serial, template_id="tpl", pass_fields=None, pass_type=PASS_TYPE, method="PUT"):
        body = {"templateId": template_id, "pass": pass_fields or {}}
        return self.stack.admin(method, "/passes/%s/%s" % (pass_type, serial), body)


def run():
    """unittest.main, with exit code 77 (ctest's skip) when every test of the run was skipped."""
    prog = unittest.main(exit=False, verbosity=2)
    result = prog.result
    if result.testsRun > 0 and len(result.skipped) == result.testsRun and result.wasSuccessful():
        raise SystemExit(77)
    raise SystemExit(0 if result.wasSuccessful() else 1)
