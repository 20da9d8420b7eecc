# Board support (thermal zones, power sensors, GPIO) lands with the governor.
