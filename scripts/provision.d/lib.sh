# provision.d/lib.sh: output and file helpers for scripts/provision.sh (sourced by it).
#
# Every change to the target goes through change(), system(), ensure_dir(), install_file()
# or install_kept(), which is what makes --dry-run and --root trustworthy: they alone decide
# whether something is done, described, or skipped in a staging tree.
# shellcheck shell=bash

die() {
    printf 'provision.sh: %s\n' "$*" >&2
    exit 1
}

cleanup() {
    local f
    for f in "${TMP_FILES[@]+"${TMP_FILES[@]}"}"; do
        rm -rf -- "$f"
    done
}
trap cleanup EXIT

# --- output -----------------------------------------------------------------------------

step() {
    STEP=$((STEP + 1))
    printf '\n[%d] %s\n' "$STEP" "$*"
}

note() {
    printf '    %s\n' "$*"
}

quote() {
    local out
    printf -v out '%q ' "$@"
    printf '%s' "${out% }"
}

# A change to the target tree: done, or only described under --dry-run.
change() {
    CHANGED=1
    if ((DRY_RUN)); then
        note "would run: $(quote "$@")"
    else
        note "run: $(quote "$@")"
        "$@"
    fi
}

# A command acting on the running system (apt, useradd, systemctl, udevadm, mount):
# skipped in a staging tree, where it would act on this machine instead.
system() {
    if ((DRY_RUN)); then
        note "would run: $(quote "$@")"
    elif [[ -n $ROOT ]]; then
        note "skipped in a staging tree: $(quote "$@")"
    else
        note "run: $(quote "$@")"
        "$@"
    fi
}

# --- paths, owners, files ---------------------------------------------------------------

# The target path of an absolute path: itself, or under the staging tree.
target() {
    printf '%s%s' "$ROOT" "$1"
}

user_exists() {
    getent passwd "$1" >/dev/null 2>&1
}

# OWNER:GROUP for chown, or empty when it cannot be applied here: not root, or the user
# does not exist (yet, under --dry-run; or on the build machine of a staging tree).
owner_spec() {
    local user=$1 group=$2
    if ((EUID != 0)) || ! user_exists "$user" || ! getent group "$group" >/dev/null 2>&1; then
        return 0
    fi
    printf '%s:%s' "$user" "$group"
}

# Says whether PATH already has MODE (octal, like 0640) and OWNER (user:group or empty).
has_mode_owner() {
    local path=$1 mode=$2 owner=$3 actual
    actual=$(stat -c '%a' -- "$path")
    [[ $((8#$actual)) -eq $((8#$mode)) ]] || return 1
    [[ -z $owner ]] && return 0
    [[ $(stat -c '%U:%G' -- "$path") == "$owner" ]]
}

# Explains an owner that could not be set (see owner_spec), in full the first time.
owner_note() {
    local user=$1 group=$2 owner=$3
    [[ -z $owner ]] || return 0
    if ((DRY_RUN)) && ! { user_exists "$user" && getent group "$group" >/dev/null 2>&1; }; then
        note "(owner $user:$group once the user exists)"
    elif ((OWNER_EXPLAINED)); then
        note "(owner $user:$group not set)"
    else
        OWNER_EXPLAINED=1
        note "(owner $user:$group not set: that user or group does not exist on this machine, or this is not run as root)"
    fi
}

ensure_dir() {
    local path=$1 mode=$2 user=$3 group=$4 dest owner
    dest=$(target "$path")
    owner=$(owner_spec "$user" "$group")
    if [[ -d $dest ]] && has_mode_owner "$dest" "$mode" "$owner"; then
        note "unchanged: $path"
        return 0
    fi
    change install -d -m "$mode" -- "$dest"
    if [[ -n $owner ]]; then
        change chown "$owner" -- "$dest"
    fi
    owner_note "$user" "$group" "$owner"
}

# Installs SRC as the absolute path DEST (under the staging tree), replacing it atomically
# when its content, mode or owner differ. Sets CHANGED.
install_file() {
    local src=$1 path=$2 mode=$3 user=$4 group=$5 dest owner tmp
    dest=$(target "$path")
    owner=$(owner_spec "$user" "$group")
    if [[ -f $dest ]] && cmp -s -- "$src" "$dest" && has_mode_owner "$dest" "$mode" "$owner"; then
        note "unchanged: $path"
        return 0
    fi
    CHANGED=1
    if ((DRY_RUN)); then
        note "would install ${src#"$SRC_DIR"/} as $path (mode $mode${owner:+, owner $owner})"
        owner_note "$user" "$group" "$owner"
        return 0
    fi
    mkdir -p -- "$(dirname -- "$dest")"
    tmp=$(mktemp "$(dirname -- "$dest")/.$(basename -- "$dest").XXXXXX")
    TMP_FILES+=("$tmp")
    install -m "$mode" -T -- "$src" "$tmp"
    if [[ -n $owner ]]; then
        chown "$owner" -- "$tmp"
    fi
    mv -fT -- "$tmp" "$dest"
    note "installed: $path (mode $mode${owner:+, owner $owner})"
    owner_note "$user" "$group" "$owner"
}

# Like install_file, but a DEST that exists and differs is the technician's: it stays, and
# the new default goes beside it as DEST.dist.
install_kept() {
    local src=$1 path=$2 mode=$3 user=$4 group=$5 dest
    dest=$(target "$path")
    if [[ -f $dest ]] && ! cmp -s -- "$src" "$dest"; then
        note "kept: $path differs from the shipped default and is never overwritten"
        local owner
        owner=$(owner_spec "$user" "$group")
        if ! has_mode_owner "$dest" "$mode" "$owner"; then
            change chmod "$mode" -- "$dest"
            if [[ -n $owner ]]; then
                change chown "$owner" -- "$dest"
            fi
        fi
        install_file "$src" "$path.dist" "$mode" "$user" "$group"
        note "compare and merge by hand: diff -u $path $path.dist"
        return 0
    fi
    install_file "$src" "$path" "$mode" "$user" "$group"
}

# Writes CONTENT to PATH (under the staging tree) if it differs, keeping the original as
# PATH.nsor-bak the first time.
replace_boot_file() {
    local path=$1 content=$2 dest tmp
    dest=$(target "$path")
    if [[ $(cat -- "$dest") == "$content" ]]; then
        note "unchanged: $path"
        return 0
    fi
    CHANGED=1
    if ((DRY_RUN)); then
        note "would rewrite $path (original kept as $path.nsor-bak)"
        return 0
    fi
    [[ -e $dest.nsor-bak ]] || cp -p -- "$dest" "$dest.nsor-bak"
    tmp=$(mktemp "$dest.XXXXXX")
    TMP_FILES+=("$tmp")
    printf '%s\n' "$content" >"$tmp"
    mv -fT -- "$tmp" "$dest"
    note "rewritten: $path (original in $path.nsor-bak)"
}
