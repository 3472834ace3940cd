# tools/deps.sh - sourced by tools/run and tools/test: installs the Debian
# bookworm packages the build and the tests need, only those missing.
RINGCACHE_PACKAGES=(
	meson ninja-build pkg-config gcc clang
	liburing-dev libhiredis-dev libdeflate-dev libbrotli-dev libnuma-dev
	redis-server redis-tools python3-redis memcached libmemcached-tools nginx-light wrk
	python3 curl procps valgrind brotli
	chromium  # tests/integration/test_dashboard.py: /dashboard in a real browser
)

ringcache_install_deps() {
	local missing=() p
	for p in "${RINGCACHE_PACKAGES[@]}" "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "installing: ${missing[*]}" >&2
	local sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	# no service should start on install: policy-rc.d refuses it for this run
	DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $sudo apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >&2
}
