# Sourced by scripts/demo, scripts/test and .ci/run: makes sure redis-server is installed. (The
# TLS tests' certificates are made in Rust by the testkit, so openssl is not needed.)
ensure_redis() {
    if command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || [ -n "${REDIS_SERVER_BIN:-}" ]; then
        return 0
    fi
    echo "redis-server not found: installing the Debian package" >&2
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo="sudo"
            echo "not root: running 'sudo apt-get update' and 'sudo apt-get install -y redis-server' (sudo may ask for your password)" >&2
        else
            echo "not root and no sudo: install redis-server yourself (apt-get install -y redis-server)" >&2
            return 1
        fi
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    # The package starts a system service on 6379; the tests use their own servers on free ports.
    command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]
}
