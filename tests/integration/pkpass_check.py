"""Checks a .pkpass with tools we did not write: Python's zipfile and Info-ZIP's `unzip -l` for the
archive, hashlib for the manifest, and `openssl cms -verify` for the signature; then with our own reader
(build/bin/pkpass-inspect, common/pkpass_reader.c), which must call the bundle "valid" too."""
import hashlib
import io
import json
import os
import subprocess
import tempfile
import zipfile

from harness import BIN


def open_bundle(data):
    """Returns {name: bytes} of the archive's entries."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.testzip() is None
        return {n: z.read(n) for n in z.namelist()}


def check_manifest(files):
    """The manifest lists the SHA-1 of every file but itself and the signature; returns it."""
    manifest = json.loads(files["manifest.json"])
    expected = {n: hashlib.sha1(b).hexdigest() for n, b in files.items() if n not in ("manifest.json", "signature")}
    assert manifest == expected, (manifest, expected)
    return manifest


def unzip_listing(data):
    """The entry names `unzip -l` prints for the archive, in its order."""
    with tempfile.NamedTemporaryFile(suffix=".pkpass") as f:
        f.write(data)
        f.flush()
        p = subprocess.run(["unzip", "-l", f.name], capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", (p.returncode, p.stderr, p.stdout)
    # "  Length      Date    Time    Name", a dashed line, one line per entry, a dashed line, the totals
    lines = p.stdout.splitlines()
    dashes = [i for i, l in enumerate(lines) if l.startswith("---------")]
    assert len(dashes) == 2, p.stdout
    return [l.split(None, 3)[3] for l in lines[dashes[0] + 1:dashes[1]]]


def check_listing(data, manifest):
    """unzip -l lists exactly the manifest's files, manifest.json and signature, each once."""
    names = unzip_listing(data)
    assert sorted(names) == sorted(list(manifest) + ["manifest.json", "signature"]), (names, sorted(manifest))


def verify_signature(files, ca_file):
    """openssl cms -verify of the detached signature over manifest.json against ca_file; returns the
    printed CMS structure (for checking signingTime and the embedded certificates)."""
    with tempfile.TemporaryDirectory() as d:
        for n in ("manifest.json", "signature"):
            with open(os.path.join(d, n), "wb") as f:
                f.write(files[n])
        v = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in",
                            os.path.join(d, "signature"), "-content", os.path.join(d, "manifest.json"),
                            "-CAfile", ca_file, "-purpose", "any", "-out", os.devnull],
                           capture_output=True, text=True)
        assert v.returncode == 0 and "Verification successful" in v.stderr, v.stderr
        p = subprocess.run(["openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in",
                            os.path.join(d, "signature")], capture_output=True, text=True, check=True)
        return p.stdout


def inspect(data, ca_file):
    """The report of pkpass-inspect on the bundle, trusting ca_file (see tools/pkpass-inspect/README.md)."""
    with tempfile.NamedTemporaryFile(suffix=".pkpass") as f:
        f.write(data)
        f.flush()
        p = subprocess.run([os.path.join(BIN, "pkpass-inspect"), "--compact", "--ca", ca_file, f.name],
                           capture_output=True, text=True)
    assert p.returncode in (0, 1), (p.returncode, p.stderr)
    return json.loads(p.stdout)


def check_reader(data, ca_file, pass_json):
    """Our reader's verdict: "valid", no problem and no warning, and the details a signer must get right."""
    r = inspect(data, ca_file)
    assert (r["verdict"], r["problems"], r["warnings"]) == ("valid", [], []), r
    sig = r["signature"]
    assert sig["signingTime"] is not None and sig["contentVerified"] and sig["issuerEmbedded"], sig
    assert sig["signer"]["uid"] == pass_json["passTypeIdentifier"], sig["signer"]
    assert sig["signer"]["teamIdentifier"] == pass_json["teamIdentifier"], sig["signer"]
    assert [c["wwdr"] for c in sig["certificates"] if not c["signer"]] == ["G4"], sig["certificates"]
    assert r["manifest"]["digest"] == "sha1" and r["ignored"] == [], r["manifest"]
    return r


def check_bundle(data, ca_file, wwdr_subject_fragment=None):
    files = open_bundle(data)
    check_listing(data, check_manifest(files))
    printed = verify_signature(files, ca_file)
    assert "signingTime" in printed, "no signingTime attribute"
    if wwdr_subject_fragment:
        assert wwdr_subject_fragment in printed, "WWDR intermediate not embedded"
    pass_json = json.loads(files["pass.json"])
    check_reader(data, ca_file, pass_json)
    return files, pass_json
