"""CUDA sources of our kernels (selective scan, ES2D, LDC) and the loader that compiles them."""
