"""The serial link shared by every later stage: ports and pyserial URL handlers, the device session and the record streamer."""
