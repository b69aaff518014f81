#!/usr/bin/env python3
"""Our own rules for the rendered Kubernetes manifests (docker/k8s), beyond schema validity.

  check_manifests.py --mode base|dev RENDER.json          check one rendering
  check_manifests.py --self-test BASE.json DEV.json        break the renderings on purpose, one way
                                                           at a time, and expect a failure each time

RENDER.json is the output of `kubectl kustomize DIR` as a JSON list of objects (tests/k8s/validate.sh
converts it). Prints one line per failed rule and exits 1 if any failed, 0 otherwise.

Rules: every workload's containers have readiness and liveness probes (named ports that exist),
resource requests and limits for cpu and memory (requests <= limits), run as non-root without
privilege escalation, read-only root filesystem, all capabilities dropped, RuntimeDefault seccomp;
the passkit images run as uid 10001. The services' listen addresses match their container ports and
bind all interfaces. The certificates volume is mounted at CERTS_DIR in the signer and the pusher:
a projected volume of per-pass-type TLS Secrets, tls.crt -> pass.<id>/certificate.pem and tls.key ->
pass.<id>/private-key.pem, the same pass types in both. Tokens come from Secrets. Every referenced
ConfigMap, Secret (and key) exists, except, in the base, the Secrets operators create. Services
select pods and target their ports; SIGNER_URL (and in dev REDIS_URL, APNS_URL) name a Service and
one of its ports. HPAs target existing Deployments with cpu requests; PDBs select pods and do not
block every eviction. Grace periods cover each service's shutdown. No namespace in the base.
"""
import base64
import copy
import json
import re
import sys
from urllib.parse import urlsplit

PASSKIT = {  # Deployment name -> (image repository, listen variable)
    "passkit-api": ("passkit/api", "API_LISTEN"),
    "passkit-signer": ("passkit/signer", "SIGNER_LISTEN"),
    "passkit-pusher": ("passkit/pusher", "PUSHER_LISTEN"),
}
CERT_USERS = ("passkit-signer", "passkit-pusher")
MIN_GRACE = {"passkit-api": 15, "passkit-signer": 30, "passkit-pusher": 40}
# Secrets the base references but operators create (docker/k8s/README.md).
EXTERNAL_SECRETS = re.compile(r"^(passkit-tokens|passkit-passtype-[a-z0-9-]+)$")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


def quantity(q):
    """A resource quantity as a float (cpu in cores, memory in bytes)."""
    s = str(q)
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
                "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}
    for suf in sorted(suffixes, key=len, reverse=True):
        if s.endswith(suf):
            return float(s[: -len(suf)]) * suffixes[suf]
    return float(s)


def selector_matches(sel, labels):
    if not sel:
        return False
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        k, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and labels.get(k) in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return bool(sel.get("matchLabels") or sel.get("matchExpressions"))


class Checker:
    def __init__(self, objs, mode):
        self.objs = [o for o in objs if isinstance(o, dict)]
        self.mode = mode
        self.failures = []
        self.by_kind = {}
        for o in self.objs:
            self.by_kind.setdefault(o.get("kind"), {})[o.get("metadata", {}).get("name")] = o

    def fail(self, what, msg):
        self.failures.append(f"{what}: {msg}")

    def kind(self, k):
        return self.by_kind.get(k, {})

    def workloads(self):
        for k in WORKLOAD_KINDS:
            for name, o in self.kind(k).items():
                yield f"{k}/{name}", name, o

    # ---- references -----------------------------------------------------------------------------

    def secret_keys(self, name):
        s = self.kind("Secret").get(name)
        if s is None:
            return None
        return set((s.get("data") or {}).keys()) | set((s.get("stringData") or {}).keys())

    def secret_value(self, name, key):
        s = self.kind("Secret").get(name) or {}
        if key in (s.get("stringData") or {}):
            return s["stringData"][key]
        if key in (s.get("data") or {}):
            return base64.b64decode("".join(s["data"][key].split())).decode("utf-8", "replace")
        return None

    def configmap_data(self, name):
        c = self.kind("ConfigMap").get(name)
        return None if c is None else dict(c.get("data") or {})

    def check_secret_ref(self, what, name, keys=()):
        have = self.secret_keys(name)
        if have is None:
            if self.mode == "dev" or not EXTERNAL_SECRETS.match(name or ""):
                self.fail(what, f"Secret {name} is not defined")
            return
        for k in keys:
            if k not in have:
                self.fail(what, f"Secret {name} has no key {k}")

    def check_configmap_ref(self, what, name, keys=()):
        data = self.configmap_data(name)
        if data is None:
            self.fail(what, f"ConfigMap {name} is not defined")
            return
        for k in keys:
            if k not in data:
                self.fail(what, f"ConfigMap {name} has no key {k}")

    def env_of(self, what, container):
        """The container's environment as {name: value or None (from a Secret)}, references checked."""
        env = {}
        for ef in container.get("envFrom") or []:
            if "configMapRef" in ef:
                data = self.configmap_data(ef["configMapRef"].get("name"))
                if data is None:
                    self.fail(what, f"envFrom ConfigMap {ef['configMapRef'].get('name')} is not defined")
                else:
                    env.update({ef.get("prefix", "") + k: v for k, v in data.items()})
            if "secretRef" in ef:
                self.check_secret_ref(what, ef["secretRef"].get("name"))
        for e in container.get("env") or []:
            vf = e.get("valueFrom")
            if vf is None:
                env[e["name"]] = e.get("value", "")
            elif "secretKeyRef" in vf:
                r = vf["secretKeyRef"]
                self.check_secret_ref(what, r.get("name"), [r.get("key")])
                env[e["name"]] = None
            elif "configMapKeyRef" in vf:
                r = vf["configMapKeyRef"]
                self.check_configmap_ref(what, r.get("name"), [r.get("key")])
                env[e["name"]] = (self.configmap_data(r.get("name")) or {}).get(r.get("key"))
            else:
                env[e["name"]] = None
        return env

    def check_volumes(self, what, pod):
        for v in pod.get("volumes") or []:
            vw = f"{what} volume {v.get('name')}"
            if "secret" in v:
                keys = [i["key"] for i in v["secret"].get("items") or []]
                if not v["secret"].get("optional"):
                    self.check_secret_ref(vw, v["secret"].get("secretName"), keys)
            if "configMap" in v:
                keys = [i["key"] for i in v["configMap"].get("items") or []]
                self.check_configmap_ref(vw, v["configMap"].get("name"), keys)
            for src in (v.get("projected") or {}).get("sources") or []:
                if "secret" in src and not src["secret"].get("optional"):
                    keys = [i["key"] for i in src["secret"].get("items") or []]
                    self.check_secret_ref(vw, src["secret"].get("name"), keys)
                if "configMap" in src:
                    keys = [i["key"] for i in src["configMap"].get("items") or []]
                    self.check_configmap_ref(vw, src["configMap"].get("name"), keys)

    # ---- workloads ------------------------------------------------------------------------------

    def check_container(self, what, pod, c, passkit, claims=frozenset()):
        cw = f"{what} container {c.get('name')}"
        ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
        for probe in ("readinessProbe", "livenessProbe"):
            p = c.get(probe)
            if not p:
                self.fail(cw, f"no {probe}")
                continue
            port = (p.get("httpGet") or p.get("tcpSocket") or {}).get("port")
            if isinstance(port, str) and port not in ports:
                self.fail(cw, f"{probe} uses port {port}, which the container does not declare")
            if isinstance(port, int) and port not in ports.values():
                self.fail(cw, f"{probe} uses port {port}, which the container does not declare")
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(part) or {}):
                    self.fail(cw, f"no resources.{part}.{r}")
        for r in ("cpu", "memory"):
            try:
                if quantity(res["requests"][r]) > quantity(res["limits"][r]):
                    self.fail(cw, f"{r} request above its limit")
            except (KeyError, TypeError, ValueError):
                pass
        psc, csc = pod.get("securityContext") or {}, c.get("securityContext") or {}

        def eff(k):
            return csc[k] if k in csc else psc.get(k)
        if eff("runAsNonRoot") is not True:
            self.fail(cw, "runAsNonRoot is not true")
        uid = eff("runAsUser")
        if uid is None or uid == 0:
            self.fail(cw, "runAsUser is not set to a non-root uid")
        if passkit and uid != 10001:
            self.fail(cw, f"runAsUser is {uid}, the passkit images run as 10001")
        if csc.get("allowPrivilegeEscalation") is not False:
            self.fail(cw, "allowPrivilegeEscalation is not false")
        if csc.get("readOnlyRootFilesystem") is not True:
            self.fail(cw, "readOnlyRootFilesystem is not true")
        if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
            self.fail(cw, "capabilities do not drop ALL")
        if ((eff("seccompProfile") or {}).get("type")) != "RuntimeDefault":
            self.fail(cw, "seccompProfile is not RuntimeDefault")
        if csc.get("privileged"):
            self.fail(cw, "privileged")
        image = c.get("image", "")
        if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
            self.fail(cw, f"image {image} has no tag")
        vols = {v.get("name") for v in pod.get("volumes") or []} | claims
        for m in c.get("volumeMounts") or []:
            if m.get("name") not in vols:
                self.fail(cw, f"volumeMount {m.get('name')} names no volume")

    def check_workloads(self):
        for what, name, o in self.workloads():
            tpl = (o.get("spec") or {}).get("template") or {}
            pod = tpl.get("spec") or {}
            labels = (tpl.get("metadata") or {}).get("labels") or {}
            if not selector_matches((o.get("spec") or {}).get("selector"), labels):
                self.fail(what, "its selector does not match its pod template")
            for k in ("app.kubernetes.io/name", "app.kubernetes.io/part-of"):
                if k not in labels:
                    self.fail(what, f"pod template has no label {k}")
            if "terminationGracePeriodSeconds" not in pod:
                self.fail(what, "no terminationGracePeriodSeconds")
            self.check_volumes(what, pod)
            claims = {t.get("metadata", {}).get("name") for t in o["spec"].get("volumeClaimTemplates") or []}
            for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
                self.check_container(what, pod, c, name in PASSKIT, claims)
                self.env_of(f"{what} container {c.get('name')}", c)
            if o.get("kind") == "StatefulSet":
                svc = self.kind("Service").get(o["spec"].get("serviceName"))
                if svc is None or (svc.get("spec") or {}).get("clusterIP") != "None":
                    self.fail(what, f"serviceName {o['spec'].get('serviceName')} is not a headless Service")

    def passkit_container(self, name):
        d = self.kind("Deployment").get(name)
        if d is None:
            return None, None
        pod = d["spec"]["template"]["spec"]
        want = PASSKIT[name][0]
        for c in pod.get("containers") or []:
            if c.get("image", "").split(":")[0].split("@")[0] == want:
                return pod, c
        return pod, None

    def service_port(self, host, port):
        """The Service named host (short name) with a port number port, or None."""
        svc = self.kind("Service").get(host.split(".")[0])
        if svc is None:
            return None
        for p in (svc.get("spec") or {}).get("ports") or []:
            if p.get("port") == port:
                return svc
        return None

    def check_passkit(self):
        projections = {}
        for name, (image, listen_var) in PASSKIT.items():
            what = f"Deployment/{name}"
            pod, c = self.passkit_container(name)
            if pod is None:
                self.fail(what, "missing")
                continue
            if c is None:
                self.fail(what, f"no container runs {image}")
                continue
            d = self.kind("Deployment")[name]
            env = self.env_of(what, c)
            ports = [p.get("containerPort") for p in c.get("ports") or []]
            listen = env.get(listen_var)
            m = re.fullmatch(r"(.*):(\d+)", listen or "")
            if not m:
                self.fail(what, f"{listen_var} is not set to host:port")
            else:
                if int(m.group(2)) not in ports:
                    self.fail(what, f"{listen_var} port {m.group(2)} is not a containerPort")
                if m.group(1) not in ("", "0.0.0.0", "[::]", "::"):
                    self.fail(what, f"{listen_var} binds {m.group(1)}, not every interface")
            ann = (d["spec"]["template"].get("metadata") or {}).get("annotations") or {}
            if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/path") != "/metrics":
                self.fail(what, "no prometheus.io scrape annotations for /metrics")
            elif str(ann.get("prometheus.io/port")) not in [str(p) for p in ports]:
                self.fail(what, "prometheus.io/port is not a containerPort")
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                got = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
                if got != path:
                    self.fail(what, f"{probe} is not an httpGet of {path}")
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if grace < MIN_GRACE[name]:
                self.fail(what, f"terminationGracePeriodSeconds {grace} < {MIN_GRACE[name]}")
            if name == "passkit-api":
                cmd = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command")
                if not cmd or cmd[0] not in ("sleep", "/bin/sleep"):
                    self.fail(what, "no preStop sleep")
            for var in ("ADMIN_TOKEN", "SIGNER_TOKEN"):
                if var in env and env[var] is not None:
                    self.fail(what, f"{var} is a literal value, not a Secret reference")
            if name in ("passkit-api", "passkit-signer") and "SIGNER_TOKEN" not in env:
                self.fail(what, "no SIGNER_TOKEN")
            if name == "passkit-api":
                if "ADMIN_TOKEN" not in env:
                    self.fail(what, "no ADMIN_TOKEN")
                self.check_signer_url(what, env.get("SIGNER_URL"))
            self.check_urls(what, env, c)
            if name in CERT_USERS:
                projections[name] = self.check_certs(what, pod, c, env)
        got = [p for p in projections.values() if p is not None]
        if len(got) == 2 and got[0] != got[1]:
            self.fail("certificates", f"signer and pusher project different pass types: {got[0]} / {got[1]}")

    def check_signer_url(self, what, url):
        u = urlsplit(url or "")
        if u.scheme != "http" or not u.hostname:
            self.fail(what, f"SIGNER_URL {url!r} is not http://host:port")
            return
        svc = self.service_port(u.hostname, u.port or 80)
        if svc is None:
            self.fail(what, f"SIGNER_URL {url}: no Service {u.hostname} with port {u.port or 80}")
            return
        pod, _ = self.passkit_container("passkit-signer")
        labels = self.kind("Deployment")["passkit-signer"]["spec"]["template"]["metadata"].get("labels", {}) \
            if pod is not None else {}
        if not selector_matches({"matchLabels": svc["spec"].get("selector") or {}}, labels):
            self.fail(what, f"SIGNER_URL {url}: Service {u.hostname} does not select the signer pods")

    def check_urls(self, what, env, c):
        redis = env.get("REDIS_URL")
        if redis is not None:
            u = urlsplit(redis)
            if u.scheme != "redis" or not u.hostname:
                self.fail(what, f"REDIS_URL is not redis://host[:port][/db] (rediss:// is not supported)")
            elif self.mode == "dev" and self.service_port(u.hostname, u.port or 6379) is None:
                self.fail(what, f"REDIS_URL names no Service {u.hostname} with port {u.port or 6379}")
        if "APNS_URL" in env and what.endswith("passkit-pusher"):
            u = urlsplit(env["APNS_URL"] or "")
            if u.scheme != "https" or not u.hostname:
                self.fail(what, "APNS_URL is not https://host[:port]")
            elif self.mode == "dev" and self.service_port(u.hostname, u.port or 443) is None:
                self.fail(what, f"APNS_URL names no Service {u.hostname} with port {u.port or 443}")
            ca = env.get("APNS_CA_FILE")
            if ca and not any(ca.startswith(m["mountPath"].rstrip("/") + "/")
                              for m in c.get("volumeMounts") or []):
                self.fail(what, f"APNS_CA_FILE {ca} is not on a mounted volume")
        public = env.get("PUBLIC_URL")
        if public is not None and urlsplit(public).scheme not in ("http", "https"):
            self.fail(what, "PUBLIC_URL is not an http(s) URL")
        if self.mode == "base" and public is not None and not public.startswith("https://"):
            self.fail(what, "PUBLIC_URL must be https:// in the base (Wallet calls it)")

    def check_certs(self, what, pod, c, env):
        """The pass types projected at CERTS_DIR, as a sorted list, or None after a failure."""
        certs_dir = (env.get("CERTS_DIR") or "").rstrip("/")
        if not certs_dir:
            self.fail(what, "CERTS_DIR is not set")
            return None
        mounts = [m for m in c.get("volumeMounts") or [] if m.get("mountPath", "").rstrip("/") == certs_dir]
        if len(mounts) != 1:
            self.fail(what, f"no volume mounted at CERTS_DIR {certs_dir}")
            return None
        if mounts[0].get("subPath"):
            self.fail(what, "the certificates volume is mounted with subPath (Secret updates never arrive)")
        vol = next((v for v in pod.get("volumes") or [] if v.get("name") == mounts[0].get("name")), None)
        if vol is None or "projected" not in vol:
            self.fail(what, f"the volume at CERTS_DIR is not a projected volume")
            return None
        types = []
        for src in vol["projected"].get("sources") or []:
            sec = src.get("secret")
            if sec is None:
                self.fail(what, "CERTS_DIR projects something other than Secrets")
                continue
            items = {i.get("key"): i.get("path") for i in sec.get("items") or []}
            if set(items.values()) == {"wwdr.pem"}:
                continue
            crt, key = items.get("tls.crt", ""), items.get("tls.key", "")
            m1 = re.fullmatch(r"(pass\.[A-Za-z0-9.-]+)/certificate\.pem", crt)
            m2 = re.fullmatch(r"(pass\.[A-Za-z0-9.-]+)/private-key\.pem", key)
            if not (m1 and m2 and m1.group(1) == m2.group(1)) or len(items) != 2:
                self.fail(what, f"Secret {sec.get('name')} is not projected as tls.crt -> "
                                f"pass.<id>/certificate.pem, tls.key -> pass.<id>/private-key.pem")
                continue
            s = self.kind("Secret").get(sec.get("name"))
            if s is not None and s.get("type") != "kubernetes.io/tls":
                self.fail(what, f"Secret {sec.get('name')} is not of type kubernetes.io/tls")
            types.append(m1.group(1))
        if not types:
            self.fail(what, "no pass type is projected into CERTS_DIR")
        if len(types) != len(set(types)):
            self.fail(what, "a pass type is projected twice")
        return sorted(types)

    # ---- services, autoscalers, disruption budgets ----------------------------------------------

    def pods_selected(self, sel):
        return [(what, o) for what, _, o in self.workloads()
                if selector_matches(sel, (o["spec"]["template"].get("metadata") or {}).get("labels") or {})]

    def check_services(self):
        for name, s in self.kind("Service").items():
            what = f"Service/{name}"
            sel = (s.get("spec") or {}).get("selector")
            matched = self.pods_selected({"matchLabels": sel or {}})
            if not matched:
                self.fail(what, "selects no pods")
                continue
            for p in s["spec"].get("ports") or []:
                tp = p.get("targetPort", p.get("port"))
                for w, o in matched:
                    cports = [cp for c in o["spec"]["template"]["spec"].get("containers") or []
                              for cp in c.get("ports") or []]
                    if not any(cp.get("name") == tp or cp.get("containerPort") == tp for cp in cports):
                        self.fail(what, f"targetPort {tp} is not a port of {w}")

    def check_hpas(self):
        hpas = self.kind("HorizontalPodAutoscaler")
        for want in ("passkit-api", "passkit-pusher"):
            if not any((h["spec"].get("scaleTargetRef") or {}).get("name") == want for h in hpas.values()):
                self.fail(f"Deployment/{want}", "no HorizontalPodAutoscaler")
        for name, h in hpas.items():
            what = f"HorizontalPodAutoscaler/{name}"
            ref = h["spec"].get("scaleTargetRef") or {}
            target = self.kind(ref.get("kind")).get(ref.get("name"))
            if target is None or ref.get("apiVersion") != target.get("apiVersion"):
                self.fail(what, f"targets {ref.get('apiVersion')} {ref.get('kind')}/{ref.get('name')}, "
                                f"which does not exist")
                continue
            lo, hi = h["spec"].get("minReplicas", 1), h["spec"].get("maxReplicas", 0)
            if not 1 <= lo <= hi:
                self.fail(what, f"minReplicas {lo} / maxReplicas {hi}")
            for m in h["spec"].get("metrics") or []:
                r = (m.get("resource") or {})
                if m.get("type") == "Resource" and (r.get("target") or {}).get("type") == "Utilization":
                    for c in target["spec"]["template"]["spec"].get("containers") or []:
                        if r.get("name") not in ((c.get("resources") or {}).get("requests") or {}):
                            self.fail(what, f"container {c.get('name')} has no {r.get('name')} request "
                                            f"for a Utilization target")

    def check_pdbs(self):
        pdbs = self.kind("PodDisruptionBudget")
        for name, p in pdbs.items():
            what = f"PodDisruptionBudget/{name}"
            matched = self.pods_selected(p["spec"].get("selector"))
            if not matched:
                self.fail(what, "selects no pods")
                continue
            if len(matched) > 1:
                self.fail(what, f"selects the pods of several workloads: {[w for w, _ in matched]}")
            ma = p["spec"].get("minAvailable")
            if isinstance(ma, int):
                _, o = matched[0]
                if ma >= o["spec"].get("replicas", 1):
                    self.fail(what, f"minAvailable {ma} >= replicas: no pod could ever be evicted")
        for want in PASSKIT:
            d = self.kind("Deployment").get(want)
            if d is None:
                continue
            labels = d["spec"]["template"]["metadata"].get("labels") or {}
            if not any(selector_matches(p["spec"].get("selector"), labels) for p in pdbs.values()):
                self.fail(f"Deployment/{want}", "no PodDisruptionBudget")

    def check_metadata(self):
        for o in self.objs:
            md = o.get("metadata") or {}
            what = f"{o.get('kind')}/{md.get('name')}"
            if self.mode == "base" and "namespace" in md:
                self.fail(what, "the base sets a namespace")
            if self.mode == "base" and o.get("kind") not in ("Namespace",):
                for k in ("app.kubernetes.io/name", "app.kubernetes.io/part-of"):
                    if o.get("kind") != "ConfigMap" and k not in (md.get("labels") or {}):
                        self.fail(what, f"no label {k}")
        if self.mode == "dev":
            tok = self.secret_value("passkit-tokens", "admin-token")
            if tok is not None and len(tok) < 16:
                self.fail("Secret/passkit-tokens", "admin-token is shorter than 16 characters")

    def run(self):
        self.check_metadata()
        self.check_workloads()
        self.check_passkit()
        self.check_services()
        self.check_hpas()
        self.check_pdbs()
        return sorted(set(self.failures))


def load(path):
    with open(path) as f:
        return json.load(f)


def check(objs, mode):
    return Checker(objs, mode).run()


# ---- self-test: each mutation must make the checks fail --------------------------------------------

def _find(objs, kind, name):
    return next(o for o in objs if o.get("kind") == kind and o["metadata"]["name"] == name)


def _container(objs, name):
    return _find(objs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def _pod(objs, name):
    return _find(objs, "Deployment", name)["spec"]["template"]["spec"]


def _cert_items(objs, name):
    vol = next(v for v in _pod(objs, name)["volumes"] if v["name"] == "passkit-certs")
    return vol["projected"]["sources"][0]["secret"]["items"]


def _set_env(c, var, value):
    c.setdefault("env", []).append({"name": var, "value": value})


def _configmap(objs):
    return next(o for o in objs if o.get("kind") == "ConfigMap" and o["metadata"]["name"].startswith("passkit-config"))


# name -> (how to break a rendering, a piece of the failure that must follow)
MUTATIONS = {
    "api without readinessProbe": (lambda o: _container(o, "passkit-api").pop("readinessProbe"),
                                   "no readinessProbe"),
    "pusher without livenessProbe": (lambda o: _container(o, "passkit-pusher").pop("livenessProbe"),
                                     "no livenessProbe"),
    "signer without a memory limit": (lambda o: _container(o, "passkit-signer")["resources"]["limits"].pop("memory"),
                                      "no resources.limits.memory"),
    "api cpu request above limit": (lambda o: _container(o, "passkit-api")["resources"]["requests"].update(cpu="4"),
                                    "cpu request above its limit"),
    "pusher may run as root": (lambda o: (_pod(o, "passkit-pusher")["securityContext"].update(runAsNonRoot=False),
                                          _container(o, "passkit-pusher")["securityContext"].pop("runAsNonRoot")),
                               "runAsNonRoot is not true"),
    "signer as another uid": (lambda o: _pod(o, "passkit-signer")["securityContext"].update(runAsUser=1000),
                              "the passkit images run as 10001"),
    "signer writable root": (lambda o: _container(o, "passkit-signer")["securityContext"]
                             .update(readOnlyRootFilesystem=False), "readOnlyRootFilesystem is not true"),
    "api keeps capabilities": (lambda o: _container(o, "passkit-api")["securityContext"].pop("capabilities"),
                               "capabilities do not drop ALL"),
    "api privilege escalation": (lambda o: _container(o, "passkit-api")["securityContext"]
                                 .pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation is not false"),
    "pusher without seccomp": (lambda o: _pod(o, "passkit-pusher")["securityContext"].pop("seccompProfile"),
                               "seccompProfile is not RuntimeDefault"),
    "certs mounted elsewhere": (lambda o: _container(o, "passkit-signer")["volumeMounts"][-1]
                                .update(mountPath="/certs"), "no volume mounted at CERTS_DIR"),
    "CERTS_DIR elsewhere": (lambda o: _set_env(_container(o, "passkit-pusher"), "CERTS_DIR", "/srv/certs"),
                            "no volume mounted at CERTS_DIR /srv/certs"),
    "key projected under another name": (lambda o: _cert_items(o, "passkit-pusher")[1]
                                         .update(path="pass.com.example.concert/key.pem"), "is not projected as"),
    "signer and pusher differ": (lambda o: [it.update(path=it["path"].replace("concert", "other"))
                                            for it in _cert_items(o, "passkit-signer")],
                                 "signer and pusher project different pass types"),
    "no pass type": (lambda o: _pod(o, "passkit-signer")["volumes"][-1]["projected"].update(sources=[]),
                     "no pass type is projected"),
    "HPA targets a missing Deployment": (lambda o: _find(o, "HorizontalPodAutoscaler", "passkit-pusher")["spec"]
                                         ["scaleTargetRef"].update(name="passkit-pushr"), "which does not exist"),
    "HPA min above max": (lambda o: _find(o, "HorizontalPodAutoscaler", "passkit-api")["spec"]
                          .update(minReplicas=20), "minReplicas 20"),
    "no HPA for the pusher": (lambda o: o.remove(_find(o, "HorizontalPodAutoscaler", "passkit-pusher")),
                              "passkit-pusher: no HorizontalPodAutoscaler"),
    "PDB selects nothing": (lambda o: _find(o, "PodDisruptionBudget", "passkit-signer")["spec"]["selector"]
                            ["matchLabels"].update({"app.kubernetes.io/name": "signer"}), "selects no pods"),
    "PDB blocks every eviction": (lambda o: _find(o, "PodDisruptionBudget", "passkit-api")["spec"]
                                  .update(minAvailable=2) or
                                  _find(o, "PodDisruptionBudget", "passkit-api")["spec"].pop("maxUnavailable"),
                                  "no pod could ever be evicted"),
    "no PDB for the api": (lambda o: o.remove(_find(o, "PodDisruptionBudget", "passkit-api")),
                           "passkit-api: no PodDisruptionBudget"),
    "Service selects nothing": (lambda o: _find(o, "Service", "passkit-api")["spec"]["selector"]
                                .update({"app.kubernetes.io/name": "api"}), "selects no pods"),
    "Service targets a missing port": (lambda o: _find(o, "Service", "passkit-signer")["spec"]["ports"][0]
                                       .update(targetPort="metrics"), "targetPort metrics is not a port"),
    "SIGNER_URL wrong port": (lambda o: _configmap(o)["data"].update(SIGNER_URL="http://passkit-signer:8080"),
                              "no Service passkit-signer with port 8080"),
    "REDIS_URL with TLS": (lambda o: _configmap(o)["data"].update(REDIS_URL="rediss://redis:6379/0"),
                           "rediss:// is not supported"),
    "signer listens on loopback": (lambda o: _set_env(_container(o, "passkit-signer"), "SIGNER_LISTEN",
                                                      "127.0.0.1:8081"), "not every interface"),
    "api listens on another port": (lambda o: _set_env(_container(o, "passkit-api"), "API_LISTEN", "0.0.0.0:9000"),
                                    "port 9000 is not a containerPort"),
    "api without preStop": (lambda o: _container(o, "passkit-api").pop("lifecycle"), "no preStop sleep"),
    "pusher grace too short": (lambda o: _pod(o, "passkit-pusher").update(terminationGracePeriodSeconds=10),
                               "terminationGracePeriodSeconds 10 < 40"),
    "ADMIN_TOKEN literal": (lambda o: [e.update(value="0123456789abcdef") or e.pop("valueFrom")
                                       for e in _container(o, "passkit-api")["env"] if e["name"] == "ADMIN_TOKEN"],
                            "ADMIN_TOKEN is a literal value"),
    "unknown Secret referenced": (lambda o: [e["valueFrom"]["secretKeyRef"].update(name="passkit-tokenz")
                                             for e in _container(o, "passkit-api")["env"]
                                             if e["name"] == "ADMIN_TOKEN"], "Secret passkit-tokenz is not defined"),
    "readyz probe on /healthz": (lambda o: _container(o, "passkit-signer")["readinessProbe"]["httpGet"]
                                 .update(path="/healthz"), "readinessProbe is not an httpGet of /readyz"),
    "no scrape annotations": (lambda o: _find(o, "Deployment", "passkit-pusher")["spec"]["template"]["metadata"]
                              .pop("annotations"), "no prometheus.io scrape annotations"),
    "namespace in the base": (lambda o: _find(o, "Service", "passkit-api")["metadata"].update(namespace="prod"),
                              "the base sets a namespace"),
}
DEV_MUTATIONS = {
    "dev Secret missing": (lambda o: o.remove(_find(o, "Secret", "passkit-passtype-concert")),
                           "Secret passkit-passtype-concert is not defined"),
    "dev Secret key missing": (lambda o: _find(o, "Secret", "passkit-dev-ca")["stringData"].pop("wwdr.pem"),
                               "has no key wwdr.pem"),
    "dev tokens Secret missing": (lambda o: o.remove(next(x for x in o if x["kind"] == "Secret" and
                                                          x["metadata"]["name"].startswith("passkit-tokens"))),
                                  "is not defined"),
    "dev APNS_URL names no Service": (lambda o: _configmap(o)["data"].update(APNS_URL="https://apns:8443"),
                                      "APNS_URL names no Service apns"),
    "dev APNS_CA_FILE not mounted": (lambda o: _configmap(o)["data"].update(APNS_CA_FILE="/etc/ssl/dev/root.pem"),
                                     "is not on a mounted volume"),
    "dev REDIS_URL names no Service": (lambda o: _configmap(o)["data"]
                                       .update(REDIS_URL="redis://redis-master:6379/0"),
                                       "REDIS_URL names no Service redis-master"),
    "dev stand-in without probes": (lambda o: _find(o, "Deployment", "apns-standin")["spec"]["template"]["spec"]
                                    ["containers"][0].pop("readinessProbe"), "no readinessProbe"),
    "dev redis without headless Service": (lambda o: o.remove(_find(o, "Service", "redis-headless")),
                                           "is not a headless Service"),
    "dev redis as root": (lambda o: _find(o, "StatefulSet", "redis")["spec"]["template"]["spec"]["securityContext"]
                          .update(runAsUser=0), "runAsUser is not set to a non-root uid"),
}


def self_test(base, dev):
    bad = 0
    for objs, mode in ((base, "base"), (dev, "dev")):
        if check(objs, mode):
            print(f"self-test: the unchanged {mode} rendering already fails")
            bad += 1
    cases = [(n, f, base, "base") for n, f in MUTATIONS.items()] + \
            [(n, f, dev, "dev") for n, f in DEV_MUTATIONS.items()]
    for name, (mutate, expected), objs, mode in cases:
        broken = copy.deepcopy(objs)
        mutate(broken)
        failures = check(broken, mode)
        hit = [f for f in failures if expected in f]
        if hit:
            print(f"ok   broken ({name}) -> {hit[0]}")
        else:
            print(f"FAIL broken ({name}): expected a failure with {expected!r}, got {failures or 'none'}")
            bad += 1
    print(f"self-test: {len(cases) - bad} of {len(cases)} broken renderings caught")
    return 1 if bad else 0


def main(argv):
    if len(argv) == 4 and argv[1] == "--self-test":
        return self_test(load(argv[2]), load(argv[3]))
    if len(argv) == 4 and argv[1] == "--mode" and argv[2] in ("base", "dev"):
        failures = check(load(argv[3]), argv[2])
        for f in failures:
            print(f"FAIL {f}")
        print(f"{argv[2]}: {'ok, every rule holds' if not failures else f'{len(failures)} rule(s) broken'}")
        return 1 if failures else 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
