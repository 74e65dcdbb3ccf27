# tessera build. `make` builds build/tessera and build/libtessera.a;
# `make test` runs every test (a normal build, then ASan+UBSan);
# `make SAN=1` builds the sanitizer variant into build-san/.
CC      ?= cc
SAN     ?= 0
WERROR  ?= 0
OPT     ?= -O2

ifeq ($(SAN),1)
  B       := build-san
  CC      := clang
  OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDSAN   := -fsanitize=address,undefined
else
  B       := build
  LDSAN   :=
endif

PKGS    := libpcre2-8 libutf8proc jansson libcrypto hiredis libmicrohttpd
CFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wpedantic $(OPT) -g -pthread \
           -Iinclude -Isrc $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
ifeq ($(WERROR),1)
  CFLAGS += -Werror
endif
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lpcre2-8 -lutf8proc -ljansson -lcrypto -lhiredis -lmicrohttpd) -lm -pthread

# SIMD kernels are compiled per file for their instruction set and chosen at
# run time, so the binary still runs on CPUs without them.
FLAGS_avx512 := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mfma -mf16c
FLAGS_avx2   := -mavx2 -mfma -mf16c

LIB_SRC := $(shell find src -name '*.c' -not -path 'src/cli/*' | sort)
CLI_SRC := $(sort $(wildcard src/cli/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(B)/obj/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(B)/obj/%.o)
UNIT    := $(patsubst tests/unit/%.c,$(B)/tests/%,$(wildcard tests/unit/test_*.c))
GOLDEN  := $(patsubst tests/golden/%.c,$(B)/tests/%,$(wildcard tests/golden/test_*.c))
TOOLS   := $(patsubst tools/%.c,$(B)/tools/%,$(wildcard tools/*.c))
BENCH   := $(patsubst bench/%.c,$(B)/bench/%,$(wildcard bench/*.c))

all: deps $(B)/tessera $(B)/libtessera.a $(TOOLS)

deps:
	@bash scripts/deps.sh

$(B)/libtessera.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	ar rcs $@ $^

# The server's chat page (src/server/web/index.html) embedded in the library
# as a C string by scripts/embed.sh (a placeholder page if the file is absent).
WEB_PAGE := $(wildcard src/server/web/index.html)
$(B)/gen/web_page.c: scripts/embed.sh $(WEB_PAGE)
	@mkdir -p $(@D)
	sh scripts/embed.sh src/server/web/index.html ts_web_page >$@.tmp && mv $@.tmp $@

$(B)/obj/gen/web_page.o: $(B)/gen/web_page.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(B)/libtessera.a: $(B)/obj/gen/web_page.o

$(B)/tessera: $(CLI_OBJ) $(B)/libtessera.a
	$(CC) $(LDSAN) -o $@ $(CLI_OBJ) $(B)/libtessera.a $(LDLIBS)

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(FLAGS_$(lastword $(subst _, ,$(basename $(notdir $<))))) -MMD -MP -c $< -o $@

$(B)/tests/%: tests/unit/%.c $(B)/libtessera.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests $(LDSAN) -o $@ $< $(B)/libtessera.a $(LDLIBS)

$(B)/tests/%: tests/golden/%.c $(B)/libtessera.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests $(LDSAN) -o $@ $< $(B)/libtessera.a $(LDLIBS)

$(B)/tools/%: tools/%.c $(B)/libtessera.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDSAN) -o $@ $< $(B)/libtessera.a $(LDLIBS)

$(B)/bench/%: bench/%.c $(B)/libtessera.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests $(LDSAN) -o $@ $< $(B)/libtessera.a $(LDLIBS)

tests: $(UNIT) $(GOLDEN) $(B)/tessera
bench: $(BENCH) $(B)/tessera $(TOOLS)

# The whole suite: the optimised build runs everything, then the sanitizer
# build runs the same tests (TS_TEST_LIGHT trims the slowest model sweeps).
test: deps
	@bash scripts/deps.sh --test
	$(MAKE) tests
	bash tests/run.sh $(UNIT) $(GOLDEN) tests/cli/*.sh $(wildcard tests/server/*.sh)
	$(MAKE) SAN=1 tests
	TS_TEST_LIGHT=1 TS_BUILD=build-san bash tests/run.sh $(patsubst $(B)/%,build-san/%,$(UNIT) $(GOLDEN)) tests/cli/*.sh $(wildcard tests/server/test_server_c.sh)

# The main job on the shipped default model: answer a question from a document.
MODEL ?= ../shared/models/facts-qwen3-14m
run: all
	@bash scripts/demo.sh $(B)/tessera $(MODEL)

clean:
	rm -rf build build-san

.PHONY: all deps tests test bench run clean
-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

# ---------------------------------------------------------------------------
# CUDA section (owner: the CUDA backend, issue 6). Inactive unless CUDA=1 or
# one of its targets is named; nothing above depends on it.
#   make CUDA=1            also compiles src/ops/cuda/*.cu (nvcc, sm_90) into
#                          the library and links cudart + cuBLAS
#   make cuda-check        compiles the .cu files and links the GPU tests
#                          (tests/gpu/*.c) without running anything (CI)
#   make CUDA=1 gpu-tests  builds the GPU test binaries; run them on a GPU
#                          machine with tests/gpu/run.sh
# Tip: `make CUDA=1 B=build-cuda ...` keeps these objects out of build/.
CUDA_HOME ?= /usr/local/cuda
NVCC      ?= $(CUDA_HOME)/bin/nvcc
NVFLAGS   := -std=c++17 -arch=sm_90 -O3 -Xcompiler -Wall -Iinclude -Isrc
CUDA_SRC  := $(sort $(wildcard src/ops/cuda/*.cu))
CUDA_OBJ  := $(CUDA_SRC:%.cu=$(B)/obj/%.o)
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart_static \
             -lstdc++ -ldl -lrt -lm -pthread
GPU_TESTS := $(patsubst tests/gpu/%.c,$(B)/tests/gpu/%,$(wildcard tests/gpu/*.c))

$(B)/obj/%.o: %.cu $(wildcard src/ops/cuda/*.cuh) src/ops/cuda/cuda.h src/ops/ops.h
	@mkdir -p $(@D)
	$(NVCC) $(if $(NVARCH_$(notdir $*)),$(filter-out -arch=%,$(NVFLAGS)) $(NVARCH_$(notdir $*)),$(NVFLAGS)) -c $< -o $@

# wgmma exists only in sm_90a, Hopper's architecture-specific target (its
# code runs on sm_90 devices only, which is all this backend targets).
NVARCH_attn_shared_wgmma := -gencode arch=compute_90a,code=sm_90a

# The GPU tests link the CUDA objects, the library and its libraries.
# ts_cuda_create is forced into every CUDA link: src/engine/runtime.c only
# references it weakly, so that builds without CUDA still link ("--device
# cuda" then says to rebuild with CUDA=1).
CUDA_FORCE := -Wl,--undefined=ts_cuda_create
$(B)/tests/gpu/%: tests/gpu/%.c $(CUDA_OBJ) $(B)/libtessera.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(CUDA_OBJ) $(B)/libtessera.a $(filter-out $(CUDA_LIBS),$(LDLIBS)) $(CUDA_LIBS)

ifeq ($(CUDA),1)
$(B)/libtessera.a: $(CUDA_OBJ)
LDLIBS += $(CUDA_FORCE) $(CUDA_LIBS)
endif

cuda-check: $(CUDA_OBJ) $(GPU_TESTS)
gpu-tests: $(GPU_TESTS)

.PHONY: cuda-check gpu-tests
