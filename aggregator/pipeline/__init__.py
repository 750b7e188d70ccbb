"""The pipeline's pure stages: feed bytes in, normalized articles out (parse, normalize, hash)."""
