obj-y += kernels/cpu.o kernels/kernels.o kernels/ref.o kernels/check.o
obj-$(CONFIG_KERNEL_AVX2) += kernels/avx2.o
obj-$(CONFIG_KERNEL_AVX512VNNI) += kernels/avx512vnni.o
obj-$(CONFIG_KERNEL_NEON) += kernels/neon.o
obj-$(CONFIG_KERNEL_NEON_DOTPROD) += kernels/neon_dotprod.o
obj-$(CONFIG_KERNEL_NEON_I8MM) += kernels/neon_i8mm.o
obj-$(CONFIG_BACKEND_OPENCL) += kernels/opencl.o

# Only these files may use the newer instructions; the dispatch table keeps
# them from running on a CPU without them.
CFLAGS_avx2 := -mavx2 -mf16c
CFLAGS_avx512vnni := -mavx2 -mf16c -mavx512f -mavx512vl -mavx512bw -mavx512vnni
CFLAGS_neon_dotprod := -march=armv8.2-a+dotprod
CFLAGS_neon_i8mm := -march=armv8.2-a+dotprod+i8mm
obj-y += kernels/quant.o
