#!/usr/bin/env bash
# provision.sh: install the NSOR SMS appliance on Raspberry Pi OS (Bookworm) or Debian 12.
#
# Two ways to use it (docs/packaging.md, "The package and provision.sh"):
#   * on a unit installed from the Debian package: `provision.sh --deb [--pi]` does only what
#     the package does not: the data partition, the unit secret, ModemManager masked and,
#     with --pi, the Raspberry Pi boot files (which other packages own too). The package
#     ships this script as /usr/lib/nsor-appliance/app/scripts/provision.sh.
#   * from a checkout, without the package (development, a unit set up by hand): every step.
#
# Safe to run again at any time (an upgrade is a re-run): every step first looks at what is
# there and changes only what differs. What a technician owns is never overwritten:
# /etc/nsor/appliance.toml and the other files in /etc/nsor, the udev rules (their slot
# paths are edited per unit) and the unit's secret. A newer default is installed beside
# an edited file as FILE.dist, and the run says so.
#
# Run `scripts/provision.sh --help` for the options; docs/technician.md walks through it.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

readonly SERVICE_USER=nsor
readonly UNIT_NAME=nsor-appliance.service
readonly DATA_LABEL=NSOR-DATA

readonly APP_DIR=/usr/lib/nsor-appliance/app
readonly VENV_DIR=/usr/lib/nsor-appliance/venv
readonly ETC_DIR=/etc/nsor
readonly DATA_DIR=/var/lib/nsor
readonly SECRET_FILE=/var/lib/nsor/secret.key
readonly UNIT_FILE=/etc/systemd/system/nsor-appliance.service
readonly UDEV_RULES=/etc/udev/rules.d/99-nsor-modems.rules
readonly MODULES_CONF=/etc/modules-load.d/nsor-serial.conf
readonly WATCHDOG_CONF=/etc/systemd/system.conf.d/nsor-watchdog.conf
readonly JOURNALD_CONF=/etc/systemd/journald.conf.d/nsor.conf
readonly CLI_WRAPPER=/usr/local/bin/nsor
readonly BOOT_CONFIG=/boot/firmware/config.txt
readonly BOOT_CMDLINE=/boot/firmware/cmdline.txt

readonly APT_PACKAGES=(python3 python3-venv sqlite3 ca-certificates picocom usbutils psmisc)
# What the unit runs: copied to APP_DIR. Tests and development files stay behind.
readonly CODE_ITEMS=(appliance requirements.txt pyproject.toml README.md docs firmware_config scripts)
readonly CONFIG_FILES=(appliance.toml replies.toml registry_root.json)
readonly BOOT_BEGIN="# >>> nsor-appliance (scripts/provision.sh --pi; edits inside are replaced) >>>"
readonly BOOT_END="# <<< nsor-appliance <<<"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC_DIR="$(dirname "$SCRIPT_DIR")"
readonly SCRIPT_DIR SRC_DIR
readonly FW="$SRC_DIR/firmware_config"

ROOT=""
DRY_RUN=0
NO_APT=0
NO_PIP=0
DEB=0
PI=0
STEP=0
CHANGED=0
OWNER_EXPLAINED=0
TMP_FILES=()

usage() {
    cat <<EOF
Usage: sudo scripts/provision.sh [options]

Installs the NSOR SMS appliance from this checkout ($SRC_DIR):
packages, the service user '$SERVICE_USER', the code in $APP_DIR and its virtualenv in
$VENV_DIR, configuration in $ETC_DIR, the data directory $DATA_DIR (on the partition
labelled $DATA_LABEL when there is one), the unit secret, udev rules, the systemd unit,
and ModemManager masked. Run it again to upgrade; it changes only what differs.

Options:
  --dry-run    print the numbered plan, change nothing
  --root DIR   install into the staging tree DIR instead of / (apt, useradd, systemctl
               and udevadm are skipped and printed; owners are set only where the user
               exists on this machine)
  --pi         also apply the Raspberry Pi boot changes: append the config.txt fragment
               to $BOOT_CONFIG and remove the serial console from
               $BOOT_CMDLINE (a reboot is needed afterwards)
  --no-apt     do not install Debian packages
  --no-pip     do not pip install the requirements (offline staging, tests); the
               virtualenv is made without pip, which a later run adds
  --deb        the nsor-appliance Debian package is installed (it provides the user,
               code, virtualenv, configuration, udev rules and systemd unit): do only the
               data partition, the unit secret, ModemManager and, with --pi, the boot files
  -h, --help   show this help
EOF
}

# shellcheck source=provision.d/lib.sh
source "$SCRIPT_DIR/provision.d/lib.sh"
# shellcheck source=provision.d/steps_unit.sh
source "$SCRIPT_DIR/provision.d/steps_unit.sh"
# shellcheck source=provision.d/steps_system.sh
source "$SCRIPT_DIR/provision.d/steps_system.sh"

check_sources() {
    local missing=() f
    for f in appliance/__init__.py requirements.txt \
        firmware_config/nsor-appliance.service firmware_config/99-nsor-modems.rules \
        firmware_config/bin/nsor firmware_config/modules-load.d/nsor-serial.conf \
        firmware_config/system.conf.d/nsor-watchdog.conf \
        firmware_config/journald.conf.d/nsor.conf \
        firmware_config/boot/config.txt.fragment; do
        [[ -f $SRC_DIR/$f ]] || missing+=("$f")
    done
    for f in "${CONFIG_FILES[@]}"; do
        [[ -f $FW/$f ]] || missing+=("firmware_config/$f")
    done
    if ((${#missing[@]})); then
        printf 'provision.sh: this checkout (%s) is incomplete; missing:\n' "$SRC_DIR" >&2
        printf '    %s\n' "${missing[@]}" >&2
        die "copy the whole release again, then re-run"
    fi
}

next_steps() {
    printf '\n'
    if ((DRY_RUN)); then
        printf 'Dry run: nothing was changed.\n'
        return 0
    fi
    printf 'Done.%s Next:\n' "${ROOT:+ (staging tree $ROOT)}"
    printf '  1. Put the modems and SIM PINs in %s/appliance.toml (sudo nsor probe prints a ready [[modems]] block).\n' "$ETC_DIR"
    printf '  2. sudo nsor doctor           (every line PASS?)\n'
    printf '  3. sudo systemctl start %s && sudo nsor status\n' "$UNIT_NAME"
}

main() {
    local args=("$@")
    while (($#)); do
        case $1 in
            --dry-run) DRY_RUN=1 ;;
            --root)
                (($# >= 2)) || die "--root needs a directory"
                ROOT=$2
                shift
                ;;
            --root=*) ROOT=${1#--root=} ;;
            --pi) PI=1 ;;
            --no-apt) NO_APT=1 ;;
            --no-pip) NO_PIP=1 ;;
            --deb) DEB=1 ;;
            -h | --help)
                usage
                exit 0
                ;;
            *) die "unknown option '$1' (see --help)" ;;
        esac
        shift
    done
    if [[ -n $ROOT ]]; then
        [[ $ROOT == /* ]] || ROOT="$PWD/$ROOT"
        ROOT=${ROOT%/}
        [[ -n $ROOT ]] || die "--root / is the running system: leave --root out"
        if ! ((DRY_RUN)); then
            mkdir -p -- "$ROOT"
        fi
    elif ((EUID != 0)) && ! ((DRY_RUN)); then
        die "run as root (sudo $0 ${args[*]}), or try --dry-run or --root DIR"
    fi
    readonly ROOT DRY_RUN NO_APT NO_PIP PI DEB
    if ((DEB)); then
        main_deb
        return 0
    fi
    check_sources

    local mode=""
    if ((DRY_RUN)); then
        mode=" (dry run: nothing will be changed)"
    fi
    printf 'NSOR appliance provisioning from %s into %s%s\n' "$SRC_DIR" "${ROOT:-/}" "$mode"
    step_packages
    step_user
    step_data_partition
    step_data_dir
    step_secret
    step_code
    step_venv
    step_config
    step_udev
    step_modemmanager
    step_systemd
    step_boot
    next_steps
}

# With the Debian package installed: what it leaves to an explicit step.
main_deb() {
    [[ -f $FW/boot/config.txt.fragment ]] || die "$FW/boot/config.txt.fragment is missing"
    if [[ -z $ROOT ]] && ! ((DRY_RUN)) &&
        [[ $(dpkg-query -W -f='${Status}' nsor-appliance 2>/dev/null) != "install ok installed" ]]; then
        die "--deb: the nsor-appliance package is not installed (sudo apt install ./nsor-appliance_<version>_<arch>.deb)"
    fi
    printf 'NSOR appliance: the steps the Debian package leaves out, into %s\n' "${ROOT:-/}"
    step_data_partition
    step_secret
    step_modemmanager
    step_boot
    next_steps
}

main "$@"
