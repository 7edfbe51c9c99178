#!/usr/bin/env bash
# Rebuild the status page's vendored assets in appliance/data/static/ (a maintainer's tool;
# the unit never runs it). The page must work with no internet, so the charting library and
# the Urdu font are served by the unit itself, from these files.
#
#   uPlot.iife.min.js, uPlot.min.css, LICENSE.uPlot   npm pack uplot@$UPLOT (MIT)
#   NotoNastaliqUrdu-Regular.woff2, OFL.txt            Debian's fonts-noto-core, subset to
#                                                      the Arabic-script blocks (OFL-1.1)
#
# Needs: npm, apt-get (Debian 12), python3 -m venv. Run from the repository's root.
set -euo pipefail
UPLOT=1.6.32
FONTTOOLS=4.68.0
BROTLI=1.2.1
out="$(pwd)/appliance/data/static"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"

npm pack --silent "uplot@$UPLOT" >/dev/null
tar xzf "uplot-$UPLOT.tgz"
cp package/dist/uPlot.iife.min.js package/dist/uPlot.min.css "$out/"
cp package/LICENSE "$out/LICENSE.uPlot"

apt-get download fonts-noto-core >/dev/null
dpkg-deb -x fonts-noto-core_*.deb noto
python3 -m venv venv
venv/bin/pip install --quiet "fonttools==$FONTTOOLS" "brotli==$BROTLI"
# Arabic, Arabic Supplement, presentation forms, ZWNJ/ZWJ and the bidi marks: what Urdu text
# needs. Latin and digits come from the browser's own sans-serif (the @font-face in
# status.css has the same unicode-range), so the subset is 140 kB instead of 570 kB.
venv/bin/pyftsubset noto/usr/share/fonts/truetype/noto/NotoNastaliqUrdu-Regular.ttf \
    --unicodes="U+0600-06FF,U+0750-077F,U+08A0-08FF,U+FB50-FDFF,U+FE70-FEFF,U+200C-200F,U+25CC" \
    --layout-features='*' --flavor=woff2 --output-file="$out/NotoNastaliqUrdu-Regular.woff2"
# The OFL's full text: the copyright file's stand-alone "License: OFL-1.1" paragraph.
zcat -f noto/usr/share/doc/fonts-noto-core/copyright | awk '
    /^License: OFL-1.1$/ { getline nxt; if (nxt ~ /PREAMBLE/) { on = 1; print nxt }; next }
    on && /^License:/ { exit }
    on { print }' | sed 's/^ //; s/^\.$//' > body.txt
{ echo "Noto Nastaliq Urdu: Copyright 2010-2020 Google Inc., 2015-2020 Google LLC."
  echo "Subset of Debian fonts-noto-core's NotoNastaliqUrdu-Regular.ttf (see"
  echo "scripts/vendor-status-assets.sh). Licensed under the SIL Open Font License 1.1:"
  echo
  cat body.txt; } > "$out/OFL.txt"
ls -l "$out"
