/* cuda_bf16.h for the CUDA emulator (tests/cuda_emu): the emulator's __nv_bfloat16, whose
 * conversions are those of the toolkit's header (see emu_types.h). */
#include "emu_types.h"
