#!/usr/bin/env bash
# build_deb.sh: build nsor-appliance_<version>_<arch>.deb from this checkout, for the
# architecture of the machine that runs it (docs/packaging.md: how, why, and arm64).
#
#   scripts/build_deb.sh                 -> build/deb/nsor-appliance_<version>_<arch>.deb
#
# The package holds the code and a Python virtual environment made from a wheelhouse, so
# installing it needs no network. Only the wheelhouse is downloaded (once; it is reused,
# and --wheelhouse DIR can point at one made on another machine for offline builds).
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$(dirname "$SCRIPT_DIR")"
PKG=nsor-appliance
PREFIX=/usr/lib/$PKG
# The interpreter the venv is made with, and the one the unit has: Debian 12's python3.11
# (a venv links to its interpreter; the wheels' compiled parts are for CPython 3.11).
PYTHON=${NSOR_DEB_PYTHON:-/usr/bin/python3.11}
MAINTAINER=${NSOR_DEB_MAINTAINER:-"NSOR appliance team <appliance@nsor-appliance.invalid>"}

OUT="$SRC/build/deb"
WHEELHOUSE=""
VERSION=""

usage() {
    cat <<EOF2
Usage: scripts/build_deb.sh [--out DIR] [--wheelhouse DIR] [--version VERSION]

Builds ${PKG}_<version>_<arch>.deb (arch: this machine's, $(dpkg --print-architecture)).
  --out DIR         where the .deb goes (default build/deb)
  --wheelhouse DIR  wheels of requirements.txt; filled from the package index when
                    something is missing (default DIR/wheelhouse under --out)
  --version V       package this checkout as release V (pyproject.toml's version is
                    rewritten in the packaged copy, so --version says V too; for testing
                    upgrades). Default: pyproject.toml's version.
Needs: dpkg-dev, $PYTHON and its venv module, pip (any Python 3.11 environment).
EOF2
}

die() {
    printf 'build_deb.sh: %s\n' "$*" >&2
    exit 1
}

while (($#)); do
    case $1 in
        --out) OUT=$2; shift ;;
        --wheelhouse) WHEELHOUSE=$2; shift ;;
        --version) VERSION=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done
mkdir -p -- "$OUT"
OUT=$(cd "$OUT" && pwd)
WHEELHOUSE=${WHEELHOUSE:-$OUT/wheelhouse}
mkdir -p -- "$WHEELHOUSE"
WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd)

[[ -x $PYTHON ]] || die "$PYTHON not found: apt-get install python3.11 python3-venv"
command -v dpkg-shlibdeps >/dev/null || die "dpkg-shlibdeps not found: apt-get install dpkg-dev"
PIP=(python3 -m pip)
"${PIP[@]}" --version >/dev/null 2>&1 || PIP=("$PYTHON" -m pip)
"${PIP[@]}" --version >/dev/null 2>&1 || die "no pip: apt-get install python3-pip (or run in a venv)"

ARCH=$(dpkg --print-architecture)
[[ -n $VERSION ]] || VERSION=$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$SRC/pyproject.toml")
# PEP 440 pre-releases sort before the release in Debian only with a tilde: 1.2rc1 -> 1.2~rc1.
DEB_VERSION=$(printf '%s' "$VERSION" | sed -E 's/^([0-9.]+)[.-]?(a|b|rc|dev)/\1~\2/')
DEB="$OUT/${PKG}_${DEB_VERSION}_${ARCH}.deb"
WORK=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT
STAGE=$WORK/root
START=$SECONDS

echo "== $PKG $DEB_VERSION ($ARCH)"

# 1. The wheelhouse: offline when it already holds everything (a second build, CI's second
#    version), else filled from the package index.
if ! "${PIP[@]}" download --quiet --disable-pip-version-check --no-index --find-links "$WHEELHOUSE" \
    --only-binary=:all: --dest "$WORK/probe" -r "$SRC/requirements.txt" >/dev/null 2>&1; then
    echo "-- wheelhouse $WHEELHOUSE: fetching wheels for requirements.txt"
    "${PIP[@]}" wheel --quiet --disable-pip-version-check --wheel-dir "$WHEELHOUSE" \
        -r "$SRC/requirements.txt"
fi
rm -rf -- "$WORK/probe"

# 2. The virtual environment, made where it will live (under the staging root) and
#    installed from the wheelhouse only: what runs, and nothing else (no pip, no tests).
VENV=$STAGE$PREFIX/venv
"$PYTHON" -m venv --without-pip "$VENV"
PIP_NO_INDEX=1 "${PIP[@]}" --python "$VENV/bin/python" install --quiet --disable-pip-version-check \
    --no-index --find-links "$WHEELHOUSE" --no-compile --no-warn-script-location \
    -r "$SRC/requirements.txt"
# Paths written into the venv name the staging root: point them at the real one.
grep -rlI --null -F "$STAGE" "$VENV" | xargs -0 -r sed -i "s|$STAGE||g"
find "$VENV" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +
# The libraries' console scripts (pyserial-miniterm, pygmentize …) are not the unit's
# commands: `nsor` is.
find "$VENV/bin" -maxdepth 1 -type f ! -name activate -delete
find "$VENV" -name .gitignore -delete
rmdir --ignore-fail-on-non-empty "$VENV/include/"* "$VENV/include" 2>/dev/null || true
# Library modules that carry a "#!/usr/bin/env python" line (never run as scripts here):
# the same rewrite dh_python3 does, to Debian's interpreter.
grep -rlZ --include='*.py' -m1 '^#!.*python' "$VENV/lib" |
    xargs -0 -r sed -i -E '1s|^#!.*python[0-9.]*( .*)?$|#!/usr/bin/python3\1|'
# Stripped like every Debian binary (debug symbols are half of cryptography's size). Their
# RECORD hashes then differ; nothing checks them at run time, and pip never runs on a unit.
find "$VENV" -type f -name '*.so*' -exec strip --strip-unneeded --remove-section=.comment \
    --remove-section=.note {} +

# 3. The code (the app runs from here, as from a checkout: python -m appliance).
APP=$STAGE$PREFIX/app
mkdir -p "$APP/scripts"
tar -C "$SRC" -c --exclude=__pycache__ --exclude='*.pyc' -f - appliance firmware_config pyproject.toml |
    tar -C "$APP" -x -f -
cp -r "$SRC/scripts/provision.sh" "$SRC/scripts/provision.d" "$APP/scripts/"
if [[ $VERSION != "$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$SRC/pyproject.toml")" ]]; then
    sed -i -E "0,/^version = .*/s//version = \"$VERSION\"/" "$APP/pyproject.toml"
fi
got=$(cd "$APP" && "$VENV/bin/python" -c 'from appliance import __version__; print(__version__)')
[[ $got == "$VERSION" ]] || die "the packaged code says version $got, not $VERSION"
STATE_SCHEMA=$(cd "$APP" && "$VENV/bin/python" -c 'from appliance.state.store import STATE_SCHEMA; print(STATE_SCHEMA.current)')
REGISTRY_SCHEMA=$(cd "$APP" && "$VENV/bin/python" -c 'from appliance.registry.models import REGISTRY_SCHEMA; print(REGISTRY_SCHEMA.current)')
find "$APP" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +

# 4. How it fits into the system.
FW=$SRC/firmware_config
install -D -m 0755 "$FW/bin/nsor" "$STAGE/usr/bin/nsor"
install -D -m 0644 "$FW/nsor-appliance.service" "$STAGE/lib/systemd/system/nsor-appliance.service"
# The udev rules: a vendor file; a unit's own slot paths go in a copy of the same name in
# /etc/udev/rules.d, which replaces it (udev's rule) and which no upgrade touches.
install -D -m 0644 "$FW/99-nsor-modems.rules" "$STAGE/lib/udev/rules.d/99-nsor-modems.rules"
# The configuration is edited per unit: conffiles in /etc.
for f in appliance.toml replies.toml registry_root.json; do
    install -D -m 0644 "$FW/$f" "$STAGE/etc/nsor/$f"
done
# Vendor defaults, overridden by a file of the same name in /etc (systemd's rule).
install -D -m 0644 "$FW/journald.conf.d/nsor.conf" "$STAGE/usr/lib/systemd/journald.conf.d/nsor.conf"
install -D -m 0644 "$FW/system.conf.d/nsor-watchdog.conf" "$STAGE/usr/lib/systemd/system.conf.d/nsor-watchdog.conf"
install -D -m 0644 "$FW/modules-load.d/nsor-serial.conf" "$STAGE/usr/lib/modules-load.d/nsor-serial.conf"

DOC=$STAGE/usr/share/doc/$PKG
mkdir -p "$DOC"
cp "$SRC/README.md" "$SRC/docs/"*.md "$DOC/"
mkdir -p "$DOC/examples"
cp "$SRC/packaging/apt/"* "$DOC/examples/"
"$VENV/bin/python" "$SRC/packaging/deb/copyright.py" "$VENV" >"$DOC/copyright"
printf '%s (%s) unstable; urgency=medium\n\n  * Release %s; the changes are in the project history.\n\n -- %s  %s\n' \
    "$PKG" "$DEB_VERSION" "$VERSION" "$MAINTAINER" \
    "$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(git -C "$SRC" log -1 --format=%ct 2>/dev/null || date +%s)}")" \
    >"$DOC/changelog"
find "$DOC" -type f ! -name copyright -size +4k -exec gzip -9n {} +
gzip -9n "$DOC/changelog" 2>/dev/null || true
install -D -m 0644 "$SRC/packaging/deb/nsor.1" "$STAGE/usr/share/man/man1/nsor.1"
gzip -9n "$STAGE/usr/share/man/man1/nsor.1"

# 5. The venv's interpreter link made relative (Debian wants relative links within /usr;
#    the staged venv cannot run after this). Modes: the build machine's umask and a
#    checkout's modes must not leak in.
ln -sfn "../../../../bin/$(basename "$PYTHON")" "$VENV/bin/$(basename "$PYTHON")"
link=$(realpath -m "$PREFIX/venv/bin/$(readlink "$VENV/bin/$(basename "$PYTHON")")")
[[ $link == "$PYTHON" ]] || die "the venv's interpreter link points to $link, not $PYTHON"
find "$STAGE" -type d -exec chmod 0755 {} +
find "$STAGE" -type f -exec chmod go-w,u+rw,a+r {} +

# 6. Control files.
CONTROL=$STAGE/DEBIAN
mkdir -p "$CONTROL"
mkdir -p "$WORK/shlibs/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PKG" "$PKG" >"$WORK/shlibs/debian/control"
mapfile -d '' objects < <(find "$STAGE" -type f \( -name '*.so' -o -name '*.so.*' \) -print0)
SHLIBS=""
if ((${#objects[@]})); then
    SHLIBS=$(cd "$WORK/shlibs" && dpkg-shlibdeps -O --ignore-missing-info --warnings=0 \
        "${objects[@]}" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
fi
DEPENDS="python3.11, adduser, init-system-helpers (>= 1.54~)${SHLIBS:+, $SHLIBS}"
sed -e "s|@DEB_VERSION@|$DEB_VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@DEPENDS@|$DEPENDS|" \
    -e "s|@MAINTAINER@|$MAINTAINER|" \
    -e "s|@INSTALLED_SIZE@|$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)|" \
    "$SRC/packaging/deb/control.in" >"$CONTROL/control"
for script in preinst postinst prerm postrm; do
    sed -e "s|@DEB_VERSION@|$DEB_VERSION|" -e "s|@STATE_SCHEMA@|$STATE_SCHEMA|" \
        -e "s|@REGISTRY_SCHEMA@|$REGISTRY_SCHEMA|" "$SRC/packaging/deb/$script" >"$CONTROL/$script"
    chmod 0755 "$CONTROL/$script"
done
(cd "$STAGE" && find etc -type f | sed 's|^|/|' | sort) >"$CONTROL/conffiles"
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum) >"$CONTROL/md5sums"
chmod 0644 "$CONTROL/control" "$CONTROL/conffiles" "$CONTROL/md5sums"

# 7. The package (files owned by root whoever builds it; xz as Debian's own packages).
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
echo "-- $DEB ($(du -h "$DEB" | cut -f1), $((SECONDS - START)) s)"
