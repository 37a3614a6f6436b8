"""Embeddings, the vector index and the retrievers behind one protocol."""
