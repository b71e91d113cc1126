"""Full-ranking metrics and the harness that ranks every scorer on the same split."""
