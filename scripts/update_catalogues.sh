#!/usr/bin/env bash
# After changing a page's text: extract the strings of the portal pages' templates and
# merge them into the en / es / zh_CN catalogues (new strings arrive untranslated, and
# tests/portal/pages/test_catalogues.py fails until they are translated).
set -euo pipefail
cd "$(dirname "$0")/../services/portal/signet/portal/pages"
pybabel=../../../../../.venv/bin/pybabel
pot=$(mktemp --suffix=.pot)
trap 'rm -f "$pot"' EXIT
"$pybabel" -q extract -F babel.cfg -o "$pot" .
"$pybabel" -q update -i "$pot" -d locale -D messages --no-fuzzy-matching --ignore-obsolete --width=100
