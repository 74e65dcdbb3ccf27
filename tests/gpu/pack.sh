#!/usr/bin/env bash
# Packs what a GPU run needs besides the checkout into .devcarry/ (git-ignored;
# delete it afterwards, nothing of ../shared is ever committed):
#   lib/        shared libraries the device image lacks (jansson, pcre2, ...)
#   a.tar.xz    models/facts-qwen3-14m, golden/qwen3-tiny-random, tokenizers/qwen3
#   b.tar.xz    golden/llama3-tiny-random (kept in .devcarry-b/: one call
#               carries at most 64 MiB, so it goes in a second call)
# Then, on the device (see NOTES.md):
#   mkdir -p /tmp/lib; for l in .devcarry/lib/*; do ldconfig -p | grep -q "$(basename $l)" || cp $l /tmp/lib/; done
#   export LD_LIBRARY_PATH=/tmp/lib
#   python3 -c "import tarfile; tarfile.open('.devcarry/a.tar.xz').extractall('/tmp/s')"
#   TS_SHARED=/tmp/s/shared TS_GPU_MODELS="qwen3 facts" bash tests/gpu/run.sh
set -eu
S=${TS_SHARED:-../shared}
B=${1:-build-cuda/tessera}
st=$(mktemp -d); trap 'rm -rf "$st"' EXIT
mkdir -p .devcarry/lib .devcarry-b
for l in $(ldd "$B" | awk '/=> \// {print $3}'); do
    case $(basename "$l") in
        libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|libstdc++*|libgcc_s*|libcublas*) ;;
        *) cp -L "$l" .devcarry/lib/ ;;
    esac
done
mkdir -p "$st/a/shared/golden" "$st/a/shared/models" "$st/a/shared/tokenizers" "$st/b/shared/golden"
cp -r "$S/models/facts-qwen3-14m" "$st/a/shared/models/"
cp -r "$S/golden/qwen3-tiny-random" "$st/a/shared/golden/"
cp -r "$S/tokenizers/qwen3" "$st/a/shared/tokenizers/"
cp -r "$S/golden/llama3-tiny-random" "$st/b/shared/golden/"
chmod -R u+w "$st"
tar -C "$st/a" -cf - shared | xz -6 -T2 >.devcarry/a.tar.xz
tar -C "$st/b" -cf - shared | xz -6 -T2 >.devcarry-b/b.tar.xz
grep -qx '/.devcarry-b/' .git/info/exclude 2>/dev/null || echo '/.devcarry-b/' >>.git/info/exclude
du -sh .devcarry .devcarry-b
