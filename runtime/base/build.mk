# Base: errors, logging, system queries, argument parsing, version. Used by every layer.
obj-y += runtime/base/err.o runtime/base/log.o runtime/base/sys.o runtime/base/args.o runtime/base/argfile.o \
	runtime/base/version.o
