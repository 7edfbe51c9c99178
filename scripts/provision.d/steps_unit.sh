# provision.d/steps_unit.sh: the appliance's own pieces (user, data, secret, code,
# virtualenv, configuration), in the order provision.sh runs them. Sourced by provision.sh.
# shellcheck shell=bash

step_user() {
    step "Service user $SERVICE_USER (system account, group dialout for the serial ports, no login shell)"
    if ! user_exists "$SERVICE_USER"; then
        system useradd --system --user-group --groups dialout --home-dir "$DATA_DIR" \
            --no-create-home --shell /usr/sbin/nologin --comment "NSOR SMS appliance" "$SERVICE_USER"
        return 0
    fi
    if [[ " $(id -nG "$SERVICE_USER") " == *" dialout "* ]]; then
        note "exists, in group dialout"
    else
        system usermod --append --groups dialout "$SERVICE_USER"
    fi
}

# The data partition is mounted from fstab rather than by a .mount unit: technicians know
# fstab, and `findmnt --verify` checks it. `nofail` keeps a unit whose partition died
# bootable (and reachable over SSH); the service's RequiresMountsFor= then keeps it from
# starting on the empty directory underneath.
step_data_partition() {
    step "Data partition labelled $DATA_LABEL, mounted on $DATA_DIR"
    local dev fstype fstab line
    dev=$(blkid -L "$DATA_LABEL" 2>/dev/null) || dev=""
    if [[ -z $dev ]]; then
        note "none found: the data stays on the root filesystem"
        return 0
    fi
    fstype=$(blkid -s TYPE -o value -- "$dev" 2>/dev/null) || fstype=""
    case $fstype in
        ext4 | ext3 | xfs | btrfs | f2fs) ;;
        *) die "$dev ($DATA_LABEL) has filesystem '${fstype:-unknown}'; SQLite and the secret's mode 0600 need a Linux filesystem: back up its files, then 'mkfs.ext4 -L $DATA_LABEL $dev' (erases it) and re-run" ;;
    esac
    note "found $dev ($fstype)"
    fstab=$(target /etc/fstab)
    line="LABEL=$DATA_LABEL $DATA_DIR $fstype defaults,noatime,nofail,x-systemd.device-timeout=15s 0 2"
    if [[ -f $fstab ]] && awk -v d="$DATA_DIR" '$1 !~ /^#/ && $2 == d { found = 1 } END { exit !found }' "$fstab"; then
        note "unchanged: /etc/fstab already mounts $DATA_DIR"
    elif ((DRY_RUN)); then
        CHANGED=1
        note "would append to /etc/fstab: $line"
    else
        CHANGED=1
        mkdir -p -- "$(dirname -- "$fstab")"
        printf '# NSOR appliance data partition (scripts/provision.sh)\n%s\n' "$line" >>"$fstab"
        note "appended to /etc/fstab: $line"
    fi
    if [[ -z $ROOT ]] && mountpoint -q "$DATA_DIR"; then
        note "already mounted"
        return 0
    fi
    if [[ -z $ROOT ]] && [[ -d $DATA_DIR ]] && [[ -n $(ls -A -- "$DATA_DIR") ]]; then
        die "$DATA_DIR already holds files on the root filesystem; mounting $dev over it would hide them. Stop the service, move them onto the partition (mount $dev /mnt; cp -a $DATA_DIR/. /mnt/; umount /mnt), empty $DATA_DIR, then re-run"
    fi
    system systemctl daemon-reload
    system install -d -m 0750 "$DATA_DIR"
    system mount "$DATA_DIR"
}

step_data_dir() {
    step "Data directory $DATA_DIR (mode 0750, owner $SERVICE_USER)"
    ensure_dir "$DATA_DIR" 0750 "$SERVICE_USER" "$SERVICE_USER"
}

# The unit's secret keys the audit log's CNIC hashes (and anything else that must differ
# per unit). Losing it makes old audit entries unmatchable, so it is made once and never
# replaced; it is never printed.
step_secret() {
    step "Unit secret $SECRET_FILE (32 random bytes as hex, mode 0600, owner $SERVICE_USER; made once, never printed)"
    local dest owner tmp
    dest=$(target "$SECRET_FILE")
    owner=$(owner_spec "$SERVICE_USER" "$SERVICE_USER")
    if [[ -e $dest ]]; then
        note "kept: the existing secret is never overwritten"
        if ! grep -Eqx '[0-9a-f]{64}' -- "$dest"; then
            note "WARNING: it is not 64 hex digits (32 bytes). Move it aside only if this unit has no audit history to keep, then re-run"
        fi
        if ! has_mode_owner "$dest" 0600 "$owner"; then
            change chmod 0600 -- "$dest"
            if [[ -n $owner ]]; then
                change chown "$owner" -- "$dest"
            fi
        fi
        owner_note "$SERVICE_USER" "$SERVICE_USER" "$owner"
        return 0
    fi
    CHANGED=1
    if ((DRY_RUN)); then
        note "would generate it from /dev/urandom"
        return 0
    fi
    mkdir -p -- "$(dirname -- "$dest")"
    tmp=$(umask 077 && mktemp "$(dirname -- "$dest")/.secret.key.XXXXXX")
    TMP_FILES+=("$tmp")
    head -c 32 /dev/urandom | od -A n -v -t x1 | tr -d ' \n' >"$tmp"
    printf '\n' >>"$tmp"
    chmod 0600 -- "$tmp"
    if [[ -n $owner ]]; then
        chown "$owner" -- "$tmp"
    fi
    # On disk before it has its name, so a power cut cannot leave an empty key behind;
    # link(2) fails if the name exists: a secret is never replaced, even by a racing run.
    sync -- "$tmp"
    ln -- "$tmp" "$dest"
    rm -f -- "$tmp"
    note "generated (mode 0600${owner:+, owner $owner})"
    owner_note "$SERVICE_USER" "$SERVICE_USER" "$owner"
}

code_differs() {
    local dest=$1 item entry
    [[ -d $dest ]] || return 0
    for item in "${CODE_ITEMS[@]}"; do
        [[ -e $SRC_DIR/$item ]] || continue
        diff -rq -x __pycache__ -x '*.pyc' -- "$SRC_DIR/$item" "$dest/$item" >/dev/null 2>&1 || return 0
    done
    for entry in "$dest"/* "$dest"/.[!.]*; do
        [[ -e $entry ]] || continue
        item=$(basename -- "$entry")
        [[ -e $SRC_DIR/$item ]] && [[ " ${CODE_ITEMS[*]} " == *" $item "* ]] || return 0
    done
    return 1
}

step_code() {
    step "Code -> $APP_DIR (owner root, read-only to the service)"
    local dest new old items=() item
    dest=$(target "$APP_DIR")
    if ! code_differs "$dest"; then
        note "unchanged: $APP_DIR"
        return 0
    fi
    CHANGED=1
    for item in "${CODE_ITEMS[@]}"; do
        [[ -e $SRC_DIR/$item ]] && items+=("$item")
    done
    if ((DRY_RUN)); then
        note "would copy ${items[*]} into $APP_DIR, replacing what is there"
        return 0
    fi
    new="$dest.new"
    old="$dest.old"
    rm -rf -- "$new" "$old"
    TMP_FILES+=("$new" "$old")
    mkdir -p -- "$new"
    # Modes are normalised: a checkout copied from a FAT stick has every bit set.
    tar -C "$SRC_DIR" -c --owner=0 --group=0 --mode='u+rwX,go+rX,go-w' \
        --exclude=__pycache__ --exclude='*.pyc' -f - -- "${items[@]}" |
        tar -C "$new" -x --no-same-owner -f -
    chmod 0755 -- "$new"
    if [[ -d $dest ]]; then
        mv -T -- "$dest" "$old"
    fi
    mv -T -- "$new" "$dest"
    rm -rf -- "$old"
    note "copied: ${items[*]}"
}

# With --no-pip the virtualenv is made without pip (ensurepip is most of the time it takes);
# a later run without --no-pip bootstraps pip into it first.
step_venv() {
    step "Virtualenv $VENV_DIR with requirements.txt"
    local venv python venv_args=()
    venv=$(target "$VENV_DIR")
    python="$venv/bin/python"
    if ((NO_PIP)); then
        venv_args=(--without-pip)
    fi
    if [[ -x $python ]] && "$python" -c '' 2>/dev/null; then
        note "exists: $VENV_DIR"
    elif [[ -e $venv ]]; then
        note "broken (Python upgraded?): recreating"
        change python3 -m venv --clear "${venv_args[@]}" -- "$venv"
    else
        change python3 -m venv "${venv_args[@]}" -- "$venv"
    fi
    if ((NO_PIP)); then
        note "pip install skipped (--no-pip)"
    else
        if ((!DRY_RUN)) && ! "$python" -m pip --version >/dev/null 2>&1; then
            change "$python" -m ensurepip --upgrade
        fi
        change "$python" -m pip install --disable-pip-version-check --no-input --quiet \
            -r "$(target "$APP_DIR")/requirements.txt"
    fi
    # The service cannot write bytecode next to read-only code: compile it now.
    if ! ((DRY_RUN)); then
        if [[ -x $python ]]; then
            "$python" -m compileall -q "$(target "$APP_DIR")/appliance"
        else
            python3 -m compileall -q "$(target "$APP_DIR")/appliance"
        fi
    fi
}

step_config() {
    step "Configuration in $ETC_DIR (mode 0640, group $SERVICE_USER: it may hold SIM PINs)"
    ensure_dir "$ETC_DIR" 0750 root "$SERVICE_USER"
    local f
    for f in "${CONFIG_FILES[@]}"; do
        install_kept "$FW/$f" "$ETC_DIR/$f" 0640 root "$SERVICE_USER"
    done
}
