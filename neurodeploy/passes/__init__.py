"""Graph → graph passes (plain functions): BN folding, ANN→SNN conversion, and later quantization and legalization."""
