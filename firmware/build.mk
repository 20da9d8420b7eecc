obj-y += firmware/digest.o
obj-y += firmware/image.o firmware/tensor.o firmware/arch.o
