"""Console links for the loop's operators."""
