#include "firmware/sign.h"
#include "firmware/atomic.h"
#include "firmware/drbg.h"
#include "firmware/image.h"
#include "firmware/manifest.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/base/sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

static int load_private_key(mbedtls_pk_context *pk, const char *path)
{
	int ret = mbedtls_pk_parse_keyfile(pk, path, NULL);

	if (ret) {
		nb_err("%s: cannot read the private key (mbedTLS -0x%04x)", path, (unsigned)-ret);
		return -NB_EFORMAT;
	}
	if (mbedtls_pk_get_type(pk) != MBEDTLS_PK_ECKEY ||
	    mbedtls_pk_ec(*pk)->grp.id != MBEDTLS_ECP_DP_SECP256R1) {
		nb_err("%s: not an ECDSA P-256 private key", path);
		return -NB_EFORMAT;
	}
	return 0;
}

static int make_statement(const struct nb_image *img, mbedtls_pk_context *pk, unsigned threads,
			  struct nb_sig_statement *st)
{
	const struct nb_image_header *h = img->hdr;
	const struct nb_image_section *data = NULL;

	for (uint32_t i = 0; i < h->n_sections; i++)
		if (h->sections[i].kind == NB_SECTION_DATA)
			data = &h->sections[i];
	memset(st, 0, sizeof(*st));
	memcpy(st->magic, NB_TRAILER_MAGIC, 8);
	st->version = NB_SIG_VERSION;
	st->algorithm = NB_SIG_ALG_ECDSA_P256_SHA256;
	st->chunk_size = NB_SIG_CHUNK;
	st->file_size = img->map_size;
	st->data_offset = data->offset;
	st->data_size = data->size;
	if (nb_sig_key_id(pk, st->key_id))
		return -NB_EFORMAT;
	return nb_sig_digests(img->map, img->map_size, st->data_offset, st->data_size, threads,
			      st->head_digest, st->data_digest);
}

static int sign_statement(mbedtls_pk_context *pk, struct nb_sig_trailer *tr, uint8_t digest[32])
{
	struct nb_drbg rng;
	size_t len = 0;
	unsigned char sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
	int ret;

	if (mbedtls_sha256_ret((const void *)&tr->st, sizeof(tr->st), digest, 0))
		return -NB_EIO;
	ret = nb_drbg_open(&rng, "nibble sign");
	if (ret)
		return ret;
	/* Deterministic ECDSA (RFC 6979); the generator only blinds. */
	ret = mbedtls_pk_sign(pk, MBEDTLS_MD_SHA256, digest, 32, sig, &len, nb_drbg_random, &rng);
	nb_drbg_close(&rng);
	if (ret || len > NB_SIG_MAX_LEN) {
		nb_err("sign: ECDSA failed (mbedTLS -0x%04x)", (unsigned)-ret);
		return -NB_EIO;
	}
	memcpy(tr->sig, sig, len);
	tr->sig_len = (uint32_t)len;
	return 0;
}

static int write_trailer(const char *path, const struct nb_image *img,
			 const struct nb_sig_trailer *tr)
{
	uint8_t page[NB_IMAGE_TRAILER_SIZE] = { 0 };
	int fd = open(path, O_WRONLY | O_CLOEXEC), ret = 0;

	memcpy(page, tr, sizeof(*tr));
	if (fd < 0 || pwrite(fd, page, sizeof(page), (off_t)(img->map_size - sizeof(page))) !=
			      (ssize_t)sizeof(page) || fsync(fd) != 0) {
		nb_err("%s: cannot write the signature: %s", path, strerror(errno));
		ret = -NB_EIO;
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

int nb_sign_file(const char *path, const char *key_path, unsigned threads,
		     struct nb_sig_info *info)
{
	double t0 = nb_sys_now();
	mbedtls_pk_context pk;
	struct nb_sig_trailer tr;
	struct nb_image img;
	int ret;

	memset(info, 0, sizeof(*info));
	memset(&tr, 0, sizeof(tr));
	mbedtls_pk_init(&pk);
	ret = load_private_key(&pk, key_path);
	if (ret)
		goto out_pk;
	/* Only a valid image is worth a signature. */
	ret = nb_image_open(&img, path, 0);
	if (ret)
		goto out_pk;
	ret = make_statement(&img, &pk, threads, &tr.st);
	if (!ret)
		ret = sign_statement(&pk, &tr, info->digest);
	if (!ret)
		ret = write_trailer(path, &img, &tr);
	if (!ret) {
		info->is_signed = true;
		info->st = tr.st;
	}
	nb_image_close(&img);
out_pk:
	mbedtls_pk_free(&pk);
	info->seconds = nb_sys_now() - t0;
	return ret;
}

/* ---- keys -------------------------------------------------------------- */

static int pub_path_of(const char *key_path, char *out, size_t cap)
{
	size_t n = strlen(key_path);
	int len;

	if (n > 4 && strcmp(key_path + n - 4, ".pem") == 0)
		len = snprintf(out, cap, "%.*s.pub.pem", (int)(n - 4), key_path);
	else
		len = snprintf(out, cap, "%s.pub.pem", key_path);
	return len < 0 || (size_t)len >= cap ? -NB_EINVAL : 0;
}

static int write_keys(mbedtls_pk_context *pk, const char *key_path, const char *pub_path,
		      bool force)
{
	unsigned char priv[1024], pub[512];
	unsigned flags = force ? 0 : NB_ATOMIC_NOREPLACE;
	int ret;

	if (mbedtls_pk_write_key_pem(pk, priv, sizeof(priv)) ||
	    mbedtls_pk_write_pubkey_pem(pk, pub, sizeof(pub)))
		return -NB_EIO;
	if (!force && access(pub_path, F_OK) == 0) {
		nb_err("%s: exists (not replaced; --force replaces it)", pub_path);
		ret = -NB_EBUSY;
	} else {
		ret = nb_atomic_write(key_path, priv, strlen((char *)priv), 0600, flags, NULL, "key");
		if (!ret)
			ret = nb_atomic_write(pub_path, pub, strlen((char *)pub), 0644, flags, NULL,
					      "key");
	}
	mbedtls_platform_zeroize(priv, sizeof(priv));
	return ret;
}

int nb_sign_keygen(const char *key_path, bool force, char *pub_path, size_t pub_cap)
{
	mbedtls_pk_context pk;
	struct nb_drbg rng;
	int ret;

	if (pub_path_of(key_path, pub_path, pub_cap))
		return -NB_EINVAL;
	ret = nb_drbg_open(&rng, "nibble keygen");
	if (ret)
		return ret;
	mbedtls_pk_init(&pk);
	ret = mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
	if (!ret)
		ret = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk), nb_drbg_random,
					  &rng);
	if (ret) {
		nb_err("keygen: P-256 key generation failed (mbedTLS -0x%04x)", (unsigned)-ret);
		ret = -NB_EIO;
	} else {
		ret = write_keys(&pk, key_path, pub_path, force);
	}
	mbedtls_pk_free(&pk);
	nb_drbg_close(&rng);
	return ret;
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

int nb_sign_stamp(const char *path, uint64_t version, const char *compat)
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
