#!/usr/bin/env bash
# `make messages` and the catalog-completeness test run Django's makemessages, which needs xgettext
# (Debian's gettext package). Serving Chinese does not: the .mo files are compiled by Babel.
# Install gettext when it is missing and we are allowed to.
set -euo pipefail
if command -v xgettext >/dev/null 2>&1 && command -v msgmerge >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[computeflow] installing Debian's gettext for the message catalogs"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq gettext >/dev/null
  exit 0
fi
echo "[computeflow] gettext is missing (xgettext): install it (apt-get install gettext)." >&2
echo "[computeflow] The catalog-completeness test will fail without it." >&2
exit 0
