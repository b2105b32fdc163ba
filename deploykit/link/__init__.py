"""The serial link shared by every later stage.

Ports and pyserial URL handlers, the device session and the record streamer.
"""
