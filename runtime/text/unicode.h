/* The Unicode the byte-level BPE pre-tokenizers need: UTF-8, the character
 * classes of their regexes (\p{L}, \p{N}, \s = White_Space) and NFC (Qwen2's
 * normalizer). Data generated from the UCD by tools/gen_unicode.py into
 * runtime/text/unicode_tables.h. */
#ifndef NB_UNICODE_H
#define NB_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The reference pins each table to a Unicode version (tools/gen_unicode.py):
 * \p{L} \p{N} of Unicode 16.0, Digits 17.0, NFC 9.0. */
enum nb_unicode_class {
	NB_UC_OTHER = 0,
	NB_UC_LETTER = 1, /* \p{L}: Lu Ll Lt Lm Lo */
	NB_UC_NUMBER = 2, /* \p{N}: Nd Nl No */
	NB_UC_SPACE = 3,  /* White_Space, what \s means in the tokenizer regexes */
};

#define NB_UC_MAX 0x10FFFFu
#define NB_UC_REPLACEMENT 0xFFFDu

/* enum nb_unicode_class of a code point (unassigned ones are OTHER). */
int nb_unicode_class(uint32_t cp);
/* Numeric as HF's Digits pre-tokenizer sees it (Rust's char::is_numeric):
 * \p{N} of a newer Unicode version than the regexes use. */
bool nb_unicode_is_numeric(uint32_t cp);
/* Canonical combining class. */
unsigned nb_unicode_ccc(uint32_t cp);

/* Decodes the UTF-8 character at s (n >= 1 bytes available) into *cp and
 * returns its length. A malformed or truncated sequence, an overlong form
 * or a surrogate gives U+FFFD and length 1, so callers always advance. */
size_t nb_unicode_decode(const char *s, size_t n, uint32_t *cp);
/* Writes cp (<= U+10FFFF) as UTF-8 into out; returns 1..4. */
size_t nb_unicode_encode(uint32_t cp, char out[4]);

/* True if s is certainly unchanged by NFC (cheap: no code point >= U+0300,
 * below which nothing decomposes to something else or composes). */
bool nb_unicode_nfc_trivial(const char *s, size_t n);
/* NFC of n bytes of UTF-8 into a malloc'd buffer *out (NUL-terminated,
 * *out_len bytes without the NUL). Malformed bytes become U+FFFD. */
int nb_unicode_nfc(const char *s, size_t n, char **out, size_t *out_len);

#endif
