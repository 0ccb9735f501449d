#!/usr/bin/env bash
# Check a built book's internal links and anchors (#fragments) with linkchecker,
# on the local files only: every page, image, script and stylesheet that the pages
# link to must exist, and every #anchor must exist in its target page.
# External URLs (http, https, mailto, ...) are NOT fetched (CI has no internet):
# linkchecker only checks their syntax.
#
# Usage: bash scripts/check_site.sh [HTML folder, default book/_build/html]
# linkchecker does not check links within a page (href="#x"); a few lines of Python
# below do, first.
# Exit status: 0 when every internal link and anchor resolves, non-zero otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=${1:-book/_build/html}
[ -f "$SITE/index.html" ] || { echo "check_site: no $SITE/index.html (build the book first)" >&2; exit 2; }
LINKCHECKER=${LINKCHECKER:-.venv/bin/linkchecker}

echo "check_site: anchors within each page (href=\"#...\")"
in_page=0
"${PYTHON:-.venv/bin/python}" - "$SITE" <<'PYEOF' || in_page=$?
import html.parser, pathlib, sys
class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(); self.ids, self.links = set(), []
    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.ids.update(attrs[k] for k in ("id", "name") if attrs.get(k))
        href = attrs.get("href") or ""
        if tag == "a" and href.startswith("#") and len(href) > 1:
            self.links.append((self.getpos()[0], href[1:]))
missing = 0
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.html")):
    page = Page(); page.feed(path.read_text(encoding="utf-8"))
    for line, anchor in page.links:
        if anchor not in page.ids:
            missing += 1; print(f"{path}:{line}: anchor #{anchor} not found in its page")
sys.exit(1 if missing else 0)
PYEOF

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
links=0
"$LINKCHECKER" --config "$work/linkcheckerrc" --no-status --no-robots \
  --output=text "file://$site/index.html" || links=$?
if [ "$in_page" -ne 0 ] || [ "$links" -ne 0 ]; then
  echo "check_site: FAILED (anchors within pages: exit $in_page, linkchecker: exit $links)" >&2
  exit 1
fi
echo "check_site: every internal link and anchor resolves"
