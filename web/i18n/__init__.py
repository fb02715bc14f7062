"""Translations, labels and locale-aware formatting for pages, the API and browser scripts."""
