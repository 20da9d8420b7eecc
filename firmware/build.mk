obj-y += firmware/digest.o
