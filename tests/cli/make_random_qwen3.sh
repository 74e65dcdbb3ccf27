#!/usr/bin/env bash
# tools/make_random_qwen3: writes a small random Qwen3 checkpoint (real
# vocabulary, tiny hidden size) and checks it three ways: tessera's own
# config/safetensors loaders (--check), an independent reading of the
# safetensors header in Python, and byte-for-byte reproducibility by seed.
# Bad arguments must fail with a message. Uses $TS_BUILD and $TS_SHARED.
set -u
B=${TS_BUILD:-build}
S=${TS_SHARED:-../shared}
TOOL="$B/tools/make_random_qwen3"
pass=0; fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL make_random_qwen3: $*" >&2; }
check() { if eval "$2"; then ok; else bad "$1"; fi; }

# `make tests` does not build tools: build this one if needed
if [ ! -x "$TOOL" ]; then
    if [ "$B" = build-san ]; then make -s SAN=1 "$TOOL" >/dev/null; else make -s "$TOOL" >/dev/null; fi
fi
check "tool is built ($TOOL)" '[ -x "$TOOL" ]'

M="$tmp/m"
"$TOOL" "$M" --layers 2 --hidden 64 --heads 4 --kv-heads 2 --head-dim 16 --ffn 96 \
    --seed 5 --tokenizer "$S/tokenizers/qwen3" >"$tmp/log" 2>&1
check "tiny checkpoint written (exit 0)" '[ $? -eq 0 ]'
for f in config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json; do
    check "$f exists" '[ -s "$M/$f" ]'
done
check "tokenizer.json copied verbatim" 'cmp -s "$M/tokenizer.json" "$S/tokenizers/qwen3/tokenizer.json"'
check "tokenizer_config.json copied verbatim" \
    'cmp -s "$M/tokenizer_config.json" "$S/tokenizers/qwen3/tokenizer_config.json"'

# tessera's loaders accept it, with every tensor shaped as the config says
"$TOOL" --check "$M" >"$tmp/check" 2>&1
check "loads with ts_config_load + ts_st_open_dir ($(tr '\n' ' ' <"$tmp/check"))" '[ $? -eq 0 ]'

# independent reading of the format
python3 - "$M" >"$tmp/py" 2>&1 <<'PY'
import json, struct, sys, os
d = sys.argv[1]
cfg = json.load(open(os.path.join(d, "config.json")))
assert cfg["rope_theta"] == 1000000 and cfg["rope_scaling"] is None, "rope fields"
assert "rope_parameters" not in cfg, "transformers 4 layout expected"
assert cfg["torch_dtype"] == "bfloat16" and cfg["tie_word_embeddings"] is True
assert cfg["architectures"] == ["Qwen3ForCausalLM"] and cfg["model_type"] == "qwen3"
assert cfg["bos_token_id"] == 151643 and cfg["eos_token_id"] == 151645
assert cfg["max_position_embeddings"] == 40960 and abs(cfg["rms_norm_eps"] - 1e-6) < 1e-12
gen = json.load(open(os.path.join(d, "generation_config.json")))
assert 151645 in gen["eos_token_id"]
p = os.path.join(d, "model.safetensors")
size = os.path.getsize(p)
with open(p, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    raw = f.read(n)
assert (8 + n) % 8 == 0, "header not padded to 8 bytes"
assert raw.rstrip(b" ") == raw.rstrip(), "padding must be spaces"
h = json.loads(raw)
h.pop("__metadata__", None)
L, H, V, F = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"]
hd, nq, nkv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
want = {"model.embed_tokens.weight": [V, H], "model.norm.weight": [H]}
for i in range(L):
    pre = "model.layers.%d." % i
    want.update({pre + "input_layernorm.weight": [H], pre + "post_attention_layernorm.weight": [H],
                 pre + "self_attn.q_proj.weight": [nq * hd, H], pre + "self_attn.k_proj.weight": [nkv * hd, H],
                 pre + "self_attn.v_proj.weight": [nkv * hd, H], pre + "self_attn.o_proj.weight": [H, nq * hd],
                 pre + "self_attn.q_norm.weight": [hd], pre + "self_attn.k_norm.weight": [hd],
                 pre + "mlp.gate_proj.weight": [F, H], pre + "mlp.up_proj.weight": [F, H],
                 pre + "mlp.down_proj.weight": [H, F]})
assert set(h) == set(want), "tensor names differ: %s" % sorted(set(h) ^ set(want))
spans = []
for k, v in h.items():
    assert v["dtype"] == "BF16", k
    assert v["shape"] == want[k], (k, v["shape"], want[k])
    b, e = v["data_offsets"]
    cnt = 1
    for s in v["shape"]:
        cnt *= s
    assert e - b == 2 * cnt, k
    spans.append((b, e))
spans.sort()
pos = 0
for b, e in spans:
    assert b == pos, "gap or overlap at %d" % b
    pos = e
assert 8 + n + pos == size, "file size %d, expected %d" % (size, 8 + n + pos)
print("ok")
PY
check "python reads the header: names, shapes, offsets, padding ($(tail -n 1 "$tmp/py"))" \
    '[ "$(tail -n 1 "$tmp/py")" = ok ]'

# same seed, same bytes; another seed, other bytes
"$TOOL" "$tmp/m2" --layers 2 --hidden 64 --heads 4 --kv-heads 2 --head-dim 16 --ffn 96 \
    --seed 5 --no-tokenizer >/dev/null 2>&1
check "same seed reproduces model.safetensors" 'cmp -s "$M/model.safetensors" "$tmp/m2/model.safetensors"'
check "--no-tokenizer writes no tokenizer" '[ ! -e "$tmp/m2/tokenizer.json" ]'
"$TOOL" "$tmp/m3" --layers 2 --hidden 64 --heads 4 --kv-heads 2 --head-dim 16 --ffn 96 \
    --seed 6 --no-tokenizer >/dev/null 2>&1
check "another seed changes the weights" '! cmp -s "$M/model.safetensors" "$tmp/m3/model.safetensors"'

# errors: a message and a non-zero exit
touch "$tmp/file"
expect_fail() { # name, args...
    local name=$1; shift
    "$TOOL" "$@" >/dev/null 2>"$tmp/err"; local rc=$?
    check "$name fails" '[ $rc -ne 0 ] && grep -q "make_random_qwen3" "$tmp/err"'
}
expect_fail "no OUT_DIR"
expect_fail "unknown option" "$tmp/e1" --bogus 1
expect_fail "non-numeric --layers" "$tmp/e2" --layers abc
expect_fail "heads not a multiple of kv-heads" "$tmp/e3" --heads 5 --kv-heads 2
expect_fail "OUT_DIR under a file" "$tmp/file/sub" --layers 1 --hidden 8 --vocab 16 --no-tokenizer
expect_fail "missing tokenizer dir" "$tmp/e4" --layers 1 --hidden 8 --vocab 16 --tokenizer "$tmp/none"
expect_fail "option without value" "$tmp/e5" --seed
"$TOOL" --check "$tmp/file" >/dev/null 2>&1
check "--check on a non-checkpoint fails" '[ $? -ne 0 ]'

# the engine runs it, when the CLI is built
if [ -x "$B/tessera" ]; then
    "$B/tessera" logits -m "$M" --ids 1,2,3 --out "$tmp/l.f32" --threads 1 >/dev/null 2>&1
    check "tessera logits runs on it" '[ $? -eq 0 ] && [ "$(stat -c %s "$tmp/l.f32")" -eq $((151936 * 4)) ]'
fi

echo "make_random_qwen3: $pass passed, $fail failed"
[ $fail -eq 0 ]
