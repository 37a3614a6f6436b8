"""Curated sources and their claims, user documents, and the corpus that is indexed."""
