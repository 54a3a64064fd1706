"""runtime: loading generated modules (the only side effects of the compiler)."""
