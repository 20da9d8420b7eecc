# Applets: main (multi-call dispatch), the applet table, and one file per
# applet. version.c is always in: `nibble --version` prints its block.
obj-y += runtime/applets/main.o runtime/applets/applet.o runtime/applets/version.o

# runtime/applets/<name>.o for each NB_APPLET(name, SYMBOL) line of
# applets.def whose CONFIG_APPLET_SYMBOL is y and that has such a file.
nb-applets := $(shell sed -n 's/^NB_APPLET(\([a-z0-9_]*\), *\([A-Z0-9_]*\)).*/\1:\2/p' \
	$(srctree)/runtime/applets/applets.def)
$(foreach a,$(nb-applets),$(eval \
	obj-$$(CONFIG_APPLET_$(lastword $(subst :, ,$(a)))) += \
	$(patsubst $(srctree)/%.c,%.o,$(wildcard $(srctree)/runtime/applets/$(firstword $(subst :, ,$(a))).c))))
