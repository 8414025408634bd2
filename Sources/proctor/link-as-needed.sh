#!/bin/sh
# The linker of the `proctor` executable (Package.swift passes it to clang with -fuse-ld): the
# toolchain's gold (GNU ld where gold is missing) with --as-needed first. libcurl comes in through
# pkg-config like the other system libraries, and SwiftPM puts its -lcurl ahead of any flag a
# target can add, where a later --as-needed has no effect. proctor calls libcurl only through
# pointers from dlopen (Sources/CCurl/shim.h), so --as-needed leaves it out of the NEEDED
# entries: a `proctor exec` starts ~4 ms sooner than with libcurl and its dependencies loaded.
if command -v ld.gold >/dev/null 2>&1; then
    exec ld.gold --as-needed "$@"
fi
exec ld --as-needed "$@"
