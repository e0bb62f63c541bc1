/* cuda_fp16.h for the CUDA emulator (tests/cuda_emu): the emulator's __half, whose
 * conversions are those of the toolkit's header (see emu_types.h). */
#include "emu_types.h"
