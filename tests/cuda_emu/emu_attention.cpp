#include "emu.h"
#include "emu_test.h"
#include "test.h"
void emu_suite_attention(int counts[3]) { EMU_SUITE_END(counts); }
