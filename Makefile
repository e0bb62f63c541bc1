# trident — build.
#   make            build bin/trident (CPU backend; every test binary too with `make tests`)
#   make deps       install the Debian packages trident needs (or print the apt-get line)
#   make test       build and run every test (ends with "N passed, N failed, N skipped")
#   make bench      run the benchmarks (ratios measured in the same run); with BACKEND=cuda
#                   the GPU one: GPT-2 124M MFU vs the GPU's peak and vs cuBLAS
#   make demo       the README's main job: prepare the fortunes corpus, train, sample
#   make BACKEND=cuda [CUDA_ARCHS="80 90"] [CUDA_HOME=/usr/local/cuda]
#                   the CUDA build: bin-cuda/trident with both backends (device = cpu | cuda;
#                   the CPU one stays the reference the CUDA one is tested against), cuBLAS,
#                   NCCL; objects in build-cuda/. `make BACKEND=cuda tests` also builds the
#                   GPU suites bin-cuda/cudatest_* (tests/cudatest_*.c).

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

BACKEND  ?= cpu
# Files that call the CUDA runtime, cuBLAS or NCCL end in _cuda.c or _nccl.c (host C) or
# .cu (nvcc) and are built only by BACKEND=cuda; everything else (including the host-side
# logic under kernels/cuda/ that the CPU tests check: pool, launch shapes) is in both.
GPU_ONLY := %_cuda.c %_nccl.c
LIB_SRC  := $(filter-out src/main.c $(GPU_ONLY),$(wildcard src/*.c) $(wildcard kernels/*.c) \
            $(wildcard kernels/cpu/*.c) $(wildcard kernels/cuda/*.c) $(wildcard io/*.c))
CU_SRC   :=
ifeq ($(BACKEND),cuda)
CUDA_HOME  ?= /usr/local/cuda
NVCC       ?= $(CUDA_HOME)/bin/nvcc
CUDA_ARCHS ?= 80 90
BUILD    := build-cuda
BIN      := bin-cuda
CFLAGS   += -DTR_HAVE_CUDA -I$(CUDA_HOME)/include -Ikernels/cuda
LIB_SRC  += $(filter $(GPU_ONLY),$(wildcard src/*.c) $(wildcard kernels/cuda/*.c))
CU_SRC   := $(wildcard kernels/cuda/*.cu)
NVFLAGS  := -O3 -std=c++17 -DTR_HAVE_CUDA -Isrc -Ikernels -Ikernels/cuda -Ikernels/cpu \
            $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
            -Xcompiler -Wall,-Wno-unused-parameter -MMD -MP $(EXTRA_NVFLAGS)
LDLIBS   += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lnccl \
            -lcudart -lstdc++
else ifneq ($(BACKEND),cpu)
$(error BACKEND is cpu or cuda, not '$(BACKEND)')
else
BUILD    := build
BIN      := bin
endif

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CU_SRC:%.cu=$(BUILD)/%.o)
CUDATEST_SRC := $(if $(CU_SRC),$(wildcard tests/cudatest_*.c))
CUDATEST_BIN := $(CUDATEST_SRC:tests/%.c=$(BIN)/%)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BIN)/%)
# bin/test_cuda_emu (CPU build): the CUDA kernels' own source (kernels/cuda/<name>_k.cuh) built
# with g++ against tests/cuda_emu's imitation of CUDA blocks and warps and checked against the
# CPU backend, so every test run checks the device code without a GPU. -ffp-contract=off:
# no multiply-add is fused that the GPU build (-fmad=false where it matters) keeps apart.
# EMU_SAN (AddressSanitizer by default; `make EMU_SAN=` builds without it): a kernel's
# access out of bounds of its buffers or of a static __shared__ array stops the test.
ifeq ($(BACKEND),cpu)
EMU_SAN  ?= -fsanitize=address -fno-omit-frame-pointer
EMU_SRC  := $(wildcard tests/cuda_emu/*.cpp)
EMU_OBJ  := $(EMU_SRC:%.cpp=$(BUILD)/%.o)
EMU_CXXFLAGS := -std=c++17 -pthread -ffp-contract=off -O1 -DTR_CUDA_EMU -Wall \
            -Wno-unused-parameter -Wno-unused-function -Wno-unused-variable \
            -Wno-unknown-pragmas -Wno-sign-compare -Itests/cuda_emu/include -Itests/cuda_emu \
            -Itests -Ikernels/cuda -Ikernels -Isrc -MMD -MP $(EMU_SAN)
TEST_BIN += $(BIN)/test_cuda_emu
endif
TOOL_SRC := $(wildcard tests/tool_*.c)
TOOL_BIN := $(TOOL_SRC:tests/%.c=$(BIN)/%)
BENCH_SRC := $(wildcard tests/bench_*.c)
BENCH_BIN := $(BENCH_SRC:tests/%.c=$(BIN)/%)

.PHONY: all tests test bench demo deps clean check-deps
all: check-deps $(BIN)/trident

tests: $(BIN)/trident $(TEST_BIN) $(BENCH_BIN) $(TOOL_BIN) $(CUDATEST_BIN)

$(BIN)/trident: $(BUILD)/src/main.o $(LIB_OBJ) | $(BIN)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/test_%: $(BUILD)/tests/test_%.o $(LIB_OBJ) | $(BIN)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/test_cuda_emu: $(EMU_OBJ) $(LIB_OBJ) | $(BIN)
	$(CC) $(CFLAGS) $(EMU_SAN) -pthread -o $@ $^ $(LDLIBS) -lstdc++

$(BUILD)/tests/cuda_emu/%.o: tests/cuda_emu/%.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -c -o $@ $<

$(BIN)/tool_%: $(BUILD)/tests/tool_%.o | $(BIN)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/bench_%: $(BUILD)/tests/bench_%.o $(LIB_OBJ) | $(BIN)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/cudatest_%: $(BUILD)/tests/cudatest_%.o $(LIB_OBJ) | $(BIN)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# the optimizer updates vectorize only when sqrtf need not set errno (nothing here reads it;
# the results are the same bits: kernels/cpu/optimizers.c, adamw.c)
$(BUILD)/kernels/cpu/optimizers.o $(BUILD)/kernels/cpu/adamw.o: CFLAGS += -fno-math-errno

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c -o $@ $<

ifeq ($(BACKEND),cuda)
# The element-wise and optimizer kernels repeat the CPU reference's fp32 arithmetic
# operation for operation: without fused multiply-adds their results agree bit for bit.
$(BUILD)/kernels/cuda/elementwise.o $(BUILD)/kernels/cuda/optimizers.o: NVFLAGS += -fmad=false
endif

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
ifeq ($(BACKEND),cuda)
	@test -x "$(NVCC)" && test -e "$(CUDA_HOME)/include/nccl.h" && test -e "$(CUDA_HOME)/include/cublasLt.h" || { \
	  echo "trident: BACKEND=cuda needs the CUDA toolkit with cuBLAS and NCCL under CUDA_HOME=$(CUDA_HOME)"; \
	  echo "HINT: install the CUDA toolkit (nvcc, cuBLAS) and NCCL, and pass CUDA_HOME=<its prefix>"; exit 2; }
endif

deps:
	@./slurm/install_deps.sh

test: all tests
	@./tests/run.sh

# BACKEND=cuda: the GPU section alone (tests/bench.sh 11: bin-cuda/bench_train on the GPU)
bench: all tests
	@./tests/bench.sh $(if $(filter cuda,$(BACKEND)),11)

demo: all
	@./slurm/demo.sh

clean:
	rm -rf build bin build-cuda bin-cuda

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
