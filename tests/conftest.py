"""Shared test settings. Tolerances live here so every comparison quotes the same numbers."""

#: float32 elementwise results and short sums (pooling, resize, small convs).
RTOL = 1e-5
ATOL = 1e-5
#: big reductions (convs summing hundreds of float32 products): the rounding error
#: of a float32 sum grows with its length and the magnitude of its terms, and
#: BLAS/torch sum in different orders, so absolute error reaches ~1e-5..1e-4.
ATOL_REDUCTION = 1e-4
