"""The knowledge graph: catalogue readers, cleaning, the stores (Neo4j, embedded), export to
PyG `HeteroData` and KG path finding."""
