# Board support: descriptions and detection, sensors, the governor's
# controller, GPIO lines (libgpiod when CONFIG_GPIO, else the recorder only).
obj-$(CONFIG_GOVERNOR) += board/board.o board/sensor.o board/gov.o board/gpio.o
