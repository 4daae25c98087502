#!/usr/bin/env bash
# System packages the end-to-end tests drive for real: PostgreSQL (review queue on a shared
# database), Chromium (the UI's browser tests, driven by Playwright; Playwright's own browser
# download does not work offline), HAProxy and Prometheus with promtool (`hybrid cluster`, the
# alert-rule tests) and strace (the test that nothing leaves the machine). Installed from Debian's
# packages when missing; nothing is started here (tests start their own throw-away servers on free
# loopback ports).
set -euo pipefail
missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)
[[ -x /usr/bin/prometheus && -x /usr/bin/promtool ]] || missing+=(prometheus)
[[ -x /usr/bin/strace ]] || missing+=(strace)
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "test-services: please install: ${missing[*]} (sudo apt-get install -y ${missing[*]})" >&2
    exit 1
  fi
  echo "test-services: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
    || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
fi
echo "test-services: ready"
