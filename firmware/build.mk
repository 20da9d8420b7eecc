obj-y += firmware/digest.o
obj-y += firmware/image.o
