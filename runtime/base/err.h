/* Error codes. Actions return 0 or -NB_E*; details go to the logger. */
#ifndef NB_ERR_H
#define NB_ERR_H

enum nb_err {
	NB_OK = 0,
	NB_EINVAL,     /* bad argument or option */
	NB_ENOMEM,     /* allocation failed or over the memory budget */
	NB_EIO,        /* read/write/mmap failed */
	NB_ENOENT,     /* file, tensor or key not found */
	NB_EFORMAT,    /* malformed input: image, checkpoint, request, config */
	NB_ERANGE,     /* a size, offset or count outside what is allowed */
	NB_ENOTSUP,    /* valid but unsupported (dtype, architecture, CPU) */
	NB_EPERM,      /* not allowed */
	NB_ESIG,       /* signature missing or wrong */
	NB_EBUSY,      /* resource in use / queue full */
	NB_ECANCELED,  /* cancelled by the caller or the client */
	NB_ETIMEDOUT,  /* deadline passed */
	NB_ESELFTEST,  /* a built-in check failed */
	NB_ERR_COUNT
};

/* Human-readable text for 0, -NB_E* or NB_E*; never NULL. */
const char *nb_strerror(int err);

#endif
