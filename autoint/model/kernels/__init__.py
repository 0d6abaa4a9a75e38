"""The fused interacting layer's kernels: `ops` (Eqs. 5-8 as torch code, for inductor and as the eager path),
`attention.h` and the three `.cpp` files that include it (the C++ kernel) and `loader` (which one runs, built and loaded how, and the fallbacks)."""
