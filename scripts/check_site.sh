#!/usr/bin/env bash
# Check a built book's internal links and anchors (#fragments) with linkchecker,
# on the local files only: every page, image, script and stylesheet that the pages
# link to must exist, and every #anchor must exist in its target page.
# External URLs (http, https, mailto, ...) are NOT fetched (CI has no internet):
# linkchecker only checks their syntax.
#
# Usage: bash scripts/check_site.sh [HTML folder, default book/_build/html]
# Exit status: 0 when every internal link and anchor resolves, non-zero otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=${1:-book/_build/html}
[ -f "$SITE/index.html" ] || { echo "check_site: no $SITE/index.html (build the book first)" >&2; exit 2; }
LINKCHECKER=${LINKCHECKER:-.venv/bin/linkchecker}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# linkchecker checks anchors only through its AnchorCheck plugin, which needs a config file.
cat >"$work/linkcheckerrc" <<'EOF'
[checking]
threads=4
[filtering]
# anything that is not a local file: syntax only, never fetched
ignore=
  ^(https?|ftp|mailto|data|javascript|tel):
[output]
# warnings stay on: a missing #anchor is a warning (url-anchor-not-found), and any
# warning makes linkchecker exit 1
warnings=1
[AnchorCheck]
EOF

site=$(cd "$SITE" && pwd)
if [ "$(id -u)" -eq 0 ]; then
  # linkchecker run by root switches to the user nobody, who may not be allowed into
  # the checkout (CI runs as root): it checks a world-readable copy instead.
  chmod 755 "$work"
  cp -R "$site" "$work/site"
  chmod -R a+rX "$work"
  echo "check_site: checking a copy of $site in $work/site (linkchecker runs as nobody under root)"
  site=$work/site
fi

# --no-robots: file URLs have no robots.txt; the start page is the absolute file URL,
# and links leaving the site folder count as external (syntax only).
"$LINKCHECKER" --config "$work/linkcheckerrc" --no-status --no-robots \
  --output=text "file://$site/index.html"
