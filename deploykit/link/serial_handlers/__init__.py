"""pyserial URL handlers of deploykit; deploykit.link.ports adds this package to
serial.protocol_handler_packages, so `virtual://MANIFEST?...` works wherever a port does."""
