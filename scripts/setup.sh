# Sourced by scripts/run and scripts/test: installs what the portal needs and is missing, so
# both work on a fresh machine with nothing done by hand.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

say() { printf '==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        say "need root to run: $*"; return 1
    fi
}

apt_install() {
    if ! command -v apt-get >/dev/null; then
        say "cannot install $* here (no apt-get): install it yourself"
        return 1
    fi
    if [ -z "${APT_UPDATED:-}" ]; then
        as_root apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

has_postgres() {
    command -v postgres >/dev/null && command -v initdb >/dev/null && return 0
    command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/postgres" ] && return 0
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

ensure_postgres() {
    # Not needed when an external database is configured.
    if [ -n "${DB_URL:-}${DATABASE_URL:-}" ] || has_postgres; then return 0; fi
    say "installing PostgreSQL server binaries (Debian package postgresql)"
    apt_install postgresql
}

ensure_rust() {
    if ! command -v cargo >/dev/null; then
        say "cargo not found: install the Rust toolchain (https://rustup.rs) and run this again"
        exit 1
    fi
}

ensure_node() {
    if ! command -v npm >/dev/null; then
        say "installing Node.js and npm (Debian packages)"
        apt_install nodejs npm
    fi
}

# The browser portal: its packages (exactly as locked) and its build, served by the server.
build_web() {
    say "building the browser portal (web/)"
    (cd "$root/web" && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
}

# Debian's Chromium, for the browser tests (test tools' own browser downloads are not used).
ensure_chromium() {
    if [ -x "${CHROMIUM:-/usr/bin/chromium}" ]; then return 0; fi
    say "installing Chromium (Debian package chromium) for the browser tests"
    apt_install chromium
}

ensure_rust
ensure_postgres
ensure_node
