"""What runs read: the store's graph, text vectors, leakage-free splits, histories, replay."""
