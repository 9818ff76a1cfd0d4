# Sourced by scripts/test and scripts/demo: installs the Debian 12 packages
# alignd needs, only those missing, so a fresh machine needs nothing else.
# Usage: al_need_packages pkg...
al_need_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# What building alignd needs (libutf8proc: the graders' case folding, the
# tokenizers' Unicode normalization and lowercasing, the chat templates' case
# mappings and character classes; libcurl: the daemon's Hugging Face Hub
# client and its client for external reward verifiers, and the tests;
# libcsv: CSV/TSV datasets; libexttextcat: the hygiene language filter;
# libdnnl: oneDNN, the matrix products; libopenmpi-dev: data-parallel
# training over MPI, lib/dist).
AL_BUILD_PACKAGES=(build-essential cmake pkg-config libopenblas-dev libdnnl-dev libjansson-dev libpcre2-dev
                   libmicrohttpd-dev libsqlite3-dev libssl-dev libcurl4-openssl-dev libutf8proc-dev
                   libcsv-dev libexttextcat-dev libexttextcat-data libopenmpi-dev)
# What the tests need beyond the build: the PyTorch parity reference, and
# node for the tokenizer reference (scripts/test adds npm when missing), curl
# for the shell tests, clang for the libFuzzer targets, Chromium
# for the dashboard tests, systemd-analyze for the unit file check, jq for
# the README's curl walk-through, mpirun (openmpi-bin) for the tests that
# train as several ranks.
AL_TEST_PACKAGES=(python3 python3-torch python3-numpy nodejs python3-jinja2 curl
                  clang libclang-rt-14-dev chromium systemd sqlite3 jq openmpi-bin)
