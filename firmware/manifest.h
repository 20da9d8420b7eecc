/* The parts of an image's manifest updates rely on: the monotonic model
 * version (header) and the compatibility string (META key "compatible");
 * firmware/sign.h stamps both into an image before it is signed.
 *
 * "compatible" is a space-separated list of BOARD/ABI entries: BOARD a
 * board family name (CONFIG_BOARD_NAME: rpi4, rpi5, jetson-orin-nano,
 * x86_64) or "*" for any, ABI the runtime ABI the image needs
 * (NB_RUNTIME_ABI: raised when a runtime can no longer run older images,
 * or older runtimes newer ones). Example: "rpi4/1 rpi5/1". */
#ifndef NB_MANIFEST_H
#define NB_MANIFEST_H

#include "firmware/image.h"

#include <stdbool.h>
#include <stdint.h>

#define NB_RUNTIME_ABI 1
#define NB_MANIFEST_COMPAT_KEY "compatible"
#define NB_MANIFEST_COMPAT_MAX 256

/* This device: "<CONFIG_BOARD_NAME>/<NB_RUNTIME_ABI>". */
const char *nb_manifest_device(void);

/* Whether compat (len bytes, not NUL-terminated) lists this board (any
 * board if NULL) with this ABI. */
bool nb_manifest_compat_matches(const char *compat, size_t len, const char *board, unsigned abi);

/* The image's compatibility with this runtime's ABI and, if board is not
 * NULL, with that board: 0 if listed, -NB_ENOTSUP if not (logged),
 * -NB_ENOENT if the image has no "compatible" key (logged only when
 * required). Loading checks the ABI only (a host runs a board's image in
 * tests); installing an update checks the board too, and requires the key. */
int nb_manifest_check_compat(const struct nb_image *img, const char *what, const char *board,
			     bool required);

/* A well-formed compatibility string: 1..NB_MANIFEST_COMPAT_MAX bytes of
 * BOARD/ABI entries. */
bool nb_manifest_compat_valid(const char *compat);

#endif
