#!/bin/sh
# The launcher's linker (Package.swift passes it to clang with -fuse-ld). The launcher is a
# static PIE: no ld.so and no shared libc to map at each of its three process starts (launcher,
# init, command) saves ~0.5 ms per sandbox, and PIE keeps its code at a random address.
# SwiftPM adds -rpath=$ORIGIN to every executable, and glibc's static-PIE start-up aborts on a
# binary with a run path, so that one argument is dropped here; the rest goes to GNU ld (gold,
# the toolchain's default, cannot link a static PIE).
for a in "$@"; do
    shift
    case "$a" in
    -rpath=*) ;;
    *) set -- "$@" "$a" ;;
    esac
done
exec ld.bfd "$@"
