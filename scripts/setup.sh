#!/usr/bin/env bash
# Installs what shoal needs on a Debian machine, as root: apt packages, a venv in .venv,
# shoal and its test dependencies. Idempotent; fast when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for bin in nft:nftables ip:iproute2 curl:curl conntrack:conntrack runc:runc skopeo:skopeo umoci:umoci docker-registry:docker-registry openssl:openssl python3:python3; do
  command -v "${bin%%:*}" >/dev/null 2>&1 || need_apt+=("${bin##*:}")
done
# images for tests are built from the static busybox (it runs in any root filesystem)
dpkg -s busybox-static >/dev/null 2>&1 || need_apt+=(busybox-static)
# the kernel mesh runs nft in-process through libnftables' Python binding (shoal/mesh/nftlib.py
# loads it from Debian's dist-packages, which the venv does not see); without it, `nft -f -`
dpkg -s python3-nftables >/dev/null 2>&1 || need_apt+=(python3-nftables)
# `--init`: the static tini is bind-mounted into containers as /sbin/docker-init
dpkg -s tini >/dev/null 2>&1 || need_apt+=(tini)
# headless Chromium for the dashboard test (tests/unit/httpapi/test_observe_dashboard.py);
# large (~250 MB installed) but one apt package, installed once per machine
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The docker CLI, for the docker-compatibility tests. Debian's docker.io package also carries
# dockerd, whose installation would start it and rewrite the root namespace's firewall: only
# the client binary is taken out of the package.
if ! command -v docker >/dev/null 2>&1; then
  docker_tmp=$(mktemp -d)
  chmod 0755 "$docker_tmp"  # apt's sandbox user writes the download there
  if ! (cd "$docker_tmp" && apt-get download -qq docker.io >/dev/null 2>&1); then
    apt-get update -qq
    (cd "$docker_tmp" && apt-get download -qq docker.io >/dev/null)
  fi
  dpkg-deb --fsys-tarfile "$docker_tmp"/docker.io_*.deb | tar -x -C "$docker_tmp" ./usr/bin/docker
  install -m 0755 "$docker_tmp/usr/bin/docker" /usr/local/bin/docker
  rm -rf "$docker_tmp"
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import shoal, msgspec, aiohttp, pytest, ruff' >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
  # compat: the editable install is one path line in a .pth. The default finder module
  # (imported by every Python start: pathlib, importlib.util...) cost 49 M instructions,
  # more than the interpreter's own start (39 M) and 10 % of `shoal service ls`.
  .venv/bin/pip install -q -e '.[test]' --config-settings editable_mode=compat \
    || .venv/bin/pip install -q -e '.[test]'
  touch .venv/.installed
fi
