"""Converters between kohya-wrap specs and other tools' configuration formats."""
