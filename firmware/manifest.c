#include "firmware/manifest.h"
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
