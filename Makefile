# trident — build.
#   make            build bin/trident (CPU backend; every test binary too with `make tests`)
#   make deps       install the Debian packages trident needs (or print the apt-get line)
#   make test       build and run every test (ends with "N passed, N failed, N skipped")
#   make bench      run the benchmarks (ratios measured in the same run)
#   make demo       the README's main job: prepare the fortunes corpus, train, sample

CC       := mpicc
HDF5_PC  := hdf5-openmpi
OPT      ?= -O3 -march=native
CFLAGS   := $(OPT) -std=c11 -D_GNU_SOURCE -fopenmp -Wall -Wextra -Wshadow -Wno-unused-parameter \
            -Isrc -Ikernels -Ikernels/cpu -Iio -MMD -MP
HDF5_CFLAGS ?= $(shell pkg-config --cflags $(HDF5_PC) 2>/dev/null)
HDF5_LIBS   ?= $(shell pkg-config --libs $(HDF5_PC) 2>/dev/null)
CFLAGS   += $(HDF5_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS   := $(HDF5_LIBS) -lopenblas -lm
# oneDNN 2.x (Debian: libdnnl-dev), when installed: bf16 GEMMs on AVX512_BF16 CPUs
# (kernels/cpu/matmul16.c). Without it trident builds and runs as before. DNNL=0 leaves it out.
DNNL     ?= $(if $(wildcard /usr/include/oneapi/dnnl/dnnl.h),1,0)
ifeq ($(DNNL),1)
CFLAGS   += -DTR_HAVE_DNNL
LDLIBS   += -ldnnl
endif

BUILD    := build
BIN      := bin

LIB_SRC  := $(filter-out src/main.c,$(wildcard src/*.c)) $(wildcard kernels/*.c) \
            $(wildcard kernels/cpu/*.c) $(wildcard io/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BIN)/%)
TOOL_SRC := $(wildcard tests/tool_*.c)
TOOL_BIN := $(TOOL_SRC:tests/%.c=$(BIN)/%)
BENCH_SRC := $(wildcard tests/bench_*.c)
BENCH_BIN := $(BENCH_SRC:tests/%.c=$(BIN)/%)

.PHONY: all tests test bench demo deps clean check-deps
all: check-deps $(BIN)/trident

tests: $(BIN)/trident $(TEST_BIN) $(BENCH_BIN) $(TOOL_BIN)

$(BIN)/trident: $(BUILD)/src/main.o $(LIB_OBJ) | $(BIN)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/test_%: $(BUILD)/tests/test_%.o $(LIB_OBJ) | $(BIN)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/tool_%: $(BUILD)/tests/tool_%.o | $(BIN)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/bench_%: $(BUILD)/tests/bench_%.o $(LIB_OBJ) | $(BIN)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# the optimizer updates vectorize only when sqrtf need not set errno (nothing here reads it;
# the results are the same bits: kernels/cpu/optimizers.c, adamw.c)
$(BUILD)/kernels/cpu/optimizers.o $(BUILD)/kernels/cpu/adamw.o: CFLAGS += -fno-math-errno

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BIN):
	@mkdir -p $@

# Refuse to build with a clear message (and the exact fix) when a dependency is missing.
# HDF5 comes from pkg-config (HDF5_PC), or from HDF5_CFLAGS/HDF5_LIBS given on the command
# line (e.g. a site module without a .pc file).
check-deps:
	@command -v $(CC) >/dev/null 2>&1 && { [ -n "$(HDF5_LIBS)" ] || pkg-config --exists $(HDF5_PC); } && \
	  test -e /usr/include/x86_64-linux-gnu/cblas.h -o -e /usr/include/cblas.h || { \
	  echo "trident: missing build dependencies (mpicc, parallel HDF5 or OpenBLAS)."; \
	  echo "HINT: run 'make deps' (slurm/install_deps.sh: installs them with apt-get)"; exit 2; }

deps:
	@./slurm/install_deps.sh

test: all tests
	@./tests/run.sh

bench: all tests
	@./tests/bench.sh

demo: all
	@./slurm/demo.sh

clean:
	rm -rf $(BUILD) $(BIN)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
