#include "kernels/opencl.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One work-item per (output row, activation row): the row's groups in
 * increasing order, group g into lane g % 4, each step rounded as
 * nb_dot_epilogue_step rounds it. OpenCL C may contract a * b + c into a
 * fused multiply-add unless told not to; the pragma tells it. The levels
 * are read as quant.h lays them out (any group, 4 or 8 bits, with or
 * without zero points), the int32 sums with plain multiplies and adds
 * (exact in any order), so no extension is needed. */
const char nb_ocl_source[] =
	"#pragma OPENCL FP_CONTRACT OFF\n"
	"__kernel void nb_mm_q(__global float *out, __global const uchar *w,\n"
	"	__global const char *aq, __global const float *ad, __global const int *asum,\n"
	"	uint nrows, uint kp, uint G, uint ng, uint bsize, uint bits, uint zp)\n"
	"{\n"
	"	const uint j = get_global_id(0), i = get_global_id(1);\n"
	"	if (j >= nrows)\n"
	"		return;\n"
	"	const uint r = j & 3u, rb = G * bits / 8u, L = zp ? 12u : 8u;\n"
	"	__global const uchar *blk = w + (size_t)(j >> 2) * ng * bsize;\n"
	"	__global const char *x = aq + (size_t)i * kp;\n"
	"	float lane[4] = { 0.0f, 0.0f, 0.0f, 0.0f };\n"
	"	for (uint g = 0; g < ng; g++, blk += bsize, x += G) {\n"
	"		__global const uchar *lv = blk + L + r * rb;\n"
	"		int isum = 0;\n"
	"		if (bits == 8u) {\n"
	"			for (uint c = 0; c < G; c++)\n"
	"				isum += (int)(char)lv[c] * (int)x[c];\n"
	"		} else {\n"
	"			const uint h = G / 2u;\n"
	"			for (uint c = 0; c < h; c++)\n"
	"				isum += (int)(lv[c] & 15) * (int)x[c] + (int)(lv[c] >> 4) * (int)x[c + h];\n"
	"		}\n"
	"		const int off = zp ? (int)((blk[8u + r / 2u] >> ((r & 1u) * 4u)) & 15u)\n"
	"				   : bits == 4u ? 8 : 0;\n"
	"		const float dw = vload_half(r, (__global const half *)blk);\n"
	"		const float da = ad[(size_t)i * ng + g];\n"
	"		isum -= off * asum[(size_t)i * ng + g];\n"
	"		lane[g & 3u] = lane[g & 3u] + (dw * da) * (float)isum;\n"
	"	}\n"
	"	out[(size_t)i * nrows + j] = (lane[0] + lane[1]) + (lane[2] + lane[3]);\n"
	"}\n";

/* ---- opening a device ------------------------------------------------------ */

/* The index-th device over every platform, with its platform's name. */
static int find_device(unsigned index, cl_device_id *dev, char *platform, size_t len)
{
	cl_platform_id ids[16];
	cl_uint np = 0;
	cl_int e = clGetPlatformIDs(16, ids, &np);
	const unsigned wanted = index;

	if (e != CL_SUCCESS || np == 0) {
		nb_warn("opencl: no platform (no ICD installed, error %d)", e);
		return -NB_ENOENT;
	}
	for (cl_uint p = 0; p < np && p < 16; p++) {
		cl_uint nd = 0;
		cl_device_id devs[16];
		if (clGetDeviceIDs(ids[p], CL_DEVICE_TYPE_ALL, 16, devs, &nd) != CL_SUCCESS)
			continue;
		if (index < nd && index < 16) {
			*dev = devs[index];
			if (clGetPlatformInfo(ids[p], CL_PLATFORM_NAME, len, platform, NULL))
				snprintf(platform, len, "?");
			return 0;
		}
		index -= nd < 16 ? nd : 16;
	}
	nb_warn("opencl: no device %u on %u platform(s)", wanted, np);
	return -NB_ENOENT;
}

/* The reference's floats: round to nearest, subnormals kept. */
static int check_floats(cl_device_id dev)
{
	const cl_device_fp_config need = CL_FP_ROUND_TO_NEAREST | CL_FP_DENORM;
	cl_device_fp_config fp = 0;

	if (clGetDeviceInfo(dev, CL_DEVICE_SINGLE_FP_CONFIG, sizeof(fp), &fp, NULL) != CL_SUCCESS ||
	    (fp & need) != need) {
		nb_warn("opencl: the device does not round floats like the CPU (fp config 0x%llx)",
			(unsigned long long)fp);
		return -NB_ENOTSUP;
	}
	return 0;
}

/* Logs the first lines of the build log. */
static void log_build_failure(struct nb_ocl *o, cl_int e)
{
	char text[512] = "";
	size_t n = 0;

	clGetProgramBuildInfo(o->program, o->device, CL_PROGRAM_BUILD_LOG, sizeof(text) - 1, text, &n);
	text[sizeof(text) - 1] = '\0';
	for (size_t i = strlen(text); i > 0 && (text[i - 1] == '\n' || text[i - 1] == ' '); i--)
		text[i - 1] = '\0';
	for (char *c = text; *c; c++)
		if (*c == '\n')
			*c = ' ';
	nb_warn("opencl: the kernels do not build for %s (error %d): %.300s", o->name, e, text);
}

static int build(struct nb_ocl *o, const char *source)
{
	cl_int e;

	o->program = clCreateProgramWithSource(o->context, 1, &source, NULL, &e);
	if (e != CL_SUCCESS) {
		nb_warn("opencl: clCreateProgramWithSource: error %d", e);
		return -NB_EIO;
	}
	e = clBuildProgram(o->program, 1, &o->device, "-cl-std=CL1.2", NULL, NULL);
	if (e != CL_SUCCESS) {
		log_build_failure(o, e);
		return -NB_EFORMAT;
	}
	o->mm_q = clCreateKernel(o->program, "nb_mm_q", &e);
	if (e != CL_SUCCESS) {
		nb_warn("opencl: no kernel nb_mm_q in the program (error %d)", e);
		return -NB_EFORMAT;
	}
	return 0;
}

int nb_ocl_open(struct nb_ocl *o, unsigned index, const char *source)
{
	char platform[64] = "", device[64] = "";
	cl_int e;
	int ret;

	memset(o, 0, sizeof(*o));
	ret = find_device(index, &o->device, platform, sizeof(platform));
	if (ret)
		return ret;
	if (clGetDeviceInfo(o->device, CL_DEVICE_NAME, sizeof(device), device, NULL))
		snprintf(device, sizeof(device), "?");
	platform[sizeof(platform) - 1] = device[sizeof(device) - 1] = '\0';
	snprintf(o->name, sizeof(o->name), "%s: %s", platform, device);
	ret = check_floats(o->device);
	if (ret)
		return ret;
	if (pthread_mutex_init(&o->lock, NULL))
		return -NB_ENOMEM;
	ret = -NB_EIO;
	o->context = clCreateContext(NULL, 1, &o->device, NULL, NULL, &e);
	if (e != CL_SUCCESS) {
		nb_warn("opencl: clCreateContext on %s: error %d", o->name, e);
		goto fail;
	}
	o->queue = clCreateCommandQueue(o->context, o->device, 0, &e);
	if (e != CL_SUCCESS) {
		nb_warn("opencl: clCreateCommandQueue on %s: error %d", o->name, e);
		goto fail;
	}
	ret = build(o, source);
	if (ret)
		goto fail;
	return 0;
fail:
	nb_ocl_close(o);
	return ret;
}

void nb_ocl_close(struct nb_ocl *o)
{
	if (o->mm_q)
		clReleaseKernel(o->mm_q);
	if (o->program)
		clReleaseProgram(o->program);
	if (o->queue)
		clReleaseCommandQueue(o->queue);
	if (o->context) {
		clReleaseContext(o->context);
		pthread_mutex_destroy(&o->lock);
	}
	memset(o, 0, sizeof(*o));
}

/* ---- one product ------------------------------------------------------------ */

struct mm_bufs {
	cl_mem w, aq, ad, asum, out;
};

static void release_bufs(struct mm_bufs *b)
{
	cl_mem *all[] = { &b->w, &b->aq, &b->ad, &b->asum, &b->out };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (*all[i])
			clReleaseMemObject(*all[i]);
}

static cl_mem copy_in(struct nb_ocl *o, const void *p, size_t bytes, cl_int *e)
{
	return clCreateBuffer(o->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes, (void *)p,
			      e);
}

/* Runs the kernel on rows [r0, r0 + nrows) into res [m][nrows]; the
 * weights are copied per call (caching them is a later step). */
static cl_int run(struct nb_ocl *o, float *res, const struct nb_qact *a,
		  const struct nb_qinfo *qi, const uint8_t *w, uint64_t r0, uint32_t nrows)
{
	const uint32_t ng = a->kp / qi->group, bits = qi->bits, zp = qi->zero_point;
	const uint32_t bsize = qi->block_size, G = qi->group;
	const size_t quads = (nrows + NB_QROWS - 1) / NB_QROWS, res_bytes = (size_t)a->m * nrows * 4;
	const size_t gws[2] = { nrows, a->m };
	struct mm_bufs b = { 0 };
	cl_int e = CL_SUCCESS, e2 = CL_SUCCESS, e3 = CL_SUCCESS, e4 = CL_SUCCESS, e5 = CL_SUCCESS;
	cl_uint arg = 0;

	b.w = copy_in(o, w + (r0 / NB_QROWS) * ng * (size_t)bsize, quads * ng * (size_t)bsize, &e);
	b.aq = copy_in(o, a->q, (size_t)a->m * a->kp, &e2);
	b.ad = copy_in(o, a->d, (size_t)a->m * ng * sizeof(float), &e3);
	b.asum = copy_in(o, a->sum, (size_t)a->m * ng * sizeof(int32_t), &e4);
	b.out = clCreateBuffer(o->context, CL_MEM_WRITE_ONLY, res_bytes, NULL, &e5);
	e = e ? e : e2 ? e2 : e3 ? e3 : e4 ? e4 : e5;
	if (e == CL_SUCCESS) {
		const cl_mem mems[] = { b.out, b.w, b.aq, b.ad, b.asum };
		const cl_uint u[] = { nrows, a->kp, G, ng, bsize, bits, zp };
		for (size_t i = 0; i < 5 && e == CL_SUCCESS; i++)
			e = clSetKernelArg(o->mm_q, arg++, sizeof(cl_mem), &mems[i]);
		for (size_t i = 0; i < 7 && e == CL_SUCCESS; i++)
			e = clSetKernelArg(o->mm_q, arg++, sizeof(cl_uint), &u[i]);
	}
	if (e == CL_SUCCESS)
		e = clEnqueueNDRangeKernel(o->queue, o->mm_q, 2, NULL, gws, NULL, 0, NULL, NULL);
	if (e == CL_SUCCESS)
		e = clEnqueueReadBuffer(o->queue, b.out, CL_TRUE, 0, res_bytes, res, 0, NULL, NULL);
	release_bufs(&b);
	return e;
}

int nb_ocl_mm_q(struct nb_ocl *o, float *out, size_t ldo, const struct nb_qact *a, uint32_t type,
		const void *w, uint64_t rows, uint64_t r0, uint64_t r1)
{
	const struct nb_qinfo *qi = nb_qinfo(type);
	const uint64_t end = r1 < rows ? r1 : rows;
	const uint32_t nrows = end > r0 ? (uint32_t)(end - r0) : 0;
	float *res;
	cl_int e;

	if (nrows == 0 || a->m == 0)
		return 0;
	res = malloc((size_t)a->m * nrows * sizeof(float));
	if (!res) {
		nb_warn("opencl: out of memory for %u x %u outputs", a->m, nrows);
		return -NB_EIO;
	}
	pthread_mutex_lock(&o->lock);
	e = run(o, res, a, qi, w, r0, nrows);
	pthread_mutex_unlock(&o->lock);
	if (e == CL_SUCCESS)
		for (uint32_t i = 0; i < a->m; i++)
			memcpy(out + (size_t)i * ldo + r0, res + (size_t)i * nrows, nrows * sizeof(float));
	else
		nb_warn("opencl: mm_q %s of %u x %u on %s failed: error %d", qi->name, a->m, nrows,
			o->name, e);
	free(res);
	return e == CL_SUCCESS ? 0 : -NB_EIO;
}

/* ---- the backend of the kernel table ---------------------------------------
 *
 * The table's functions take no context, so the backend's device is the
 * process's: opened once, on the first question whether it is available,
 * and read-only after that but for the flag that retires it. */

static struct {
	pthread_once_t once;
	struct nb_ocl ocl;
	bool ready;
	atomic_bool failed;           /* an enqueue failed: the CPU from then on */
	const struct nb_kernels *cpu; /* the best CPU backend: the fallback */
} proc = { .once = PTHREAD_ONCE_INIT };

static void proc_open(void)
{
	struct nb_cpu cpu;

	nb_cpu_detect(&cpu);
	proc.cpu = &nb_kernels_scalar;
	for (size_t i = 0; i < nb_kernels_count(); i++) {
		const struct nb_kernels *k = nb_kernels_at(i);
		if (!k->available && nb_kernels_runs_on(k, &cpu)) {
			proc.cpu = k;
			break;
		}
	}
	proc.ready = nb_ocl_open(&proc.ocl, 0, nb_ocl_source) == 0;
	if (proc.ready)
		nb_info("opencl: kernels built for %s", proc.ocl.name);
	else
		nb_warn("opencl: not used; the CPU kernels (%s) run instead", proc.cpu->name);
}

static bool opencl_available(void)
{
	pthread_once(&proc.once, proc_open);
	return proc.ready && !atomic_load(&proc.failed);
}

static void mm_q(uint32_t type, float *out, size_t ldo, const struct nb_qact *a, const void *w,
		 uint64_t rows, uint64_t r0, uint64_t r1)
{
	if (opencl_available() && nb_ocl_mm_q(&proc.ocl, out, ldo, a, type, w, rows, r0, r1) == 0)
		return;
	if (proc.ready && !atomic_exchange(&proc.failed, true))
		nb_warn("opencl: retired after an error; the CPU kernels (%s) run instead",
			proc.cpu->name);
	nb_kernels_mm_q(proc.cpu, out, ldo, a, type, w, rows, r0, r1);
}

#define MMQ_FN(NAME, name, G, bits, zp)                                                       \
	static void mm_q_##name(float *out, size_t ldo, const struct nb_qact *a, const void *w, \
				uint64_t rows, uint64_t r0, uint64_t r1)                        \
	{                                                                                     \
		mm_q(NB_QTYPE_##NAME, out, ldo, a, w, rows, r0, r1);                          \
	}
NB_QTYPE_LIST(MMQ_FN)
#undef MMQ_FN

/* Attention and the elementwise steps stay on the CPU. */
static void attend(float *out, float *scratch, const float *q, const float *k, const float *v,
		   uint32_t hd, uint32_t n_q, uint32_t n, float scale)
{
	pthread_once(&proc.once, proc_open);
	proc.cpu->attend(out, scratch, q, k, v, hd, n_q, n, scale);
}

static void silu_mul(float *gate, const float *up, size_t n)
{
	pthread_once(&proc.once, proc_open);
	proc.cpu->silu_mul(gate, up, n);
}

const struct nb_kernels nb_kernels_opencl = {
	.name = "opencl",
	.requires = 0,
	/* what any CPU backend may read, for the fallback */
	.act_flags = NB_QACT_INTERLEAVED,
	.available = opencl_available,
#define MMQ_ENTRY(NAME, name, G, bits, zp) [NB_QTYPE_##NAME - NB_QTYPE_MIN] = mm_q_##name,
	.mm_q = { NB_QTYPE_LIST(MMQ_ENTRY) },
#undef MMQ_ENTRY
	.attend = attend,
	.silu_mul = silu_mul,
};
