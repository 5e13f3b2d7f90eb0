"""memori_core.recall"""
