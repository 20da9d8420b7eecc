#include "runtime/base/err.h"

static const char *const nb_err_text[NB_ERR_COUNT] = {
	[NB_OK] = "success",
	[NB_EINVAL] = "invalid argument",
	[NB_ENOMEM] = "out of memory",
	[NB_EIO] = "input/output error",
	[NB_ENOENT] = "not found",
	[NB_EFORMAT] = "malformed input",
	[NB_ERANGE] = "value out of range",
	[NB_ENOTSUP] = "not supported",
	[NB_EPERM] = "not permitted",
	[NB_ESIG] = "bad signature",
	[NB_EBUSY] = "busy",
	[NB_ECANCELED] = "cancelled",
	[NB_ETIMEDOUT] = "timed out",
	[NB_ESELFTEST] = "self-test failed",
};

const char *nb_strerror(int err)
{
	if (err < 0)
		err = -err;
	if (err >= NB_ERR_COUNT)
		return "unknown error";
	return nb_err_text[err];
}
