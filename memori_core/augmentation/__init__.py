"""memori_core.augmentation"""
