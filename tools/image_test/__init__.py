"""`make image-test`: the container image built, run as deploy/ runs it, and checked."""
