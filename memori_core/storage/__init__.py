"""memori_core.storage"""
