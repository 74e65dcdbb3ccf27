#!/usr/bin/env bash
# Builds the fuzz targets into build/fuzz/ (or $FUZZ_OUT):
#   fuzz_<target>    libFuzzer + ASan + UBSan (needs clang with libFuzzer)
#   replay_<target>  the same target with a plain main() that runs files
# Usage: tests/fuzz/build.sh            build both kinds
#        tests/fuzz/build.sh --replay   build, then replay tests/fuzz/corpus/<target>/
#        tests/fuzz/build.sh --fuzz N   build, then fuzz each target for N seconds
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${FUZZ_OUT:-build/fuzz}
mkdir -p "$OUT"
# Targets: $FUZZ_TARGETS, else every tests/fuzz/fuzz_<target>.c.
TARGETS=${FUZZ_TARGETS:-$(for f in tests/fuzz/fuzz_*.c; do basename "$f" .c | sed 's/^fuzz_//'; done)}
PKGS="jansson libpcre2-8 libutf8proc libcrypto"
CFLAGS="-std=c11 -D_GNU_SOURCE -Wall -Wextra -g -O1 -fno-omit-frame-pointer -Iinclude -Isrc $(pkg-config --cflags $PKGS 2>/dev/null || true)"
LIBS="$(pkg-config --libs $PKGS 2>/dev/null || echo -ljansson -lpcre2-8 -lutf8proc) -lm -pthread"

# The library sources a target needs (src/cli and SIMD files never).
sources() {
    case "$1" in
    safetensors|config)
        echo src/base/err.c src/base/buf.c src/io/mapfile.c src/io/safetensors.c \
             src/io/safetensors_dir.c src/io/hf_config.c ;;
    chunk_file)
        echo src/base/err.c src/kv/chunk.c src/kv/chunk_file.c ;;
    *)  # default: base, io and tok
        find src/base src/io src/tok -name '*.c' -not -name '*_avx*' 2>/dev/null | sort ;;
    esac
}
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"

have_libfuzzer=1
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){(void)d;(void)n;return 0;}' \
    > "$OUT/probe.c"
clang -fsanitize=fuzzer "$OUT/probe.c" -o "$OUT/probe" 2>/dev/null || have_libfuzzer=0
rm -f "$OUT/probe" "$OUT/probe.c"

for t in $TARGETS; do
    SRC=$(sources "$t")
    # shellcheck disable=SC2086
    clang $CFLAGS $SAN tests/fuzz/fuzz_$t.c tests/fuzz/replay_main.c $SRC $LIBS -o "$OUT/replay_$t"
    if [ $have_libfuzzer = 1 ]; then
        # shellcheck disable=SC2086
        clang $CFLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
            tests/fuzz/fuzz_$t.c $SRC $LIBS -o "$OUT/fuzz_$t"
    fi
done
[ $have_libfuzzer = 1 ] || echo "clang has no libFuzzer here: built the replay binaries only"

case "${1:-}" in
--replay)
    for t in $TARGETS; do
        if [ -d "tests/fuzz/corpus/$t" ]; then "$OUT/replay_$t" "tests/fuzz/corpus/$t"; fi
    done ;;
--fuzz)
    secs=${2:-60}
    for t in $TARGETS; do
        work="$OUT/work_$t"   # new inputs go here, never into the seed corpus
        mkdir -p "$work" "tests/fuzz/corpus/$t"
        dict=(); [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
        "$OUT/fuzz_$t" -max_total_time="$secs" -max_len=4096 "${dict[@]}" \
            -artifact_prefix="$OUT/crash_$t-" "$work" "tests/fuzz/corpus/$t"
    done ;;
esac
