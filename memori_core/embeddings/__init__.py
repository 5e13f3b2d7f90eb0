"""memori_core.embeddings"""
