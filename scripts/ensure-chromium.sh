#!/usr/bin/env bash
# The browser tests drive the system Chromium through Playwright (a browser download does not work
# here). Install Debian's chromium package when it is missing and we are allowed to.
set -euo pipefail
path="${CHROMIUM_PATH:-/usr/bin/chromium}"
# The journeys and the accessibility check also run in Chinese: without a CJK font their screenshots
# show boxes instead of characters. WenQuanYi Zen Hei (Debian's fonts-wqy-zenhei) is small and complete.
if ! fc-list :lang=zh 2>/dev/null | grep -q . && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[computeflow] installing a Chinese font (fonts-wqy-zenhei) for the browser tests' screenshots"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq fonts-wqy-zenhei >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq fonts-wqy-zenhei >/dev/null; }
fi
if [ -x "$path" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[computeflow] installing Debian's chromium for the browser tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
  exit 0
fi
echo "[computeflow] Chromium is missing at $path: install it (apt-get install chromium) or set CHROMIUM_PATH." >&2
echo "[computeflow] The browser tests will fail without it." >&2
exit 0
