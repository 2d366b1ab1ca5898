#!/usr/bin/env bash
# The container image: builds the Containerfile with podman and inspects the result.
#
#   bash tests/helm/image.sh BINARY
#
# Builds the prebuilt form (`--build-arg BINARY_SOURCE=prebuilt`, the root filesystem
# laid out by scripts/image-rootfs.sh from BINARY): these machines cannot pull the Rust
# image the default form compiles in, and a release build inside the image would take far
# longer than this test may. The final stage is the same in both forms.
#
# Checks: user 65532 (not root), entrypoint and command, port 8080 exposed, the
# listen/data environment, size under a bound, no shell or other programs in the image,
# a writable /var/lib/ssogate owned by the user, CA certificates. `podman run` does not
# work on these machines (cgroups), so the image's own filesystem is then run without it:
# mounted (`podman image mount`), read-only, with a fresh directory over /var/lib/ssogate
# as the chart's emptyDir, entered with chroot as user 65532: the gateway starts there and
# answers /healthz and /readyz.
#
# Prints one line per check ("ok ...", "FAIL ...") or a single "SKIP ..." line when podman
# is missing, and last "image: N passed, N failed, N skipped". Exit 1 on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."

BIN=${1:?usage: bash tests/helm/image.sh BINARY}
TAG=localhost/ssogate:helm-test
# A debug build, stripped, is about 24 MB; libraries and certificates add about 7 MB.
# A release build is smaller. Above this something unexpected is in the image.
MAX_MB=${SSOGATE_IMAGE_MAX_MB:-64}

passed=0 failed=0
ok() { echo "ok   image: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL image: $*"; failed=$((failed + 1)); }
summary() { echo "image: $passed passed, $failed failed, ${1:-0} skipped"; }

PODMAN=${SSOGATE_PODMAN:-podman}
if ! command -v "$PODMAN" >/dev/null; then
  echo "SKIP image: $PODMAN is not installed (apt-get install podman): the Containerfile was NOT built or checked"
  summary 1
  exit 0
fi

work=$(mktemp -d /var/tmp/ssogate-image-test.XXXXXX)
# An image store of the test's own, removed at the end: the build leaves no image, stage
# or layer on the machine, and touches no one else's.
podman() { command "$PODMAN" --root "$work/storage" --runroot "$work/run" "$@"; }
mnt=""
server=""
cleanup() {
  [[ -n $server ]] && kill "$server" 2>/dev/null
  [[ -n $mnt ]] && podman image unmount "$TAG" >/dev/null 2>&1
  podman rmi -af >/dev/null 2>&1
  podman system reset -f >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

# Build: a context holding only the image's files; the Containerfile from the repository.
if sh scripts/image-rootfs.sh "$BIN" "$work/context/image-rootfs" >"$work/rootfs.log" 2>&1 &&
  podman build --quiet --build-arg BINARY_SOURCE=prebuilt -f Containerfile -t "$TAG" "$work/context" >"$work/build.log" 2>&1; then
  ok "podman build --build-arg BINARY_SOURCE=prebuilt ($(tail -n1 "$work/rootfs.log" | sed 's/^image-rootfs: [^:]*: //'))"
else
  bad "podman build failed:"
  sed 's/^/     /' "$work/rootfs.log" "$work/build.log" | tail -n 30
  summary
  exit 1
fi

inspect() { podman image inspect "$TAG" --format "$1"; }
expect() { # what, got, want
  if [[ $2 == "$3" ]]; then ok "$1 = $2"; else bad "$1 is '$2', expected '$3'"; fi
}
expect "user" "$(inspect '{{.Config.User}}')" "65532:65532"
expect "entrypoint" "$(inspect '{{json .Config.Entrypoint}}')" '["/usr/local/bin/ssogate"]'
expect "command" "$(inspect '{{json .Config.Cmd}}')" '["serve"]'
expect "exposed ports" "$(inspect '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}' | xargs)" "8080/tcp"
env_list=$(inspect '{{range .Config.Env}}{{println .}}{{end}}')
for want in SSOGATE_LISTEN=0.0.0.0:8080 SSOGATE_DATA_DIR=/var/lib/ssogate; do
  if grep -qx "$want" <<<"$env_list"; then ok "environment has $want"; else bad "environment lacks $want: $env_list"; fi
done
size=$(inspect '{{.Size}}')
mb=$((size / 1024 / 1024))
if ((mb < MAX_MB)); then ok "size ${mb} MB (bound ${MAX_MB} MB)"; else bad "size ${mb} MB, over the bound of ${MAX_MB} MB"; fi

# The image's filesystem.
if ! mnt=$(podman image mount "$TAG" 2>"$work/mount.log"); then
  bad "podman image mount failed: $(cat "$work/mount.log")"
  mnt=""
  summary
  exit 1
fi
programs=$(cd "$mnt" && find . -type f -perm -u+x ! -name '*.so*' | sort | xargs)
expect "executables in the image" "$programs" "./usr/local/bin/ssogate"
for f in bin/sh usr/bin/apt usr/bin/env; do
  [[ -e $mnt/$f ]] && bad "/$f is in the image"
done
ok "no shell, package manager or coreutils"
[[ -s $mnt/etc/ssl/certs/ca-certificates.crt ]] && ok "CA certificates" || bad "no /etc/ssl/certs/ca-certificates.crt"
expect "owner of /var/lib/ssogate" "$(stat -c %u:%g "$mnt/var/lib/ssogate")" "65532:65532"
grep -q '^ssogate:x:65532:65532:' "$mnt/etc/passwd" && ok "/etc/passwd names user 65532" || bad "no passwd entry for 65532"

# Run it from its own filesystem: read-only image, a fresh writable /var/lib/ssogate.
data="$work/data"
mkdir -p "$data" && chown 65532:65532 "$data"
chroot=$(command -v chroot)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
version=$(unshare -m sh -c "mount --bind '$data' '$mnt/var/lib/ssogate' && '$chroot' --userspec=65532:65532 '$mnt' /usr/local/bin/ssogate --version" 2>&1)
if [[ $version == ssogate* ]]; then ok "runs in its own filesystem as 65532: $version"; else bad "ssogate --version in the image: $version"; fi
unshare -m sh -c "mount --bind '$data' '$mnt/var/lib/ssogate' && cd / && exec env -i SSOGATE_LISTEN=127.0.0.1:$port SSOGATE_DATA_DIR=/var/lib/ssogate SSOGATE_CERTS_DIR=/var/lib/ssogate/certs SSOGATE_ADMIN_TOKEN=image-test-admin-token '$chroot' --userspec=65532:65532 '$mnt' /usr/local/bin/ssogate serve" \
  >"$work/serve.log" 2>&1 &
server=$!
get() { # the body of a 200 answer, or nothing
  python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())' "$1" 2>/dev/null
}
answer=""
for _ in $(seq 100); do
  answer=$(get "http://127.0.0.1:$port/readyz") && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
health=$(get "http://127.0.0.1:$port/healthz")
if [[ $answer == ready && $health == ok ]]; then
  ok "serves from the image: /healthz '$health', /readyz '$answer'"
else
  bad "the gateway did not become ready in the image (readyz '$answer', healthz '$health'):"
  sed 's/^/     /' "$work/serve.log" | tail -n 20
fi
kill "$server" 2>/dev/null
wait "$server" 2>/dev/null
server=""
if [[ -s $data/ssogate.db && -s $data/certs/master.key ]]; then
  ok "SQLite store and master key written to the mounted data directory, as user $(stat -c %u "$data/ssogate.db")"
else
  bad "no SQLite file or master key in the data directory: $(ls -la "$data" "$data/certs" 2>&1 | xargs)"
fi

summary
((failed == 0))
