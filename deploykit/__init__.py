"""deploykit: hardware-in-the-loop toolkit for TinyML models on TFLM microcontrollers."""

__version__ = "0.1.0"
