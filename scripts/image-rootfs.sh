#!/bin/sh
# Lays out the files of the ssogate container image in DEST:
#   DEST/root  the root filesystem: the binary (stripped), the shared libraries it links
#              (from ldd: the C library and its loader, libgcc_s, OpenSSL), the CA
#              certificates, and passwd/group entries for user 65532, whom the image
#              runs as. Nothing else: no shell, no package manager.
#   DEST/data  the skeleton of /var/lib/ssogate, the one writable directory; the
#              Containerfile copies it apart so that it can own it to user 65532.
#
#   sh scripts/image-rootfs.sh BINARY DEST
#
# The Containerfile's build stage runs it on the binary it compiled; on a machine that
# cannot pull a Rust image, run it on a binary built here and build the image with
# `--build-arg BINARY_SOURCE=prebuilt` (see the Containerfile). POSIX sh: the build
# stage has no bash guarantee.
set -eu

die() { echo "image-rootfs: $*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: sh scripts/image-rootfs.sh BINARY DEST"
bin=$1
dest=$2
[ -x "$bin" ] || die "$bin is not an executable file"
command -v ldd >/dev/null || die "ldd is needed (Debian: libc-bin)"
ca=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca" ] || die "$ca is missing (Debian: apt-get install ca-certificates)"

rm -rf "$dest"
data=$dest/data
dest=$dest/root
mkdir -p "$dest/usr/local/bin" "$dest/etc/ssl/certs" "$dest/var/lib" "$dest/tmp" "$data/certs"

cp "$bin" "$dest/usr/local/bin/ssogate"
# Debug builds carry hundreds of MB of debug info; a release build is stripped here too.
if command -v strip >/dev/null; then
  strip --strip-unneeded "$dest/usr/local/bin/ssogate"
fi
chmod 0755 "$dest/usr/local/bin/ssogate"

# Every library the binary loads, at the path the loader looks for it. `ldd` prints
# "name => /path (addr)" for libraries and "/path (addr)" for the loader itself.
libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
[ -n "$libs" ] || die "ldd found no libraries: is $bin a dynamically linked Linux binary?"
for lib in $libs; do
  mkdir -p "$dest$(dirname "$lib")"
  cp -L "$lib" "$dest$lib"
done

cp -L "$ca" "$dest/etc/ssl/certs/ca-certificates.crt"

cat >"$dest/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
ssogate:x:65532:65532:ssogate:/var/lib/ssogate:/sbin/nologin
EOF
cat >"$dest/etc/group" <<'EOF'
root:x:0:
ssogate:x:65532:
EOF
# Name lookups from files, then DNS (glibc has both built in since 2.34).
echo 'hosts: files dns' >"$dest/etc/nsswitch.conf"
chmod 1777 "$dest/tmp"
chmod 0700 "$data/certs"

echo "image-rootfs: $2: ssogate, $(echo "$libs" | wc -l) libraries, CA certificates ($(du -sh "$dest" | cut -f1))"
