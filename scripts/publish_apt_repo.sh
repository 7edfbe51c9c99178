#!/usr/bin/env bash
# publish_apt_repo.sh: add .deb files to the fleet's signed apt repository, a plain
# directory tree that any static web server can serve (docs/packaging.md, "The fleet's apt
# repository"). Units then update with apt-get update && apt-get upgrade, or
# unattended-upgrades (packaging/apt/).
#
#   scripts/publish_apt_repo.sh --repo DIR --key KEYID [--suite stable] DEB...
#
# Old releases stay in the pool and in the index, so `apt-get install nsor-appliance=V`
# can roll a unit back. Signing uses gpg (GNUPGHOME selects the keyring): InRelease
# (clear-signed) and Release.gpg (detached), as apt expects.
set -euo pipefail

REPO=""
KEY=""
SUITE=stable
COMPONENT=main
ORIGIN=NSOR
LABEL="NSOR fleet"
DEBS=()

die() {
    printf 'publish_apt_repo.sh: %s\n' "$*" >&2
    exit 1
}

while (($#)); do
    case $1 in
        --repo) REPO=$2; shift ;;
        --key) KEY=$2; shift ;;
        --suite) SUITE=$2; shift ;;
        -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) DEBS+=("$1") ;;
    esac
    shift
done
[[ -n $REPO ]] || die "--repo DIR is required"
[[ -n $KEY ]] || die "--key KEYID is required (gpg --list-secret-keys)"
command -v apt-ftparchive >/dev/null || die "apt-ftparchive not found: apt-get install apt-utils"
command -v gpg >/dev/null || die "gpg not found: apt-get install gnupg"

mkdir -p "$REPO"
cd "$REPO"
for deb in "${DEBS[@]}"; do
    [[ -f $deb ]] || die "$deb: no such file"
    name=$(dpkg-deb --field "$deb" Package)
    pool="pool/$COMPONENT/${name:0:1}/$name"
    mkdir -p "$pool"
    cp -f -- "$deb" "$pool/"
    echo "added $pool/$(basename -- "$deb")"
done

ARCHES=()
for deb in pool/*/*/*/*.deb; do
    [[ -e $deb ]] || die "the pool is empty: give at least one .deb"
    ARCHES+=("$(dpkg-deb --field "$deb" Architecture)")
done
mapfile -t ARCHES < <(printf '%s\n' "${ARCHES[@]}" | sort -u)

DIST=dists/$SUITE
rm -rf "$DIST"
for arch in "${ARCHES[@]}"; do
    dir=$DIST/$COMPONENT/binary-$arch
    mkdir -p "$dir"
    # Paths in the index are relative to the repository's top, where sources.list points.
    apt-ftparchive --arch "$arch" packages pool >"$dir/Packages"
    gzip -9nk "$dir/Packages"
done
apt-ftparchive \
    -o "APT::FTPArchive::Release::Origin=$ORIGIN" \
    -o "APT::FTPArchive::Release::Label=$LABEL" \
    -o "APT::FTPArchive::Release::Suite=$SUITE" \
    -o "APT::FTPArchive::Release::Codename=$SUITE" \
    -o "APT::FTPArchive::Release::Architectures=${ARCHES[*]}" \
    -o "APT::FTPArchive::Release::Components=$COMPONENT" \
    -o "APT::FTPArchive::Release::Description=NSOR SMS appliance releases" \
    release "$DIST" >"$DIST/Release.new"
mv "$DIST/Release.new" "$DIST/Release"
gpg --batch --yes --local-user "$KEY" --clearsign -o "$DIST/InRelease" "$DIST/Release"
gpg --batch --yes --local-user "$KEY" --armor --detach-sign -o "$DIST/Release.gpg" "$DIST/Release"
gpg --batch --yes --export "$KEY" >nsor-fleet.gpg
echo "published $SUITE (${ARCHES[*]}) in $PWD; the key for units: $PWD/nsor-fleet.gpg"
