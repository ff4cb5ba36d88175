#!/usr/bin/env bash
# usage: run_install.sh BUILD_DIR SOURCE_DIR
# Installs the build into a fresh prefix (cmake --install, as make install
# does) and uses it as a user would: the files are where they belong (the
# shared library under its versioned soname), a program built with
# `pkg-config --cflags --libs hakmem` and one built by CMake with
# find_package(hakmem) both run on hakmem, the static library links with
# the C compiler alone, and the installed launcher finds its library and
# says its version.
source "$(dirname "$0")/../programs/common.sh"  # fail, need, make_tmp
BUILD=$1 SRC=$2
need pkg-config cc readelf
make_tmp
prefix=$TMP/prefix
cmake --install "$BUILD" --prefix "$prefix" >"$TMP/install.log" || { cat "$TMP/install.log"; fail "cmake --install"; }
libdir=$(dirname "$(find "$prefix" -name 'libhakmem.so.0' -print -quit)")
[ -n "$libdir" ] && [ -d "$libdir" ] || fail "no libhakmem.so.0 installed"
for f in "$libdir/libhakmem.so" "$libdir/libhakmem.a" "$libdir/pkgconfig/hakmem.pc" \
         "$libdir/cmake/hakmem/hakmemConfig.cmake" "$prefix/include/hakmem.h" "$prefix/bin/hakmem" \
         "$prefix/share/man/man1/hakmem.1"; do
  [ -e "$f" ] || fail "$f was not installed"
done
soname=$(readelf -d "$libdir/libhakmem.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libhakmem.so.0 ] || fail "soname is '$soname', not libhakmem.so.0"
echo "ok: installed under $prefix, soname $soname"

flags=$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs hakmem)
cc "$SRC/tests/install/program.c" $flags -o "$TMP/with_pkgconfig"
LD_LIBRARY_PATH="$libdir" "$TMP/with_pkgconfig" || fail "the pkg-config program ($flags) did not run on hakmem"
# (ldd's output is kept first: grep -q leaving early would kill ldd with
# SIGPIPE, and pipefail then failed the test one run in three.)
linked=$(LD_LIBRARY_PATH="$libdir" ldd "$TMP/with_pkgconfig")
grep -q "$libdir/libhakmem.so.0" <<<"$linked" || fail "the pkg-config program is not linked to the installed library"
echo "ok: pkg-config --cflags --libs hakmem: $flags"

cmake -S "$SRC/tests/install/consumer" -B "$TMP/consumer" -DCMAKE_PREFIX_PATH="$prefix" >"$TMP/cmake.log" 2>&1 ||
  { cat "$TMP/cmake.log"; fail "find_package(hakmem) failed"; }
cmake --build "$TMP/consumer" >"$TMP/build.log" 2>&1 || { cat "$TMP/build.log"; fail "the find_package program did not build"; }
"$TMP/consumer/consumer" || fail "the find_package program did not run on hakmem"  # CMake's rpath points at $libdir
echo "ok: find_package(hakmem) and hakmem::hakmem"

cc -I"$prefix/include" "$SRC/tests/install/program.c" "$libdir/libhakmem.a" -o "$TMP/static"
"$TMP/static" || fail "the statically linked program did not run on hakmem"
echo "ok: libhakmem.a links with the C compiler alone"

version=$("$prefix/bin/hakmem" --version)
[ "$version" = "hakmem $(sed -n 's/^#define HAKMEM_VERSION_STRING "\(.*\)"/\1/p' "$prefix/include/hakmem.h")" ] ||
  fail "the launcher says '$version'"
[ "$("$prefix/bin/hakmem" lib)" = "$libdir/libhakmem.so" ] || fail "the installed launcher looks for $("$prefix/bin/hakmem" lib)"
"$prefix/bin/hakmem" run -- sh -c 'grep -q "$0" /proc/self/maps' "$libdir/libhakmem.so" ||
  fail "the installed launcher does not preload the installed library"
echo "ok: the installed launcher ($version) preloads $libdir/libhakmem.so"
echo PASS
