/* The OpenCL backend: the quantized matrix products on an OpenCL device
 * (a GPU, an accelerator, or pocl on the CPU), with exactly the scalar
 * reference's results (kernels/quant.h's epilogue, int32 sums without
 * cl_khr_integer_dot_product). The kernel source is built into the binary
 * and compiled for the device at start-up.
 *
 * nb_ocl is one opened device; nb_kernels_opencl (kernels.c's table) runs
 * on one such device opened on first use, and falls back to the best CPU
 * backend, with one logged line, when there is no platform, no device, the
 * program does not build, or an enqueue fails. */
#ifndef NB_OPENCL_H
#define NB_OPENCL_H

#include "kernels/kernels.h"

#include <pthread.h>

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

struct nb_ocl {
	cl_device_id device;
	cl_context context;
	cl_command_queue queue;
	cl_program program;
	cl_kernel mm_q;
	pthread_mutex_t lock; /* one product at a time: kernel arguments are shared */
	char name[128];       /* "<platform>: <device>" */
};

/* The OpenCL C source of the kernels (OpenCL C 1.2). */
extern const char nb_ocl_source[];

/* Opens device index (over every platform's devices, in order) and builds
 * source (nb_ocl_source; another only in tests) for it. 0, or -NB_ENOENT
 * (no platform or no such device), -NB_ENOTSUP (a device whose floats
 * cannot round like the reference's), -NB_EFORMAT (the program does not
 * build: its log's first lines are logged), -NB_EIO (another OpenCL
 * error); the reason is logged at warning level. */
int nb_ocl_open(struct nb_ocl *o, unsigned index, const char *source);
void nb_ocl_close(struct nb_ocl *o);

/* nb_mm_q_fn's product of a quantized type on the device: out[i * ldo + r]
 * for i < a->m, r0 <= r < min(r1, rows). 0 or -NB_EIO (logged); out may
 * then be partly written. Safe to call from several threads. */
int nb_ocl_mm_q(struct nb_ocl *o, float *out, size_t ldo, const struct nb_qact *a, uint32_t type,
		const void *w, uint64_t rows, uint64_t r0, uint64_t r1);

#endif
