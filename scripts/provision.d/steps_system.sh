# provision.d/steps_system.sh: how the appliance fits into the operating system (packages,
# udev, ModemManager, systemd, Raspberry Pi boot files). Sourced by provision.sh.
# shellcheck shell=bash

step_packages() {
    step "Debian packages: ${APT_PACKAGES[*]}"
    if ((NO_APT)); then
        note "skipped (--no-apt)"
        return 0
    fi
    local missing=() p
    for p in "${APT_PACKAGES[@]}"; do
        [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        note "all installed"
        return 0
    fi
    system apt-get update
    system env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

step_udev() {
    step "Modem names (udev rules, /dev/nsor/modem0..N) and serial drivers loaded at boot"
    CHANGED=0
    install_kept "$FW/99-nsor-modems.rules" "$UDEV_RULES" 0644 root root
    install_file "$FW/modules-load.d/nsor-serial.conf" "$MODULES_CONF" 0644 root root
    if ((CHANGED)); then
        system modprobe --all usbserial cdc_acm
        system udevadm control --reload
        system udevadm trigger --subsystem-match=tty --action=add
    fi
    note "edit the slot paths in $UDEV_RULES for this unit's hub: docs/technician.md, 'Naming the modems'"
}

step_modemmanager() {
    step "ModemManager masked (it probes serial ports with AT commands and holds them open)"
    local state=""
    if [[ -n $ROOT ]]; then
        system systemctl mask --now ModemManager.service
        return 0
    fi
    state=$(systemctl is-enabled ModemManager.service 2>/dev/null) || true
    if [[ $state == masked ]]; then
        note "already masked"
        return 0
    fi
    if systemctl is-active --quiet ModemManager.service 2>/dev/null; then
        system systemctl stop ModemManager.service
    fi
    system systemctl mask ModemManager.service
}

step_systemd() {
    step "systemd: $UNIT_NAME, hardware watchdog, journal limits, the 'nsor' command"
    local unit_changed journald_changed
    CHANGED=0
    install_file "$FW/nsor-appliance.service" "$UNIT_FILE" 0644 root root
    install_file "$FW/system.conf.d/nsor-watchdog.conf" "$WATCHDOG_CONF" 0644 root root
    unit_changed=$CHANGED
    CHANGED=0
    install_file "$FW/journald.conf.d/nsor.conf" "$JOURNALD_CONF" 0644 root root
    journald_changed=$CHANGED
    install_file "$FW/bin/nsor" "$CLI_WRAPPER" 0755 root root
    if ((unit_changed)); then
        system systemctl daemon-reload
        note "RuntimeWatchdogSec= takes effect at the next boot"
    fi
    if ((journald_changed)); then
        system systemctl restart systemd-journald.service
    fi
    if [[ -z $ROOT ]] && ! ((DRY_RUN)) && systemctl is-enabled --quiet "$UNIT_NAME" 2>/dev/null; then
        note "already enabled: $UNIT_NAME"
    else
        system systemctl enable "$UNIT_NAME"
    fi
    # An upgrade restarts a running service; a first install waits for the technician.
    system systemctl try-restart "$UNIT_NAME"
}

step_boot() {
    step "Raspberry Pi boot files (--pi): UART on GPIO14/15, no serial console, hardware watchdog"
    if ! ((PI)); then
        note "skipped (add --pi on a Raspberry Pi)"
        return 0
    fi
    local config cmdline content
    CHANGED=0
    config=$(target "$BOOT_CONFIG")
    cmdline=$(target "$BOOT_CMDLINE")
    [[ -f $config && -f $cmdline ]] ||
        die "$BOOT_CONFIG or $BOOT_CMDLINE not found: --pi needs Raspberry Pi OS Bookworm (older releases keep them in /boot)"

    content=$(
        awk -v b="$BOOT_BEGIN" -v e="$BOOT_END" '$0 == b { skip = 1 } !skip { print } $0 == e { skip = 0 }' "$config"
        printf '%s\n' "$BOOT_BEGIN"
        cat -- "$FW/boot/config.txt.fragment"
        printf '%s\n' "$BOOT_END"
    )
    replace_boot_file "$BOOT_CONFIG" "$content"

    # cmdline.txt is one line; remove only the serial console words.
    content=$(head -n 1 -- "$cmdline" |
        sed -E 's/(^|[[:space:]])console=(serial0|serial1|ttyAMA0|ttyS0),[0-9]+/\1/g; s/[[:space:]]+/ /g; s/^ //; s/ $//')
    replace_boot_file "$BOOT_CMDLINE" "$content"
    local boot_changed=$CHANGED

    system systemctl mask serial-getty@ttyAMA0.service
    # The Raspberry Pi documentation pairs dtoverlay=disable-bt with this: hciuart would
    # otherwise try to bring up Bluetooth on the UART the modem now uses.
    if [[ -n $ROOT ]] || systemctl cat hciuart.service >/dev/null 2>&1; then
        system systemctl disable hciuart.service
    fi
    if ((boot_changed)); then
        note "REBOOT for the boot changes to take effect: sudo reboot"
    fi
}
