"""Graph → graph passes (plain functions): BN folding, BNTT folding, ANN→SNN conversion,
quantization to fixed point, and legalization for netx."""
