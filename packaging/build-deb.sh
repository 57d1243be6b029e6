#!/usr/bin/env bash
# Builds dist/odyssey_<version>_amd64.deb from the built workspaces (run `npm run build` first;
# `npm run package:deb` does both). Layout: the workspaces' dist/ JavaScript and package.json files
# and their production node_modules (npm ci --omit=dev) under /usr/lib/odyssey, links named for each
# command under /usr/lib/odyssey/bin, and /usr/bin wrappers that run them on /usr/bin/node.
# Needs dpkg-deb, dpkg-shlibdeps (dpkg-dev), help2man, cpio and gzip (scripts/setup.sh installs
# them); prints the .deb's path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
here=$root/packaging
cd "$root"

version=$(node -p "require('./package.json').version")
maintainer=${ODYSSEY_MAINTAINER:-$(git log -1 --format='%an <%ae>' 2>/dev/null || echo 'Odyssey developers <odyssey@example.org>')}
# Reproducible dates: the last commit's, as SOURCE_DATE_EPOCH says.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
out=$root/dist/odyssey_${version}_amd64.deb

work=$(mktemp -d /tmp/odyssey-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
pkg=$work/pkg
lib=$pkg/usr/lib/odyssey
mkdir -p "$lib/bin" "$pkg/usr/bin" "$pkg/DEBIAN"

# 1. The workspaces: package.json and the emitted JavaScript (no declarations, no maps).
mapfile -t workspaces < <(node -p "require('./package.json').workspaces.join('\n')")
cp package.json package-lock.json "$lib/"
for ws in "${workspaces[@]}"; do
  [ -d "$ws/dist" ] || { echo "build-deb: $ws/dist is missing: run npm run build first" >&2; exit 1; }
  mkdir -p "$lib/$ws"
  cp "$ws/package.json" "$lib/$ws/"
  (cd "$ws" && find dist -type f \( -name '*.js' -o -name '*.mjs' \) -print0 | cpio --quiet -0 -pdm "$lib/$ws")
done
# `qvm template install` runs the template builder found beside client/ (client/src/cli/template-builder.ts);
# it copies the agent's bundles (agent/dist/bundle) and koffi from this same tree into the template.
cp -a templates "$lib/templates"
rm -f "$lib/templates/README.md"

# 2. Production dependencies, resolved from the lockfile; workspaces become links into the tree.
# Install scripts are not run: koffi's binary comes in its per-platform package.
(cd "$lib" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error >&2)
rm -f "$lib/package-lock.json"
rm -rf "$lib/node_modules/.bin" "$lib/node_modules/.package-lock.json"
# koffi's C++ sources and headers are only for building it; of its binaries, glibc x64's is the one
# that runs here (npm installed no other platform's package).
k=$lib/node_modules/koffi
rm -rf "$k/vendor" "$k/doc"
find "$k" -type f \( -name '*.cc' -o -name '*.hh' -o -name '*.S' -o -name '*.asm' -o -name '*.inc' \
  -o -name '*.def' -o -name CMakeLists.txt \) -delete
find "$k" -type d -empty -delete
# Its install-time builder is not run (see above), and npm's packaging leftovers are not wanted.
rm -f "$k/cnoke.cjs"
find "$lib/node_modules" -name .npmignore -delete
rm -rf "$lib/node_modules/@koromix/koffi-linux-x64/musl_x64"
(cd "$lib" && node -e "require('koffi')") || { echo "build-deb: koffi does not load from the staged tree" >&2; exit 1; }

# Files starting with #! are programs (our entry points, the bundled packages' own CLIs); the rest,
# the native module included, are read or loaded, not run.
find "$lib" -type f -exec chmod 0644 {} +
find "$lib" -type f -exec awk 'FNR == 1 { if (/^#!/) print FILENAME; nextfile }' {} + | xargs -r -d '\n' chmod 0755

# 3. Commands: our own, each a workspace `bin`, and upstream's names, all links to qvm's entry.
own=(odysseyd qvm odyssey-policy odyssey-qrexec-client odyssey-policy-agent odyssey-conformance)
declare -A entry
for ws in "${workspaces[@]}"; do
  while IFS='=' read -r name file; do
    [ -n "$name" ] && entry[$name]=$ws/${file#./}
  done < <(node -p "Object.entries(require('./$ws/package.json').bin ?? {}).map(([n, f]) => n + '=' + f).join('\n')")
done
mapfile -t upstream < <(node --input-type=module -e \
  "const m = await import('$root/client/dist/cli/upstream-names.js'); console.log(Object.keys(m.UPSTREAM_NAMES).join('\n'))")
wrapper() {
  printf '#!/bin/sh\nexec /usr/bin/node /usr/lib/odyssey/bin/%s "$@"\n' "$1" >"$pkg/usr/bin/$1"
  chmod 0755 "$pkg/usr/bin/$1"
}
for name in "${own[@]}"; do
  [ -n "${entry[$name]:-}" ] || { echo "build-deb: no workspace has a bin named $name" >&2; exit 1; }
  # A relative link: the entry sees its command's name in argv[1] and imports from its real place.
  ln -s "../${entry[$name]}" "$lib/bin/$name"
  wrapper "$name"
done
for name in "${upstream[@]}"; do
  ln -s "../${entry[qvm]}" "$lib/bin/$name"
  wrapper "$name"
done

# 4. Configuration, the unit, the default admin policy (generated from the method table) and the
# default policy for the services dom0 serves to qubes (qubes.FeaturesRequest...), upstream's
# 90-default.policy; every file under etc/ becomes a conffile below.
install -D -m 0644 "$here/odysseyd.conf" "$pkg/etc/odyssey/odysseyd.conf"
install -D -m 0644 "$here/odysseyd.service" "$pkg/usr/lib/systemd/system/odysseyd.service"
node "$lib/bin/odyssey-policy" generate-admin "$pkg/etc/qubes/policy.d" >/dev/null
install -m 0644 "$here/policy.d/90-default.policy" "$pkg/etc/qubes/policy.d/90-default.policy"
find "$pkg/etc/qubes" -type d -exec chmod 0755 {} + && find "$pkg/etc/qubes" -type f -exec chmod 0644 {} +

# 5. Man pages from each command's --help (help2man), odysseyd in section 8.
man=$pkg/usr/share/man
mkdir -p "$man/man1" "$man/man8"
mkdir -p "$work/help"
manpage() { # name section
  local name=$1 section=$2 help summary
  help=$(node "$lib/bin/$name" --help 2>&1) || true
  summary=$(printf '%s\n' "$help" | sed -n '3p')
  if printf '%s\n' "$help" | grep -q '^Usage:'; then
    # help2man runs the program it documents: a stand-in that prints the help saves a second start.
    printf '%s\n' "$help" >"$work/help/$name.txt"
    printf '#!/bin/sh\ncat %s\n' "$work/help/$name.txt" >"$work/help/$name" && chmod +x "$work/help/$name"
    help2man --no-info --section="$section" --version-string="$version" --name="${summary:-$name}" \
      "$work/help/$name" >"$work/$name.$section"
  else
    # A name whose subcommand qvm has not got yet: its page says what it says when run.
    cat >"$work/$name.$section" <<PAGE
.TH ${name^^} $section "" "odyssey $version" "User Commands"
.SH NAME
$name \\- not supported yet by Odyssey
.SH DESCRIPTION
Upstream Qubes OS has this command; Odyssey's qvm has no such subcommand yet.
Run, it prints "$help" and exits with status 2.
.SH SEE ALSO
.BR qvm (1)
PAGE
  fi
  gzip -9n <"$work/$name.$section" >"$man/man$section/$name.$section.gz"
}
manpage odysseyd 8
for name in "${own[@]:1}" "${upstream[@]}"; do manpage "$name" 1; done

# 6. Documentation, then the control area.
doc=$pkg/usr/share/doc/odyssey
mkdir -p "$doc"
node "$here/copyright.mjs" "$lib" "$doc/copyright"
date=$(date -R -u -d "@$SOURCE_DATE_EPOCH")
sed -e "s|@VERSION@|$version|g" -e "s|@MAINTAINER@|$maintainer|g" -e "s|@DATE@|$date|g" \
  "$here/debian/changelog" | gzip -9n >"$doc/changelog.gz"
chmod 0644 "$doc/copyright" "$doc/changelog.gz"

for script in postinst prerm postrm; do install -m 0755 "$here/debian/$script" "$pkg/DEBIAN/$script"; done
(cd "$pkg" && find etc -type f | sort | sed 's|^|/|') >"$pkg/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
# koffi's native module links the C and C++ runtimes: dpkg-shlibdeps names their packages.
mkdir -p "$work/shlibs/debian"
printf 'Source: odyssey\n\nPackage: odyssey\nArchitecture: amd64\n' >"$work/shlibs/debian/control"
mapfile -t natives < <(find "$lib" -name '*.node' -type f)
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O "${natives[@]/#/-e}" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
sed -e "s|@VERSION@|$version|g" -e "s|@MAINTAINER@|$maintainer|g" -e "s|@INSTALLED_SIZE@|$size|g" \
  -e "s|@SHLIBS@|$shlibs|g" \
  "$here/debian/control.in" >"$pkg/DEBIAN/control"
(cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -print0 | sort -z | xargs -0 md5sum | sed 's|  \./|  |') \
  >"$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles" "$pkg/DEBIAN/md5sums"

find "$pkg" -type d -exec chmod 0755 {} +
find "$pkg" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$root/dist"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$out" >/dev/null
echo "$out"
