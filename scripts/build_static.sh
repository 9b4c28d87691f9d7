#!/usr/bin/env bash
# Vendor the portal pages' browser libraries (pdf.js, signature_pad) from npm at the
# versions pinned in services/portal/frontend/package-lock.json into the package's
# static files.  The result is committed, so CI and a plain `pip install` need no npm;
# scripts/bootstrap.sh runs this only when the vendored files are missing or the lock
# changed (vendor/VERSIONS records the lock's SHA-256).  Nothing is loaded from a CDN.
set -euo pipefail
cd "$(dirname "$0")/.."

frontend=services/portal/frontend
vendor=services/portal/signet/portal/pages/static/vendor

command -v npm >/dev/null || { echo "build_static: npm is needed to vendor the pages' libraries" >&2; exit 1; }
(cd "$frontend" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)

modules=$frontend/node_modules
rm -rf "$vendor"
mkdir -p "$vendor/pdfjs/standard_fonts" "$vendor/signature_pad"
cp "$modules/pdfjs-dist/build/pdf.min.mjs" "$modules/pdfjs-dist/build/pdf.worker.min.mjs" \
    "$modules/pdfjs-dist/LICENSE" "$vendor/pdfjs/"
cp "$modules/pdfjs-dist/standard_fonts/"* "$vendor/pdfjs/standard_fonts/"
cp "$modules/signature_pad/dist/signature_pad.min.js" "$modules/signature_pad/LICENSE" \
    "$vendor/signature_pad/"
# the source maps are not vendored: drop the comments that would ask for them
sed -i '/^\/\/# sourceMappingURL=/d' "$vendor"/pdfjs/*.mjs "$vendor"/signature_pad/*.js

version() { node -p "require('./$modules/$1/package.json').version"; }
{
    echo "pdfjs-dist $(version pdfjs-dist) Apache-2.0"
    echo "signature_pad $(version signature_pad) MIT"
    echo "package-lock.json $(sha256sum "$frontend/package-lock.json" | cut -d' ' -f1)"
} >"$vendor/VERSIONS"
echo "build_static: vendored $(tr '\n' ';' <"$vendor/VERSIONS")"
