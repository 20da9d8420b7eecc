#include "firmware/manifest.h"
#include "firmware/atomic.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STR2(x) #x
#define STR(x) STR2(x)

const char *nb_manifest_device(void)
{
	return CONFIG_BOARD_NAME "/" STR(NB_RUNTIME_ABI);
}

/* One BOARD/ABI entry of len bytes. */
static bool entry_matches(const char *e, size_t len, const char *board, unsigned abi)
{
	const char *slash = memchr(e, '/', len);
	char num[16];
	size_t blen, alen;

	if (!slash)
		return false;
	blen = (size_t)(slash - e);
	alen = len - blen - 1;
	if (alen == 0 || alen >= sizeof(num))
		return false;
	snprintf(num, sizeof(num), "%u", abi);
	if (strlen(num) != alen || memcmp(slash + 1, num, alen) != 0)
		return false;
	return !board || (blen == 1 && e[0] == '*') ||
	       (blen == strlen(board) && memcmp(e, board, blen) == 0);
}

bool nb_manifest_compat_matches(const char *compat, size_t len, const char *board, unsigned abi)
{
	size_t i = 0;

	while (i < len) {
		size_t start;

		while (i < len && compat[i] == ' ')
			i++;
		start = i;
		while (i < len && compat[i] != ' ')
			i++;
		if (i > start && entry_matches(compat + start, i - start, board, abi))
			return true;
	}
	return false;
}

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.';
}

bool nb_manifest_compat_valid(const char *compat)
{
	size_t n = strlen(compat), i = 0, entries = 0;

	if (n == 0 || n > NB_MANIFEST_COMPAT_MAX)
		return false;
	while (i < n) {
		size_t b = 0, a = 0;

		while (i < n && compat[i] == ' ')
			i++;
		if (i == n)
			break;
		if (compat[i] == '*')
			b = 1, i++;
		else
			while (i < n && name_char(compat[i]))
				b++, i++;
		if (b == 0 || i == n || compat[i] != '/')
			return false;
		i++;
		while (i < n && compat[i] >= '0' && compat[i] <= '9')
			a++, i++;
		if (a == 0 || a > 9 || (i < n && compat[i] != ' '))
			return false;
		entries++;
	}
	return entries > 0;
}

int nb_manifest_check_compat(const struct nb_image *img, const char *what, const char *board,
			     bool required)
{
	const char *v;
	size_t len;

	if (nb_image_meta(img, NB_MANIFEST_COMPAT_KEY, &v, &len) != 0) {
		if (required)
			nb_err("%s: the manifest has no compatibility string (nibble sign --compatible)",
			       what);
		return -NB_ENOENT;
	}
	if (!nb_manifest_compat_matches(v, len, board, NB_RUNTIME_ABI)) {
		if (board)
			nb_err("%s: made for \"%.*s\", not for this device (%s)", what,
			       (int)(len < 200 ? len : 200), v, nb_manifest_device());
		else
			nb_err("%s: made for \"%.*s\": none of them runtime ABI %d, this runtime's",
			       what, (int)(len < 200 ? len : 200), v, NB_RUNTIME_ABI);
		return -NB_ENOTSUP;
	}
	return 0;
}

/* ---- stamping ---------------------------------------------------------- */

static uint64_t page_up(uint64_t v)
{
	return (v + NB_IMAGE_PAGE - 1) & ~(uint64_t)(NB_IMAGE_PAGE - 1);
}

static size_t record_len(size_t klen, size_t vlen)
{
	return (sizeof(struct nb_image_meta_record) + klen + vlen + 3) & ~(size_t)3;
}

/* The META records with "compatible" replaced (or kept, compat NULL). */
static uint8_t *build_meta(const struct nb_image *img, const char *compat, size_t *out_len)
{
	const char *key = NB_MANIFEST_COMPAT_KEY;
	size_t cap = img->meta_size + (compat ? record_len(strlen(key), strlen(compat)) : 0);
	uint8_t *buf = calloc(1, cap ? cap : 1);
	size_t off = 0, w = 0;

	if (!buf)
		return NULL;
	while (off < img->meta_size) {
		struct nb_image_meta_record r;
		size_t len;

		memcpy(&r, img->meta + off, sizeof(r));
		len = record_len(r.key_len, r.value_len);
		if (!compat || r.key_len != strlen(key) ||
		    memcmp(img->meta + off + sizeof(r), key, r.key_len) != 0) {
			memcpy(buf + w, img->meta + off, len);
			w += len;
		}
		off += len;
	}
	if (compat) {
		struct nb_image_meta_record r = { (uint32_t)strlen(key), (uint32_t)strlen(compat) };
		memcpy(buf + w, &r, sizeof(r));
		memcpy(buf + w + sizeof(r), key, r.key_len);
		memcpy(buf + w + sizeof(r) + r.key_len, compat, r.value_len);
		w += record_len(r.key_len, r.value_len);
	}
	*out_len = w;
	return buf;
}

static const struct nb_image_section *section(const struct nb_image_header *h, uint32_t kind)
{
	for (uint32_t i = 0; i < h->n_sections; i++)
		if (h->sections[i].kind == kind)
			return &h->sections[i];
	return NULL;
}

/* Where the section after META starts: META's room ends there. */
static uint64_t next_after(const struct nb_image_header *h, uint64_t off)
{
	uint64_t next = h->file_size;

	for (uint32_t i = 0; i < h->n_sections; i++)
		if (h->sections[i].offset > off && h->sections[i].offset < next)
			next = h->sections[i].offset;
	return next;
}

static int write_zeros(struct nb_atomic_file *a, uint64_t n)
{
	static const uint8_t zero[NB_IMAGE_PAGE];
	int ret = 0;

	while (!ret && n) {
		size_t k = n < sizeof(zero) ? (size_t)n : sizeof(zero);
		ret = nb_atomic_write_all(a, zero, k, NULL, "stamp");
		n -= k;
	}
	return ret;
}

static int write_stamped(const struct nb_image *img, const char *path, uint64_t version,
			 const uint8_t *meta, size_t meta_len)
{
	const struct nb_image_header *old = img->hdr;
	const struct nb_image_section *m = section(old, NB_SECTION_META);
	uint64_t next = next_after(old, m->offset), room = next - m->offset;
	uint64_t delta = page_up(meta_len) > room ? page_up(meta_len) - room : 0;
	uint64_t body_end = old->file_size - NB_IMAGE_TRAILER_SIZE;
	struct nb_image_header h = *old;
	struct nb_atomic_file a;
	int ret;

	if (version)
		h.model_version = version;
	h.file_size += delta;
	for (uint32_t i = 0; i < h.n_sections; i++) {
		if (h.sections[i].kind == NB_SECTION_META)
			h.sections[i].size = meta_len;
		else if (h.sections[i].offset > m->offset)
			h.sections[i].offset += delta;
	}
	ret = nb_atomic_open(&a, path, 0644);
	if (ret)
		return ret;
	ret = nb_atomic_write_all(&a, &h, sizeof(h), NULL, "stamp");
	if (!ret)
		ret = nb_atomic_write_all(&a, img->map + sizeof(h), m->offset - sizeof(h), NULL, "stamp");
	if (!ret)
		ret = nb_atomic_write_all(&a, meta, meta_len, NULL, "stamp");
	if (!ret)
		ret = write_zeros(&a, room + delta - meta_len);
	if (!ret)
		ret = nb_atomic_write_all(&a, img->map + next, body_end - next, NULL, "stamp");
	if (!ret)
		ret = write_zeros(&a, NB_IMAGE_TRAILER_SIZE);
	if (!ret)
		ret = nb_atomic_sync(&a, NULL, "stamp");
	if (ret) {
		nb_atomic_abort(&a);
		return ret;
	}
	return nb_atomic_rename(&a, 0, NULL, "stamp");
}

int nb_manifest_stamp(const char *path, uint64_t version, const char *compat)
{
	struct nb_image img;
	uint8_t *meta = NULL;
	size_t meta_len;
	int ret;

	if (compat && !nb_manifest_compat_valid(compat)) {
		nb_err("compatibility string \"%s\": want BOARD/ABI entries, e.g. \"rpi5/%u rpi4/%u\" "
		       "or \"*/%u\"", compat, NB_RUNTIME_ABI, NB_RUNTIME_ABI, NB_RUNTIME_ABI);
		return -NB_EINVAL;
	}
	ret = nb_image_open(&img, path, 0);
	if (ret)
		return ret;
	meta = build_meta(&img, compat, &meta_len);
	ret = meta ? write_stamped(&img, path, version, meta, meta_len) : -NB_ENOMEM;
	free(meta);
	nb_image_close(&img);
	if (!ret) {
		/* What was written must read back as a valid image. */
		ret = nb_image_open(&img, path, 0);
		if (!ret)
			nb_image_close(&img);
	}
	return ret;
}
