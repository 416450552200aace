"""The closed-loop A/B simulation against the running service (issue 9, second half)."""
