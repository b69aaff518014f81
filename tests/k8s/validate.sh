#!/usr/bin/env bash
# tests/k8s/validate.sh: offline checks of the Kubernetes manifests in docker/k8s (no cluster needed).
#
#   1. docker/k8s/overlays/dev/make-certs.sh, so that the dev overlay renders on a fresh clone;
#   2. ../shared/tools/k8s-validate (beside the repository) on the base and the dev overlay: renders
#      them with `kubectl kustomize` and validates every object against the Kubernetes OpenAPI schemas;
#   3. tests/k8s/check_manifests.py on both renderings: our own rules (probes, resources, non-root,
#      the certificates at CERTS_DIR, HPA targets, PDB selectors, Service ports, URLs...), then its
#      self-test, which breaks the renderings one way at a time and expects each to be caught.
#
# Exit 0 when all pass, 1 on any failure, 77 (skipped) when k8s-validate or kubectl is not there.
# Run from anywhere: paths are taken relative to this script.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
tool=$repo/../shared/tools/k8s-validate
if [ ! -x "$tool" ]; then
  echo "SKIP: $tool not found (it lives in shared/ beside the repository); manifests not validated"
  exit 77
fi
if ! command -v kubectl >/dev/null 2>&1; then
  echo "SKIP: kubectl is not installed (k8s-validate renders with kubectl kustomize); manifests not validated"
  exit 77
fi
cd "$repo"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== dev certificates (docker/k8s/overlays/dev/make-certs.sh)"
docker/k8s/overlays/dev/make-certs.sh

echo "== schema validation ($tool)"
"$tool" docker/k8s/base docker/k8s/overlays/dev

# YAML documents on stdin -> a JSON list of objects on stdout. PyYAML when Python has it, else the
# yaml package k8s-validate has just installed for itself.
to_json() {
  if python3 -c 'import yaml' 2>/dev/null; then
    python3 -c 'import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)'
  else
    node -e '
      const YAML = require(process.argv[1]);
      const docs = YAML.parseAllDocuments(require("fs").readFileSync(0, "utf8")).map(d => d.toJSON()).filter(Boolean);
      process.stdout.write(JSON.stringify(docs));' "${K8S_VALIDATE_CACHE:-/var/cache/k8s-validate}/node_modules/yaml"
  fi
}

echo "== our own rules (tests/k8s/check_manifests.py)"
rc=0
for mode in base dev; do
  dir=docker/k8s/base
  [ "$mode" = dev ] && dir=docker/k8s/overlays/dev
  kubectl kustomize "$dir" > "$work/$mode.yaml"
  to_json < "$work/$mode.yaml" > "$work/$mode.json"
  python3 tests/k8s/check_manifests.py --mode "$mode" "$work/$mode.json" || rc=1
done
python3 tests/k8s/check_manifests.py --self-test "$work/base.json" "$work/dev.json" || rc=1
if [ "$rc" -ne 0 ]; then
  echo "k8s manifests: FAILED"
  exit 1
fi
echo "k8s manifests: all checks passed"
