/* Signature checks where images are used: whole files (nibble verify,
 * updates) and images as they load, under a trust policy (firmware/trust.h).
 *
 * Loading stays fast: the first load of an image in a boot hashes the whole
 * file (the tensor data on several threads, at close to disk speed; it also
 * brings the pages in, which the first token needs anyway) and records the
 * file's identity (device, inode, size, mtime, ctime, boot id, signed
 * digest) in the policy's record directory. Later loads in the same boot
 * find the record and check only the trailer and that its key is still
 * trusted (microseconds; the ECDSA check alone costs milliseconds). Any
 * write to the file changes its ctime, so a changed file is checked in
 * full again; a file changed within the current clock tick is not
 * recorded (file times are that coarse). The records trust the file
 * system: whoever can write the file behind the kernel's back (the raw
 * block device) is root, and could replace the binary too. */
#ifndef NB_VERIFY_H
#define NB_VERIFY_H

#include "firmware/image.h"
#include "firmware/manifest.h"
#include "firmware/sig.h"
#include "firmware/trust.h"

/* What a verified file is. */
struct nb_verified {
	struct nb_sig_info sig;
	uint64_t model_version;
	char name[64];                               /* META "name" */
	char compat[NB_MANIFEST_COMPAT_MAX + 1];     /* META "compatible", "" if none */
};

/* The whole file, signature required whatever the policy says about
 * unsigned images; then the image's structure. 0 or -NB_ESIG/-NB_EFORMAT/
 * -NB_EIO/-NB_ENOENT, each with a message naming path. */
int nb_verify_file(const char *path, const struct nb_trust *t, struct nb_verified *out);

/* An image just opened (nb_image_open), under the policy: unsigned images
 * refused or loudly allowed, signed ones checked (in full, or only the
 * trailer when this boot's record says the file was checked), and an image
 * whose compatibility string does not list this runtime's ABI refused. */
int nb_verify_image(const struct nb_image *img, const char *path, const struct nb_trust *t,
		    struct nb_sig_info *info);

#endif
