/* sample.h — the `sample` command: generate text from a checkpoint. */
#ifndef TRIDENT_SAMPLE_H
#define TRIDENT_SAMPLE_H

int sample_main(int argc, char **argv);

#endif
